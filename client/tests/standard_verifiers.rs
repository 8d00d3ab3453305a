//! The encodings of `quorate public-key --format`, SSH signatures and JWS, checked by
//! the standard tools people will use on them: openssl, ssh-keygen and PyJWT (Debian
//! `openssl`, `openssh-client`, `python3-jwt`). The signatures here come from a
//! local ed25519-dalek key through the same library functions the CLI uses; the
//! testnet's tests make them with a real quorum. A tampered artifact must fail each
//! verifier.

use std::path::Path;
use std::process::{Command, Output};

use ed25519_dalek::{Signer, SigningKey};
use quorate_client::key_formats::{self, KeyFormat};
use quorate_client::{jws, sshsig};
use quorate_frost::Ciphersuite;

fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} must be installed (CI installs it): {e}"));
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("wait")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn ed25519_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

/// Debian's python3, which has python3-jwt; a pyenv python3 on PATH may not.
fn python() -> String {
    std::env::var("QUORATE_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

#[test]
fn openssl_reads_the_ed25519_pem_and_der_and_verifies_a_signature_under_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = ed25519_key();
    let public = key.verifying_key().to_bytes();
    let pem = key_formats::encode(Ciphersuite::Ed25519, &public, "k", KeyFormat::Pem).expect("pem");
    let der = key_formats::encode(Ciphersuite::Ed25519, &public, "k", KeyFormat::Der).expect("der");
    let pem_path = dir.path().join("key.pem");
    std::fs::write(&pem_path, &pem).expect("write");

    // openssl parses the PEM and re-encodes it to exactly our DER.
    let out = run(
        "openssl",
        &["pkey", "-pubin", "-in", path(&pem_path), "-outform", "DER"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(out.stdout, der);
    let out = run(
        "openssl",
        &["pkey", "-pubin", "-in", path(&pem_path), "-noout", "-text"],
        None,
    );
    assert!(text(&out).contains("ED25519 Public-Key"), "{}", text(&out));

    let message = b"release v1.2.3";
    let msg_path = dir.path().join("msg");
    std::fs::write(&msg_path, message).expect("write");
    let sig_path = dir.path().join("sig");
    std::fs::write(&sig_path, key.sign(message).to_bytes()).expect("write");
    let verify = |msg: &Path| {
        run(
            "openssl",
            &[
                "pkeyutl",
                "-verify",
                "-pubin",
                "-inkey",
                path(&pem_path),
                "-rawin",
                "-in",
                path(msg),
                "-sigfile",
                path(&sig_path),
            ],
            None,
        )
    };
    let out = verify(&msg_path);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(&msg_path, b"release v1.2.4").expect("write");
    assert!(
        !verify(&msg_path).status.success(),
        "a tampered message verifies"
    );
}

#[test]
fn openssl_reads_the_secp256k1_spki_as_the_same_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = k256::SecretKey::from_slice(&[9u8; 32]).expect("scalar");
    let compressed =
        k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&secret.public_key(), true);
    let uncompressed =
        k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&secret.public_key(), false);
    let pem = key_formats::encode(
        Ciphersuite::Secp256k1,
        compressed.as_bytes(),
        "k",
        KeyFormat::Pem,
    )
    .expect("pem");
    let pem_path = dir.path().join("key.pem");
    std::fs::write(&pem_path, &pem).expect("write");
    let out = run(
        "openssl",
        &["pkey", "-pubin", "-in", path(&pem_path), "-noout", "-text"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("secp256k1"), "{shown}");
    let hex_shown: String = shown
        .lines()
        .filter(|l| l.starts_with("    "))
        .flat_map(|l| l.trim().split(':'))
        .collect();
    assert!(
        hex_shown.contains(&hex::encode(uncompressed.as_bytes())),
        "{shown}"
    );

    let jwk = key_formats::jwk(Ciphersuite::Secp256k1, compressed.as_bytes(), "k").expect("jwk");
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "secp256k1");
    assert!(
        jwk.get("alg").is_none(),
        "no JOSE algorithm makes FROST Schnorr signatures"
    );
}

