//! Per-client rate limiting: at most `limit` signatures per key and client in any
//! one-minute window (fixed windows). Memory is bounded: idle entries are dropped.
//!
//! The coordinator counts requests ([`RateLimiter::check`]): each `Sign` costs
//! capacity, whatever it asks for. A node counts messages
//! ([`RateLimiter::check_message`]): what its limit bounds is which messages its key
//! share signs in a client's name, so a message it has signed for the client this
//! window costs nothing again. That keeps the coordinator's retries free: when a
//! quorum fails (a node down, a corrupt share) and the coordinator asks again with
//! another, the nodes of the first quorum that signed already are not charged twice
//! for the one signature the client gets. A second share of a message signed
//! already gives no one anything new.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
const PRUNE_ABOVE: usize = 10_000;
/// Messages remembered per key and client as counted in the current window. A
/// retry follows its first attempt within one request's deadline, so it finds its
/// message among the client's latest; one older than these is counted again, which
/// errs towards the limit. Bounds the memory per entry (32 bytes each).
const REMEMBERED_MESSAGES: usize = 32;

/// One key and client's current window.
#[derive(Debug)]
struct Window {
    start: Instant,
    counted: u32,
    /// SHA-256 of the messages counted lately ([`RateLimiter::check_message`]).
    recent: VecDeque<[u8; 32]>,
}

/// Counts signatures per (key, client).
#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<(String, String), Window>>,
}

impl RateLimiter {
    /// A limiter with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request; `Err(retry_after)` if it exceeds `limit` per minute.
    /// A `limit` of 0 means unlimited.
    pub fn check(&self, key_id: &str, client: &str, limit: u32) -> Result<(), Duration> {
        self.count(key_id, client, limit, None)
    }

    /// Counts a signature of the message whose SHA-256 is `message_sha256`, unless
    /// one of it was counted for this key and client in the current window;
    /// `Err(retry_after)` if it exceeds `limit` per minute. A `limit` of 0 means
    /// unlimited.
    pub fn check_message(
        &self,
        key_id: &str,
        client: &str,
        limit: u32,
        message_sha256: [u8; 32],
    ) -> Result<(), Duration> {
        self.count(key_id, client, limit, Some(message_sha256))
    }

    fn count(
        &self,
        key_id: &str,
        client: &str,
        limit: u32,
        message_sha256: Option<[u8; 32]>,
    ) -> Result<(), Duration> {
        if limit == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > PRUNE_ABOVE {
            windows.retain(|_, w| now.duration_since(w.start) < WINDOW);
        }
        let window = windows
            .entry((key_id.to_string(), client.to_string()))
            .or_insert_with(|| Window {
                start: now,
                counted: 0,
                recent: VecDeque::new(),
            });
        if now.duration_since(window.start) >= WINDOW {
            window.start = now;
            window.counted = 0;
            window.recent.clear();
        }
        if message_sha256.is_some_and(|m| window.recent.contains(&m)) {
            return Ok(());
        }
        if window.counted >= limit {
            return Err(WINDOW.saturating_sub(now.duration_since(window.start)));
        }
        window.counted += 1;
        if let Some(m) = message_sha256 {
            if window.recent.len() == REMEMBERED_MESSAGES {
                window.recent.pop_front();
            }
            window.recent.push_back(m);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_applies_per_key_and_client() {
        let r = RateLimiter::new();
        assert!(r.check("k", "a", 2).is_ok());
        assert!(r.check("k", "a", 2).is_ok());
        assert!(r.check("k", "a", 2).is_err());
        assert!(r.check("k", "b", 2).is_ok());
        assert!(r.check("k2", "a", 2).is_ok());
        assert!(r.check("k", "a", 0).is_ok());
    }

    #[test]
    fn requests_count_every_time_messages_once() {
        let r = RateLimiter::new();
        assert!(r.check("k", "a", 1).is_ok());
        assert!(r.check("k", "a", 1).is_err());

        let (m1, m2) = ([1; 32], [2; 32]);
        assert!(r.check_message("k", "b", 1, m1).is_ok());
        // The same message again (a retry with another quorum) is not charged...
        assert!(r.check_message("k", "b", 1, m1).is_ok());
        // ...another one is, and is over the limit.
        assert!(r.check_message("k", "b", 1, m2).is_err());
        // Per key and client, like the count.
        assert!(r.check_message("k", "c", 1, m2).is_ok());
        assert!(r.check_message("k2", "b", 1, m1).is_ok());
    }

    #[test]
    fn only_the_latest_messages_are_remembered() {
        let r = RateLimiter::new();
        let limit = REMEMBERED_MESSAGES as u32 + 2;
        for i in 0..=REMEMBERED_MESSAGES {
            assert!(r.check_message("k", "a", limit, [i as u8; 32]).is_ok());
        }
        // The first has been forgotten and counts again (the last allowed one);
        // the latest is remembered and does not.
        assert!(r.check_message("k", "a", limit, [0; 32]).is_ok());
        assert!(r.check_message("k", "a", limit, [0; 32]).is_ok());
        assert!(r
            .check_message("k", "a", limit, [REMEMBERED_MESSAGES as u8; 32])
            .is_ok());
        assert!(r.check_message("k", "a", limit, [200; 32]).is_err());
    }
}
