//! `quorate-testnet bench`: signing load against a local network, compared with the
//! in-process FROST signing limit measured in the same run on the same cores.
//!
//! The whole network (nodes, coordinator, load generator) shares this machine's
//! cores, so the ceiling for end-to-end throughput is the rate at which the same
//! FROST work runs in one process without any network: `limit_sps`. `ratio` =
//! `throughput_sps / limit_sps` says how much of that ceiling the network keeps.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use quorate_proto::identity::Role;
use quorate_proto::metrics;
use quorate_proto::pb;
use quorate_proto::suite::{Ciphersuite, LocalQuorum, PackageDelivery};
use serde::Serialize;

use crate::client::SignerClient;
use crate::network::LocalNetwork;
use crate::spec::{KeySpec, NetworkSpec};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Signer nodes.
    pub nodes: usize,
    /// Threshold.
    pub threshold: u16,
    /// Ciphersuites to measure, one after the other on the same network.
    pub ciphersuites: Vec<Ciphersuite>,
    /// Concurrent clients.
    pub clients: usize,
    /// Measured load duration per ciphersuite.
    pub duration: Duration,
    /// Load before measuring (fills commitment pools, warms connections).
    pub warmup: Duration,
    /// Where the binaries are.
    pub bin_dir: PathBuf,
    /// Working directory for the network (a temporary one when `None`).
    pub dir: Option<PathBuf>,
    /// Verify one signature in this many with an independent verifier (1 = all).
    pub verify_every: u64,
}

/// Results for one ciphersuite.
#[derive(Clone, Debug, Serialize)]
pub struct SuiteResult {
    /// Ciphersuite name.
    pub ciphersuite: String,
    /// Nodes in the network.
    pub nodes: usize,
    /// Threshold.
    pub threshold: u16,
    /// Concurrent clients.
    pub clients: usize,
    /// Measured seconds.
    pub duration_s: f64,
    /// Successful signatures per second.
    pub throughput_sps: f64,
    /// Latency percentiles (ms).
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
    /// Signatures that succeeded.
    pub ok: u64,
    /// Failures by gRPC code.
    pub errors: BTreeMap<String, u64>,
    /// Sampled signatures that failed independent verification.
    pub invalid_signatures: u64,
    /// Sampled signatures verified.
    pub verified: u64,
    /// In-process FROST signing rate on all cores (same t, n and ciphersuite), each
    /// signer decoding the signing package it receives as a node does
    /// ([`PackageDelivery::PerSigner`]).
    pub limit_sps: f64,
    /// In-process time for one signature on one thread of an idle network (ms).
    pub compute_ms: f64,
    /// `throughput_sps / limit_sps`.
    pub ratio: f64,
    /// In-process rate with one signing package shared by all signers
    /// ([`PackageDelivery::Shared`]): FROST with no per-signer validation.
    pub bare_limit_sps: f64,
    /// One such signature on one thread (ms).
    pub bare_compute_ms: f64,
    /// `throughput_sps / bare_limit_sps`.
    pub bare_ratio: f64,
    /// Median loopback mTLS gRPC round trip (ms), measured with the limits.
    pub rtt_ms: f64,
    /// The latency a lone request should stay within: `compute_ms` + 1.5 × `rtt_ms`,
    /// the in-process work of one signature plus one-round signing's round trips.
    /// The target is `p50_ms` at most this at concurrency 1; with more clients,
    /// requests queue for the cores and it does not apply.
    pub latency_target_ms: f64,
    /// `p50_ms / latency_target_ms`.
    pub p50_vs_target: f64,
    /// CPU time of all network processes and the load generator per signature (ms).
    pub cpu_ms_per_signature: f64,
    /// Mean time a node took for one signature share, from when it took up the
    /// request (or the round-2 batch carrying it) until the share could leave with its
    /// audit record on disk (ms; the nodes' `quorate_node_sign_share_seconds` over the
    /// measured load). This and the next two are `null` if the nodes' metrics could
    /// not be read.
    pub node_share_ms: Option<f64>,
    /// Mean duration of one audit-log `fdatasync` on the nodes (ms;
    /// `quorate_node_audit_flush_seconds`); every share waits for one to end.
    pub audit_flush_ms: Option<f64>,
    /// Audit records per flush on the nodes: above 1 when concurrent shares share a
    /// group commit.
    pub audit_records_per_flush: Option<f64>,
    /// Peak resident set size per process during this ciphersuite's measured load
    /// (MiB; the peak is reset before it, where the kernel allows).
    pub peak_rss_mib: BTreeMap<String, f64>,
    /// RSS growth per process from the first to the last second of the run (MiB).
    pub rss_growth_mib: BTreeMap<String, f64>,
    /// RSS growth per process over the second half of the run (MiB), once caches
    /// and pools have filled: what a longer run would keep adding.
    pub rss_growth_second_half_mib: BTreeMap<String, f64>,
}

