//! The node's metrics: their names (one place, so the docs and tests agree with the
//! code) and [`NodeMetrics`], through which the handlers count what happened.
//!
//! Used by the node's state, the signing steps and the gRPC adapters; exported by
//! the server's metrics listener. Invariant: names, labels and help texts are read
//! by dashboards, docs and the testnet's checks; each is written here once.

use std::time::Duration;

use quorate_transport::metrics::{Counter, CounterVec, Histogram, Registry};

use crate::audit::FlushObserver;
use crate::error::NodeError;

/// Requests by RPC.
pub const REQUESTS: &str = "quorate_node_requests_total";
/// Failed requests by RPC and gRPC code.
pub const ERRORS: &str = "quorate_node_errors_total";
/// Round-2 latency.
pub const SIGN_LATENCY: &str = "quorate_node_sign_share_seconds";
/// Outstanding nonces.
pub const NONCE_POOL: &str = "quorate_node_nonce_pool_size";
/// Round-2 requests refused by policy, by reason.
pub const POLICY_DENIALS: &str = "quorate_node_policy_denials_total";
/// Shares issued for an out-of-policy quorum under an approval token.
pub const FAILOVERS: &str = "quorate_node_failovers_total";
/// Keys held.
pub const KEYS: &str = "quorate_node_keys";
/// Audit records written.
pub const AUDIT_RECORDS: &str = "quorate_node_audit_records";
/// Audit log flushes to disk by duration (group commits: under load fewer than
/// records, so `_count` grows slower than the records).
pub const AUDIT_FLUSH_SECONDS: &str = "quorate_node_audit_flush_seconds";
/// 1 once the audit log can no longer be made durable (a flush or write failed; the
/// node refuses round 2 until restarted), else 0.
pub const AUDIT_LOG_BROKEN: &str = "quorate_node_audit_log_broken";
/// When the node's own mTLS certificate expires (its `notAfter`), seconds since the
/// Unix epoch.
pub const CERTIFICATE_NOT_AFTER: &str = "quorate_node_certificate_not_after_seconds";
/// Configured key-encryption key providers that could not open the store at startup.
pub const KEK_PROVIDERS_UNAVAILABLE: &str = "quorate_node_kek_providers_unavailable";

/// 1 once this node, as a witness, holds evidence that the peer's audit log is not
/// the one it cosigned (by `peer`), else 0.
pub const WITNESS_INCONSISTENT: &str = "quorate_node_witness_inconsistent";
/// When this node last verified a checkpoint of the peer's audit log consistent with
/// the one it cosigned (by `peer`), Unix seconds.
pub const WITNESS_LAST_CHECKED: &str = "quorate_node_witness_last_checked_seconds";
/// Witness checks of a peer's audit log, by `peer` and `outcome`.
pub const WITNESS_CHECKS: &str = "quorate_node_witness_checks_total";

/// Reports each audit log flush's duration to `registry` (called on the log's
/// flusher thread).
pub fn audit_flush_observer(registry: &Registry) -> FlushObserver {
    let flushes = registry.histogram(
        AUDIT_FLUSH_SECONDS,
        "Audit log flushes to disk (fdatasync) by duration; concurrent records share one.",
    );
    Box::new(move |took: Duration| flushes.observe(took.as_secs_f64()))
}

/// What the gauges read rather than counted show.
#[derive(Debug, Clone, Copy)]
pub struct GaugeReadings {
    /// Outstanding nonces.
    pub nonces: usize,
    /// Keys held.
    pub keys: usize,
    /// Audit records written.
    pub audit_records: u64,
    /// Whether the audit log can no longer be made durable.
    pub audit_broken: bool,
}

/// Sets the gauges that are read rather than counted.
pub fn set_gauges(registry: &Registry, readings: GaugeReadings) {
    let GaugeReadings {
        nonces,
        keys,
        audit_records,
        audit_broken,
    } = readings;
    registry
        .gauge(NONCE_POOL, "Outstanding single-use nonces.")
        .set(whole(nonces as u64));
    registry.gauge(KEYS, "Keys held.").set(whole(keys as u64));
    registry
        .gauge(AUDIT_RECORDS, "Audit records written.")
        .set(whole(audit_records));
    registry
        .gauge(
            AUDIT_LOG_BROKEN,
            "1 once the audit log can no longer be made durable (round 2 refused until restart), else 0.",
        )
        .set(i64::from(audit_broken));
}

