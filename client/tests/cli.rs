//! The `quorate` binary without a network: usage and configuration errors exit 64
//! with a message that names the problem, `--help` documents the exit codes, and
//! offline `verify` exits 0 for a valid signature and 1 for an invalid one.

use std::process::{Command, Output};

use ed25519_dalek::{Signer, SigningKey};

fn quorate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quorate"))
        .args(args)
        .env_remove("QUORATE_CONFIG")
        .env_remove("QUORATE_COORDINATORS")
        .env_remove("QUORATE_CA")
        .env_remove("QUORATE_CERT")
        .env_remove("QUORATE_KEY")
        .output()
        .expect("quorate runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn no_configuration_exits_64_and_says_what_to_give() {
    let out = quorate(&["keys"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--config"), "{err}");
    assert!(
        err.contains("missing: --coordinator, --ca, --cert, --key"),
        "{err}"
    );
}

#[test]
fn unreadable_malformed_or_invalid_config_exits_64_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.toml");
    let out = quorate(&["--config", missing.to_str().expect("utf-8"), "keys"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("cannot read client config"),
        "{}",
        stderr(&out)
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "coordinators = [\n").expect("write");
    let out = quorate(&["--config", bad.to_str().expect("utf-8"), "keys"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("bad.toml"), "{}", stderr(&out));

    let http = dir.path().join("http.toml");
    std::fs::write(
        &http,
        "coordinators = [\"http://127.0.0.1:1\"]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
    )
    .expect("write");
    let out = quorate(&["--config", http.to_str().expect("utf-8"), "keys"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("https://"), "{}", stderr(&out));

    // Well formed, but the certificate files are not there.
    let files = dir.path().join("files.toml");
    std::fs::write(
        &files,
        "coordinators = [\"https://127.0.0.1:1\"]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
    )
    .expect("write");
    let out = quorate(&["--config", files.to_str().expect("utf-8"), "keys"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("c.pem"), "{}", stderr(&out));
}

#[test]
fn usage_errors_exit_64_and_help_documents_exit_codes() {
    let out = quorate(&["sign", "--message", "hi"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("--key-id"), "{}", stderr(&out));
    let out = quorate(&[
        "sign",
        "--key-id",
        "k",
        "--message",
        "hi",
        "--message-hex",
        "00",
    ]);
    assert_eq!(out.status.code(), Some(64));

    let out = quorate(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "sign",
        "public-key",
        "keys",
        "verify",
        "Exit codes",
        "64",
        "QUORATE_CONFIG",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}: {help}");
    }
}

#[test]
fn offline_verify_exits_0_for_a_valid_signature_and_1_for_another_message() {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let public = hex::encode(key.verifying_key().to_bytes());
    let signature = hex::encode(key.sign(b"pay 10 EUR").to_bytes());
    let args = |message: &'static str| {
        vec![
            "verify".to_string(),
            "--public-key".into(),
            public.clone(),
            "--ciphersuite".into(),
            "ED25519".into(),
            "--message".into(),
            message.into(),
            "--signature".into(),
            signature.clone(),
            "--json".into(),
        ]
    };
    let run = |message| {
        let args = args(message);
        quorate(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let ok = run("pay 10 EUR");
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let json: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("JSON");
    assert_eq!(json["valid"], true);
    assert_eq!(json["ciphersuite"], "ED25519");

    let bad = run("pay 99 EUR");
    assert_eq!(bad.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&bad.stdout).expect("JSON");
    assert_eq!(json["valid"], false);
    assert!(json["reason"].as_str().is_some_and(|r| !r.is_empty()));
}

#[test]
fn ssh_keygen_mode_signs_only_with_a_configuration_and_hands_other_operations_to_ssh_keygen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("release.txt");
    std::fs::write(&file, "release\n").expect("write");
    let pubkey = dir.path().join("key.pub");
    let key = SigningKey::from_bytes(&[5u8; 32]);
    let line = quorate_client::key_formats::openssh(
        quorate_frost::Ciphersuite::Ed25519,
        &key.verifying_key().to_bytes(),
        "k",
    )
    .expect("openssh");
    std::fs::write(&pubkey, format!("{line}\n")).expect("write");
    let path = |p: &std::path::Path| p.to_str().expect("utf-8").to_string();

    // git's call, without QUORATE_CONFIG: a usage error naming what to give, no .sig.
    let out = quorate(&[
        "-Y",
        "sign",
        "-n",
        "git",
        "-f",
        &path(&pubkey),
        &path(&file),
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("--config"), "{}", stderr(&out));
    assert!(!dir.path().join("release.txt.sig").exists());

    // Signing options other than the one used are refused before anything else.
    let out = quorate(&[
        "-Y",
        "sign",
        "-n",
        "git",
        "-O",
        "hashalg=sha256",
        "-f",
        &path(&pubkey),
        &path(&file),
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("hashalg"), "{}", stderr(&out));

    // A signature ssh-keygen made: `quorate -Y check-novalidate` is ssh-keygen's
    // answer, exit code included.
    let own = dir.path().join("id");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f", &path(&own)])
        .output()
        .expect("ssh-keygen runs (install openssh-client)");
    assert!(made.status.success());
    let signed = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "file", "-f", &path(&own), &path(&file)])
        .output()
        .expect("ssh-keygen");
    assert!(signed.status.success(), "{}", stderr(&signed));
    let check = |namespace: &str| {
        Command::new(env!("CARGO_BIN_EXE_quorate"))
            .args(["-Y", "check-novalidate", "-n", namespace, "-s"])
            .arg(dir.path().join("release.txt.sig"))
            .stdin(std::fs::File::open(&file).expect("open"))
            .output()
            .expect("quorate runs")
    };
    let out = check("file");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_ne!(check("git").status.code(), Some(0), "wrong namespace");
}

#[test]
fn public_key_format_and_json_are_exclusive_and_formats_are_listed() {
    let out = quorate(&["public-key", "--key-id", "k", "--format", "pem", "--json"]);
    assert_eq!(out.status.code(), Some(64));
    let out = quorate(&["public-key", "--key-id", "k", "--format", "pgp"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("openssh"),
        "the valid formats are listed: {}",
        stderr(&out)
    );
}

#[test]
fn x509_help_explains_each_option_and_the_ed25519_limit() {
    let out = quorate(&["x509", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in ["self-sign", "sign-csr", "ED25519", "--force", "5 minutes"] {
        assert!(
            help.contains(needle),
            "x509 --help lacks {needle:?}:\n{help}"
        );
    }
    let out = quorate(&["x509", "sign-csr", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--ca-cert",
        "--csr",
        "--days",
        "--intermediate",
        "--path-len",
        "--san",
        "--key-usage",
        "--ext-key-usage",
        "--subject",
        "--out",
        "--force",
        "are ignored",
    ] {
        assert!(
            help.contains(needle),
            "sign-csr --help lacks {needle:?}:\n{help}"
        );
    }
}

/// A CA certificate, a leaf under it and a CSR, made with an rcgen key.
fn x509_files(dir: &std::path::Path) -> (String, String, String) {
    use quorate_client::x509::{issue, self_signed_ca, CaCertificate, CaProfile, Csr};
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
    let now = time::OffsetDateTime::now_utc();
    let ca = self_signed_ca(
        &CaProfile {
            subject: "CN=Test CA".parse().expect("subject"),
            days: 30,
            path_len: None,
        },
        now,
        &key,
    )
    .expect("ca");
    let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "leaf.example");
    let csr_pem = params
        .serialize_request(&leaf_key)
        .expect("csr")
        .pem()
        .expect("pem");
    let leaf = issue(
        &CaCertificate::from_pem(ca.pem.as_bytes()).expect("ca"),
        &Csr::from_pem(csr_pem.as_bytes()).expect("csr"),
        &quorate_client::x509::IssueProfile {
            days: 5,
            ..Default::default()
        },
        now,
        &key,
    )
    .expect("leaf");
    let path = |name: &str, contents: &str| {
        let p = dir.join(name);
        std::fs::write(&p, contents).expect("write");
        p.to_str().expect("utf-8").to_string()
    };
    (
        path("ca.pem", &ca.pem),
        path("leaf.pem", &leaf.pem),
        path("req.csr", &csr_pem),
    )
}

#[test]
fn x509_bad_input_exits_64_before_the_network_naming_the_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, leaf, csr) = x509_files(dir.path());
    let garbage = dir.path().join("garbage.csr");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n").expect("write");
    let garbage = garbage.to_str().expect("utf-8");
    let out_path = dir.path().join("out.pem");
    let out = out_path.to_str().expect("utf-8");
    let self_sign = |subject: &str, days: &str| {
        quorate(&[
            "x509",
            "self-sign",
            "--key-id",
            "k",
            "--subject",
            subject,
            "--days",
            days,
            "--out",
            out,
        ])
    };
    let sign_csr = |ca: &str, csr: &str, extra: &[&str]| {
        let mut args = vec![
            "x509",
            "sign-csr",
            "--key-id",
            "k",
            "--ca-cert",
            ca,
            "--csr",
            csr,
            "--days",
            "1",
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        quorate(&args)
    };
    for (out, needle) in [
        (self_sign("CN=a,XX=b", "1"), "unknown attribute \"XX\""),
        (self_sign("CN=a", "0"), "--days must be between 1 and 9150"),
        (sign_csr(&ca, garbage, &[]), "--csr"),
        (
            sign_csr(&ca, garbage, &[]),
            "garbage.csr: certificate signing request",
        ),
        (
            sign_csr(&leaf, &csr, &[]),
            "leaf.pem: CA certificate: not a CA certificate",
        ),
        (
            sign_csr(&ca, &csr, &["--san", "IP:999.1.1.1"]),
            "invalid subject alternative name",
        ),
        (
            sign_csr(&ca, &csr, &["--key-usage", "everything"]),
            "unknown key usage",
        ),
        (sign_csr(&ca, &csr, &["--path-len", "1"]), "--intermediate"),
        (sign_csr(&ca, &csr, &[]), "no client configuration"),
    ] {
        assert_eq!(out.status.code(), Some(64), "{needle}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{needle}: {}", stderr(&out));
    }
    std::fs::write(&out_path, "keep me").expect("write");
    let refused = sign_csr(&ca, &csr, &[]);
    assert_eq!(refused.status.code(), Some(64));
    assert!(
        stderr(&refused).contains("exists; give --force"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(std::fs::read_to_string(&out_path).expect("read"), "keep me");

    // --out naming an input, even with --force and by another path: refused, the
    // CA certificate kept.
    let ca_before = std::fs::read(&ca).expect("read");
    let via_dot = format!(
        "{}/./{}",
        dir.path().display(),
        std::path::Path::new(&ca)
            .file_name()
            .expect("name")
            .to_string_lossy()
    );
    let out = quorate(&[
        "x509",
        "sign-csr",
        "--key-id",
        "k",
        "--ca-cert",
        &ca,
        "--csr",
        &csr,
        "--days",
        "1",
        "--out",
        &via_dot,
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("is the input"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&ca).expect("read"), ca_before);
}