/// Signs in one thread for `window` with every party of a signature in this
/// process ([`LocalQuorum`], the same `SuiteOps` code path as the network:
/// commitments, shares, aggregation with its verification); returns the count and
/// the time it took. The key is dealt before the clock starts. A failure is an
/// error, not a short count: a baseline of zero would make every ratio infinite.
fn sign_in_process(
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
struct Baseline {
    limit_sps: f64,
    compute_ms: f64,
    bare_limit_sps: f64,
    bare_compute_ms: f64,
    rtt_ms: f64,
}

impl Baseline {
    async fn measure(
        suite: Ciphersuite,
        n: usize,
        t: u16,
        ping: &mut pb::node_client::NodeClient<tonic::transport::Channel>,
    ) -> anyhow::Result<Self> {
        let window = Duration::from_secs(3);
        let (limit_sps, compute_ms) =
            in_process_limit(suite, n, t, window, PackageDelivery::PerSigner)?;
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
            rtt_ms,
        })
    }

    fn mean(&self, other: &Self) -> Self {
        let m = |a: f64, b: f64| (a + b) / 2.0;
        Self {
            limit_sps: m(self.limit_sps, other.limit_sps),
            compute_ms: m(self.compute_ms, other.compute_ms),
            bare_limit_sps: m(self.bare_limit_sps, other.bare_limit_sps),
            bare_compute_ms: m(self.bare_compute_ms, other.bare_compute_ms),
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

/// The nodes' round-2 and audit-flush metrics, summed over all nodes.
#[derive(Clone, Copy, Debug, Default)]
struct NodeTimings {
    share_seconds: f64,
    shares: f64,
    flush_seconds: f64,
    flushes: f64,
    records: f64,
}

impl NodeTimings {
    /// Reads every node's metrics endpoint; `None` if any cannot be read.
    async fn scrape(addrs: &[String]) -> Option<Self> {
        let mut sum = Self::default();
        for addr in addrs {
            let text = tokio::time::timeout(Duration::from_secs(2), metrics::scrape(addr))
                .await
                .ok()?
                .ok()?;
            let value = |series: &str| metrics::sample(&text, series).unwrap_or(0.0);
            sum.share_seconds += value("quorate_node_sign_share_seconds_sum");
            sum.shares += value("quorate_node_sign_share_seconds_count");
            sum.flush_seconds += value("quorate_node_audit_flush_seconds_sum");
            sum.flushes += value("quorate_node_audit_flush_seconds_count");
            sum.records += value("quorate_node_audit_records");
        }
        Some(sum)
    }

    /// Per-share and per-flush means between `self` and a later reading (ms), and
    /// records per flush: `node_share_ms`, `audit_flush_ms`, `audit_records_per_flush`.
    fn means_until(&self, later: &Self) -> (Option<f64>, Option<f64>, Option<f64>) {
        let per = |sum: f64, count: f64| (count > 0.0).then(|| sum / count);
        let flushes = later.flushes - self.flushes;
        (
            per(
                later.share_seconds - self.share_seconds,
                later.shares - self.shares,
            )
            .map(|s| s * 1e3),
            per(later.flush_seconds - self.flush_seconds, flushes).map(|s| s * 1e3),
            per(later.records - self.records, flushes),
        )
    }
}

/// Resident set size of each process (KiB).
fn rss_kib(pids: &HashMap<String, u32>) -> HashMap<String, u64> {
    pids.iter()
        .filter_map(|(n, p)| proc_status_kib(*p, "VmRSS:").map(|r| (n.clone(), r)))
        .collect()
}

/// Resets a process's peak RSS (`VmHWM`) to its current RSS (Linux: 5 written to
/// `clear_refs`), so each ciphersuite run on one network reports its own peak; if it
/// fails the lifetime peak is reported, which can only overstate.
fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// utime + stime of a process, in clock ticks.
fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// Median round trip of an authenticated no-op call to a node over the reused mTLS
/// connection `ping` (ms).
async fn loopback_rtt(
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

#[derive(Default)]
struct Shared {
    ok: AtomicU64,
    verified: AtomicU64,
    invalid: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    latencies: Mutex<Option<Histogram<u64>>>,
}

/// Runs `clients` signing loops for `window`, recording into `shared` when `record`.
#[allow(clippy::too_many_arguments)]
async fn load(
    clients: &[SignerClient],
    concurrency: usize,
    key_id: &str,
    suite: Ciphersuite,
    public_key: Arc<Vec<u8>>,
    verify_every: u64,
    window: Duration,
    shared: Arc<Shared>,
    progress: bool,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let client = clients[i % clients.len()].clone();
        let key_id = key_id.to_string();
        let shared = shared.clone();
        let stop = stop.clone();
        let public_key = public_key.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let message = format!("bench {i} {n}");
                let t0 = Instant::now();
                match client
                    .sign(&key_id, message.as_bytes(), None, Duration::from_secs(5))
                    .await
                {
                    Ok(resp) => {
                        let us = t0.elapsed().as_micros() as u64;
                        // Counted over all clients: with many clients and slow
                        // signing, a per-client count might never reach the sample.
                        let nth = shared.ok.fetch_add(1, Ordering::Relaxed) + 1;
                        if let Some(h) = shared
                            .latencies
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .as_mut()
                        {
                            let _ = h.record(us.max(1));
                        }
                        if nth.is_multiple_of(verify_every) {
                            shared.verified.fetch_add(1, Ordering::Relaxed);
                            if crate::verify::verify(
                                suite,
                                &public_key,
                                message.as_bytes(),
                                &resp.signature,
                            )
                            .is_err()
                            {
                                shared.invalid.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Err(status) => {
                        *shared
                            .errors
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(format!("{:?}", status.code()))
                            .or_default() += 1;
                    }
                }
            }
        }));
    }
    let mut last_ok = 0;
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1).min(window.saturating_sub(started.elapsed())))
            .await;
        if progress {
            let ok = shared.ok.load(Ordering::Relaxed);
            let errors: u64 = shared
                .errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .sum();
            eprint!(
                "\r  {:>5.1}s/{:.0}s  {:>8} ok  {:>5} errors  {:>7.0} sps   ",
                started.elapsed().as_secs_f64(),
                window.as_secs_f64(),
                ok,
                errors,
                (ok - last_ok) as f64
            );
            last_ok = ok;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    if progress {
        eprintln!();
    }
}

