//! A node cannot redirect clients to a key of its choosing: the coordinator counts
//! attesting participants, not manifest entries, and clients check the attestation
//! themselves. Real node and coordinator processes; node-1 is replaced by an
//! in-process fake that serves the `Node` service over mTLS with node-1's own
//! certificate from the testnet PKI and reports a forged manifest
//! (`quorate_testnet::rogue`, which the malicious-coordinator drill plays too).
//!
//! Nor can a coordinator roll a key back to a manifest from before a refresh: an
//! in-process fake coordinator, with the real coordinator's certificate, replays
//! the real network's pre-refresh `GetPublicKey` answer (every attestation
//! genuine) to the client library, which refuses it by its generation.

// Test helpers outside #[test] fns: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{start_default, DEADLINE};
use quorate_ceremony::keygen::RefreshRequest;
use quorate_client::{ClientError, CoordinatorEntry};
use quorate_keys::manifest::Manifest;
use quorate_testnet::client::SignerClient;
use quorate_testnet::rogue::{self, ForgingNode};
use quorate_testnet::spec::NetworkSpec;
use quorate_transport::attest::StatementSigner;
use quorate_transport::identity::Role;
use quorate_wire::pb;
use quorate_wire::pb::node_server::NodeServer;
use quorate_wire::pb::signer_server::{Signer, SignerServer};
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

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

/// A coordinator that answers `GetPublicKey` with whatever answer it holds (a
/// replay of the real coordinator's) and serves nothing else.
#[derive(Clone)]
struct ReplayingCoordinator {
    answer: Arc<Mutex<pb::GetPublicKeyResponse>>,
}

#[tonic::async_trait]
impl Signer for ReplayingCoordinator {
    async fn sign(
        &self,
        _: Request<pb::SignRequest>,
    ) -> Result<Response<pb::SignResponse>, Status> {
        Err(Status::unavailable("replaying coordinator"))
    }

    async fn get_public_key(
        &self,
        _: Request<pb::GetPublicKeyRequest>,
    ) -> Result<Response<pb::GetPublicKeyResponse>, Status> {
        Ok(Response::new(self.answer.lock().unwrap().clone()))
    }

    async fn list_keys(
        &self,
        _: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        Err(Status::unavailable("replaying coordinator"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_replaying_the_pre_refresh_manifest_is_refused_as_a_rollback() {
    let mut net = start_default().await;
    let raw = net.client().await.unwrap();
    let before = coordinator_answer(&raw).await;
    let old = Manifest::decode(&before.manifest).unwrap();
    assert_eq!(old.generation, 0, "a DKG makes generation 0");
    assert!(old.participant("node-5").is_some());

    net.refresh(RefreshRequest {
        key_id: KEY.into(),
        remove_node: Some("node-5".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    net.restart_coordinator().await.unwrap();
    let raw = net.client().await.unwrap();
    let after = coordinator_answer(&raw).await;
    let new = Manifest::decode(&after.manifest).unwrap();
    assert_eq!(
        new.generation, 1,
        "the coordinator serves the refreshed manifest"
    );
    assert!(new.participant("node-5").is_none());
    assert_eq!(
        after.public_key, before.public_key,
        "a refresh keeps the key"
    );

    // The old answer still carries every participant's genuine attestation: the
    // attestation alone cannot tell that it is stale.
    let verifier = net
        .tls_paths(Role::Client, "demo-client")
        .load()
        .unwrap()
        .statement_verifier()
        .unwrap();
    quorate_testnet::client::check_attested(&verifier, KEY, &before).unwrap();

    // A coordinator that turns: the real coordinator's certificate, on another
    // port, answering as it likes.
    let mut config = net.client_config();
    let server_name = config.coordinators[0].server_name().unwrap();
    let material = net
        .tls_paths(Role::Coordinator, &server_name)
        .load()
        .unwrap();
    let replay = ReplayingCoordinator {
        answer: Arc::new(Mutex::new(after.clone())),
    };
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap()).unwrap();
    let endpoint = format!("https://{}", incoming.local_addr().unwrap());
    tokio::spawn(
        Server::builder()
            .tls_config(material.server_config())
            .unwrap()
            .add_service(SignerServer::new(replay.clone()))
            .serve_with_incoming(incoming),
    );
    config.coordinators = vec![CoordinatorEntry::Named {
        endpoint,
        server_name: Some(server_name),
    }];
    let client = quorate_client::Client::new(&config).unwrap();

    let current = client.public_key(KEY).await.unwrap();
    assert_eq!(current.generation, 1);
    assert_eq!(current.participants.len(), 4);

    *replay.answer.lock().unwrap() = before.clone();
    let err = client.public_key(KEY).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::BadResponse { message, .. }
            if message.contains("rollback") && message.contains("generation 0")),
        "{err}"
    );
    // The refreshed manifest is still what the client holds to.
    *replay.answer.lock().unwrap() = after;
    assert_eq!(client.public_key(KEY).await.unwrap().generation, 1);
}
