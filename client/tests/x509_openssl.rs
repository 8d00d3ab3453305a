//! Certificates from `quorate_client::x509`, signed by an ordinary rcgen Ed25519 key
//! where `quorate x509` signs through the quorum, judged by a verifier we did not
//! write: the `openssl` command. A root, an intermediate issued from an openssl CSR
//! and leaves issued from openssl CSRs (EC P-384, RSA) verify as a chain; the
//! profile `openssl x509 -text` shows is the issuer's, not the CSR's; a tampered
//! certificate fails; refusals (bad CSR signature, a CA certificate of another key,
//! a leaf as CA, a validity past the CA's, pathlen 0) name their reason.
//!
//! openssl must be installed (CI installs it); these tests fail, never skip,
//! without it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use quorate_client::x509::{
    issue, parse_ext_key_usage, parse_key_usage, parse_san, self_signed_ca, CaCertificate,
    CaProfile, Csr, IssueProfile, Issued, X509Error,
};
use rcgen::{KeyPair, PKCS_ED25519};
use time::OffsetDateTime;

/// Runs openssl in `dir`.
fn openssl(dir: &Path, args: &[&str]) -> Output {
    match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run `openssl` ({e}): these tests check certificates with the real \
             openssl command; install it (e.g. apt-get install openssl)"
        ),
    }
}

/// Runs openssl and returns its stdout, failing the test if it fails.
fn openssl_ok(dir: &Path, args: &[&str]) -> String {
    let out = openssl(dir, args);
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ed25519() -> KeyPair {
    KeyPair::generate_for(&PKCS_ED25519).expect("ed25519 key")
}

fn write(dir: &Path, name: &str, issued: &Issued) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, &issued.pem).expect("write pem");
    path
}

fn root(key: &KeyPair, days: u32, path_len: Option<u8>) -> Issued {
    let profile = CaProfile {
        subject: "CN=Quorate Root CA,O=Example,C=EU"
            .parse()
            .expect("subject"),
        days,
        path_len,
    };
    self_signed_ca(&profile, OffsetDateTime::now_utc(), key).expect("root")
}

/// A CSR made by openssl for a new key of `newkey` (e.g. `ed25519`, `rsa:2048`),
/// with extra `req` arguments; returns the CSR's path.
fn openssl_csr(dir: &Path, name: &str, newkey: &[&str], extra: &[&str]) -> PathBuf {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let mut args = vec!["req", "-new", "-nodes", "-keyout", &key, "-out", &csr];
    args.extend_from_slice(newkey);
    args.extend_from_slice(extra);
    openssl_ok(dir, &args);
    dir.join(csr)
}

fn csr(path: &Path) -> Csr {
    Csr::from_pem(&std::fs::read(path).expect("read csr")).expect("csr verifies")
}

fn ca(issued: &Issued) -> CaCertificate {
    CaCertificate::from_pem(issued.pem.as_bytes()).expect("ca certificate")
}

fn text(dir: &Path, cert: &str) -> String {
    openssl_ok(dir, &["x509", "-in", cert, "-noout", "-text"])
}

/// The hex of the line after `label` in `openssl x509 -text` output.
fn key_id_after(text: &str, label: &str) -> String {
    let mut lines = text.lines();
    lines.find(|l| l.contains(label)).expect(label);
    lines.next().expect("key id line").trim().to_string()
}

fn leaf_profile(days: u32) -> IssueProfile {
    IssueProfile {
        days,
        ..IssueProfile::default()
    }
}

/// A leaf for `CN=leaf.example` (an openssl Ed25519 CSR) under `root_cert`, with the
/// default leaf profile for 10 days.
fn leaf_example(d: &Path, root_key: &KeyPair, root_cert: &Issued) -> Issued {
    let leaf_csr = openssl_csr(
        d,
        "leaf",
        &["-newkey", "ed25519"],
        &["-subj", "/CN=leaf.example"],
    );
    issue(
        &ca(root_cert),
        &csr(&leaf_csr),
        &leaf_profile(10),
        OffsetDateTime::now_utc(),
        root_key,
    )
    .expect("leaf")
}

