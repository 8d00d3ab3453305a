//! What a refresh does beyond the DKG's rounds (which, up to a staged share, are
//! in `dkg`): `commit` makes a node's staged share current once every participant
//! has stored its own, `state` tells a rerun where this node stands, `abandon` and
//! `rollback` undo a refresh that cannot complete, and `retire_key` deletes the
//! share of a node the refresh removes.
//!
//! Used by the `Ceremony` gRPC adapter. Invariants: no old share is deleted before
//! every participant of the refreshed key has signed a receipt for its stored new
//! share (so at every point one epoch is held whole: the old one until the first
//! commit, the new one from then on); a staged share is dropped only on a
//! participant's signed abandonment, which that participant makes only while it
//! holds no share of the refresh and which stops it from ever storing one (so no
//! node can have committed); a share is retired only when the refreshed manifest
//! is the same key without this node, with every remaining participant's receipt,
//! and (for a key with administrators) enough of them authorized the refresh.

use prost::Message;
use quorate_ceremony_protocol::setup::{self, verify_receipts, Kind, Setup};
use quorate_keys::manifest::Manifest;
use quorate_transport::attest::VerifiedCertificates;
use quorate_wire::pb;

use super::governance::check_authorized;
use super::participant::{setup_of, Participant};
use crate::error::NodeError;
use crate::state::NodeState;
use crate::state::RefreshState;

/// `RetireKey`: a refresh removed this node; delete its share once every
/// remaining participant has signed a receipt for its stored share of the
/// refreshed key.
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
    new.check_successor(&key.manifest)
        .map_err(|e| NodeError::CeremonyMismatch(e.to_string()))?;
    // Only receipts (signed once a participant's new share is durable; its
    // confirmation is signed before anything is stored) show that every remaining
    // participant holds its new share, so that deleting this one leaves the key
    // whole.
    every_receipt(participant, &setup, &new.hash, &req.receipts, "retired")?;
    node.remove_key(&setup.pb.key_id, &setup.pb.manifest_hash, caller)?;
    tracing::info!(key_id = %setup.pb.key_id, ceremony_id = %req.ceremony_id, "share retired after a refresh removed this node");
    Ok(pb::RetireKeyResponse {})
}

/// A refresh's setup, checked: kind refresh, and this node one of its participants.
fn refresh_setup(node: &NodeState, setup: Option<pb::CeremonySetup>) -> Result<Setup, NodeError> {
    let setup = setup_of(setup)?;
    if setup.kind != Kind::Refresh {
        return Err(NodeError::MalformedRequest(format!(
            "a {} is not a refresh",
            setup.kind.name()
        )));
    }
    if !setup
        .pb
        .participants
        .iter()
        .any(|p| p.node_id == node.identity.node_id)
    {
        return Err(NodeError::CeremonyMismatch(format!(
            "the refresh does not keep {}",
            node.identity.node_id
        )));
    }
    Ok(setup)
}

/// Checks a receipt from every participant of `setup` for `manifest_hash`;
/// otherwise nothing is `done`.
fn every_receipt(
    participant: &Participant,
    setup: &Setup,
    manifest_hash: &[u8; 32],
    receipts: &[pb::Signed],
    done: &str,
) -> Result<(), NodeError> {
    verify_receipts(
        &participant.keys.verifier,
        &mut VerifiedCertificates::default(),
        &setup.participant_ids(),
        &setup.hash,
        manifest_hash,
        receipts,
    )
    .map_err(|e| NodeError::CeremonyMismatch(format!("nothing {done}: {e}")))
}

/// `DkgCommit`: with a receipt from every participant, this node's staged share of
/// the refresh becomes current and its old one is deleted.
pub(crate) fn commit(
    participant: &Participant,
    node: &NodeState,
    req: pb::DkgCommitRequest,
    caller: &str,
) -> Result<pb::InstallKeyResponse, NodeError> {
    let setup = refresh_setup(node, req.setup)?;
    let new =
        Manifest::decode(&req.manifest).map_err(|e| NodeError::MalformedRequest(e.to_string()))?;
    if new.key_id != setup.pb.key_id {
        return Err(NodeError::CeremonyMismatch(
            "the manifest is not of the refreshed key".into(),
        ));
    }
    every_receipt(participant, &setup, &new.hash, &req.receipts, "committed")?;
    node.commit_refresh(
        &setup.pb.key_id,
        &setup.hash,
        &new.hash,
        &req.receipts,
        caller,
    )?;
    Ok(pb::InstallKeyResponse {
        manifest_hash: new.hash.to_vec(),
        receipt: Some(participant.receipt(&node.identity.node_id, &setup, &new.hash)?),
    })
}

