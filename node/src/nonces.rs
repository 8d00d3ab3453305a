//! Single-use signing nonces, in memory only.
//!
//! A nonce is reachable only through the commitment it was issued with, and
//! [`NonceStore::take`] removes it: nothing can sign with it twice. Nonces expire after
//! a TTL (swept on every insert, take and count, so that expired secrets do not stay
//! in memory when calls stop) and the store is bounded; a restart forgets them all,
//! so a crash can never replay one.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use quorate_frost::SecretNonces;

type CommitmentId = [u8; 32];

#[derive(Debug)]
struct Entry {
    nonces: SecretNonces,
    issued: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    live: HashMap<CommitmentId, Entry>,
    /// Issue order, for expiry and eviction; may hold ids already taken.
    order: VecDeque<CommitmentId>,
}

impl Inner {
    /// Drops, from the front of the issue order, ids already taken and nonces that
    /// have expired, and beyond `max` the oldest nonces. Nonces are issued in order
    /// (each stamped under the lock), so the expired ones are all at the front: this
    /// stops at the first live one: one lookup when nothing expired.
    fn sweep(&mut self, now: Instant, ttl: Duration, max: usize) {
        while let Some(front) = self.order.front().copied() {
            let expired_or_gone = match self.live.get(&front) {
                None => true,
                Some(e) => now.duration_since(e.issued) >= ttl,
            };
            if expired_or_gone || self.live.len() > max {
                self.order.pop_front();
                self.live.remove(&front);
            } else {
                break;
            }
        }
    }
}

/// Outstanding nonces by commitment.
#[derive(Debug)]
pub struct NonceStore {
    inner: Mutex<Inner>,
    max: usize,
    ttl: Duration,
}

fn commitment_id(key_id: &str, commitments: &[u8]) -> CommitmentId {
    let mut buf = Vec::with_capacity(key_id.len() + 1 + commitments.len());
    buf.extend_from_slice(key_id.as_bytes());
    buf.push(0);
    buf.extend_from_slice(commitments);
    quorate_wire::sha256(&buf)
}

impl NonceStore {
    /// A store holding at most `max` nonces, each usable for `ttl`.
    pub fn new(max: usize, ttl: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max,
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a nonce half-taken (removal is
        // one HashMap operation), so the data is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the nonces behind `commitments` (for key `key_id`).
    pub fn insert(&self, key_id: &str, commitments: &[u8], nonces: SecretNonces) {
        let id = commitment_id(key_id, commitments);
        let mut inner = self.lock();
        // Stamped under the lock, so that issue times follow the issue order.
        let now = Instant::now();
        inner.live.insert(
            id,
            Entry {
                nonces,
                issued: now,
            },
        );
        inner.order.push_back(id);
        inner.sweep(now, self.ttl, self.max);
        // Taken ids deeper in the queue are compacted away now and then.
        if inner.order.len() > 2 * self.max.max(inner.live.len()) {
            let Inner { live, order } = &mut *inner;
            order.retain(|id| live.contains_key(id));
        }
    }

    /// Removes and returns the unexpired nonces issued with `commitments` for
    /// `key_id`. `None` if they were never issued here, already used, or expired.
    pub fn take(&self, key_id: &str, commitments: &[u8]) -> Option<SecretNonces> {
        let id = commitment_id(key_id, commitments);
        let mut inner = self.lock();
        // Round 2 sweeps too: should Commit calls stop, expired secret nonces would
        // otherwise stay in memory until the next one.
        let now = Instant::now();
        inner.sweep(now, self.ttl, self.max);
        let entry = inner.live.remove(&id)?;
        drop(inner);
        (now.duration_since(entry.issued) < self.ttl).then_some(entry.nonces)
    }

    /// Unexpired nonces outstanding (expired ones are swept first, so that neither
    /// memory nor the pool-size gauge, which reads this, keeps them).
    pub fn len(&self) -> usize {
        let mut inner = self.lock();
        inner.sweep(Instant::now(), self.ttl, self.max);
        inner.live.len()
    }

    /// Whether no nonce is outstanding.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_frost::Ciphersuite;

    fn nonces() -> (SecretNonces, Vec<u8>) {
        let names = vec!["a".to_string(), "b".to_string()];
        let ops = Ciphersuite::Ed25519.ops();
        let dealt = ops.split(None, &names, 2).unwrap();
        let kp = ops.parse_key_package(&dealt.key_packages[0].1).unwrap();
        ops.commit(&kp).unwrap()
    }

    #[test]
    fn a_nonce_can_be_taken_only_once() {
        let store = NonceStore::new(10, Duration::from_secs(60));
        let (n, c) = nonces();
        store.insert("k", &c, n);
        assert!(store.take("k", &c).is_some());
        assert!(store.take("k", &c).is_none());
    }

    #[test]
    fn a_nonce_is_bound_to_its_key() {
        let store = NonceStore::new(10, Duration::from_secs(60));
        let (n, c) = nonces();
        store.insert("k", &c, n);
        assert!(store.take("other", &c).is_none());
        assert!(store.take("k", &c).is_some());
    }

    #[test]
    fn expired_nonces_are_refused() {
        let store = NonceStore::new(10, Duration::from_millis(1));
        let (n, c) = nonces();
        store.insert("k", &c, n);
        std::thread::sleep(Duration::from_millis(5));
        assert!(store.take("k", &c).is_none());
    }

    #[test]
    fn store_is_bounded_dropping_the_oldest() {
        let store = NonceStore::new(3, Duration::from_secs(60));
        let mut issued = Vec::new();
        for _ in 0..5 {
            let (n, c) = nonces();
            store.insert("k", &c, n);
            issued.push(c);
        }
        assert_eq!(store.len(), 3);
        assert!(store.take("k", &issued[0]).is_none());
        assert!(store.take("k", &issued[4]).is_some());
    }

    /// A store holding three nonces that have just expired.
    fn store_with_expired_nonces() -> NonceStore {
        let ttl = Duration::from_millis(200);
        let store = NonceStore::new(10, ttl);
        for _ in 0..3 {
            let (n, c) = nonces();
            store.insert("k", &c, n);
        }
        std::thread::sleep(ttl + Duration::from_millis(50));
        store
    }

    #[test]
    fn expired_nonces_are_swept_without_a_further_insert() {
        let store = store_with_expired_nonces();
        assert_eq!(store.len(), 0);
        assert!(store.lock().live.is_empty());
    }

    #[test]
    fn a_take_sweeps_expired_nonces() {
        let store = store_with_expired_nonces();
        // A round 2 for a commitment this store never issued.
        assert!(store.take("k", b"unknown").is_none());
        assert!(
            store.lock().live.is_empty(),
            "expired nonces left in memory"
        );
    }

    #[test]
    fn unexpired_nonces_survive_a_sweep() {
        let store = NonceStore::new(10, Duration::from_secs(60));
        let (n, c) = nonces();
        store.insert("k", &c, n);
        assert_eq!(store.len(), 1);
        assert!(store.take("k", b"unknown").is_none());
        assert!(store.take("k", &c).is_some());
        assert_eq!(store.len(), 0);
    }
}
