//! Tests of signing on a node: what round 2 spends, records and charges when the
//! audit log breaks or a client's rate is reached.

use std::collections::BTreeMap;
use std::time::Duration;

use quorate_frost::{Ciphersuite, ParsedKeyPackage};
use quorate_keys::audit::AuditRecord;
use quorate_transport::attest::{StatementSigner, StatementVerifier};
use quorate_transport::identity::{PeerIdentity, Role};
use quorate_transport::intent::{sign_intent, IntentRequest, IntentVerifier, SignIntent};
use quorate_transport::metrics::Registry;
use quorate_transport::test_ca;
use quorate_wire::api;
use quorate_wire::pb;

use super::round1::commit;
use super::round2::{record_share, Recorded};
use crate::audit::AuditLog;
use crate::identity::NodeIdentity;
use crate::nonces::NonceStore;
use crate::state::NodeState;
use crate::store::{Kek, KeyRecord, KeyStore};

const TRUST_DOMAIN: &str = "quorate.test";

/// `node-1`, holding its share of the 2-of-2 Ed25519 key `k1` (under `policy`),
/// and `node-2`'s share of it (to commit as the other signer).
fn node_with_key(
    dir: &std::path::Path,
    policy: Option<pb::KeyPolicy>,
) -> (NodeState, ParsedKeyPackage) {
    let names = vec!["node-1".to_string(), "node-2".to_string()];
    let ops = Ciphersuite::Ed25519.ops();
    let dealt = ops.split(None, &names, 2).unwrap();
    let manifest = quorate_keys::manifest::encode(
        "k1",
        Ciphersuite::Ed25519,
        2,
        dealt.public_key_package.clone(),
        names
            .iter()
            .map(|n| pb::ManifestParticipant {
                node_id: n.clone(),
                region: "r".into(),
                jurisdiction: "EU".into(),
            })
            .collect(),
        "2026-01-01T00:00:00Z".into(),
        policy,
    );
    let identity = NodeIdentity {
        node_id: "node-1".into(),
        trust_domain: TRUST_DOMAIN.into(),
        region: "r".into(),
        jurisdiction: "EU".into(),
    };
    let kek = Kek::from_hex(&Kek::generate_hex()).unwrap();
    let ca = test_ca::new_ca("test CA");
    CLIENT.set(Some(test_ca::signer(&ca, "client", "payments")));
    let intents =
        IntentVerifier::new(StatementVerifier::from_pem(ca.pem.as_bytes(), TRUST_DOMAIN).unwrap());
    let attestor = test_ca::signer(&ca, "node", "node-1");
    let state = NodeState::new(
        identity,
        attestor,
        KeyStore::open(dir, kek).unwrap(),
        NonceStore::new(10, Duration::from_secs(60)),
        intents,
        Registry::new(),
    )
    .unwrap();
    let mut key_packages = dealt.key_packages.into_iter().map(|(_, kp)| kp);
    let (own, other) = (key_packages.next().unwrap(), key_packages.next().unwrap());
    state
        .install_record(
            KeyRecord {
                manifest,
                key_package: own,
            },
            "key_installed",
            "test",
        )
        .unwrap();
    (state, ops.parse_key_package(&other).unwrap())
}

/// A round-2 request of `node-1` (commitment `own`) and `node-2`.
fn sign_request(state: &NodeState, own: Vec<u8>, other: &ParsedKeyPackage) -> pb::SignShareRequest {
    let key = state.key("k1").unwrap();
    let other_id = key
        .manifest
        .participant("node-2")
        .unwrap()
        .identifier
        .clone();
    let (_, other_commitment) = key.manifest.ciphersuite.ops().commit(other).unwrap();
    let request = api::SignShareRequest {
        key_id: "k1".into(),
        message: b"pay 10 to bob".to_vec(),
        commitments: BTreeMap::from([(key.identifier.clone(), own), (other_id, other_commitment)]),
        request_id: String::new(),
        approval_token: None,
        intent: None,
        manifest_hash: Some(key.manifest.hash),
    }
    .to_pb();
    with_intent(request)
}

