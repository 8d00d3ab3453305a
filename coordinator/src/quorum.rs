//! The quorum engine: gathers `t` signers for a key, runs both FROST rounds in
//! parallel, aggregates, and on any failure retries with another quorum until the
//! request deadline.
//!
//! Round 1 (`round1`) gathers commitments; round 2
//! ([`round2`](crate::round2)) sends the signing package and collects the shares;
//! this module picks the candidates, runs both, aggregates, and decides what a
//! failure means for the next attempt. A node whose signature share does not verify
//! is named a culprit and excluded for the rest of the request. Nonces of nodes left
//! out of a quorum are never used and expire on the node.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quorate_frost::{CryptoError, ParsedCommitments};
use quorate_keys::manifest::Manifest;
use quorate_transport::metrics::{Counter, CounterVec, Registry};
use quorate_wire::pb;

use crate::config::SigningSettings;
use crate::error::CoordError;
use crate::keys::KnownKey;
use crate::node_call::NodeFailure;
use crate::nodes::{NodeHandle, NodePool};
use crate::pool::CommitmentPool;
use crate::refusals::RateRefusals;
use crate::round1::{ask_commitments, pooled_answers};
use crate::round2::Round2;

/// Per-round wait for a node whose health record says it failed recently.
pub const SUSPECT_TIMEOUT: Duration = Duration::from_millis(300);

/// Who asked, for the nodes' records and checks.
#[derive(Clone, Debug)]
pub struct SignContext {
    /// Idempotency key or generated id.
    pub request_id: String,
    /// The client's signed intent, relayed to every node as the client sent it.
    pub intent: Option<pb::Signed>,
    /// An approval token the coordinator has verified; permits an out-of-policy
    /// quorum when no lawful one answers.
    pub approval_token: Option<Vec<u8>>,
}
pub use crate::metric;

/// A finished signature.
#[derive(Clone, Debug)]
pub struct Signed {
    /// Signature in the public API encoding.
    pub signature: Vec<u8>,
    /// The key's ciphersuite.
    pub ciphersuite: quorate_frost::Ciphersuite,
    /// Node ids whose shares make up the signature.
    pub signers: Vec<String>,
}

/// What the engine counts.
#[derive(Debug, Clone)]
struct EngineMetrics {
    retries: Counter,
    failovers: Counter,
    culprits: CounterVec<1>,
    policy_denials: CounterVec<1>,
    one_round: Counter,
}

impl EngineMetrics {
    fn new(registry: &Registry, pool: &NodePool) -> Self {
        let metrics = Self {
            retries: registry.counter(
                metric::RETRIES,
                "Signing attempts repeated with another quorum.",
            ),
            failovers: registry.counter(
                metric::FAILOVERS,
                "Signatures made by out-of-policy quorums under an approval token.",
            ),
            culprits: registry.counter_vec(
                metric::CULPRITS,
                "Nodes named as culprits (invalid signature shares).",
                ["node"],
            ),
            policy_denials: registry.counter_vec(
                metric::POLICY_DENIALS,
                "Requests refused by a key's policy.",
                ["reason"],
            ),
            one_round: registry.counter(
                metric::ONE_ROUND,
                "Signatures attempted with preprocessed commitments (one round trip).",
            ),
        };
        // Every node's culprit count exists from the start, at zero, so that
        // `increase()` sees a node's first culprit.
        for node in pool.all() {
            metrics.culprits.inc_by([&node.id], 0);
        }
        metrics
    }
}

/// Orders `candidates` so that the first `t` of them are the nearest lawful quorum:
/// the `min_home` preferred home-jurisdiction nodes, then every other node by
/// preference (healthy before failing, then by measured latency), home or not. A
/// home node beyond the policy's minimum does not go before a nearer foreign one,
/// so a far home node sits on no critical path a near lawful quorum can take. Among
/// equally preferred candidates home nodes go first (more home signers when it
/// costs nothing), then manifest order (the sort is stable).
fn nearest_lawful_first<T, K: Ord>(
    mut candidates: Vec<T>,
    is_home: impl Fn(&T) -> bool,
    preference: impl Fn(&T) -> K,
    min_home: usize,
) -> Vec<T> {
    candidates.sort_by_cached_key(|c| (preference(c), !is_home(c)));
    let mut home_taken = 0;
    let (mut first, rest): (Vec<T>, Vec<T>) = candidates.into_iter().partition(|c| {
        let take = home_taken < min_home && is_home(c);
        home_taken += usize::from(take);
        take
    });
    first.extend(rest);
    first
}

