//! A repair's steps: `t` helpers rebuild a lost share for a target node without any
//! of them learning it. `start` joins a helper or the target; `deltas` has a
//! helper split its share's contribution into deltas sealed to the other helpers;
//! `sigma` sums the deltas a helper received into a sigma sealed to the target;
//! `finish` has the target rebuild its share and store it.
//!
//! Used by the `Ceremony` gRPC adapter. Invariants: the target accepts the manifest
//! only because every helper signed its hash in the setup; it stores the rebuilt
//! share only if its verifying share is the manifest's.

use quorate_ceremony_protocol::envelope::EnvelopeContext;
use quorate_ceremony_protocol::setup::{verify_contributions, Kind, VerifiedContribution};
use quorate_frost::SecretBytes;
use quorate_keys::manifest::Manifest;
use quorate_wire::pb;

use super::governance::check_authorized;
use super::participant::{
    check_own_place, open_envelopes, prior_key, rejected, setup_of, Participant, PURPOSE_DELTA,
    PURPOSE_SIGMA,
};
use super::sessions::Stage;
use crate::error::NodeError;
use crate::state::NodeState;
use crate::store::KeyRecord;

/// `RepairStart`: a helper or the target joins a repair.
pub(crate) fn start(
    participant: &Participant,
    node: &NodeState,
    req: pb::RepairStartRequest,
    caller: &str,
) -> Result<pb::Signed, NodeError> {
    let setup = setup_of(req.setup)?;
    if setup.kind != Kind::Repair {
        return Err(NodeError::MalformedRequest("not a repair setup".into()));
    }
    let stage = if setup.pb.repair_target == node.identity.node_id {
        if node.key(&setup.pb.key_id).is_ok() {
            return Err(NodeError::KeyExists(setup.pb.key_id.clone()));
        }
        Stage::RepairTarget
    } else {
        check_own_place(&node.identity, &setup)?;
        let key = prior_key(node, &setup)?;
        if node.refresh_staged(&setup.pb.key_id) {
            // A node repaired now would hold no share of the staged refresh and
            // could abandon it after the others signed receipts: finish the
            // refresh (or roll it back) first.
            return Err(NodeError::KeyVersionMismatch(format!(
                "a refresh of key {} is staged on {}; repair once it is committed or rolled back",
                setup.pb.key_id, node.identity.node_id
            )));
        }
        if key.manifest.participant(&setup.pb.repair_target).is_none() {
            return Err(NodeError::CeremonyMismatch(format!(
                "{} holds no share of key {}",
                setup.pb.repair_target, setup.pb.key_id
            )));
        }
        check_authorized(node, &key.manifest, &setup, &req.authorizations, caller)?;
        Stage::RepairHelper {
            contributions: None,
        }
    };
    participant.new_session(&node.identity.node_id, setup, Vec::new(), stage)
}

