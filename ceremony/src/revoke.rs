//! Delivering an approver's revocation of an approval token to every node of the
//! key: each node verifies it against the key's policy and refuses the token from
//! then on. The revocation is made offline (`quorate-ceremony revoke`, with the
//! approver's key); delivering it needs only the ceremony's certificate and cannot
//! forge one (a node refuses a revocation no approver of the key signed).

use std::sync::Arc;

use futures::future::join_all;
use quorate_keys::revocation;
use quorate_wire::pb;
use quorate_wire::pb::ceremony_client::CeremonyClient;

use crate::ceremony_file::CeremonyFile;
use crate::connect::{check_node, describe_status, RPC_TIMEOUT};
use crate::error::{CeremonyError, NodeFailure};

/// What each node answered.
#[derive(Debug)]
pub struct Delivered {
    /// The key id the revocation names.
    pub key_id: String,
    /// Per node in file order: whether it stored the revocation now (false: it held
    /// it already).
    pub nodes: Vec<(String, bool)>,
}

/// Sends `revocation` (as `quorate-ceremony revoke` wrote it) to every node of the
/// ceremony file, each on its own: a node is sent it once it proved to be who the
/// file says, and a node that is down or refuses does not keep the others from
/// storing it (a token is revoked during the very outages it was made for). Fails
/// naming every node that did not store it, after the others did; delivering again
/// is harmless ("already revoked").
pub async fn deliver(file: &CeremonyFile, revocation: &[u8]) -> Result<Delivered, CeremonyError> {
    let unverified = revocation::read_unverified(revocation)
        .map_err(|e| CeremonyError::Request(e.to_string()))?;
    let key_id = unverified.key_id;
    file.validate()?;
    let tls = Arc::new(file.tls.load()?);
    let calls = file.nodes.iter().map(|node| {
        let tls = Arc::clone(&tls);
        async move {
            let reached = check_node(node, tls)
                .await
                .map_err(|reason| format!("{}: {reason}", node.endpoint))?;
            let mut client = CeremonyClient::new(reached.channel);
            let req = pb::RevokeApprovalRequest {
                revocation: revocation.to_vec(),
            };
            match tokio::time::timeout(RPC_TIMEOUT, client.revoke_approval(req)).await {
                Err(_) => Err(format!("RevokeApproval timed out after {RPC_TIMEOUT:?}")),
                Ok(Err(status)) => Err(describe_status(&status)),
                Ok(Ok(answer)) => Ok(answer.into_inner().newly_revoked),
            }
        }
    });
    let results = join_all(calls).await;
    let mut nodes = Vec::new();
    let mut failed = Vec::new();
    for (node, result) in file.nodes.iter().zip(results) {
        match result {
            Ok(newly) => nodes.push((node.id.clone(), newly)),
            Err(reason) => failed.push(NodeFailure {
                node_id: node.id.clone(),
                reason,
            }),
        }
    }
    if failed.is_empty() {
        return Ok(Delivered { key_id, nodes });
    }
    Err(CeremonyError::Revoke {
        key_id,
        token_id: unverified.token_id,
        total: file.nodes.len(),
        revoked: nodes.into_iter().map(|(id, _)| id).collect(),
        failed,
    })
}
