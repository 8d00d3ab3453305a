//! The untrusted coordinator, played for real: a raw client holding only the
//! coordinator's certificate asks real nodes for signature shares, with every kind of
//! intent it could come by or make. Each node must refuse each one itself
//! (UNAUTHENTICATED, or PERMISSION_DENIED for a client the key's policy does not
//! allow), spend no nonce on it, and audit the refusal; the client's genuine intent
//! then signs with the very commitments the attacks tried to use.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::start;
use quorate_frost::Ciphersuite;
use quorate_testnet::network::LocalNetwork;
use quorate_testnet::spec::{KeySpec, NetworkSpec, PolicySpec};
use quorate_transport::attest::StatementSigner;
use quorate_transport::identity::Role;
use quorate_transport::intent::{sign_intent, IntentRequest, SignIntent};
use quorate_transport::tls::TlsPaths;
use quorate_wire::pb;
use quorate_wire::pb::node_client::NodeClient;
use tonic::transport::Channel;
use tonic::Code;

const KEY: &str = "demo-ed25519";
/// A key only the demo client may use.
const DEMO_ONLY: &str = "demo-only";
const MESSAGE: &[u8] = b"pay 10 EUR";
const REQUEST_ID: &str = "intent-attack";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn signer(tls: &TlsPaths) -> StatementSigner {
    tls.load().unwrap().statement_signer().unwrap()
}

fn node_client(net: &LocalNetwork, id: &str) -> NodeClient<Channel> {
    let tls = net
        .tls_paths(Role::Coordinator, "coordinator")
        .load()
        .unwrap();
    let endpoint = &net.node(id).unwrap().endpoint;
    NodeClient::new(
        tls.node_channel(endpoint, id, Duration::from_secs(2))
            .unwrap(),
    )
}

/// One fresh commitment of each of node-1..node-3 for `key_id`.
async fn round1(net: &LocalNetwork, key_id: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let ops = Ciphersuite::Ed25519.ops();
    let mut out = BTreeMap::new();
    for id in ["node-1", "node-2", "node-3"] {
        let commitment = node_client(net, id)
            .commit(pb::CommitRequest {
                key_id: key_id.into(),
                count: 1,
            })
            .await
            .unwrap()
            .into_inner()
            .commitments
            .remove(0);
        out.insert(ops.identifier(id).unwrap(), commitment);
    }
    out
}

fn intent_for(key_id: &str, message: &[u8], token: Option<&[u8]>) -> SignIntent {
    let request = IntentRequest {
        key_id,
        message,
        request_id: REQUEST_ID,
        approval_token: token,
    };
    SignIntent::for_request(&request, now(), 60)
}

fn share_request(
    key_id: &str,
    commitments: &BTreeMap<Vec<u8>, Vec<u8>>,
    intent: Option<pb::Signed>,
) -> pb::SignShareRequest {
    pb::SignShareRequest {
        key_id: key_id.into(),
        message: MESSAGE.to_vec(),
        commitments: quorate_wire::api::signer_commitments(commitments),
        request_id: REQUEST_ID.into(),
        approval_token: Vec::new(),
        intent,
        manifest_hash: Vec::new(),
    }
}