thread_local! {
    /// The client whose intents the requests carry (per thread: each test has a CA
    /// of its own).
    static CLIENT: std::cell::RefCell<Option<StatementSigner>> = const { std::cell::RefCell::new(None) };
}

/// `req` with the client's signed intent for exactly its fields.
fn with_intent(req: pb::SignShareRequest) -> pb::SignShareRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let request = IntentRequest {
        key_id: &req.key_id,
        message: &req.message,
        request_id: &req.request_id,
        approval_token: None,
    };
    let intent = SignIntent::for_request(&request, now, 60);
    let signed = CLIENT.with_borrow(|c| sign_intent(c.as_ref().unwrap(), &intent).unwrap());
    pb::SignShareRequest {
        intent: Some(signed),
        ..req
    }
}

#[test]
fn a_node_whose_audit_log_failed_spends_and_issues_no_nonce() {
    let dir = tempfile::tempdir().unwrap();
    let (mut state, other) = node_with_key(dir.path(), None);
    let caller = PeerIdentity::new(TRUST_DOMAIN, Role::Coordinator, "coordinator-1").unwrap();
    let mut commitments = commitments(&state, 2);
    assert_eq!(state.outstanding_nonces(), 2);

    // While the log works, a request like the one below spends its nonce.
    let first = sign_request(&state, commitments.remove(0), &other);
    let recorded = record_share(&state, first, &caller).unwrap();
    assert!(recorded.answer.is_ok());
    assert_eq!(state.outstanding_nonces(), 1);

    // The disk goes bad: a flush of the log fails.
    state.audit = AuditLog::open_with_sync(
        dir.path(),
        &state.store().db(),
        "node-1",
        Box::new(|_| {}),
        |_: &std::fs::File| Err(std::io::Error::other("EIO")),
    )
    .unwrap();
    state
        .audit
        .append(AuditRecord::default())
        .expect_err("the flush fails");
    let records = state.audit.len();

    let second = sign_request(&state, commitments.remove(0), &other);
    let err = record_share(&state, second, &caller).unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert_eq!(state.outstanding_nonces(), 1, "the nonce was spent");
    assert_eq!(state.audit.len(), records, "a record was written");
    // Nor does it hand out commitments it could not sign with.
    let err = commit(
        &state,
        pb::CommitRequest {
            key_id: "k1".into(),
            count: 1,
        },
    )
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert_eq!(state.outstanding_nonces(), 1, "a nonce was issued");
}

/// Fresh commitments of `node-1` for `k1`.
fn commitments(state: &NodeState, count: u32) -> Vec<Vec<u8>> {
    commit(
        state,
        pb::CommitRequest {
            key_id: "k1".into(),
            count,
        },
    )
    .unwrap()
    .commitments
}

