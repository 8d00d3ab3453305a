//! The quorum engine: gathers `t` signers for a key, runs both FROST rounds in
//! parallel, aggregates, and on any failure retries with another quorum until the
//! request deadline.
//!
//! Round 1 asks `t + round1_extra` nodes and proceeds with the first `t` answers, so a
//! slow node does not stall the request; a node that fails is replaced by the next
//! candidate. A node whose signature share does not verify is named a culprit and
//! excluded for the rest of the request. Nonces of nodes left out of a quorum are
//! never used and expire on the node.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use quorate_proto::pb;
use quorate_proto::suite::CryptoError;
use tokio::time::timeout_at;

use crate::config::SigningSettings;
use crate::error::CoordError;
use crate::keys::KnownKey;
use crate::nodes::{NodeHandle, NodePool};

/// Who asked, for the nodes' records.
#[derive(Clone, Debug)]
pub struct SignContext {
    /// Idempotency key or generated id.
    pub request_id: String,
    /// Caller's SPIFFE id.
    pub client_id: String,
}

/// A finished signature.
#[derive(Clone, Debug)]
pub struct Signed {
    /// Signature in the public API encoding.
    pub signature: Vec<u8>,
    /// Node ids whose shares make up the signature.
    pub signers: Vec<String>,
}

/// Runs signing sessions.
#[derive(Debug)]
pub struct QuorumEngine {
    pool: Arc<NodePool>,
    settings: SigningSettings,
}

/// Why a node dropped out of this request.
#[derive(Debug)]
enum NodeFailure {
    Timeout,
    Status(tonic::Status),
}

impl std::fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeFailure::Timeout => f.write_str("timed out"),
            NodeFailure::Status(s) => write!(f, "{:?}: {}", s.code(), s.message()),
        }
    }
}

