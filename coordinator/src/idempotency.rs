//! Idempotent `Sign`: a `request_id` seen before from the same client with the same
//! message returns the same response, with another message `ALREADY_EXISTS`.
//! Concurrent duplicates wait for the first one instead of signing twice.
//!
//! Request ids are scoped to the client that sent them (its mTLS identity): one
//! client's id can neither fetch another client's signature, which would skip the
//! key's client policy, nor be taken first to make the other's request fail.
//!
//! The cache is in memory and bounded (oldest entries dropped first); it is per
//! coordinator, so a caller that switches coordinators may get a second, equally
//! valid signature.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::error::CoordError;

/// A finished or in-flight request.
pub type Slot<T> = Arc<OnceCell<T>>;

/// A request id as the client that sent it.
type ClientRequest = (String, String);

#[derive(Debug)]
struct Inner<T> {
    entries: HashMap<ClientRequest, ([u8; 32], Slot<T>)>,
    order: VecDeque<ClientRequest>,
}

/// Bounded map from (client, request id) to response.
#[derive(Debug)]
pub struct IdempotencyCache<T> {
    inner: Mutex<Inner<T>>,
    capacity: usize,
}

impl<T> IdempotencyCache<T> {
    /// A cache of at most `capacity` request ids.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: VecDeque::new(),
            }),
            capacity,
        }
    }

    /// The slot for `client`'s `request_id`, created if new. `message_hash` binds the
    /// id to one message (and key); a different hash is `ALREADY_EXISTS`.
    pub fn slot(
        &self,
        client: &str,
        request_id: &str,
        message_hash: [u8; 32],
    ) -> Result<Slot<T>, CoordError> {
        let key = (client.to_string(), request_id.to_string());
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((hash, slot)) = inner.entries.get(&key) {
            if *hash != message_hash {
                return Err(CoordError::RequestIdReused(request_id.to_string()));
            }
            return Ok(slot.clone());
        }
        let slot: Slot<T> = Arc::new(OnceCell::new());
        inner
            .entries
            .insert(key.clone(), (message_hash, slot.clone()));
        inner.order.push_back(key);
        while inner.order.len() > self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.entries.remove(&old);
            }
        }
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_id_same_message_shares_a_slot_and_other_message_is_refused() {
        let cache: IdempotencyCache<u32> = IdempotencyCache::new(10);
        let a = cache.slot("alice", "r1", [1; 32]).unwrap();
        a.set(7).unwrap();
        assert_eq!(cache.slot("alice", "r1", [1; 32]).unwrap().get(), Some(&7));
        assert!(matches!(
            cache.slot("alice", "r1", [2; 32]),
            Err(CoordError::RequestIdReused(_))
        ));
    }

    #[test]
    fn request_ids_are_scoped_to_their_client() {
        let cache: IdempotencyCache<u32> = IdempotencyCache::new(10);
        cache.slot("alice", "r1", [1; 32]).unwrap().set(7).unwrap();
        // Another client with the same id and message gets a slot of its own, not
        // alice's answer; with another message it is not refused either.
        assert_eq!(cache.slot("bob", "r1", [1; 32]).unwrap().get(), None);
        assert!(cache.slot("carol", "r1", [2; 32]).is_ok());
        assert_eq!(cache.slot("alice", "r1", [1; 32]).unwrap().get(), Some(&7));
    }

    #[test]
    fn cache_is_bounded() {
        let cache: IdempotencyCache<u32> = IdempotencyCache::new(2);
        for i in 0..5 {
            cache.slot("alice", &format!("r{i}"), [0; 32]).unwrap();
        }
        // r0 was evicted, so it may be reused with another message.
        assert!(cache.slot("alice", "r0", [9; 32]).is_ok());
    }
}
