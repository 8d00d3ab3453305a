//! Per-client rate limiting: at most `limit` signatures per key and client in each
//! fixed one-minute window, which starts at the client's first request after the
//! last one ended. Fixed windows let up to twice `limit` through within one
//! sliding minute (the end of one window and the start of the next); each
//! coordinator and each node keeps its own windows.
//!
//! The coordinator counts requests ([`RateLimiter::check`]): each `Sign` costs
//! capacity, whatever it asks for. A node counts messages
//! ([`RateLimiter::check_message`]): what its limit bounds is which messages its key
//! share signs in a client's name, so a message it has signed for the client this
//! window is not counted again. That keeps the coordinator's retries free: when a
//! quorum fails (a node down, a corrupt share) and the coordinator asks again with
//! another, the nodes of the first quorum that signed already are not charged twice
//! for the one signature the client gets. A repeat still gets a fresh signature
//! (FROST signatures are randomized, so its bytes differ), which authorizes nothing
//! the first did not.
//!
//! Memory is bounded: a window remembers at most `limit` messages, and windows
//! over a minute old are dropped at least once a minute, so what is held is at
//! most the messages counted in the last two minutes.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);

/// One key and client's current window.
#[derive(Debug)]
struct Window {
    start: Instant,
    counted: u32,
    /// SHA-256 of the messages counted ([`RateLimiter::check_message`]).
    messages: HashSet<[u8; 32]>,
}

#[derive(Debug)]
struct Windows {
    by_key_and_client: HashMap<(String, String), Window>,
    pruned: Instant,
}

/// Counts signatures per (key, client).
#[derive(Debug)]
pub struct RateLimiter {
    windows: Mutex<Windows>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self {
            windows: Mutex::new(Windows {
                by_key_and_client: HashMap::new(),
                pruned: Instant::now(),
            }),
        }
    }
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
    /// it was counted for this key and client in the current window;
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
        let windows = &mut *windows;
        if now.duration_since(windows.pruned) >= WINDOW {
            windows
                .by_key_and_client
                .retain(|_, w| now.duration_since(w.start) < WINDOW);
            windows.pruned = now;
        }
        let window = windows
            .by_key_and_client
            .entry((key_id.to_string(), client.to_string()))
            .or_insert_with(|| Window {
                start: now,
                counted: 0,
                messages: HashSet::new(),
            });
        if now.duration_since(window.start) >= WINDOW {
            window.start = now;
            window.counted = 0;
            window.messages.clear();
        }
        if message_sha256.is_some_and(|m| window.messages.contains(&m)) {
            return Ok(());
        }
        if window.counted >= limit {
            return Err(WINDOW.saturating_sub(now.duration_since(window.start)));
        }
        window.counted += 1;
        if let Some(m) = message_sha256 {
            window.messages.insert(m);
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
        // ...another one is, and is over the limit: refused, and not remembered
        // as counted.
        assert!(r.check_message("k", "b", 1, m2).is_err());
        assert!(r.check_message("k", "b", 1, m2).is_err());
        // Per key and client, like the count.
        assert!(r.check_message("k", "c", 1, m2).is_ok());
        assert!(r.check_message("k2", "b", 1, m1).is_ok());
    }
}