/// `RepairDeltas`: a helper splits its share's contribution into deltas.
pub(crate) fn deltas(
    participant: &Participant,
    node: &NodeState,
    req: pb::RepairDeltasRequest,
) -> Result<pb::RepairDeltasResponse, NodeError> {
    let mut session = participant.sessions.take(&req.ceremony_id)?;
    if !matches!(
        session.stage,
        Stage::RepairHelper {
            contributions: None
        }
    ) {
        return Err(NodeError::CeremonyOutOfStep(format!(
            "ceremony {} is at {}; it is aborted on this node",
            req.ceremony_id,
            session.stage.name()
        )));
    }
    let setup = session.setup.clone();
    let mut expected = setup.participant_ids();
    expected.push(setup.pb.repair_target.clone());
    let contributions = verify_contributions(
        &participant.keys.verifier,
        &mut session.certificates,
        &setup,
        &expected,
        &req.contributions,
    )
    .map_err(rejected)?;
    let key = prior_key(node, &setup)?;
    let ops = setup.ciphersuite.ops();
    let helpers = setup
        .participant_ids()
        .iter()
        .map(|h| ops.identifier(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NodeError::MalformedRequest(e.to_string()))?;
    let target = ops
        .identifier(&setup.pb.repair_target)
        .map_err(|e| NodeError::MalformedRequest(e.to_string()))?;
    let deltas = ops
        .repair_part1(&helpers, &key.key_package, &target)
        .map_err(|e| NodeError::CeremonyRejected(e.to_string()))?;
    let me = node.identity.node_id.clone();
    let mut envelopes = Vec::new();
    for c in contributions
        .iter()
        .filter(|c| c.node_id != setup.pb.repair_target)
    {
        let id = ops
            .identifier(&c.node_id)
            .map_err(|e| NodeError::MalformedRequest(e.to_string()))?;
        let delta = deltas
            .get(&id)
            .ok_or_else(|| NodeError::Server(format!("no delta for {}", c.node_id)))?;
        let ctx = EnvelopeContext {
            ceremony_id: setup.ceremony_id(),
            sender: &me,
            recipient: &c.node_id,
            purpose: PURPOSE_DELTA,
        };
        let (nonce, ciphertext) = session
            .envelope
            .seal(&c.envelope_key, &ctx, delta)
            .map_err(|e| NodeError::CeremonyRejected(format!("{}: {e}", c.node_id)))?;
        envelopes.push(pb::Envelope {
            sender: me.clone(),
            recipient: c.node_id.clone(),
            nonce,
            ciphertext,
        });
    }
    session.stage = Stage::RepairHelper {
        contributions: Some(contributions),
    };
    participant.sessions.put_back(session);
    Ok(pb::RepairDeltasResponse { envelopes })
}

/// `RepairSigma`: a helper sums the deltas it received into the target's sigma.
pub(crate) fn sigma(
    participant: &Participant,
    node: &NodeState,
    req: pb::RepairSigmaRequest,
) -> Result<pb::Envelope, NodeError> {
    let mut session = participant.sessions.take(&req.ceremony_id)?;
    let stage = std::mem::replace(&mut session.stage, Stage::RepairTarget);
    let Stage::RepairHelper {
        contributions: Some(contributions),
    } = stage
    else {
        return Err(NodeError::CeremonyOutOfStep(format!(
            "ceremony {} is at {}; it is aborted on this node",
            req.ceremony_id,
            stage.name()
        )));
    };
    let setup = &session.setup;
    let target = &setup.pb.repair_target;
    let helpers: Vec<&VerifiedContribution> = contributions
        .iter()
        .filter(|c| &c.node_id != target)
        .collect();
    let deltas = open_envelopes(
        &node.identity.node_id,
        &session,
        &helpers,
        &req.envelopes,
        PURPOSE_DELTA,
    )?;
    let deltas: Vec<SecretBytes> = deltas.into_values().collect();
    let sigma = setup
        .ciphersuite
        .ops()
        .repair_part2(&deltas)
        .map_err(|e| NodeError::CeremonyRejected(e.to_string()))?;
    let target_contribution = contributions
        .iter()
        .find(|c| &c.node_id == target)
        .ok_or_else(|| NodeError::Server("target contribution missing".into()))?;
    let me = node.identity.node_id.clone();
    let ctx = EnvelopeContext {
        ceremony_id: setup.ceremony_id(),
        sender: &me,
        recipient: target,
        purpose: PURPOSE_SIGMA,
    };
    let (nonce, ciphertext) = session
        .envelope
        .seal(&target_contribution.envelope_key, &ctx, &sigma)
        .map_err(|e| NodeError::CeremonyRejected(format!("{target}: {e}")))?;
    tracing::info!(ceremony_id = %req.ceremony_id, target = %target, "repair: sigma sealed to the target");
    // The helper's part is done; its session (and envelope key) ends here.
    Ok(pb::Envelope {
        sender: me,
        recipient: target.clone(),
        nonce,
        ciphertext,
    })
}

/// `RepairFinish`: the target rebuilds its share, checks it against the manifest
/// the helpers vouched for, and stores it.
pub(crate) fn finish(
    participant: &Participant,
    node: &NodeState,
    req: pb::RepairFinishRequest,
    caller: &str,
) -> Result<pb::InstallKeyResponse, NodeError> {
    let mut session = participant.sessions.take(&req.ceremony_id)?;
    if !matches!(session.stage, Stage::RepairTarget) {
        return Err(NodeError::CeremonyOutOfStep(format!(
            "ceremony {} is at {}; it is aborted on this node",
            req.ceremony_id,
            session.stage.name()
        )));
    }
    let setup = &session.setup;
    // Every helper signed the setup, which holds the manifest's hash: at least
    // `threshold` share holders vouch for this manifest.
    let contributions = verify_contributions(
        &participant.keys.verifier,
        &mut session.certificates,
        setup,
        &setup.participant_ids(),
        &req.contributions,
    )
    .map_err(rejected)?;
    if quorate_wire::sha256(&req.manifest).as_slice() != setup.pb.manifest_hash.as_slice() {
        return Err(NodeError::CeremonyRejected(
            "ceremony: the manifest delivered is not the one the helpers vouched for".into(),
        ));
    }
    let manifest =
        Manifest::decode(&req.manifest).map_err(|e| NodeError::MalformedRequest(e.to_string()))?;
    if manifest.key_id != setup.pb.key_id
        || manifest.ciphersuite != setup.ciphersuite
        || manifest.threshold != setup.threshold
    {
        return Err(NodeError::CeremonyMismatch(
            "the manifest is not the key the repair is about".into(),
        ));
    }
    // The target has no manifest of its own to take the administrators from: it
    // checks them against the one whose hash the helpers signed in the setup.
    check_authorized(node, &manifest, setup, &req.authorizations, caller)?;
    let helpers: Vec<&VerifiedContribution> = contributions.iter().collect();
    let sigmas = open_envelopes(
        &node.identity.node_id,
        &session,
        &helpers,
        &req.envelopes,
        PURPOSE_SIGMA,
    )?;
    let sigmas: Vec<SecretBytes> = sigmas.into_values().collect();
    let ops = setup.ciphersuite.ops();
    let me = ops
        .identifier(&node.identity.node_id)
        .map_err(|e| NodeError::MalformedRequest(e.to_string()))?;
    let key_package = ops
        .repair_part3(&sigmas, &me, &manifest.public_key_package)
        .map_err(|e| NodeError::CeremonyRejected(e.to_string()))?;
    let record = KeyRecord {
        manifest: req.manifest,
        key_package,
    };
    // `activate` (inside install) refuses a share whose verifying share is not the
    // manifest's: a wrong sigma cannot become an active key.
    let response = node
        .install_record(record, "key_repaired", caller)
        .map_err(|e| match e {
            NodeError::KeyNotForThisNode(m) => NodeError::CeremonyRejected(format!(
            "the repaired share does not match the manifest's verifying share for this node: {m}"
        )),
            other => other,
        })?;
    tracing::info!(ceremony_id = %req.ceremony_id, key_id = %setup.pb.key_id, "repair complete: share rebuilt and verified");
    Ok(response)
}
