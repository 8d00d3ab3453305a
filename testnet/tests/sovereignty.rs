//! Sovereignty policy, guarded failover, client authorization, the in-region audit
//! log and metrics, over real node and coordinator processes.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{bin_dir, start, start_default, DEADLINE};
use quorate_frost::Ciphersuite;
use quorate_keys::approval::{unix_now, Approval, ApproverKey, SCOPE_OUT_OF_POLICY_QUORUM};
use quorate_keys::audit::AuditRecord;
use quorate_testnet::client::SignerClient;
use quorate_testnet::network::LocalNetwork;
use quorate_testnet::spec::{KeySpec, NetworkSpec, PolicySpec};
use quorate_transport::identity::Role;
use quorate_wire::pb;
use quorate_wire::pb::node_client::NodeClient;
use tonic::transport::Channel;
use tonic::Code;

const EU_KEY: &str = "eu-payments";

fn jurisdiction(net: &LocalNetwork, node_id: &str) -> String {
    net.node(node_id).unwrap().spec.jurisdiction.clone()
}

fn node_client(net: &LocalNetwork, node_id: &str, role: Role, name: &str) -> NodeClient<Channel> {
    let channel = net
        .tls_paths(role, name)
        .load()
        .unwrap()
        .node_channel(
            &net.node(node_id).unwrap().endpoint,
            node_id,
            Duration::from_secs(2),
        )
        .unwrap();
    NodeClient::new(channel)
}

async fn audit_records(net: &LocalNetwork, node_id: &str) -> Vec<AuditRecord> {
    let tls = net.issue(Role::Auditor, "auditor").unwrap();
    let node = net.node(node_id).unwrap();
    let raw = quorate_ceremony::audit::fetch(&node.endpoint, node_id, &tls)
        .await
        .unwrap();
    let report = quorate_ceremony::audit::check(&raw);
    assert!(report.head.is_ok(), "{node_id}: {:?}", report.head);
    quorate_ceremony::audit::decode(&raw)
}

fn token(key: &ApproverKey, key_id: &str, from: u64, to: u64) -> Vec<u8> {
    key.sign(&Approval {
        token_id: "t-test".into(),
        key_id: key_id.into(),
        scope: SCOPE_OUT_OF_POLICY_QUORUM.into(),
        not_before: from,
        not_after: to,
        reason: "test".into(),
        client: None,
        message_sha256: None,
    })
}

/// A valid token for `key_id` bound to `client` (a SPIFFE id) and to the message with
/// SHA-256 `message`.
fn bound_token(key: &ApproverKey, key_id: &str, client: &str, message: &[u8]) -> Vec<u8> {
    let now = unix_now();
    key.sign(&Approval {
        token_id: "t-bound".into(),
        key_id: key_id.into(),
        scope: SCOPE_OUT_OF_POLICY_QUORUM.into(),
        not_before: now - 10,
        not_after: now + 600,
        reason: "test".into(),
        client: Some(client.into()),
        message_sha256: Some(hex::encode(quorate_wire::sha256(message))),
    })
}

/// The demo client's SPIFFE id.
fn demo_client(net: &LocalNetwork) -> String {
    format!("spiffe://{}/client/demo-client", net.spec.trust_domain)
}

fn approver(net: &LocalNetwork) -> ApproverKey {
    ApproverKey::from_hex(&std::fs::read_to_string(&net.approver_key_file).unwrap()).unwrap()
}

#[tokio::test]
async fn eu_key_quorums_always_hold_at_least_two_eu_signers() {
    let mut net = start_default().await;
    let client = net.client().await.unwrap();
    // Healthy network, and with one EU node down: the coordinator must still pick
    // lawful quorums although non-EU nodes are available.
    for down in [None, Some("node-1")] {
        if let Some(id) = down {
            net.kill_node(id).await.unwrap();
        }
        for i in 0..15 {
            let signed = client
                .sign_verified(EU_KEY, format!("eu {i}").as_bytes(), DEADLINE)
                .await
                .unwrap();
            let eu = signed
                .response
                .signers
                .iter()
                .filter(|s| jurisdiction(&net, s) == "EU")
                .count();
            assert!(
                eu >= 2,
                "quorum {:?} has {eu} EU signers",
                signed.response.signers
            );
        }
    }
}

#[tokio::test]
async fn without_two_eu_nodes_the_eu_key_needs_an_approval_which_every_signer_records() {
    let mut net = start_default().await;
    let client = net.client().await.unwrap();
    net.kill_node("node-1").await.unwrap();
    net.kill_node("node-2").await.unwrap();

    let err = client
        .sign(EU_KEY, b"pay", None, DEADLINE)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("EU") && err.message().contains("approval"),
        "{}",
        err.message()
    );
    // A key without residency limits still signs.
    client
        .sign_verified("demo-ed25519", b"pay", DEADLINE)
        .await
        .unwrap();

    let approval = net
        .approve(EU_KEY, 600, "eu-central and eu-west are down")
        .unwrap();
    let response = client
        .sign_with(
            EU_KEY,
            b"pay under approval",
            Some("failover-1"),
            Some(approval.clone()),
            DEADLINE,
        )
        .await
        .unwrap();
    let public = client.public_key(EU_KEY).await.unwrap();
    quorate_testnet::verify::verify(
        Ciphersuite::Ed25519,
        &public.public_key,
        b"pay under approval",
        &response.signature,
    )
    .unwrap();
    let token_id = quorate_keys::approval::ApprovalToken::decode(&approval)
        .unwrap()
        .approval
        .token_id;
    for signer in &response.signers {
        let records = audit_records(&net, signer).await;
        let record = records
            .iter()
            .find(|r| r.event == "sign_share" && r.request_id == "failover-1")
            .unwrap_or_else(|| panic!("{signer} has no record of the failover signature"));
        assert_eq!(record.approval_token_id, token_id);
        assert_eq!(record.key_id, EU_KEY);
        assert_eq!(record.quorum.len(), 3);
        assert_eq!(
            record.message_sha256,
            hex::encode(quorate_wire::sha256(b"pay under approval"))
        );
    }
}

