//! `bench --wan PROFILE`: signing latency across inter-region links. The default
//! network (five regions, 3-of-5, the demo keys and the EU key) runs on a WAN
//! testbed ([`crate::wan`]) with two coordinators at the profile's coordinator
//! site: `coordinator` signs in one round from pooled commitments, `coordinator-2`
//! has pooling off (`preprocess_batch = 0`) and always signs in two rounds. Each
//! key is measured through each, at each concurrency, on the same network.
//!
//! Each run is held against the round trip of the key's nearest lawful quorum,
//! measured in the same run: the `t`-th shortest round trip from the coordinator's
//! site among quorums the key's policy allows. One-round signing should cost one
//! such round trip plus the in-process work: `p50_ms` <= 1.2 × `quorum_rtt_ms` +
//! `compute_ms` at concurrency 1.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use quorate_frost::{Ciphersuite, PackageDelivery};
use quorate_transport::metrics;
use serde::Serialize;

use crate::network::{LocalNetwork, StartOptions};
use crate::spec::{KeySpec, NetworkSpec};
use crate::wan::WanProfile;

use super::baseline::in_process_limit;
use super::load::{load, Shared};

/// The request deadline the load uses (and the bound for p99 under loss).
const DEADLINE_MS: f64 = 5_000.0;

/// What to measure.
#[derive(Clone, Debug)]
pub struct WanBenchOptions {
    /// The WAN profile.
    pub profile: WanProfile,
    /// Ciphersuites whose demo key is measured; the EU key (Ed25519) comes with
    /// Ed25519.
    pub ciphersuites: Vec<Ciphersuite>,
    /// Concurrencies, each measured in turn.
    pub concurrencies: Vec<usize>,
    /// Measured seconds per run.
    pub duration: Duration,
    /// Unmeasured load before each run (stocks the pools).
    pub warmup: Duration,
    /// Where the binaries are.
    pub bin_dir: PathBuf,
    /// Working directory (a temporary one when `None`).
    pub dir: Option<PathBuf>,
    /// Verify one signature in this many with an independent verifier.
    pub verify_every: u64,
}

/// One run: one key, through one coordinator, at one concurrency.
#[derive(Clone, Debug, Serialize)]
pub struct WanRunResult {
    /// The profile.
    pub wan_profile: String,
    /// The key.
    pub key_id: String,
    /// Its ciphersuite.
    pub ciphersuite: String,
    /// Its policy, e.g. `EU>=2`, or `none`.
    pub policy: String,
    /// Whether the coordinator may sign in one round (pooled commitments).
    pub one_round_enabled: bool,
    /// Concurrent clients.
    pub clients: usize,
    /// Measured seconds.
    pub duration_s: f64,
    /// Signatures per second.
    pub throughput_sps: f64,
    /// Latency percentiles (ms).
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Signatures.
    pub ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// Failed requests by gRPC code.
    pub errors_by_code: BTreeMap<String, u64>,
    /// Signatures that failed independent verification.
    pub invalid_signatures: u64,
    /// Share of signatures signed in one round (the coordinator's one-round
    /// attempts over the signatures; retries could count twice, so capped at 1).
    pub one_round_share: f64,
    /// Signatures by quorum (node ids joined by `+`).
    pub quorums: BTreeMap<String, u64>,
    /// The key's nearest lawful quorum from the coordinator's site.
    pub nearest_quorum: Vec<String>,
    /// Its round trip (the slowest member's), measured in this run (ms).
    pub quorum_rtt_ms: f64,
    /// Every node's round trip from the coordinator's site, measured (ms).
    pub node_rtt_ms: BTreeMap<String, f64>,
    /// One signature's in-process FROST work on one thread (ms).
    pub compute_ms: f64,
    /// The in-process FROST signing rate on all cores (as in the loopback bench;
    /// with `ratio` it keeps every `bench --json` line's contract fields).
    pub limit_sps: f64,
    /// `throughput_sps / limit_sps`.
    pub ratio: f64,
    /// 1.2 × `quorum_rtt_ms` + `compute_ms`: the bar for `p50_ms` at concurrency 1
    /// with one-round signing.
    pub target_ms: f64,
    /// `p50_ms / target_ms`.
    pub p50_vs_target: f64,
    /// The request deadline (ms): the bar for `p99_ms` under loss.
    pub deadline_ms: f64,
}