/// The candidates whose pooled commitments may make a one-round quorum: those
/// whose measured latency is at most twice that of the slowest of the first `t`
/// (the preferred quorum), since one round with a farther node takes longer than
/// two rounds with the preferred ones. When the preferred nodes' pools run dry
/// (under load, or while a refill waits on a lost packet), the request then signs
/// in two rounds with them instead of in one with a far node. While none of the
/// first `t` is measured yet (latency 0), every candidate stays.
fn within_one_round_reach<T: Copy>(
    candidates: &[T],
    t: usize,
    latency: impl Fn(&T) -> u64,
) -> Vec<T> {
    let bound = candidates.iter().take(t).map(&latency).max();
    match bound {
        Some(b) if b > 0 => candidates
            .iter()
            .filter(|c| latency(c) <= b.saturating_mul(2))
            .copied()
            .collect(),
        _ => candidates.to_vec(),
    }
}

/// Runs signing sessions.
#[derive(Debug)]
pub struct QuorumEngine {
    pool: Arc<NodePool>,
    settings: SigningSettings,
    metrics: EngineMetrics,
    commitments: Arc<CommitmentPool>,
    round2: Round2,
}

impl QuorumEngine {
    /// An engine over `pool`.
    pub fn new(pool: Arc<NodePool>, settings: SigningSettings, registry: &Registry) -> Self {
        let metrics = EngineMetrics::new(registry, &pool);
        let commitments = Arc::new(CommitmentPool::new(
            settings.preprocess_batch,
            Duration::from_secs(settings.preprocess_max_age_secs),
            settings.node_timeout(),
        ));
        let round2 = Round2::new(&pool, registry);
        Self {
            pool,
            settings,
            metrics,
            commitments,
            round2,
        }
    }

    /// How long to wait for `node` in one round: the configured timeout for a node in
    /// good health, [`SUSPECT_TIMEOUT`] for one that failed recently. A dead node is
    /// still tried (it may be back before its health record says so) but cannot
    /// hold a request up for long; a node that answers again gets its full timeout
    /// as soon as a call or health probe succeeds.
    fn node_timeout(&self, node: &NodeHandle) -> Duration {
        let full = self.settings.node_timeout();
        if node.is_available() {
            full
        } else {
            full.min(SUSPECT_TIMEOUT)
        }
    }

    /// The pool of preprocessed commitments.
    pub fn commitment_pool(&self) -> Arc<CommitmentPool> {
        self.commitments.clone()
    }

    /// Counts a policy refusal.
    pub fn count_denial(&self, reason: &str) {
        self.metrics.policy_denials.inc([reason]);
    }

