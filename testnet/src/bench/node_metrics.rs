//! The nodes' round-2 and audit-flush timings, scraped from their Prometheus
//! endpoints before and after a run, so `bench` can say where a signature's time
//! went on the nodes.

use std::time::Duration;

use quorate_transport::metrics;

/// The nodes' round-2 and audit-flush metrics, summed over all nodes.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct NodeTimings {
    pub(super) share_seconds: f64,
    pub(super) shares: f64,
    pub(super) flush_seconds: f64,
    pub(super) flushes: f64,
    pub(super) records: f64,
}

impl NodeTimings {
    /// Reads every node's metrics endpoint; `None` if any cannot be read.
    pub(super) async fn scrape(addrs: &[String]) -> Option<Self> {
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
    pub(super) fn means_until(&self, later: &Self) -> (Option<f64>, Option<f64>, Option<f64>) {
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