#[tokio::test]
async fn with_only_a_coordinator_certificate_no_intent_but_the_clients_own_gets_a_share() {
    let mut spec = NetworkSpec::default_five_regions();
    spec.keys.push(
        KeySpec::new(DEMO_ONLY, Ciphersuite::Ed25519).with_policy(PolicySpec {
            allowed_clients: vec!["spiffe://quorate.test/client/demo-client".into()],
            ..PolicySpec::default()
        }),
    );
    let net = start(spec).await;
    let client = signer(&net.tls_paths(Role::Client, "demo-client"));
    let coordinator = signer(&net.tls_paths(Role::Coordinator, "coordinator"));
    let node = signer(&net.tls_paths(Role::Node, "node-4"));
    let other_client = signer(&net.issue(Role::Client, "other").unwrap());
    let foreign_dir = tempfile::tempdir().unwrap();
    quorate_ceremony::pki::create_ca(foreign_dir.path(), "quorate.test").unwrap();
    let foreign = quorate_ceremony::pki::issue(
        foreign_dir.path(),
        "quorate.test",
        Role::Client,
        "demo-client",
        None,
        &[],
    )
    .unwrap();
    let foreign_client = signer(&foreign.tls_paths());

    let genuine = intent_for(KEY, MESSAGE, None);
    let sign = |s: &StatementSigner, i: &SignIntent| Some(sign_intent(s, i).unwrap());
    let mut forged = sign_intent(&client, &genuine).unwrap();
    forged.body = intent_for(KEY, b"pay 10000 EUR", None).encode();
    let t = now();
    let attacks: Vec<(&str, Option<pb::Signed>)> = vec![
        ("no intent", None),
        (
            "an intent for another message",
            sign(&client, &intent_for(KEY, b"pay 10000 EUR", None)),
        ),
        (
            "an intent for another key",
            sign(&client, &intent_for("demo-taproot", MESSAGE, None)),
        ),
        (
            "an intent for an approval token",
            sign(&client, &intent_for(KEY, MESSAGE, Some(b"token"))),
        ),
        (
            "an expired intent",
            sign(
                &client,
                &SignIntent {
                    not_before: t - 400,
                    not_after: t - 340,
                    ..genuine.clone()
                },
            ),
        ),
        (
            "a not yet valid intent",
            sign(
                &client,
                &SignIntent {
                    not_before: t + 120,
                    not_after: t + 180,
                    ..genuine.clone()
                },
            ),
        ),
        ("a forged intent (body changed after signing)", Some(forged)),
        (
            "an intent re-signed with the coordinator's key",
            sign(&coordinator, &genuine),
        ),
        (
            "an intent signed with a node's key (wrong role)",
            sign(&node, &genuine),
        ),
        (
            "an intent of a client of another CA",
            sign(&foreign_client, &genuine),
        ),
    ];
    let commitments = round1(&net, KEY).await;
    let mut node1 = node_client(&net, "node-1");
    for (what, intent) in &attacks {
        let err = node1
            .sign_share(share_request(KEY, &commitments, intent.clone()))
            .await
            .expect_err(what);
        assert_eq!(err.code(), Code::Unauthenticated, "{what}: {err:?}");
        assert!(
            err.message().contains("intent"),
            "{what}: {}",
            err.message()
        );
    }

    // A client the key's policy does not allow, with its own valid intent.
    let demo_only = round1(&net, DEMO_ONLY).await;
    let other = sign(&other_client, &intent_for(DEMO_ONLY, MESSAGE, None));
    let err = node1
        .sign_share(share_request(DEMO_ONLY, &demo_only, other))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // No attack spent a nonce: the client's genuine intent signs with the very
    // commitments every attack tried, on every node of the quorum.
    for id in ["node-1", "node-2", "node-3"] {
        let share = node_client(&net, id)
            .sign_share(share_request(KEY, &commitments, sign(&client, &genuine)))
            .await;
        assert!(share.is_ok(), "{id}: {share:?}");
    }

    // Every refusal is in node-1's audit log, with the intent it carried.
    let auditor = net.issue(Role::Auditor, "auditor").unwrap();
    let node = net.node("node-1").unwrap();
    let raw = quorate_ceremony::audit::fetch(&node.endpoint, "node-1", &auditor)
        .await
        .unwrap();
    assert!(quorate_ceremony::audit::check(&raw).head.is_ok());
    let records: Vec<_> = quorate_ceremony::audit::decode(&raw)
        .into_iter()
        .filter(|r| r.request_id == REQUEST_ID)
        .collect();
    let refused: Vec<_> = records
        .iter()
        .filter(|r| r.event == "sign_refused")
        .collect();
    assert_eq!(refused.len(), attacks.len() + 1, "{records:#?}");
    // An intent that did not verify is recorded by its digest only, so a sender of
    // junk cannot fill the node's disk with it.
    for r in &refused[1..attacks.len()] {
        assert!(r.intent.starts_with("sha256:"), "{r:?}");
    }
    let share = records
        .iter()
        .find(|r| r.event == "sign_share")
        .expect("the genuine request's record");
    assert_eq!(share.client_id, "spiffe://quorate.test/client/demo-client");
    assert!(
        !share.intent.is_empty(),
        "the share's record holds the intent"
    );
}
