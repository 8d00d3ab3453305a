//! The `quorate-node` binary refuses bad configuration before binding anything, with
//! exit code 64 and a message naming the problem.

use std::process::Command;

fn node() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quorate-node"));
    cmd.env_remove("QUORATE_KEK")
        .env_remove("QUORATE_CONFIG")
        .env_remove("TOKIO_WORKER_THREADS");
    cmd
}

#[test]
fn help_explains_the_environment_overrides() {
    let out = node().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("QUORATE_KEK"), "{text}");
    assert!(text.contains("TOKIO_WORKER_THREADS"), "{text}");
}

#[test]
fn worker_threads_that_are_not_a_positive_number_exit_64() {
    for value in ["0", "two", ""] {
        let out = node()
            .args(["--config", "/nonexistent/node.toml"])
            .env("TOKIO_WORKER_THREADS", value)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(64),
            "TOKIO_WORKER_THREADS={value:?}"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("TOKIO_WORKER_THREADS must be a whole number of at least 1"),
            "TOKIO_WORKER_THREADS={value:?}: {stderr}"
        );
    }
}

#[test]
fn missing_config_file_exits_64() {
    let out = node()
        .args(["--config", "/nonexistent/node.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/node.toml"));
}

#[test]
fn config_without_kek_exits_64_and_says_how_to_provide_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        r#"
node_id = "node-1"
trust_domain = "quorate.test"
listen = "127.0.0.1:0"
region = "eu-central-sov"
jurisdiction = "EU"
data_dir = "data"
tls = { ca = "ca.pem", cert = "node.pem", key = "node-key.pem" }
"#,
    )
    .unwrap();
    let out = node().arg("--config").arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kek_file") && stderr.contains("QUORATE_KEK"),
        "{stderr}"
    );
}

#[test]
fn malformed_kek_from_environment_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "node_id = \"node-1\"\ntrust_domain = \"quorate.test\"\nlisten = \"127.0.0.1:0\"\nregion = \"r\"\njurisdiction = \"EU\"\ndata_dir = \"d\"\ntls = { ca = \"a\", cert = \"b\", key = \"c\" }\n").unwrap();
    let out = node()
        .arg("--config")
        .arg(&config)
        .env("QUORATE_KEK", "not-hex")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("64 hex digits"), "{stderr}");
    assert!(
        !stderr.contains("not-hex"),
        "the KEK value must not be echoed: {stderr}"
    );
}
