//! The bad-input matrix: every RPC of the coordinator and the nodes, called over mTLS
//! against real processes with empty, oversized, malformed, wrong-ciphersuite,
//! wrong-key, wrong-role and replayed inputs. One table row per (rpc, input class,
//! expected code). Afterwards every process is still alive, signing still works, no
//! key or manifest changed, and every node's audit chain still verifies with no new
//! record other than refusals.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{start_default, TestNetwork, DEADLINE};
use futures::StreamExt;
use quorate_frost::Ciphersuite;
use quorate_keys::approval::{unix_now, Approval, ApproverKey, SCOPE_OUT_OF_POLICY_QUORUM};
use quorate_keys::manifest;
use quorate_testnet::network::LocalNetwork;
use quorate_transport::identity::Role;
use quorate_wire::pb;
use quorate_wire::pb::ceremony_client::CeremonyClient;
use quorate_wire::pb::node_client::NodeClient;
use quorate_wire::pb::signer_client::SignerClient;
use tonic::transport::Channel;
use tonic::Code;

/// The node every node-level row is sent to.
const TARGET: &str = "node-1";
const ED: &str = "demo-ed25519";
/// A key this test installs itself, so it holds node-1's and node-2's key packages.
const MATRIX_KEY: &str = "matrix-ed25519";

#[derive(Clone, Copy, Debug)]
enum Caller {
    Client,
    Coordinator,
    Ceremony,
    Auditor,
    Node,
}

#[derive(Clone, Debug)]
enum Rpc {
    Sign(pb::SignRequest),
    GetPublicKey(pb::GetPublicKeyRequest),
    ListKeys,
    NodeGetInfo,
    ListNodeKeys,
    Commit(pb::CommitRequest),
    SignShare(pb::SignShareRequest),
    SignShares(pb::SignSharesRequest),
    CeremonyGetInfo,
    InstallKey(pb::InstallKeyRequest),
    GetManifest(pb::GetManifestRequest),
    EscrowSplit(pb::EscrowSplitRequest),
    RevokeApproval(pb::RevokeApprovalRequest),
    ReadAudit(pb::ReadAuditRequest),
    GetCheckpoint,
    GetInclusionProof(pb::InclusionProofRequest),
    GetConsistencyProof(pb::ConsistencyProofRequest),
    GetWitnessed,
}

impl Rpc {
    fn name(&self) -> &'static str {
        match self {
            Rpc::Sign(_) => "Signer/Sign",
            Rpc::GetPublicKey(_) => "Signer/GetPublicKey",
            Rpc::ListKeys => "Signer/ListKeys",
            Rpc::NodeGetInfo => "Node/GetInfo",
            Rpc::ListNodeKeys => "Node/ListNodeKeys",
            Rpc::Commit(_) => "Node/Commit",
            Rpc::SignShare(_) => "Node/SignShare",
            Rpc::SignShares(_) => "Node/SignShares",
            Rpc::CeremonyGetInfo => "Ceremony/GetInfo",
            Rpc::InstallKey(_) => "Ceremony/InstallKey",
            Rpc::GetManifest(_) => "Ceremony/GetManifest",
            Rpc::EscrowSplit(_) => "Ceremony/EscrowSplit",
            Rpc::RevokeApproval(_) => "Ceremony/RevokeApproval",
            Rpc::ReadAudit(_) => "Audit/ReadAudit",
            Rpc::GetCheckpoint => "Audit/GetCheckpoint",
            Rpc::GetInclusionProof(_) => "Audit/GetInclusionProof",
            Rpc::GetConsistencyProof(_) => "Audit/GetConsistencyProof",
            Rpc::GetWitnessed => "Audit/GetWitnessed",
        }
    }
}

struct Row {
    rpc: Rpc,
    class: &'static str,
    caller: Caller,
    expect: Code,
}

fn row(rpc: Rpc, class: &'static str, caller: Caller, expect: Code) -> Row {
    Row {
        rpc,
        class,
        caller,
        expect,
    }
}

fn tls(net: &LocalNetwork, caller: Caller) -> quorate_transport::tls::TlsPaths {
    match caller {
        Caller::Client => net.tls_paths(Role::Client, "demo-client"),
        Caller::Coordinator => net.tls_paths(Role::Coordinator, "coordinator"),
        Caller::Ceremony => net.tls_paths(Role::Ceremony, "testnet"),
        Caller::Auditor => net.issue(Role::Auditor, "auditor").unwrap(),
        Caller::Node => net.tls_paths(Role::Node, "node-2"),
    }
}

fn node_channel(net: &LocalNetwork, node_id: &str, caller: Caller) -> Channel {
    tls(net, caller)
        .load()
        .unwrap()
        .node_channel(
            &net.node(node_id).unwrap().endpoint,
            node_id,
            Duration::from_secs(2),
        )
        .unwrap()
}

fn coordinator_channel(net: &LocalNetwork, caller: Caller) -> Channel {
    tls(net, caller)
        .load()
        .unwrap()
        .coordinator_channel(
            &net.coordinator_endpoint,
            "coordinator",
            Duration::from_secs(2),
        )
        .unwrap()
}

