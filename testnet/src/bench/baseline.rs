//! What a bench run is compared with: the in-process FROST signing limit (every
//! party of a signature in this process, no network), the same limit with the
//! signed intents' work added (the client signs one, the coordinator and each
//! signer verify it), and the loopback round trip to a node, measured on the same
//! cores while the network idles.

use std::time::{Duration, Instant};

use anyhow::Context;
use quorate_frost::{Ciphersuite, LocalQuorum, PackageDelivery};
use quorate_transport::attest::{StatementSigner, StatementVerifier};
use quorate_transport::intent::{sign_intent, IntentRequest, IntentVerifier, SignIntent};
use quorate_wire::pb;

/// Signs in one thread for `window` with every party of a signature in this
/// process ([`LocalQuorum`], the same `SuiteOps` code path as the network:
/// commitments, shares, aggregation with its verification); returns the count and
/// the time it took. The key is dealt before the clock starts. A failure is an
/// error, not a short count: a baseline of zero would make every ratio infinite.
pub(super) fn sign_in_process(
    suite: Ciphersuite,
    n: usize,
    t: u16,
    window: Duration,
    delivery: PackageDelivery,
) -> anyhow::Result<(u64, Duration)> {
    let names: Vec<String> = (1..=n).map(|i| format!("node-{i}")).collect();
    let signers: Vec<usize> = (0..usize::from(t)).collect();
    let quorum = suite
        .ops()
        .split(None, &names, t)
        .and_then(|dealt| LocalQuorum::new(suite, &dealt, &signers))
        .with_context(|| format!("dealing a {t}-of-{n} {suite} key for the in-process baseline"))?;
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < window {
        quorum
            .sign(&count.to_be_bytes(), delivery)
            .with_context(|| format!("signing in process ({suite})"))?;
        count += 1;
    }
    Ok((count, started.elapsed()))
}

/// What a run is compared with, measured while the network idles, on the same
/// cores: both in-process limits of one ciphersuite, and the loopback round trip.
#[derive(Clone, Copy, Debug)]
pub(super) struct Baseline {
    pub(super) limit_sps: f64,
    pub(super) compute_ms: f64,
    pub(super) bare_limit_sps: f64,
    pub(super) bare_compute_ms: f64,
    /// One signature's intent work on one thread: signed once by the client,
    /// verified by the coordinator and by each of the `t` signers (ms).
    pub(super) intent_ms: f64,
    /// [`Baseline::limit_sps`] with [`Baseline::intent_ms`] of CPU added to every
    /// signature.
    pub(super) intent_limit_sps: f64,
    pub(super) rtt_ms: f64,
}

/// The parties of the intent work: the client's key, and a verifier of the
/// network's CA (chains remembered, as on a node).
pub(super) struct IntentParties {
    pub(super) client: StatementSigner,
    pub(super) verifier: IntentVerifier,
}

impl IntentParties {
    pub(super) fn new(client: StatementSigner, ca: StatementVerifier) -> Self {
        Self {
            client,
            verifier: IntentVerifier::new(ca),
        }
    }

    /// Time for one signature's intent work on one thread (ms): one intent signed,
    /// `t + 1` times verified.
    fn cost_ms(&self, t: u16, window: Duration) -> anyhow::Result<f64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let started = Instant::now();
        let mut count = 0u64;
        while started.elapsed() < window {
            let message = count.to_be_bytes();
            let request = IntentRequest {
                key_id: "bench",
                message: &message,
                request_id: "",
                approval_token: None,
            };
            let signed = sign_intent(&self.client, &SignIntent::for_request(&request, now, 60))?;
            for _ in 0..=t {
                self.verifier
                    .verify(Some(&signed), &request)
                    .context("verifying an intent for the in-process baseline")?;
            }
            count += 1;
        }
        Ok(started.elapsed().as_secs_f64() * 1e3 / count.max(1) as f64)
    }
}

