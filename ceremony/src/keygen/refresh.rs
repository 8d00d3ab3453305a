//! Refresh: new shares of an existing key among its nodes (same group key),
//! optionally dropping one node, which then retires its share, and optionally
//! changing the key's policy or escrow custodians. Planned first ([`plan_refresh`])
//! so that the key's administrators can authorize the exact setup, then run
//! ([`run_refresh`]).

use quorate_ceremony_protocol::setup::{Setup, SETUP_VERSION};
use quorate_keys::manifest::Manifest;
use quorate_wire::pb;

use super::relay::{agreed_manifest, manifest_participants, reach, Peer};
use super::rounds::run_keygen;
use crate::ceremony_file::CeremonyFile;
use crate::error::CeremonyError;
use crate::plan::{ceremony_id, Plan};
use crate::transcript::{now_rfc3339, Transcript};

/// What a refresh changes.
#[derive(Clone, Debug, Default)]
pub struct RefreshRequest {
    /// Key id.
    pub key_id: String,
    /// A node to drop from the key (its share is deleted).
    pub remove_node: Option<String>,
    /// The key's new policy (`None`: kept).
    pub policy: Option<pb::KeyPolicy>,
    /// The key's new escrow custodians and threshold (`None`: kept).
    pub escrow: Option<pb::KeyEscrow>,
}

/// Plans a refresh: reaches the key's nodes (the ceremony file must list exactly
/// them), checks they agree on the key, and fixes the setup (a fresh ceremony id,
/// the current manifest's hash, the nodes that keep a share, any change of terms).
pub async fn plan_refresh(file: &CeremonyFile, req: RefreshRequest) -> Result<Plan, CeremonyError> {
    quorate_wire::validate_key_id(&req.key_id).map_err(CeremonyError::Request)?;
    if let Some(r) = &req.remove_node {
        if !file.nodes.iter().any(|n| &n.id == r) {
            return Err(CeremonyError::Request(format!(
                "--remove-node {r}: the ceremony file lists no such node"
            )));
        }
    }
    let (peers, _) = reach(file).await?;
    let manifest = agreed_manifest(&peers, &req.key_id).await?;
    check_lists_the_key_nodes(&manifest, &peers)?;
    let remaining: Vec<Peer> = peers
        .iter()
        .filter(|p| Some(&p.id) != req.remove_node.as_ref())
        .cloned()
        .collect();
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
        policy: req.policy,
        created_at: String::new(),
        manifest_hash: manifest.hash.to_vec(),
        repair_target: String::new(),
        escrow: req.escrow,
    };
    let setup = Setup::from_pb(setup).map_err(|e| CeremonyError::Request(e.to_string()))?;
    Plan::new(setup, manifest).map_err(CeremonyError::Request)
}

/// Runs a planned refresh with the administrators' `authorizations` (none for a
/// key without administrators): new shares for the same group key among the
/// plan's nodes, then the node the plan leaves out (if any) retires its share.
/// Refused before any node is asked when the key changed since the plan was
/// written or the authorizations would not satisfy its nodes.
pub async fn run_refresh(
    file: &CeremonyFile,
    plan: &Plan,
    authorizations: &[Vec<u8>],
) -> Result<Transcript, CeremonyError> {
    let started_at = now_rfc3339()?;
    let setup = plan.setup().clone();
    if setup.kind != quorate_ceremony_protocol::setup::Kind::Refresh {
        return Err(CeremonyError::Request(format!(
            "the plan is a {}, not a refresh",
            setup.kind.name()
        )));
    }
    let (peers, verifier) = reach(file).await?;
    let manifest = agreed_manifest(&peers, &setup.pb.key_id).await?;
    if manifest.hash.as_slice() != setup.pb.manifest_hash.as_slice() {
        return Err(CeremonyError::KeyState {
            key_id: setup.pb.key_id.clone(),
            message: format!(
                "the plan is for manifest {}, but the nodes hold {}: the key changed since \
                 the plan was written; plan again",
                hex::encode(&setup.pb.manifest_hash),
                hex::encode(manifest.hash)
            ),
        });
    }
    check_lists_the_key_nodes(&manifest, &peers)?;
    plan.check_authorizations(&manifest, authorizations)?;
    let (remaining, removed): (Vec<Peer>, Vec<Peer>) =
        peers.iter().cloned().partition(|p| setup.involves(&p.id));
    run_keygen(
        "refresh",
        setup,
        &remaining,
        &removed,
        &verifier,
        Some(&manifest),
        authorizations,
        started_at,
    )
    .await
}

/// The ceremony file must list exactly the key's current nodes: those a refresh
/// keeps and the one it may remove.
fn check_lists_the_key_nodes(manifest: &Manifest, peers: &[Peer]) -> Result<(), CeremonyError> {
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
    Ok(())
}
