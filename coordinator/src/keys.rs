//! Key discovery: the coordinator learns keys from the nodes and trusts a manifest
//! only when at least `threshold` distinct participants attest it (the rule is in
//! [`crate::tally`]), and, while a refresh runs, which of its two epochs can sign.
//!
//! The directory is a cache, not state: any coordinator rebuilds it from the nodes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use quorate_keys::manifest::Manifest;
use quorate_transport::attest::StatementVerifier;
use quorate_wire::pb;

use crate::error::CoordError;
use crate::nodes::NodePool;
use crate::tally::{self, Decision, Epoch, Tally, Version};

/// A key the nodes agree on.
#[derive(Debug)]
pub struct KnownKey {
    /// The agreed manifest.
    pub manifest: Manifest,
    /// The participants' verified statements over it, one per attesting node:
    /// `GetPublicKey` hands them to clients.
    pub attestation: Vec<pb::Signed>,
    /// Participants never asked to sign it: those that reported a different
    /// manifest for this key id, and those the coordinator has no endpoint for.
    pub never_asked: HashSet<String>,
    /// A refresh's other epoch that can sign too (a version one generation from
    /// the served one, of the same group key, held committed or staged by at
    /// least its threshold of participants): empty unless a refresh is under way.
    pub other_epochs: Vec<SigningEpoch>,
}

/// A manifest of a key that requests may sign in, and whom not to ask.
#[derive(Debug)]
pub struct SigningEpoch {
    /// The epoch's manifest: its participants, identifiers, verifying shares
    /// and policy.
    pub manifest: Manifest,
    /// Participants that reported the key but hold no share of this manifest,
    /// and those the coordinator has no endpoint for.
    pub never_asked: HashSet<String>,
}

impl KnownKey {
    /// The epochs a request may sign in, in the order to try them: most
    /// reachable holders first, then the newer generation. One epoch is the served
    /// manifest; while a refresh runs, the other may be the generation before or
    /// after it.
    pub fn signing_epochs(&self, pool: &NodePool) -> Vec<(&Manifest, &HashSet<String>)> {
        // Every request asks: without a refresh under way there is nothing to order.
        if self.other_epochs.is_empty() {
            return vec![(&self.manifest, &self.never_asked)];
        }
        let mut epochs: Vec<(&Manifest, &HashSet<String>, usize)> = self
            .epochs()
            .map(|(m, never_asked)| (m, never_asked, reachable_in(m, never_asked, pool)))
            .collect();
        epochs.sort_by_key(|&(m, _, reachable)| signing_order(reachable, m.generation));
        epochs.into_iter().map(|(m, n, _)| (m, n)).collect()
    }

    /// Every epoch of the key, the served one first, with whom not to ask in it.
    fn epochs(&self) -> impl Iterator<Item = (&Manifest, &HashSet<String>)> {
        std::iter::once((&self.manifest, &self.never_asked)).chain(
            self.other_epochs
                .iter()
                .map(|e| (&e.manifest, &e.never_asked)),
        )
    }

    /// The policies of every epoch the coordinator knows for the key: the served
    /// manifest's and, while a refresh runs, the other epoch's. A node holding
    /// both shares enforces both, so the coordinator's own early checks do too.
    pub fn policies(&self) -> impl Iterator<Item = &quorate_keys::policy::Policy> {
        self.epochs().map(|(m, _)| &m.policy)
    }

    /// How many holders requests would ask now in the key's best epoch: those the
    /// coordinator may ask (not never asked) and that `pool` currently counts as
    /// available. Fewer than the threshold, and the key cannot sign.
    pub fn reachable_holders(&self, pool: &NodePool) -> usize {
        self.epochs()
            .map(|(m, never_asked)| reachable_in(m, never_asked, pool))
            .max()
            .unwrap_or_default()
    }
}

/// Where an epoch goes in the order requests try them: most reachable holders
/// first, then the newer generation, so that while a refresh is staged everywhere
/// its new shares sign (and show they can) before the old ones are deleted.
fn signing_order(reachable: usize, generation: u64) -> (Reverse<usize>, Reverse<u64>) {
    (Reverse(reachable), Reverse(generation))
}

/// The participants of `manifest` not in `never_asked` that `pool` counts as
/// available.
fn reachable_in(manifest: &Manifest, never_asked: &HashSet<String>, pool: &NodePool) -> usize {
    reachable_holders(manifest.participant_ids(), never_asked, |id| {
        pool.get(id).is_some_and(|node| node.is_available())
    })
}

/// The participants of `participants` that are not in `never_asked` and are
/// `available`.
fn reachable_holders<'a>(
    participants: impl IntoIterator<Item = &'a str>,
    never_asked: &HashSet<String>,
    available: impl Fn(&str) -> bool,
) -> usize {
    participants
        .into_iter()
        .filter(|id| !never_asked.contains(*id) && available(id))
        .count()
}

#[derive(Debug, Default)]
struct Snapshot {
    keys: BTreeMap<String, Arc<KnownKey>>,
    refreshed: Option<Instant>,
    /// When the last refresh began.
    started: Option<Instant>,
    /// Nodes that answered the last refresh.
    answered: usize,
}

