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
use quorate_proto::metrics::Registry;
use quorate_proto::pb;
use quorate_proto::policy::Policy;
use quorate_proto::suite::{CryptoError, ParsedCommitments};
use tokio::time::timeout_at;

use crate::config::SigningSettings;
use crate::error::CoordError;
use crate::keys::KnownKey;
use crate::nodes::{answered_by_node, NodeHandle, NodePool, Standing};
use crate::pool::CommitmentPool;
use crate::round2::Round2;

/// Per-round wait for a node whose health record says it failed recently.
pub const SUSPECT_TIMEOUT: Duration = Duration::from_millis(300);

/// Who asked, for the nodes' records and checks.
#[derive(Clone, Debug)]
pub struct SignContext {
    /// Idempotency key or generated id.
    pub request_id: String,
    /// Caller's SPIFFE id.
    pub client_id: String,
    /// An approval token the coordinator has verified; permits an out-of-policy
    /// quorum when no lawful one answers.
    pub approval_token: Option<Vec<u8>>,
}

/// Metric names of the coordinator.
pub mod metric {
    /// Requests by RPC.
    pub const REQUESTS: &str = "quorate_coordinator_requests_total";
    /// Failed requests by RPC and gRPC code.
    pub const ERRORS: &str = "quorate_coordinator_errors_total";
    /// End-to-end `Sign` latency.
    pub const SIGN_LATENCY: &str = "quorate_coordinator_sign_seconds";
    /// Signing attempts repeated with another quorum.
    pub const RETRIES: &str = "quorate_coordinator_quorum_retries_total";
    /// Culprits by node.
    pub const CULPRITS: &str = "quorate_coordinator_culprits_total";
    /// Requests refused by a key's policy, by reason.
    pub const POLICY_DENIALS: &str = "quorate_coordinator_policy_denials_total";
    /// Signatures made by out-of-policy quorums under an approval token.
    pub const FAILOVERS: &str = "quorate_coordinator_failovers_total";
    /// Signatures attempted with preprocessed commitments (one round trip).
    pub const ONE_ROUND: &str = "quorate_coordinator_one_round_total";
    /// Commitments pooled for one-round signing.
    pub const POOLED_COMMITMENTS: &str = "quorate_coordinator_pooled_commitments";
    /// Whether each node is currently used (1) or skipped (0).
    pub const NODE_AVAILABLE: &str = "quorate_coordinator_node_available";
    /// `SignShares` batches sent to nodes.
    pub const SHARE_CALLS: &str = "quorate_coordinator_share_calls_total";
    /// Round-2 requests those batches carried (over `SHARE_CALLS`: shares per batch).
    pub const SHARE_REQUESTS: &str = "quorate_coordinator_share_requests_total";
}

/// A round-1 answer.
#[derive(Debug)]
struct Answer {
    node: Arc<NodeHandle>,
    identifier: Vec<u8>,
    commitment: ParsedCommitments,
    home: bool,
}

/// The order in which round 1 asks the candidates (indices into `standings`, the
/// candidates' standings in preference order), and how many it asks at once: `t`
/// and `extra` spares (hedging: the first `t` lawful answers win), all from the
/// available nodes while there are enough of them. A skipped or quarantined node is
/// in the first wave only when too few others are available (skipped ones before
/// quarantined ones), since a fast answer from it would be taken as readily as any,
/// and a node quarantined for bad shares would spoil the quorum again; the later
/// waves, in the same order, still reach it if the first finds no lawful quorum.
fn round1_order(standings: &[Standing], t: usize, extra: usize) -> (Vec<usize>, usize) {
    let with = |standing: Standing| (0..standings.len()).filter(move |&i| standings[i] == standing);
    let mut order: Vec<usize> = with(Standing::Available).take(t + extra).collect();
    for i in with(Standing::Skipped).chain(with(Standing::Quarantined)) {
        if order.len() >= t {
            break;
        }
        order.push(i);
    }
    let wave = order.len();
    let rest: Vec<usize> = (0..standings.len())
        .filter(|i| !order.contains(i))
        .collect();
    order.extend(rest);
    (order, wave)
}

