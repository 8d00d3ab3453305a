//! Escrow of this node's share: Feldman-split among custodians, each part encrypted
//! to its custodian with age ([`quorate_escrow`] has the part format).
//!
//! Used by the `Ceremony` gRPC adapter (`EscrowSplit`). Invariants: the plaintext
//! parts exist only in zeroizing buffers here and leave the node only
//! age-encrypted, each to its own custodian; every split is in the audit log.

use quorate_escrow::{EscrowPart, SplitRequest, ESCROW_FORMAT};
use quorate_keys::audit::AuditRecord;
use quorate_transport::identity::PeerIdentity;
use quorate_wire::pb;

use crate::error::NodeError;
use crate::state::NodeState;

/// Splits this node's share of a key among custodians. The plaintext parts exist
/// only in zeroizing buffers here and leave the node only age-encrypted, each to
/// its custodian's recipient.
pub(crate) fn split(
    state: &NodeState,
    req: pb::EscrowSplitRequest,
    caller: &PeerIdentity,
) -> Result<pb::EscrowSplitResponse, NodeError> {
    let req = SplitRequest::try_from(req).map_err(NodeError::MalformedRequest)?;
    let mut recipients = Vec::with_capacity(req.custodians.len());
    for (name, recipient) in &req.custodians {
        let parsed = recipient.parse::<age::x25519::Recipient>().map_err(|e| {
            NodeError::NotAnAgeRecipient {
                custodian: name.clone(),
                reason: e.to_string(),
            }
        })?;
        recipients.push(parsed);
    }
    let key = state.key(&req.key_id)?;
    let manifest = &key.manifest;
    let parts = u16::try_from(req.custodians.len())
        .map_err(|_| NodeError::MalformedRequest("too many custodians".into()))?;
    let split = quorate_escrow::split(manifest.ciphersuite, &key.key_package, req.threshold, parts)
        .map_err(|e| NodeError::Corrupt(format!("key {:?}: {e}", req.key_id)))?;
    let commitments: Vec<String> = split.commitments.iter().map(hex::encode).collect();
    let mut out = Vec::with_capacity(split.parts.len());
    for (((name, _), recipient), part) in req.custodians.iter().zip(&recipients).zip(&split.parts) {
        let file = EscrowPart {
            format: ESCROW_FORMAT.to_string(),
            key_id: manifest.key_id.clone(),
            node_id: state.identity.node_id.clone(),
            ciphersuite: manifest.ciphersuite.name().to_string(),
            custodian: name.clone(),
            threshold: req.threshold,
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
                custodian: name.clone(),
                reason: e.to_string(),
            }
        })?;
        out.push(pb::EscrowPartCiphertext {
            custodian: name.clone(),
            identifier: u32::from(part.identifier),
            age_file,
        });
    }
    state.audit.append(AuditRecord {
        event: "escrow_split".into(),
        key_id: req.key_id.clone(),
        caller: caller.spiffe_id(),
        detail: format!(
            "threshold={} custodians={}",
            req.threshold,
            req.custodians
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ),
        ..Default::default()
    })?;
    tracing::info!(
        key_id = %req.key_id,
        threshold = req.threshold,
        custodians = ?req.custodians.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        "signing share split among escrow custodians"
    );
    Ok(pb::EscrowSplitResponse {
        parts: out,
        verifying_share: split.verifying_share.clone(),
        commitments: split.commitments.clone(),
        manifest_hash: manifest.hash.to_vec(),
    })
}
