//! Resource limits over real processes: the request size caps of the coordinator and
//! the nodes (both sides of each boundary), and the bound on concurrent `Sign`
//! requests per client identity. Request deadlines are covered by
//! `signing_network::three_of_five_down_is_unavailable_within_the_deadline_and_recovers`
//! and again below for requests held in flight.

mod common;

use std::time::{Duration, Instant};

use common::{start_default, DEADLINE};
use quorate_testnet::client::SignerClient;
use quorate_transport::identity::Role;
use quorate_wire::pb;
use quorate_wire::pb::ceremony_client::CeremonyClient;
use tonic::Code;

const ED: &str = "demo-ed25519";

#[tokio::test]
async fn request_size_caps_refuse_only_what_is_over_them() {
    let net = start_default().await;
    let client = net.client().await.unwrap();

    // Coordinator: a message over MAX_MESSAGE_BYTES but under the transport cap
    // reaches the handler and is refused there with a message naming the limit...
    let under_cap = vec![1u8; quorate_wire::MAX_SIGNER_REQUEST_BYTES - 1024];
    let err = client
        .sign(ED, &under_cap, None, DEADLINE)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("limit"), "{err:?}");
    // ... a request over the cap is refused by the gRPC layer.
    let over_cap = vec![1u8; quorate_wire::MAX_SIGNER_REQUEST_BYTES + 1];
    let err = client
        .sign(ED, &over_cap, None, DEADLINE)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    // The same connection keeps working.
    client
        .sign_verified(ED, b"after the caps", DEADLINE)
        .await
        .unwrap();

    // Node: an install request just under the cap is parsed (and refused as a bad
    // manifest); one over it never reaches the handler.
    let channel = net
        .tls_paths(Role::Ceremony, "testnet")
        .load()
        .unwrap()
        .node_channel(
            &net.node("node-1").unwrap().endpoint,
            "node-1",
            Duration::from_secs(2),
        )
        .unwrap();
    let mut ceremony = CeremonyClient::new(channel);
    let err = ceremony
        .install_key(pb::InstallKeyRequest {
            manifest: vec![0xff; quorate_wire::MAX_NODE_REQUEST_BYTES - 1024],
            key_package: Vec::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = ceremony
        .install_key(pb::InstallKeyRequest {
            manifest: vec![0xff; quorate_wire::MAX_NODE_REQUEST_BYTES + 1],
            key_package: Vec::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    ceremony
        .get_info(pb::GetInfoRequest {})
        .await
        .expect("the node still serves");
}

#[tokio::test]
async fn a_client_over_its_in_flight_bound_is_refused_at_once_and_others_are_not() {
    let mut net = start_default().await;
    // Restart the coordinator with a bound of 2 in-flight requests per client.
    net.restart_coordinator_with_signing("max_in_flight_per_client = 2")
        .await;
    let client = net.client().await.unwrap();
    // Resolve the key while the nodes answer, then freeze every node so that
    // requests stay in flight until their deadline.
    client
        .sign_verified(ED, b"warm up", DEADLINE)
        .await
        .unwrap();
    for node in &net.nodes {
        node.process.freeze().unwrap();
    }
    let hold = Duration::from_secs(3);
    let held: Vec<_> = (0..2)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let t0 = Instant::now();
                let result = client
                    .sign(ED, format!("held {i}").as_bytes(), None, hold)
                    .await;
                (result, t0.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let t0 = Instant::now();
    let err = client
        .sign(ED, b"one too many", None, hold)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("in flight"), "{err:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "refused only after {:?}: it must not queue",
        t0.elapsed()
    );
    // Another client identity has its own bound.
    let other = SignerClient::connect(
        &net.coordinator_endpoint,
        "coordinator",
        &net.issue(Role::Client, "other-client").unwrap(),
    )
    .unwrap();
    let err = other
        .sign(ED, b"other client", None, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::ResourceExhausted, "{err:?}");

    // The held requests end within their deadline with the coordinator's own answer.
    for task in held {
        let (result, took) = task.await.unwrap();
        let err = result.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(took < hold + Duration::from_millis(500), "took {took:?}");
    }
    for node in &net.nodes {
        node.process.thaw().unwrap();
    }
    // The slots were released: the client signs again once the nodes are back.
    let t0 = Instant::now();
    loop {
        match client.sign_verified(ED, b"after the bound", DEADLINE).await {
            Ok(_) => break,
            Err(e) if t0.elapsed() < Duration::from_secs(15) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no signature after thawing: {e}"),
        }
    }
}