/// Runs the WAN benchmark.
pub async fn run(opts: &WanBenchOptions) -> anyhow::Result<Vec<WanRunResult>> {
    let mut spec = NetworkSpec::default_five_regions();
    spec.keys.retain(|k| {
        opts.ciphersuites.contains(&k.ciphersuite)
            && (k.policy.is_none() || k.ciphersuite == Ciphersuite::Ed25519)
    });
    let tmp;
    let dir = match &opts.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().join("net")
        }
    };
    eprintln!(
        "bench --wan: {}; {} keys, concurrency {:?}, {:.0}s per run (+{:.0}s warm-up)",
        opts.profile,
        spec.keys.len(),
        opts.concurrencies,
        opts.duration.as_secs_f64(),
        opts.warmup.as_secs_f64()
    );
    let mut net = LocalNetwork::start_opts(
        &dir,
        &opts.bin_dir,
        spec.clone(),
        &StartOptions {
            coordinators: 2,
            wan: Some(opts.profile.clone()),
            coordinator_extra_toml: vec![
                String::new(),
                "\n[signing]\npreprocess_batch = 0\n".into(),
            ],
            ..StartOptions::default()
        },
    )
    .await?;
    let outcome = measure_all(&net, &spec, opts).await;
    if let Some(counters) = net.wan.as_ref().and_then(|w| w.counters()) {
        use std::sync::atomic::Ordering::Relaxed;
        let (delivered, lost) = (
            counters.delivered.load(Relaxed),
            counters.lost.load(Relaxed),
        );
        eprintln!(
            "  link emulator: {delivered} packets delivered, {lost} dropped for loss ({:.2}%)",
            lost as f64 * 100.0 / (delivered + lost).max(1) as f64
        );
    }
    net.stop().await?;
    drop(net);
    outcome
}

