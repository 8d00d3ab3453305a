//! Audit logs an auditor can hold to their history, over real node processes: a
//! node's log is checked against its signed checkpoint and against the checkpoint
//! the auditor saved last time (`quorate-ceremony audit verify --state`). A node
//! stopped and its log truncated, rewritten with the chain recomputed, or deleted,
//! then restarted and signing again, fails the next audit naming the node with
//! the documented exit code; an honest node whose log grew verifies.

mod common;

use std::path::Path;
use std::process::Output;

use common::audit_log::{
    edit_and_rechain, log_lines, records_of, rewrite_and_rechain, sign, write_lines,
};
use common::{bin_dir, start_default};
use quorate_keys::audit::AuditRecord;
use quorate_testnet::network::LocalNetwork;
use quorate_transport::identity::Role;

/// `quorate-ceremony audit VERB` as the network's auditor (its CA, certificate
/// and key given); the caller adds the nodes and options.
fn auditor(net: &LocalNetwork, verb: &str) -> std::process::Command {
    let tls = net.issue(Role::Auditor, "auditor").unwrap();
    let mut command = std::process::Command::new(bin_dir().join("quorate-ceremony"));
    command
        .args(["audit", verb, "--ca"])
        .arg(&tls.ca)
        .arg("--cert")
        .arg(&tls.cert)
        .arg("--key")
        .arg(&tls.key);
    command
}

fn audit_verify(net: &LocalNetwork, node_id: &str, state: &Path) -> Output {
    auditor(net, "verify")
        .args(["--node", node_id, "--endpoint"])
        .arg(&net.node(node_id).unwrap().endpoint)
        .arg("--state")
        .arg(state)
        .output()
        .unwrap()
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn truncated_rewritten_and_deleted_logs_fail_the_next_audit_and_a_grown_one_verifies() {
    let mut net = start_default().await;
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().join("audit-state.json");
    sign(&net, "first", 2).await;
    for node in ["node-1", "node-2", "node-3", "node-4"] {
        let out = audit_verify(&net, node, &state);
        assert!(out.status.success(), "{node}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("signed checkpoint of"),
            "{}",
            show(&out)
        );
    }
    // With node-4 and node-5 down, node-1, node-2 and node-3 sign every message:
    // their logs grow, and the next audit proves the growth consistent.
    net.stop_node("node-4").await.unwrap();
    net.stop_node("node-5").await.unwrap();
    sign(&net, "before", 6).await;
    for node in ["node-1", "node-2", "node-3"] {
        let out = audit_verify(&net, node, &state);
        assert!(out.status.success(), "{node}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("consistent with the checkpoint of"),
            "{}",
            show(&out)
        );
    }
    let saved = std::fs::read_to_string(&state).unwrap();

    // node-1 loses its last three records, node-2 gets record 2 rewritten with its
    // chain recomputed, node-3 loses its log; each while stopped.
    for node in ["node-1", "node-2", "node-3"] {
        net.stop_node(node).await.unwrap();
    }
    let (path, mut lines) = log_lines(&net, "node-1");
    assert!(lines.len() > 6, "node-1 has {} records", lines.len());
    lines.truncate(lines.len() - 3);
    write_lines(&path, &lines);
    let (path, mut lines) = log_lines(&net, "node-2");
    assert!(lines.len() > 6, "node-2 has {} records", lines.len());
    rewrite_and_rechain(&mut lines, 2);
    write_lines(&path, &lines);
    let (path, _) = log_lines(&net, "node-3");
    std::fs::remove_file(&path).unwrap();

    // With node-3 and node-5 down, node-1, node-2 and node-4 sign every message.
    net.start_node("node-1").await.unwrap();
    net.start_node("node-2").await.unwrap();
    net.start_node("node-4").await.unwrap();
    sign(&net, "after", 4).await;
    let honest = audit_verify(&net, "node-4", &state);
    assert!(honest.status.success(), "{}", show(&honest));
    assert!(
        String::from_utf8_lossy(&honest.stdout).contains("consistent with the checkpoint of"),
        "{}",
        show(&honest)
    );
    // node-3 refuses to start on its store without the log that vouches for its
    // keys' epochs (exit 65), until its operator accepts that, which its new log
    // records first; then it signs again: node-4 stops so it must.
    let refused = net
        .start_node("node-3")
        .await
        .expect_err("node-3 started with keys and no audit log");
    let text = format!("{refused:#}");
    assert!(
        text.contains("missing or empty") && text.contains("exit status: 65"),
        "{text}"
    );
    net.accept_unverified_log("node-3").unwrap();
    net.start_node("node-3").await.unwrap();
    let (_, lines) = log_lines(&net, "node-3");
    let first: AuditRecord = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first.event, "audit_log_unverified_accepted");
    net.stop_node("node-4").await.unwrap();
    sign(&net, "later", 2).await;

    for (node, code, says) in [
        ("node-1", 10, "truncated"),
        ("node-2", 11, "rewritten"),
        ("node-3", 13, "deleted"),
    ] {
        let out = audit_verify(&net, node, &state);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{node}: {}", show(&out));
        assert!(
            stderr.contains(&format!("{node}: its audit log was {says}")),
            "{}",
            show(&out)
        );
    }
    // A failed audit leaves the saved checkpoints as they were (node-4's moved on):
    // the next run still compares with what was verified, and fails again.
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let before: serde_json::Value = serde_json::from_str(&saved).unwrap();
    for node in ["node-1", "node-2", "node-3"] {
        assert_eq!(after["nodes"][node], before["nodes"][node], "{node}");
    }
    assert_ne!(after["nodes"]["node-4"], before["nodes"]["node-4"]);
    assert_eq!(audit_verify(&net, "node-1", &state).status.code(), Some(10));
}