/// A count as a gauge value (gauges are `i64`; no count here comes near the limit).
fn whole(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Sets the gauge of the node's own certificate's expiry (`not_after`, Unix seconds).
pub fn set_certificate_not_after(registry: &Registry, not_after: i64) {
    registry
        .gauge(
            CERTIFICATE_NOT_AFTER,
            "When the node's own mTLS certificate expires (notAfter), Unix seconds.",
        )
        .set(not_after);
}

/// Sets how many configured KEK providers could not unwrap the store's DEK when the
/// node started (it runs on the others; each is named in the startup log).
pub fn set_kek_providers_unavailable(registry: &Registry, count: usize) {
    registry
        .gauge(
            KEK_PROVIDERS_UNAVAILABLE,
            "Configured key-encryption key providers that could not open the store at startup.",
        )
        .set(whole(count as u64));
}

/// The node's counters and histograms, by what they count.
#[derive(Debug, Clone)]
pub struct NodeMetrics {
    requests: CounterVec<1>,
    errors: CounterVec<2>,
    policy_denials: CounterVec<1>,
    failovers: Counter,
    sign_latency: Histogram,
}

impl NodeMetrics {
    /// Registers the node's counters and histograms in `registry`.
    pub fn new(registry: &Registry) -> Self {
        Self {
            requests: registry.counter_vec(REQUESTS, "Requests by RPC.", ["rpc"]),
            errors: registry.counter_vec(
                ERRORS,
                "Failed requests by RPC and gRPC code.",
                ["rpc", "code"],
            ),
            policy_denials: registry.counter_vec(
                POLICY_DENIALS,
                "Round-2 requests refused by the key's policy.",
                ["reason"],
            ),
            failovers: registry.counter(
                FAILOVERS,
                "Shares issued to out-of-policy quorums under an approval token.",
            ),
            sign_latency: registry.histogram(
                SIGN_LATENCY,
                "Round-2 latency (policy checks, signing, durable audit record).",
            ),
        }
    }

    /// Counts a call of `rpc` and, if it failed, its gRPC code.
    pub fn request<T>(&self, rpc: &str, result: &Result<T, NodeError>) {
        self.requests.inc([rpc]);
        if let Err(e) = result {
            self.errors.inc([rpc, &format!("{:?}", e.code())]);
        }
    }

    /// Counts a round-2 request the key's policy refused, by `reason`.
    pub fn policy_denial(&self, reason: &str) {
        self.policy_denials.inc([reason]);
    }

    /// Counts a share issued to an out-of-policy quorum under an approval token.
    pub fn failover(&self) {
        self.failovers.inc();
    }

    /// Observes how long a round-2 answer took, from its call's arrival until its
    /// record was on disk.
    pub fn sign_latency(&self, took: Duration) {
        self.sign_latency.observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_transport::metrics::sample;

    #[test]
    fn gauges_export_a_broken_audit_log_and_the_certificate_expiry() {
        let registry = Registry::new();
        let mut readings = GaugeReadings {
            nonces: 3,
            keys: 2,
            audit_records: 10,
            audit_broken: false,
        };
        set_gauges(&registry, readings);
        set_certificate_not_after(&registry, 1_900_000_000);
        let text = registry.render();
        assert_eq!(sample(&text, AUDIT_LOG_BROKEN), Some(0.0));
        assert_eq!(sample(&text, NONCE_POOL), Some(3.0));
        assert_eq!(sample(&text, CERTIFICATE_NOT_AFTER), Some(1.9e9));
        readings.audit_broken = true;
        set_gauges(&registry, readings);
        assert_eq!(sample(&registry.render(), AUDIT_LOG_BROKEN), Some(1.0));
    }

    /// The families the node exports, each with its help and type, exactly as the
    /// dashboards, alert rules and docs know them (the list is what the node served
    /// before the registry moved to `prometheus-client`).
    #[test]
    fn every_node_metric_keeps_its_name_help_and_type() {
        let registry = Registry::new();
        let metrics = NodeMetrics::new(&registry);
        let flushed = audit_flush_observer(&registry);
        flushed(Duration::from_micros(300));
        set_gauges(
            &registry,
            GaugeReadings {
                nonces: 0,
                keys: 0,
                audit_records: 0,
                audit_broken: false,
            },
        );
        set_certificate_not_after(&registry, 0);
        // Labelled families are rendered once they have a series.
        metrics.request::<()>("SignShare", &Err(NodeError::UnknownKey("demo".into())));
        metrics.policy_denial("rate_limited");
        let text = registry.render();
        let mut got: Vec<&str> = text.lines().filter(|l| l.starts_with("# ")).collect();
        got.sort_unstable();
        let want = [
            "# HELP quorate_node_audit_flush_seconds Audit log flushes to disk (fdatasync) by duration; concurrent records share one.",
            "# HELP quorate_node_audit_log_broken 1 once the audit log can no longer be made durable (round 2 refused until restart), else 0.",
            "# HELP quorate_node_audit_records Audit records written.",
            "# HELP quorate_node_certificate_not_after_seconds When the node's own mTLS certificate expires (notAfter), Unix seconds.",
            "# HELP quorate_node_errors_total Failed requests by RPC and gRPC code.",
            "# HELP quorate_node_failovers_total Shares issued to out-of-policy quorums under an approval token.",
            "# HELP quorate_node_keys Keys held.",
            "# HELP quorate_node_nonce_pool_size Outstanding single-use nonces.",
            "# HELP quorate_node_policy_denials_total Round-2 requests refused by the key's policy.",
            "# HELP quorate_node_requests_total Requests by RPC.",
            "# HELP quorate_node_sign_share_seconds Round-2 latency (policy checks, signing, durable audit record).",
            "# TYPE quorate_node_audit_flush_seconds histogram",
            "# TYPE quorate_node_audit_log_broken gauge",
            "# TYPE quorate_node_audit_records gauge",
            "# TYPE quorate_node_certificate_not_after_seconds gauge",
            "# TYPE quorate_node_errors_total counter",
            "# TYPE quorate_node_failovers_total counter",
            "# TYPE quorate_node_keys gauge",
            "# TYPE quorate_node_nonce_pool_size gauge",
            "# TYPE quorate_node_policy_denials_total counter",
            "# TYPE quorate_node_requests_total counter",
            "# TYPE quorate_node_sign_share_seconds histogram",
        ];
        assert_eq!(got, want, "{text}");
        assert!(
            text.contains("quorate_node_errors_total{rpc=\"SignShare\",code=\"NotFound\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("quorate_node_audit_flush_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{text}"
        );
    }
}