/// `RefreshState`: where this node stands in the refresh.
pub(crate) fn state(
    participant: &Participant,
    node: &NodeState,
    req: pb::RefreshStateRequest,
) -> Result<pb::RefreshStateResponse, NodeError> {
    use pb::refresh_state_response::State;
    let setup = refresh_setup(node, req.setup)?;
    let (state, key, receipts) = match node.refresh_state(&setup.pb.key_id, &setup.hash)? {
        RefreshState::None => (State::None, None, Vec::new()),
        RefreshState::Staged(key) => (State::Staged, Some(key), Vec::new()),
        RefreshState::Committed(key, receipts) => (State::Committed, Some(key), receipts),
    };
    let (receipt, manifest) = match key {
        Some(key) => (
            Some(participant.receipt(&node.identity.node_id, &setup, &key.manifest.hash)?),
            key.manifest.encoded.clone(),
        ),
        None => (None, Vec::new()),
    };
    Ok(pb::RefreshStateResponse {
        state: state as i32,
        receipt,
        manifest,
        receipts,
    })
}

/// `AbandonRefresh`: this node never stored a share of the refresh; it promises,
/// durably, never to, and drops its session.
pub(crate) fn abandon(
    participant: &Participant,
    node: &NodeState,
    req: pb::AbandonRefreshRequest,
    caller: &str,
) -> Result<pb::Signed, NodeError> {
    let setup = refresh_setup(node, req.setup)?;
    let key = node.key(&setup.pb.key_id)?;
    check_authorized(node, &key.manifest, &setup, &req.authorizations, caller)?;
    // The promise first (refused if this node ever staged a share of it): once it
    // is durable, no share of this refresh is staged here, and the session under
    // way (if any) is dropped with its secrets.
    node.abandon_refresh(
        &setup.pb.key_id,
        &setup.hash,
        &setup.pb.manifest_hash,
        caller,
    )?;
    participant.sessions.abort(setup.ceremony_id());
    let body = pb::Abandonment {
        setup_hash: setup.hash.to_vec(),
        node_id: node.identity.node_id.clone(),
    };
    tracing::warn!(key_id = %setup.pb.key_id, ceremony_id = %setup.ceremony_id(), "refresh abandoned on this node");
    participant.sign_statement(setup::ABANDONMENT, body.encode_to_vec())
}

/// `RollbackRefresh`: on a participant's abandonment of the refresh, drops this
/// node's staged share of it (no node can commit it without that participant's
/// receipt).
pub(crate) fn rollback(
    participant: &Participant,
    node: &NodeState,
    req: pb::RollbackRefreshRequest,
    caller: &str,
) -> Result<pb::RollbackRefreshResponse, NodeError> {
    let setup = refresh_setup(node, req.setup)?;
    let signed = req
        .abandonment
        .ok_or_else(|| NodeError::MalformedRequest("no abandonment".into()))?;
    let body = pb::Abandonment::decode(signed.body.as_slice())
        .map_err(|e| NodeError::MalformedRequest(format!("abandonment: {e}")))?;
    if body.setup_hash != setup.hash || !setup.participant_ids().contains(&body.node_id) {
        return Err(NodeError::CeremonyMismatch(
            "the abandonment is not a participant's, of this refresh".into(),
        ));
    }
    participant
        .keys
        .verifier
        .verify_cached(
            &signed,
            setup::ABANDONMENT,
            &body.node_id,
            &mut VerifiedCertificates::default(),
        )
        .map_err(|e| {
            NodeError::CeremonyRejected(format!("{}: abandonment rejected: {e}", body.node_id))
        })?;
    let dropped = node.rollback_refresh(&setup.pb.key_id, &setup.hash, caller)?;
    Ok(pb::RollbackRefreshResponse { dropped })
}
