//! End-to-end tests of the signing network: real `quorate-node` and
//! `quorate-coordinator` processes over mTLS on loopback.

mod common;

use std::time::{Duration, Instant};

use common::{start, start_default, DEADLINE};
use quorate_frost::Ciphersuite;
use quorate_testnet::spec::{KeySpec, NetworkSpec};
use quorate_wire::pb;
use tonic::Code;

#[tokio::test]
async fn every_ciphersuite_signs_and_verifies_with_independent_verifiers() {
    let net = start_default().await;
    let client = net.client().await.unwrap();
    for key in net.spec.keys.iter().filter(|k| k.policy.is_none()) {
        for message in [
            b"a".to_vec(),
            b"pay 10 EUR to ACME".to_vec(),
            vec![0xAB; 65536],
        ] {
            let signed = client
                .sign_verified(&key.key_id, &message, DEADLINE)
                .await
                .unwrap_or_else(|e| panic!("{}: {e:#}", key.key_id));
            assert_eq!(signed.ciphersuite, key.ciphersuite);
            assert_eq!(signed.response.signers.len(), 3);
            let expected_len = match key.ciphersuite {
                Ciphersuite::Ed25519 | Ciphersuite::Secp256k1Tr => 64,
                Ciphersuite::Secp256k1 => 65,
            };
            assert_eq!(signed.response.signature.len(), expected_len);
        }
    }
}

#[tokio::test]
async fn public_key_and_key_list_describe_the_installed_keys() {
    let net = start_default().await;
    let client = net.client().await.unwrap();
    let keys = client.list_keys().await.unwrap();
    assert_eq!(keys.len(), net.spec.keys.len());
    for k in &keys {
        assert_eq!((k.threshold, k.participants), (3, 5));
    }
    let pk = client.public_key("demo-ed25519").await.unwrap();
    assert_eq!(pk.public_key.len(), 32);
    assert_eq!(pk.ciphersuite, pb::Ciphersuite::Ed25519 as i32);
    let regions: Vec<(&str, &str)> = pk
        .participants
        .iter()
        .map(|p| (p.region.as_str(), p.jurisdiction.as_str()))
        .collect();
    assert!(regions.contains(&("eu-central-sov", "EU")));
    assert!(regions.contains(&("ap-southeast", "SG")));
    assert!(pk
        .participants
        .iter()
        .all(|p| !p.identifier.is_empty() && p.verifying_share.len() == 32));
    let tr = client.public_key("demo-taproot").await.unwrap();
    assert_eq!(tr.public_key.len(), 32, "BIP340 keys are x-only");
    let secp = client.public_key("demo-secp256k1").await.unwrap();
    assert_eq!(secp.public_key.len(), 33, "compressed SEC1");
}

#[tokio::test]
async fn signing_survives_any_two_of_five_nodes_down() {
    let mut net = start_default().await;
    let client = net.client().await.unwrap();
    let ids: Vec<String> = net.nodes.iter().map(|n| n.spec.id.clone()).collect();
    for a in 0..ids.len() {
        for b in a + 1..ids.len() {
            net.kill_node(&ids[a]).await.unwrap();
            net.kill_node(&ids[b]).await.unwrap();
            // The EU key's policy may legitimately refuse when EU nodes are down;
            // that is tested in the sovereignty tests.
            for key in net
                .spec
                .keys
                .clone()
                .into_iter()
                .filter(|k| k.policy.is_none())
            {
                let signed = client
                    .sign_verified(&key.key_id, b"two nodes are down", DEADLINE)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("{} and {} down, {}: {e:#}", ids[a], ids[b], key.key_id)
                    });
                assert!(!signed.response.signers.contains(&ids[a]));
                assert!(!signed.response.signers.contains(&ids[b]));
            }
            net.start_node(&ids[a]).await.unwrap();
            net.start_node(&ids[b]).await.unwrap();
        }
    }
}

#[tokio::test]
async fn three_of_five_down_is_unavailable_within_the_deadline_and_recovers() {
    let mut net = start_default().await;
    let client = net.client().await.unwrap();
    for id in ["node-1", "node-3", "node-5"] {
        net.kill_node(id).await.unwrap();
    }
    let deadline = Duration::from_secs(2);
    for _ in 0..3 {
        let started = Instant::now();
        let err = client
            .sign("demo-ed25519", b"no quorum", None, deadline)
            .await
            .unwrap_err();
        let elapsed = started.elapsed();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(
            err.message().contains("2 of 5 nodes answered, 3 needed"),
            "message should name answered and needed: {}",
            err.message()
        );
        assert!(
            elapsed < deadline,
            "took {elapsed:?}, deadline {deadline:?}"
        );
    }
    net.start_node("node-3").await.unwrap();
    client
        .sign_verified("demo-ed25519", b"quorum is back", DEADLINE)
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_requests_get_their_contracted_status_codes() {
    let net = start_default().await;
    let client = net.client().await.unwrap();
    let code = |r: Result<pb::SignResponse, tonic::Status>| r.unwrap_err().code();
    assert_eq!(
        code(client.sign("no-such-key", b"m", None, DEADLINE).await),
        Code::NotFound
    );
    assert_eq!(
        code(client.sign("demo-ed25519", b"", None, DEADLINE).await),
        Code::InvalidArgument
    );
    let oversized = vec![0u8; quorate_wire::MAX_MESSAGE_BYTES + 1];
    assert_eq!(
        code(
            client
                .sign("demo-ed25519", &oversized, None, DEADLINE)
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(client.sign("", b"m", None, DEADLINE).await),
        Code::InvalidArgument
    );
    assert_eq!(
        client.public_key("no-such-key").await.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn request_id_is_idempotent_and_cannot_be_reused_for_another_message() {
    let net = start_default().await;
    let client = net.client().await.unwrap();
    let first = client
        .sign("demo-ed25519", b"transfer #1", Some("req-1"), DEADLINE)
        .await
        .unwrap();
    let again = client
        .sign("demo-ed25519", b"transfer #1", Some("req-1"), DEADLINE)
        .await
        .unwrap();
    assert_eq!(first.signature, again.signature);
    assert_eq!(first.signers, again.signers);
    let other = client
        .sign("demo-ed25519", b"transfer #2", Some("req-1"), DEADLINE)
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::AlreadyExists);
    // Without a request id, each call is a fresh signature (FROST nonces are random).
    let a = client
        .sign("demo-ed25519", b"x", None, DEADLINE)
        .await
        .unwrap();
    let b = client
        .sign("demo-ed25519", b"x", None, DEADLINE)
        .await
        .unwrap();
    assert_ne!(a.signature, b.signature);
}

#[tokio::test]
async fn larger_networks_sign_with_their_threshold() {
    let mut spec = NetworkSpec::generic(7, 5);
    spec.keys = vec![KeySpec::new("k7", Ciphersuite::Secp256k1Tr)];
    let mut net = start(spec).await;
    let client = net.client().await.unwrap();
    net.kill_node("node-2").await.unwrap();
    net.kill_node("node-6").await.unwrap();
    let signed = client
        .sign_verified("k7", b"5 of 7", DEADLINE)
        .await
        .unwrap();
    assert_eq!(signed.response.signers.len(), 5);
    net.kill_node("node-7").await.unwrap();
    let err = client
        .sign("k7", b"4 left", None, DEADLINE)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
}