#[test]
fn openssl_verifies_a_root_intermediate_leaf_chain_with_the_issuers_profile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let root_key = ed25519();
    let root_cert = root(&root_key, 365, Some(1));
    write(d, "root.pem", &root_cert);

    let root_text = text(d, "root.pem");
    for needle in [
        "CA:TRUE, pathlen:1",
        "X509v3 Basic Constraints: critical",
        "X509v3 Key Usage: critical",
        "Digital Signature, Certificate Sign, CRL Sign",
        "X509v3 Subject Key Identifier",
        "Signature Algorithm: ED25519",
    ] {
        assert!(
            root_text.contains(needle),
            "root lacks {needle:?}:\n{root_text}"
        );
    }
    let subject = openssl_ok(
        d,
        &[
            "x509", "-in", "root.pem", "-noout", "-subject", "-nameopt", "RFC2253",
        ],
    );
    assert_eq!(subject.trim(), "subject=CN=Quorate Root CA,O=Example,C=EU");
    let serial = openssl_ok(d, &["x509", "-in", "root.pem", "-noout", "-serial"]);
    assert_eq!(
        serial.trim(),
        format!("serial={}", hex::encode_upper(&root_cert.serial))
    );
    assert_eq!(root_cert.serial.len(), 16);
    openssl_ok(d, &["verify", "-CAfile", "root.pem", "root.pem"]);

    // The intermediate's key is an openssl Ed25519 key, which then signs as the
    // intermediate CA through rcgen. Its CSR asks for CA:TRUE without a pathlen;
    // the profile, not the CSR, decides (pathlen 0 under a root with pathlen 1).
    let int_csr = openssl_csr(
        d,
        "int",
        &["-newkey", "ed25519"],
        &[
            "-subj",
            "/CN=Quorate Intermediate",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
    );
    let int_cert = issue(
        &ca(&root_cert),
        &csr(&int_csr),
        &IssueProfile {
            days: 90,
            ca: Some(None),
            ..IssueProfile::default()
        },
        OffsetDateTime::now_utc(),
        &root_key,
    )
    .expect("intermediate");
    write(d, "int.pem", &int_cert);
    let int_text = text(d, "int.pem");
    assert!(int_text.contains("CA:TRUE, pathlen:0"), "{int_text}");
    assert!(
        int_text.contains("Certificate Sign, CRL Sign"),
        "{int_text}"
    );
    assert!(!int_text.contains("Digital Signature"), "{int_text}");
    assert_eq!(
        key_id_after(&int_text, "X509v3 Authority Key Identifier"),
        key_id_after(&root_text, "X509v3 Subject Key Identifier"),
        "the intermediate's AKI is the root's SKI"
    );
    openssl_ok(d, &["verify", "-CAfile", "root.pem", "int.pem"]);

    // The leaf's CSR asks for a SAN and CA:TRUE of its own: neither is granted.
    let leaf_csr = openssl_csr(
        d,
        "leaf",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
        &[
            "-subj",
            "/CN=leaf.example",
            "-addext",
            "subjectAltName=DNS:evil.example",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
    );
    let int_key = KeyPair::from_pem(&std::fs::read_to_string(d.join("int.key")).expect("int key"))
        .expect("openssl ed25519 key loads");
    let leaf = issue(
        &ca(&int_cert),
        &csr(&leaf_csr),
        &IssueProfile {
            days: 30,
            sans: [
                "leaf.example",
                "IP:127.0.0.1",
                "email:ops@leaf.example",
                "URI:spiffe://q/node/1",
            ]
            .iter()
            .map(|s| parse_san(s).expect("san"))
            .collect(),
            ..leaf_profile(30)
        },
        OffsetDateTime::now_utc(),
        &int_key,
    )
    .expect("leaf");
    write(d, "leaf.pem", &leaf);
    let out = openssl_ok(
        d,
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "int.pem",
            "-purpose",
            "sslserver",
            "leaf.pem",
        ],
    );
    assert_eq!(out.trim(), "leaf.pem: OK");
    let leaf_text = text(d, "leaf.pem");
    for needle in [
        "CA:FALSE",
        "DNS:leaf.example, IP Address:127.0.0.1, email:ops@leaf.example, URI:spiffe://q/node/1",
        "TLS Web Server Authentication, TLS Web Client Authentication",
        "X509v3 Key Usage: critical",
        "Digital Signature",
        "NIST CURVE: P-384",
        "Subject: CN = leaf.example",
        "Issuer: CN = Quorate Intermediate",
    ] {
        assert!(
            leaf_text.contains(needle),
            "leaf lacks {needle:?}:\n{leaf_text}"
        );
    }
    assert!(!leaf_text.contains("evil.example"), "{leaf_text}");
    assert!(!leaf_text.contains("Key Encipherment"), "{leaf_text}");
    assert_eq!(
        key_id_after(&leaf_text, "X509v3 Authority Key Identifier"),
        key_id_after(&int_text, "X509v3 Subject Key Identifier"),
    );
    // Without the intermediate the chain does not build: the leaf is not the root's.
    assert!(!openssl(d, &["verify", "-CAfile", "root.pem", "leaf.pem"])
        .status
        .success());

    // An RSA leaf straight from the root, its key usages and subject chosen by the
    // issuer.
    let rsa_csr = openssl_csr(
        d,
        "rsa",
        &["-newkey", "rsa:2048"],
        &["-subj", "/CN=ignored"],
    );
    let rsa_leaf = issue(
        &ca(&root_cert),
        &csr(&rsa_csr),
        &IssueProfile {
            subject: Some("CN=Code Signer,O=Example".parse().expect("subject")),
            key_usages: Some(vec![
                parse_key_usage("digitalSignature").expect("ku"),
                parse_key_usage("keyEncipherment").expect("ku"),
            ]),
            ext_key_usages: Some(vec![parse_ext_key_usage("codeSigning").expect("eku")]),
            ..leaf_profile(10)
        },
        OffsetDateTime::now_utc(),
        &root_key,
    )
    .expect("rsa leaf");
    write(d, "rsa.pem", &rsa_leaf);
    openssl_ok(d, &["verify", "-CAfile", "root.pem", "rsa.pem"]);
    let rsa_text = text(d, "rsa.pem");
    for needle in [
        "Digital Signature, Key Encipherment",
        "Code Signing",
        "Subject: O = Example, CN = Code Signer",
        "Public-Key: (2048 bit)",
    ] {
        assert!(
            rsa_text.contains(needle),
            "rsa leaf lacks {needle:?}:\n{rsa_text}"
        );
    }
    assert!(!rsa_text.contains("ignored"), "{rsa_text}");
}