/// Cache of agreed key manifests.
#[derive(Debug)]
pub struct KeyDirectory {
    pool: Arc<NodePool>,
    snapshot: RwLock<Snapshot>,
    /// Counts attested reports (only ever used under `refresh_lock`).
    tally: Mutex<Tally>,
    refresh_lock: tokio::sync::Mutex<()>,
    /// Whether a background refresh is running (at most one is).
    refreshing_in_background: AtomicBool,
    max_age: Duration,
    node_timeout: Duration,
}

impl KeyDirectory {
    /// An empty directory over `pool`, checking key attestations with `verifier`.
    pub fn new(
        pool: Arc<NodePool>,
        verifier: StatementVerifier,
        max_age: Duration,
        node_timeout: Duration,
    ) -> Self {
        Self {
            pool,
            tally: Mutex::new(Tally::new(verifier)),
            snapshot: RwLock::new(Snapshot::default()),
            refresh_lock: tokio::sync::Mutex::new(()),
            refreshing_in_background: AtomicBool::new(false),
            max_age,
            node_timeout,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Snapshot> {
        self.snapshot.read().unwrap_or_else(|p| p.into_inner())
    }

    fn age(&self) -> Option<Duration> {
        self.read().refreshed.map(|t| t.elapsed())
    }

    /// The key `key_id`. A known key is answered from the cache at once, and a stale
    /// cache refreshed in the background: a refresh waits for every node up to the
    /// node timeout, and with a node down every `Sign` in that window would wait
    /// too. An unknown key is looked up on the nodes first (it may be new).
    pub async fn get(self: &Arc<Self>, key_id: &str) -> Result<Arc<KnownKey>, CoordError> {
        let asked = Instant::now();
        let fresh = self.age().is_some_and(|a| a < self.max_age);
        let cached = self.read().keys.get(key_id).cloned();
        if let Some(key) = cached {
            if !fresh {
                self.refresh_in_background();
            }
            return Ok(key);
        }
        // An unknown key may have been created a moment ago: look again, unless a
        // refresh began after this request did (concurrent misses share one refresh).
        self.refresh_unless_since(asked).await;
        let snap = self.read();
        if let Some(key) = snap.keys.get(key_id) {
            return Ok(key.clone());
        }
        // Without a majority of nodes we cannot tell "no such key" from "its
        // holders are down".
        if snap.answered * 2 <= self.pool.len() {
            return Err(CoordError::NodesUnreachable(format!(
                "cannot resolve key {key_id:?}: only {} of {} nodes answered",
                snap.answered,
                self.pool.len()
            )));
        }
        Err(CoordError::UnknownKey(key_id.to_string()))
    }

    /// The key `key_id` as the nodes hold it now, for a request that found them
    /// moved on from the cached manifest ([`CoordError::KeyMovedOn`]): the nodes
    /// are read again unless a read began at or after `since` (concurrent requests
    /// share one).
    pub async fn reread(&self, key_id: &str, since: Instant) -> Result<Arc<KnownKey>, CoordError> {
        self.refresh_unless_since(since).await;
        self.read()
            .keys
            .get(key_id)
            .cloned()
            .ok_or_else(|| CoordError::UnknownKey(key_id.to_string()))
    }

    /// Every agreed key, refreshing if stale.
    pub async fn all(&self) -> Vec<Arc<KnownKey>> {
        self.refresh_if_older_than(self.max_age).await;
        self.cached()
    }

    /// The keys known now, without asking the nodes (for the metrics endpoint).
    pub fn cached(&self) -> Vec<Arc<KnownKey>> {
        self.read().keys.values().cloned().collect()
    }

    /// Starts a refresh of a stale cache on a task of its own, unless one is running.
    fn refresh_in_background(self: &Arc<Self>) {
        if self.refreshing_in_background.swap(true, Ordering::AcqRel) {
            return;
        }
        /// Clears the flag however the refresh ends (a panic, or the runtime
        /// shutting down), so that a later stale read starts another.
        struct Running(Arc<KeyDirectory>);
        impl Drop for Running {
            fn drop(&mut self) {
                self.0
                    .refreshing_in_background
                    .store(false, Ordering::Release);
            }
        }
        let running = Running(self.clone());
        tokio::spawn(async move {
            running.0.refresh_if_older_than(running.0.max_age).await;
        });
    }

    /// Refreshes unless a refresh started at or after `since`. Refreshes run one at a
    /// time, so callers asking for unknown keys cannot run more than one listing of
    /// the nodes at once.
    async fn refresh_unless_since(&self, since: Instant) {
        let _guard = self.refresh_lock.lock().await;
        if self.read().started.is_some_and(|s| s >= since) {
            return;
        }
        self.refresh().await;
    }

    async fn refresh_if_older_than(&self, max_age: Duration) {
        let _guard = self.refresh_lock.lock().await;
        // Another task may have refreshed while we waited for the lock.
        if self.age().is_some_and(|a| a < max_age) {
            return;
        }
        self.refresh().await;
    }

    /// Re-reads every node's manifests.
    async fn refresh(&self) {
        let started = Instant::now();
        let timeout = self.node_timeout;
        let answers = futures::future::join_all(self.pool.all().map(|node| async move {
            let mut req = tonic::Request::new(pb::ListNodeKeysRequest {});
            req.set_timeout(timeout);
            let result = tokio::time::timeout(timeout, node.client().list_node_keys(req)).await;
            match result {
                Ok(Ok(resp)) => {
                    node.record_answered();
                    Some((node.id.clone(), resp.into_inner()))
                }
                Ok(Err(status)) => {
                    tracing::warn!(node = %node.id, code = ?status.code(), "listing keys failed: {}", status.message());
                    node.record_status(&status);
                    None
                }
                Err(_) => {
                    tracing::warn!(node = %node.id, "listing keys timed out");
                    node.record_failure();
                    None
                }
            }
        }))
        .await;
        let answered = answers.iter().filter(|a| a.is_some()).count();
        let reports = self
            .tally
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .count(answers.into_iter().flatten().collect());
        let mut keys = BTreeMap::new();
        let previous = self.read().keys.clone();
        for (key_id, key_reports) in reports {
            let before = previous.get(&key_id);
            let (version, disagreeing, epochs) = match tally::decide(
                &key_id,
                key_reports,
                before.map(|k| &k.manifest),
            ) {
                Decision::Trust {
                    version,
                    disagreeing,
                    passed_over,
                    epochs,
                } => {
                    for reason in passed_over {
                        tracing::warn!(key_id = %key_id, "not serving this version of the key: {reason}");
                    }
                    (version, disagreeing, epochs)
                }
                Decision::Untrusted(reason) => {
                    tracing::warn!(key_id = %key_id, "not serving a new version of this key: {reason}");
                    // Keep a previously trusted manifest: its holders may just be down.
                    if let Some(prev) = before {
                        keys.insert(key_id, prev.clone());
                    }
                    continue;
                }
            };
            if !disagreeing.is_empty() {
                tracing::warn!(key_id = %key_id, nodes = ?disagreeing, "nodes do not attest the trusted manifest; excluded");
            }
            let Version {
                manifest,
                attestation,
                ..
            } = *version;
            // The pool is fixed for the coordinator's life, so which participants
            // it cannot reach is known here, once, not on every `Sign`.
            let never_asked = |manifest: &Manifest, disagreeing: HashSet<String>| {
                let without_endpoint = manifest
                    .participants
                    .iter()
                    .filter(|p| self.pool.get(&p.node_id).is_none())
                    .map(|p| p.node_id.clone());
                disagreeing.into_iter().chain(without_endpoint).collect()
            };
            let other_epochs: Vec<SigningEpoch> = epochs
                .into_iter()
                .map(
                    |Epoch {
                         manifest,
                         holders,
                         disagreeing,
                     }| {
                        let known_before = before.is_some_and(|k| {
                            k.other_epochs
                                .iter()
                                .any(|e| e.manifest.hash == manifest.hash)
                        });
                        if !known_before {
                            tracing::info!(
                                key_id = %key_id,
                                manifest_sha256 = %hex::encode(&manifest.hash[..8]),
                                generation = manifest.generation,
                                holders = ?holders,
                                "a refresh is under way: this epoch of the key can sign too"
                            );
                        }
                        SigningEpoch {
                            never_asked: never_asked(&manifest, disagreeing),
                            manifest,
                        }
                    },
                )
                .collect();
            keys.insert(
                key_id,
                Arc::new(KnownKey {
                    never_asked: never_asked(&manifest, disagreeing),
                    manifest,
                    attestation: attestation.into_values().collect(),
                    other_epochs,
                }),
            );
        }
        // Keys whose holders did not answer this time stay known.
        for (key_id, key) in previous {
            keys.entry(key_id).or_insert(key);
        }
        let mut snap = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        *snap = Snapshot {
            keys,
            refreshed: Some(Instant::now()),
            started: Some(started),
            answered,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_with_the_most_reachable_holders_signs_first_and_the_newer_on_a_tie() {
        // (reachable holders, generation)
        let mut epochs = vec![(3, 0), (5, 1), (4, 2)];
        epochs.sort_by_key(|&(reachable, generation)| signing_order(reachable, generation));
        assert_eq!(epochs, [(5, 1), (4, 2), (3, 0)]);
        let mut tie = vec![(5, 3), (5, 4)];
        tie.sort_by_key(|&(reachable, generation)| signing_order(reachable, generation));
        assert_eq!(tie, [(5, 4), (5, 3)]);
    }

    #[test]
    fn reachable_holders_leave_out_unavailable_and_never_asked_participants() {
        let never_asked: HashSet<String> = ["node-5".to_string()].into();
        let down = ["node-1", "node-2"];
        let all = ["node-1", "node-2", "node-3", "node-4", "node-5"];
        assert_eq!(
            reachable_holders(all, &never_asked, |id| !down.contains(&id)),
            2
        );
        assert_eq!(reachable_holders(all, &HashSet::new(), |_| true), 5);
        assert_eq!(reachable_holders(all, &HashSet::new(), |_| false), 0);
    }
}
