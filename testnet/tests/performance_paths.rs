//! The fast paths keep their guarantees: one-round signing from preprocessed
//! commitments falls back safely when a node forgets them and keeps every node's pool
//! stocked, and a hung node does not add its timeout to every request.

mod common;

use std::time::{Duration, Instant};

use common::{start, DEADLINE};
use quorate_frost::Ciphersuite;
use quorate_testnet::client::SignerClient;
use quorate_testnet::spec::{KeySpec, NetworkSpec};
use quorate_transport::metrics;

/// Five signatures with key `k`, so that the pools are stocked and every node has
/// answered before a test freezes one.
async fn warm_up(client: &SignerClient) {
    for i in 0..5 {
        client
            .sign("k", format!("warm {i}").as_bytes(), None, DEADLINE)
            .await
            .unwrap();
    }
}

async fn counter(addr: &str, name: &str) -> u64 {
    let text = metrics::scrape(addr).await.unwrap();
    metrics::sample(&text, name).map_or(0, |v| v as u64)
}

fn spec(n: usize, t: u16) -> NetworkSpec {
    let mut spec = NetworkSpec::generic(n, t);
    spec.keys = vec![KeySpec::new("k", Ciphersuite::Ed25519)];
    spec
}

#[tokio::test]
async fn one_round_signing_falls_back_when_a_restarted_node_forgot_its_commitments() {
    // 3-of-3: every signature needs every node, so the restarted one must take part.
    let mut net = start(spec(3, 3)).await;
    let client = net.client().await.unwrap();
    for i in 0..10 {
        client
            .sign_verified("k", format!("warm {i}").as_bytes(), DEADLINE)
            .await
            .unwrap();
        // Give the background refill a moment so later signatures find pooled
        // commitments.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let one_round = counter(
        &net.coordinator_metrics,
        "quorate_coordinator_one_round_total",
    )
    .await;
    assert!(one_round > 0, "no signature used preprocessed commitments");

    // node-2 restarts: the commitments the coordinator pooled for it are gone.
    net.kill_node("node-2").await.unwrap();
    net.start_node("node-2").await.unwrap();
    for i in 0..5 {
        let signed = client
            .sign_verified("k", format!("after restart {i}").as_bytes(), DEADLINE)
            .await
            .unwrap();
        assert!(signed.response.signers.contains(&"node-2".to_string()));
    }
    let log = net.coordinator.log_tail(200);
    assert!(
        log.contains("pooled commitment refused; falling back to two rounds"),
        "the fallback should be visible in the coordinator log"
    );
}

#[tokio::test]
async fn a_hung_node_does_not_slow_every_request() {
    let net = start(spec(5, 3)).await;
    let client = net.client().await.unwrap();
    warm_up(&client).await;
    net.node("node-1").unwrap().process.freeze().unwrap();
    let node_timeout = Duration::from_millis(1500);
    let mut slow = 0;
    for i in 0..20 {
        let t0 = Instant::now();
        client
            .sign_verified("k", format!("frozen {i}").as_bytes(), DEADLINE)
            .await
            .unwrap();
        if t0.elapsed() >= node_timeout {
            slow += 1;
        }
    }
    net.node("node-1").unwrap().process.thaw().unwrap();
    // The first requests may wait for node-1 before it is marked failed; after that
    // it is skipped (and probed back in later).
    assert!(slow <= 3, "{slow} of 20 requests waited for the hung node");
}