#[test]
fn forms_a_key_type_has_no_standard_for_are_refused_with_the_reason() {
    let xonly = [2u8; 32];
    for format in [
        KeyFormat::Pem,
        KeyFormat::Der,
        KeyFormat::Jwk,
        KeyFormat::Openssh,
    ] {
        let err = key_formats::encode(Ciphersuite::Secp256k1Tr, &xonly, "k", format)
            .expect_err("no standard form for x-only keys");
        assert!(err.to_string().contains("x-only"), "{err}");
    }
    for format in [KeyFormat::Raw, KeyFormat::Hex] {
        key_formats::encode(Ciphersuite::Secp256k1Tr, &xonly, "k", format).expect("raw and hex");
    }
    let point = k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
        &k256::SecretKey::from_slice(&[9u8; 32])
            .expect("scalar")
            .public_key(),
        true,
    );
    let err = key_formats::encode(
        Ciphersuite::Secp256k1,
        point.as_bytes(),
        "k",
        KeyFormat::Openssh,
    )
    .expect_err("no OpenSSH secp256k1 key type");
    assert!(err.to_string().contains("OpenSSH"), "{err}");
    assert!(jws::header(Ciphersuite::Secp256k1, "k", None).is_err());
    assert!(sshsig::armor(Ciphersuite::Secp256k1, point.as_bytes(), "file", &[0; 64]).is_err());
    // A key of the wrong length for its ciphersuite is refused, not encoded.
    assert!(key_formats::encode(Ciphersuite::Ed25519, &[1; 31], "k", KeyFormat::Hex).is_err());
}

#[test]
fn ssh_keygen_verifies_an_sshsig_and_refuses_a_tampered_file_or_other_namespace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = ed25519_key();
    let public = key.verifying_key().to_bytes();
    let line = key_formats::openssh(Ciphersuite::Ed25519, &public, "release-key").expect("openssh");
    let parsed = sshsig::parse_openssh_public_key(&line).expect("parses");
    assert_eq!(parsed.key, public);
    assert_eq!(parsed.comment.as_deref(), Some("release-key"));
    let pub_path = dir.path().join("key.pub");
    std::fs::write(&pub_path, format!("{line}\n")).expect("write");
    let out = run("ssh-keygen", &["-l", "-f", path(&pub_path)], None);
    assert!(
        out.status.success(),
        "ssh-keygen reads the key: {}",
        text(&out)
    );
    assert!(text(&out).contains("ED25519"), "{}", text(&out));

    let message = b"tarball bytes";
    let data = sshsig::signed_data("file", message).expect("signed data");
    let armored = sshsig::armor(
        Ciphersuite::Ed25519,
        &public,
        "file",
        &key.sign(&data).to_bytes(),
    )
    .expect("armor");
    let sig_path = dir.path().join("release.tar.sig");
    std::fs::write(&sig_path, &armored).expect("write");
    let allowed = dir.path().join("allowed_signers");
    std::fs::write(&allowed, format!("release@example.org {line}\n")).expect("write");
    let verify = |namespace: &str, message: &[u8]| {
        run(
            "ssh-keygen",
            &[
                "-Y",
                "verify",
                "-f",
                path(&allowed),
                "-I",
                "release@example.org",
                "-n",
                namespace,
                "-s",
                path(&sig_path),
            ],
            Some(message),
        )
    };
    let out = verify("file", message);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Good \"file\" signature"),
        "{}",
        text(&out)
    );
    assert!(
        !verify("file", b"tarball bytes!").status.success(),
        "tampered message"
    );
    assert!(!verify("git", message).status.success(), "other namespace");

    assert!(sshsig::signed_data("", message).is_err(), "empty namespace");
    assert!(
        sshsig::signed_data("a b", message).is_err(),
        "namespace with a space"
    );
}

