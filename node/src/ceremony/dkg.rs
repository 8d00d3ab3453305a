//! The DKG's steps on this node, also those of a refresh (a refresh is a DKG whose
//! shares of zero are added to the current ones): `round1` starts the session,
//! `round2` checks every contribution and seals round-2 packages to each peer,
//! `round3` computes this node's share and signs a confirmation, `activate`
//! stores the key once every participant's confirmation agrees.
//!
//! Used by the `Ceremony` gRPC adapter. Invariants: each step takes the session's
//! secret state from the previous step and puts the next state back only on
//! success; a key becomes active only when the manifest to activate is
//! byte-identical to the one this node computed and every participant confirmed the
//! same round-1 transcript, group key and manifest; a refresh keeps the group key.

use std::collections::BTreeMap;

use prost::Message;
use quorate_ceremony_protocol::envelope::EnvelopeContext;
use quorate_ceremony_protocol::setup::{
    self, build_manifest, round1_transcript_hash, verify_confirmations, verify_contributions, Kind,
    VerifiedContribution,
};
use quorate_wire::pb;

use super::governance::check_authorized;
use super::participant::{
    check_own_place, culprit_name, open_envelopes, prior_key, rejected, setup_of, Participant,
    PURPOSE_ROUND2,
};
use super::sessions::Stage;
use crate::error::NodeError;
use crate::state::NodeState;
use crate::store::KeyRecord;

/// `DkgRound1`: starts a DKG or refresh session.
pub(crate) fn round1(
    participant: &Participant,
    node: &NodeState,
    req: pb::DkgRound1Request,
    caller: &str,
) -> Result<pb::Signed, NodeError> {
    let setup = setup_of(req.setup)?;
    check_own_place(&node.identity, &setup)?;
    match setup.kind {
        Kind::Dkg => {
            if node.key(&setup.pb.key_id).is_ok() {
                return Err(NodeError::KeyExists(setup.pb.key_id.clone()));
            }
            // Refused now rather than at activation, after every round.
            node.check_key_id_unused(&setup.pb.key_id)?;
        }
        Kind::Refresh => {
            let key = prior_key(node, &setup)?;
            node.refresh_may_start(&setup.pb.key_id, &setup.hash)?;
            if (setup.pb.policy.is_some() || setup.pb.escrow.is_some())
                && !key.manifest.policy.is_governed()
            {
                // Without administrators, a new policy or new custodians would be the
                // ceremony certificate's alone to choose: the escrow redirection the
                // custodians' being fixed with the key closes.
                return Err(NodeError::CeremonyMismatch(format!(
                    "key {} has no administrators: its policy and custodians never change \
                     (create a governed key instead)",
                    setup.pb.key_id
                )));
            }
            check_authorized(node, &key.manifest, &setup, &req.authorizations, caller)?;
        }
        Kind::Repair | Kind::EscrowSplit | Kind::EscrowRecover => {
            return Err(NodeError::MalformedRequest(format!(
                "a {} is not a DKG or refresh",
                setup.kind.name()
            )))
        }
    }
    let n = u16::try_from(setup.pb.participants.len())
        .map_err(|_| NodeError::MalformedRequest("too many participants".into()))?;
    let (secret, package) = setup
        .ciphersuite
        .ops()
        .dkg_part1(
            setup.kind.dkg_mode(),
            &node.identity.node_id,
            n,
            setup.threshold,
        )
        .map_err(|e| NodeError::MalformedRequest(e.to_string()))?;
    participant.new_session(
        &node.identity.node_id,
        setup,
        package,
        Stage::Round1 { secret },
    )
}

