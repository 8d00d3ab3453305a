//! [`run`]: starts a local network and measures every requested ciphersuite on it:
//! baseline, warm-up, measured load with the processes' CPU, memory and node
//! timings, baseline again.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use quorate_frost::Ciphersuite;
use quorate_transport::identity::Role;
use quorate_wire::pb;

use crate::network::LocalNetwork;
use crate::spec::{KeySpec, NetworkSpec};

use super::baseline::{Baseline, IntentParties};
use super::load::{load, Shared};
use super::node_metrics::NodeTimings;
use super::procfs::{
    proc_cpu_ticks, proc_status_kib, reset_peak_rss, rss_kib, CLOCK_TICKS_PER_SEC,
};
use super::result::SuiteResult;

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
                .node_channel(&node.endpoint, &node.spec.id, Duration::from_secs(2))?;
            pb::node_client::NodeClient::new(channel)
        };
        let intents = {
            let client = net.tls_paths(Role::Client, "demo-client").load()?;
            IntentParties::new(client.statement_signer()?, client.statement_verifier()?)
        };
        // A few channels, as a few client processes would have: one client
        // library `Client` (its own channel) each.
        let channels = opts.clients.clamp(1, 4);
        let mut clients = Vec::with_capacity(channels);
        for _ in 0..channels {
            clients.push(net.quorate_client()?);
        }
        for key in &spec.keys {
            let suite = key.ciphersuite;
            // The baseline is measured while the network idles, before and after the
            // load (this machine's speed drifts; the mean of both brackets the run).
            // The round trip is timed after the limits, so that the network has idled
            // for seconds: at start-up the coordinator is still filling its
            // commitment pools.
            let before =
                Baseline::measure(suite, opts.nodes, opts.threshold, &intents, &mut ping).await?;
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
            let after =
                Baseline::measure(suite, opts.nodes, opts.threshold, &intents, &mut ping).await?;
            eprintln!(
                "  {suite}: after the load, in-process limit {:.0} signatures/s (bare {:.0}/s), loopback mTLS round trip {:.3} ms",
                after.limit_sps, after.bare_limit_sps, after.rtt_ms
            );
            let Baseline {
                limit_sps,
                compute_ms,
                bare_limit_sps,
                bare_compute_ms,
                intent_ms,
                intent_limit_sps,
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
                intent_ms,
                intent_limit_sps,
                intent_ratio: throughput_sps / intent_limit_sps,
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

/// Whether a path looks like a release build directory (for a warning).
pub fn is_release_dir(dir: &Path) -> bool {
    dir.ends_with("release")
}
