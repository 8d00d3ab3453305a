//! Round 1: gathering `t` commitments for a key, from the pools of preprocessed
//! commitments (one-round signing) or by asking the nodes, and picking a quorum from
//! the answers that the key's policy accepts. Used by the quorum engine.
//!
//! Round 1 asks `t + round1_extra` nodes and proceeds with the first `t` answers, so a
//! slow node does not stall the request; a node that fails is replaced by the next
//! candidate.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use quorate_frost::ParsedCommitments;
use quorate_keys::manifest::Manifest;
use quorate_keys::policy::Policy;
use quorate_wire::pb;

use crate::node_call::{call, NodeFailure};
use crate::nodes::{NodeHandle, Standing};
use crate::pool::CommitmentPool;

/// A round-1 answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) node: Arc<NodeHandle>,
    pub(crate) identifier: Vec<u8>,
    pub(crate) commitment: ParsedCommitments,
    pub(crate) home: bool,
}

/// The order in which round 1 asks the candidates (indices into `standings`, the
/// candidates' standings in preference order), and how many it asks at once: `t`
/// and `extra` spares (hedging: the first `t` lawful answers win), all from the
/// available nodes while there are enough of them. A node going away, a skipped or a
/// quarantined node is in the first wave only when too few others are available (in
/// that order), since a fast answer from it would be taken as readily as any,
/// and a node quarantined for bad shares would spoil the quorum again; the later
/// waves, in the same order, still reach it if the first finds no lawful quorum.
pub(crate) fn round1_order(standings: &[Standing], t: usize, extra: usize) -> (Vec<usize>, usize) {
    let with = |standing: Standing| (0..standings.len()).filter(move |&i| standings[i] == standing);
    let mut order: Vec<usize> = with(Standing::Available).take(t + extra).collect();
    for i in with(Standing::GoingAway)
        .chain(with(Standing::Skipped))
        .chain(with(Standing::Quarantined))
    {
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
pub(crate) fn select_quorum(
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

/// Takes pooled commitments from available candidates until they hold a quorum
/// [`select_quorum`] accepts; the unused ones go back. `None` (and everything put
/// back) if the pools cannot make one.
pub(crate) fn pooled_answers(
    commitments: &CommitmentPool,
    candidates: &[&Arc<NodeHandle>],
    manifest: &quorate_keys::manifest::Manifest,
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
        let Some(pooled) = commitments.take(&node.id, &manifest.key_id) else {
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
            commitments.put_back(&a.node.id, &manifest.key_id, pooled);
        }
    }
    selected.map(|s| (answers, s))
}

/// Asks the candidates for commitments, `t` and `extra` spares at once, then the
/// next candidate for each that fails, then all the rest if those answered without
/// a quorum [`select_quorum`] accepts. Returns the answers and the chosen quorum (if
/// any); a node that failed or is not a participant is added to `out`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn ask_commitments(
    candidates: &[&Arc<NodeHandle>],
    manifest: &Manifest,
    t: usize,
    extra: usize,
    approved: bool,
    deadline: Instant,
    node_timeout: impl Fn(&NodeHandle) -> Duration,
    attempt: u32,
    out: &mut HashSet<String>,
) -> (Vec<Answer>, Option<Vec<usize>>) {
    let ops = manifest.ciphersuite.ops();
    let policy = &manifest.policy;
    let mut answered: Vec<Answer> = Vec::with_capacity(candidates.len());
    let mut selected: Option<Vec<usize>> = None;
    let mut next = 0;
    let mut pending = FuturesUnordered::new();
    let standings: Vec<Standing> = candidates.iter().map(|n| n.standing()).collect();
    let (order, first_wave) = round1_order(&standings, t, extra);
    let candidates: Vec<&Arc<NodeHandle>> = order.into_iter().map(|i| candidates[i]).collect();
    let ask = |node: &Arc<NodeHandle>| {
        let node = node.clone();
        let key_id = manifest.key_id.clone();
        let node_timeout = node_timeout(&node);
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
                NodeFailure::Status(tonic::Status::internal("no commitment returned"))
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
                selected = select_quorum(&answered, t, policy, approved);
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
    (answered, selected)
}

#[cfg(test)]
mod tests {
    use super::*;

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
