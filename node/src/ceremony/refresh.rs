//! A refresh's last step on a node it removes: `retire_key` deletes this node's
//! share once every remaining participant has confirmed the refreshed key. (The
//! refresh's rounds on the nodes it keeps are the DKG's, in `dkg`.)
//!
//! Used by the `Ceremony` gRPC adapter. Invariant: a share is deleted only when the
//! refreshed manifest is the same key without this node, every remaining
//! participant signed a confirmation of it and a receipt for having stored its
//! share of it, and (for a key with administrators) enough of them authorized the
//! refresh.

use prost::Message;
use quorate_ceremony_protocol::setup::{verify_confirmations, verify_receipts, Kind};
use quorate_keys::manifest::Manifest;
use quorate_transport::attest::VerifiedCertificates;
use quorate_wire::pb;

use super::governance::check_authorized;
use super::participant::{rejected, setup_of, Participant};
use crate::error::NodeError;
use crate::state::NodeState;

/// `RetireKey`: a refresh removed this node; delete its share once every
/// remaining participant has confirmed the refreshed key and stored its share.
pub(crate) fn retire_key(
    participant: &Participant,
    node: &NodeState,
    req: pb::RetireKeyRequest,
    caller: &str,
) -> Result<pb::RetireKeyResponse, NodeError> {
    let setup = setup_of(req.setup)?;
    if setup.kind != Kind::Refresh || setup.ceremony_id() != req.ceremony_id {
        return Err(NodeError::MalformedRequest(
            "RetireKey needs the setup of the refresh that removed this node".into(),
        ));
    }
    if setup.involves(&node.identity.node_id) {
        return Err(NodeError::CeremonyMismatch(
            "the refresh keeps this node; it has nothing to retire".into(),
        ));
    }
    let key = node.key(&setup.pb.key_id)?;
    if key.manifest.hash.as_slice() != setup.pb.manifest_hash.as_slice() {
        return Err(NodeError::KeyVersionMismatch(
            "the refresh is about another version of this key".into(),
        ));
    }
    // The administrators authorized this refresh, and with it the removal of this
    // node: the same authorizations, checked here against this node's manifest.
    check_authorized(node, &key.manifest, &setup, &req.authorizations, caller)?;
    let new =
        Manifest::decode(&req.manifest).map_err(|e| NodeError::MalformedRequest(e.to_string()))?;
    if new.key_id != key.manifest.key_id
        || new.public_key.verifying_key != key.manifest.public_key.verifying_key
        || new.participant(&node.identity.node_id).is_some()
    {
        return Err(NodeError::CeremonyMismatch(
            "the refreshed manifest is not this key without this node".into(),
        ));
    }
    let first = req
        .confirmations
        .first()
        .and_then(|s| pb::Confirmation::decode(s.body.as_slice()).ok())
        .ok_or_else(|| NodeError::MalformedRequest("no confirmations".into()))?;
    let expected = pb::Confirmation {
        setup_hash: setup.hash.to_vec(),
        node_id: node.identity.node_id.clone(),
        round1_transcript_hash: first.round1_transcript_hash,
        group_public_key: key.manifest.public_key.public_key.clone(),
        manifest_hash: new.hash.to_vec(),
        public_key_package: Vec::new(),
    };
    let mut certificates = VerifiedCertificates::default();
    verify_confirmations(
        &participant.keys.verifier,
        &mut certificates,
        &setup.participant_ids(),
        &expected,
        &req.confirmations,
    )
    .map_err(rejected)?;
    // Confirmations are signed before anything is stored: only receipts show that
    // every remaining participant holds its new share, so that deleting this one
    // leaves the refreshed key whole.
    verify_receipts(
        &participant.keys.verifier,
        &mut certificates,
        &setup.participant_ids(),
        &setup.hash,
        &new.hash,
        &req.receipts,
    )
    .map_err(|e| NodeError::CeremonyMismatch(format!("nothing retired: {e}")))?;
    node.remove_key(&setup.pb.key_id, &setup.pb.manifest_hash, caller)?;
    tracing::info!(key_id = %setup.pb.key_id, ceremony_id = %req.ceremony_id, "share retired after a refresh removed this node");
    Ok(pb::RetireKeyResponse {})
}