#[tokio::test]
async fn bad_approval_tokens_are_refused() {
    let mut net = start_default().await;
    let client = net.client().await.unwrap();
    net.kill_node("node-1").await.unwrap();
    net.kill_node("node-2").await.unwrap();
    let good = approver(&net);
    let stranger = ApproverKey::generate();
    let now = unix_now();
    let forged = String::from_utf8(token(&good, EU_KEY, now - 10, now + 600))
        .unwrap()
        .replace("\\\"reason\\\":\\\"test\\\"", "\\\"reason\\\":\\\"tesT\\\"")
        .into_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("expired", token(&good, EU_KEY, now - 600, now - 10)),
        ("not yet valid", token(&good, EU_KEY, now + 600, now + 1200)),
        ("forged", forged),
        (
            "wrong key",
            token(&good, "demo-ed25519", now - 10, now + 600),
        ),
        (
            "wrong approver",
            token(&stranger, EU_KEY, now - 10, now + 600),
        ),
        ("garbage", b"not a token".to_vec()),
        (
            "bound to another client",
            bound_token(&good, EU_KEY, "spiffe://other/client/someone", b"pay"),
        ),
        (
            "bound to another message",
            bound_token(&good, EU_KEY, &demo_client(&net), b"pay 1000000"),
        ),
    ];
    for (what, t) in cases {
        let err = client
            .sign_with(EU_KEY, b"pay", None, Some(t), DEADLINE)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{what}: {err:?}");
    }
}

