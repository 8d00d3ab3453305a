//! A node whose key-encryption key lives in a real HSM implementation (SoftHSM2):
//! it signs, it refuses to start once the key is deleted from the token, and with a
//! second provider it starts without the token; after `kek rekey` onto a new HSM key
//! and the old key's destruction, a copy of the store from before opens with nothing.
//! SoftHSM2 and OpenSC's `pkcs11-tool` are required (`.ci/run` installs them); a
//! machine without them fails these tests rather than skipping them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{bin_dir, start_default, DEADLINE};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "quorate-node-1";
const USER_PIN: &str = "4711";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (install softhsm2 and opensc)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The node's Prometheus text, fetched over plain HTTP.
async fn metrics_text(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

/// One SoftHSM2 token directory for the whole test process (node processes find it
/// through `SOFTHSM2_CONF`, which they inherit; tests running as threads of one
/// process must agree on it), holding one token per test.
fn softhsm() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tokens")).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        std::env::set_var("SOFTHSM2_CONF", dir.path().join("softhsm2.conf"));
        dir
    })
    .path()
}

/// A token labelled `token` with an AES key `quorate-kek`, made by the provisioning
/// script docs/operations.md shows; returns the user PIN's file.
fn provision(token: &str) -> PathBuf {
    let hsm = softhsm();
    let pin_file = hsm.join(format!("{token}.pin"));
    let so_pin_file = hsm.join(format!("{token}.so.pin"));
    std::fs::write(&pin_file, format!("{USER_PIN}\n")).unwrap();
    std::fs::write(&so_pin_file, "8642\n").unwrap();
    run(Command::new("bash")
        .arg(repo_root().join("deploy/softhsm/provision-kek.sh"))
        .env("HSM_DIR", hsm)
        .env("PIN_FILE", &pin_file)
        .env("SO_PIN_FILE", &so_pin_file)
        .env("TOKEN_LABEL", token));
    pin_file
}

/// `pkcs11-tool` on `token`, logged in as the user.
fn pkcs11_tool(token: &str, args: &[&str]) -> std::process::Output {
    run(Command::new("pkcs11-tool")
        .args([
            "--module",
            MODULE,
            "--token-label",
            token,
            "--login",
            "--pin",
            USER_PIN,
        ])
        .args(args))
}

/// The `[[kek]]` table of the token's key.
fn hsm_table(pin_file: &Path) -> String {
    hsm_key_table("hsm", TOKEN, "quorate-kek", pin_file)
}

/// The `[[kek]]` table of provider `id`: key `key_label` of token `token`.
fn hsm_key_table(id: &str, token: &str, key_label: &str, pin_file: &Path) -> String {
    format!(
        "\n[[kek]]\ntype = \"pkcs11\"\nid = \"{id}\"\nmodule = \"{MODULE}\"\n\
         token_label = \"{token}\"\nkey_label = \"{key_label}\"\npin_file = {:?}\n",
        pin_file.display().to_string()
    )
}

