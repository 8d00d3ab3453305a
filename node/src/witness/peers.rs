//! Witnessing the configured peers over the network: one task per peer fetches the
//! peer's latest checkpoint (`Audit.GetCheckpoint`, over mTLS pinned to the
//! peer's node certificate, as role `node`) every interval, verifies the log key's
//! attestation by the peer's own certificate and the checkpoint's signature,
//! asks for a consistency proof from the last checkpoint it cosigned, and cosigns
//! or keeps evidence ([`super::judge`]).
//!
//! A peer that does not answer is not an inconsistency: it is counted, and its
//! last-checked gauge stops moving. An inconsistency is logged at error level,
//! set in `quorate_node_witness_inconsistent{peer}`, and kept as evidence; the
//! peer is then checked (and reported) every interval but never cosigned again.

use std::sync::Arc;
use std::time::Duration;

use quorate_keys::checkpoint::{origin, LogVerifier, LOG_KEY_STATEMENT};
use quorate_transport::attest::StatementVerifier;
use quorate_transport::metrics::{CounterVec, GaugeVec, Registry};
use quorate_transport::tls::TlsMaterial;
use quorate_wire::pb;
use tonic::transport::Channel;

use super::{judge, now_unix, Evidence, Served, Verdict, EVIDENCE_FORMAT};
use crate::config::WitnessPeer;
use crate::error::NodeError;
use crate::metrics::{WITNESS_CHECKS, WITNESS_INCONSISTENT, WITNESS_LAST_CHECKED};
use crate::state::NodeState;

/// How long one call to a peer may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The witness's metric handles.
#[derive(Debug, Clone)]
struct WitnessMetrics {
    inconsistent: GaugeVec<1>,
    last_checked: GaugeVec<1>,
    checks: CounterVec<2>,
}

impl WitnessMetrics {
    fn new(registry: &Registry) -> Self {
        Self {
            inconsistent: registry.gauge_vec(
                WITNESS_INCONSISTENT,
                "1 once this node, as a witness, holds evidence that the peer's audit log is not the one it cosigned, else 0.",
                ["peer"],
            ),
            last_checked: registry.gauge_vec(
                WITNESS_LAST_CHECKED,
                "When this node last verified a checkpoint of the peer's audit log consistent with the one it cosigned (or, before the first, began witnessing it), Unix seconds.",
                ["peer"],
            ),
            checks: registry.counter_vec(
                WITNESS_CHECKS,
                "Witness checks of a peer's audit log by outcome (cosigned, unchanged, unreachable, invalid, inconsistent).",
                ["peer", "outcome"],
            ),
        }
    }
}

/// Starts one witnessing task per peer in `peers`, every `interval`.
pub fn spawn(
    state: Arc<NodeState>,
    tls: &TlsMaterial,
    registry: &Registry,
    peers: &[WitnessPeer],
    interval: Duration,
) -> Result<Vec<tokio::task::JoinHandle<()>>, NodeError> {
    let metrics = WitnessMetrics::new(registry);
    let verifier = tls
        .statement_verifier()
        .map_err(|e| NodeError::Config(e.to_string()))?;
    let mut tasks = Vec::with_capacity(peers.len());
    for peer in peers {
        let held = state.witness.evidence(&peer.node_id)?.is_some();
        metrics.inconsistent.set([&peer.node_id], i64::from(held));
        // From now on, a peer never verified grows as stale as one that stopped
        // answering (alert QuorateWitnessStale).
        metrics.last_checked.set([&peer.node_id], now_secs());
        let channel = tls
            .node_channel(&peer.endpoint, &peer.node_id, CALL_TIMEOUT)
            .map_err(|e| NodeError::Config(format!("witness peer {}: {e}", peer.node_id)))?;
        let check = PeerCheck {
            state: state.clone(),
            verifier: verifier.clone(),
            client: pb::audit_client::AuditClient::new(channel),
            origin: origin(&state.identity.trust_domain, &peer.node_id),
            peer: peer.node_id.clone(),
            metrics: metrics.clone(),
        };
        tasks.push(tokio::spawn(check.run(interval)));
    }
    Ok(tasks)
}

struct PeerCheck {
    state: Arc<NodeState>,
    verifier: StatementVerifier,
    client: pb::audit_client::AuditClient<Channel>,
    origin: String,
    peer: String,
    metrics: WitnessMetrics,
}

/// Why a round ended without a verdict on the peer's log.
enum Skip {
    /// The peer did not answer.
    Unreachable(String),
    /// It answered with something that does not verify on its own.
    Invalid(String),
}