/// Starts a network and measures every requested ciphersuite on it.
pub async fn run(opts: &BenchOptions) -> anyhow::Result<Vec<SuiteResult>> {
    let mut spec = NetworkSpec::generic(opts.nodes, opts.threshold);
    spec.keys = opts
        .ciphersuites
        .iter()
        .map(|s| KeySpec::new(&format!("bench-{}", s.name().to_ascii_lowercase()), *s))
        .collect();
    let tmp;
    let dir = match &opts.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().join("net")
        }
    };
    eprintln!(
        "bench: {}-of-{} network, {} clients, {:.0}s per ciphersuite (+{:.0}s warm-up)",
        opts.threshold,
        opts.nodes,
        opts.clients,
        opts.duration.as_secs_f64(),
        opts.warmup.as_secs_f64()
    );
    let mut results = Vec::new();
    let mut net = LocalNetwork::start(&dir, &opts.bin_dir, spec.clone()).await?;
    let outcome = async {
        // Round trips are timed as the coordinator makes them: to a node, with the
        // coordinator's identity.
        let mut ping = {
            let node = &net.nodes[0];
            let channel = net
                .tls_paths(Role::Coordinator, "coordinator")
                .load()?
                .channel(&node.endpoint, &node.spec.id, Duration::from_secs(2))?;
            pb::node_client::NodeClient::new(channel)
        };
        // A few channels, as a few client processes would have.
        let channels = opts.clients.clamp(1, 4);
        let mut clients = Vec::with_capacity(channels);
        for _ in 0..channels {
            clients.push(net.client().await?);
        }
        for key in &spec.keys {
            let suite = key.ciphersuite;
            // The baseline is measured while the network idles, before and after the
            // load (this machine's speed drifts; the mean of both brackets the run).
            // The round trip is timed after the limits, so that the network has idled
            // for seconds: at start-up the coordinator is still filling its
            // commitment pools.
            let before = Baseline::measure(suite, opts.nodes, opts.threshold, &mut ping).await?;
            eprintln!(
                "  {suite}: in-process limit {:.0} signatures/s ({:.2} ms each; bare FROST with one shared signing package {:.0}/s, {:.2} ms), loopback mTLS round trip {:.3} ms",
                before.limit_sps, before.compute_ms, before.bare_limit_sps, before.bare_compute_ms, before.rtt_ms
            );
            let public_key = Arc::new(clients[0].public_key(&key.key_id).await?.public_key);
            let warm = Arc::new(Shared::default());
            load(&clients, opts.clients, &key.key_id, suite, public_key.clone(), opts.verify_every, opts.warmup, warm, false).await;

            let shared = Arc::new(Shared {
                latencies: Mutex::new(Some(Histogram::new_with_bounds(1, 60_000_000, 3)?)),
                ..Shared::default()
            });
            let mut pids: HashMap<String, u32> = net
                .nodes
                .iter()
                .filter_map(|n| n.process.pid().map(|p| (n.spec.id.clone(), p)))
                .collect();
            if let Some(pid) = net.coordinator.pid() {
                pids.insert("coordinator".into(), pid);
            }
            let node_metrics: Vec<String> = net.nodes.iter().map(|n| n.metrics.clone()).collect();
            let timings_before = NodeTimings::scrape(&node_metrics).await;
            let me = std::process::id();
            let cpu_before: u64 = pids.values().chain([&me]).filter_map(|p| proc_cpu_ticks(*p)).sum();
            for pid in pids.values() {
                reset_peak_rss(*pid);
            }
            let rss_first = rss_kib(&pids);
            // Halfway through, when caches have filled: growth after this point is
            // what a longer run would keep adding.
            let rss_mid = {
                let pids = pids.clone();
                let half = opts.duration / 2;
                tokio::spawn(async move {
                    tokio::time::sleep(half).await;
                    rss_kib(&pids)
                })
            };
            let started = Instant::now();
            load(&clients, opts.clients, &key.key_id, suite, public_key, opts.verify_every, opts.duration, shared.clone(), true).await;
            let secs = started.elapsed().as_secs_f64();
            let cpu_after: u64 = pids.values().chain([&me]).filter_map(|p| proc_cpu_ticks(*p)).sum();
            let timings_after = NodeTimings::scrape(&node_metrics).await;
            let (node_share_ms, audit_flush_ms, audit_records_per_flush) =
                match (timings_before, timings_after) {
                    (Some(before), Some(after)) => before.means_until(&after),
                    _ => (None, None, None),
                };
            let rss_mid = rss_mid.await.unwrap_or_default();
            let rss_last = rss_kib(&pids);
            let growth = |from: &HashMap<String, u64>| -> BTreeMap<String, f64> {
                rss_last
                    .iter()
                    .filter_map(|(n, last)| {
                        from.get(n)
                            .map(|first| (n.clone(), (*last as f64 - *first as f64) / 1024.0))
                    })
                    .collect()
            };
            let rss_growth_mib = growth(&rss_first);
            let rss_growth_second_half_mib = growth(&rss_mid);
            let peak_rss_mib: BTreeMap<String, f64> = pids
                .iter()
                .filter_map(|(n, p)| proc_status_kib(*p, "VmHWM:").map(|k| (n.clone(), k as f64 / 1024.0)))
                .collect();
            let after = Baseline::measure(suite, opts.nodes, opts.threshold, &mut ping).await?;
            eprintln!(
                "  {suite}: after the load, in-process limit {:.0} signatures/s (bare {:.0}/s), loopback mTLS round trip {:.3} ms",
                after.limit_sps, after.bare_limit_sps, after.rtt_ms
            );
            let Baseline {
                limit_sps,
                compute_ms,
                bare_limit_sps,
                bare_compute_ms,
                rtt_ms,
            } = before.mean(&after);
            let ok = shared.ok.load(Ordering::Relaxed);
            if ok == 0 {
                // Latency percentiles of no signature would read 0 ms, and at one
                // client "met".
                let errors = shared.errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
                bail!("{suite}: no signature succeeded in {secs:.0} s of load; errors by code: {errors:?}");
            }
            let hist = shared
                .latencies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .context("histogram")?;
            let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
            let throughput_sps = ok as f64 / secs;
            let latency_target_ms = compute_ms + 1.5 * rtt_ms;
            results.push(SuiteResult {
                ciphersuite: suite.name().into(),
                nodes: opts.nodes,
                threshold: opts.threshold,
                clients: opts.clients,
                duration_s: secs,
                throughput_sps,
                p50_ms: ms(0.5),
                p90_ms: ms(0.9),
                p99_ms: ms(0.99),
                max_ms: hist.max() as f64 / 1e3,
                ok,
                errors: shared.errors.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                invalid_signatures: shared.invalid.load(Ordering::Relaxed),
                verified: shared.verified.load(Ordering::Relaxed),
                limit_sps,
                compute_ms,
                ratio: throughput_sps / limit_sps,
                bare_limit_sps,
                bare_compute_ms,
                bare_ratio: throughput_sps / bare_limit_sps,
                rtt_ms,
                latency_target_ms,
                p50_vs_target: ms(0.5) / latency_target_ms,
                // Saturating: a process that exits during the load drops out of
                // the second sum.
                cpu_ms_per_signature: cpu_after.saturating_sub(cpu_before) as f64
                    / CLOCK_TICKS_PER_SEC
                    * 1e3
                    / ok.max(1) as f64,
                node_share_ms,
                audit_flush_ms,
                audit_records_per_flush,
                peak_rss_mib,
                rss_growth_mib,
                rss_growth_second_half_mib,
            });
        }
        anyhow::Ok(())
    }
    .await;
    net.stop().await?;
    outcome?;
    Ok(results)
}

