//! Preprocessed round-1 commitments, for one-round signing.
//!
//! FROST lets signers publish commitments ahead of time (RFC 9591, section 5.1). The
//! coordinator keeps a bounded pool of them per node and key, refilled in the
//! background in batches; a `Sign` whose quorum all have pooled commitments needs a
//! single round trip (round 2). The nonces stay on the nodes, single use and
//! expiring: a pooled commitment that a node no longer knows (it restarted, or the
//! nonce expired) is refused by the node, and the coordinator drops that node's pool
//! and falls back to two rounds.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quorate_frost::{Ciphersuite, ParsedCommitments};
use quorate_wire::pb;

use crate::nodes::NodeHandle;

type PoolKey = (String, String);

/// Most commitments pooled for one node across all its keys. Without a bound, a
/// coordinator serving many keys would hold up to three batches per node and key,
/// and each node keeps the nonces behind them (its own bound, `nonces.max_outstanding`,
/// 100 000 by default, is shared by every coordinator): past it the node evicts
/// nonces the coordinator still pools, and signatures fall back to two rounds anyway.
/// At the bound a key's pool is not refilled and that key signs in two rounds until
/// commitments are used or expire.
pub const MAX_POOLED_PER_NODE: usize = 8192;

/// How long a node found at its budget is taken to stay there before it is counted
/// again.
const BUDGET_RECOUNT: Duration = Duration::from_secs(1);

/// A pooled commitment and when its batch was fetched. A commitment taken but not
/// used goes back with its age: the node's nonce behind it ages all the same.
#[derive(Clone, Debug)]
pub struct PooledCommitment {
    pub commitment: ParsedCommitments,
    fetched: Instant,
}

/// Pools of commitments per (node, key).
#[derive(Debug)]
pub struct CommitmentPool {
    pools: Mutex<HashMap<PoolKey, VecDeque<PooledCommitment>>>,
    refilling: Mutex<HashSet<PoolKey>>,
    /// Nodes last found at their budget, and when.
    full_since: Mutex<HashMap<String, Instant>>,
    /// How many times each node's pools were cleared: a refill asked for before a
    /// clear (say, answered by the node's previous process) is not stocked after it.
    /// Taken after `pools` when both are held.
    clears: Mutex<HashMap<String, u64>>,
    /// Commitments fetched per refill call (0 disables one-round signing). A pool
    /// is refilled when it holds less than one batch, so a whole batch is still in
    /// stock while the next one is made, and holds at most three.
    batch: u32,
    /// Pooled commitments older than this are dropped (well inside the nodes' nonce
    /// lifetime).
    max_age: Duration,
    /// At most this many commitments pooled per node, all keys together.
    max_per_node: usize,
    /// How long a node found at its budget is not counted again.
    recount_after: Duration,
    node_timeout: Duration,
}

impl CommitmentPool {
    /// A pool refilled `batch` at a time, keeping commitments for at most
    /// `max_age`.
    pub fn new(batch: u32, max_age: Duration, node_timeout: Duration) -> Self {
        Self::with_node_budget(
            batch,
            max_age,
            node_timeout,
            MAX_POOLED_PER_NODE,
            BUDGET_RECOUNT,
        )
    }

    /// As [`Self::new`], with at most `max_per_node` commitments pooled per node,
    /// recounted at most every `recount_after` once reached.
    fn with_node_budget(
        batch: u32,
        max_age: Duration,
        node_timeout: Duration,
        max_per_node: usize,
        recount_after: Duration,
    ) -> Self {
        Self {
            pools: Mutex::new(HashMap::new()),
            refilling: Mutex::new(HashSet::new()),
            full_since: Mutex::new(HashMap::new()),
            clears: Mutex::new(HashMap::new()),
            batch,
            max_age,
            max_per_node,
            recount_after,
            node_timeout,
        }
    }

    /// Whether one-round signing is on.
    pub fn enabled(&self) -> bool {
        self.batch > 0
    }