/// `DkgRound2`: checks the contributions and seals round-2 packages.
pub(crate) fn round2(
    participant: &Participant,
    node: &NodeState,
    req: pb::DkgRound2Request,
) -> Result<pb::DkgRound2Response, NodeError> {
    let mut session = participant.sessions.take(&req.ceremony_id)?;
    let Stage::Round1 { secret } = session.stage else {
        return Err(NodeError::CeremonyOutOfStep(format!(
            "ceremony {} is at {}, not round 1; it is aborted on this node",
            req.ceremony_id,
            session.stage.name()
        )));
    };
    let setup = &session.setup;
    let me = node.identity.node_id.clone();
    let contributions = verify_contributions(
        &participant.keys.verifier,
        &mut session.certificates,
        setup,
        &setup.participant_ids(),
        &req.contributions,
    )
    .map_err(rejected)?;
    let own = pb::Contribution::decode(session.own.body.as_slice())
        .map_err(|e| NodeError::Server(e.to_string()))?;
    let ops = setup.ciphersuite.ops();
    let mut round1 = BTreeMap::new();
    for c in &contributions {
        if c.node_id == me {
            if c.envelope_key != own.envelope_key || c.round1_package != own.round1_package {
                return Err(NodeError::CeremonyRejected(format!(
                    "{me}: the relay delivered a contribution of this node that it did not make"
                )));
            }
            continue;
        }
        let id = ops
            .identifier(&c.node_id)
            .map_err(|e| NodeError::MalformedRequest(e.to_string()))?;
        round1.insert(id, c.round1_package.clone());
    }
    let transcript = round1_transcript_hash(setup, &contributions);
    let (secret, packages) = ops
        .dkg_part2(setup.kind.dkg_mode(), secret, &round1)
        .map_err(|e| culprit_name(setup, e))?;
    let mut envelopes = Vec::with_capacity(packages.len());
    for c in contributions.iter().filter(|c| c.node_id != me) {
        let id = ops
            .identifier(&c.node_id)
            .map_err(|e| NodeError::MalformedRequest(e.to_string()))?;
        let package = packages.get(&id).ok_or_else(|| {
            NodeError::Server(format!("frost made no round-2 package for {}", c.node_id))
        })?;
        let ctx = EnvelopeContext {
            ceremony_id: setup.ceremony_id(),
            sender: &me,
            recipient: &c.node_id,
            purpose: PURPOSE_ROUND2,
        };
        let (nonce, ciphertext) = session
            .envelope
            .seal(&c.envelope_key, &ctx, package)
            .map_err(|e| NodeError::CeremonyRejected(format!("{}: {e}", c.node_id)))?;
        envelopes.push(pb::Envelope {
            sender: me.clone(),
            recipient: c.node_id.clone(),
            nonce,
            ciphertext,
        });
    }
    tracing::info!(
        ceremony_id = %req.ceremony_id,
        round1_transcript = %hex::encode(transcript),
        "ceremony round 2: contributions verified, round-2 packages sealed"
    );
    session.stage = Stage::Round2 {
        secret,
        contributions,
        round1,
        transcript,
    };
    participant.sessions.put_back(session);
    Ok(pb::DkgRound2Response { envelopes })
}

