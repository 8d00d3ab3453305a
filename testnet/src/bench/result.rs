//! [`SuiteResult`]: what one ciphersuite's run measured, as `bench` prints it in
//! the table and in the `--json` line (its field names are that line's keys).

use std::collections::BTreeMap;

use serde::Serialize;

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
    /// One signature's signed-intent work on one thread: the client signs the
    /// intent, the coordinator and each of the `t` signers verify it (ms).
    pub intent_ms: f64,
    /// `limit_sps` with `intent_ms` of CPU added to every signature: the in-process
    /// limit of what the network must do per signature.
    pub intent_limit_sps: f64,
    /// `throughput_sps / intent_limit_sps`.
    pub intent_ratio: f64,
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