/// Picks `t` of the answers forming a lawful quorum (at least the policy's minimum
/// of home signers), or any `t` when an approval permits an out-of-policy quorum.
fn select_quorum(
    answers: &[Answer],
    t: usize,
    policy: &Policy,
    approved: bool,
) -> Option<Vec<usize>> {
    if answers.len() < t {
        return None;
    }
    let need = usize::from(policy.min_home_signers).min(t);
    let home: Vec<usize> = (0..answers.len()).filter(|&i| answers[i].home).collect();
    if home.len() >= need {
        let mut chosen: Vec<usize> = home[..need].to_vec();
        for i in 0..answers.len() {
            if chosen.len() == t {
                break;
            }
            if !chosen.contains(&i) {
                chosen.push(i);
            }
        }
        return Some(chosen);
    }
    approved.then(|| (0..t).collect())
}

/// A finished signature.
#[derive(Clone, Debug)]
pub struct Signed {
    /// Signature in the public API encoding.
    pub signature: Vec<u8>,
    /// The key's ciphersuite.
    pub ciphersuite: quorate_proto::suite::Ciphersuite,
    /// Node ids whose shares make up the signature.
    pub signers: Vec<String>,
}

/// Runs signing sessions.
#[derive(Debug)]
pub struct QuorumEngine {
    pool: Arc<NodePool>,
    settings: SigningSettings,
    metrics: Arc<Registry>,
    commitments: Arc<CommitmentPool>,
    round2: Round2,
}

/// Why a node dropped out of this request.
#[derive(Clone, Debug)]
pub(crate) enum NodeFailure {
    Timeout,
    /// The call failed as a whole: the connection, the stream, or the node's
    /// answer to the call (which may stand for a whole batch of requests).
    Status(tonic::Status),
    /// The node answered this one request of a round-2 batch with an error.
    Refused(tonic::Status),
}

impl NodeFailure {
    /// The node's status, if it gave one.
    fn status(&self) -> Option<&tonic::Status> {
        match self {
            NodeFailure::Timeout => None,
            NodeFailure::Status(s) | NodeFailure::Refused(s) => Some(s),
        }
    }
}

impl std::fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status() {
            None => f.write_str("timed out"),
            Some(s) => write!(f, "{:?}: {}", s.code(), s.message()),
        }
    }
}

/// The nodes that refused a request's client for its rate limit in round 2.
///
/// A refusal does not end the request: each node counts the client's signatures
/// itself, another quorum may still be willing, and one node must not be able to
/// stop signing. But when the request runs out of nodes because of them, the
/// client is told so (`RESOURCE_EXHAUSTED`, with the time to retry), not
/// `UNAVAILABLE`, which clients retry at once.
#[derive(Debug, Default)]
struct RateRefusals {
    nodes: HashSet<String>,
    /// The last refusal: its node and message (which says when to retry).
    last: Option<(String, String)>,
}

impl RateRefusals {
    fn record(&mut self, node: &str, status: &tonic::Status) {
        self.nodes.insert(node.to_string());
        self.last = Some((node.to_string(), status.message().to_string()));
    }

    /// How many of the refusing nodes are in the home jurisdictions of the key
    /// `manifest` describes.
    fn home_nodes(&self, manifest: &quorate_proto::manifest::Manifest) -> usize {
        self.nodes
            .iter()
            .filter(|n| {
                manifest
                    .participant(n)
                    .is_some_and(|p| manifest.policy.is_home(&p.jurisdiction))
            })
            .count()
    }

    /// The answer to a request for `key_id` that ran out of nodes (`out` of
    /// `participants`, `t` needed), if these refusals are why: with the refusing
    /// nodes back, at least `t` would be left. `detail` says more ("; request
    /// deadline reached").
    fn answer(
        &self,
        key_id: &str,
        out: &HashSet<String>,
        participants: usize,
        t: usize,
        detail: &str,
    ) -> Option<CoordError> {
        let (node, message) = self.last.as_ref()?;
        let out_otherwise = out.iter().filter(|n| !self.nodes.contains(*n)).count();
        (participants.saturating_sub(out_otherwise) >= t).then(|| {
            CoordError::ResourceExhausted(format!(
                "no quorum for key {key_id:?} within the client's rate limit{detail}: node \
                 {node} refused: {message}"
            ))
        })
    }
}

