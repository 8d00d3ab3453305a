//! The node's metrics: their names (one place, so the docs and tests agree with the
//! code) and [`NodeMetrics`], through which the handlers count what happened.
//!
//! Used by the node's state, the signing steps and the gRPC adapters; exported by
//! the server's metrics listener. Invariant: names, labels and help texts are read
//! by dashboards, docs and the testnet's checks; each is written here once.

use std::sync::Arc;
use std::time::Duration;

use quorate_transport::metrics::Registry;

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

/// Reports each audit log flush's duration to `registry` (called on the log's
/// flusher thread).
pub fn audit_flush_observer(registry: Arc<Registry>) -> FlushObserver {
    Box::new(move |took: Duration| {
        registry.observe(
            AUDIT_FLUSH_SECONDS,
            "Audit log flushes to disk (fdatasync) by duration; concurrent records share one.",
            &[],
            took.as_secs_f64(),
        )
    })
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
    registry.set(
        NONCE_POOL,
        "Outstanding single-use nonces.",
        &[],
        nonces as f64,
    );
    registry.set(KEYS, "Keys held.", &[], keys as f64);
    registry.set(
        AUDIT_RECORDS,
        "Audit records written.",
        &[],
        audit_records as f64,
    );
    registry.set(
        AUDIT_LOG_BROKEN,
        "1 once the audit log can no longer be made durable (round 2 refused until restart), else 0.",
        &[],
        if audit_broken { 1.0 } else { 0.0 },
    );
}

/// Sets the gauge of the node's own certificate's expiry (`not_after`, Unix seconds).
pub fn set_certificate_not_after(registry: &Registry, not_after: i64) {
    registry.set(
        CERTIFICATE_NOT_AFTER,
        "When the node's own mTLS certificate expires (notAfter), Unix seconds.",
        &[],
        not_after as f64,
    );
}

/// The node's counters and histograms, by what they count.
#[derive(Debug, Clone)]
pub struct NodeMetrics(Arc<Registry>);

impl NodeMetrics {
    /// Declares the node's counters in `registry`, so that they are exported (at
    /// zero) before anything has happened.
    pub fn new(registry: Arc<Registry>) -> Self {
        for (name, help) in [
            (REQUESTS, "Requests by RPC."),
            (ERRORS, "Failed requests by RPC and gRPC code."),
            (
                POLICY_DENIALS,
                "Round-2 requests refused by the key's policy.",
            ),
            (
                FAILOVERS,
                "Shares issued to out-of-policy quorums under an approval token.",
            ),
        ] {
            registry.declare_counter(name, help);
        }
        Self(registry)
    }

    /// Counts a call of `rpc` and, if it failed, its gRPC code.
    pub fn request<T>(&self, rpc: &str, result: &Result<T, NodeError>) {
        self.0.inc(REQUESTS, "Requests by RPC.", &[("rpc", rpc)], 1);
        if let Err(e) = result {
            let code = format!("{:?}", e.code());
            self.0.inc(
                ERRORS,
                "Failed requests by RPC and gRPC code.",
                &[("rpc", rpc), ("code", &code)],
                1,
            );
        }
    }

    /// Counts a round-2 request the key's policy refused, by `reason`.
    pub fn policy_denial(&self, reason: &str) {
        self.0.inc(
            POLICY_DENIALS,
            "Round-2 requests refused by the key's policy.",
            &[("reason", reason)],
            1,
        );
    }

    /// Counts a share issued to an out-of-policy quorum under an approval token.
    pub fn failover(&self) {
        self.0.inc(
            FAILOVERS,
            "Shares issued to out-of-policy quorums under an approval token.",
            &[],
            1,
        );
    }

    /// Observes how long a round-2 answer took, from its call's arrival until its
    /// record was on disk.
    pub fn sign_latency(&self, took: Duration) {
        self.0.observe(
            SIGN_LATENCY,
            "Round-2 latency (policy checks, signing, durable audit record).",
            &[],
            took.as_secs_f64(),
        );
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
}