    /// Signs `message` with `key` before `deadline`, within one of its epochs at a
    /// time (`KnownKey::signing_epochs`): first the one with the most reachable
    /// holders, then, while a refresh runs and that one found no (lawful) quorum,
    /// the other. So a node listing a share it does not hold costs a retry, not the
    /// signature. If no epoch finds a quorum and at least two nodes answered that
    /// they hold no share of an epoch's manifest, [`CoordError::KeyMovedOn`]: the
    /// directory is behind the nodes.
    pub async fn sign(
        &self,
        key: &KnownKey,
        message: &[u8],
        ctx: &SignContext,
        deadline: Instant,
    ) -> Result<Signed, CoordError> {
        let epochs = key.signing_epochs(&self.pool);
        let last = epochs.len().saturating_sub(1);
        let mut first_no_quorum = None;
        // Nodes that answered they hold no share of an epoch's manifest.
        let mut moved_on: HashSet<String> = HashSet::new();
        for (i, (manifest, never_asked)) in epochs.into_iter().enumerate() {
            match self
                .sign_in_epoch(manifest, never_asked, message, ctx, deadline, &mut moved_on)
                .await
            {
                // The other epoch may have other holders, and its own policy.
                Err(e @ (CoordError::NoQuorum { .. } | CoordError::NoLawfulQuorum(_))) => {
                    if i == last || Instant::now() >= deadline {
                        let e = first_no_quorum.unwrap_or(e);
                        // Two nodes at least: one node certificate cannot make the
                        // coordinator read every node again.
                        return Err(if moved_on.len() >= 2 {
                            CoordError::KeyMovedOn(format!(
                                "{e}; nodes hold no share of the manifest this coordinator knows for the key"
                            ))
                        } else {
                            e
                        });
                    }
                    tracing::info!(
                        key_id = %manifest.key_id,
                        generation = manifest.generation,
                        "no quorum in this epoch of the key; trying the refresh's other epoch: {e}"
                    );
                    first_no_quorum.get_or_insert(e);
                }
                other => return other,
            }
        }
        Err(CoordError::Internal(format!(
            "key {:?} has no epoch to sign in",
            key.manifest.key_id
        )))
    }

