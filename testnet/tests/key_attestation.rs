//! A node cannot redirect clients to a key of its choosing: the coordinator counts
//! attesting participants, not manifest entries, and clients check the attestation
//! themselves. Real node and coordinator processes; node-1 is replaced by an
//! in-process fake that serves the `Node` service over mTLS with node-1's own
//! certificate from the testnet PKI and reports a forged manifest
//! (`quorate_testnet::rogue`, which the malicious-coordinator drill plays too).

// Test helpers outside #[test] fns: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{start_default, DEADLINE};
use quorate_keys::manifest::Manifest;
use quorate_testnet::client::SignerClient;
use quorate_testnet::rogue::{self, ForgingNode};
use quorate_testnet::spec::NetworkSpec;
use quorate_transport::attest::StatementSigner;
use quorate_transport::identity::Role;
use quorate_wire::pb;
use quorate_wire::pb::node_server::NodeServer;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

const KEY: &str = "demo-ed25519";

/// A valid manifest for `KEY` that the network never made (the drill's).
fn forged_manifest() -> Manifest {
    rogue::forged_manifest(&NetworkSpec::default_five_regions(), KEY).unwrap()
}

/// The coordinator's `GetPublicKey` answer for `KEY`, as it is (unchecked).
async fn coordinator_answer(client: &SignerClient) -> pb::GetPublicKeyResponse {
    client
        .raw()
        .get_public_key(pb::GetPublicKeyRequest { key_id: KEY.into() })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_reporting_a_forged_manifest_many_times_does_not_redirect_clients() {
    let mut net = start_default().await;
    let client = net.client().await.unwrap();
    let true_key = coordinator_answer(&client).await.public_key;

    // node-1 turns: its real certificate, signing whatever it likes.
    let tls = net.tls_paths(Role::Node, "node-1");
    let material = tls.load().unwrap();
    let signer = StatementSigner::from_pem(
        &std::fs::read(&tls.cert).unwrap(),
        &std::fs::read(&tls.key).unwrap(),
    )
    .unwrap();
    let forged = forged_manifest();
    assert_ne!(forged.public_key.public_key, true_key);
    // Reports that count for nothing first (unattested, attested in node-2's name:
    // each is judged and logged), then the forged manifest with node-1's own valid
    // attestation, twenty times.
    let keys = rogue::forged_reports(&signer, "node-1", "node-2", &forged).unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&answered);
    let on_answer = Arc::new(move |_: usize| {
        counter.fetch_add(1, Ordering::SeqCst);
    });

    let endpoint = net.node("node-1").unwrap().endpoint.clone();
    net.stop_node("node-1").await.unwrap();
    let addr: SocketAddr = endpoint.trim_start_matches("https://").parse().unwrap();
    let incoming = TcpIncoming::bind(addr).unwrap();
    tokio::spawn(
        Server::builder()
            .tls_config(material.server_config())
            .unwrap()
            .add_service(NodeServer::new(ForgingNode::new(keys, on_answer)))
            .serve_with_incoming(incoming),
    );

    // A fresh coordinator: nothing cached, only the nodes' reports to go on.
    net.restart_coordinator().await.unwrap();
    let client = net.client().await.unwrap();
    let answer = coordinator_answer(&client).await;
    assert_eq!(
        answer.public_key, true_key,
        "the coordinator serves the true key"
    );
    // ... and the client library, checking the attestation itself, accepts it.
    assert_eq!(client.public_key(KEY).await.unwrap().public_key, true_key);
    assert_eq!(answer.threshold, 3);
    assert!(
        answer.attestation.len() >= 3,
        "the true key comes with its participants' attestation"
    );
    let signed = client
        .sign_verified(KEY, b"attested", DEADLINE)
        .await
        .unwrap();
    assert_eq!(signed.public_key, true_key);
    assert!(!signed.response.signers.contains(&"node-1".to_string()));
    assert!(
        answered.load(Ordering::SeqCst) > 0,
        "the coordinator asked the forging node-1"
    );

    // The coordinator said why node-1's reports did not count.
    let mut log = String::new();
    for _ in 0..50 {
        log = net.coordinator.log_tail(400);
        if log.contains("does not count") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        log.lines()
            .any(|l| l.contains("does not count") && l.contains("node-1") && l.contains("node-2")),
        "no warning about node-1's attestation for node-2:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("node-1") && l.contains("no attestation")),
        "no warning about node-1's unattested report:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(KEY) && l.contains("attested by 1 of its participants")),
        "no warning that the forged manifest lacks attesters:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_refuses_a_public_key_whose_attestation_does_not_verify() {
    let net = start_default().await;
    let client = net.client().await.unwrap();
    let mut answer = client
        .raw()
        .get_public_key(pb::GetPublicKeyRequest { key_id: KEY.into() })
        .await
        .unwrap()
        .into_inner();
    let verifier = net
        .tls_paths(Role::Client, "demo-client")
        .load()
        .unwrap()
        .statement_verifier()
        .unwrap();
    quorate_testnet::client::check_attested(&verifier, KEY, &answer).unwrap();

    // A coordinator swapping in another key, with or without its manifest, is caught.
    let forged = forged_manifest();
    let mut swapped = answer.clone();
    swapped.public_key = forged.public_key.public_key.clone();
    assert!(quorate_testnet::client::check_attested(&verifier, KEY, &swapped).is_err());
    swapped.manifest = forged.encoded.clone();
    let err = quorate_testnet::client::check_attested(&verifier, KEY, &swapped).unwrap_err();
    assert!(err.to_string().contains("differ"), "{err}");

    // Fewer than threshold distinct attesters: refused, whatever is repeated.
    let one = answer.attestation[0].clone();
    answer.attestation = vec![one; 5];
    let err = quorate_testnet::client::check_attested(&verifier, KEY, &answer).unwrap_err();
    assert!(err.to_string().contains("1 of its participants"), "{err}");
}