/// `quorate-node kek VERB` on `config`, with no KEK from the environment.
fn kek(config: &Path, verb: &str) -> std::process::Output {
    Command::new(bin_dir().join("quorate-node"))
        .arg("--config")
        .arg(config)
        .args(["kek", verb])
        .env_remove("QUORATE_KEK")
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_node_with_its_kek_in_softhsm_signs_refuses_to_start_without_the_key_and_starts_on_a_second_provider(
) {
    let pin_file = provision(TOKEN);

    let mut net = start_default().await;
    let client = net.client().await.unwrap();
    net.kill_node("node-1").await.unwrap();
    let config = net.node("node-1").unwrap().config_path.clone();
    let original = std::fs::read_to_string(&config).unwrap();
    let table = hsm_table(&pin_file);

    // Wrap the DEK under the token's key beside the file KEK, then drop the file.
    std::fs::write(&config, format!("{original}{table}")).unwrap();
    let out = run(Command::new(bin_dir().join("quorate-node"))
        .arg("--config")
        .arg(&config)
        .args(["kek", "rotate"])
        .env_remove("QUORATE_KEK"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("pkcs11 \"hsm\""));
    let hsm_only: String = original
        .lines()
        .filter(|line| !line.starts_with("kek_file"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&config, format!("{hsm_only}{table}")).unwrap();
    net.start_node("node-1").await.unwrap();

    // node-1 is needed for every quorum, and signs with its store opened by the HSM.
    net.kill_node("node-4").await.unwrap();
    net.kill_node("node-5").await.unwrap();
    common::sign_every_key_with(&net, &client, "node-1", b"kek in softhsm").await;

    // The key deleted from the token: the node refuses to start and names it.
    net.kill_node("node-1").await.unwrap();
    pkcs11_tool(
        TOKEN,
        &[
            "--delete-object",
            "--type",
            "secrkey",
            "--label",
            "quorate-kek",
        ],
    );
    let idx = net
        .nodes
        .iter()
        .position(|n| n.spec.id == "node-1")
        .unwrap();
    net.nodes[idx].process.start().unwrap();
    let code = net.nodes[idx]
        .process
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(code, Some(64));
    let log = net.nodes[idx].process.log_tail(5);
    assert!(
        log.contains("pkcs11 \"hsm\"") && log.contains("no secret key labelled \"quorate-kek\""),
        "{log}"
    );
    assert!(!log.contains(USER_PIN), "the PIN reached the log: {log}");

    // With the file KEK back beside the missing HSM key it starts, says so, and signs.
    std::fs::write(&config, format!("{original}{table}")).unwrap();
    net.start_node("node-1").await.unwrap();
    let log = net.nodes[idx].process.log_tail(40);
    assert!(
        log.contains("provider unavailable") && log.contains("provider=pkcs11 \"hsm\""),
        "{log}"
    );
    let metrics = metrics_text(&net.node("node-1").unwrap().metrics).await;
    assert!(
        metrics.contains("quorate_node_kek_providers_unavailable 1"),
        "{metrics}"
    );
    let key = net.spec.keys[0].key_id.clone();
    let signed = client
        .sign_verified(&key, b"hsm key gone, file kek left", DEADLINE)
        .await
        .unwrap();
    assert!(signed.response.signers.contains(&"node-1".to_string()));
}

/// `kek rotate` and `kek rekey` killed (SIGKILL) at spread-out points, over and
/// over: the store always opens afterwards with the node's KEKs, and the node signs.
#[tokio::test]
async fn kek_rotate_and_rekey_killed_at_any_point_never_leave_an_unopenable_store() {
    let mut net = start_default().await;
    let client = net.client().await.unwrap();
    net.kill_node("node-2").await.unwrap();
    let node = net.node("node-2").unwrap();
    let config = node.config_path.clone();
    let original = std::fs::read_to_string(&config).unwrap();
    // A second file provider, so rotate has something to re-wrap under.
    let second = node.kek_file.with_file_name("second-kek.hex");
    std::fs::write(&second, quorate_node::store::Kek::generate_hex().as_str()).unwrap();
    std::fs::write(
        &config,
        format!(
            "{original}\n[[kek]]\ntype = \"file\"\nid = \"second\"\npath = {:?}\n",
            second.display().to_string()
        ),
    )
    .unwrap();
    let node_bin = bin_dir().join("quorate-node");
    let mut completed = 0;
    for round in 0u64..24 {
        let verb = if round % 2 == 0 { "rekey" } else { "rotate" };
        let mut child = tokio::process::Command::new(&node_bin)
            .arg("--config")
            .arg(&config)
            .args(["kek", verb])
            .env_remove("QUORATE_KEK")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Spread over startup, the unwrap, the re-seal and the commit.
        tokio::time::sleep(Duration::from_millis((round * 37) % 160)).await;
        let _ = child.start_kill();
        let status = child.wait().await.unwrap();
        if status.success() {
            completed += 1;
        }
        // Whatever happened, the store opens (rotate to the same providers is a
        // harmless open-and-rewrap; it fails if the store does not open).
        let check = Command::new(&node_bin)
            .arg("--config")
            .arg(&config)
            .args(["kek", "rotate"])
            .env_remove("QUORATE_KEK")
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "round {round} ({verb} killed): {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    assert!(completed < 24, "no run was killed before it finished");
    net.start_node("node-2").await.unwrap();
    net.kill_node("node-4").await.unwrap();
    net.kill_node("node-5").await.unwrap();
    let key = net.spec.keys[0].key_id.clone();
    let signed = client
        .sign_verified(&key, b"after interrupted rekeys", DEADLINE)
        .await
        .unwrap();
    assert!(signed.response.signers.contains(&"node-2".to_string()));
}

/// docs/operations.md shows the provisioning commands; the tests run them through
/// deploy/softhsm/provision-kek.sh. The doc's block must be the script's commands,
/// line for line, so what the tests run is what the doc says.
#[test]
fn the_documented_softhsm_commands_are_the_provisioning_scripts() {
    let doc = std::fs::read_to_string(repo_root().join("docs/operations.md")).unwrap();
    let after = doc
        .split("**Provisioning a KEK in SoftHSM2**")
        .nth(1)
        .expect("the provisioning section");
    let block: Vec<&str> = after
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("its sh block")
        .lines()
        .collect();
    let script =
        std::fs::read_to_string(repo_root().join("deploy/softhsm/provision-kek.sh")).unwrap();
    // The script's commands: what is left after comments, blank lines and its
    // own setup (strict mode, the required variables, the module's default).
    let commands: Vec<&str> = script
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter(|l| !l.starts_with("set -") && !l.starts_with(": ") && !l.starts_with("MODULE="))
        .collect();
    assert_eq!(block, commands);
}

/// Crypto-shredding with a real HSM: a node's store sealed under an HSM key is
/// copied (a backup, a stolen disk), then `kek rekey` re-seals it under a fresh DEK
/// wrapped only by a new HSM key and the old key is destroyed in the token. The node
/// signs with the new key; the copy opens with nothing the node's operator still has.
#[tokio::test]
async fn after_rekey_onto_a_new_hsm_key_and_destroying_the_old_one_a_copy_of_the_old_store_opens_with_nothing(
) {
    const SHRED_TOKEN: &str = "quorate-node-3";
    let pin_file = provision(SHRED_TOKEN);
    let old_key = hsm_key_table("hsm-old", SHRED_TOKEN, "quorate-kek", &pin_file);
    let new_key = hsm_key_table("hsm-new", SHRED_TOKEN, "quorate-kek-2", &pin_file);

    let mut net = start_default().await;
    let client = net.client().await.unwrap();
    net.kill_node("node-3").await.unwrap();
    let node = net.node("node-3").unwrap();
    let (config, data_dir) = (node.config_path.clone(), node.data_dir.clone());
    let original = std::fs::read_to_string(&config).unwrap();
    let without_file_kek: String = original
        .lines()
        .filter(|line| !line.starts_with("kek_file"))
        .map(|line| format!("{line}\n"))
        .collect();
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // The store sealed under the old HSM key only, and a copy of it taken.
    std::fs::write(&config, format!("{original}{old_key}")).unwrap();
    ok(kek(&config, "rotate"));
    std::fs::write(&config, format!("{without_file_kek}{old_key}")).unwrap();
    ok(kek(&config, "rotate"));
    let copy = data_dir.with_file_name("data-copy");
    run(Command::new("cp").arg("-a").arg(&data_dir).arg(&copy));

    // A new key in the token; rekey under both, then retire the old one.
    pkcs11_tool(
        SHRED_TOKEN,
        &[
            "--keygen",
            "--key-type",
            "AES:32",
            "--label",
            "quorate-kek-2",
            "--sensitive",
        ],
    );
    std::fs::write(&config, format!("{without_file_kek}{old_key}{new_key}")).unwrap();
    assert!(ok(kek(&config, "rekey")).contains("re-sealed under a new DEK"));
    std::fs::write(&config, format!("{without_file_kek}{new_key}")).unwrap();
    ok(kek(&config, "rotate"));
    pkcs11_tool(
        SHRED_TOKEN,
        &[
            "--delete-object",
            "--type",
            "secrkey",
            "--label",
            "quorate-kek",
        ],
    );

    // The node opens with the new key alone and signs (it is needed for the quorum).
    net.start_node("node-3").await.unwrap();
    net.kill_node("node-4").await.unwrap();
    net.kill_node("node-5").await.unwrap();
    let key = net.spec.keys[0].key_id.clone();
    let signed = client
        .sign_verified(&key, b"rekeyed onto a new hsm key", DEADLINE)
        .await
        .unwrap();
    assert!(signed.response.signers.contains(&"node-3".to_string()));

    // The copy, offered every KEK the operator still has (the file KEK, the new HSM
    // key) and the destroyed one's name: nothing opens it.
    let copy_config = config.with_file_name("copy.toml");
    std::fs::write(
        &copy_config,
        format!(
            "{}{old_key}{new_key}",
            original.replace(
                &format!("data_dir = {:?}", data_dir.display().to_string()),
                &format!("data_dir = {:?}", copy.display().to_string())
            )
        ),
    )
    .unwrap();
    assert!(std::fs::read_to_string(&copy_config)
        .unwrap()
        .contains("data-copy"));
    let out = kek(&copy_config, "rotate");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pkcs11 \"hsm-old\"")
            && err.contains("no secret key labelled \"quorate-kek\""),
        "{err}"
    );
    assert!(!err.contains(USER_PIN), "the PIN reached the output: {err}");
}