/// `cert` with one byte changed at `offset` from its DER's start (negative: from
/// the end), written back as PEM to `name`.
fn tamper(dir: &Path, cert: &Issued, name: &str, at: impl Fn(&[u8]) -> usize) {
    let mut der = cert.der.clone();
    let i = at(&der);
    der[i] ^= 0x01;
    let der_name = format!("{name}.der");
    std::fs::write(dir.join(&der_name), &der).expect("write der");
    openssl_ok(
        dir,
        &["x509", "-inform", "DER", "-in", &der_name, "-out", name],
    );
}

#[test]
fn tampered_signature_or_tbs_fails_openssl_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let root_key = ed25519();
    let root_cert = root(&root_key, 30, None);
    write(d, "root.pem", &root_cert);
    let leaf = leaf_example(d, &root_key, &root_cert);
    write(d, "leaf.pem", &leaf);
    openssl_ok(d, &["verify", "-CAfile", "root.pem", "leaf.pem"]);

    // The signature is the last 64 bytes of the DER.
    tamper(d, &leaf, "sig.pem", |der| der.len() - 1);
    // "leaf.example" in the subject is inside the TBS.
    tamper(d, &leaf, "tbs.pem", |der| {
        der.windows(12)
            .position(|w| w == b"leaf.example")
            .expect("CN in the DER")
    });
    for name in ["sig.pem", "tbs.pem"] {
        let out = openssl(d, &["verify", "-CAfile", "root.pem", name]);
        assert!(!out.status.success(), "{name} verified after tampering");
        let err = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("signature failure"), "{name}: {err}");
    }
}

