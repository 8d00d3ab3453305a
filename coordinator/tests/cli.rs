//! The `quorate-coordinator` binary refuses bad configuration with exit code 64.

use std::process::Command;

fn coordinator() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quorate-coordinator"));
    cmd.env_remove("QUORATE_CONFIG");
    cmd
}

#[test]
fn help_describes_the_service() {
    let out = coordinator().arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Signer"));
}

#[test]
fn config_without_nodes_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("coordinator.toml");
    std::fs::write(
        &config,
        "trust_domain = \"quorate.test\"\nlisten = \"127.0.0.1:0\"\nnodes = []\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n",
    )
    .unwrap();
    let out = coordinator().arg("--config").arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [[nodes]]"));
}

#[test]
fn plaintext_node_endpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("coordinator.toml");
    std::fs::write(
        &config,
        "trust_domain = \"quorate.test\"\nlisten = \"127.0.0.1:0\"\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n[[nodes]]\nid = \"node-1\"\nendpoint = \"http://127.0.0.1:1\"\n",
    )
    .unwrap();
    let out = coordinator().arg("--config").arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("https://"));
}
