//! A bound on the `Sign` requests each client identity has in flight.
//!
//! Every in-flight request holds nodes' nonces, a quorum's attention and memory until
//! its deadline. Without a bound, one client (buggy or hostile) could open thousands
//! of concurrent requests and starve every other client. A request over the bound is
//! refused at once (`RESOURCE_EXHAUSTED`) rather than queued, so the coordinator
//! holds no queue that could grow without limit. The table holds only clients with
//! requests in flight.

use std::collections::HashMap;
use std::sync::Mutex;

/// Counts in-flight requests per client.
#[derive(Debug)]
pub struct InFlightLimiter {
    limit: usize,
    counts: Mutex<HashMap<String, usize>>,
}

/// One admitted request; its slot is released on drop (also when the request's
/// future is cancelled because the caller went away).
#[derive(Debug)]
pub struct InFlightPermit<'a> {
    limiter: &'a InFlightLimiter,
    client: String,
}

impl InFlightLimiter {
    /// At most `limit` concurrent requests per client.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// The configured bound.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Admits one more request for `client`, or `None` when it already has `limit`.
    pub fn try_acquire(&self, client: &str) -> Option<InFlightPermit<'_>> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(client.to_string()).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(InFlightPermit {
            limiter: self,
            client: client.to_string(),
        })
    }

    /// Requests `client` has in flight.
    pub fn in_flight(&self, client: &str) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(client).copied().unwrap_or(0)
    }
}

impl Drop for InFlightPermit<'_> {
    fn drop(&mut self) {
        let mut counts = self
            .limiter
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_bounded_per_client_and_released_on_drop() {
        let limiter = InFlightLimiter::new(2);
        let a1 = limiter.try_acquire("a").unwrap();
        let _a2 = limiter.try_acquire("a").unwrap();
        assert!(limiter.try_acquire("a").is_none());
        // Another client is not affected.
        let _b = limiter.try_acquire("b").unwrap();
        drop(a1);
        assert_eq!(limiter.in_flight("a"), 1);
        assert!(limiter.try_acquire("a").is_some());
    }

    #[test]
    fn idle_clients_leave_no_entry() {
        let limiter = InFlightLimiter::new(1);
        drop(limiter.try_acquire("a").unwrap());
        assert!(limiter.counts.lock().unwrap().is_empty());
    }
}
