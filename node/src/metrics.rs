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

/// Sets the gauges that are read rather than counted.
pub fn set_gauges(registry: &Registry, nonces: usize, keys: usize, audit_records: u64) {
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