#[test]
fn csr_whose_self_signature_is_broken_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let path = openssl_csr(
        d,
        "req",
        &["-newkey", "ed25519"],
        &["-subj", "/CN=leaf.example"],
    );
    assert!(Csr::from_pem(&std::fs::read(&path).expect("read")).is_ok());
    let der = openssl_ok(
        d,
        &[
            "req", "-in", "req.csr", "-outform", "DER", "-out", "req.der",
        ],
    );
    assert!(der.is_empty());
    let mut der = std::fs::read(d.join("req.der")).expect("der");
    let last = der.len() - 1;
    der[last] ^= 0x01;
    std::fs::write(d.join("bad.der"), &der).expect("write");
    openssl_ok(
        d,
        &["req", "-inform", "DER", "-in", "bad.der", "-out", "bad.csr"],
    );
    let err = Csr::from_pem(&std::fs::read(d.join("bad.csr")).expect("read")).expect_err("refused");
    assert!(matches!(err, X509Error::Csr(_)), "{err:?}");
    assert!(
        err.to_string().contains("self-signature does not verify"),
        "{err}"
    );
    assert!(Csr::from_pem(b"not a csr").is_err());
}

#[test]
fn ca_certificate_of_another_key_is_refused_before_signing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let root_cert = root(&ed25519(), 30, None);
    let leaf_csr = openssl_csr(
        d,
        "leaf",
        &["-newkey", "ed25519"],
        &["-subj", "/CN=leaf.example"],
    );
    let err = issue(
        &ca(&root_cert),
        &csr(&leaf_csr),
        &leaf_profile(10),
        OffsetDateTime::now_utc(),
        &ed25519(),
    )
    .expect_err("another key");
    assert!(matches!(err, X509Error::KeyMismatch { .. }), "{err:?}");
    assert!(
        err.to_string().contains("is not the signing key's"),
        "{err}"
    );
}

#[test]
fn leaf_certificate_is_not_accepted_as_a_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let root_key = ed25519();
    let root_cert = root(&root_key, 30, None);
    let leaf = leaf_example(d, &root_key, &root_cert);
    let err = CaCertificate::from_pem(leaf.pem.as_bytes()).expect_err("leaf is no CA");
    assert!(err.to_string().contains("not a CA certificate"), "{err}");
}

#[test]
fn validity_past_the_ca_and_a_ca_under_pathlen_0_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let root_key = ed25519();
    let root_cert = root(&root_key, 10, Some(0));
    let leaf_csr = openssl_csr(
        d,
        "leaf",
        &["-newkey", "ed25519"],
        &["-subj", "/CN=leaf.example"],
    );
    let now = OffsetDateTime::now_utc();
    let err = issue(
        &ca(&root_cert),
        &csr(&leaf_csr),
        &leaf_profile(11),
        now,
        &root_key,
    )
    .expect_err("outlives the CA");
    assert!(
        err.to_string().contains("would outlive the CA certificate"),
        "{err}"
    );
    assert!(err.to_string().contains("at most 9 days"), "{err}");

    let err = issue(
        &ca(&root_cert),
        &csr(&leaf_csr),
        &IssueProfile {
            ca: Some(None),
            ..leaf_profile(5)
        },
        now,
        &root_key,
    )
    .expect_err("pathlen 0");
    assert!(err.to_string().contains("pathlen 0"), "{err}");

    // keyCertSign on a leaf would be a CA in all but name.
    let err = issue(
        &ca(&root_cert),
        &csr(&leaf_csr),
        &IssueProfile {
            key_usages: Some(vec![parse_key_usage("keyCertSign").expect("ku")]),
            ..leaf_profile(5)
        },
        now,
        &root_key,
    )
    .expect_err("keyCertSign leaf");
    assert!(err.to_string().contains("keyCertSign is for CA"), "{err}");
}

