//! Shared setup for the testnet integration tests: a real network of processes in a
//! temporary directory.

#![allow(dead_code)]

pub mod audit_log;
pub mod refresh_relay;

use std::path::PathBuf;
use std::time::Duration;

use quorate_testnet::network::LocalNetwork;
use quorate_testnet::spec::NetworkSpec;

/// The directory holding the workspace's binaries (target/<profile>).
pub fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quorate-testnet"))
        .parent()
        .expect("binary has a directory")
        .to_path_buf()
}

/// A started network and the temporary directory it lives in.
pub struct TestNetwork {
    pub net: LocalNetwork,
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for TestNetwork {
    type Target = LocalNetwork;
    fn deref(&self) -> &LocalNetwork {
        &self.net
    }
}

impl std::ops::DerefMut for TestNetwork {
    fn deref_mut(&mut self) -> &mut LocalNetwork {
        &mut self.net
    }
}

impl TestNetwork {
    /// Restarts the coordinator with `settings` (TOML lines) in its config's
    /// `[signing]` table, and waits until it serves every key again.
    pub async fn restart_coordinator_with_signing(&mut self, settings: &str) {
        let config = self.dir.path().join("net/coordinator.toml");
        let mut text = std::fs::read_to_string(&config).expect("coordinator config");
        text.push_str(&format!("\n[signing]\n{settings}\n"));
        std::fs::write(&config, text).expect("coordinator config written");
        self.net
            .restart_coordinator()
            .await
            .expect("coordinator restarts");
    }
}

pub async fn start(spec: NetworkSpec) -> TestNetwork {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = LocalNetwork::start(&dir.path().join("net"), &bin_dir(), spec)
        .await
        .expect("network starts");
    TestNetwork { net, dir }
}

pub async fn start_default() -> TestNetwork {
    start(NetworkSpec::default_five_regions()).await
}

pub const DEADLINE: Duration = Duration::from_secs(5);

/// A `Ceremony` client of node `node_id` with the network's ceremony certificate:
/// what the ceremony tool, or an attacker holding its certificate, talks to.
pub async fn ceremony_client(
    net: &LocalNetwork,
    node_id: &str,
) -> quorate_wire::pb::ceremony_client::CeremonyClient<tonic::transport::Channel> {
    let node = net.node(node_id).unwrap();
    let channel = net
        .tls_paths(quorate_transport::identity::Role::Ceremony, "testnet")
        .load()
        .unwrap()
        .node_channel(&node.endpoint, node_id, Duration::from_secs(5))
        .unwrap();
    quorate_wire::pb::ceremony_client::CeremonyClient::new(channel)
}

/// One `SignShares` batch on a stream of its own: the node's answer, or the status
/// that refused the stream or ended it.
pub async fn sign_shares_once(
    client: &mut quorate_wire::pb::node_client::NodeClient<tonic::transport::Channel>,
    batch: quorate_wire::pb::SignSharesRequest,
) -> Result<quorate_wire::pb::SignSharesResponse, tonic::Status> {
    let mut answers = client
        .sign_shares(futures::stream::iter([batch]))
        .await?
        .into_inner();
    answers
        .message()
        .await?
        .ok_or_else(|| tonic::Status::internal("the node ended the stream without an answer"))
}

/// `req` with the demo client's signed intent for exactly its key, message, request
/// id and approval token: what a real client sends the coordinator, which a test
/// playing the coordinator relays to the nodes.
pub fn with_client_intent(
    net: &LocalNetwork,
    req: quorate_wire::pb::SignShareRequest,
) -> quorate_wire::pb::SignShareRequest {
    use quorate_transport::intent::{sign_intent, IntentRequest, SignIntent};
    let signer = net
        .tls_paths(quorate_transport::identity::Role::Client, "demo-client")
        .load()
        .expect("the demo client's certificate")
        .statement_signer()
        .expect("the demo client's key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    let request = IntentRequest {
        key_id: &req.key_id,
        message: &req.message,
        request_id: &req.request_id,
        approval_token: (!req.approval_token.is_empty()).then_some(req.approval_token.as_slice()),
    };
    let intent = sign_intent(&signer, &SignIntent::for_request(&request, now, 300))
        .expect("the demo client signs");
    quorate_wire::pb::SignShareRequest {
        intent: Some(intent),
        ..req
    }
}

/// Signs `message` with every key of `net` through `client`, and checks that `node`
/// is one of each signature's signers (the test has made it needed for a quorum).
pub async fn sign_every_key_with(
    net: &LocalNetwork,
    client: &quorate_testnet::client::SignerClient,
    node: &str,
    message: &[u8],
) {
    for key in &net.spec.keys {
        let signed = client
            .sign_verified(&key.key_id, message, DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", key.key_id));
        assert!(
            signed.response.signers.iter().any(|s| s == node),
            "{}: {node} did not sign ({:?})",
            key.key_id,
            signed.response.signers
        );
    }
}