/// `DkgRound3`: computes this node's share and confirms the outcome.
pub(crate) fn round3(
    participant: &Participant,
    node: &NodeState,
    req: pb::DkgRound3Request,
) -> Result<pb::Signed, NodeError> {
    let mut session = participant.sessions.take(&req.ceremony_id)?;
    let stage = std::mem::replace(&mut session.stage, Stage::RepairTarget);
    let Stage::Round2 {
        secret,
        contributions,
        round1,
        transcript,
    } = stage
    else {
        return Err(NodeError::CeremonyOutOfStep(format!(
            "ceremony {} is at {}, not round 2; it is aborted on this node",
            req.ceremony_id,
            stage.name()
        )));
    };
    let me = node.identity.node_id.clone();
    let setup = session.setup.clone();
    let ops = setup.ciphersuite.ops();
    let others: Vec<&VerifiedContribution> =
        contributions.iter().filter(|c| c.node_id != me).collect();
    let opened = open_envelopes(
        &node.identity.node_id,
        &session,
        &others,
        &req.envelopes,
        PURPOSE_ROUND2,
    )?;
    let mut round2 = BTreeMap::new();
    for (node, package) in opened {
        let id = ops
            .identifier(&node)
            .map_err(|e| NodeError::MalformedRequest(e.to_string()))?;
        round2.insert(id, package);
    }
    let (key_package, pkp, previous) = match setup.kind {
        Kind::Dkg => {
            let (kp, pkp) = ops
                .dkg_part3(&secret, &round1, &round2)
                .map_err(|e| culprit_name(&setup, e))?;
            (kp, pkp, None)
        }
        _ => {
            let prior = prior_key(node, &setup)?;
            let (kp, pkp) = ops
                .refresh_part3(
                    &secret,
                    &round1,
                    &round2,
                    &prior.manifest.public_key_package,
                    &prior.key_package,
                )
                .map_err(|e| culprit_name(&setup, e))?;
            (kp, pkp, Some(prior))
        }
    };
    drop(secret);
    let decoded = build_manifest(&setup, previous.as_ref().map(|p| &p.manifest), pkp.clone())
        .map_err(rejected)?;
    if let Some(prior) = &previous {
        if decoded.public_key.verifying_key != prior.manifest.public_key.verifying_key {
            return Err(NodeError::CeremonyRejected(
                "the refresh changed the group public key".into(),
            ));
        }
    }
    let confirmation = pb::Confirmation {
        setup_hash: setup.hash.to_vec(),
        node_id: me,
        round1_transcript_hash: transcript.to_vec(),
        group_public_key: decoded.public_key.public_key.clone(),
        manifest_hash: decoded.hash.to_vec(),
        public_key_package: pkp,
    };
    let signed = participant.sign_statement(setup::CONFIRMATION, confirmation.encode_to_vec())?;
    tracing::info!(
        ceremony_id = %req.ceremony_id,
        group_public_key = %hex::encode(&decoded.public_key.public_key),
        manifest_sha256 = %hex::encode(decoded.hash),
        "ceremony round 3: share computed, awaiting every participant's confirmation"
    );
    session.stage = Stage::Confirmed {
        key_package,
        manifest: decoded.encoded,
        confirmation,
    };
    participant.sessions.put_back(session);
    Ok(signed)
}

/// `DkgActivate`: checks every confirmation and stores the key.
pub(crate) fn activate(
    participant: &Participant,
    node: &NodeState,
    req: pb::DkgActivateRequest,
    caller: &str,
) -> Result<pb::InstallKeyResponse, NodeError> {
    let mut session = participant.sessions.take(&req.ceremony_id)?;
    let Stage::Confirmed {
        key_package,
        manifest,
        confirmation,
    } = session.stage
    else {
        return Err(NodeError::CeremonyOutOfStep(format!(
            "ceremony {} is at {}, not confirmed; it is aborted on this node",
            req.ceremony_id,
            session.stage.name()
        )));
    };
    if req.manifest != manifest {
        return Err(NodeError::CeremonyRejected(format!(
            "ceremony: the manifest to activate (SHA-256 {}) is not the one {} computed ({})",
            hex::encode(quorate_wire::sha256(&req.manifest)),
            node.identity.node_id,
            hex::encode(quorate_wire::sha256(&manifest))
        )));
    }
    verify_confirmations(
        &participant.keys.verifier,
        &mut session.certificates,
        &session.setup.participant_ids(),
        &confirmation,
        &req.confirmations,
    )
    .map_err(rejected)?;
    let record = KeyRecord {
        manifest,
        key_package,
    };
    // A DKG's key is active at once; a refresh's new share is staged beside the
    // current one, which keeps signing until every participant has stored its own
    // (`refresh::commit`).
    let mut response = match session.setup.kind {
        Kind::Dkg => node.install_record(record, "key_generated", caller)?,
        _ => node.stage_refresh(
            record,
            session.setup.hash,
            &session.setup.pb.manifest_hash,
            caller,
        )?,
    };
    // The record is durable (installing and staging flush before they return): say
    // so.
    let stored: [u8; 32] = response
        .manifest_hash
        .as_slice()
        .try_into()
        .map_err(|_| NodeError::Internal("a manifest hash of another length".into()))?;
    response.receipt =
        Some(participant.receipt(&node.identity.node_id, &session.setup, &stored)?);
    tracing::info!(
        ceremony_id = %req.ceremony_id,
        key_id = %session.setup.pb.key_id,
        kind = ?session.setup.kind,
        "ceremony complete: every participant confirmed; key active"
    );
    Ok(response)
}
