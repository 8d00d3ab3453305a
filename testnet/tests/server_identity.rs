//! Pinned server identities and CA-attested node locations, with real processes.
//!
//! An impostor takes node-2's port with a certificate the CA signed for the DNS name
//! `node-2` but for another SPIFFE id (`client/node-2`, `coordinator/node-2`): the
//! real coordinator and the real `quorate-ceremony` must refuse the handshake. The
//! impostor (`quorate_testnet::rogue::Impostor`, which the drills use too) reports
//! each handshake's outcome from the server side, and node-2's own certificate on
//! the same impostor completes one, so a refusal is the pin's doing.
//! A node whose config places it elsewhere than its certificate does not start.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{bin_dir, TestNetwork, DEADLINE};
use quorate_ceremony::pki;
use quorate_frost::Ciphersuite;
use quorate_testnet::rogue::Impostor;
use quorate_testnet::spec::{KeySpec, NetworkSpec};
use quorate_transport::identity::{Location, Role};
use quorate_transport::tls::TlsPaths;

const KEY: &str = "pin-ed25519";

async fn network() -> TestNetwork {
    let mut spec = NetworkSpec::default_five_regions();
    spec.keys = vec![KeySpec::new(KEY, Ciphersuite::Ed25519)];
    // Without witnessing: the impostor on node-2's port must hear only the party
    // under test (peers witnessing node-2 would dial it each second).
    let dir = tempfile::tempdir().expect("tempdir");
    let net = quorate_testnet::network::LocalNetwork::start_opts(
        &dir.path().join("net"),
        &bin_dir(),
        spec,
        &quorate_testnet::network::StartOptions {
            witness: false,
            ..Default::default()
        },
    )
    .await
    .expect("network starts");
    TestNetwork { net, dir }
}

fn port_of(endpoint: &str) -> u16 {
    endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("endpoint ends in a port")
}

/// Stops node-2 and puts an impostor presenting `first` on its port.
async fn impostor_for_node_2(net: &mut TestNetwork, first: &TlsPaths) -> Impostor {
    let port = port_of(&net.node("node-2").expect("node-2").endpoint);
    net.stop_node("node-2").await.expect("node-2 stops");
    Impostor::listen(([127, 0, 0, 1], port).into(), first).expect("node-2's port is free")
}

/// Certificates the CA signed for the DNS name `node-2` that are not the server
/// `node/node-2`.
fn impostor_certificates(net: &TestNetwork) -> Vec<(&'static str, TlsPaths)> {
    vec![
        (
            "client/node-2",
            net.issue(Role::Client, "node-2")
                .expect("client certificate"),
        ),
        (
            "coordinator/node-2",
            net.issue(Role::Coordinator, "node-2")
                .expect("coordinator certificate"),
        ),
    ]
}

#[tokio::test]
async fn the_coordinator_refuses_a_client_or_coordinator_certificate_presented_as_node_2() {
    let mut net = network().await;
    let client = net.client().await.expect("client");
    let impostors = impostor_certificates(&net);
    let node_2 = net.tls_paths(Role::Node, "node-2");
    let impostor = impostor_for_node_2(&mut net, &impostors[0].1).await;
    // Signing keeps the coordinator reaching for node-2 (rounds, then health probes).
    let poke = || {
        let client = client.clone();
        async move {
            let _ = client.sign(KEY, b"pin", None, DEADLINE).await;
        }
    };
    for (what, tls) in &impostors {
        impostor.present(tls).expect("impostor certificate");
        let outcome = impostor
            .next_outcome(Duration::from_secs(30), poke)
            .await
            .unwrap_or_else(|| panic!("{what}: the coordinator never connected to node-2"));
        let err = outcome.expect_err(&format!(
            "the coordinator completed a handshake with {what} as node-2"
        ));
        // The client refused the server's certificate (an alert), not a timeout.
        assert!(err.contains("alert"), "{what}: {err}");
    }
    // Control: node-2's own certificate on the same impostor is accepted, so the
    // refusals above are about the certificate, not the impostor.
    impostor.present(&node_2).expect("node-2's certificate");
    let outcome = impostor
        .next_outcome(Duration::from_secs(30), poke)
        .await
        .expect("the coordinator connects to node-2");
    assert_eq!(outcome, Ok(()));
}

fn ceremony(args: &[&str]) -> std::process::Output {
    Command::new(bin_dir().join("quorate-ceremony"))
        .args(args)
        .output()
        .expect("quorate-ceremony runs")
}