    /// Signs `message` with the shares of `manifest` (one epoch of a key), never
    /// asking the nodes in `never_asked`; adds to `moved_on` the nodes that answer
    /// that they hold no share of `manifest`.
    async fn sign_in_epoch(
        &self,
        manifest: &Manifest,
        never_asked: &HashSet<String>,
        message: &[u8],
        ctx: &SignContext,
        deadline: Instant,
        moved_on: &mut HashSet<String>,
    ) -> Result<Signed, CoordError> {
        let t = usize::from(manifest.threshold);
        let ops = manifest.ciphersuite.ops();
        // Nodes out of this request: never asked to sign in this epoch (another
        // manifest, no endpoint), failed a round, or named as culprits.
        let mut out: HashSet<String> = never_asked.clone();
        let mut attempt = 0u32;
        let mut rate_refusals = RateRefusals::default();
        let over_rate = |out: &HashSet<String>, rate_refusals: &RateRefusals, detail: &str| {
            let answer = rate_refusals.answer(
                &manifest.key_id,
                out,
                manifest.participants.len(),
                t,
                detail,
            );
            if answer.is_some() {
                self.count_denial("rate_limited");
            }
            answer
        };
        // A node that refuses the client's intent (for example one that expired
        // between the coordinator's check and the node's) refuses this request, not
        // the coordinator: it is left out of the request, its health and pool are
        // untouched, and if too few nodes remain the client hears why.
        let mut intent_refusal: Option<String> = None;
        let no_quorum = |out: &HashSet<String>,
                         rate_refusals: &RateRefusals,
                         intent_refusal: &Option<String>,
                         detail: String| {
            if let Some(why) = intent_refusal {
                return CoordError::Unauthenticated(why.clone());
            }
            if let Some(answer) = over_rate(out, rate_refusals, &detail) {
                return answer;
            }
            let detail = match rate_refusals.nodes.len() {
                0 => detail,
                n => format!("{detail}; {n} refused the client for its rate limit"),
            };
            CoordError::NoQuorum {
                key_id: manifest.key_id.clone(),
                answered: manifest.participants.len() - out.len().min(manifest.participants.len()),
                participants: manifest.participants.len(),
                needed: t,
                detail,
            }
        };
        let policy = &manifest.policy;
        let mut use_pool = self.commitments.enabled();
        let latency_band_us = self.settings.latency_band_ms.saturating_mul(1000);
        loop {
            attempt += 1;
            if attempt > 1 {
                self.metrics.retries.inc();
            }
            if Instant::now() >= deadline {
                return Err(no_quorum(
                    &out,
                    &rate_refusals,
                    &intent_refusal,
                    "; request deadline reached".into(),
                ));
            }
            let candidates: Vec<&Arc<NodeHandle>> = nearest_lawful_first(
                manifest
                    .participants
                    .iter()
                    .filter(|p| !out.contains(&p.node_id))
                    .filter_map(|p| self.pool.get(&p.node_id))
                    .collect(),
                |n| {
                    manifest
                        .participant(&n.id)
                        .is_some_and(|p| policy.is_home(&p.jurisdiction))
                },
                |n| {
                    // Latencies within one band count as equal: differences that
                    // small are jitter, not distance (on loopback every node is in
                    // the first 4 ms band; across regions EU, US and APAC nodes are
                    // bands apart).
                    let (standing, latency_us) = n.preference();
                    (standing, latency_us / latency_band_us)
                },
                usize::from(policy.min_home_signers),
            );
            if candidates.len() < t {
                return Err(no_quorum(
                    &out,
                    &rate_refusals,
                    &intent_refusal,
                    String::new(),
                ));
            }

            // One round when the pool holds commitments of a (lawful) quorum.
            let pooled = if use_pool {
                pooled_answers(
                    &self.commitments,
                    &within_one_round_reach(&candidates, t, |n| n.preference().1),
                    manifest,
                    t,
                    ctx.approval_token.is_some(),
                )
            } else {
                None
            };
            let from_pool = pooled.is_some();
            if from_pool {
                self.metrics.one_round.inc();
            }
            // Keep every available candidate's pool stocked: when the preferred
            // nodes' pools run low, quorums come from the others'. (A node being
            // skipped is refilled once it is tried again, after `RETRY_AFTER`.)
            for node in candidates.iter().filter(|n| n.is_available()) {
                self.commitments
                    .refill_if_low(node, &manifest.key_id, manifest.ciphersuite);
            }
            let (answered, selected) = match pooled {
                Some(found) => found,
                None => {
                    let (answered, selected) = ask_commitments(
                        &candidates,
                        manifest,
                        t,
                        self.settings.round1_extra,
                        ctx.approval_token.is_some(),
                        deadline,
                        |node| self.node_timeout(node),
                        attempt,
                        &mut out,
                    )
                    .await;
                    let Some(selected) = selected else {
                        if answered.len() >= t {
                            let home = answered.iter().filter(|a| a.home).count();
                            // If home nodes that refused the client for its rate are
                            // what the lawful quorum lacks, waiting is the remedy,
                            // not an approval.
                            let refused_home = rate_refusals.home_nodes(manifest);
                            if refused_home > 0
                                && home + refused_home >= usize::from(policy.min_home_signers)
                            {
                                if let Some(answer) = over_rate(&out, &rate_refusals, "") {
                                    return Err(answer);
                                }
                            }
                            self.count_denial("unlawful_quorum");
                            return Err(CoordError::NoLawfulQuorum(format!(
                        "no lawful quorum for key {:?}: the policy needs at least {} signers in {}, but only {home} of the {} nodes that answered are there; an approval token permits an out-of-policy quorum",
                        manifest.key_id,
                        policy.min_home_signers,
                        policy.home_jurisdictions.join("/"),
                        answered.len()
                    )));
                        }
                        continue;
                    };
                    (answered, selected)
                }
            };
            let quorum: Vec<(Arc<NodeHandle>, Vec<u8>)> = selected
                .iter()
                .map(|&i| (answered[i].node.clone(), answered[i].identifier.clone()))
                .collect();
            let commitments: BTreeMap<Vec<u8>, ParsedCommitments> = selected
                .iter()
                .map(|&i| {
                    (
                        answered[i].identifier.clone(),
                        answered[i].commitment.clone(),
                    )
                })
                .collect();
            let lawful = selected.iter().filter(|&&i| answered[i].home).count()
                >= usize::from(policy.min_home_signers);
            // The client's approval token goes to the nodes exactly as the client sent
            // it, lawful quorum or not: its intent covers the token's SHA-256, and a
            // node uses the token only for an out-of-policy quorum anyway.
            let approval_token = ctx.approval_token.clone().unwrap_or_default();

            // Round 2.
            let signing_package = ops
                .new_signing_package(&commitments, message)
                .map_err(|e| CoordError::Internal(format!("building signing package: {e}")))?;
            // Every signer gets the same request: the message and the commitments
            // as the nodes sent them.
            let round2 = pb::SignShareRequest {
                key_id: manifest.key_id.clone(),
                message: message.to_vec(),
                commitments: commitments
                    .iter()
                    .map(|(identifier, c)| pb::SignerCommitments {
                        identifier: identifier.clone(),
                        commitments: c.encoded().to_vec(),
                    })
                    .collect(),
                request_id: ctx.request_id.clone(),
                intent: ctx.intent.clone(),
                approval_token,
                // The epoch: every signer signs with its share of this manifest.
                manifest_hash: manifest.hash.to_vec(),
            };
            let shares = futures::future::join_all(quorum.iter().map(|(node, identifier)| {
                let until = deadline.min(Instant::now() + self.node_timeout(node));
                let request = round2.clone();
                async move {
                    let result = self.round2.sign_share(node, request, until).await;
                    (node.clone(), identifier.clone(), result)
                }
            }))
            .await;
            let mut share_map = BTreeMap::new();
            let mut round2_failed = false;
            for (node, identifier, result) in shares {
                match result {
                    Ok(share) => {
                        share_map.insert(identifier, share);
                    }
                    Err(NodeFailure::Refused(s)) if s.code() == tonic::Code::ResourceExhausted => {
                        // The client is over its rate at this node (a refusal of
                        // this one request, not of a whole call, which HTTP/2 can
                        // also end with this code). The node's other pooled
                        // commitments are still good: its pool stays.
                        round2_failed = true;
                        tracing::info!(node = %node.id, key_id = %manifest.key_id, attempt, "round 2 refused: {}", s.message());
                        out.insert(node.id.clone());
                        rate_refusals.record(&node.id, &s);
                    }
                    Err(NodeFailure::Refused(s)) if s.code() == tonic::Code::Unauthenticated => {
                        round2_failed = true;
                        tracing::info!(node = %node.id, key_id = %manifest.key_id, attempt, "round 2: the node refused the client's intent: {}", s.message());
                        out.insert(node.id.clone());
                        intent_refusal = Some(format!(
                            "node {} refused the client's intent: {}",
                            node.id,
                            s.message()
                        ));
                    }
                    Err(e)
                        if e.status()
                            .is_some_and(|s| s.code() == tonic::Code::NotFound) =>
                    {
                        // The node holds no share of this epoch's manifest: the key
                        // moved on since the directory read the nodes (a refresh
                        // committed or was rolled back), or the node lost it. Not
                        // a fault of its health, and its other pooled commitments
                        // are good.
                        round2_failed = true;
                        moved_on.insert(node.id.clone());
                        tracing::info!(node = %node.id, key_id = %manifest.key_id, generation = manifest.generation, attempt, "round 2: the node holds no share of this manifest: {e}");
                        out.insert(node.id.clone());
                    }
                    Err(e) => {
                        round2_failed = true;
                        self.commitments.clear_node(&node.id);
                        let refused_commitment = e
                            .status()
                            .is_some_and(|s| s.code() == tonic::Code::FailedPrecondition);
                        if from_pool && refused_commitment {
                            // The node no longer knows the pooled commitment (it
                            // restarted, or the nonce expired): not the node's fault.
                            // Retry with fresh commitments.
                            tracing::info!(node = %node.id, key_id = %manifest.key_id, "pooled commitment refused; falling back to two rounds");
                            use_pool = false;
                        } else {
                            tracing::warn!(node = %node.id, key_id = %manifest.key_id, attempt, "round 2 failed: {e}");
                            out.insert(node.id.clone());
                        }
                    }
                }
            }
            if round2_failed {
                continue;
            }
            match signing_package.aggregate(&share_map, &manifest.parsed_public_key_package) {
                Ok(signature) => {
                    if !lawful {
                        self.metrics.failovers.inc();
                    }
                    return Ok(Signed {
                        signature,
                        ciphersuite: manifest.ciphersuite,
                        signers: quorum.iter().map(|(n, _)| n.id.clone()).collect(),
                    });
                }
                Err(CryptoError::InvalidShares { culprits }) => {
                    for c in culprits {
                        if let Some(p) = manifest.participant_by_identifier(&c) {
                            tracing::warn!(node = %p.node_id, key_id = %manifest.key_id, "culprit: signature share does not verify; excluded");
                            self.metrics.culprits.inc([&p.node_id]);
                            if let Some(node) = self.pool.get(&p.node_id) {
                                node.record_culprit();
                            }
                            self.commitments.clear_node(&p.node_id);
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

#[cfg(test)]
mod tests {
    use super::{nearest_lawful_first, within_one_round_reach};

    /// `(name, home, latency ms)`.
    fn order(nodes: &[(&'static str, bool, u32)], min_home: usize) -> Vec<&'static str> {
        nearest_lawful_first(nodes.to_vec(), |n| n.1, |n| n.2, min_home)
            .into_iter()
            .map(|n| n.0)
            .collect()
    }

    #[test]
    fn a_far_home_node_beyond_the_minimum_does_not_go_before_a_near_foreign_one() {
        // Two EU signers needed: the two nearest EU nodes, then the nearest of the
        // rest, the US node, not the far EU one.
        let nodes = [
            ("eu-far", true, 120),
            ("us", false, 20),
            ("eu-near", true, 5),
            ("sg", false, 170),
            ("eu-mid", true, 30),
        ];
        assert_eq!(
            order(&nodes, 2),
            ["eu-near", "eu-mid", "us", "eu-far", "sg"]
        );
    }

    #[test]
    fn home_nodes_go_first_up_to_the_minimum_even_when_farther() {
        let nodes = [
            ("us", false, 2),
            ("sg", false, 3),
            ("eu-a", true, 40),
            ("eu-b", true, 50),
        ];
        assert_eq!(order(&nodes, 2), ["eu-a", "eu-b", "us", "sg"]);
    }

    #[test]
    fn among_equally_near_candidates_home_nodes_go_first_beyond_the_minimum() {
        let nodes = [
            ("us", false, 0),
            ("eu-1", true, 0),
            ("sg", false, 0),
            ("eu-2", true, 0),
            ("eu-3", true, 0),
        ];
        assert_eq!(order(&nodes, 2), ["eu-1", "eu-2", "eu-3", "us", "sg"]);
    }

    #[test]
    fn without_a_residency_policy_the_nearest_go_first_in_manifest_order_among_equals() {
        let nodes = [
            ("a", false, 9),
            ("b", true, 1),
            ("c", false, 9),
            ("d", false, 4),
        ];
        assert_eq!(order(&nodes, 0), ["b", "d", "a", "c"]);
    }

    #[test]
    fn a_far_nodes_pooled_commitment_is_out_of_reach_when_two_near_rounds_are_faster() {
        // Round trips in ms: the preferred quorum's slowest is 15, so 96 and 180
        // (one round) lose to 2 x 15 (two rounds with the preferred nodes).
        let nodes = [("a", 1), ("b", 15), ("c", 12), ("us", 96), ("sg", 180)];
        let reach: Vec<&str> = within_one_round_reach(&nodes, 3, |n| n.1)
            .iter()
            .map(|n| n.0)
            .collect();
        assert_eq!(reach, ["a", "b", "c"]);
        // A loaded preferred node (60) brings the US node within reach.
        let nodes = [("a", 1), ("b", 60), ("c", 12), ("us", 96), ("sg", 180)];
        assert_eq!(within_one_round_reach(&nodes, 3, |n| n.1).len(), 4);
        // Not measured yet: nobody is left out.
        let nodes = [("a", 0), ("b", 0), ("c", 0), ("us", 96)];
        assert_eq!(within_one_round_reach(&nodes, 3, |n| n.1).len(), 4);
    }
}