/// Regression: a stale key cache was refreshed inside `Sign`, and a refresh waits for
/// every node up to the node timeout, so with a node hung every `Sign` arriving while
/// the cache was stale waited 1.5 s. It is now refreshed in the background.
#[tokio::test]
async fn a_hung_node_does_not_stall_signing_when_the_key_cache_goes_stale() {
    let mut net = start(spec(5, 3)).await;
    // A key cache that goes stale every second.
    net.restart_coordinator_with_signing("key_refresh_secs = 1")
        .await;
    let client = net.client().await.unwrap();
    warm_up(&client).await;
    net.node("node-1").unwrap().process.freeze().unwrap();
    // The first requests may wait for node-1 until it is marked failed (the test
    // above); after that, none may wait for it, though the cache goes stale every
    // second and each refresh waits for node-1 up to the node timeout.
    let settle = Instant::now();
    let mut signed = 0;
    while settle.elapsed() < Duration::from_secs(2) {
        client
            .sign("k", format!("settle {signed}").as_bytes(), None, DEADLINE)
            .await
            .unwrap();
        signed += 1;
    }
    let node_timeout = Duration::from_millis(1500);
    let (mut counted, mut slow) = (0, 0);
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(5) {
        let t0 = Instant::now();
        client
            .sign_verified("k", format!("stale {counted}").as_bytes(), DEADLINE)
            .await
            .unwrap();
        counted += 1;
        if t0.elapsed() >= node_timeout {
            slow += 1;
        }
    }
    net.node("node-1").unwrap().process.thaw().unwrap();
    assert!(counted >= 10, "only {counted} signatures in 5 s");
    assert_eq!(
        slow, 0,
        "{slow} of {counted} requests waited for the hung node"
    );
}

/// Regression: under 64 concurrent clients about 30% of signatures fell back to two
/// rounds, because only the first t+1 candidates' pools were refilled, and only once
/// they were half empty, so the preferred nodes' pools ran dry between refills.
#[tokio::test]
async fn every_nodes_pool_is_stocked_so_a_burst_signs_in_one_round() {
    let net = start(spec(5, 3)).await;
    let client = net.client().await.unwrap();
    // The first signature finds the pools empty (two rounds) and stocks them all.
    client.sign_verified("k", b"first", DEADLINE).await.unwrap();
    let batch = 64;
    let stocked = Instant::now() + Duration::from_secs(20);
    loop {
        let pooled = counter(
            &net.coordinator_metrics,
            "quorate_coordinator_pooled_commitments",
        )
        .await;
        if pooled >= 5 * batch {
            break;
        }
        assert!(
            Instant::now() < stocked,
            "the pools hold {pooled} commitments, not a batch of {batch} for each of the 5 nodes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = counter(
        &net.coordinator_metrics,
        "quorate_coordinator_one_round_total",
    )
    .await;
    // A burst no single batch per node can be short of, even if it always went to
    // the same three nodes.
    let burst = 60;
    let signs = (0..burst).map(|i| {
        let client = client.clone();
        async move {
            client
                .sign_verified("k", format!("burst {i}").as_bytes(), DEADLINE)
                .await
                .unwrap()
        }
    });
    futures::future::join_all(signs).await;
    let one_round = counter(
        &net.coordinator_metrics,
        "quorate_coordinator_one_round_total",
    )
    .await
        - before;
    assert_eq!(
        one_round, burst,
        "signatures of the burst made in one round"
    );
}

/// Under concurrent load the round-2 requests for a node share `SignShares` batches,
/// each still answered on its own: every signature of the burst verifies, and every
/// request went out exactly once.
#[tokio::test]
async fn concurrent_signatures_share_round_two_calls() {
    let net = start(spec(5, 3)).await;
    let client = net.client().await.unwrap();
    client.sign_verified("k", b"first", DEADLINE).await.unwrap();
    // (SignShares batches, round-2 requests they carried) so far.
    let shares = || async {
        (
            counter(
                &net.coordinator_metrics,
                "quorate_coordinator_share_calls_total",
            )
            .await,
            counter(
                &net.coordinator_metrics,
                "quorate_coordinator_share_requests_total",
            )
            .await,
        )
    };
    let (calls_before, requests_before) = shares().await;
    let burst = 64;
    let signs = (0..burst).map(|i| {
        let client = client.clone();
        async move {
            client
                .sign_verified("k", format!("burst {i}").as_bytes(), DEADLINE)
                .await
                .unwrap()
        }
    });
    futures::future::join_all(signs).await;
    let (calls_after, requests_after) = shares().await;
    let (calls, requests) = (calls_after - calls_before, requests_after - requests_before);
    assert_eq!(requests, 3 * burst, "round-2 requests of the burst");
    assert!(
        calls < requests,
        "{requests} round-2 requests went out in {calls} batches: none were batched"
    );
}