impl Baseline {
    pub(super) async fn measure(
        suite: Ciphersuite,
        n: usize,
        t: u16,
        intents: &IntentParties,
        ping: &mut pb::node_client::NodeClient<tonic::transport::Channel>,
    ) -> anyhow::Result<Self> {
        let window = Duration::from_secs(3);
        let (limit_sps, compute_ms) =
            in_process_limit(suite, n, t, window, PackageDelivery::PerSigner)?;
        let intent_ms = intents.cost_ms(t, Duration::from_millis(500))?;
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
        // Each signature costs cores / limit_sps core-seconds in process; the
        // intents add their own.
        let intent_limit_sps = cores / (cores / limit_sps + intent_ms / 1e3);
        let (bare_limit_sps, bare_compute_ms) =
            in_process_limit(suite, n, t, window, PackageDelivery::Shared)?;
        let rtt_ms = loopback_rtt(ping)
            .await
            .context("measuring the loopback round trip")?;
        Ok(Self {
            limit_sps,
            compute_ms,
            bare_limit_sps,
            bare_compute_ms,
            intent_ms,
            intent_limit_sps,
            rtt_ms,
        })
    }

    pub(super) fn mean(&self, other: &Self) -> Self {
        let m = |a: f64, b: f64| (a + b) / 2.0;
        Self {
            limit_sps: m(self.limit_sps, other.limit_sps),
            compute_ms: m(self.compute_ms, other.compute_ms),
            bare_limit_sps: m(self.bare_limit_sps, other.bare_limit_sps),
            bare_compute_ms: m(self.bare_compute_ms, other.bare_compute_ms),
            intent_ms: m(self.intent_ms, other.intent_ms),
            intent_limit_sps: m(self.intent_limit_sps, other.intent_limit_sps),
            rtt_ms: m(self.rtt_ms, other.rtt_ms),
        }
    }
}

/// The in-process limit: signatures per second with one signing thread per core,
/// and the time one signature takes on one otherwise idle thread (ms).
pub fn in_process_limit(
    suite: Ciphersuite,
    n: usize,
    t: u16,
    window: Duration,
    delivery: PackageDelivery,
) -> anyhow::Result<(f64, f64)> {
    let (single, took) = sign_in_process(suite, n, t, Duration::from_millis(1000), delivery)?;
    let compute_ms = took.as_secs_f64() * 1e3 / single.max(1) as f64;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let handles: Vec<_> = (0..cores)
        .map(|_| std::thread::spawn(move || sign_in_process(suite, n, t, window, delivery)))
        .collect();
    // Each thread's own rate, summed: the threads start their clocks when their key
    // is dealt.
    let mut limit_sps = 0.0;
    for handle in handles {
        let (count, took) = handle
            .join()
            .map_err(|_| anyhow::anyhow!("an in-process signing thread panicked"))??;
        limit_sps += count as f64 / took.as_secs_f64().max(1e-9);
    }
    Ok((limit_sps, compute_ms))
}

/// Median round trip of an authenticated no-op call to a node over the reused mTLS
/// connection `ping` (ms).
pub(super) async fn loopback_rtt(
    ping: &mut pb::node_client::NodeClient<tonic::transport::Channel>,
) -> anyhow::Result<f64> {
    ping.get_info(pb::GetInfoRequest {}).await?;
    let mut samples = Vec::with_capacity(500);
    for _ in 0..500 {
        let t0 = Instant::now();
        ping.get_info(pb::GetInfoRequest {}).await?;
        samples.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_in_process_baseline_that_cannot_sign_is_an_error_not_a_zero_limit() {
        // Three signers of five cannot be dealt as a 5-of-3 key.
        let err = in_process_limit(
            Ciphersuite::Ed25519,
            3,
            5,
            Duration::from_millis(10),
            PackageDelivery::PerSigner,
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("in-process baseline"),
            "{err:#}"
        );
        let (limit_sps, compute_ms) = in_process_limit(
            Ciphersuite::Ed25519,
            3,
            2,
            Duration::from_millis(10),
            PackageDelivery::PerSigner,
        )
        .unwrap();
        assert!(limit_sps > 0.0 && compute_ms > 0.0);
    }
}