impl PeerCheck {
    async fn run(mut self, interval: Duration) {
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let outcome = match self.round().await {
                Ok(outcome) => outcome,
                Err(Skip::Unreachable(why)) => {
                    tracing::debug!(peer = %self.peer, "witness: peer unreachable: {why}");
                    "unreachable"
                }
                Err(Skip::Invalid(why)) => {
                    tracing::warn!(peer = %self.peer, "witness: the peer's checkpoint does not verify: {why}");
                    "invalid"
                }
            };
            self.metrics.checks.inc([&self.peer, outcome]);
        }
    }

    async fn fetch(&mut self) -> Result<Served, Skip> {
        let served = tokio::time::timeout(
            CALL_TIMEOUT,
            self.client.get_checkpoint(pb::GetCheckpointRequest {}),
        )
        .await
        .map_err(|_| Skip::Unreachable("GetCheckpoint timed out".into()))?
        .map_err(|s| Skip::Unreachable(s.to_string()))?
        .into_inner();
        let attestation = served
            .log_key
            .ok_or_else(|| Skip::Invalid("no attestation of the log key".into()))?;
        self.verifier
            .verify(&attestation, LOG_KEY_STATEMENT, &self.peer)
            .map_err(|e| Skip::Invalid(format!("the log key's attestation: {e}")))?;
        let log_key = String::from_utf8(attestation.body.clone())
            .map_err(|_| Skip::Invalid("the attested log key is not text".into()))?;
        let verifier = LogVerifier::parse(&log_key).map_err(|e| Skip::Invalid(e.to_string()))?;
        if verifier.name() != self.origin {
            return Err(Skip::Invalid(format!(
                "the log key is named {:?}, not {:?}",
                verifier.name(),
                self.origin
            )));
        }
        let note = String::from_utf8(served.note)
            .map_err(|_| Skip::Invalid("the checkpoint is not text".into()))?;
        let checkpoint = verifier
            .verify(&note)
            .map_err(|e| Skip::Invalid(e.to_string()))?;
        Ok(Served {
            note,
            checkpoint,
            log_key,
            attestation,
        })
    }

    async fn proof(
        &mut self,
        first: u64,
        second: u64,
    ) -> Result<Result<Vec<[u8; 32]>, String>, Skip> {
        let answer = tokio::time::timeout(
            CALL_TIMEOUT,
            self.client
                .get_consistency_proof(pb::ConsistencyProofRequest { first, second }),
        )
        .await
        .map_err(|_| Skip::Unreachable("GetConsistencyProof timed out".into()))?;
        match answer {
            Ok(proof) => Ok(proof
                .into_inner()
                .hashes
                .into_iter()
                .map(|h| {
                    <[u8; 32]>::try_from(h.as_slice())
                        .map_err(|_| "a proof hash is not 32 bytes".to_string())
                })
                .collect()),
            // Only a node's answer about the tree sizes counts as its refusal; a
            // transport failure (`Unknown`, `Unavailable`, ...) says nothing about
            // its log, and is retried next round.
            Err(s) if is_refusal(&s) => Ok(Err(format!("{:?}: {}", s.code(), s.message()))),
            Err(s) => Err(Skip::Unreachable(s.to_string())),
        }
    }

    /// One round: fetch, verify, judge, then cosign or keep evidence.
    async fn round(&mut self) -> Result<&'static str, Skip> {
        let served = self.fetch().await?;
        let state = self.state.clone();
        let witness = &state.witness;
        let stored = |e: NodeError| Skip::Invalid(format!("the witness's own state: {e}"));
        witness.saw(&self.peer);
        if witness.evidence(&self.peer).map_err(stored)?.is_some() {
            // Held until an operator acts: never cosign this peer again meanwhile.
            self.metrics.inconsistent.set([&self.peer], 1);
            return Ok("inconsistent");
        }
        let last = witness.cosigned(&self.peer).map_err(stored)?;
        let mut proof = None;
        let verdict = match judge(last.as_ref(), &served, None).map_err(stored)? {
            Verdict::NeedsProof { from } => {
                let p = self.proof(from, served.checkpoint.size).await?;
                let verdict = judge(last.as_ref(), &served, Some(&p)).map_err(stored)?;
                proof = Some(p);
                verdict
            }
            verdict => verdict,
        };
        match verdict {
            Verdict::Unchanged => {
                self.metrics.last_checked.set([&self.peer], now_secs());
                Ok("unchanged")
            }
            Verdict::Cosign => {
                // The store's flush blocks: off the runtime's worker, which also
                // serves signing rounds.
                let (state, peer) = (self.state.clone(), self.peer.clone());
                tokio::task::spawn_blocking(move || state.witness.cosign(&peer, &served))
                    .await
                    .map_err(|e| Skip::Invalid(format!("the witness's own state: {e}")))?
                    .map_err(stored)?;
                self.metrics.last_checked.set([&self.peer], now_secs());
                Ok("cosigned")
            }
            Verdict::NeedsProof { .. } => Err(Skip::Invalid("no proof was judged".into())),
            Verdict::Inconsistent(reason) => {
                let last = last.ok_or_else(|| Skip::Invalid("inconsistent with nothing".into()))?;
                let evidence = Evidence {
                    format: EVIDENCE_FORMAT.into(),
                    node_id: self.peer.clone(),
                    found_unix: now_unix(),
                    reason: reason.clone(),
                    cosigned: last.note.clone(),
                    cosigned_log_key: last.log_key.clone(),
                    served: served.note.clone(),
                    served_log_key: served.log_key.clone(),
                    proof: proof
                        .as_ref()
                        .and_then(|p| p.as_ref().ok())
                        .map(|p| p.iter().map(hex::encode).collect()),
                    proof_refused: proof.and_then(|p| p.err()),
                };
                let kept = {
                    let state = self.state.clone();
                    tokio::task::spawn_blocking(move || state.witness.keep_evidence(&evidence))
                        .await
                        .map_err(|e| Skip::Invalid(format!("the witness's own state: {e}")))?
                        .map_err(stored)?
                };
                self.metrics.inconsistent.set([&self.peer], 1);
                tracing::error!(
                    peer = %self.peer,
                    cosigned_size = last.size,
                    served_size = served.checkpoint.size,
                    evidence = %kept.display(),
                    "witness: the audit log of {} is not the one this node cosigned: {reason}; \
                     no more of its checkpoints are cosigned until an operator acts",
                    self.peer
                );
                Ok("inconsistent")
            }
        }
    }
}

/// Whether `status` is the peer's own refusal of a consistency proof between the
/// sizes asked (the codes a node answers for tree sizes it does not have), as
/// opposed to a failure of the call.
pub(crate) fn is_refusal(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::OutOfRange | tonic::Code::InvalidArgument
    )
}

fn now_secs() -> i64 {
    i64::try_from(now_unix()).unwrap_or(i64::MAX)
}