#[test]
fn parse_openssh_public_key_reads_ssh_keygen_files_and_git_literal_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("id");
    let out = run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "me",
            "-f",
            path(&key_path),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let line = std::fs::read_to_string(dir.path().join("id.pub")).expect("pub");
    let parsed = sshsig::parse_openssh_public_key(&line).expect("parses ssh-keygen's line");
    assert_eq!(parsed.comment.as_deref(), Some("me"));
    let again = key_formats::openssh(Ciphersuite::Ed25519, &parsed.key, "me").expect("encode");
    assert_eq!(
        again.split_whitespace().nth(1),
        line.split_whitespace().nth(1)
    );
    assert_eq!(
        sshsig::parse_openssh_public_key(&format!("key::{}", line.trim())).expect("literal"),
        parsed
    );
    let out = run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ecdsa",
            "-N",
            "",
            "-f",
            path(&dir.path().join("ec")),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let ec = std::fs::read_to_string(dir.path().join("ec.pub")).expect("pub");
    let err = sshsig::parse_openssh_public_key(&ec).expect_err("not ed25519");
    assert!(err.contains("ecdsa"), "{err}");
    assert!(sshsig::parse_openssh_public_key("ssh-ed25519 !!!").is_err());
    assert!(sshsig::parse_openssh_public_key("").is_err());
    // A secret file given by mistake (an age identity) is not quoted back.
    let secret = "# created: 2026-12-07\n# public key: age1xyz\nAGE-SECRET-KEY-1QQQQSECRET\n";
    let err = sshsig::parse_openssh_public_key(secret).expect_err("not a key line");
    assert!(
        !err.contains("SECRET"),
        "the file's content is quoted: {err}"
    );
}

#[test]
fn pyjwt_verifies_the_jws_with_the_jwk_and_the_pem_and_refuses_a_tampered_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = ed25519_key();
    let public = key.verifying_key().to_bytes();
    let claims = br#"{"sub":"deploy-bot","aud":"releases","exp":4102444800}"#;
    let header = jws::header(Ciphersuite::Ed25519, "release-key", Some("JWT")).expect("header");
    let input = jws::signing_input(&header, claims).expect("input");
    let token = jws::compact(&input, &key.sign(input.as_bytes()).to_bytes()).expect("compact");
    let jwk = key_formats::jwk(Ciphersuite::Ed25519, &public, "release-key").expect("jwk");
    let pem = String::from_utf8(
        key_formats::encode(Ciphersuite::Ed25519, &public, "k", KeyFormat::Pem).expect("pem"),
    )
    .expect("utf-8");
    std::fs::write(dir.path().join("key.jwk"), jwk.to_string()).expect("write");
    std::fs::write(dir.path().join("key.pem"), &pem).expect("write");

    let script = r#"
import json, sys, jwt
token, jwk_path, pem_path = sys.argv[1], sys.argv[2], sys.argv[3]
header = jwt.get_unverified_header(token)
assert header["alg"] == "EdDSA" and header["kid"] == "release-key", header
jwk_key = jwt.PyJWK(json.load(open(jwk_path))).key
claims = jwt.decode(token, jwk_key, algorithms=["EdDSA"], audience="releases")
assert claims["sub"] == "deploy-bot", claims
claims = jwt.decode(token, open(pem_path).read(), algorithms=["EdDSA"], audience="releases")
print("verified", claims["sub"])
"#;
    let verify = |token: &str| {
        run(
            &python(),
            &[
                "-c",
                script,
                token,
                path(&dir.path().join("key.jwk")),
                path(&dir.path().join("key.pem")),
            ],
            None,
        )
    };
    let out = verify(&token);
    assert!(
        out.status.success(),
        "PyJWT (Debian python3-jwt): {}",
        text(&out)
    );
    assert!(text(&out).contains("verified deploy-bot"), "{}", text(&out));

    // Another payload under the same signature.
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged =
        jws::signing_input(&header, br#"{"sub":"attacker","aud":"releases"}"#).expect("input");
    let forged_payload = forged.split('.').nth(1).expect("payload").to_string();
    parts[1] = &forged_payload;
    let out = verify(&parts.join("."));
    assert!(
        !out.status.success(),
        "a tampered JWT verifies: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("InvalidSignatureError"),
        "{}",
        text(&out)
    );

    assert!(
        jws::signing_input(&header, b"not json").is_err(),
        "a JWT's payload is claims"
    );
    assert!(
        jws::signing_input(&header, b"[1]").is_err(),
        "claims are an object"
    );
    let plain = jws::header(Ciphersuite::Ed25519, "k", None).expect("header");
    jws::signing_input(&plain, b"any bytes").expect("a plain JWS signs any payload");
}
