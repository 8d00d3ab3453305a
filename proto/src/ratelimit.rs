//! Per-client rate limiting: at most `limit` requests per key and client in any
//! one-minute window (fixed windows). Memory is bounded: idle entries are dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
const PRUNE_ABOVE: usize = 10_000;

/// Counts requests per (key, client).
#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<(String, String), (Instant, u32)>>,
}

impl RateLimiter {
    /// A limiter with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request; `Err(retry_after)` if it exceeds `limit` per minute.
    /// A `limit` of 0 means unlimited.
    pub fn check(&self, key_id: &str, client: &str, limit: u32) -> Result<(), Duration> {
        if limit == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > PRUNE_ABOVE {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let entry = windows
            .entry((key_id.to_string(), client.to_string()))
            .or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= limit {
            return Err(WINDOW.saturating_sub(now.duration_since(entry.0)));
        }
        entry.1 += 1;
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
}