/// Calls one row's RPC; `Ok` when the server answered without an error status.
async fn call(net: &LocalNetwork, row: &Row) -> Result<(), tonic::Status> {
    let timeout = |mut req: tonic::Request<_>| {
        req.set_timeout(DEADLINE);
        req
    };
    match &row.rpc {
        Rpc::Sign(r) => {
            let mut c = SignerClient::new(coordinator_channel(net, row.caller));
            c.sign(timeout(tonic::Request::new(r.clone())))
                .await
                .map(drop)
        }
        Rpc::GetPublicKey(r) => {
            let mut c = SignerClient::new(coordinator_channel(net, row.caller));
            c.get_public_key(r.clone()).await.map(drop)
        }
        Rpc::ListKeys => {
            let mut c = SignerClient::new(coordinator_channel(net, row.caller));
            c.list_keys(pb::ListKeysRequest {}).await.map(drop)
        }
        Rpc::NodeGetInfo => {
            let mut c = NodeClient::new(node_channel(net, TARGET, row.caller));
            c.get_info(pb::GetInfoRequest {}).await.map(drop)
        }
        Rpc::ListNodeKeys => {
            let mut c = NodeClient::new(node_channel(net, TARGET, row.caller));
            c.list_node_keys(pb::ListNodeKeysRequest {}).await.map(drop)
        }
        Rpc::Commit(r) => {
            let mut c = NodeClient::new(node_channel(net, TARGET, row.caller));
            c.commit(r.clone()).await.map(drop)
        }
        Rpc::SignShare(r) => {
            let mut c = NodeClient::new(node_channel(net, TARGET, row.caller));
            c.sign_share(r.clone()).await.map(drop)
        }
        Rpc::SignShares(r) => {
            let mut c = NodeClient::new(node_channel(net, TARGET, row.caller));
            // A batch that is not refused whole answers each request; a row's code is
            // then its first failed request's.
            let results = common::sign_shares_once(&mut c, r.clone()).await?.results;
            match results.into_iter().find_map(|r| match r.result {
                Some(pb::sign_share_result::Result::Error(e)) => Some(e),
                _ => None,
            }) {
                Some(e) => Err(tonic::Status::new(Code::from(e.code), e.message)),
                None => Ok(()),
            }
        }
        Rpc::CeremonyGetInfo => {
            let mut c = CeremonyClient::new(node_channel(net, TARGET, row.caller));
            c.get_info(pb::GetInfoRequest {}).await.map(drop)
        }
        Rpc::InstallKey(r) => {
            let mut c = CeremonyClient::new(node_channel(net, TARGET, row.caller));
            c.install_key(r.clone()).await.map(drop)
        }
        Rpc::GetManifest(r) => {
            let mut c = CeremonyClient::new(node_channel(net, TARGET, row.caller));
            c.get_manifest(r.clone()).await.map(drop)
        }
        Rpc::EscrowSplit(r) => {
            let mut c = CeremonyClient::new(node_channel(net, TARGET, row.caller));
            c.escrow_split(r.clone()).await.map(drop)
        }
        Rpc::RevokeApproval(r) => {
            let mut c = CeremonyClient::new(node_channel(net, TARGET, row.caller));
            c.revoke_approval(r.clone()).await.map(drop)
        }
        Rpc::ReadAudit(r) => {
            let mut c = pb::audit_client::AuditClient::new(node_channel(net, TARGET, row.caller));
            let mut stream = c.read_audit(*r).await?.into_inner();
            while let Some(item) = stream.next().await {
                item?;
            }
            Ok(())
        }
        Rpc::GetCheckpoint => {
            let mut c = pb::audit_client::AuditClient::new(node_channel(net, TARGET, row.caller));
            c.get_checkpoint(pb::GetCheckpointRequest {})
                .await
                .map(drop)
        }
        Rpc::GetInclusionProof(r) => {
            let mut c = pb::audit_client::AuditClient::new(node_channel(net, TARGET, row.caller));
            c.get_inclusion_proof(*r).await.map(drop)
        }
        Rpc::GetConsistencyProof(r) => {
            let mut c = pb::audit_client::AuditClient::new(node_channel(net, TARGET, row.caller));
            c.get_consistency_proof(*r).await.map(drop)
        }
        Rpc::GetWitnessed => {
            let mut c = pb::audit_client::AuditClient::new(node_channel(net, TARGET, row.caller));
            c.get_witnessed(pb::GetWitnessedRequest {}).await.map(drop)
        }
    }
}

/// What must not change: each node's keys (manifest hashes) and the public keys the
/// coordinator serves for the demo keys.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    node_keys: BTreeMap<String, BTreeSet<[u8; 32]>>,
    public_keys: BTreeMap<String, Vec<u8>>,
}

async fn snapshot(net: &LocalNetwork) -> Snapshot {
    let mut node_keys = BTreeMap::new();
    for node in &net.nodes {
        let mut c = NodeClient::new(node_channel(net, &node.spec.id, Caller::Coordinator));
        let keys = c
            .list_node_keys(pb::ListNodeKeysRequest {})
            .await
            .unwrap()
            .into_inner()
            .keys;
        node_keys.insert(
            node.spec.id.clone(),
            keys.iter()
                .map(|k| quorate_wire::sha256(&k.manifest))
                .collect(),
        );
    }
    let client = net.client().await.unwrap();
    let mut public_keys = BTreeMap::new();
    for key in &net.spec.keys {
        let pk = client.public_key(&key.key_id).await.unwrap();
        public_keys.insert(key.key_id.clone(), pk.public_key);
    }
    Snapshot {
        node_keys,
        public_keys,
    }
}