#[tokio::test]
async fn a_node_refuses_an_unlawful_quorum_even_from_the_coordinator_directly() {
    let net = start_default().await;
    let ops = Ciphersuite::Ed25519.ops();
    let clients: BTreeMap<&str, NodeClient<Channel>> = ["node-1", "node-4", "node-5"]
        .into_iter()
        .map(|id| (id, node_client(&net, id, Role::Coordinator, "coordinator")))
        .collect();
    let net = &*net;
    let attempt = |token: Vec<u8>| {
        let mut clients = clients.clone();
        async move {
            let mut commitments = BTreeMap::new();
            for (id, c) in clients.iter_mut() {
                let commitment = c
                    .commit(pb::CommitRequest {
                        key_id: EU_KEY.into(),
                        count: 1,
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .commitments
                    .remove(0);
                commitments.insert(ops.identifier(id).unwrap(), commitment);
            }
            clients
                .get_mut("node-1")
                .unwrap()
                .sign_share(common::with_client_intent(
                    net,
                    pb::SignShareRequest {
                        key_id: EU_KEY.into(),
                        message: b"m".to_vec(),
                        commitments: quorate_wire::api::signer_commitments(&commitments),
                        request_id: "direct".into(),
                        approval_token: token,
                        intent: None,
                        manifest_hash: Vec::new(),
                    },
                ))
                .await
        }
    };
    // One EU signer of three: refused without a token, and with a bad one.
    let err = attempt(Vec::new()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let now = unix_now();
    let stale = token(&approver(net), EU_KEY, now - 600, now - 1);
    assert_eq!(
        attempt(stale).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    // Bound to another client or another message: refused by the node itself.
    for (what, bound) in [
        (
            "another client",
            bound_token(&approver(net), EU_KEY, "spiffe://other/client/x", b"m"),
        ),
        (
            "another message",
            bound_token(&approver(net), EU_KEY, &demo_client(net), b"n"),
        ),
    ] {
        let err = attempt(bound).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{what}: {err:?}");
        assert!(err.message().contains("bound to"), "{what}: {err:?}");
    }
    // The node checks a valid approval itself and then signs; a token bound to
    // this client and this message too.
    assert!(attempt(net.approve(EU_KEY, 60, "drill").unwrap())
        .await
        .is_ok());
    assert!(
        attempt(bound_token(&approver(net), EU_KEY, &demo_client(net), b"m"))
            .await
            .is_ok()
    );
}

/// Regression: a client that keeps its approval token on its requests once the home
/// nodes are back gets its signature from the lawful quorum. The coordinator used to
/// send the nodes no token for a lawful quorum, and the client's intent, which covers
/// the token, then matched no request: every node refused it.
#[tokio::test]
async fn a_request_with_an_approval_token_signs_when_a_lawful_quorum_answers() {
    let net = start_default().await;
    let client = net.client().await.unwrap();
    let token = net
        .approve(EU_KEY, 60, "still carried after the outage")
        .unwrap();
    let signed = client
        .sign_with(
            EU_KEY,
            b"pay 10 EUR",
            Some("token-after-outage"),
            Some(token),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert!(!signed.signature.is_empty());
}

#[tokio::test]
async fn clients_not_allowed_for_a_key_are_refused_by_coordinator_and_nodes() {
    let mut spec = NetworkSpec::default_five_regions();
    spec.keys = vec![
        KeySpec::new("payments-only", Ciphersuite::Ed25519).with_policy(PolicySpec {
            allowed_clients: vec!["spiffe://quorate.test/client/payments".into()],
            ..PolicySpec::default()
        }),
    ];
    let net = start(spec).await;
    let demo = net.client().await.unwrap();
    let err = demo
        .sign("payments-only", b"m", None, DEADLINE)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    let payments_tls = net.issue(Role::Client, "payments").unwrap();
    let payments =
        SignerClient::connect(&net.coordinator_endpoint, "coordinator", &payments_tls).unwrap();
    payments
        .sign_verified("payments-only", b"m", DEADLINE)
        .await
        .unwrap();

    // Request ids belong to their client: repeating the allowed client's id and
    // message does not hand its stored signature to a client the policy refuses.
    let stored = payments
        .sign("payments-only", b"pay 10", Some("req-7"), DEADLINE)
        .await
        .unwrap();
    let err = demo
        .sign("payments-only", b"pay 10", Some("req-7"), DEADLINE)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let again = payments
        .sign("payments-only", b"pay 10", Some("req-7"), DEADLINE)
        .await
        .unwrap();
    assert_eq!(stored.signature, again.signature);

    // A coordinator that relays a request for another client is refused by the node.
    let ops = Ciphersuite::Ed25519.ops();
    let ids = ["node-1", "node-2", "node-3"];
    let mut commitments = BTreeMap::new();
    let mut clients = Vec::new();
    for id in ids {
        let mut c = node_client(&net, id, Role::Coordinator, "coordinator");
        let commitment = c
            .commit(pb::CommitRequest {
                key_id: "payments-only".into(),
                count: 1,
            })
            .await
            .unwrap()
            .into_inner()
            .commitments
            .remove(0);
        commitments.insert(ops.identifier(id).unwrap(), commitment);
        clients.push(c);
    }
    let err = clients[0]
        .sign_share(common::with_client_intent(
            &net,
            pb::SignShareRequest {
                key_id: "payments-only".into(),
                message: b"m".to_vec(),
                commitments: quorate_wire::api::signer_commitments(&commitments),
                request_id: String::new(),
                approval_token: Vec::new(),
                intent: None,
                manifest_hash: Vec::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

fn audit_verify(net: &LocalNetwork, node_id: &str) -> std::process::Output {
    let tls = net.issue(Role::Auditor, "auditor").unwrap();
    std::process::Command::new(bin_dir().join("quorate-ceremony"))
        .args(["audit", "verify", "--node", node_id, "--endpoint"])
        .arg(&net.node(node_id).unwrap().endpoint)
        .arg("--ca")
        .arg(&tls.ca)
        .arg("--cert")
        .arg(&tls.cert)
        .arg("--key")
        .arg(&tls.key)
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_tampered_audit_record_is_found_by_audit_verify() {
    let mut net = start_default().await;
    let client = net.client().await.unwrap();
    net.kill_node("node-4").await.unwrap();
    net.kill_node("node-5").await.unwrap();
    for i in 0..3 {
        client
            .sign("demo-ed25519", format!("m{i}").as_bytes(), None, DEADLINE)
            .await
            .unwrap();
    }
    let ok = audit_verify(&net, "node-1");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("chain intact"));

    // Edit record 5 (a signature record) in node-1's log while it is down.
    net.kill_node("node-1").await.unwrap();
    {
        let path = quorate_node::audit::log_path(&net.node("node-1").unwrap().data_dir);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut record: AuditRecord = serde_json::from_str(&lines[5]).unwrap();
        assert_eq!(record.event, "sign_share");
        record.message_sha256 = hex::encode([0u8; 32]);
        lines[5] = serde_json::to_string(&record).unwrap();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }
    // The node refuses to load its keys beside an altered log (exit 65) until its
    // operator accepts that; it then serves the log for the auditor to find.
    let refused = net
        .start_node("node-1")
        .await
        .expect_err("node-1 started beside an altered audit log");
    let text = format!("{refused:#}");
    assert!(
        text.contains("audit chain broken at record 5") && text.contains("exit status: 65"),
        "{text}"
    );
    net.accept_unverified_log("node-1").unwrap();
    net.start_node("node-1").await.unwrap();
    let broken = audit_verify(&net, "node-1");
    assert_eq!(broken.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(stderr.contains("broken at record 5"), "{stderr}");
}

#[tokio::test]
async fn the_audit_record_survives_a_node_killed_right_after_its_share() {
    let mut net = start_default().await;
    let client = net.client().await.unwrap();
    let response = client
        .sign(
            "demo-taproot",
            b"then the power went out",
            Some("power-cut"),
            DEADLINE,
        )
        .await
        .unwrap();
    for signer in &response.signers {
        net.kill_node(signer).await.unwrap();
    }
    for signer in response.signers.clone() {
        net.start_node(&signer).await.unwrap();
        let records = audit_records(&net, &signer).await;
        assert!(
            records
                .iter()
                .any(|r| r.event == "sign_share" && r.request_id == "power-cut"),
            "{signer} lost its audit record"
        );
    }
}

/// The `# HELP` and `# TYPE` lines of the coordinator's metrics, sorted.
const COORDINATOR_FAMILIES: &[&str] = &[
    "# HELP quorate_coordinator_certificate_not_after_seconds When the coordinator's own mTLS certificate expires (notAfter), Unix seconds.",
    "# HELP quorate_coordinator_client_sign_requests_total Sign requests with a verified intent, by client.",
    "# HELP quorate_coordinator_culprits_total Nodes named as culprits (invalid signature shares).",
    "# HELP quorate_coordinator_errors_total Failed requests by RPC and gRPC code.",
    "# HELP quorate_coordinator_failovers_total Signatures made by out-of-policy quorums under an approval token.",
    "# HELP quorate_coordinator_key_reachable_holders The key's participants that requests would ask now (configured, attesting the key, and available), by key.",
    "# HELP quorate_coordinator_key_threshold Signers the key needs (its threshold t), by key.",
    "# HELP quorate_coordinator_node_available Whether requests currently use the node (1) or skip it (0).",
    "# HELP quorate_coordinator_one_round_total Signatures attempted with preprocessed commitments (one round trip).",
    "# HELP quorate_coordinator_policy_denials_total Requests refused by a key's policy.",
    "# HELP quorate_coordinator_pooled_commitments Commitments pooled for one-round signing.",
    "# HELP quorate_coordinator_quorum_retries_total Signing attempts repeated with another quorum.",
    "# HELP quorate_coordinator_requests_total Requests by RPC.",
    "# HELP quorate_coordinator_share_calls_total SignShares batches sent to nodes.",
    "# HELP quorate_coordinator_share_requests_total Round-2 requests carried by SignShares batches.",
    "# HELP quorate_coordinator_sign_seconds End-to-end Sign latency.",
    "# HELP quorate_tls_reload_failures_total Changed mTLS files that could not be loaded (broken, mismatched key, other identity, not valid under the CA); the previous certificate stays in use.",
    "# HELP quorate_tls_reloads_total Reloads of the mTLS certificate, key and CA bundle that replaced them (renewals).",
    "# TYPE quorate_coordinator_certificate_not_after_seconds gauge",
    "# TYPE quorate_coordinator_client_sign_requests_total counter",
    "# TYPE quorate_coordinator_culprits_total counter",
    "# TYPE quorate_coordinator_errors_total counter",
    "# TYPE quorate_coordinator_failovers_total counter",
    "# TYPE quorate_coordinator_key_reachable_holders gauge",
    "# TYPE quorate_coordinator_key_threshold gauge",
    "# TYPE quorate_coordinator_node_available gauge",
    "# TYPE quorate_coordinator_one_round_total counter",
    "# TYPE quorate_coordinator_policy_denials_total counter",
    "# TYPE quorate_coordinator_pooled_commitments gauge",
    "# TYPE quorate_coordinator_quorum_retries_total counter",
    "# TYPE quorate_coordinator_requests_total counter",
    "# TYPE quorate_coordinator_share_calls_total counter",
    "# TYPE quorate_coordinator_share_requests_total counter",
    "# TYPE quorate_coordinator_sign_seconds histogram",
    "# TYPE quorate_tls_reload_failures_total counter",
    "# TYPE quorate_tls_reloads_total counter",
];

async fn scrape(addr: &str) -> String {
    quorate_transport::metrics::scrape(addr).await.unwrap()
}

#[tokio::test]
async fn metrics_endpoints_serve_the_listed_series() {
    let mut net = start_default().await;
    let client = net.client().await.unwrap();
    client
        .sign("demo-ed25519", b"m", None, DEADLINE)
        .await
        .unwrap();
    let _ = client.sign("no-such-key", b"m", None, DEADLINE).await;
    net.kill_node("node-1").await.unwrap();
    net.kill_node("node-2").await.unwrap();
    let _ = client.sign(EU_KEY, b"m", None, DEADLINE).await;
    let approval = net.approve(EU_KEY, 60, "metrics test").unwrap();
    client
        .sign_with(EU_KEY, b"m", None, Some(approval), DEADLINE)
        .await
        .unwrap();

    let coordinator = scrape(&net.coordinator_metrics).await;
    for series in [
        "quorate_coordinator_requests_total{rpc=\"Sign\"}",
        "quorate_coordinator_errors_total{rpc=\"Sign\",code=\"NotFound\"} 1",
        "quorate_coordinator_errors_total{rpc=\"Sign\",code=\"FailedPrecondition\"} 1",
        "quorate_coordinator_sign_seconds_bucket",
        "quorate_coordinator_quorum_retries_total",
        "quorate_coordinator_culprits_total",
        "quorate_coordinator_policy_denials_total{reason=\"unlawful_quorum\"} 1",
        "quorate_coordinator_failovers_total 1",
        "quorate_coordinator_node_available{node=\"node-1\"}",
    ] {
        assert!(
            coordinator.contains(series),
            "coordinator lacks {series}:\n{coordinator}"
        );
    }
    // Every family the coordinator exports, under the name, help and type the
    // dashboards and alert rules read (the list the coordinator served before its
    // registry moved to prometheus-client).
    let mut families: Vec<&str> = coordinator
        .lines()
        .filter(|l| l.starts_with("# "))
        .collect();
    families.sort_unstable();
    assert_eq!(families, COORDINATOR_FAMILIES, "{coordinator}");
    let node = scrape(&net.node("node-3").unwrap().metrics).await;
    // A labelled family is exported once it has a series: node-3 refused nothing
    // here, so its errors and policy denials are absent (their names, help and
    // types are pinned by the node's own tests). Whatever it exports has the type
    // the dashboards expect.
    for family in quorate_transport::metrics::families(&node) {
        let known = [
            ("quorate_node_audit_flush_seconds", "histogram"),
            ("quorate_node_audit_log_broken", "gauge"),
            ("quorate_node_audit_records", "gauge"),
            ("quorate_node_certificate_not_after_seconds", "gauge"),
            ("quorate_node_errors_total", "counter"),
            ("quorate_node_failovers_total", "counter"),
            ("quorate_node_kek_providers_unavailable", "gauge"),
            ("quorate_node_keys", "gauge"),
            ("quorate_node_nonce_pool_size", "gauge"),
            ("quorate_node_policy_denials_total", "counter"),
            ("quorate_node_requests_total", "counter"),
            ("quorate_node_sign_share_seconds", "histogram"),
            ("quorate_node_witness_checks_total", "counter"),
            ("quorate_node_witness_inconsistent", "gauge"),
            ("quorate_node_witness_last_checked_seconds", "gauge"),
            ("quorate_tls_reload_failures_total", "counter"),
            ("quorate_tls_reloads_total", "counter"),
        ];
        assert!(
            known.contains(&(family.0.as_str(), family.1.as_str())),
            "node exports {family:?}:\n{node}"
        );
    }
    for series in [
        "quorate_node_requests_total{rpc=\"SignShare\"}",
        "quorate_node_requests_total{rpc=\"Commit\"}",
        "quorate_node_sign_share_seconds_bucket",
        "quorate_node_nonce_pool_size",
        "quorate_node_failovers_total 1",
        "quorate_node_keys 4",
        "quorate_node_audit_records",
        "quorate_node_audit_flush_seconds_count",
        "quorate_node_witness_inconsistent{peer=\"node-1\"} 0",
        "quorate_node_witness_last_checked_seconds{peer=\"node-1\"}",
    ] {
        assert!(node.contains(series), "node lacks {series}:\n{node}");
    }
}

fn run(program: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin_dir().join(program))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `quorate-ceremony approver keygen --out FILE`; returns the printed public key.
fn approver_keygen(out: &str) -> String {
    let done = run("quorate-ceremony", &["approver", "keygen", "--out", out]);
    assert!(done.status.success(), "{}", text(&done));
    text(&done)
        .lines()
        .find_map(|l| l.strip_prefix("approver public key: ").map(str::to_string))
        .unwrap()
}

/// `quorate-ceremony import` of an Ed25519 3-of-5 key `key_id` with `policy` on `net`,
/// governed (as every key must be, or opt out) by the network's administrators.
fn import_key(net: &LocalNetwork, key_id: &str, policy: &str, transcript: &str) {
    let administrators: Vec<String> = quorate_testnet::administrators::public_keys(&net.dir)
        .unwrap()
        .iter()
        .map(|k| format!("\"{}\"", hex::encode(k)))
        .collect();
    let mut governed = std::fs::read_to_string(policy).unwrap();
    governed.push_str(&format!(
        "administrator_keys = [{}]\nadministrators_required = 2\n",
        administrators.join(", ")
    ));
    std::fs::write(policy, governed).unwrap();
    let ceremony = net.ceremony_file.display().to_string();
    let out = run(
        "quorate-ceremony",
        &[
            "import",
            "--ceremony",
            &ceremony,
            "--key-id",
            key_id,
            "--ciphersuite",
            "ed25519",
            "--threshold",
            "3",
            "--policy",
            policy,
            "--transcript",
            transcript,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
}

/// A policy that needs two approvers: a token one approver signed is refused by the
/// coordinator and the nodes, the same token cosigned by a second listed approver
/// signs, and a cosignature by an approver the policy does not list is refused.
#[tokio::test]
async fn a_policy_needing_two_approvers_signs_only_under_a_token_two_of_them_signed() {
    let mut net = start_default().await;
    let work = tempfile::tempdir().unwrap();
    let path = |name: &str| work.path().join(name).display().to_string();
    let publics: Vec<String> = ["first", "second", "outsider"]
        .iter()
        .map(|name| approver_keygen(&path(&format!("{name}.hex"))))
        .collect();
    std::fs::write(
        path("policy.toml"),
        format!(
            "home_jurisdictions = [\"EU\"]\nmin_home_signers = 2\n\
             approver_keys = [\"{}\", \"{}\"]\napprovals_required = 2\n",
            publics[0], publics[1]
        ),
    )
    .unwrap();
    import_key(&net, "eu-two", &path("policy.toml"), &path("eu-two.json"));
    net.kill_node("node-1").await.unwrap();
    net.kill_node("node-2").await.unwrap();

    let out = run(
        "quorate-ceremony",
        &[
            "approve",
            "--approver-key",
            &path("first.hex"),
            "--key-id",
            "eu-two",
            "--reason",
            "two-person rule",
            "--out",
            &path("one.json"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let cosign = |key: &str, token: &str, out: &str| {
        run(
            "quorate-ceremony",
            &[
                "cosign",
                "--approver-key",
                &path(key),
                "--token",
                &path(token),
                "--out",
                &path(out),
            ],
        )
    };
    let out = cosign("second.hex", "one.json", "two.json");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("two-person rule"), "{}", text(&out));
    let out = cosign("first.hex", "one.json", "again.json");
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let out = cosign("outsider.hex", "two.json", "three.json");
    assert!(out.status.success(), "{}", text(&out));

    let client = net.client().await.unwrap();
    let sign = |token: &str| {
        let token = std::fs::read(path(token)).unwrap();
        let client = client.clone();
        async move {
            client
                .sign_with("eu-two", b"pay", None, Some(token), DEADLINE)
                .await
        }
    };
    let err = sign("one.json").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("needs 2"), "{err:?}");
    let err = sign("three.json").await.unwrap_err();
    assert!(err.message().contains("not an approver"), "{err:?}");
    let signed = sign("two.json").await.unwrap();
    assert!(!signed.signature.is_empty());
}

/// The commands of docs/sovereignty.md, run as a custodian and an operator would.
#[tokio::test]
async fn documented_policy_and_failover_commands_work() {
    let mut net = start_default().await;
    let work = tempfile::tempdir().unwrap();
    let path = |name: &str| work.path().join(name).display().to_string();

    // A compliance approver and a key with an EU policy naming them.
    let public = approver_keygen(&path("approver-key.hex"));
    std::fs::write(
        path("eu-policy.toml"),
        format!(
            "home_jurisdictions = [\"EU\"]\nmin_home_signers = 2\napprover_keys = [\"{public}\"]\n"
        ),
    )
    .unwrap();
    import_key(&net, "eu-2", &path("eu-policy.toml"), &path("eu-2.json"));

    net.kill_node("node-1").await.unwrap();
    net.kill_node("node-2").await.unwrap();
    let dir = net.net.dir.display().to_string();
    let sign = |token: Option<&str>| {
        let mut args = vec![
            "sign",
            "--dir",
            &dir,
            "--key-id",
            "eu-2",
            "--message",
            "pay",
        ];
        if let Some(t) = token {
            args.extend(["--approval-token", t]);
        }
        run("quorate-testnet", &args)
    };
    // The coordinator looks the new key up on first use.
    let refused = sign(None);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("no lawful quorum"),
        "{}",
        text(&refused)
    );

    let out = run(
        "quorate-ceremony",
        &[
            "approve",
            "--approver-key",
            &path("approver-key.hex"),
            "--key-id",
            "eu-2",
            "--valid-for",
            "30m",
            "--reason",
            "drill",
            "--out",
            &path("approval.json"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let signed = sign(Some(&path("approval.json")));
    assert!(signed.status.success(), "{}", text(&signed));
    assert!(
        text(&signed).contains("verified:   yes"),
        "{}",
        text(&signed)
    );

    // The testnet's own approver works the same way for eu-payments.
    let approver = net.approver_key_file.display().to_string();
    let out = run(
        "quorate-ceremony",
        &[
            "approve",
            "--approver-key",
            &approver,
            "--key-id",
            "eu-payments",
            "--valid-for",
            "30m",
            "--reason",
            "drill",
            "--out",
            &path("approval-eu.json"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let sign_eu = |message: &str, token: &str| {
        run(
            "quorate-testnet",
            &[
                "sign",
                "--dir",
                &dir,
                "--key-id",
                "eu-payments",
                "--message",
                message,
                "--approval-token",
                &path(token),
            ],
        )
    };
    let out = sign_eu("pay", "approval-eu.json");
    assert!(out.status.success(), "{}", text(&out));

    // A token bound to the demo client and to the message "pay": that signs, another
    // message under it does not; malformed bindings are usage errors.
    let approve_bound = |client: &str, digest: &str, out: &str| {
        run(
            "quorate-ceremony",
            &[
                "approve",
                "--approver-key",
                &approver,
                "--key-id",
                "eu-payments",
                "--reason",
                "drill",
                "--client",
                client,
                "--message-sha256",
                digest,
                "--out",
                &path(out),
            ],
        )
    };
    let pay = hex::encode(quorate_wire::sha256(b"pay"));
    for (client, digest) in [
        ("payments", pay.as_str()),
        (demo_client(&net).as_str(), "abc"),
    ] {
        let out = approve_bound(client, digest, "bad.json");
        assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    }
    let out = approve_bound(&demo_client(&net), &pay, "bound.json");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("client spiffe://"), "{}", text(&out));
    let out = sign_eu("pay", "bound.json");
    assert!(out.status.success(), "{}", text(&out));
    let out = sign_eu("pay twice", "bound.json");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("bound to the message"),
        "{}",
        text(&out)
    );
}

/// The default five regions with one key, `metered`, of which a client may make
/// `per_minute` signatures a minute.
fn five_regions_with_metered_key(suite: Ciphersuite, per_minute: u32) -> NetworkSpec {
    let mut spec = NetworkSpec::default_five_regions();
    spec.keys = vec![KeySpec::new("metered", suite).with_policy(PolicySpec {
        rate_limit_per_minute: per_minute,
        ..PolicySpec::default()
    })];
    spec
}

/// Signs once with `key_id` on a network started from `spec`, restarts the
/// coordinator (which keeps no count of a client's signatures; the nodes do), and
/// returns why a second signature is refused.
async fn second_signature_after_a_coordinator_restart(
    spec: NetworkSpec,
    key_id: &str,
) -> tonic::Status {
    let mut net = start(spec).await;
    let client = net.client().await.unwrap();
    client.sign_verified(key_id, b"m0", DEADLINE).await.unwrap();
    net.restart_coordinator().await.unwrap();
    let client = net.client().await.unwrap();
    client
        .sign(key_id, b"m1", None, DEADLINE)
        .await
        .expect_err("a second signature within the minute")
}

#[tokio::test]
async fn a_client_over_its_rate_limit_at_the_nodes_is_told_to_retry_later() {
    // Each node counts a client's signatures itself: a coordinator keeps no state,
    // so a restarted one (or a second one) starts counting afresh.
    let spec = five_regions_with_metered_key(Ciphersuite::Ed25519, 1);
    // At least three of the five nodes have signed this minute's one signature,
    // so no 3-of-5 quorum is left: the nodes' refusal reaches the client, not an
    // UNAVAILABLE that would have it retry at once.
    let err = second_signature_after_a_coordinator_restart(spec, "metered").await;
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("no quorum"), "{}", err.message());
    assert!(err.message().contains("retry in"), "{}", err.message());
}

#[tokio::test]
async fn a_client_over_its_rate_limit_at_the_home_nodes_is_told_to_wait_not_to_get_an_approval() {
    // Two EU nodes, both needed by the key's policy, and three elsewhere.
    let mut spec = NetworkSpec::default_five_regions();
    for (node, jurisdiction) in spec.nodes.iter_mut().zip(["EU", "EU", "US", "US", "SG"]) {
        node.jurisdiction = jurisdiction.into();
    }
    spec.keys = vec![
        KeySpec::new("eu-metered", Ciphersuite::Ed25519).with_policy(PolicySpec {
            rate_limit_per_minute: 1,
            ..PolicySpec::residency("EU", 2)
        }),
    ];
    // Both EU nodes signed this minute's one signature. Three nodes elsewhere
    // still answer, but without the EU nodes no quorum is lawful: the client is to
    // wait for its rate, not to fetch an approval for an out-of-policy quorum.
    let err = second_signature_after_a_coordinator_restart(spec, "eu-metered").await;
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("retry in"), "{}", err.message());
}

#[tokio::test]
async fn a_retry_with_another_quorum_does_not_charge_the_client_again() {
    // One signature a minute, and two of the three EU nodes in every quorum. The
    // coordinator asks exactly `t` nodes in round 1, pools no commitments, and
    // counts every node as equally near (one latency band wider than any latency
    // under load), so home nodes go first: the first quorum is the three EU nodes;
    // node-2 answers round 2 with a corrupt share.
    let mut spec = NetworkSpec::default_five_regions();
    spec.keys = vec![
        KeySpec::new("eu-metered", Ciphersuite::Ed25519).with_policy(PolicySpec {
            rate_limit_per_minute: 1,
            ..PolicySpec::residency("EU", 2)
        }),
    ];
    let mut net = start(spec).await;
    // node-2 restarts first, so that the coordinator (restarted after it) has not
    // seen it down and skips none of the three.
    net.set_corrupt_signer("node-2", true).await.unwrap();
    net.restart_coordinator_with_signing(
        "round1_extra = 0\npreprocess_batch = 0\nlatency_band_ms = 60000",
    )
    .await;

    // node-2's share fails, and the coordinator signs again with node-1, node-3
    // and a third node. node-1 and node-3 signed this message for this client
    // already: charged once, they sign it again.
    let client = net.client().await.unwrap();
    let signed = client
        .sign_verified("eu-metered", b"pay", DEADLINE)
        .await
        .unwrap();
    let signers = &signed.response.signers;
    assert!(!signers.contains(&"node-2".to_string()), "{signers:?}");
    let body = quorate_transport::metrics::scrape(&net.coordinator_metrics)
        .await
        .unwrap();
    let culprits = "quorate_coordinator_culprits_total{node=\"node-2\"}";
    assert_eq!(
        quorate_transport::metrics::sample(&body, culprits),
        Some(1.0),
        "node-2 was in the first quorum: {body}"
    );

    // The nodes' limit still holds for another message (asked through a restarted
    // coordinator, which has not counted the first).
    net.restart_coordinator().await.unwrap();
    let err = net
        .client()
        .await
        .unwrap()
        .sign("eu-metered", b"pay again", None, DEADLINE)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("no quorum"), "{}", err.message());
    assert!(err.message().contains("retry in"), "{}", err.message());
}

#[tokio::test]
async fn a_client_over_its_rate_limit_is_told_to_retry_later() {
    let spec = five_regions_with_metered_key(Ciphersuite::Secp256k1, 3);
    let net = start(spec).await;
    let client = net.client().await.unwrap();
    for i in 0..3 {
        client
            .sign_verified("metered", format!("m{i}").as_bytes(), DEADLINE)
            .await
            .unwrap();
    }
    let err = client
        .sign("metered", b"one more", None, DEADLINE)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("retry in"), "{}", err.message());
    // Another client has its own allowance.
    let other = SignerClient::connect(
        &net.coordinator_endpoint,
        "coordinator",
        &net.issue(Role::Client, "batch").unwrap(),
    )
    .unwrap();
    other
        .sign_verified("metered", b"m", DEADLINE)
        .await
        .unwrap();
}

/// Round 2 of the EU key on node `target` alone, for a quorum of `quorum` (which
/// holds `target`), under approval `token`: the node's own answer.
async fn sign_share_on(
    net: &LocalNetwork,
    target: &str,
    quorum: &[&str],
    token: Vec<u8>,
) -> Result<(), tonic::Status> {
    let ops = Ciphersuite::Ed25519.ops();
    let mut commitments = BTreeMap::new();
    for id in quorum {
        let commitment = node_client(net, id, Role::Coordinator, "coordinator")
            .commit(pb::CommitRequest {
                key_id: EU_KEY.into(),
                count: 1,
            })
            .await?
            .into_inner()
            .commitments
            .remove(0);
        commitments.insert(ops.identifier(id).unwrap(), commitment);
    }
    node_client(net, target, Role::Coordinator, "coordinator")
        .sign_share(common::with_client_intent(
            net,
            pb::SignShareRequest {
                key_id: EU_KEY.into(),
                message: b"m".to_vec(),
                commitments: quorate_wire::api::signer_commitments(&commitments),
                request_id: "revocation-test".into(),
                approval_token: token,
                intent: None,
                manifest_hash: Vec::new(),
            },
        ))
        .await
        .map(|_| ())
}

/// An approver revokes a token before it expires: `quorate-ceremony revoke` and
/// `deliver-revocation` reach every node, after which every node refuses the token
/// and records the refusal with its id. A revocation signed by a key the policy
/// does not list is refused by every node, and the token keeps working.
#[tokio::test]
async fn a_revoked_token_is_refused_by_every_node_and_a_forged_revocation_by_none_accepted() {
    let mut net = start_default().await;
    let work = tempfile::tempdir().unwrap();
    let path = |name: &str| work.path().join(name).display().to_string();
    let ceremony = net.ceremony_file.display().to_string();
    let token = net.approve(EU_KEY, 600, "eu outage").unwrap();
    let token_id = quorate_keys::approval::ApprovalToken::decode(&token)
        .unwrap()
        .approval
        .token_id;
    // One EU signer of three: each node, in such a quorum, needs the token.
    let quorums: [(&str, [&str; 3]); 5] = [
        ("node-1", ["node-1", "node-4", "node-5"]),
        ("node-2", ["node-2", "node-4", "node-5"]),
        ("node-3", ["node-3", "node-4", "node-5"]),
        ("node-4", ["node-1", "node-4", "node-5"]),
        ("node-5", ["node-1", "node-4", "node-5"]),
    ];
    let revoke = |key: &str, out: &str| {
        run(
            "quorate-ceremony",
            &[
                "revoke",
                "--approver-key",
                key,
                "--key-id",
                EU_KEY,
                "--token-id",
                &token_id,
                "--out",
                &path(out),
            ],
        )
    };
    let deliver = |file: &str| {
        run(
            "quorate-ceremony",
            &[
                "deliver-revocation",
                "--ceremony",
                &ceremony,
                "--revocation",
                &path(file),
            ],
        )
    };

    // Forged: signed by a key that is not an approver of the key.
    approver_keygen(&path("outsider.hex"));
    let out = revoke(&path("outsider.hex"), "forged.json");
    assert!(out.status.success(), "{}", text(&out));
    let out = deliver("forged.json");
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("reached 0 of 5") && said.contains("PermissionDenied"),
        "{said}"
    );
    assert_eq!(
        said.matches("not an approver of this key").count(),
        5,
        "{said}"
    );
    for (target, quorum) in &quorums {
        sign_share_on(&net, target, quorum, token.clone())
            .await
            .unwrap_or_else(|e| panic!("{target} refused the token: {e:?}"));
    }

    // Revoked by the key's approver: every node refuses the token from then on.
    let approver = net.approver_key_file.display().to_string();
    let out = revoke(&approver, "revocation.json");
    assert!(out.status.success(), "{}", text(&out));
    let out = deliver("revocation.json");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("revoked on all 5 node(s)"),
        "{}",
        text(&out)
    );
    let out = deliver("revocation.json");
    assert!(text(&out).contains("already revoked"), "{}", text(&out));
    for (target, quorum) in &quorums {
        let err = sign_share_on(&net, target, quorum, token.clone())
            .await
            .expect_err(target);
        assert_eq!(err.code(), Code::FailedPrecondition, "{target}: {err:?}");
        assert!(err.message().contains("revoked"), "{target}: {err:?}");
    }
    for (target, _) in &quorums {
        let records = audit_records(&net, target).await;
        let has = |event: &str| {
            records
                .iter()
                .any(|r| r.event == event && r.approval_token_id == token_id)
        };
        assert!(has("approval_revoked"), "{target}");
        assert!(has("sign_refused"), "{target}");
        assert!(
            records.iter().any(|r| r.event == "revocation_refused"),
            "{target}"
        );
    }
    // Durable: a restarted node still refuses it.
    net.kill_node("node-3").await.unwrap();
    net.start_node("node-3").await.unwrap();
    let err = sign_share_on(&net, "node-3", &quorums[2].1, token.clone())
        .await
        .expect_err("node-3 honours a revoked token after a restart");
    assert!(err.message().contains("revoked"), "{err:?}");
}

/// A revocation delivered while one node is down: the four that answer store it
/// and refuse the token at once, the command fails naming the stopped node (and
/// only it), and a rerun once it is back completes, the four answering "already
/// revoked". Tokens are made for outages, so an outage must not hold up their
/// revocation on the nodes that are up.
#[tokio::test]
async fn a_revocation_reaches_the_nodes_that_are_up_and_a_rerun_the_rest() {
    let mut net = start_default().await;
    let work = tempfile::tempdir().unwrap();
    let revocation = work.path().join("revocation.json").display().to_string();
    let ceremony = net.ceremony_file.display().to_string();
    let token = net.approve(EU_KEY, 600, "eu outage").unwrap();
    let token_id = quorate_keys::approval::ApprovalToken::decode(&token)
        .unwrap()
        .approval
        .token_id;
    let approver = net.approver_key_file.display().to_string();
    let out = run(
        "quorate-ceremony",
        &[
            "revoke",
            "--approver-key",
            &approver,
            "--key-id",
            EU_KEY,
            "--token-id",
            &token_id,
            "--out",
            &revocation,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let deliver = || {
        run(
            "quorate-ceremony",
            &[
                "deliver-revocation",
                "--ceremony",
                &ceremony,
                "--revocation",
                &revocation,
            ],
        )
    };

    net.kill_node("node-3").await.unwrap();
    let out = deliver();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("reached 4 of 5 node(s) [node-1, node-2, node-4, node-5]"),
        "{said}"
    );
    assert!(said.contains("\n  - node-3 ("), "{said}");
    for up in ["node-1", "node-2", "node-4", "node-5"] {
        assert!(!said.contains(&format!("\n  - {up} (")), "{said}");
    }
    let quorums: [(&str, [&str; 3]); 4] = [
        ("node-1", ["node-1", "node-4", "node-5"]),
        ("node-2", ["node-2", "node-4", "node-5"]),
        ("node-4", ["node-1", "node-4", "node-5"]),
        ("node-5", ["node-1", "node-4", "node-5"]),
    ];
    for (target, quorum) in &quorums {
        let err = sign_share_on(&net, target, quorum, token.clone())
            .await
            .expect_err(target);
        assert_eq!(err.code(), Code::FailedPrecondition, "{target}: {err:?}");
        assert!(err.message().contains("revoked"), "{target}: {err:?}");
    }

    net.start_node("node-3").await.unwrap();
    let out = deliver();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("node-3: revoked\n"), "{said}");
    for up in ["node-1", "node-2", "node-4", "node-5"] {
        assert!(said.contains(&format!("{up}: already revoked")), "{said}");
    }
    assert!(said.contains("revoked on all 5 node(s)"), "{said}");
    let err = sign_share_on(&net, "node-3", &["node-3", "node-4", "node-5"], token)
        .await
        .expect_err("node-3 honours the token after the rerun");
    assert!(err.message().contains("revoked"), "{err:?}");
}

/// A token no revocation could name: `approve` refuses to make one (exit 64), and a
/// node refuses one signed by the key's own approver (`FAILED_PRECONDITION`), so
/// every token a node honours can be revoked.
#[tokio::test]
async fn a_token_whose_id_cannot_be_revoked_is_neither_made_nor_honoured() {
    let net = start_default().await;
    let work = tempfile::tempdir().unwrap();
    let approver_file = net.approver_key_file.display().to_string();
    for bad in ["", "has space", &"x".repeat(129)] {
        let out = work.path().join(format!("token-{}", bad.len()));
        let said = run(
            "quorate-ceremony",
            &[
                "approve",
                "--approver-key",
                &approver_file,
                "--key-id",
                EU_KEY,
                "--valid-for",
                "1h",
                "--reason",
                "outage",
                "--token-id",
                bad,
                "--out",
                &out.display().to_string(),
            ],
        );
        assert_eq!(said.status.code(), Some(64), "{bad:?}: {}", text(&said));
        assert!(text(&said).contains("--token-id"), "{}", text(&said));
        assert!(!out.exists(), "{bad:?}");
    }
    let approver =
        ApproverKey::from_hex(&std::fs::read_to_string(&net.approver_key_file).unwrap()).unwrap();
    for bad in ["", "has space", &"x".repeat(129)] {
        let token = approver.sign(&Approval {
            token_id: bad.into(),
            key_id: EU_KEY.into(),
            scope: SCOPE_OUT_OF_POLICY_QUORUM.into(),
            not_before: unix_now() - 10,
            not_after: unix_now() + 600,
            reason: "outage".into(),
            client: None,
            message_sha256: None,
        });
        let err = sign_share_on(&net, "node-1", &["node-1", "node-4", "node-5"], token)
            .await
            .expect_err(bad);
        assert_eq!(err.code(), Code::FailedPrecondition, "{bad:?}: {err:?}");
        assert!(err.message().contains("token id"), "{bad:?}: {err:?}");
    }
}