async fn measure_all(
    net: &LocalNetwork,
    spec: &NetworkSpec,
    opts: &WanBenchOptions,
) -> anyhow::Result<Vec<WanRunResult>> {
    // Clients of one coordinator each: index 0 signs in one round, 1 in two.
    let mut clients = Vec::new();
    for i in 0..2 {
        let mut config = net.client_config();
        config.coordinators = vec![config.coordinators[i].clone()];
        let client = quorate_client::Client::new(&config)?;
        clients.push(vec![client]);
    }
    let metrics_of = [
        net.coordinator_metrics.clone(),
        net.extra_coordinators[0].metrics.clone(),
    ];
    // The coordinators measure each node's latency with their health probes (every
    // second) before they prefer by it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rtts = net.node_rtts(21).await.context("measuring round trips")?;
    let node_rtt_ms: BTreeMap<String, f64> = rtts
        .iter()
        .map(|(n, d)| (n.clone(), d.as_secs_f64() * 1e3))
        .collect();
    eprintln!("  round trips from the coordinator's site: {node_rtt_ms:?}");
    let mut results = Vec::new();
    for key in &spec.keys {
        let (nearest_quorum, quorum_rtt_ms) = nearest_lawful_quorum(spec, key, &node_rtt_ms)?;
        let (limit_sps, compute_ms) = in_process_limit(
            key.ciphersuite,
            spec.nodes.len(),
            spec.threshold,
            Duration::from_secs(1),
            PackageDelivery::PerSigner,
        )?;
        let public_key = Arc::new(clients[0][0].public_key(&key.key_id).await?.public_key);
        for (mode, one_round_enabled) in [(0usize, true), (1, false)] {
            for &concurrency in &opts.concurrencies {
                let warm = Arc::new(Shared::default());
                load(
                    &clients[mode],
                    concurrency,
                    &key.key_id,
                    key.ciphersuite,
                    public_key.clone(),
                    opts.verify_every,
                    opts.warmup,
                    warm,
                    false,
                )
                .await;
                // Pools refill in the background; let them.
                tokio::time::sleep(Duration::from_millis(500)).await;
                let shared = Arc::new(Shared {
                    latencies: Mutex::new(Some(Histogram::new_with_bounds(1, 60_000_000, 3)?)),
                    ..Shared::default()
                });
                let one_round_before = one_round_count(&metrics_of[mode]).await;
                let started = Instant::now();
                eprintln!(
                    "  {} ({}), {} round(s), {concurrency} clients:",
                    key.key_id,
                    key.ciphersuite,
                    if one_round_enabled { "one" } else { "two" }
                );
                load(
                    &clients[mode],
                    concurrency,
                    &key.key_id,
                    key.ciphersuite,
                    public_key.clone(),
                    opts.verify_every,
                    opts.duration,
                    shared.clone(),
                    true,
                )
                .await;
                let secs = started.elapsed().as_secs_f64();
                let one_round_after = one_round_count(&metrics_of[mode]).await;
                let ok = shared.ok.load(std::sync::atomic::Ordering::Relaxed);
                let hist = shared
                    .latencies
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .context("histogram")?;
                let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
                let errors_by_code = shared
                    .errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let one_round_share = match (one_round_before, one_round_after) {
                    (Some(a), Some(b)) if ok > 0 => ((b - a) / ok as f64).min(1.0),
                    _ => 0.0,
                };
                let target_ms = 1.2 * quorum_rtt_ms + compute_ms;
                results.push(WanRunResult {
                    wan_profile: opts.profile.name.to_string(),
                    key_id: key.key_id.clone(),
                    ciphersuite: key.ciphersuite.name().to_string(),
                    policy: policy_text(key),
                    one_round_enabled,
                    clients: concurrency,
                    duration_s: secs,
                    throughput_sps: ok as f64 / secs,
                    p50_ms: ms(0.5),
                    p90_ms: ms(0.9),
                    p99_ms: ms(0.99),
                    max_ms: hist.max() as f64 / 1e3,
                    ok,
                    errors: errors_by_code.values().sum(),
                    errors_by_code,
                    invalid_signatures: shared.invalid.load(std::sync::atomic::Ordering::Relaxed),
                    one_round_share,
                    quorums: shared
                        .quorums
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone(),
                    nearest_quorum: nearest_quorum.clone(),
                    quorum_rtt_ms,
                    node_rtt_ms: node_rtt_ms.clone(),
                    compute_ms,
                    limit_sps,
                    ratio: ok as f64 / secs / limit_sps,
                    target_ms,
                    p50_vs_target: ms(0.5) / target_ms,
                    deadline_ms: DEADLINE_MS,
                });
            }
        }
    }
    Ok(results)
}

/// The coordinator's count of one-round signing attempts.
async fn one_round_count(addr: &str) -> Option<f64> {
    let text = tokio::time::timeout(Duration::from_secs(3), metrics::scrape(addr))
        .await
        .ok()?
        .ok()?;
    metrics::sample(&text, ONE_ROUND_METRIC)
}

/// The coordinator's count of one-round signing attempts (the coordinator crate
/// is no dependency of this library; `coordinator/src/metric.rs` names it).
const ONE_ROUND_METRIC: &str = "quorate_coordinator_one_round_total";

fn policy_text(key: &KeySpec) -> String {
    match &key.policy {
        Some(p) => format!("{}>={}", p.home_jurisdictions.join("/"), p.min_home_signers),
        None => "none".into(),
    }
}