/// Whether `status` is a transport failure (tonic's `UNAVAILABLE` with an I/O
/// cause), not an answer of the node.
pub(crate) fn failed_in_transport(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable && !answered_by_node(status)
}

/// Calls a node once, and once more if the first attempt failed in the transport
/// before reaching the node (a reused connection to a node that restarted fails its
/// first call; the second attempt reconnects). Retrying is safe for both rounds: a
/// commitment that never reached the node was never made, and a round-2 request that
/// did reach it has consumed its nonce, so a repeat is refused.
pub(crate) async fn call<T, Fut>(
    node: &NodeHandle,
    deadline: Instant,
    node_timeout: Duration,
    make: impl Fn() -> Fut,
) -> Result<T, NodeFailure>
where
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let started = Instant::now();
    let until = deadline.min(started + node_timeout);
    let mut transport_retry = true;
    loop {
        match timeout_at(until.into(), make()).await {
            Ok(Ok(resp)) => {
                node.record_success(started.elapsed());
                return Ok(resp.into_inner());
            }
            Ok(Err(status)) => {
                if failed_in_transport(&status) && transport_retry {
                    transport_retry = false;
                    continue;
                }
                node.record_status(&status);
                return Err(NodeFailure::Status(status));
            }
            Err(_) => {
                node.record_failure();
                return Err(NodeFailure::Timeout);
            }
        }
    }
}

