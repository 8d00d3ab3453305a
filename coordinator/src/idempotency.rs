//! Idempotent `Sign`: a `request_id` seen before with the same message returns the
//! same response, with another message `ALREADY_EXISTS`. Concurrent duplicates wait
//! for the first one instead of signing twice.
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

#[derive(Debug)]
struct Inner<T> {
    entries: HashMap<String, ([u8; 32], Slot<T>)>,
    order: VecDeque<String>,
}

/// Bounded map from request id to response.
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

    /// The slot for `request_id`, created if new. `message_hash` binds the id to one
    /// message (and key); a different hash is `ALREADY_EXISTS`.
    pub fn slot(&self, request_id: &str, message_hash: [u8; 32]) -> Result<Slot<T>, CoordError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((hash, slot)) = inner.entries.get(request_id) {
            if *hash != message_hash {
                return Err(CoordError::RequestIdReused(request_id.to_string()));
            }
            return Ok(slot.clone());
        }
        let slot: Slot<T> = Arc::new(OnceCell::new());
        inner
            .entries
            .insert(request_id.to_string(), (message_hash, slot.clone()));
        inner.order.push_back(request_id.to_string());
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
        let a = cache.slot("r1", [1; 32]).unwrap();
        a.set(7).unwrap();
        assert_eq!(cache.slot("r1", [1; 32]).unwrap().get(), Some(&7));
        assert!(matches!(
            cache.slot("r1", [2; 32]),
            Err(CoordError::RequestIdReused(_))
        ));
    }

    #[test]
    fn cache_is_bounded() {
        let cache: IdempotencyCache<u32> = IdempotencyCache::new(2);
        for i in 0..5 {
            cache.slot(&format!("r{i}"), [0; 32]).unwrap();
        }
        // r0 was evicted, so it may be reused with another message.
        assert!(cache.slot("r0", [9; 32]).is_ok());
    }
}
