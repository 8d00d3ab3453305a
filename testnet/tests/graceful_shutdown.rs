//! Graceful shutdown with real processes: a node or a coordinator sent SIGTERM
//! under signing load exits by itself within its shutdown grace, and no request
//! fails. Before, a node kept serving its coordinator's long-lived connection and
//! round-2 stream after SIGTERM and only a SIGKILL ended it.

mod common;

use std::time::Duration;

use quorate_testnet::drill::load::{Load, LoadKey, Outcome, Sample};
use quorate_testnet::network::LocalNetwork;
use quorate_testnet::spec::NetworkSpec;
use quorate_transport::runtime::DEFAULT_SHUTDOWN_GRACE_MS;

/// The servers' default grace, and a margin for the exit and for this test to see it.
const EXIT_BOUND: Duration = Duration::from_millis(DEFAULT_SHUTDOWN_GRACE_MS + 2_000);

async fn start_two_coordinators() -> (LocalNetwork, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = LocalNetwork::start_with(
        &dir.path().join("net"),
        &common::bin_dir(),
        NetworkSpec::default_five_regions(),
        2,
    )
    .await
    .expect("network starts");
    (net, dir)
}

/// Load over every unrestricted key, through clients that know both
/// coordinators: one lists the first first, the other the second.
async fn load(net: &LocalNetwork, label: &str) -> Load {
    let signer = net.coordinator_client(0).unwrap();
    let mut keys = Vec::new();
    for key in net.spec.keys.iter().filter(|k| k.policy.is_none()) {
        let public = signer.public_key(&key.key_id).await.unwrap();
        keys.push(LoadKey {
            key_id: key.key_id.clone(),
            ciphersuite: quorate_wire::ciphersuite_from_pb(public.ciphersuite).unwrap(),
            public_key: public.public_key,
        });
    }
    let config = net.client_config();
    let mut reversed = config.clone();
    reversed.coordinators.reverse();
    let clients = [
        (0, quorate_client::Client::new(&config).unwrap()),
        (1, quorate_client::Client::new(&reversed).unwrap()),
    ];
    Load::start(&clients, &keys, label)
}

fn assert_none_failed(samples: &[Sample], during: &str) {
    let failed: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.outcome != Outcome::Signed)
        .collect();
    let signed = samples.len() - failed.len();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed {during}; first: {:?}",
        failed.len(),
        samples.len(),
        failed.first().map(|s| &s.outcome)
    );
    assert!(signed >= 20, "only {signed} signatures {during}");
}

#[tokio::test]
async fn a_node_sigtermed_under_load_exits_within_its_grace_and_no_request_fails() {
    let (mut net, _dir) = start_two_coordinators().await;
    let load = load(&net, "node-sigterm").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The coordinators now hold an HTTP/2 connection with a round-2 stream open
    // to every node, which kept a node alive after SIGTERM.
    let exit = net.terminate_node("node-1", EXIT_BOUND).await.unwrap();
    assert!(
        exit.clean_within(EXIT_BOUND),
        "node-1 after SIGTERM: {exit}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    net.start_node("node-1").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let samples = load.stop().await;
    assert_none_failed(&samples, "while node-1 shut down and restarted");
}

#[tokio::test]
async fn a_coordinator_sigtermed_under_load_exits_within_its_grace_and_its_clients_fail_over() {
    let (mut net, _dir) = start_two_coordinators().await;
    let load = load(&net, "coordinator-sigterm").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let exit = net.terminate_coordinator(0, EXIT_BOUND).await.unwrap();
    assert!(
        exit.clean_within(EXIT_BOUND),
        "the coordinator after SIGTERM: {exit}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let samples = load.stop().await;
    assert_none_failed(&samples, "while a coordinator shut down");
    net.start_coordinator(0).await.unwrap();
}
