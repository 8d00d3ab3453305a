//! How a drill judges what its load saw: [`Stats`] of the samples (counts, latency
//! percentiles), the checks every drill shares ([`baseline_failures`]), and the
//! [`Verdict`] with the first errors appended to a failure so it can be matched to
//! a drill step.

use std::time::Duration;

use super::load::{Outcome, Sample};

/// Counts and latency percentiles of a set of samples.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Requests sent.
    pub sent: usize,
    /// Verified signatures.
    pub succeeded: usize,
    /// Error statuses.
    pub failed: usize,
    /// Signatures that did not verify.
    pub invalid: usize,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
}

impl Stats {
    /// Stats of `samples`.
    pub fn of<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Self {
        let mut s = Stats::default();
        let mut latencies = Vec::new();
        for sample in samples {
            s.sent += 1;
            latencies.push(sample.latency);
            match sample.outcome {
                Outcome::Signed => s.succeeded += 1,
                Outcome::Invalid(_) => s.invalid += 1,
                Outcome::Failed(..) => s.failed += 1,
            }
        }
        latencies.sort();
        let pct = |p: usize| {
            latencies
                .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        s.p50 = pct(50);
        s.p99 = pct(99);
        s
    }
}

/// What a drill concluded.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// Whether the expectation held.
    pub pass: bool,
    /// The requests the expectation is about.
    pub stats: Stats,
    /// What happened, and why it failed if it did.
    pub detail: String,
}

/// Checks shared by every drill: the load ran and no signature was invalid.
pub fn baseline_failures(stats: &Stats, min_sent: usize) -> Vec<String> {
    let mut why = Vec::new();
    if stats.invalid > 0 {
        why.push(format!("{} invalid signatures", stats.invalid));
    }
    if stats.sent < min_sent {
        why.push(format!(
            "only {} requests sent (load too thin to judge)",
            stats.sent
        ));
    }
    why
}

/// The first `n` errors, each with when it was sent (seconds after the load
/// started), so a failure can be matched to a drill step.
fn first_errors(samples: &[Sample], n: usize) -> String {
    let Some(start) = samples.iter().map(|s| s.sent).min() else {
        return String::new();
    };
    samples
        .iter()
        .filter_map(|s| {
            let at = s.sent.saturating_duration_since(start).as_secs_f64();
            let took = s.latency.as_secs_f64();
            match &s.outcome {
                Outcome::Failed(code, msg) => Some(format!(
                    "sent at +{at:.1} s, after {took:.1} s {code:?}: {msg}"
                )),
                Outcome::Invalid(e) => Some(format!("sent at +{at:.1} s: invalid: {e}")),
                Outcome::Signed => None,
            }
        })
        .take(n)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The verdict on `stats`: a pass when nothing in `why` went wrong; a failure
/// names each reason and the first errors the load saw.
pub fn verdict(stats: Stats, mut why: Vec<String>, detail: String, samples: &[Sample]) -> Verdict {
    if !why.is_empty() {
        let errors = first_errors(samples, 2);
        if !errors.is_empty() {
            why.push(format!("first errors: {errors}"));
        }
    }
    Verdict {
        pass: why.is_empty(),
        stats,
        detail: if why.is_empty() {
            detail
        } else {
            format!("{detail}; FAILED: {}", why.join("; "))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn sample(ms: u64, outcome: Outcome) -> Sample {
        Sample {
            coordinator: 0,
            sent: Instant::now(),
            latency: Duration::from_millis(ms),
            outcome,
        }
    }

    #[test]
    fn stats_count_outcomes_and_take_percentiles() {
        let mut samples: Vec<Sample> = (1..=100).map(|i| sample(i, Outcome::Signed)).collect();
        samples.push(sample(500, Outcome::Invalid("bad".into())));
        samples.push(sample(
            600,
            Outcome::Failed(tonic::Code::Unavailable, "no quorum".into()),
        ));
        let s = Stats::of(&samples);
        assert_eq!((s.sent, s.succeeded, s.invalid, s.failed), (102, 100, 1, 1));
        assert_eq!(s.p50, Duration::from_millis(52));
        assert_eq!(s.p99, Duration::from_millis(500));
    }
}
