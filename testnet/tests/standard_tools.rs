//! docs/standard-tools.md against a real local network: every `sh` block of the doc
//! runs verbatim, in order, in one shell (the network's client.toml as
//! testnet-data/client.toml, the built binaries as target/release), so the
//! standard verifiers it calls (openssl, ssh-keygen, git, PyJWT) accept what the
//! quorum signed. Then each artifact is tampered with and each verifier must refuse
//! it, and the EU key's artifacts need its EU quorum or an approval token.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::bin_dir;

const DOC: &str = include_str!("../../docs/standard-tools.md");

/// The doc's `sh` blocks, in order.
fn doc_commands() -> String {
    let mut script = String::new();
    let mut in_block = false;
    for line in DOC.lines() {
        match (in_block, line.trim_end()) {
            (false, "```sh") => in_block = true,
            (true, "```") => in_block = false,
            (true, line) => {
                script.push_str(line);
                script.push('\n');
            }
            _ => {}
        }
    }
    assert!(
        !in_block,
        "an sh block of docs/standard-tools.md is not closed"
    );
    script
}

/// A shell in `dir` as a user's would be: Debian's tools first (python3 with
/// python3-jwt), git without the machine's global configuration.
fn shell(dir: &Path, script: &str) -> Output {
    let path = format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default());
    Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("PATH", path)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("QUORATE_CONFIG")
        .env_remove("QUORATE_APPROVAL_TOKEN")
        .output()
        .expect("bash runs")
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(out: Output, what: &str) -> String {
    assert!(!out.status.success(), "{what} was accepted: {}", text(&out));
    text(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_standard_tool_commands_work_and_tampered_artifacts_fail_every_verifier() {
    let mut net = common::start_default().await;
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path();
    std::fs::create_dir_all(root.join("target")).expect("mkdir");
    std::os::unix::fs::symlink(bin_dir(), root.join("target/release")).expect("symlink");
    std::os::unix::fs::symlink(&net.net.dir, root.join("testnet-data")).expect("symlink");

    let out = ok(shell(root, &doc_commands()));
    assert!(out.contains("ED25519 Public-Key"), "{out}");
    assert!(
        out.contains("'sub': 'deploy-bot'"),
        "PyJWT printed the claims: {out}"
    );
    let demo = root.join("standard-tools-demo");
    // The checks below run in the same environment the doc's first block sets up.
    let eu = &format!(
        "export PATH=\"{0}/target/release:$PATH\" QUORATE_CONFIG=\"{0}/testnet-data/client.toml\"\n",
        root.display()
    );

    // The PEM, JWK and OpenSSH line hold the key the network attests.
    let key_hex = ok(shell(
        root,
        "target/release/quorate --config testnet-data/client.toml public-key --key-id demo-ed25519 --format hex",
    ));
    let der = ok(shell(
        &demo,
        "openssl pkey -pubin -in demo-ed25519.pem -outform DER | od -An -tx1 | tr -d ' \\n'",
    ));
    assert!(der.ends_with(key_hex.trim()), "{der} / {key_hex}");

    // X.509: the profile openssl shows; a certificate with one byte of its signed
    // part changed fails openssl verify.
    let leaf = ok(shell(&demo, "openssl x509 -in leaf.pem -noout -text"));
    for needle in [
        "Issuer: C = DE, O = Example Corp, CN = Quorate Demo Root CA",
        "Subject: CN = service.example.org",
        "Signature Algorithm: ED25519",
        "CA:FALSE",
        "DNS:service.example.org, IP Address:10.0.0.7",
        "TLS Web Server Authentication, TLS Web Client Authentication",
    ] {
        assert!(leaf.contains(needle), "{needle:?} not in:\n{leaf}");
    }
    let root_text = ok(shell(&demo, "openssl x509 -in root.pem -noout -text"));
    assert!(root_text.contains("CA:TRUE, pathlen:1"), "{root_text}");
    let root_key = ok(shell(&demo, "openssl x509 -in root.pem -noout -pubkey"));
    assert_eq!(
        root_key,
        std::fs::read_to_string(demo.join("demo-ed25519.pem")).expect("pem"),
        "the CA's key is the threshold key"
    );
    let der = ok(shell(
        &demo,
        "openssl x509 -in leaf.pem -outform DER | od -An -v -tx1 | tr -d ' \\n'",
    ));
    let mut der = hex::decode(der.trim()).expect("hex");
    // Inside the TBS: a byte of the subject's common name.
    let at = der
        .windows(b"service.example.org".len())
        .position(|w| w == b"service.example.org")
        .expect("CN in the DER");
    der[at] ^= 0x01;
    std::fs::write(demo.join("tampered.der"), &der).expect("write");
    let err = refused(
        shell(
            &demo,
            "openssl x509 -inform DER -in tampered.der -out tampered.pem && openssl verify -CAfile root.pem tampered.pem",
        ),
        "a tampered certificate",
    );
    assert!(err.contains("signature failure"), "{err}");

    // SSH: another file under the same signature.
    std::fs::write(demo.join("release.txt"), "release 1.0.1\n").expect("write");
    let err = refused(
        shell(
            &demo,
            "ssh-keygen -Y verify -f allowed_signers -I release@example.org -n file -s release.txt.sig < release.txt",
        ),
        "a tampered release file",
    );
    assert!(
        err.contains("verify failed") || err.contains("incorrect signature"),
        "{err}"
    );

    // git: the signed commit with another message and the same signature.
    let repo = demo.join("signed-repo");
    let good = ok(shell(&repo, &format!("{eu}git verify-commit HEAD 2>&1")));
    assert!(good.contains("Good \"git\" signature"), "{good}");
    let forged = ok(shell(
        &repo,
        "git cat-file commit HEAD | sed 's/First commit/Forged commit/' | git hash-object -t commit -w --stdin",
    ));
    refused(
        shell(&repo, &format!("{eu}git verify-commit {}", forged.trim())),
        "a forged commit",
    );
    // The key given literally, as git also allows: git writes it to a temporary
    // file and adds -U, which the quorum takes as well.
    let out = ok(shell(
        &repo,
        &format!(
            "{eu}git config user.signingkey \"key::$(cat ../demo-ed25519.pub)\"\n\
             echo more >> README && git commit -q -S -am \"Second commit, literal key\"\n\
             git verify-commit HEAD 2>&1"
        ),
    ));
    assert!(out.contains("Good \"git\" signature"), "{out}");

    // JWS: another payload under the same signature.
    let jwt_check = r#"python3 - token.jwt demo-ed25519.jwk <<'PY'
import json, sys, jwt
token = open(sys.argv[1]).read().strip()
key = jwt.PyJWK(json.load(open(sys.argv[2]))).key
print(jwt.decode(token, key, algorithms=["EdDSA"], audience="releases"))
PY"#;
    let token = std::fs::read_to_string(demo.join("token.jwt")).expect("token");
    let parts: Vec<&str> = token.trim().split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let header: serde_json::Value =
        serde_json::from_slice(&base64_url(parts[0])).expect("header JSON");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], "demo-ed25519");
    let forged_claims = base64_url_encode(br#"{"sub":"attacker","aud":"releases"}"#);
    std::fs::write(
        demo.join("token.jwt"),
        format!("{}.{}.{}", parts[0], forged_claims, parts[2]),
    )
    .expect("write");
    let err = refused(shell(&demo, jwt_check), "a tampered JWT");
    assert!(err.contains("InvalidSignatureError"), "{err}");

    // A key with no SSH form is refused before the network is asked to sign: the
    // coordinator counts no request for it.
    let sign_requests = || async {
        let text = quorate_transport::metrics::scrape(&net.net.coordinator_metrics)
            .await
            .expect("coordinator metrics");
        text.lines()
            .filter(|l| l.starts_with("quorate_coordinator_requests_total{rpc=\"Sign\"}"))
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
    };
    let before = sign_requests().await;
    assert_eq!(before.len(), 1, "the Sign counter is exported: {before:?}");
    let err = refused(
        shell(
            &demo,
            &format!("{eu}quorate ssh sign --key-id demo-taproot -n file release.txt"),
        ),
        "an SSH signature by a BIP340 key",
    );
    assert!(err.contains("x-only"), "{err}");
    assert_eq!(sign_requests().await, before, "a signature was asked for");

    // The EU key: without two EU nodes its artifacts need an approval token.
    net.kill_node("node-1").await.expect("kill");
    net.kill_node("node-2").await.expect("kill");
    ok(shell(
        &demo,
        &format!("{eu}quorate public-key --key-id eu-payments --format jwk > eu.jwk"),
    ));
    let err = refused(
        shell(
            &demo,
            &format!("{eu}quorate jws sign --key-id eu-payments --payload claims.json --typ JWT"),
        ),
        "an EU-key JWS without its EU quorum",
    );
    assert!(err.contains("approval"), "{err}");
    let sig_before = std::fs::read(demo.join("release.txt.sig")).expect("sig");
    let err = refused(
        shell(
            &demo,
            &format!("{eu}quorate ssh sign --key-id eu-payments -n file release.txt"),
        ),
        "an EU-key SSH signature without its EU quorum",
    );
    assert!(err.contains("approval"), "{err}");
    assert_eq!(
        std::fs::read(demo.join("release.txt.sig")).expect("sig"),
        sig_before,
        "a refused signature leaves the old file as it was"
    );

    let err = refused(
        shell(
            &demo,
            &format!("{eu}quorate x509 self-sign --key-id eu-payments --subject \"CN=EU Root\" --days 30 --out eu-root.pem"),
        ),
        "an EU-key CA certificate without its EU quorum",
    );
    assert!(err.contains("approval"), "{err}");
    assert!(
        !demo.join("eu-root.pem").exists(),
        "nothing partial is written"
    );

    let approval = net
        .approve("eu-payments", 600, "eu-central and eu-west are down")
        .expect("approval");
    std::fs::write(demo.join("approval.token"), approval).expect("write");
    ok(shell(
        &demo,
        &format!("{eu}quorate jws sign --key-id eu-payments --payload claims.json --typ JWT --approval-token approval.token > token.jwt"),
    ));
    let out = ok(shell(
        &demo,
        &jwt_check.replace("demo-ed25519.jwk", "eu.jwk"),
    ));
    assert!(out.contains("deploy-bot"), "{out}");
    ok(shell(
        &demo,
        &format!(
            "{eu}quorate public-key --key-id eu-payments --format openssh > eu.pub\n\
             echo \"eu@example.org $(cat eu.pub)\" > eu_allowed_signers\n\
             QUORATE_APPROVAL_TOKEN=approval.token quorate -Y sign -n file -f eu.pub release.txt\n\
             ssh-keygen -Y verify -f eu_allowed_signers -I eu@example.org -n file -s release.txt.sig < release.txt\n\
             quorate x509 self-sign --key-id eu-payments --subject \"CN=EU Root\" --days 30 --out eu-root.pem --approval-token approval.token\n\
             openssl verify -CAfile eu-root.pem eu-root.pem"
        ),
    ));
}

fn base64_url(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("base64url")
}

fn base64_url_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
