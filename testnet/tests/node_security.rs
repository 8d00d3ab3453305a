//! The node's own defences, tested by calling nodes directly over mTLS: caller roles,
//! certificate-less callers, nonce replay, foreign commitments, durable shares and the
//! KEK check.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{start_default, DEADLINE};
use quorate_frost::Ciphersuite;
use quorate_testnet::client::SignerClient;
use quorate_testnet::network::LocalNetwork;
use quorate_transport::identity::Role;
use quorate_transport::tls::TlsPaths;
use quorate_wire::pb;
use quorate_wire::pb::node_client::NodeClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

fn node_client(net: &LocalNetwork, node_id: &str, tls: &TlsPaths) -> NodeClient<Channel> {
    let node = net.node(node_id).unwrap();
    let channel = tls
        .load()
        .unwrap()
        .node_channel(&node.endpoint, node_id, Duration::from_secs(2))
        .unwrap();
    NodeClient::new(channel)
}

fn coordinator_tls(net: &LocalNetwork) -> TlsPaths {
    net.tls_paths(Role::Coordinator, "coordinator")
}

async fn commit(client: &mut NodeClient<Channel>, key_id: &str) -> Vec<u8> {
    client
        .commit(pb::CommitRequest {
            key_id: key_id.into(),
            count: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .commitments
        .remove(0)
}

/// One fresh commitment of each node in `clients`, by FROST identifier: a quorum's
/// round 1.
async fn round1(
    clients: &mut [(String, NodeClient<Channel>)],
    key_id: &str,
) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let ops = Ciphersuite::Ed25519.ops();
    let mut commitments = BTreeMap::new();
    for (id, client) in clients {
        commitments.insert(ops.identifier(id).unwrap(), commit(client, key_id).await);
    }
    commitments
}

/// Clients of the three nodes that sign in these tests, with their ids.
fn signer_clients(net: &LocalNetwork, tls: &TlsPaths) -> Vec<(String, NodeClient<Channel>)> {
    ["node-1", "node-2", "node-3"]
        .iter()
        .map(|id| (id.to_string(), node_client(net, id, tls)))
        .collect()
}

/// A round-2 result as the share's length or the error's code.
fn share_outcome(result: &pb::SignShareResult) -> Result<usize, Code> {
    match &result.result {
        Some(pb::sign_share_result::Result::SignatureShare(share)) => Ok(share.len()),
        Some(pb::sign_share_result::Result::Error(e)) => Err(Code::from(e.code)),
        None => panic!("a result with neither share nor error"),
    }
}

fn share_request(
    key_id: &str,
    message: &[u8],
    commitments: &BTreeMap<Vec<u8>, Vec<u8>>,
) -> pb::SignShareRequest {
    pb::SignShareRequest {
        key_id: key_id.into(),
        message: message.to_vec(),
        commitments: quorate_wire::api::signer_commitments(commitments),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_node_refuses_to_sign_twice_with_one_nonce() {
    let net = start_default().await;
    let tls = coordinator_tls(&net);
    let mut clients = signer_clients(&net, &tls);
    let commitments = round1(&mut clients, "demo-ed25519").await;
    let request = pb::SignShareRequest {
        request_id: "replay-test".into(),
        ..share_request("demo-ed25519", b"pay once", &commitments)
    };
    let first = clients[0]
        .1
        .sign_share(common::with_client_intent(&net, request.clone()))
        .await;
    assert!(first.is_ok(), "{first:?}");
    let replay = clients[0]
        .1
        .sign_share(common::with_client_intent(&net, request.clone()))
        .await
        .unwrap_err();
    assert_eq!(replay.code(), Code::FailedPrecondition, "{replay:?}");

    // The same commitments with another message: the nonce is gone as well, so a
    // coordinator cannot swap the message after round 1 either.
    let err = clients[0]
        .1
        .sign_share(common::with_client_intent(
            &net,
            pb::SignShareRequest {
                message: b"pay twice".to_vec(),
                ..request
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

/// A `SignShares` batch answers every request as `SignShare` would, in order: one
/// request's failure does not touch the others, a nonce cannot be spent twice within
/// one batch, and a batch of no requests or too many is refused whole.
#[tokio::test]
async fn a_node_answers_each_request_of_a_share_call_on_its_own() {
    let net = start_default().await;
    let tls = coordinator_tls(&net);
    let ops = Ciphersuite::Ed25519.ops();
    let mut clients = signer_clients(&net, &tls);
    let packages = [
        round1(&mut clients, "demo-ed25519").await,
        round1(&mut clients, "demo-ed25519").await,
    ];
    let tagged = |message: &[u8], package| pb::SignShareRequest {
        request_id: "share-call".into(),
        ..share_request("demo-ed25519", message, package)
    };
    let first = common::with_client_intent(&net, tagged(b"pay a", &packages[0]));
    let second = common::with_client_intent(&net, tagged(b"pay b", &packages[1]));
    let requests = vec![
        first.clone(),
        first.clone(),
        common::with_client_intent(&net, share_request("no-such-key", b"pay c", &packages[1])),
        second,
    ];
    let results = common::sign_shares_once(&mut clients[0].1, pb::SignSharesRequest { requests })
        .await
        .unwrap()
        .results;
    let outcome: Vec<Result<usize, Code>> = results.iter().map(share_outcome).collect();
    assert_eq!(
        outcome,
        vec![
            Ok(32),
            Err(Code::FailedPrecondition),
            Err(Code::NotFound),
            Ok(32)
        ]
    );
    // Each share has a record of its own, naming the nonce it spent.
    let tls_auditor = net.issue(Role::Auditor, "auditor").unwrap();
    let node = net.node("node-1").unwrap();
    let raw = quorate_ceremony::audit::fetch(&node.endpoint, "node-1", &tls_auditor)
        .await
        .unwrap();
    assert!(quorate_ceremony::audit::check(&raw).head.is_ok());
    let spent: Vec<String> = quorate_ceremony::audit::decode(&raw)
        .into_iter()
        .filter(|r| r.event == "sign_share" && r.request_id == "share-call")
        .map(|r| r.spent_commitment().unwrap().to_string())
        .collect();
    let own = ops.identifier("node-1").unwrap();
    let expected: Vec<String> = packages
        .iter()
        .map(|p| {
            let sha = quorate_wire::sha256(&p[&own]);
            format!("commitment_sha256={}", hex::encode(sha))
        })
        .collect();
    assert_eq!(spent, expected);

    let too_many = quorate_wire::api::MAX_SHARES_PER_BATCH + 1;
    for (requests, what) in [(0, "no requests"), (too_many, "too many requests")] {
        let err = common::sign_shares_once(
            &mut clients[0].1,
            pb::SignSharesRequest {
                requests: vec![first.clone(); requests],
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    }
}

/// One `SignShares` stream carries many batches: each is answered in the order it
/// was sent, and a batch refused whole ends the stream after the answers before it.
#[tokio::test]
async fn a_share_stream_answers_its_batches_in_order_and_a_bad_batch_ends_it() {
    let net = start_default().await;
    let tls = coordinator_tls(&net);
    let mut clients = signer_clients(&net, &tls);
    let packages = [
        round1(&mut clients, "demo-ed25519").await,
        round1(&mut clients, "demo-ed25519").await,
    ];
    let batch = |requests| pb::SignSharesRequest { requests };
    let batches = vec![
        batch(vec![common::with_client_intent(
            &net,
            share_request("demo-ed25519", b"pay a", &packages[0]),
        )]),
        batch(vec![common::with_client_intent(
            &net,
            share_request("no-such-key", b"pay b", &packages[1]),
        )]),
        batch(vec![common::with_client_intent(
            &net,
            share_request("demo-ed25519", b"pay c", &packages[1]),
        )]),
        batch(vec![]),
    ];
    let mut answers = clients[0]
        .1
        .sign_shares(futures::stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    let mut outcome: Vec<Result<usize, Code>> = Vec::new();
    loop {
        match answers.message().await {
            Ok(Some(answer)) => {
                assert_eq!(answer.results.len(), 1, "one result per request");
                outcome.push(share_outcome(&answer.results[0]));
            }
            Ok(None) => panic!("the stream ended without refusing the empty batch"),
            Err(status) => {
                outcome.push(Err(status.code()));
                break;
            }
        }
    }
    assert_eq!(
        outcome,
        vec![
            Ok(32),
            Err(Code::NotFound),
            Ok(32),
            Err(Code::InvalidArgument)
        ]
    );
}

#[tokio::test]
async fn a_node_refuses_commitments_it_did_not_issue() {
    let net = start_default().await;
    let tls = coordinator_tls(&net);
    let ops = Ciphersuite::Ed25519.ops();
    let mut n1 = node_client(&net, "node-1", &tls);
    let mut n2 = node_client(&net, "node-2", &tls);
    let mut n3 = node_client(&net, "node-3", &tls);
    // node-2's commitment presented as node-1's.
    let c2 = commit(&mut n2, "demo-ed25519").await;
    let c3 = commit(&mut n3, "demo-ed25519").await;
    let c2b = commit(&mut n2, "demo-ed25519").await;
    let mut commitments = BTreeMap::new();
    commitments.insert(ops.identifier("node-1").unwrap(), c2b);
    commitments.insert(ops.identifier("node-2").unwrap(), c2);
    commitments.insert(ops.identifier("node-3").unwrap(), c3);
    let err = n1
        .sign_share(common::with_client_intent(
            &net,
            share_request("demo-ed25519", b"m", &commitments),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    // Another signer's commitment that does not decode: refused before node-1
    // spends a nonce on it.
    let c1 = commit(&mut n1, "demo-ed25519").await;
    let mut garbled = BTreeMap::new();
    garbled.insert(ops.identifier("node-1").unwrap(), c1.clone());
    garbled.insert(ops.identifier("node-2").unwrap(), vec![0xff; c1.len()]);
    garbled.insert(
        ops.identifier("node-3").unwrap(),
        commit(&mut n3, "demo-ed25519").await,
    );
    let err = n1
        .sign_share(common::with_client_intent(
            &net,
            share_request("demo-ed25519", b"m", &garbled),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("commitments of signer"), "{err:?}");
    garbled.insert(
        ops.identifier("node-2").unwrap(),
        commit(&mut n2, "demo-ed25519").await,
    );
    let signed = n1
        .sign_share(common::with_client_intent(
            &net,
            share_request("demo-ed25519", b"m", &garbled),
        ))
        .await;
    assert!(signed.is_ok(), "the nonce survived the refusal: {signed:?}");

    // A commitment for one key cannot be used for another: node-1's Ed25519
    // commitment in a quorum for the Taproot key.
    let c1 = commit(&mut n1, "demo-ed25519").await;
    let err = n1
        .commit(pb::CommitRequest {
            key_id: "no-such-key".into(),
            count: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let tr = Ciphersuite::Secp256k1Tr.ops();
    let mut cross = BTreeMap::new();
    cross.insert(tr.identifier("node-1").unwrap(), c1);
    cross.insert(
        tr.identifier("node-2").unwrap(),
        commit(&mut n2, "demo-taproot").await,
    );
    cross.insert(
        tr.identifier("node-3").unwrap(),
        commit(&mut n3, "demo-taproot").await,
    );
    let err = n1
        .sign_share(common::with_client_intent(
            &net,
            share_request("demo-taproot", b"m", &cross),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
}

#[tokio::test]
async fn wrong_roles_are_permission_denied() {
    let net = start_default().await;
    // A node certificate calling the public Signer API.
    let as_node = SignerClient::connect(
        &net.coordinator_endpoint,
        "coordinator",
        &net.tls_paths(Role::Node, "node-1"),
    )
    .unwrap();
    let err = as_node
        .sign("demo-ed25519", b"m", None, DEADLINE)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // A client certificate calling a node directly.
    let client_tls = net.tls_paths(Role::Client, "demo-client");
    let mut direct = node_client(&net, "node-1", &client_tls);
    let err = direct
        .commit(pb::CommitRequest {
            key_id: "demo-ed25519".into(),
            count: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // A coordinator certificate calling the ceremony service.
    let channel = net
        .tls_paths(Role::Coordinator, "coordinator")
        .load()
        .unwrap()
        .node_channel(
            &net.node("node-1").unwrap().endpoint,
            "node-1",
            Duration::from_secs(2),
        )
        .unwrap();
    let err = pb::ceremony_client::CeremonyClient::new(channel)
        .install_key(pb::InstallKeyRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // A certificate from another trust domain's CA would fail the handshake; one from
    // this CA with a foreign trust domain is refused by role check.
    let foreign = quorate_ceremony::pki::issue(
        &net.pki_dir,
        "quorate.test",
        Role::Auditor,
        "auditor-1",
        None,
        &[],
    )
    .unwrap();
    let as_auditor = SignerClient::connect(
        &net.coordinator_endpoint,
        "coordinator",
        &foreign.tls_paths(),
    )
    .unwrap();
    assert_eq!(
        as_auditor.list_keys().await.unwrap_err().code(),
        Code::PermissionDenied
    );
}

#[tokio::test]
async fn a_caller_without_a_client_certificate_fails_the_handshake() {
    let net = start_default().await;
    let ca = std::fs::read(net.pki_dir.join("ca.pem")).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("coordinator");
    let channel = Endpoint::from_shared(net.coordinator_endpoint.clone())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy();
    let err = pb::signer_client::SignerClient::new(channel)
        .list_keys(pb::ListKeysRequest {})
        .await
        .unwrap_err();
    // The server aborts the TLS handshake, so the call fails in the transport (with
    // TLS 1.3 the client learns of it as a closed connection) and never reaches a
    // service: a status from a service carries no transport source.
    assert!(
        matches!(
            err.code(),
            Code::Unavailable | Code::Cancelled | Code::Unknown
        ),
        "{err:?}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "expected a transport failure, got a service status: {err:?}"
    );
    // The server log records the refused handshake.
    let log = net.coordinator.log_tail(50);
    assert!(
        !log.contains("sign refused"),
        "the request must not reach the service"
    );
}

#[tokio::test]
async fn a_restarted_node_keeps_its_shares_and_a_wrong_kek_is_refused() {
    let mut net = start_default().await;
    let client = net.client().await.unwrap();
    // Kill node-1, bring it back, and make it necessary for a quorum.
    net.kill_node("node-1").await.unwrap();
    net.start_node("node-1").await.unwrap();
    net.kill_node("node-4").await.unwrap();
    net.kill_node("node-5").await.unwrap();
    common::sign_every_key_with(&net, &client, "node-1", b"after restart").await;

    // Same store, another KEK: the node refuses to start and says why.
    net.kill_node("node-2").await.unwrap();
    let kek_file = net.node("node-2").unwrap().kek_file.clone();
    let good = std::fs::read_to_string(&kek_file).unwrap();
    std::fs::write(&kek_file, quorate_node::store::Kek::generate_hex().as_str()).unwrap();
    let idx = net
        .nodes
        .iter()
        .position(|n| n.spec.id == "node-2")
        .unwrap();
    net.nodes[idx].process.start().unwrap();
    let code = net.nodes[idx]
        .process
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(code, Some(64));
    assert!(net.nodes[idx].process.log_tail(5).contains("wrong KEK"));

    // The right KEK opens node-2's store again, with every share intact.
    std::fs::write(&kek_file, good).unwrap();
    net.start_node("node-2").await.unwrap();
    common::sign_every_key_with(&net, &client, "node-2", b"kek restored").await;

    // A wiped node comes back empty: it holds no key until a ceremony restores it.
    net.wipe_node("node-3").await.unwrap();
    let channel = net
        .tls_paths(Role::Ceremony, "testnet")
        .load()
        .unwrap()
        .node_channel(
            &net.node("node-3").unwrap().endpoint,
            "node-3",
            Duration::from_secs(2),
        )
        .unwrap();
    let err = pb::ceremony_client::CeremonyClient::new(channel)
        .get_manifest(pb::GetManifestRequest {
            key_id: "demo-ed25519".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn a_signer_sending_corrupt_shares_is_named_excluded_and_signing_goes_on() {
    let mut net = start_default().await;
    let client = net.client().await.unwrap();
    net.set_corrupt_signer("node-2", true).await.unwrap();
    // With node-4 and node-5 down, every quorum must include node-2: its share fails
    // verification, frost names it, and without it only two nodes are left.
    net.kill_node("node-4").await.unwrap();
    net.kill_node("node-5").await.unwrap();
    let err = client
        .sign("demo-ed25519", b"with a bad signer", None, DEADLINE)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let log = net.coordinator.log_tail(400);
    assert!(
        log.lines()
            .any(|l| l.contains("culprit") && l.contains("node-2")),
        "the coordinator log must name the culprit"
    );
    // Honest nodes back: every request succeeds, and the culprit stays out: not
    // even asked in round 1 as a spare while three others are available, so it is
    // not named again.
    let culprits = "quorate_coordinator_culprits_total{node=\"node-2\"}";
    let body = quorate_transport::metrics::scrape(&net.coordinator_metrics)
        .await
        .unwrap();
    let named_before = quorate_transport::metrics::sample(&body, culprits).unwrap_or(0.0);
    assert!(named_before >= 1.0, "{body}");
    net.start_node("node-4").await.unwrap();
    for i in 0..10 {
        let signed = client
            .sign_verified("demo-ed25519", format!("m{i}").as_bytes(), DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e:#}"));
        assert!(!signed.response.signers.contains(&"node-2".to_string()));
    }
    let body = quorate_transport::metrics::scrape(&net.coordinator_metrics)
        .await
        .unwrap();
    let named = quorate_transport::metrics::sample(&body, culprits).unwrap_or(0.0);
    assert_eq!(named, named_before, "{body}");
}
