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

use quorate_proto::pb;
use quorate_proto::suite::{Ciphersuite, ParsedCommitments};

use crate::nodes::NodeHandle;

type PoolKey = (String, String);

#[derive(Debug)]
struct Pooled {
    commitment: ParsedCommitments,
    fetched: Instant,
}

/// Pools of commitments per (node, key).
#[derive(Debug)]
pub struct CommitmentPool {
    pools: Mutex<HashMap<PoolKey, VecDeque<Pooled>>>,
    refilling: Mutex<HashSet<PoolKey>>,
    /// Commitments fetched per refill call (0 disables one-round signing). A pool
    /// is refilled when it holds less than one batch, so a whole batch is still in
    /// stock while the next one is made, and holds at most three.
    batch: u32,
    /// Pooled commitments older than this are dropped (well inside the nodes' nonce
    /// lifetime).
    max_age: Duration,
    node_timeout: Duration,
}

impl CommitmentPool {
    /// A pool refilled `batch` at a time, keeping commitments for at most
    /// `max_age`.
    pub fn new(batch: u32, max_age: Duration, node_timeout: Duration) -> Self {
        Self {
            pools: Mutex::new(HashMap::new()),
            refilling: Mutex::new(HashSet::new()),
            batch,
            max_age,
            node_timeout,
        }
    }

    /// Whether one-round signing is on.
    pub fn enabled(&self) -> bool {
        self.batch > 0
    }

    fn pools(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, VecDeque<Pooled>>> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one unexpired commitment of `node` for `key_id`.
    pub fn take(&self, node: &str, key_id: &str) -> Option<ParsedCommitments> {
        let mut pools = self.pools();
        let pool = pools.get_mut(&(node.to_string(), key_id.to_string()))?;
        while let Some(p) = pool.pop_front() {
            if p.fetched.elapsed() < self.max_age {
                return Some(p.commitment);
            }
        }
        None
    }

    /// Returns a commitment taken but not used (it is still valid on the node).
    pub fn put_back(&self, node: &str, key_id: &str, commitment: ParsedCommitments) {
        self.pools()
            .entry((node.to_string(), key_id.to_string()))
            .or_default()
            .push_front(Pooled {
                commitment,
                fetched: Instant::now(),
            });
    }

    /// Forgets every commitment of `node` (it restarted or failed).
    pub fn clear_node(&self, node: &str) {
        self.pools().retain(|(n, _), _| n != node);
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
        let low = self
            .pools()
            .get(&key)
            .is_none_or(|p| p.len() < self.batch as usize);
        if !low
            || !self
                .refilling
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone())
        {
            return;
        }
        let this = self.clone();
        let node = node.clone();
        tokio::spawn(async move {
            let mut req = tonic::Request::new(pb::CommitRequest {
                key_id: key.1.clone(),
                count: this.batch,
            });
            req.set_timeout(this.node_timeout);
            let started = Instant::now();
            let result = tokio::time::timeout(this.node_timeout, node.client().commit(req)).await;
            match result {
                Ok(Ok(resp)) => {
                    node.record_success(started.elapsed());
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
                        Ok(Ok(decoded)) => {
                            let mut pools = this.pools();
                            let pool = pools.entry(key.clone()).or_default();
                            pool.extend(decoded.into_iter().map(|commitment| Pooled {
                                commitment,
                                fetched,
                            }));
                            // Bounded: a pool never grows past three batches.
                            let cap = 3 * this.batch as usize;
                            while pool.len() > cap {
                                pool.pop_front();
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(node = %node.id, key_id = %key.1, "node sent commitments that do not decode: {e}");
                            node.record_failure();
                        }
                        Err(e) => tracing::warn!("commitment decoding task failed: {e}"),
                    }
                }
                Ok(Err(status)) => {
                    tracing::debug!(node = %node.id, "commitment refill failed: {}", status.message());
                    node.record_failure();
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