/// Every node's audit chain verifies; returns each node's records.
async fn audit_logs(net: &LocalNetwork) -> BTreeMap<String, Vec<quorate_keys::audit::AuditRecord>> {
    let tls = net.issue(Role::Auditor, "auditor").unwrap();
    let mut out = BTreeMap::new();
    for node in &net.nodes {
        let raw = quorate_ceremony::audit::fetch(&node.endpoint, &node.spec.id, &tls)
            .await
            .unwrap();
        let report = quorate_ceremony::audit::check(&raw);
        assert!(report.head.is_ok(), "{}: {:?}", node.spec.id, report.head);
        out.insert(node.spec.id.clone(), quorate_ceremony::audit::decode(&raw));
    }
    out
}

/// Installs a 3-of-5 Ed25519 key dealt here on every node (as a ceremony would), and
/// returns each node's key package and the encoded manifest.
async fn install_matrix_key(net: &LocalNetwork) -> (BTreeMap<String, Vec<u8>>, Vec<u8>) {
    let ops = Ciphersuite::Ed25519.ops();
    let names: Vec<String> = net.nodes.iter().map(|n| n.spec.id.clone()).collect();
    let dealt = ops.split(None, &names, 3).unwrap();
    let manifest = manifest::encode(
        MATRIX_KEY,
        Ciphersuite::Ed25519,
        3,
        dealt.public_key_package.clone(),
        net.nodes
            .iter()
            .map(|n| n.spec.manifest_participant())
            .collect(),
        // Created now: nodes import only a key created within their import window.
        quorate_ceremony::transcript::now_rfc3339().unwrap(),
        // Installed by hand: no administrators, by explicit choice.
        Some(pb::KeyPolicy {
            unsafe_no_administrators: true,
            ..Default::default()
        }),
    );
    let mut packages = BTreeMap::new();
    for (name, kp) in &dealt.key_packages {
        let mut c = CeremonyClient::new(node_channel(net, name, Caller::Ceremony));
        c.install_key(pb::InstallKeyRequest {
            manifest: manifest.clone(),
            key_package: kp.expose_bytes().to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
        packages.insert(name.clone(), kp.expose_bytes().to_vec());
    }
    (packages, manifest)
}

/// A round-2 request's signing package: the message and the quorum's commitments.
#[derive(Clone)]
struct Round2 {
    message: Vec<u8>,
    commitments: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Round 1 on node-1..node-3 for `key_id`, for a signature over `message`.
async fn round1(net: &LocalNetwork, key_id: &str, suite: Ciphersuite, message: &[u8]) -> Round2 {
    let ops = suite.ops();
    let mut commitments = BTreeMap::new();
    for id in ["node-1", "node-2", "node-3"] {
        let mut c = NodeClient::new(node_channel(net, id, Caller::Coordinator));
        let commitment = c
            .commit(pb::CommitRequest {
                key_id: key_id.into(),
                count: 1,
            })
            .await
            .unwrap()
            .into_inner()
            .commitments
            .remove(0);
        commitments.insert(ops.identifier(id).unwrap(), commitment);
    }
    Round2 {
        message: message.to_vec(),
        commitments,
    }
}

thread_local! {
    /// The demo client's key, which signs the intents of the matrix's requests (per
    /// thread: each test has a network, and so a CA, of its own).
    static CLIENT: std::cell::RefCell<Option<quorate_transport::attest::StatementSigner>> =
        const { std::cell::RefCell::new(None) };
}

/// Loads the demo client's key, for this thread's requests.
fn load_client(net: &LocalNetwork) {
    let signer = net
        .tls_paths(Role::Client, "demo-client")
        .load()
        .unwrap()
        .statement_signer()
        .unwrap();
    CLIENT.set(Some(signer));
}

/// The demo client's signed intent for a request, valid from now.
fn intent(key_id: &str, message: &[u8], request_id: &str, token: &[u8]) -> Option<pb::Signed> {
    use quorate_transport::intent::{sign_intent, IntentRequest, SignIntent};
    let request = IntentRequest {
        key_id,
        message,
        request_id,
        approval_token: (!token.is_empty()).then_some(token),
    };
    let intent = SignIntent::for_request(&request, unix_now(), 300);
    CLIENT.with_borrow(|signer| {
        let signer = signer.as_ref().expect("the demo client's key is loaded");
        Some(sign_intent(signer, &intent).unwrap())
    })
}

fn share_req(key_id: &str, round2: &Round2) -> pb::SignShareRequest {
    pb::SignShareRequest {
        key_id: key_id.into(),
        message: round2.message.clone(),
        commitments: quorate_wire::api::signer_commitments(&round2.commitments),
        request_id: "matrix".into(),
        approval_token: Vec::new(),
        intent: intent(key_id, &round2.message, "matrix", &[]),
        manifest_hash: Vec::new(),
    }
}

/// A `Sign` request with the demo client's intent for exactly its fields.
fn signed(req: pb::SignRequest) -> pb::SignRequest {
    pb::SignRequest {
        intent: intent(
            &req.key_id,
            &req.message,
            &req.request_id,
            &req.approval_token,
        ),
        ..req
    }
}

fn sign_req(key_id: &str, message: Vec<u8>) -> pb::SignRequest {
    signed(pb::SignRequest {
        key_id: key_id.into(),
        message,
        request_id: String::new(),
        approval_token: Vec::new(),
        intent: None,
    })
}

fn age_recipient() -> String {
    age::x25519::Identity::generate().to_public().to_string()
}

/// A revocation of a token of `key_id`, signed by a fresh key no policy lists.
fn revocation(key_id: &str) -> pb::RevokeApprovalRequest {
    pb::RevokeApprovalRequest {
        revocation: quorate_keys::revocation::sign(&ApproverKey::generate(), key_id, "t-1"),
    }
}

fn escrow_req(key_id: &str, threshold: u32, recipients: &[String]) -> pb::EscrowSplitRequest {
    pb::EscrowSplitRequest {
        key_id: key_id.into(),
        threshold,
        custodians: recipients
            .iter()
            .enumerate()
            .map(|(i, r)| pb::EscrowCustodian {
                name: format!("custodian-{i}"),
                age_recipient: r.clone(),
            })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn every_rpc_answers_bad_input_with_its_contracted_code_and_no_state_change() {
    let mut net: TestNetwork = start_default().await;
    let (packages, matrix_manifest) = install_matrix_key(&net).await;
    load_client(&net);

    // Legitimate calls whose repeats are the "replayed" rows.
    let client = net.client().await.unwrap();
    client
        .sign(ED, b"first use of request id", Some("matrix-rid"), DEADLINE)
        .await
        .unwrap();
    let used_package = round1(&net, ED, Ciphersuite::Ed25519, b"pay once").await;
    NodeClient::new(node_channel(&net, TARGET, Caller::Coordinator))
        .sign_share(share_req(ED, &used_package))
        .await
        .unwrap();

    // Fresh round-1 material for the wrong-ciphersuite and wrong-key rows.
    let secp_package = round1(&net, "demo-secp256k1", Ciphersuite::Secp256k1, b"m").await;
    let ed_package = round1(&net, ED, Ciphersuite::Ed25519, b"m").await;
    let ops = Ciphersuite::Ed25519.ops();
    let lone_commitment = {
        let mut c = NodeClient::new(node_channel(&net, TARGET, Caller::Coordinator));
        c.commit(pb::CommitRequest {
            key_id: ED.into(),
            count: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .commitments
        .remove(0)
    };
    let too_few_signers = Round2 {
        message: b"m".to_vec(),
        commitments: BTreeMap::from([(ops.identifier(TARGET).unwrap(), lone_commitment.clone())]),
    };
    let long_message_package = Round2 {
        message: vec![0u8; quorate_wire::MAX_MESSAGE_BYTES + 1],
        ..ed_package.clone()
    };
    let empty_quorum = Round2 {
        message: b"m".to_vec(),
        commitments: BTreeMap::new(),
    };
    let malformed_commitments = Round2 {
        message: b"m".to_vec(),
        commitments: ed_package
            .commitments
            .keys()
            .map(|id| (id.clone(), vec![1, 2, 3]))
            .collect(),
    };
    let over_node_limit = vec![7u8; quorate_wire::MAX_NODE_REQUEST_BYTES + 1];
    let over_node_limit_package = Round2 {
        message: over_node_limit.clone(),
        ..ed_package.clone()
    };
    let signer_listed_twice = {
        let mut req = share_req(ED, &ed_package);
        req.commitments.push(req.commitments[0].clone());
        req
    };
    let secp_key_package = Ciphersuite::Secp256k1
        .ops()
        .split(None, &["node-1".to_string(), "node-2".to_string()], 2)
        .unwrap()
        .key_packages
        .remove(0)
        .1
        .expose_bytes()
        .to_vec();
    let approver = ApproverKey::generate();
    let foreign_token = approver.sign(&Approval {
        token_id: "t".into(),
        key_id: "other-key".into(),
        scope: SCOPE_OUT_OF_POLICY_QUORUM.into(),
        not_before: unix_now() - 10,
        not_after: unix_now() + 600,
        reason: "matrix".into(),
        client: None,
        message_sha256: None,
    });
    let recipients: Vec<String> = (0..3).map(|_| age_recipient()).collect();
    let long_key_id = "k".repeat(quorate_wire::MAX_KEY_ID_BYTES + 1);
    // Larger than the servers' decoding limits (see proto's MAX_*_REQUEST_BYTES).
    let over_coordinator_limit = vec![7u8; quorate_wire::MAX_SIGNER_REQUEST_BYTES + 1];

    use Caller::*;
    use Code::*;
    let rows = vec![
        // Signer (coordinator), role client.
        row(
            Rpc::Sign(sign_req(ED, vec![])),
            "empty message",
            Client,
            InvalidArgument,
        ),
        row(
            Rpc::Sign(pb::SignRequest::default()),
            "empty request",
            Client,
            InvalidArgument,
        ),
        row(
            Rpc::Sign(sign_req(ED, vec![1; quorate_wire::MAX_MESSAGE_BYTES + 1])),
            "oversized message",
            Client,
            InvalidArgument,
        ),
        row(
            Rpc::Sign(sign_req(ED, over_coordinator_limit)),
            "over the transport limit",
            Client,
            OutOfRange,
        ),
        row(
            Rpc::Sign(sign_req("a/b", vec![1])),
            "malformed key id",
            Client,
            InvalidArgument,
        ),
        row(
            Rpc::Sign(sign_req(&long_key_id, vec![1])),
            "oversized key id",
            Client,
            InvalidArgument,
        ),
        row(
            Rpc::Sign(signed(pb::SignRequest {
                request_id: "r".repeat(129),
                ..sign_req(ED, vec![1])
            })),
            "oversized request id",
            Client,
            InvalidArgument,
        ),
        row(
            Rpc::Sign(sign_req("no-such-key", vec![1])),
            "unknown key",
            Client,
            NotFound,
        ),
        row(
            Rpc::Sign(signed(pb::SignRequest {
                approval_token: b"\xffnot a token".to_vec(),
                ..sign_req("eu-payments", vec![1])
            })),
            "malformed approval token",
            Client,
            FailedPrecondition,
        ),
        row(
            Rpc::Sign(signed(pb::SignRequest {
                approval_token: foreign_token.clone(),
                ..sign_req("eu-payments", vec![1])
            })),
            "approval token of another key and approver",
            Client,
            FailedPrecondition,
        ),
        row(
            Rpc::Sign(signed(pb::SignRequest {
                request_id: "matrix-rid".into(),
                ..sign_req(ED, b"another message".to_vec())
            })),
            "replayed request id, other message",
            Client,
            AlreadyExists,
        ),
        row(
            Rpc::Sign(pb::SignRequest {
                intent: None,
                ..sign_req(ED, vec![1])
            }),
            "no client intent",
            Client,
            Unauthenticated,
        ),
        row(
            Rpc::Sign(pb::SignRequest {
                intent: intent(ED, b"another message", "", &[]),
                ..sign_req(ED, vec![1])
            }),
            "client intent for another message",
            Client,
            Unauthenticated,
        ),
        row(
            Rpc::Sign(sign_req(ED, vec![1])),
            "wrong role (node)",
            Node,
            PermissionDenied,
        ),
        row(
            Rpc::Sign(sign_req(ED, vec![1])),
            "wrong role (coordinator)",
            Coordinator,
            PermissionDenied,
        ),
        row(
            Rpc::Sign(sign_req(ED, vec![1])),
            "wrong role (ceremony)",
            Ceremony,
            PermissionDenied,
        ),
        row(
            Rpc::GetPublicKey(pb::GetPublicKeyRequest::default()),
            "empty key id",
            Client,
            InvalidArgument,
        ),
        row(
            Rpc::GetPublicKey(pb::GetPublicKeyRequest {
                key_id: "../etc".into(),
            }),
            "malformed key id",
            Client,
            InvalidArgument,
        ),
        row(
            Rpc::GetPublicKey(pb::GetPublicKeyRequest {
                key_id: long_key_id.clone(),
            }),
            "oversized key id",
            Client,
            InvalidArgument,
        ),
        row(
            Rpc::GetPublicKey(pb::GetPublicKeyRequest {
                key_id: "no-such-key".into(),
            }),
            "unknown key",
            Client,
            NotFound,
        ),
        row(
            Rpc::GetPublicKey(pb::GetPublicKeyRequest { key_id: ED.into() }),
            "wrong role (auditor)",
            Auditor,
            PermissionDenied,
        ),
        row(Rpc::ListKeys, "wrong role (node)", Node, PermissionDenied),
        row(
            Rpc::ListKeys,
            "wrong role (auditor)",
            Auditor,
            PermissionDenied,
        ),
        // Node, role coordinator.
        row(
            Rpc::NodeGetInfo,
            "wrong role (client)",
            Client,
            PermissionDenied,
        ),
        row(
            Rpc::NodeGetInfo,
            "wrong role (ceremony)",
            Ceremony,
            PermissionDenied,
        ),
        row(
            Rpc::ListNodeKeys,
            "wrong role (client)",
            Client,
            PermissionDenied,
        ),
        row(
            Rpc::ListNodeKeys,
            "wrong role (node)",
            Node,
            PermissionDenied,
        ),
        row(
            Rpc::Commit(pb::CommitRequest::default()),
            "empty request",
            Coordinator,
            InvalidArgument,
        ),
        row(
            Rpc::Commit(pb::CommitRequest {
                key_id: ED.into(),
                count: 0,
            }),
            "zero count",
            Coordinator,
            InvalidArgument,
        ),
        row(
            Rpc::Commit(pb::CommitRequest {
                key_id: ED.into(),
                count: 65,
            }),
            "oversized count",
            Coordinator,
            InvalidArgument,
        ),
        row(
            Rpc::Commit(pb::CommitRequest {
                key_id: ED.into(),
                count: u32::MAX,
            }),
            "huge count",
            Coordinator,
            InvalidArgument,
        ),
        row(
            Rpc::Commit(pb::CommitRequest {
                key_id: "a/b".into(),
                count: 1,
            }),
            "malformed key id",
            Coordinator,
            InvalidArgument,
        ),
        row(
            Rpc::Commit(pb::CommitRequest {
                key_id: "no-such-key".into(),
                count: 1,
            }),
            "unknown key",
            Coordinator,
            NotFound,
        ),
        row(
            Rpc::Commit(pb::CommitRequest {
                key_id: ED.into(),
                count: 1,
            }),
            "wrong role (client)",
            Client,
            PermissionDenied,
        ),
        row(
            Rpc::SignShare(pb::SignShareRequest::default()),
            "empty request",
            Coordinator,
            InvalidArgument,
        ),
        row(
            Rpc::SignShare(pb::SignShareRequest {
                intent: None,
                ..share_req(ED, &ed_package)
            }),
            "no client intent",
            Coordinator,
            Unauthenticated,
        ),
        row(
            Rpc::SignShare(pb::SignShareRequest {
                intent: intent(ED, b"another message", "matrix", &[]),
                ..share_req(ED, &ed_package)
            }),
            "client intent for another message",
            Coordinator,
            Unauthenticated,
        ),
        row(
            Rpc::SignShare(pb::SignShareRequest {
                intent: Some(pb::Signed {
                    body: vec![1; quorate_wire::limits::MAX_INTENT_BODY_BYTES + 1],
                    ..intent(ED, b"m", "matrix", &[]).unwrap()
                }),
                ..share_req(ED, &ed_package)
            }),
            "oversized intent",
            Coordinator,
            InvalidArgument,
        ),
        row(
            Rpc::SignShare(pb::SignShareRequest {
                manifest_hash: vec![7; 31],
                ..share_req(ED, &ed_package)
            }),
            "manifest hash not 32 bytes",
            Coordinator,
            InvalidArgument,
        ),
        row(
            Rpc::SignShare(pb::SignShareRequest {
                manifest_hash: vec![7; 32],
                ..share_req(ED, &ed_package)
            }),
            "a manifest of the key the node holds no share of",
            Coordinator,
            NotFound,
        ),
        row(
            Rpc::SignShare(share_req(ED, &empty_quorum)),
            "empty quorum",
            Coordinator,
            InvalidArgument,
        ),
        row(
            Rpc::SignShare(share_req(ED, &malformed_commitments)),
            "malformed commitments",
            Coordinator,
            InvalidArgument,
        ),
        row(
            Rpc::SignShare(signer_listed_twice),
            "a signer listed twice",
            Coordinator,
            InvalidArgument,
        ),
        row(
            Rpc::SignShare(share_req(ED, &over_node_limit_package)),
            "over the transport limit",
            Coordinator,
            OutOfRange,
        ),
        row(
            Rpc::SignShare(share_req(ED, &secp_package)),
            "secp256k1 quorum for an Ed25519 key",
            Coordinator,
            InvalidArgument,
        ),
        row(
            Rpc::SignShare(share_req("demo-taproot", &ed_package)),
            "Ed25519 quorum for a taproot key",
            Coordinator,
            InvalidArgument,
        ),
        row(
            Rpc::SignShare(share_req(MATRIX_KEY, &ed_package)),
            "commitments of another key",
            Coordinator,
            FailedPrecondition,
        ),
        row(
            Rpc::SignShare(share_req(ED, &too_few_signers)),
            "fewer signers than the threshold",
            Coordinator,
            InvalidArgument,
        ),
        row(
            Rpc::SignShare(share_req(ED, &long_message_package)),
            "oversized message",
            Coordinator,
            InvalidArgument,
        ),
        row(
            Rpc::SignShare(share_req(ED, &used_package)),
            "replayed round 2",
            Coordinator,
            FailedPrecondition,
        ),
        row(
            Rpc::SignShare(share_req("a/b", &ed_package)),
            "malformed key id",
            Coordinator,
            InvalidArgument,
        ),
        row(
            Rpc::SignShare(share_req("no-such-key", &ed_package)),
            "unknown key",
            Coordinator,
            NotFound,
        ),
        row(
            Rpc::SignShare(share_req(ED, &ed_package)),
            "wrong role (client)",
            Client,
            PermissionDenied,
        ),
        row(
            Rpc::SignShare(share_req(ED, &ed_package)),
            "wrong role (ceremony)",
            Ceremony,
            PermissionDenied,
        ),
        row(
            Rpc::SignShares(pb::SignSharesRequest::default()),
            "no requests",
            Coordinator,
            InvalidArgument,
        ),
        row(
            Rpc::SignShares(pb::SignSharesRequest {
                requests: vec![
                    pb::SignShareRequest::default();
                    quorate_wire::api::MAX_SHARES_PER_BATCH + 1
                ],
            }),
            "more requests than a call may carry",
            Coordinator,
            InvalidArgument,
        ),
        row(
            Rpc::SignShares(pb::SignSharesRequest {
                requests: vec![pb::SignShareRequest::default()],
            }),
            "an empty request",
            Coordinator,
            InvalidArgument,
        ),
        row(
            Rpc::SignShares(pb::SignSharesRequest {
                requests: vec![share_req(ED, &used_package)],
            }),
            "a replayed round 2",
            Coordinator,
            FailedPrecondition,
        ),
        row(
            Rpc::SignShares(pb::SignSharesRequest {
                requests: vec![share_req(ED, &over_node_limit_package)],
            }),
            "over the transport limit",
            Coordinator,
            OutOfRange,
        ),
        row(
            Rpc::SignShares(pb::SignSharesRequest {
                requests: vec![share_req(ED, &ed_package)],
            }),
            "wrong role (client)",
            Client,
            PermissionDenied,
        ),
        row(
            Rpc::SignShares(pb::SignSharesRequest {
                requests: vec![share_req(ED, &ed_package)],
            }),
            "wrong role (ceremony)",
            Ceremony,
            PermissionDenied,
        ),
        // Ceremony, role ceremony.
        row(
            Rpc::CeremonyGetInfo,
            "wrong role (coordinator)",
            Coordinator,
            PermissionDenied,
        ),
        row(
            Rpc::InstallKey(pb::InstallKeyRequest::default()),
            "empty request",
            Ceremony,
            InvalidArgument,
        ),
        row(
            Rpc::InstallKey(pb::InstallKeyRequest {
                manifest: vec![0xff; 64],
                key_package: packages[TARGET].clone(),
                ..Default::default()
            }),
            "malformed manifest",
            Ceremony,
            InvalidArgument,
        ),
        row(
            Rpc::InstallKey(pb::InstallKeyRequest {
                manifest: matrix_manifest.clone(),
                key_package: vec![1, 2, 3],
                ..Default::default()
            }),
            "malformed key package",
            Ceremony,
            InvalidArgument,
        ),
        row(
            Rpc::InstallKey(pb::InstallKeyRequest {
                manifest: over_node_limit.clone(),
                key_package: vec![],
                ..Default::default()
            }),
            "over the transport limit",
            Ceremony,
            OutOfRange,
        ),
        row(
            Rpc::InstallKey(pb::InstallKeyRequest {
                manifest: matrix_manifest.clone(),
                key_package: secp_key_package,
                ..Default::default()
            }),
            "secp256k1 key package for an Ed25519 key",
            Ceremony,
            InvalidArgument,
        ),
        row(
            Rpc::InstallKey(pb::InstallKeyRequest {
                manifest: matrix_manifest.clone(),
                key_package: packages["node-2"].clone(),
                ..Default::default()
            }),
            "another node's key package",
            Ceremony,
            InvalidArgument,
        ),
        row(
            Rpc::InstallKey(pb::InstallKeyRequest {
                manifest: matrix_manifest.clone(),
                key_package: packages[TARGET].clone(),
                ..Default::default()
            }),
            "replayed install",
            Ceremony,
            AlreadyExists,
        ),
        row(
            Rpc::InstallKey(pb::InstallKeyRequest {
                manifest: matrix_manifest.clone(),
                key_package: packages[TARGET].clone(),
                ..Default::default()
            }),
            "wrong role (coordinator)",
            Coordinator,
            PermissionDenied,
        ),
        row(
            Rpc::GetManifest(pb::GetManifestRequest::default()),
            "empty key id",
            Ceremony,
            InvalidArgument,
        ),
        row(
            Rpc::GetManifest(pb::GetManifestRequest {
                key_id: "a/b".into(),
            }),
            "malformed key id",
            Ceremony,
            InvalidArgument,
        ),
        row(
            Rpc::GetManifest(pb::GetManifestRequest {
                key_id: "no-such-key".into(),
            }),
            "unknown key",
            Ceremony,
            NotFound,
        ),
        row(
            Rpc::GetManifest(pb::GetManifestRequest { key_id: ED.into() }),
            "wrong role (auditor)",
            Auditor,
            PermissionDenied,
        ),
        row(
            Rpc::RevokeApproval(pb::RevokeApprovalRequest::default()),
            "empty request",
            Ceremony,
            InvalidArgument,
        ),
        row(
            Rpc::RevokeApproval(pb::RevokeApprovalRequest {
                revocation: b"{\"format\":\"quorate-revocation/1\"}".to_vec(),
            }),
            "malformed revocation",
            Ceremony,
            InvalidArgument,
        ),
        row(
            Rpc::RevokeApproval(revocation("no-such-key")),
            "unknown key",
            Ceremony,
            NotFound,
        ),
        row(
            Rpc::RevokeApproval(revocation(ED)),
            "signed by a key that is not the key's approver",
            Ceremony,
            PermissionDenied,
        ),
        row(
            Rpc::RevokeApproval(revocation(ED)),
            "wrong role (coordinator)",
            Coordinator,
            PermissionDenied,
        ),
        row(
            Rpc::EscrowSplit(pb::EscrowSplitRequest::default()),
            "empty request",
            Ceremony,
            InvalidArgument,
        ),
        // The custodians and threshold are the manifest's: naming any is refused.
        row(
            Rpc::EscrowSplit(escrow_req(ED, 2, &recipients)),
            "names custodians of its own",
            Ceremony,
            InvalidArgument,
        ),
        row(
            Rpc::EscrowSplit(escrow_req(ED, 3, &[])),
            "names a threshold of its own",
            Ceremony,
            InvalidArgument,
        ),
        row(
            Rpc::EscrowSplit(escrow_req(
                ED,
                2,
                &["age1notarecipient".to_string(), recipients[0].clone()],
            )),
            "names a malformed age recipient",
            Ceremony,
            InvalidArgument,
        ),
        row(
            Rpc::EscrowSplit(escrow_req("no-such-key", 0, &[])),
            "unknown key",
            Ceremony,
            NotFound,
        ),
        row(
            Rpc::EscrowSplit(escrow_req(ED, 0, &[])),
            "wrong role (coordinator)",
            Coordinator,
            PermissionDenied,
        ),
        // Audit, role auditor.
        row(
            Rpc::ReadAudit(pb::ReadAuditRequest { from_seq: u64::MAX }),
            "from_seq past the end (empty answer)",
            Auditor,
            Ok,
        ),
        row(
            Rpc::ReadAudit(pb::ReadAuditRequest { from_seq: 0 }),
            "wrong role (coordinator)",
            Coordinator,
            PermissionDenied,
        ),
        row(
            Rpc::ReadAudit(pb::ReadAuditRequest { from_seq: 0 }),
            "wrong role (client)",
            Client,
            PermissionDenied,
        ),
        row(Rpc::GetCheckpoint, "none (the latest)", Auditor, Ok),
        // A peer witnessing this node's log: checkpoints and proofs, never records.
        row(Rpc::GetCheckpoint, "a witnessing peer (node)", Node, Ok),
        row(
            Rpc::ReadAudit(pb::ReadAuditRequest { from_seq: 0 }),
            "a witnessing peer (node) may not read records",
            Node,
            PermissionDenied,
        ),
        row(Rpc::GetWitnessed, "none", Auditor, Ok),
        row(
            Rpc::GetWitnessed,
            "wrong role (node)",
            Node,
            PermissionDenied,
        ),
        row(
            Rpc::GetCheckpoint,
            "wrong role (coordinator)",
            Coordinator,
            PermissionDenied,
        ),
        row(
            Rpc::GetInclusionProof(pb::InclusionProofRequest {
                index: 0,
                tree_size: u64::MAX,
            }),
            "tree size past the log",
            Auditor,
            OutOfRange,
        ),
        row(
            Rpc::GetInclusionProof(pb::InclusionProofRequest {
                index: 5,
                tree_size: 5,
            }),
            "index outside the tree",
            Auditor,
            OutOfRange,
        ),
        row(
            Rpc::GetInclusionProof(pb::InclusionProofRequest {
                index: 0,
                tree_size: 1,
            }),
            "wrong role (client)",
            Client,
            PermissionDenied,
        ),
        row(
            Rpc::GetConsistencyProof(pb::ConsistencyProofRequest {
                first: 2,
                second: 1,
            }),
            "first larger than second",
            Auditor,
            OutOfRange,
        ),
        row(
            Rpc::GetConsistencyProof(pb::ConsistencyProofRequest {
                first: 1,
                second: u64::MAX,
            }),
            "second past the log",
            Auditor,
            OutOfRange,
        ),
        row(
            Rpc::GetConsistencyProof(pb::ConsistencyProofRequest {
                first: 1,
                second: 2,
            }),
            "wrong role (coordinator)",
            Coordinator,
            PermissionDenied,
        ),
        row(
            Rpc::GetConsistencyProof(pb::ConsistencyProofRequest {
                first: 1,
                second: 1,
            }),
            "a witnessing peer (node)",
            Node,
            Ok,
        ),
    ];

    let before = snapshot(&net).await;
    let audit_before = audit_logs(&net).await;

    let mut failures = Vec::new();
    for r in &rows {
        let code = match call(&net, r).await {
            Result::Ok(()) => Ok,
            Err(status) => status.code(),
        };
        if code != r.expect {
            failures.push(format!(
                "{} / {} (as {:?}): expected {:?}, got {:?}",
                r.rpc.name(),
                r.class,
                r.caller,
                r.expect,
                code
            ));
        }
    }
    // Every RPC has rows.
    let covered: BTreeSet<&str> = rows.iter().map(|r| r.rpc.name()).collect();
    assert_eq!(covered.len(), 18, "{covered:?}");
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );

    // No process died.
    for node in &mut net.net.nodes {
        assert!(
            node.process.try_exit_status().is_none(),
            "{} exited: {}",
            node.spec.id,
            node.process.log_tail(20)
        );
    }
    assert!(
        net.net.coordinator.try_exit_status().is_none(),
        "coordinator exited: {}",
        net.coordinator.log_tail(20)
    );
    for log in net
        .nodes
        .iter()
        .map(|n| &n.process)
        .chain([&net.coordinator])
    {
        assert!(
            !log.log_tail(100_000).contains("panicked"),
            "{} panicked",
            log.name
        );
    }

    // No state changed: keys, manifests and public keys are as before, and the audit
    // chains still verify with nothing new but refusals (of shares, and of escrow
    // splits to recipients the caller named).
    assert_eq!(snapshot(&net).await, before);
    let audit_after = audit_logs(&net).await;
    for (node, records) in &audit_after {
        let old = audit_before[node].len();
        assert_eq!(
            &records[..old],
            &audit_before[node][..],
            "{node}: audit history changed"
        );
        for r in &records[old..] {
            assert!(
                ["sign_refused", "escrow_split_refused", "revocation_refused"]
                    .contains(&r.event.as_str()),
                "{node}: unexpected audit event {r:?}"
            );
        }
    }

    // And the network still signs, for every ciphersuite.
    for key in net.spec.keys.clone() {
        client
            .sign_verified(&key.key_id, b"after the matrix", DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", key.key_id));
    }
}

/// Regression: nodes answered a malformed key id (empty, `a/b`) in Commit, SignShare
/// and GetManifest with NOT_FOUND, as if it were merely an unknown key; the node now
/// parses these requests at the boundary (`api::CommitRequest`,
/// `api::SignShareRequest`, `validate_key_id`) and answers INVALID_ARGUMENT.
#[tokio::test]
async fn malformed_key_ids_on_node_rpcs_were_not_found_instead_of_invalid_argument() {
    let net = start_default().await;
    load_client(&net);
    for key_id in ["", "a/b", "key with spaces"] {
        let mut node = NodeClient::new(node_channel(&net, TARGET, Caller::Coordinator));
        let err = node
            .commit(pb::CommitRequest {
                key_id: key_id.into(),
                count: 1,
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "Commit {key_id:?}: {err:?}"
        );
        let err = node
            .sign_share(share_req(
                key_id,
                &Round2 {
                    message: b"m".to_vec(),
                    commitments: BTreeMap::from([(vec![1], vec![2])]),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "SignShare {key_id:?}: {err:?}"
        );
        let err = CeremonyClient::new(node_channel(&net, TARGET, Caller::Ceremony))
            .get_manifest(pb::GetManifestRequest {
                key_id: key_id.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "GetManifest {key_id:?}: {err:?}"
        );
    }
    // A well-formed id that is not installed is still NOT_FOUND.
    let err = NodeClient::new(node_channel(&net, TARGET, Caller::Coordinator))
        .commit(pb::CommitRequest {
            key_id: "no-such-key".into(),
            count: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}