/// The lawful quorum of `key` whose slowest member is nearest (by `rtt_ms`), and
/// that member's round trip: the `t` nearest nodes, with the nearest home nodes
/// first when the policy needs `min_home_signers` of them.
pub fn nearest_lawful_quorum(
    spec: &NetworkSpec,
    key: &KeySpec,
    rtt_ms: &BTreeMap<String, f64>,
) -> anyhow::Result<(Vec<String>, f64)> {
    let t = usize::from(spec.threshold);
    let mut nodes: Vec<(&str, bool, f64)> = spec
        .nodes
        .iter()
        .map(|n| {
            let home = key
                .policy
                .as_ref()
                .is_some_and(|p| p.home_jurisdictions.contains(&n.jurisdiction));
            (
                n.id.as_str(),
                home,
                rtt_ms.get(&n.id).copied().unwrap_or(f64::MAX),
            )
        })
        .collect();
    nodes.sort_by(|a, b| a.2.total_cmp(&b.2));
    let need_home = key
        .policy
        .as_ref()
        .map_or(0, |p| p.min_home_signers as usize);
    let mut quorum: Vec<(&str, f64)> = nodes
        .iter()
        .filter(|n| n.1)
        .take(need_home)
        .map(|n| (n.0, n.2))
        .collect();
    anyhow::ensure!(
        quorum.len() == need_home,
        "{}: fewer than {need_home} home nodes",
        key.key_id
    );
    for n in &nodes {
        if quorum.len() == t {
            break;
        }
        if !quorum.iter().any(|q| q.0 == n.0) {
            quorum.push((n.0, n.2));
        }
    }
    anyhow::ensure!(quorum.len() == t, "{}: fewer than {t} nodes", key.key_id);
    let rtt = quorum.iter().map(|q| q.1).fold(0.0, f64::max);
    let mut ids: Vec<String> = quorum.iter().map(|q| q.0.to_string()).collect();
    ids.sort();
    Ok((ids, rtt))
}

/// The table `bench --wan` prints: one row per run, one-round and two-round side
/// by side per key and concurrency.
pub fn wan_table(results: &[WanRunResult]) -> String {
    let mut out = String::from(
        "\n| key | policy | clients | rounds | p50 ms | p99 ms | target ms | p50/target | one-round share | sig/s | errors | quorum RTT ms | nearest lawful quorum | quorums used |\n|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n",
    );
    let mut rows: Vec<&WanRunResult> = results.iter().collect();
    rows.sort_by(|a, b| {
        (&a.key_id, a.clients, !a.one_round_enabled).cmp(&(
            &b.key_id,
            b.clients,
            !b.one_round_enabled,
        ))
    });
    for r in rows {
        let quorums: Vec<String> = r
            .quorums
            .iter()
            .map(|(q, n)| format!("{q} ({:.0}%)", *n as f64 * 100.0 / r.ok.max(1) as f64))
            .collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1}% | {:.0} | {} | {:.1} | {} | {} |\n",
            r.key_id,
            r.policy,
            r.clients,
            if r.one_round_enabled { "one" } else { "two" },
            r.p50_ms,
            r.p99_ms,
            r.target_ms,
            r.p50_vs_target,
            r.one_round_share * 100.0,
            r.throughput_sps,
            r.errors,
            r.quorum_rtt_ms,
            r.nearest_quorum.join("+"),
            quorums.join(", ")
        ));
    }
    if let Some(r) = results.first() {
        out.push_str(&format!(
            "\nround trips from the coordinator's site (ms): {}\n",
            r.node_rtt_ms
                .iter()
                .map(|(n, ms)| format!("{n} {ms:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eu_keys_nearest_lawful_quorum_takes_two_eu_nodes_even_when_a_foreign_one_is_nearer() {
        let spec = NetworkSpec::default_five_regions();
        let eu = spec
            .keys
            .iter()
            .find(|k| k.key_id == "eu-payments")
            .expect("eu key");
        let open = spec
            .keys
            .iter()
            .find(|k| k.policy.is_none())
            .expect("open key");
        // node-4 (US) nearer than node-2 and node-3 (EU).
        let rtt: BTreeMap<String, f64> = [
            ("node-1", 1.0),
            ("node-2", 30.0),
            ("node-3", 40.0),
            ("node-4", 5.0),
            ("node-5", 200.0),
        ]
        .into_iter()
        .map(|(n, ms)| (n.to_string(), ms))
        .collect();
        let (q, ms) = nearest_lawful_quorum(&spec, eu, &rtt).expect("quorum");
        assert_eq!(q, ["node-1", "node-2", "node-4"]);
        assert_eq!(ms, 30.0);
        let (q, ms) = nearest_lawful_quorum(&spec, open, &rtt).expect("quorum");
        assert_eq!(q, ["node-1", "node-2", "node-4"]);
        assert_eq!(ms, 30.0);
    }
}
