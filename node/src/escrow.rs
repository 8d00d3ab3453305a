//! Escrow of this node's share: Feldman-split among custodians, each part encrypted
//! to its custodian with age ([`quorate_escrow`] has the part format).
//!
//! Used by the `Ceremony` gRPC adapter (`EscrowSplit`). Invariants: the parts go
//! only to the custodians fixed in the key's manifest, with its threshold (the
//! caller cannot name others); the plaintext parts exist only in zeroizing buffers
//! here and leave the node only age-encrypted, each to its own custodian; every
//! split, and every refused attempt to name custodians, is in the audit log; a key
//! with administrators is split only with their authorizations of the split's
//! setup.

use quorate_escrow::{EscrowPart, SplitRequest, ESCROW_FORMAT};
use quorate_keys::audit::AuditRecord;
use quorate_transport::identity::PeerIdentity;
use quorate_wire::pb;

use quorate_ceremony_protocol::setup::{Kind, Setup};
use quorate_keys::manifest::Manifest;

use crate::ceremony::governance::{check_authorized, refuse};
use crate::error::NodeError;
use crate::state::NodeState;

/// The setup of an escrow split, checked against the key this node holds: an
/// escrow split of this key at its current manifest, naming this node.
fn split_setup(
    state: &NodeState,
    manifest: &Manifest,
    setup: pb::CeremonySetup,
) -> Result<Setup, NodeError> {
    let setup = Setup::from_pb(setup).map_err(|e| NodeError::MalformedRequest(e.to_string()))?;
    if setup.kind != Kind::EscrowSplit || setup.pb.key_id != manifest.key_id {
        return Err(NodeError::MalformedRequest(format!(
            "the setup is a {} of key {:?}, not an escrow split of key {:?}",
            setup.kind.name(),
            setup.pb.key_id,
            manifest.key_id
        )));
    }
    if setup.pb.manifest_hash.as_slice() != manifest.hash.as_slice() {
        return Err(NodeError::KeyVersionMismatch(format!(
            "the escrow split is about manifest {}, this node holds {}",
            hex::encode(&setup.pb.manifest_hash),
            hex::encode(manifest.hash)
        )));
    }
    if !setup.involves(&state.identity.node_id) {
        return Err(NodeError::CeremonyMismatch(format!(
            "the escrow split does not name {}",
            state.identity.node_id
        )));
    }
    // The setup names the nodes as the key's manifest places them, so that what
    // administrators were shown is what the nodes hold.
    for p in &setup.pb.participants {
        match manifest.participant(&p.node_id) {
            Some(m) if m.region == p.region && m.jurisdiction == p.jurisdiction => {}
            _ => {
                return Err(NodeError::CeremonyMismatch(format!(
                    "the escrow split names {} at {:?}/{:?}, which is not a participant of key {:?} there",
                    p.node_id, p.region, p.jurisdiction, manifest.key_id
                )))
            }
        }
    }
    Ok(setup)
}