/// A human-readable table of results.
pub fn table(results: &[SuiteResult]) -> String {
    let mut out = String::new();
    out.push_str("ciphersuite   t/n   clients  throughput   limit    ratio   p50 ms  p90 ms  p99 ms  max ms  cpu ms/sig  errors  invalid\n");
    for r in results {
        let errors: u64 = r.errors.values().sum();
        out.push_str(&format!(
            "{:<13} {}/{:<3} {:>7}  {:>8.0}/s {:>6.0}/s  {:>5.2}  {:>6.2}  {:>6.2}  {:>6.2}  {:>6.1}  {:>10.2}  {:>6}  {:>7}\n",
            r.ciphersuite, r.threshold, r.nodes, r.clients, r.throughput_sps, r.limit_sps, r.ratio,
            r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms, r.cpu_ms_per_signature, errors, r.invalid_signatures
        ));
    }
    for r in results {
        out.push_str(&format!(
            "{}: one signature in process {:.2} ms (limit), {:.2} ms with one shared signing package (bare {:.0}/s, ratio {:.2})\n",
            r.ciphersuite, r.compute_ms, r.bare_compute_ms, r.bare_limit_sps, r.bare_ratio
        ));
        out.push_str(&format!(
            "{}: loopback mTLS round trip {:.3} ms\n",
            r.ciphersuite, r.rtt_ms
        ));
        if let (Some(share), Some(flush), Some(per_flush)) =
            (r.node_share_ms, r.audit_flush_ms, r.audit_records_per_flush)
        {
            out.push_str(&format!(
                "{}: on the nodes, a share took {share:.3} ms from when its request was taken up until it could leave with its audit record on disk; an audit fdatasync {flush:.3} ms, {per_flush:.1} records per flush\n",
                r.ciphersuite
            ));
        }
        if r.clients == 1 {
            out.push_str(&format!(
                "{}: p50 {:.2} ms against the concurrency-1 target {:.2} ms (in-process signature + 1.5 round trips): {:.2}x, {}\n",
                r.ciphersuite,
                r.p50_ms,
                r.latency_target_ms,
                r.p50_vs_target,
                if r.p50_vs_target <= 1.0 { "met" } else { "not met" }
            ));
        }
    }
    for r in results {
        let rss: Vec<String> = r
            .peak_rss_mib
            .iter()
            .map(|(n, m)| {
                format!(
                    "{n} {m:.1} MiB ({:+.1}/{:+.1})",
                    r.rss_growth_mib.get(n).copied().unwrap_or(0.0),
                    r.rss_growth_second_half_mib.get(n).copied().unwrap_or(0.0)
                )
            })
            .collect();
        out.push_str(&format!(
            "peak RSS ({}), growth over the whole run/its second half in parentheses: {}\n",
            r.ciphersuite,
            rss.join(", ")
        ));
    }
    out
}

/// The final `--json` line: the fields DESIGN.md names at the top level (from the
/// ciphersuite with the lowest ratio), and every result under `results`.
pub fn json_line(results: &[SuiteResult]) -> anyhow::Result<String> {
    let worst = results
        .iter()
        .min_by(|a, b| a.ratio.total_cmp(&b.ratio))
        .context("no results")?;
    let mut v = serde_json::to_value(worst)?;
    v["results"] = serde_json::to_value(results)?;
    Ok(serde_json::to_string(&v)?)
}

/// Whether a path looks like a release build directory (for a warning).
pub fn is_release_dir(dir: &Path) -> bool {
    dir.ends_with("release")
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