#[tokio::test]
async fn the_ceremony_refuses_a_client_or_coordinator_certificate_presented_as_node_2() {
    let mut net = network().await;
    let impostors = impostor_certificates(&net);
    let node_2 = net.tls_paths(Role::Node, "node-2");
    let impostor = impostor_for_node_2(&mut net, &impostors[0].1).await;
    let ceremony_file = net.ceremony_file.display().to_string();
    let transcript = net.net.dir.join("pin.json").display().to_string();
    let policy = net.net.dir.join("pin-policy.toml");
    std::fs::write(&policy, "unsafe_no_administrators = true\n").expect("policy");
    let policy = policy.display().to_string();
    let dkg = [
        "dkg",
        "--ceremony",
        &ceremony_file,
        "--key-id",
        "pin-dkg",
        "--ciphersuite",
        "ed25519",
        "--threshold",
        "3",
        "--policy",
        &policy,
        "--transcript",
        &transcript,
    ];
    for (what, tls) in &impostors {
        impostor.present(tls).expect("impostor certificate");
        let out = ceremony(&dkg);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: the DKG ran: {stderr}");
        assert!(stderr.contains("node-2"), "{what}: {stderr}");
        let outcome = impostor
            .next_outcome(Duration::ZERO, || async {})
            .await
            .unwrap_or_else(|| panic!("{what}: the ceremony never connected: {stderr}"));
        let err = outcome.expect_err(&format!(
            "the ceremony completed a handshake with {what} as node-2"
        ));
        assert!(err.contains("alert"), "{what}: {err}");
    }
    // A coordinator certificate carries serverAuth, so only the pin refuses it, and
    // the ceremony says which identity it expected and which it found.
    let out = ceremony(&dkg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spiffe://quorate.test/coordinator/node-2")
            && stderr.contains("expected spiffe://quorate.test/node/node-2"),
        "{stderr}"
    );
    // Control: node-2's own certificate completes the handshake (the DKG still
    // fails, since the impostor speaks no gRPC).
    impostor.present(&node_2).expect("node-2's certificate");
    let out = ceremony(&dkg);
    assert!(!out.status.success());
    let outcome = impostor.next_outcome(Duration::ZERO, || async {}).await;
    assert_eq!(outcome, Some(Ok(())));
}

/// A node-1 certificate attesting eu-central-sov/EU and a config for it saying
/// `region`/`jurisdiction`, in `dir`.
fn node_1_config(dir: &Path, region: &str, jurisdiction: &str) -> std::path::PathBuf {
    let pki_dir = dir.join("pki");
    pki::create_ca(&pki_dir, "quorate.test").expect("CA");
    let location = Location::new("eu-central-sov", "EU").expect("location");
    let issued = pki::issue(
        &pki_dir,
        "quorate.test",
        Role::Node,
        "node-1",
        Some(&location),
        &[],
    )
    .expect("node certificate");
    let kek = dir.join("kek.hex");
    std::fs::write(&kek, quorate_node::store::Kek::generate_hex()).expect("kek");
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "node_id = \"node-1\"\ntrust_domain = \"quorate.test\"\nlisten = \"127.0.0.1:0\"\n\
             region = \"{region}\"\njurisdiction = \"{jurisdiction}\"\ndata_dir = {:?}\n\
             kek_file = {:?}\n[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
            dir.join("data"),
            kek,
            issued.ca,
            issued.cert,
            issued.key,
        ),
    )
    .expect("config");
    config
}

/// Runs `quorate-node --config config`; its exit code, or `None` (killed) if it was
/// still running after a few seconds, and its stderr.
fn run_node(config: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(bin_dir().join("quorate-node"))
        .arg("--config")
        .arg(config)
        .env_remove("QUORATE_KEK")
        .env_remove("QUORATE_REGION")
        .env_remove("QUORATE_JURISDICTION")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("quorate-node starts");
    let started = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    (code, stderr)
}

#[test]
fn a_node_whose_config_disagrees_with_its_certificates_location_exits_64_naming_both() {
    for (region, jurisdiction) in [("us-east", "EU"), ("eu-central-sov", "US")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = node_1_config(dir.path(), region, jurisdiction);
        let (code, stderr) = run_node(&config);
        assert_eq!(code, Some(64), "{region}/{jurisdiction}: {stderr}");
        for named in ["eu-central-sov", "EU", region, jurisdiction] {
            assert!(stderr.contains(named), "{named} missing: {stderr}");
        }
        assert!(stderr.contains("certificate"), "{stderr}");
    }
}