/// Splits this node's share of a key among the custodians its manifest names, with
/// the manifest's escrow threshold. The plaintext parts exist only in zeroizing
/// buffers here and leave the node only age-encrypted, each to its custodian's
/// recipient. The caller names the key and nothing else: a request naming
/// custodians or a threshold is refused (and audited), as is a key whose manifest
/// names no custodians.
pub(crate) fn split(
    state: &NodeState,
    req: pb::EscrowSplitRequest,
    caller: &PeerIdentity,
) -> Result<pb::EscrowSplitResponse, NodeError> {
    let mut req = req;
    let key_id = req.key_id.clone();
    let setup = req.setup.take();
    let authorizations = std::mem::take(&mut req.authorizations);
    let req = match SplitRequest::try_from(req) {
        Ok(req) => req,
        Err(reason) => {
            // Who tried to name the recipients is worth a record: it is what an
            // attempt to redirect a key's escrow looks like.
            if quorate_wire::validate_key_id(&key_id).is_ok() {
                state.audit.append(AuditRecord {
                    event: "escrow_split_refused".into(),
                    key_id,
                    caller: caller.spiffe_id(),
                    detail: reason.clone(),
                    ..Default::default()
                })?;
            }
            return Err(NodeError::MalformedRequest(reason));
        }
    };
    let key = state.key(&req.key_id)?;
    if state.refresh_staged(&req.key_id) {
        // The share would be split just before a commit deletes it.
        return Err(NodeError::KeyVersionMismatch(format!(
            "a refresh of key {:?} is staged on this node; escrow its share once the refresh \
             is committed or rolled back",
            req.key_id
        )));
    }
    let manifest = &key.manifest;
    let escrow = manifest
        .escrow
        .as_ref()
        .ok_or_else(|| NodeError::NoEscrowCustodians(req.key_id.clone()))?;
    if let Some(setup) = setup {
        let setup = split_setup(state, manifest, setup)?;
        check_authorized(
            state,
            manifest,
            &setup,
            &authorizations,
            &caller.spiffe_id(),
        )?;
    } else if manifest.policy.is_governed() {
        return Err(refuse(
            state,
            &req.key_id,
            &caller.spiffe_id(),
            "escrow-split without a setup",
            format!(
                "key {:?} has administrators: an escrow split needs its setup and their \
                 authorizations of it (quorate-ceremony escrow split --write-plan, then \
                 authorize)",
                req.key_id
            ),
        )?);
    }
    let mut recipients = Vec::with_capacity(escrow.custodians.len());
    for c in &escrow.custodians {
        // The manifest checked the recipient when it was decoded; checked again here
        // because age panics encrypting to a small-order key, and this must refuse
        // instead. age parses it once more.
        quorate_keys::custodians::check_age_recipient(&c.recipient).map_err(|e| {
            NodeError::Corrupt(format!(
                "key {:?}: custodian {:?} in the manifest: {e}",
                req.key_id, c.name
            ))
        })?;
        let parsed = c.recipient.parse::<age::x25519::Recipient>().map_err(|e| {
            NodeError::Corrupt(format!(
                "key {:?}: custodian {:?} in the manifest: {e}",
                req.key_id, c.name
            ))
        })?;
        recipients.push(parsed);
    }
    let parts = u16::try_from(escrow.custodians.len())
        .map_err(|_| NodeError::Corrupt(format!("key {:?}: too many custodians", req.key_id)))?;
    let split = quorate_escrow::split(
        manifest.ciphersuite,
        &key.key_package,
        escrow.threshold,
        parts,
    )
    .map_err(|e| NodeError::Corrupt(format!("key {:?}: {e}", req.key_id)))?;
    let commitments: Vec<String> = split.commitments.iter().map(hex::encode).collect();
    let mut out = Vec::with_capacity(split.parts.len());
    for ((custodian, recipient), part) in
        escrow.custodians.iter().zip(&recipients).zip(&split.parts)
    {
        let file = EscrowPart {
            format: ESCROW_FORMAT.to_string(),
            key_id: manifest.key_id.clone(),
            node_id: state.identity.node_id.clone(),
            ciphersuite: manifest.ciphersuite.name().to_string(),
            custodian: custodian.name.clone(),
            threshold: escrow.threshold,
            parts,
            identifier: part.identifier,
            value: hex::encode(part.value.expose_bytes()),
            verifying_share: hex::encode(&split.verifying_share),
            commitments: commitments.clone(),
            group_public_key: hex::encode(&manifest.public_key.public_key),
            manifest_hash: hex::encode(manifest.hash),
        };
        let plaintext = file.to_json();
        drop(file);
        let age_file = age::encrypt(recipient, plaintext.as_bytes()).map_err(|e| {
            NodeError::CannotEncryptToCustodian {
                custodian: custodian.name.clone(),
                reason: e.to_string(),
            }
        })?;
        out.push(pb::EscrowPartCiphertext {
            custodian: custodian.name.clone(),
            identifier: u32::from(part.identifier),
            age_file,
        });
    }
    // The record names each custodian with the recipient its part is encrypted to,
    // and the manifest that fixed them, so an auditor sees where the parts went.
    state.audit.append(AuditRecord {
        event: "escrow_split".into(),
        key_id: req.key_id.clone(),
        caller: caller.spiffe_id(),
        detail: format!(
            "threshold={} custodians={} manifest={}",
            escrow.threshold,
            escrow.describe(),
            hex::encode(manifest.hash)
        ),
        ..Default::default()
    })?;
    tracing::info!(
        key_id = %req.key_id,
        threshold = escrow.threshold,
        custodians = %escrow.describe(),
        "signing share split among the key's escrow custodians"
    );
    Ok(pb::EscrowSplitResponse {
        parts: out,
        verifying_share: split.verifying_share.clone(),
        commitments: split.commitments.clone(),
        manifest_hash: manifest.hash.to_vec(),
    })
}
