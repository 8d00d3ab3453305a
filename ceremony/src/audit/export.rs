//! `quorate-ceremony audit export`: a node's verified log as payload-free JSON lines
//! for a SIEM or search index outside the region.
//!
//! The first line is the node's signed checkpoint (the C2SP note and the attested
//! log key that verifies it); each further line is one record's metadata (node,
//! region, jurisdiction, sequence number, time, key id, event, client, message
//! SHA-256, quorum, signing attempt, approval token id) with its leaf hash and RFC 9162 inclusion
//! proof against that checkpoint. Never a message, a share, an intent or a
//! request's free-text detail: what leaves the region can say that a record exists
//! and what it is about, and prove it is in the log the node signed, but the record
//! itself stays in the region (its leaf hash binds it, for an in-region auditor
//! to show later).

use quorate_keys::audit::AuditRecord;
use quorate_keys::merkle::{leaf_hash, Tree};
use serde_json::json;

use super::history::Observed;

/// Export line format this build writes.
pub const EXPORT_FORMAT: &str = "quorate-audit-export/1";

/// The export of `observed` (already verified: its records hash to its signed
/// checkpoint) as JSON lines, the checkpoint's line first.
pub fn lines(node: &str, observed: &Observed) -> Result<Vec<String>, String> {
    let size = observed.checkpoint.size;
    let covered = usize::try_from(size).map_err(|_| "checkpoint size too large".to_string())?;
    let records = observed
        .records
        .get(..covered)
        .ok_or("fewer records than the checkpoint covers")?;
    let mut tree = Tree::new();
    for (_, bytes) in records {
        tree.push(bytes);
    }
    let root = tree.root(size).map_err(|e| e.to_string())?;
    if root != observed.checkpoint.root {
        return Err("the records do not hash to the checkpoint".into());
    }
    let (region, jurisdiction) = observed
        .location
        .as_ref()
        .map(|l| (l.region.clone(), l.jurisdiction.clone()))
        .unwrap_or_default();
    let mut out = Vec::with_capacity(records.len() + 1);
    out.push(
        json!({
            "format": EXPORT_FORMAT,
            "kind": "checkpoint",
            "node": node,
            "region": region,
            "jurisdiction": jurisdiction,
            "origin": observed.checkpoint.origin,
            "tree_size": size,
            "root": hex::encode(root),
            "checkpoint": observed.note,
            "log_key": observed.log_key,
        })
        .to_string(),
    );
    for (index, (_, bytes)) in records.iter().enumerate() {
        let index = index as u64;
        let record: AuditRecord = serde_json::from_slice(bytes)
            .map_err(|e| format!("record {index} is not an audit record: {e}"))?;
        let proof = tree
            .inclusion_proof(index, size)
            .map_err(|e| e.to_string())?;
        out.push(
            json!({
                "format": EXPORT_FORMAT,
                "kind": "record",
                "node": node,
                "region": region,
                "jurisdiction": jurisdiction,
                "seq": record.seq,
                "time_unix_ms": record.time_unix_ms,
                "key_id": record.key_id,
                "event": record.event,
                "client": record.client_id,
                "message_sha256": record.message_sha256,
                "quorum": record.quorum,
                "attempt": record.attempt,
                "approval_token_id": record.approval_token_id,
                "leaf_index": index,
                "tree_size": size,
                "leaf_hash": hex::encode(leaf_hash(bytes)),
                "inclusion_proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
            })
            .to_string(),
        );
    }
    Ok(out)
}
