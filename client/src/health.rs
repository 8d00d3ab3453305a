//! Which coordinator to try first: healthy ones in their configured order, and a
//! coordinator that just failed at the back, skipped while it rests.
//!
//! A dead coordinator thus costs a client one timeout, not one per request: after
//! it failed, the next requests go straight to the others, and it is tried again
//! only after [`REST`] or when every other coordinator has failed too.
//!
//! It also remembers when each coordinator last answered: a connection that
//! answered within [`WARM`] is taken to be open, and a `Sign` is sent on it at
//! once; to any other coordinator a health check goes first, so that a
//! coordinator that cannot be reached is found out before the request has left.

use std::time::{Duration, Instant};

/// How long a coordinator that failed is skipped.
pub const REST: Duration = Duration::from_secs(5);

/// How long after its last answer a coordinator's connection is taken to be open.
pub const WARM: Duration = Duration::from_secs(10);

/// The order coordinators are tried in, and which of them rest.
#[derive(Debug)]
pub(crate) struct Health {
    order: Vec<usize>,
    resting_until: Vec<Option<Instant>>,
    answered_at: Vec<Option<Instant>>,
}

impl Health {
    /// `n` coordinators, all healthy, in configured order.
    pub(crate) fn new(n: usize) -> Self {
        Self {
            order: (0..n).collect(),
            resting_until: vec![None; n],
            answered_at: vec![None; n],
        }
    }

    /// Every coordinator, the ones to try first first: those not resting, in order,
    /// then the resting ones (a last resort rather than no attempt at all).
    pub(crate) fn candidates(&self, now: Instant) -> Vec<usize> {
        let resting = |i: &usize| self.resting_until[*i].is_some_and(|until| now < until);
        let mut out: Vec<usize> = self.order.iter().copied().filter(|i| !resting(i)).collect();
        out.extend(self.order.iter().copied().filter(resting));
        out
    }

    /// Coordinator `i` failed in a way another might not (unreachable, timed out,
    /// overloaded): to the back, and resting.
    pub(crate) fn failed(&mut self, i: usize, now: Instant) {
        self.order.retain(|&j| j != i);
        self.order.push(i);
        if let Some(slot) = self.resting_until.get_mut(i) {
            *slot = Some(now + REST);
        }
        if let Some(slot) = self.answered_at.get_mut(i) {
            *slot = None;
        }
    }

    /// Coordinator `i` answered: it no longer rests, and its connection is open.
    pub(crate) fn succeeded(&mut self, i: usize, now: Instant) {
        if let Some(slot) = self.resting_until.get_mut(i) {
            *slot = None;
        }
        if let Some(slot) = self.answered_at.get_mut(i) {
            *slot = Some(now);
        }
    }

    /// Whether coordinator `i` answered within [`WARM`] of `now` (and has not
    /// failed since).
    pub(crate) fn is_warm(&self, i: usize, now: Instant) -> bool {
        self.answered_at
            .get(i)
            .copied()
            .flatten()
            .is_some_and(|at| now.saturating_duration_since(at) < WARM)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_coordinator_goes_last_and_rests_then_comes_back() {
        let mut h = Health::new(3);
        let t0 = Instant::now();
        assert_eq!(h.candidates(t0), vec![0, 1, 2]);
        h.failed(0, t0);
        assert_eq!(h.candidates(t0), vec![1, 2, 0]);
        h.failed(1, t0);
        assert_eq!(h.candidates(t0), vec![2, 0, 1]);
        // After the rest it is tried again, still behind the ones that worked.
        assert_eq!(
            h.candidates(t0 + REST + Duration::from_millis(1)),
            vec![2, 0, 1]
        );
        h.succeeded(0, t0);
        h.failed(2, t0);
        // 0 answered, so it no longer rests; 1 and 2 do.
        assert_eq!(h.candidates(t0), vec![0, 1, 2]);
    }

    #[test]
    fn a_coordinator_is_warm_after_an_answer_until_it_fails_or_goes_quiet() {
        let mut h = Health::new(2);
        let t0 = Instant::now();
        assert!(!h.is_warm(0, t0), "never answered");
        h.succeeded(0, t0);
        assert!(h.is_warm(0, t0 + WARM - Duration::from_millis(1)));
        assert!(!h.is_warm(0, t0 + WARM));
        h.succeeded(0, t0);
        h.failed(0, t0);
        assert!(!h.is_warm(0, t0), "a failure closes it");
        assert!(!h.is_warm(1, t0));
    }
}