#[test]
fn only_requests_that_can_be_signed_count_against_a_clients_rate() {
    let dir = tempfile::tempdir().unwrap();
    let policy = pb::KeyPolicy {
        rate_limit_per_minute: 1,
        ..Default::default()
    };
    let (state, other) = node_with_key(dir.path(), Some(policy));
    let caller = PeerIdentity::new(TRUST_DOMAIN, Role::Coordinator, "coordinator-1").unwrap();

    // Refused twice for a commitment the node does not hold (as after a
    // restart, when the coordinator falls back to two rounds): the one
    // signature this client may make this minute is still there.
    let ops = Ciphersuite::Ed25519.ops();
    for _ in 0..2 {
        let (_, not_issued) = ops.commit(&other).unwrap();
        let request = sign_request(&state, not_issued, &other);
        let err = record_share(&state, request, &caller).unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    }
    let mut commitments = commitments(&state, 3);
    let request = sign_request(&state, commitments.remove(0), &other);
    assert!(record_share(&state, request, &caller)
        .unwrap()
        .answer
        .is_ok());
    // The same message again with a fresh commitment, as in the coordinator's
    // retry with another quorum after a signer failed: the same signature for
    // the client, not charged again.
    let request = sign_request(&state, commitments.remove(0), &other);
    assert!(record_share(&state, request, &caller)
        .unwrap()
        .answer
        .is_ok());

    // Another message is over the limit. Its nonce is spent all the same, so
    // its commitment cannot be replayed once the minute is over.
    let over = commitments.remove(0);
    let mut request = sign_request(&state, over.clone(), &other);
    request.message = b"pay 20 to bob".to_vec();
    let request = with_intent(request);
    let Recorded { pending, answer } = record_share(&state, request, &caller).unwrap();
    let err = answer.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert_eq!(state.outstanding_nonces(), 0);
    // Its record accounts for the commitment spent unused.
    let record = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(state.audit.durable(pending))
        .unwrap();
    assert_eq!(record.event, "sign_refused");
    let spent = hex::encode(quorate_wire::sha256(&over));
    assert!(
        record
            .detail
            .contains(&format!("commitment_sha256={spent}")),
        "{}",
        record.detail
    );
}

/// The key under `current`, a refresh to `refreshed` staged on node-1: whether
/// the client is refused under the current manifest, under the staged one, and
/// under the refreshed one once committed.
fn refused_with_a_refresh_staged(current: pb::KeyPolicy, refreshed: pb::KeyPolicy) -> [bool; 3] {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let (state, other) = node_with_key(dir.path(), Some(current));
    let caller = PeerIdentity::new(TRUST_DOMAIN, Role::Coordinator, "coordinator-1").unwrap();
    let current = state.key("k1").unwrap();
    let mut manifest = pb::KeyManifest::decode(current.manifest.encoded.as_slice()).unwrap();
    manifest.generation = 1;
    manifest.policy = Some(refreshed);
    let setup = [7u8; 32];
    let staged = state
        .stage_refresh(
            KeyRecord {
                manifest: manifest.encode_to_vec(),
                key_package: current.key_package.clone(),
            },
            setup,
            &current.manifest.hash,
            "test",
        )
        .unwrap();
    let staged_hash: [u8; 32] = staged.manifest_hash.as_slice().try_into().unwrap();
    let mut commitments = commitments(&state, 3);
    let mut request_under = |hash: [u8; 32]| {
        let mut request = sign_request(&state, commitments.remove(0), &other);
        request.manifest_hash = hash.to_vec();
        record_share(&state, request, &caller).unwrap().answer
    };
    let refused = |answer: Result<_, crate::error::NodeError>| match answer {
        Ok(_) => false,
        Err(crate::error::NodeError::ClientNotAllowed { .. }) => true,
        Err(e) => panic!("{e}"),
    };
    let under_current = refused(request_under(current.manifest.hash));
    let under_staged = refused(request_under(staged_hash));
    state
        .commit_refresh("k1", &setup, &staged_hash, &[], "test")
        .unwrap();
    [
        under_current,
        under_staged,
        refused(request_under(staged_hash)),
    ]
}

/// While a refresh is staged, a request must satisfy both manifests' policies,
/// whichever share signs: a refresh's new terms restrict as soon as its share is
/// staged, and loosen only once it is committed.
#[test]
fn while_a_refresh_is_staged_a_request_must_satisfy_both_manifests_policies() {
    let every_client = pb::KeyPolicy::default();
    let only_another_client = pb::KeyPolicy {
        allowed_clients: vec![format!("spiffe://{TRUST_DOMAIN}/client/another")],
        ..Default::default()
    };
    // The refresh would allow the client: refused with either share until the
    // commit.
    assert_eq!(
        refused_with_a_refresh_staged(only_another_client.clone(), every_client.clone()),
        [true, true, false]
    );
    // The refresh no longer allows it: refused with either share once staged.
    assert_eq!(
        refused_with_a_refresh_staged(every_client, only_another_client),
        [true, true, true]
    );
}
