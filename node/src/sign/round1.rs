//! FROST round 1 on this node: fresh nonces for a key, kept in memory under their
//! commitments, which are returned.
//!
//! Used by the `Node` gRPC adapter (`Commit`). Invariants: nonces never leave the
//! node and are never stored; a node whose audit log broke issues none, since it
//! could not sign with them (coordinators would pool them and pick it for quorums
//! that then fail).

use quorate_wire::api;
use quorate_wire::pb;

use crate::error::NodeError;
use crate::state::NodeState;

/// `Commit`: `count` fresh commitments of this node for the key.
pub(crate) fn commit(
    state: &NodeState,
    req: pb::CommitRequest,
) -> Result<pb::CommitResponse, NodeError> {
    let req = api::CommitRequest::try_from(req).map_err(NodeError::MalformedRequest)?;
    let key = state.key(&req.key_id)?;
    // A node that can no longer sign (its audit log broke) hands out no
    // commitments either: coordinators would pool them and pick it for quorums,
    // each of which then fails in round 2. `UNAVAILABLE` counts against its
    // health on the coordinator, so it is skipped.
    state.audit.check_writable()?;
    let ops = key.manifest.ciphersuite.ops();
    let mut commitments = Vec::with_capacity(req.count as usize);
    for _ in 0..req.count {
        let (nonces, commitment) = ops
            .commit(&key.parsed_key_package)
            .map_err(|e| NodeError::Corrupt(format!("key {:?}: {e}", req.key_id)))?;
        state.nonces.insert(&req.key_id, &commitment, nonces);
        commitments.push(commitment);
    }
    Ok(pb::CommitResponse { commitments })
}
