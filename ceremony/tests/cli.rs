//! The `quorate-ceremony` binary as a user runs it: commands, files, exit codes.

// Test helpers outside #[test] fns: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use quorate_transport::identity::{Location, PeerIdentity, Role};

fn ceremony(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quorate-ceremony"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn pki_init_and_issue_write_the_documented_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = ceremony(
        &[
            "pki",
            "init",
            "--dir",
            "pki",
            "--trust-domain",
            "quorate.test",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ceremony(
        &[
            "pki",
            "issue",
            "--dir",
            "pki",
            "--trust-domain",
            "quorate.test",
            "--role",
            "node",
            "--name",
            "node-1",
            "--region",
            "eu-central-sov",
            "--jurisdiction",
            "EU",
            "--dns",
            "node-1.internal",
            "--dns",
            "10.0.0.7",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let pki = dir.path().join("pki");
    for file in [
        "ca.pem",
        "ca-key.pem",
        "node-node-1.pem",
        "node-node-1-key.pem",
    ] {
        assert!(pki.join(file).is_file(), "{file} missing");
    }
    let id =
        PeerIdentity::from_certificate_pem(&std::fs::read(pki.join("node-node-1.pem")).unwrap())
            .unwrap();
    assert_eq!(
        id,
        PeerIdentity::new("quorate.test", Role::Node, "node-1").unwrap()
    );
    let location =
        Location::from_certificate_pem(&std::fs::read(pki.join("node-node-1.pem")).unwrap())
            .unwrap();
    assert_eq!(
        location,
        Some(Location::new("eu-central-sov", "EU").unwrap())
    );
}

#[test]
fn pki_issue_wants_a_location_for_a_node_and_for_no_other_role() {
    let dir = tempfile::tempdir().unwrap();
    let init = [
        "pki",
        "init",
        "--dir",
        ".",
        "--trust-domain",
        "quorate.test",
    ];
    assert!(ceremony(&init, dir.path()).status.success());
    let issue = [
        "pki",
        "issue",
        "--dir",
        ".",
        "--trust-domain",
        "quorate.test",
    ];
    for (extra, complaint) in [
        (&["--role", "node", "--name", "node-1"][..], "--region"),
        (
            &["--role", "node", "--name", "node-1", "--region", "eu"][..],
            "--jurisdiction",
        ),
        (
            &[
                "--role",
                "client",
                "--name",
                "svc",
                "--region",
                "eu",
                "--jurisdiction",
                "EU",
            ][..],
            "only node certificates",
        ),
    ] {
        let args: Vec<&str> = issue.iter().chain(extra).copied().collect();
        let out = ceremony(&args, dir.path());
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(complaint),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn second_pki_init_exits_64_and_keeps_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "pki",
        "init",
        "--dir",
        ".",
        "--trust-domain",
        "quorate.test",
    ];
    assert!(ceremony(&args, dir.path()).status.success());
    let before = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let out = ceremony(&args, dir.path());
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).starts_with("error: a CA already exists"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), before);
}

#[test]
fn bad_arguments_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &[
            "pki",
            "issue",
            "--dir",
            ".",
            "--trust-domain",
            "t",
            "--role",
            "wizard",
            "--name",
            "x",
        ][..],
        &[
            "import",
            "--ceremony",
            "missing.toml",
            "--key-id",
            "k",
            "--ciphersuite",
            "rsa",
            "--threshold",
            "2",
            "--transcript",
            "t.json",
        ],
        &["frobnicate"],
    ] {
        let out = ceremony(args, dir.path());
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn issuing_without_a_ca_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let out = ceremony(
        &[
            "pki",
            "issue",
            "--dir",
            ".",
            "--trust-domain",
            "quorate.test",
            "--role",
            "client",
            "--name",
            "svc",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("pki init"), "{}", stderr(&out));
}

#[test]
fn import_with_missing_ceremony_file_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let out = ceremony(
        &[
            "import",
            "--ceremony",
            "missing.toml",
            "--key-id",
            "k",
            "--ciphersuite",
            "ed25519",
            "--threshold",
            "2",
            "--transcript",
            "t.json",
            "--policy",
            "policy.toml",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("missing.toml"), "{}", stderr(&out));
}

#[test]
fn help_explains_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (&["--help"][..], "import"),
        (&["pki", "init", "--help"], "Refuses to overwrite"),
        (&["pki", "issue", "--help"], "--dns"),
        (&["import", "--help"], "--secret-file"),
    ] {
        let out = ceremony(args, dir.path());
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(needle),
            "{args:?}"
        );
    }
}

#[test]
fn audit_verify_refuses_a_plaintext_endpoint_without_connecting_to_it() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &[
            "pki",
            "init",
            "--dir",
            "pki",
            "--trust-domain",
            "quorate.test",
        ][..],
        &[
            "pki",
            "issue",
            "--dir",
            "pki",
            "--trust-domain",
            "quorate.test",
            "--role",
            "auditor",
            "--name",
            "auditor-1",
        ],
    ] {
        let out = ceremony(args, dir.path());
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    // Whatever answers in plaintext here could serve a forged log that passes
    // the chain check: the command must not even connect.
    let plaintext = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    plaintext.set_nonblocking(true).unwrap();
    let endpoint = format!("http://{}", plaintext.local_addr().unwrap());
    let out = ceremony(
        &[
            "audit",
            "verify",
            "--endpoint",
            &endpoint,
            "--node",
            "node-1",
            "--ca",
            "pki/ca.pem",
            "--cert",
            "pki/auditor-auditor-1.pem",
            "--key",
            "pki/auditor-auditor-1-key.pem",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("https://"), "{}", stderr(&out));
    assert!(
        plaintext.accept().is_err(),
        "the command connected to the plaintext endpoint"
    );
}