async fn call<T>(
    node: &NodeHandle,
    deadline: Instant,
    node_timeout: Duration,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, NodeFailure> {
    let started = Instant::now();
    let until = deadline.min(started + node_timeout);
    match timeout_at(until.into(), fut).await {
        Ok(Ok(resp)) => {
            node.record_success(started.elapsed());
            Ok(resp.into_inner())
        }
        Ok(Err(status)) => {
            node.record_failure();
            Err(NodeFailure::Status(status))
        }
        Err(_) => {
            node.record_failure();
            Err(NodeFailure::Timeout)
        }
    }
}

impl QuorumEngine {
    /// An engine over `pool`.
    pub fn new(pool: Arc<NodePool>, settings: SigningSettings) -> Self {
        Self { pool, settings }
    }

    /// Signs `message` with `key` before `deadline`.
    pub async fn sign(
        &self,
        key: &KnownKey,
        message: &[u8],
        ctx: &SignContext,
        deadline: Instant,
    ) -> Result<Signed, CoordError> {
        let manifest = &key.manifest;
        let t = usize::from(manifest.threshold);
        let ops = manifest.ciphersuite.ops();
        // Nodes out of this request: failed a round, or named as culprits.
        let mut out: HashSet<String> = key.disagreeing.clone();
        let mut attempt = 0u32;
        let no_quorum = |out: &HashSet<String>, detail: String| CoordError::NoQuorum {
            key_id: manifest.key_id.clone(),
            answered: manifest.participants.len() - out.len().min(manifest.participants.len()),
            participants: manifest.participants.len(),
            needed: t,
            detail,
        };
        loop {
            attempt += 1;
            if Instant::now() >= deadline {
                return Err(no_quorum(&out, "; request deadline reached".into()));
            }
            let mut candidates: Vec<&Arc<NodeHandle>> = manifest
                .participants
                .iter()
                .filter(|p| !out.contains(&p.node_id))
                .filter_map(|p| self.pool.get(&p.node_id))
                .collect();
            // Stable sort keeps manifest order among equals.
            candidates.sort_by_key(|n| n.preference());
            if candidates.len() < t {
                // Participants the coordinator has no endpoint for count as absent.
                let unreachable: HashSet<String> = manifest
                    .participants
                    .iter()
                    .filter(|p| self.pool.get(&p.node_id).is_none())
                    .map(|p| p.node_id.clone())
                    .collect();
                out.extend(unreachable);
                return Err(no_quorum(&out, String::new()));
            }

            // Round 1.
            let mut commitments: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut quorum: Vec<(Arc<NodeHandle>, Vec<u8>)> = Vec::with_capacity(t);
            let mut next = 0;
            let mut pending = FuturesUnordered::new();
            let first_wave = (t + self.settings.round1_extra).min(candidates.len());
            let ask = |node: &Arc<NodeHandle>| {
                let node = node.clone();
                let key_id = manifest.key_id.clone();
                let node_timeout = self.settings.node_timeout();
                async move {
                    let mut client = node.client();
                    let mut req = tonic::Request::new(pb::CommitRequest { key_id, count: 1 });
                    req.set_timeout(node_timeout);
                    let result = call(&node, deadline, node_timeout, client.commit(req)).await;
                    (node, result)
                }
            };
            while next < first_wave {
                pending.push(ask(candidates[next]));
                next += 1;
            }
            while let Some((node, result)) = pending.next().await {
                let commitment = result.and_then(|r| {
                    r.commitments.into_iter().next().ok_or_else(|| {
                        NodeFailure::Status(tonic::Status::internal("no commitment returned"))
                    })
                });
                let identifier = manifest.participant(&node.id).map(|p| p.identifier.clone());
                match (commitment, identifier) {
                    (Ok(c), Some(identifier)) => {
                        commitments.insert(identifier.clone(), c);
                        quorum.push((node, identifier));
                        if quorum.len() == t {
                            break;
                        }
                    }
                    (Ok(_), None) => {
                        out.insert(node.id.clone());
                    }
                    (Err(e), _) => {
                        tracing::warn!(node = %node.id, key_id = %manifest.key_id, attempt, "round 1 failed: {e}");
                        out.insert(node.id.clone());
                        if next < candidates.len() {
                            pending.push(ask(candidates[next]));
                            next += 1;
                        }
                    }
                }
            }
            drop(pending);
            if quorum.len() < t {
                continue;
            }

            // Round 2.
            let signing_package = ops
                .signing_package(&commitments, message)
                .map_err(|e| CoordError::Internal(format!("building signing package: {e}")))?;
            let shares = futures::future::join_all(quorum.iter().map(|(node, identifier)| {
                let node = node.clone();
                let req = pb::SignShareRequest {
                    key_id: manifest.key_id.clone(),
                    signing_package: signing_package.clone(),
                    request_id: ctx.request_id.clone(),
                    client_id: ctx.client_id.clone(),
                };
                let node_timeout = self.settings.node_timeout();
                async move {
                    let mut client = node.client();
                    let mut req = tonic::Request::new(req);
                    req.set_timeout(node_timeout);
                    let result = call(&node, deadline, node_timeout, client.sign_share(req)).await;
                    (node, identifier.clone(), result)
                }
            }))
            .await;
            let mut share_map = BTreeMap::new();
            let mut round2_failed = false;
            for (node, identifier, result) in shares {
                match result {
                    Ok(r) => {
                        share_map.insert(identifier, r.signature_share);
                    }
                    Err(e) => {
                        tracing::warn!(node = %node.id, key_id = %manifest.key_id, attempt, "round 2 failed: {e}");
                        out.insert(node.id.clone());
                        round2_failed = true;
                    }
                }
            }
            if round2_failed {
                continue;
            }
            match ops.aggregate(&signing_package, &share_map, &manifest.public_key_package) {
                Ok(signature) => {
                    return Ok(Signed {
                        signature,
                        signers: quorum.iter().map(|(n, _)| n.id.clone()).collect(),
                    })
                }
                Err(CryptoError::InvalidShares { culprits }) => {
                    for c in culprits {
                        if let Some(p) = manifest.participant_by_identifier(&c) {
                            tracing::warn!(node = %p.node_id, key_id = %manifest.key_id, "culprit: signature share does not verify; excluded");
                            if let Some(node) = self.pool.get(&p.node_id) {
                                node.record_failure();
                            }
                            out.insert(p.node_id.clone());
                        }
                    }
                }
                Err(e) => {
                    return Err(CoordError::Internal(format!("aggregation failed: {e}")));
                }
            }
        }
    }
}