    fn pools(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, VecDeque<PooledCommitment>>> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one unexpired commitment of `node` for `key_id`.
    pub fn take(&self, node: &str, key_id: &str) -> Option<PooledCommitment> {
        let mut pools = self.pools();
        let pool = pools.get_mut(&(node.to_string(), key_id.to_string()))?;
        self.drop_expired(pool);
        pool.pop_front()
    }

    /// Returns a commitment taken but not used, to the front of its pool (it is the
    /// oldest there, as it was when taken).
    pub fn put_back(&self, node: &str, key_id: &str, pooled: PooledCommitment) {
        self.pools()
            .entry((node.to_string(), key_id.to_string()))
            .or_default()
            .push_front(pooled);
    }

    /// Drops the expired commitments at the front of `pool`. A pool is filled at the
    /// back and commitments go back to the front with their age, so the oldest are
    /// always in front.
    fn drop_expired(&self, pool: &mut VecDeque<PooledCommitment>) {
        self.drop_expired_at(pool, Instant::now());
    }

    fn drop_expired_at(&self, pool: &mut VecDeque<PooledCommitment>, now: Instant) {
        while pool
            .front()
            .is_some_and(|p| now.duration_since(p.fetched) >= self.max_age)
        {
            pool.pop_front();
        }
    }

    /// Adds a fetched batch to the back of a pool, keeping at most three batches.
    /// Nothing is stocked if the node's pools were cleared since the batch was asked
    /// for (`clears_when_asked`, from [`Self::clears`]).
    fn stock(
        &self,
        key: &PoolKey,
        batch: Vec<ParsedCommitments>,
        fetched: Instant,
        clears_when_asked: u64,
    ) {
        let mut pools = self.pools();
        if self.clears(&key.0) != clears_when_asked {
            return;
        }
        let pool = pools.entry(key.clone()).or_default();
        pool.extend(batch.into_iter().map(|commitment| PooledCommitment {
            commitment,
            fetched,
        }));
        let cap = 3 * self.batch as usize;
        while pool.len() > cap {
            pool.pop_front();
        }
    }

    /// Whether a pool holds less than one batch of unexpired commitments.
    fn is_low(&self, key: &PoolKey) -> bool {
        let mut pools = self.pools();
        let Some(pool) = pools.get_mut(key) else {
            return true;
        };
        self.drop_expired(pool);
        pool.len() < self.batch as usize
    }

    /// Whether another batch for `node` fits its budget ([`MAX_POOLED_PER_NODE`]),
    /// counting the batches already on their way (`refilling`, the refills
    /// running). Counting sweeps the node's pools: expired commitments are dropped
    /// and empty pools (keys no longer signed) forgotten, so neither holds the
    /// budget. A node found without room is not counted again for a second: every
    /// `Sign` asks, and counting walks every pool.
    fn has_room(&self, node: &str, refilling: &HashSet<PoolKey>) -> bool {
        let now = Instant::now();
        let mut full = self.full_since.lock().unwrap_or_else(|p| p.into_inner());
        if full
            .get(node)
            .is_some_and(|t| now.duration_since(*t) < self.recount_after)
        {
            return false;
        }
        let mut pooled = 0;
        self.pools().retain(|(n, _), pool| {
            if n != node {
                return true;
            }
            self.drop_expired_at(pool, now);
            pooled += pool.len();
            !pool.is_empty()
        });
        let on_their_way = refilling.iter().filter(|(n, _)| n == node).count();
        let room = pooled + (on_their_way + 1) * self.batch as usize <= self.max_per_node;
        if room {
            full.remove(node);
        } else {
            full.insert(node.to_string(), now);
        }
        room
    }

    /// Forgets every commitment of `node` (it restarted or failed).
    pub fn clear_node(&self, node: &str) {
        let mut pools = self.pools();
        pools.retain(|(n, _), _| n != node);
        *self
            .clears
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(node.to_string())
            .or_default() += 1;
    }

    /// How many times `node`'s pools were cleared.
    fn clears(&self, node: &str) -> u64 {
        self.clears
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .copied()
            .unwrap_or(0)
    }

    /// Commitments pooled in all.
    pub fn len(&self) -> usize {
        self.pools().values().map(VecDeque::len).sum()
    }

    /// Whether nothing is pooled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts a background refill of `node`'s pool for `key_id` (a key of `suite`)
    /// if it is low and no refill is running. The commitments are decoded as they
    /// arrive, so a signature that uses them decodes nothing on its way.
    pub fn refill_if_low(
        self: &Arc<Self>,
        node: &Arc<NodeHandle>,
        key_id: &str,
        suite: Ciphersuite,
    ) {
        if !self.enabled() {
            return;
        }
        let key = (node.id.clone(), key_id.to_string());
        if !self.is_low(&key) {
            return;
        }
        {
            let mut refilling = self.refilling.lock().unwrap_or_else(|p| p.into_inner());
            // The budget is counted only for a refill that would start: counting
            // walks every pool.
            if refilling.contains(&key) || !self.has_room(&node.id, &refilling) {
                return;
            }
            refilling.insert(key.clone());
        }
        let clears_when_asked = self.clears(&node.id);
        let this = self.clone();
        let node = node.clone();
        tokio::spawn(async move {
            let mut req = tonic::Request::new(pb::CommitRequest {
                key_id: key.1.clone(),
                count: this.batch,
            });
            req.set_timeout(this.node_timeout);
            let result = tokio::time::timeout(this.node_timeout, node.client().commit(req)).await;
            match result {
                Ok(Ok(resp)) => {
                    node.record_answered();
                    let fetched = Instant::now();
                    let encoded = resp.into_inner().commitments;
                    // A batch is milliseconds of point decoding: off the async workers.
                    let decoded = tokio::task::spawn_blocking(move || {
                        let ops = suite.ops();
                        encoded
                            .iter()
                            .map(|c| ops.parse_commitments(c))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .await;
                    match decoded {
                        Ok(Ok(decoded)) => this.stock(&key, decoded, fetched, clears_when_asked),
                        Ok(Err(e)) => {
                            tracing::warn!(node = %node.id, key_id = %key.1, "node sent commitments that do not decode: {e}");
                            node.record_failure();
                        }
                        Err(e) => tracing::warn!("commitment decoding task failed: {e}"),
                    }
                }
                Ok(Err(status)) => {
                    tracing::debug!(node = %node.id, "commitment refill failed: {}", status.message());
                    node.record_status(&status);
                }
                Err(_) => node.record_failure(),
            }
            this.refilling
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_AGE: Duration = Duration::from_secs(60);

    /// `count` real commitments of one Ed25519 signer.
    fn commitments(count: usize) -> Vec<ParsedCommitments> {
        let ops = Ciphersuite::Ed25519.ops();
        let names: Vec<String> = (1..=3).map(|i| format!("node-{i}")).collect();
        let dealt = ops.split(None, &names, 2).expect("split");
        let key_package = ops
            .parse_key_package(&dealt.key_packages[0].1)
            .expect("key package");
        (0..count)
            .map(|_| {
                let (_, encoded) = ops.commit(&key_package).expect("commit");
                ops.parse_commitments(&encoded).expect("decode")
            })
            .collect()
    }

    fn key() -> PoolKey {
        ("node-1".into(), "k".into())
    }

    fn ago(age: Duration) -> Instant {
        Instant::now().checked_sub(age).expect("uptime")
    }

    #[test]
    fn a_commitment_put_back_keeps_its_age() {
        let pool = CommitmentPool::new(4, MAX_AGE, Duration::from_secs(1));
        // Fetched just inside the pool's lifetime.
        pool.stock(
            &key(),
            commitments(1),
            ago(MAX_AGE - Duration::from_millis(50)),
            0,
        );
        let taken = pool.take("node-1", "k").expect("unexpired");
        pool.put_back("node-1", "k", taken);
        std::thread::sleep(Duration::from_millis(100));
        // Now past it: the node's nonce behind it has aged as well, so the pool must
        // not hand it out again as if it were fresh.
        assert!(pool.take("node-1", "k").is_none());
    }

    #[test]
    fn expired_commitments_do_not_count_as_stock() {
        let pool = CommitmentPool::new(2, MAX_AGE, Duration::from_secs(1));
        pool.stock(
            &key(),
            commitments(3),
            ago(MAX_AGE + Duration::from_secs(1)),
            0,
        );
        assert!(
            pool.is_low(&key()),
            "three expired commitments are no stock"
        );
        assert!(pool.is_empty(), "and they are dropped");
        pool.stock(&key(), commitments(2), Instant::now(), 0);
        assert!(!pool.is_low(&key()));
    }

    #[test]
    fn a_node_budget_bounds_pooling_across_keys_and_expired_stock_frees_it() {
        let pool =
            CommitmentPool::with_node_budget(2, MAX_AGE, Duration::from_secs(1), 5, Duration::ZERO);
        let of = |node: &str, key: &str| (node.to_string(), key.to_string());
        let none = HashSet::new();
        pool.stock(&of("node-1", "a"), commitments(2), Instant::now(), 0);
        pool.stock(&of("node-1", "b"), commitments(2), Instant::now(), 0);
        pool.stock(&of("node-2", "a"), commitments(2), Instant::now(), 0);
        // Four pooled for node-1: another batch of two would pass its five.
        assert!(!pool.has_room("node-1", &none));
        assert!(pool.has_room("node-2", &none), "the budget is per node");
        // A batch on its way counts as pooled.
        assert!(!pool.has_room("node-2", &HashSet::from([of("node-2", "b")])));
        // Using commitments frees the budget.
        pool.take("node-1", "a").expect("stocked");
        assert!(pool.has_room("node-1", &none));
        // So does expiry, and the expired key's pool is forgotten with its stock.
        pool.stock(
            &of("node-1", "c"),
            commitments(2),
            ago(MAX_AGE + Duration::from_secs(1)),
            0,
        );
        pool.stock(&of("node-1", "a"), commitments(2), Instant::now(), 0);
        assert!(!pool.has_room("node-1", &none), "five unexpired for node-1");
        pool.take("node-1", "b").expect("stocked");
        pool.take("node-1", "b").expect("stocked");
        assert!(pool.has_room("node-1", &none));
        let pools = pool.pools();
        assert!(
            !pools.contains_key(&of("node-1", "c")) && !pools.contains_key(&of("node-1", "b")),
            "empty pools are forgotten"
        );
    }

    #[test]
    fn a_batch_asked_for_before_its_node_was_cleared_is_not_stocked() {
        let pool = CommitmentPool::new(2, MAX_AGE, Duration::from_secs(1));
        let asked = pool.clears("node-1");
        // The node restarted meanwhile: its pools are cleared, and the batch its
        // previous process sent is for nonces the new one does not have.
        pool.clear_node("node-1");
        pool.stock(&key(), commitments(2), Instant::now(), asked);
        assert!(pool.is_empty());
        pool.stock(
            &key(),
            commitments(2),
            Instant::now(),
            pool.clears("node-1"),
        );
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn a_node_at_its_budget_is_not_recounted_on_every_request() {
        let pool = CommitmentPool::with_node_budget(
            2,
            MAX_AGE,
            Duration::from_secs(1),
            3,
            Duration::from_secs(60),
        );
        let key = key();
        pool.stock(&key, commitments(2), Instant::now(), 0);
        assert!(!pool.has_room("node-1", &HashSet::new()));
        // Room now, but the node is taken to be full until the recount.
        pool.take("node-1", "k").expect("stocked");
        pool.take("node-1", "k").expect("stocked");
        assert!(!pool.has_room("node-1", &HashSet::new()));
    }

    #[test]
    fn a_pool_holds_at_most_three_batches_and_hands_out_the_oldest_first() {
        let pool = CommitmentPool::new(2, MAX_AGE, Duration::from_secs(1));
        let first = commitments(3);
        let oldest_kept = first[1].encoded().to_vec();
        pool.stock(&key(), first, ago(Duration::from_secs(2)), 0);
        for age in [1, 0] {
            pool.stock(&key(), commitments(2), ago(Duration::from_secs(age)), 0);
        }
        // Seven stocked, the oldest one dropped.
        assert_eq!(pool.len(), 6);
        let taken = pool.take("node-1", "k").expect("stocked");
        assert_eq!(taken.commitment.encoded(), &oldest_kept[..]);
    }
}
