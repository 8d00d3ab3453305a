//! The client library and the `quorate` CLI against real local networks: the
//! README's commands exactly as shown (with the `client.toml` the testnet writes),
//! `--json` output that parses, and failover that costs a dead coordinator one
//! timeout, not one per request.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::bin_dir;
use quorate_client::{Client, CoordinatorEntry, SignOptions};
use quorate_testnet::network::LocalNetwork;
use quorate_testnet::spec::NetworkSpec;

fn quorate(config: &Path, args: &[&str]) -> Output {
    Command::new(bin_dir().join("quorate"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("QUORATE_CONFIG")
        .output()
        .expect("quorate runs (build it: cargo build --workspace)")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(out: Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

fn json(out: Output) -> serde_json::Value {
    let text = ok(out);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_quorate_commands_sign_show_list_and_verify_with_the_testnet_client_toml() {
    let net = common::start_default().await;
    let config = net.net.dir.join("client.toml");
    assert!(config.exists(), "the testnet writes client.toml");

    // README, "Requesting a signature".
    let text = ok(quorate(
        &config,
        &[
            "sign",
            "--key-id",
            "demo-ed25519",
            "--message",
            "pay 10 EUR",
        ],
    ));
    assert!(text.contains("verified:    yes"), "{text}");
    assert!(text.contains("ciphersuite: ED25519"), "{text}");

    let signed = json(quorate(
        &config,
        &[
            "sign",
            "--key-id",
            "demo-ed25519",
            "--message",
            "pay 10 EUR",
            "--json",
        ],
    ));
    assert_eq!(signed["verified"], true);
    assert_eq!(signed["ciphersuite"], "ED25519");
    let signature = signed["signature"]
        .as_str()
        .expect("signature hex")
        .to_string();
    assert_eq!(signature.len(), 128);
    assert_eq!(signed["signers"].as_array().expect("signers").len(), 3);

    let text = ok(quorate(
        &config,
        &["public-key", "--key-id", "demo-ed25519"],
    ));
    assert!(text.contains("threshold:    3-of-5"), "{text}");
    let key = json(quorate(
        &config,
        &["public-key", "--key-id", "demo-ed25519", "--json"],
    ));
    assert_eq!(key["public_key"], signed["public_key"]);
    assert_eq!(
        key["participants"].as_array().expect("participants").len(),
        5
    );

    let text = ok(quorate(&config, &["keys"]));
    assert!(text.contains("demo-ed25519"), "{text}");
    let keys = json(quorate(&config, &["keys", "--json"]));
    assert!(keys["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .any(|k| k["key_id"] == "demo-ed25519"));

    let text = ok(quorate(
        &config,
        &[
            "verify",
            "--key-id",
            "demo-ed25519",
            "--message",
            "pay 10 EUR",
            "--signature",
            &signature,
        ],
    ));
    assert!(text.starts_with("valid"), "{text}");
    let other = quorate(
        &config,
        &[
            "verify",
            "--key-id",
            "demo-ed25519",
            "--message",
            "pay 99 EUR",
            "--signature",
            &signature,
        ],
    );
    assert_eq!(other.status.code(), Some(1));
    assert!(stdout(&other).starts_with("INVALID"), "{}", stdout(&other));

    // QUORATE_CONFIG instead of --config; a Taproot key too.
    let out = Command::new(bin_dir().join("quorate"))
        .args([
            "sign",
            "--key-id",
            "demo-taproot",
            "--message-hex",
            "00ff",
            "--json",
        ])
        .env("QUORATE_CONFIG", &config)
        .output()
        .expect("quorate runs");
    let signed = json(out);
    assert_eq!(signed["ciphersuite"], "SECP256K1_TR");

    // An unknown key is the coordinator's NOT_FOUND, exit 1, not retried.
    let out = quorate(
        &config,
        &["sign", "--key-id", "no-such-key", "--message", "x"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NotFound"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_coordinator_costs_the_first_request_one_timeout_and_later_ones_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = LocalNetwork::start_with(
        &dir.path().join("net"),
        &bin_dir(),
        NetworkSpec::default_five_regions(),
        2,
    )
    .await
    .expect("network starts");
    // A coordinator that accepts connections and never answers: the worst kind of
    // dead, since only a timeout finds it out.
    let hole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut config = net.client_config();
    assert_eq!(
        config.coordinators.len(),
        2,
        "client.toml lists both coordinators"
    );
    config.coordinators.insert(
        0,
        CoordinatorEntry::Named {
            endpoint: format!("https://{}", hole.local_addr().expect("addr")),
            server_name: Some("coordinator".into()),
        },
    );
    config.deadline_ms = 6000;
    let client = Client::new(&config).expect("client");
    let sign = |n: u32| {
        let client = client.clone();
        async move {
            let started = Instant::now();
            let signed = client
                .sign(
                    "demo-ed25519",
                    format!("failover {n}").as_bytes(),
                    SignOptions::default(),
                )
                .await
                .expect("signs despite the dead coordinator");
            (signed, started.elapsed())
        }
    };
    let (first, first_took) = sign(1).await;
    // Its share of the deadline: 6 s over three coordinators.
    assert!(
        first_took >= Duration::from_millis(1500),
        "the first request tried the dead coordinator first ({first_took:?})"
    );
    assert_ne!(first.coordinator, config.coordinators[0].endpoint());
    for n in 2..=4 {
        let (_, took) = sign(n).await;
        assert!(
            took < Duration::from_millis(1500),
            "request {n} went straight to a live coordinator ({took:?})"
        );
    }

    // The live coordinator in use dies: the next request fails over to the other.
    let (used, _) = sign(5).await;
    let dead = if used.coordinator == config.coordinators[1].endpoint() {
        0
    } else {
        1
    };
    net.kill_coordinator(dead).await.expect("kill");
    let (after, _) = sign(6).await;
    assert_ne!(after.coordinator, used.coordinator);
    drop(hole);
}