impl QuorumEngine {
    /// An engine over `pool`.
    pub fn new(pool: Arc<NodePool>, settings: SigningSettings, metrics: Arc<Registry>) -> Self {
        for (name, help) in [
            (
                metric::RETRIES,
                "Signing attempts repeated with another quorum.",
            ),
            (
                metric::FAILOVERS,
                "Signatures made by out-of-policy quorums under an approval token.",
            ),
            (
                metric::CULPRITS,
                "Nodes named as culprits (invalid signature shares).",
            ),
            (
                metric::POLICY_DENIALS,
                "Requests refused by a key's policy.",
            ),
        ] {
            metrics.declare_counter(name, help);
        }
        let commitments = Arc::new(CommitmentPool::new(
            settings.preprocess_batch,
            Duration::from_secs(settings.preprocess_max_age_secs),
            settings.node_timeout(),
        ));
        let round2 = Round2::new(&pool, metrics.clone());
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

    /// Takes pooled commitments from available candidates until they hold a quorum
    /// [`select_quorum`] accepts; the unused ones go back. `None` (and everything put
    /// back) if the pools cannot make one.
    fn pooled_answers(
        &self,
        candidates: &[&Arc<NodeHandle>],
        manifest: &quorate_proto::manifest::Manifest,
        t: usize,
        approved: bool,
    ) -> Option<(Vec<Answer>, Vec<usize>)> {
        let mut answers = Vec::new();
        // What was taken from the pools, in `answers` order: the unused go back as
        // they were, age included.
        let mut taken = Vec::new();
        let mut selected = None;
        for node in candidates.iter().filter(|n| n.is_available()) {
            let Some(p) = manifest.participant(&node.id) else {
                continue;
            };
            let Some(pooled) = self.commitments.take(&node.id, &manifest.key_id) else {
                continue;
            };
            answers.push(Answer {
                node: (*node).clone(),
                identifier: p.identifier.clone(),
                commitment: pooled.commitment.clone(),
                home: manifest.policy.is_home(&p.jurisdiction),
            });
            taken.push(pooled);
            selected = select_quorum(&answers, t, &manifest.policy, approved);
            if selected.is_some() {
                break;
            }
        }
        let keep: HashSet<usize> = selected.iter().flatten().copied().collect();
        for (i, (a, pooled)) in answers.iter().zip(taken).enumerate() {
            if !keep.contains(&i) {
                self.commitments
                    .put_back(&a.node.id, &manifest.key_id, pooled);
            }
        }
        selected.map(|s| (answers, s))
    }

    /// Counts a policy refusal.
    pub fn count_denial(&self, reason: &str) {
        self.metrics.inc(
            metric::POLICY_DENIALS,
            "Requests refused by a key's policy.",
            &[("reason", reason)],
            1,
        );
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
        // Nodes out of this request: never asked to sign the key (a different
        // manifest, no endpoint), failed a round, or named as culprits.
        let mut out: HashSet<String> = key.never_asked.clone();
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
        let no_quorum = |out: &HashSet<String>, rate_refusals: &RateRefusals, detail: String| {
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
        loop {
            attempt += 1;
            if attempt > 1 {
                self.metrics.inc(
                    metric::RETRIES,
                    "Signing attempts repeated with another quorum.",
                    &[],
                    1,
                );
            }
            if Instant::now() >= deadline {
                return Err(no_quorum(
                    &out,
                    &rate_refusals,
                    "; request deadline reached".into(),
                ));
            }
            let mut candidates: Vec<&Arc<NodeHandle>> = manifest
                .participants
                .iter()
                .filter(|p| !out.contains(&p.node_id))
                .filter_map(|p| self.pool.get(&p.node_id))
                .collect();
            // Home-jurisdiction nodes first when the policy needs them, then healthy
            // and fast ones; the stable sort keeps manifest order among equals.
            candidates.sort_by_cached_key(|n| {
                let home = manifest
                    .participant(&n.id)
                    .is_some_and(|p| policy.is_home(&p.jurisdiction));
                (policy.constrains_quorums() && !home, n.preference())
            });
            if candidates.len() < t {
                return Err(no_quorum(&out, &rate_refusals, String::new()));
            }

            // One round when the pool holds commitments of a (lawful) quorum.
            let pooled = if use_pool {
                self.pooled_answers(&candidates, manifest, t, ctx.approval_token.is_some())
            } else {
                None
            };
            let from_pool = pooled.is_some();
            if from_pool {
                self.metrics.inc(
                    metric::ONE_ROUND,
                    "Signatures attempted with preprocessed commitments (one round trip).",
                    &[],
                    1,
                );
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
                    // Round 1.
                    let mut answered: Vec<Answer> = Vec::with_capacity(candidates.len());
                    let mut selected: Option<Vec<usize>> = None;
                    let mut next = 0;
                    let mut pending = FuturesUnordered::new();
                    let standings: Vec<Standing> =
                        candidates.iter().map(|n| n.standing()).collect();
                    let (order, first_wave) =
                        round1_order(&standings, t, self.settings.round1_extra);
                    let candidates: Vec<&Arc<NodeHandle>> =
                        order.into_iter().map(|i| candidates[i]).collect();
                    let ask = |node: &Arc<NodeHandle>| {
                        let node = node.clone();
                        let key_id = manifest.key_id.clone();
                        let node_timeout = self.node_timeout(&node);
                        async move {
                            let result = call(&node, deadline, node_timeout, || {
                                let mut client = node.client();
                                let mut req = tonic::Request::new(pb::CommitRequest {
                                    key_id: key_id.clone(),
                                    count: 1,
                                });
                                req.set_timeout(node_timeout);
                                async move { client.commit(req).await }
                            })
                            .await;
                            (node, result)
                        }
                    };
                    while next < first_wave {
                        pending.push(ask(candidates[next]));
                        next += 1;
                    }
                    while let Some((node, result)) = pending.next().await {
                        let commitment = result.and_then(|r| {
                            let encoded = r.commitments.into_iter().next().ok_or_else(|| {
                                NodeFailure::Status(tonic::Status::internal(
                                    "no commitment returned",
                                ))
                            })?;
                            // A commitment that does not decode disqualifies its node,
                            // not the request.
                            ops.parse_commitments(&encoded).map_err(|e| {
                                NodeFailure::Status(tonic::Status::internal(format!(
                                    "the node's commitment does not decode: {e}"
                                )))
                            })
                        });
                        let participant = manifest.participant(&node.id);
                        match (commitment, participant) {
                            (Ok(commitment), Some(p)) => {
                                answered.push(Answer {
                                    home: policy.is_home(&p.jurisdiction),
                                    identifier: p.identifier.clone(),
                                    node,
                                    commitment,
                                });
                                selected = select_quorum(
                                    &answered,
                                    t,
                                    policy,
                                    ctx.approval_token.is_some(),
                                );
                                if selected.is_some() {
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
                        // Everyone asked has answered without a lawful quorum: ask the rest.
                        if pending.is_empty() {
                            while next < candidates.len() {
                                pending.push(ask(candidates[next]));
                                next += 1;
                            }
                        }
                    }
                    drop(pending);
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
                            return Err(CoordError::FailedPrecondition(format!(
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
            // Nodes see the approval only when they need it: an out-of-policy quorum.
            let approval_token = if lawful {
                Vec::new()
            } else {
                ctx.approval_token.clone().unwrap_or_default()
            };

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
                client_id: ctx.client_id.clone(),
                approval_token,
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
                        self.metrics.inc(
                            metric::FAILOVERS,
                            "Signatures made by out-of-policy quorums under an approval token.",
                            &[],
                            1,
                        );
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
                            self.metrics.inc(
                                metric::CULPRITS,
                                "Nodes named as culprits (invalid signature shares).",
                                &[("node", &p.node_id)],
                                1,
                            );
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
    use super::*;

    #[test]
    fn rate_refusals_answer_only_when_they_are_what_the_quorum_lacks() {
        let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
        let refused = tonic::Status::resource_exhausted("over the limit; retry in 12 s");
        let mut refusals = RateRefusals::default();
        // None yet: a request short of nodes is UNAVAILABLE as ever.
        assert!(refusals
            .answer("k", &set(&["a", "b", "c"]), 5, 3, "")
            .is_none());

        refusals.record("a", &refused);
        // 3-of-5, `a` over the rate and two nodes down: with `a` the quorum was there.
        let answer = refusals
            .answer("k", &set(&["a", "d", "e"]), 5, 3, "")
            .unwrap();
        assert_eq!(answer.code(), tonic::Code::ResourceExhausted);
        assert!(answer.to_string().contains("node a refused"), "{answer}");
        assert!(answer.to_string().contains("retry in 12 s"), "{answer}");
        // Three nodes down: no quorum even with `a`, so the nodes' absence is the answer.
        assert!(refusals
            .answer("k", &set(&["a", "c", "d", "e"]), 5, 3, "")
            .is_none());
    }

    #[test]
    fn round_one_spares_come_only_from_available_nodes() {
        use Standing::{Available as A, Quarantined as Q, Skipped as S};
        // 3-of-5, one spare, all available: four asked, in order.
        assert_eq!(
            round1_order(&[A, A, A, A, A], 3, 1),
            (vec![0, 1, 2, 3, 4], 4)
        );
        // A quarantined node ranked early (a home node of a residency policy) is
        // passed over while four others are available, and asked last.
        assert_eq!(
            round1_order(&[A, A, Q, A, A], 3, 1),
            (vec![0, 1, 3, 4, 2], 4)
        );
        // 2-of-3 with one node quarantined: the two others, not the third as a spare.
        assert_eq!(round1_order(&[A, Q, A], 2, 1), (vec![0, 2, 1], 2));
        // Too few available: skipped nodes fill the quorum before quarantined ones.
        assert_eq!(round1_order(&[Q, A, S, S], 3, 1), (vec![1, 2, 3, 0], 3));
        assert_eq!(round1_order(&[Q, A, S], 3, 1), (vec![1, 2, 0], 3));
        // Never more than there are candidates.
        assert_eq!(round1_order(&[A, A, A], 3, 2), (vec![0, 1, 2], 3));
    }
}