/// RFC 9162's definitions, written here over `sha2` (none of `quorate_keys::merkle`
/// is used), to check what a node serves.
mod rfc9162 {
    use sha2::{Digest, Sha256};

    pub type Hash = [u8; 32];

    fn sha(parts: &[&[u8]]) -> Hash {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().into()
    }

    fn k_of(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    /// MTH(D[n]).
    pub fn mth(d: &[Vec<u8>]) -> Hash {
        match d.len() {
            0 => sha(&[]),
            1 => sha(&[&[0x00], &d[0]]),
            n => {
                let k = k_of(n);
                sha(&[&[0x01], &mth(&d[..k]), &mth(&d[k..])])
            }
        }
    }

    /// PATH(m, D[n]).
    pub fn path(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
        let n = d.len();
        if n == 1 {
            return vec![];
        }
        let k = k_of(n);
        let (mut p, other) = if m < k {
            (path(m, &d[..k]), mth(&d[k..]))
        } else {
            (path(m - k, &d[k..]), mth(&d[..k]))
        };
        p.push(other);
        p
    }

    /// PROOF(m, D[n]) = SUBPROOF(m, D[n], true).
    pub fn proof(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
        fn sub(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
            let n = d.len();
            if m == n {
                return if b { vec![] } else { vec![mth(d)] };
            }
            let k = k_of(n);
            let (mut p, other) = if m <= k {
                (sub(m, &d[..k], b), mth(&d[k..]))
            } else {
                (sub(m - k, &d[k..], false), mth(&d[..k]))
            };
            p.push(other);
            p
        }
        sub(m, d, true)
    }
}

/// The node's signed checkpoint, read and verified by hand from the C2SP specs with
/// ed25519-dalek (none of the code under test): the verifier key from the node's
/// attestation, the key id, the signature over the note text; then the root
/// against the records, and every served proof against RFC 9162's definitions.
#[tokio::test]
async fn served_checkpoints_and_proofs_match_an_independent_rfc9162_and_signed_note_reading() {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    use ed25519_dalek::Verifier as _;
    use quorate_wire::pb;
    use sha2::Digest as _;

    let net = start_default().await;
    sign(&net, "m", 5).await;
    let node = "node-2";
    let tls = net.issue(Role::Auditor, "auditor").unwrap();
    let endpoint = net.node(node).unwrap().endpoint.clone();
    let channel = |tls: &quorate_transport::tls::TlsPaths| {
        tls.load()
            .unwrap()
            .node_channel(&endpoint, node, std::time::Duration::from_secs(5))
            .unwrap()
    };
    let mut audit = pb::audit_client::AuditClient::new(channel(&tls));
    let served = audit
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner();
    let records: Vec<Vec<u8>> = quorate_ceremony::audit::fetch(&endpoint, node, &tls)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .collect();

    // The attested verifier key: <name>+<hex key id>+<base64(0x01 || key)>.
    let attestation = served.log_key.unwrap();
    let ca = std::fs::read(&tls.ca).unwrap();
    let trust_domain = net.spec.trust_domain.clone();
    quorate_transport::attest::StatementVerifier::from_pem(&ca, &trust_domain)
        .unwrap()
        .verify(&attestation, "audit-log-key", node)
        .unwrap();
    let vkey = String::from_utf8(attestation.body).unwrap();
    let mut parts = vkey.splitn(3, '+');
    let (name, id_hex, key_b64) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    assert_eq!(name, format!("{trust_domain}/quorate-audit/{node}"));
    let typed = B64.decode(key_b64).unwrap();
    assert_eq!(typed[0], 0x01, "Ed25519");
    let key_id = &sha2::Sha256::digest([name.as_bytes(), b"\n", &typed].concat())[..4];
    assert_eq!(id_hex, hex::encode(key_id));
    let public = ed25519_dalek::VerifyingKey::from_bytes(&typed[1..].try_into().unwrap()).unwrap();

    // The note: text, a blank line, "— <name> <base64(key id || signature)>".
    let note = String::from_utf8(served.note).unwrap();
    let (text, signature_line) = note.split_once("\n\n").unwrap();
    let text = format!("{text}\n");
    let blob = signature_line
        .strip_prefix(&format!("\u{2014} {name} "))
        .and_then(|s| s.strip_suffix('\n'))
        .map(|s| B64.decode(s).unwrap())
        .unwrap();
    assert_eq!(&blob[..4], key_id);
    let signature = ed25519_dalek::Signature::from_slice(&blob[4..]).unwrap();
    public.verify(text.as_bytes(), &signature).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], name);
    let size: usize = lines[1].parse().unwrap();
    let root = B64.decode(lines[2]).unwrap();
    assert!(
        size > 0 && size <= records.len(),
        "{size} of {}",
        records.len()
    );
    assert_eq!(root, rfc9162::mth(&records[..size]));

    for index in 0..size {
        let proof = audit
            .get_inclusion_proof(pb::InclusionProofRequest {
                index: index as u64,
                tree_size: size as u64,
            })
            .await
            .unwrap()
            .into_inner()
            .hashes;
        let expected: Vec<Vec<u8>> = rfc9162::path(index, &records[..size])
            .iter()
            .map(|h| h.to_vec())
            .collect();
        assert_eq!(proof, expected, "PATH({index}, D[{size}])");
    }
    for first in 1..size {
        let proof = audit
            .get_consistency_proof(pb::ConsistencyProofRequest {
                first: first as u64,
                second: size as u64,
            })
            .await
            .unwrap()
            .into_inner()
            .hashes;
        let expected: Vec<Vec<u8>> = rfc9162::proof(first, &records[..size])
            .iter()
            .map(|h| h.to_vec())
            .collect();
        assert_eq!(proof, expected, "PROOF({first}, D[{size}])");
    }

    // Beyond the durable log: OUT_OF_RANGE. Another role than auditor: refused.
    let beyond = audit
        .get_consistency_proof(pb::ConsistencyProofRequest {
            first: 1,
            second: records.len() as u64 + 1,
        })
        .await
        .unwrap_err();
    assert_eq!(beyond.code(), tonic::Code::OutOfRange);
    let coordinator = net.issue(Role::Coordinator, "coordinator-x").unwrap();
    let mut wrong = pb::audit_client::AuditClient::new(channel(&coordinator));
    let refused = wrong
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let refused = wrong
        .get_inclusion_proof(pb::InclusionProofRequest {
            index: 0,
            tree_size: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
}

/// `audit export`: after the same verification as `audit verify`, payload-free
/// lines whose leaf hashes are the served records' and whose inclusion proofs are
/// RFC 9162's PATH (computed here independently) under the signed checkpoint's root,
/// which is also the root another region's witness cosigned.
#[tokio::test]
async fn exported_lines_carry_no_payload_and_their_inclusion_proofs_match_rfc9162() {
    let mut net = start_default().await;
    // Three nodes left: node-1 signs every one of these.
    net.kill_node("node-4").await.unwrap();
    net.kill_node("node-5").await.unwrap();
    sign(&net, "export", 4).await;
    let dir = tempfile::tempdir().unwrap();
    let run = |verb: &str, extra: &[&str]| {
        auditor(&net, verb)
            .args(["--node", "node-1", "--endpoint"])
            .arg(&net.node("node-1").unwrap().endpoint)
            .arg("--state")
            .arg(dir.path().join("state.json"))
            .args(extra)
            .output()
            .unwrap()
    };
    let out_path = dir.path().join("export.jsonl");
    let out = run("export", &["--out", out_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(show(&out).contains("exported"), "{}", show(&out));
    // The records as served, from the same node right after (nothing signs meanwhile).
    let out = run("verify", &["--print"]);
    assert!(out.status.success(), "{}", show(&out));
    let served: Vec<Vec<u8>> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| l.as_bytes().to_vec())
        .collect();

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let checkpoint = &lines[0];
    assert_eq!(checkpoint["kind"], "checkpoint");
    assert_eq!(checkpoint["region"], "eu-central-sov");
    let size = checkpoint["tree_size"].as_u64().unwrap() as usize;
    assert!(
        size >= 4 && size <= served.len(),
        "{size} of {}",
        served.len()
    );
    let covered = &served[..size];
    assert_eq!(checkpoint["root"], hex::encode(rfc9162::mth(covered)));
    assert_eq!(lines.len(), size + 1);
    // The same root is what another region witnessed: node-2's cosignature of
    // node-1's checkpoint of `size` records, checked by hand.
    let witnessed_root = witnessed_root(&net, "node-2", "node-1", size as u64).await;
    assert_eq!(checkpoint["root"], hex::encode(witnessed_root));
    let allowed = [
        "format",
        "kind",
        "node",
        "region",
        "jurisdiction",
        "seq",
        "time_unix_ms",
        "key_id",
        "event",
        "client",
        "message_sha256",
        "quorum",
        "attempt",
        "approval_token_id",
        "leaf_index",
        "tree_size",
        "leaf_hash",
        "inclusion_proof",
    ];
    let mut shares = 0;
    for (i, line) in lines[1..].iter().enumerate() {
        for field in line.as_object().unwrap().keys() {
            assert!(
                allowed.contains(&field.as_str()),
                "{field} leaves the region: {line}"
            );
        }
        assert_eq!(line["leaf_index"], i as u64);
        let leaf = {
            use sha2::Digest as _;
            let mut h = sha2::Sha256::new();
            h.update([0x00]);
            h.update(&covered[i]);
            hex::encode(h.finalize())
        };
        assert_eq!(line["leaf_hash"], leaf, "line {i}");
        let expected: Vec<String> = rfc9162::path(i, covered).iter().map(hex::encode).collect();
        assert_eq!(
            line["inclusion_proof"],
            serde_json::json!(expected),
            "line {i}"
        );
        if line["event"] == "sign_share" {
            shares += 1;
            assert_eq!(line["message_sha256"].as_str().unwrap().len(), 64);
        }
    }
    assert!(shares >= 1, "no share record exported");
}

/// The node's operator rewrites a share record to blame another client (chain and
/// tree recomputed, so the log and a fresh checkpoint agree): even an auditor with
/// no saved state finds it, since the record's client intent is the real client's
/// own signature. Before the rewrite every share record's intent verifies.
#[tokio::test]
async fn a_share_record_blaming_another_client_fails_the_intent_check() {
    let mut net = start_default().await;
    net.stop_node("node-4").await.unwrap();
    net.stop_node("node-5").await.unwrap();
    sign(&net, "intent", 3).await;
    let state_dir = tempfile::tempdir().unwrap();
    let out = audit_verify(&net, "node-1", &state_dir.path().join("a.json"));
    assert!(out.status.success(), "{}", show(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains("3 share records' client intents verified"),
        "{said}"
    );

    net.stop_node("node-1").await.unwrap();
    let (path, lines) = log_lines(&net, "node-1");
    let mut records: Vec<AuditRecord> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let at = records
        .iter()
        .position(|r| r.event == "sign_share")
        .expect("a share record");
    records[at].client_id = format!("spiffe://{}/client/innocent", net.spec.trust_domain);
    for i in at..records.len() {
        let prev = if i == 0 {
            quorate_keys::audit::GENESIS_HASH.to_string()
        } else {
            records[i - 1].hash.clone()
        };
        records[i] = records[i].clone().seal(i as u64, &prev);
    }
    let lines: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    write_lines(&path, &lines);
    net.start_node("node-1").await.unwrap();

    let out = audit_verify(&net, "node-1", &state_dir.path().join("fresh.json"));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("record {at}"))
            && err.contains("client intent")
            && err.contains("innocent"),
        "{}",
        show(&out)
    );
}

/// The root of `node`'s checkpoint of `size` records as `witness` cosigned it,
/// waited for (the testnet's witnesses check every second) and read by hand from
/// the C2SP specs with ed25519-dalek, none of the code under test but the
/// statement check of the witness key's attestation: the witness key
/// (`<name>+<hex key id>+<base64(0x04 || key)>`), its key id, and the cosignature
/// line `— <name> base64(key id || u64 time || signature)` over
/// `cosignature/v1\ntime <time>\n` and the note's text.
async fn witnessed_root(net: &LocalNetwork, witness: &str, node: &str, size: u64) -> [u8; 32] {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    use ed25519_dalek::Verifier as _;
    use quorate_wire::pb;
    use sha2::Digest as _;

    let tls = net.issue(Role::Auditor, "auditor").unwrap();
    let channel = tls
        .load()
        .unwrap()
        .node_channel(
            &net.node(witness).unwrap().endpoint,
            witness,
            std::time::Duration::from_secs(5),
        )
        .unwrap();
    let mut audit = pb::audit_client::AuditClient::new(channel);
    let started = std::time::Instant::now();
    let (attestation, note) = loop {
        let served = audit
            .get_witnessed(pb::GetWitnessedRequest {})
            .await
            .unwrap()
            .into_inner();
        let log = served.logs.iter().find(|l| l.node_id == node).unwrap();
        let note = String::from_utf8(log.cosigned.clone()).unwrap();
        if note.split('\n').nth(1) == Some(size.to_string().as_str()) {
            break (served.witness_key.unwrap(), note);
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{witness} did not cosign {node}'s checkpoint of {size} records: {note}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let ca = std::fs::read(&tls.ca).unwrap();
    let trust_domain = net.spec.trust_domain.clone();
    quorate_transport::attest::StatementVerifier::from_pem(&ca, &trust_domain)
        .unwrap()
        .verify(&attestation, "audit-witness-key", witness)
        .unwrap();
    let vkey = String::from_utf8(attestation.body).unwrap();
    let mut parts = vkey.splitn(3, '+');
    let (name, id_hex, key_b64) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    assert_eq!(name, format!("{trust_domain}/quorate-witness/{witness}"));
    let typed = B64.decode(key_b64).unwrap();
    assert_eq!(typed[0], 0x04, "a cosignature key");
    let key_id = &sha2::Sha256::digest([name.as_bytes(), b"\n", &typed].concat())[..4];
    assert_eq!(id_hex, hex::encode(key_id));
    let public = ed25519_dalek::VerifyingKey::from_bytes(&typed[1..].try_into().unwrap()).unwrap();
    let (text, signature_lines) = note.split_once("\n\n").unwrap();
    let text = format!("{text}\n");
    let blob = signature_lines
        .lines()
        .find_map(|l| l.strip_prefix(&format!("\u{2014} {name} ")))
        .map(|s| B64.decode(s).unwrap())
        .expect("the witness's cosignature line");
    assert_eq!(&blob[..4], key_id);
    let time = u64::from_be_bytes(blob[4..12].try_into().unwrap());
    let signature = ed25519_dalek::Signature::from_slice(&blob[12..]).unwrap();
    let message = format!("cosignature/v1\ntime {time}\n{text}");
    public.verify(message.as_bytes(), &signature).unwrap();
    B64.decode(text.lines().nth(2).unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

/// `audit verify` of all five nodes at once (no state file: each log is a first
/// audit), judging every attempt however recent (`--recent 0`: nothing signs while
/// it runs).
fn audit_verify_all(net: &LocalNetwork) -> Output {
    let mut command = auditor(net, "verify");
    command.args(["--recent", "0"]);
    for node in &net.nodes {
        command
            .args(["--node", &node.spec.id, "--endpoint"])
            .arg(&node.endpoint);
    }
    command.output().unwrap()
}

/// Reconciling the nodes' logs: every signature's shares are recorded once on each
/// of its signers, with the same key, digest, request and quorum. A node that cut
/// a share record before anyone audited or witnessed its log passes an audit of
/// its own log, but not reconciliation with its cosigners' (exit 21, naming it); a
/// node that rewrote the quorum of a share record is caught disagreeing with them
/// (exit 20).
#[tokio::test]
async fn reconciliation_finds_a_share_record_cut_or_changed_on_one_signer() {
    let mut net = start_default().await;
    sign(&net, "reconciled", 4).await;
    let out = audit_verify_all(&net);
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("reconciled 5 nodes' share records"),
        "{}",
        show(&out)
    );
    let shares_made: usize = net
        .nodes
        .iter()
        .map(|n| {
            records_of(&net, &n.spec.id)
                .iter()
                .filter(|r| r.event == "sign_share")
                .count()
        })
        .sum();
    assert!(shares_made >= 4 * 2, "{shares_made} share records");

    // The first signer of the first signature cuts that share record, chain
    // recomputed, while stopped.
    let cut = net
        .nodes
        .iter()
        .map(|n| n.spec.id.clone())
        .find(|id| records_of(&net, id).iter().any(|r| r.event == "sign_share"))
        .expect("a node recorded a share");
    net.stop_node(&cut).await.unwrap();
    let (path, mut lines) = log_lines(&net, &cut);
    edit_and_rechain(&mut lines, |records| {
        let at = records
            .iter()
            .position(|r| r.event == "sign_share")
            .unwrap();
        records.remove(at);
    });
    write_lines(&path, &lines);
    net.start_node(&cut).await.unwrap();
    let out = audit_verify_all(&net);
    assert_eq!(out.status.code(), Some(21), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("but {cut} recorded neither a share nor a refusal")),
        "{}",
        show(&out)
    );
    // Its own log, audited alone, shows nothing: the cut was made before anyone saw it.
    let alone_state = tempfile::tempdir().unwrap();
    let alone = audit_verify(&net, &cut, &alone_state.path().join("state.json"));
    assert!(alone.status.success(), "{}", show(&alone));

    // Another signer's last share record (a later signature than the one cut) says,
    // rewritten with its chain, that another node was in its quorum (the client's
    // intent does not cover the quorum).
    let changed = net
        .nodes
        .iter()
        .map(|n| n.spec.id.clone())
        .find(|id| *id != cut && records_of(&net, id).iter().any(|r| r.event == "sign_share"))
        .expect("another node recorded a share");
    let everyone: Vec<String> = net.nodes.iter().map(|n| n.spec.id.clone()).collect();
    net.stop_node(&changed).await.unwrap();
    let (path, mut lines) = log_lines(&net, &changed);
    edit_and_rechain(&mut lines, |records| {
        let record = records
            .iter_mut()
            .rev()
            .find(|r| r.event == "sign_share")
            .unwrap();
        let member = record.quorum.iter().position(|q| *q != changed).unwrap();
        let outsider = everyone
            .iter()
            .find(|n| !record.quorum.contains(n))
            .unwrap();
        record.quorum[member] = outsider.clone();
    });
    write_lines(&path, &lines);
    net.start_node(&changed).await.unwrap();
    let out = audit_verify_all(&net);
    assert_eq!(out.status.code(), Some(20), "{}", show(&out));
}
