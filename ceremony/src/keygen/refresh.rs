//! Refresh: new shares of an existing key among its nodes (same group key),
//! optionally dropping one node, which then retires its share.

use quorate_ceremony_protocol::setup::{Setup, SETUP_VERSION};
use quorate_wire::pb;

use super::relay::{agreed_manifest, ceremony_id, manifest_participants, reach, Peer};
use super::rounds::run_keygen;
use crate::ceremony_file::CeremonyFile;
use crate::error::CeremonyError;
use crate::transcript::{now_rfc3339, Transcript};

/// What a refresh changes.
#[derive(Clone, Debug)]
pub struct RefreshRequest {
    /// Key id.
    pub key_id: String,
    /// A node to drop from the key (its share is deleted).
    pub remove_node: Option<String>,
}

/// Runs a refresh: new shares for the same group key among the key's nodes (the
/// ceremony file's nodes, less `remove_node`), then retires the removed node's share.
pub async fn run_refresh(
    file: &CeremonyFile,
    req: RefreshRequest,
) -> Result<Transcript, CeremonyError> {
    let started_at = now_rfc3339()?;
    quorate_wire::validate_key_id(&req.key_id).map_err(CeremonyError::Request)?;
    if let Some(r) = &req.remove_node {
        if !file.nodes.iter().any(|n| &n.id == r) {
            return Err(CeremonyError::Request(format!(
                "--remove-node {r}: the ceremony file lists no such node"
            )));
        }
    }
    let (peers, verifier) = reach(file).await?;
    let manifest = agreed_manifest(&peers, &req.key_id).await?;
    let remaining: Vec<Peer> = peers
        .iter()
        .filter(|p| Some(&p.id) != req.remove_node.as_ref())
        .cloned()
        .collect();
    let mut names: Vec<&str> = manifest
        .participants
        .iter()
        .map(|p| p.node_id.as_str())
        .collect();
    let mut listed: Vec<&str> = peers.iter().map(|p| p.id.as_str()).collect();
    names.sort_unstable();
    listed.sort_unstable();
    if names != listed {
        return Err(CeremonyError::Request(format!(
            "the ceremony file must list exactly the key's nodes [{}]; it lists [{}]",
            names.join(", "),
            listed.join(", ")
        )));
    }
    if remaining.len() < usize::from(manifest.threshold) {
        return Err(CeremonyError::Request(format!(
            "removing a node would leave {} nodes, fewer than the threshold {}",
            remaining.len(),
            manifest.threshold
        )));
    }
    let setup = pb::CeremonySetup {
        version: SETUP_VERSION,
        ceremony_id: ceremony_id("refresh"),
        kind: pb::CeremonyKind::Refresh as i32,
        key_id: req.key_id.clone(),
        ciphersuite: quorate_wire::pb::Ciphersuite::from(manifest.ciphersuite) as i32,
        threshold: u32::from(manifest.threshold),
        participants: manifest_participants(&remaining),
        policy: None,
        created_at: String::new(),
        manifest_hash: manifest.hash.to_vec(),
        repair_target: String::new(),
        escrow: None,
    };
    let setup = Setup::from_pb(setup).map_err(|e| CeremonyError::Request(e.to_string()))?;
    let removed: Vec<Peer> = peers
        .iter()
        .filter(|p| Some(&p.id) == req.remove_node.as_ref())
        .cloned()
        .collect();
    run_keygen(
        "refresh",
        setup,
        &remaining,
        &removed,
        &verifier,
        Some(&manifest),
        started_at,
    )
    .await
}