#[test]
fn a_csr_subject_with_other_attributes_or_control_characters_is_certified_only_when_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let root_key = ed25519();
    let root_cert = root(&root_key, 30, None);
    let issue_for = |csr_path: &Path, subject: Option<&str>| {
        issue(
            &ca(&root_cert),
            &csr(csr_path),
            &IssueProfile {
                subject: subject.map(|s| s.parse().expect("subject")),
                ..leaf_profile(10)
            },
            OffsetDateTime::now_utc(),
            &root_key,
        )
    };
    let email = openssl_csr(
        d,
        "email",
        &["-newkey", "ed25519"],
        &["-subj", "/CN=leaf.example/emailAddress=admin@bank.example"],
    );
    let control = openssl_csr(
        d,
        "control",
        &["-newkey", "ed25519"],
        &["-utf8", "-subj", "/CN=good.example\u{1}.evil.example"],
    );
    for (path, why) in [(&email, "attribute"), (&control, "control character")] {
        let err = issue_for(path, None).expect_err("certified unseen");
        assert!(
            err.to_string().contains(why) && err.to_string().contains("--subject"),
            "{err}"
        );
        let issued = issue_for(path, Some("CN=leaf.example")).expect("replaced subject");
        let (subject, sans) = quorate_client::x509::describe(&issued.der).expect("describe");
        assert_eq!(subject, "CN=leaf.example");
        assert!(sans.is_empty());
    }
    // A control character in --subject itself, escaped or not.
    for bad in ["CN=a\\00b", "CN=a\nb"] {
        let err = bad.parse::<quorate_client::x509::Subject>().expect_err(bad);
        assert!(err.to_string().contains("control character"), "{err}");
    }
}

#[test]
fn a_self_issued_ca_certificate_whose_signature_does_not_verify_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let root_key = ed25519();
    let root_cert = root(&root_key, 30, Some(0));
    ca(&root_cert);
    // The same certificate with another name in its signed part, as issuer and
    // subject alike (so still self-issued): same key, a signature that no longer
    // verifies. An edit of its path length or lifetime is caught the same way.
    let mut der = root_cert.der.clone();
    let name = b"Quorate Root CA";
    let mut edited_names = 0;
    while let Some(at) = der.windows(name.len()).position(|w| w == name) {
        der[at] = b'P';
        edited_names += 1;
    }
    assert_eq!(edited_names, 2, "issuer and subject");
    std::fs::write(d.join("edited.der"), &der).expect("write");
    openssl_ok(
        d,
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            "edited.der",
            "-out",
            "edited.pem",
        ],
    );
    let edited = std::fs::read(d.join("edited.pem")).expect("read");
    let err = CaCertificate::from_pem(&edited).expect_err("edited root accepted");
    assert!(err.to_string().contains("self-issued"), "{err}");
}

#[test]
fn describe_shows_the_subject_most_specific_first_and_the_sans() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let root_key = ed25519();
    let root_cert = root(&root_key, 30, None);
    let (subject, sans) = quorate_client::x509::describe(&root_cert.der).expect("describe");
    assert_eq!(subject, "CN=Quorate Root CA,O=Example,C=EU");
    assert!(sans.is_empty());
    let leaf_csr = openssl_csr(d, "leaf", &["-newkey", "ed25519"], &["-subj", "/CN=svc"]);
    let leaf = issue(
        &ca(&root_cert),
        &csr(&leaf_csr),
        &IssueProfile {
            sans: ["svc.example", "IP:10.0.0.7", "email:ops@example.org"]
                .iter()
                .map(|s| parse_san(s).expect("san"))
                .collect(),
            ..leaf_profile(10)
        },
        OffsetDateTime::now_utc(),
        &root_key,
    )
    .expect("leaf");
    let (_, sans) = quorate_client::x509::describe(&leaf.der).expect("describe");
    assert_eq!(
        sans,
        ["DNS:svc.example", "IP:10.0.0.7", "email:ops@example.org"]
    );
}
