//! The coordinator's gauges that are read when Prometheus scrapes rather than
//! counted as things happen: pooled commitments, each node's availability, each
//! known key's threshold and reachable holders, and the own certificate's expiry.
//!
//! The per-key pair is what an alert compares: a key with fewer reachable holders
//! than its threshold cannot sign, and with exactly its threshold one more failure
//! stops it.

use std::sync::Arc;

use quorate_transport::metrics::Registry;

use crate::keys::KeyDirectory;
use crate::metric;
use crate::nodes::NodePool;
use crate::pool::CommitmentPool;

/// What the gauges are read from.
#[derive(Debug)]
pub struct Gauges {
    /// The nodes, for their availability.
    pub pool: Arc<NodePool>,
    /// The one-round commitment pool.
    pub commitments: Arc<CommitmentPool>,
    /// The known keys (as cached: a scrape never waits for the nodes).
    pub keys: Arc<KeyDirectory>,
    /// The own TLS material, for the current certificate's `notAfter` (it follows
    /// renewals).
    pub tls: quorate_transport::tls::TlsMaterial,
}

impl Gauges {
    /// Sets every gauge in `registry`.
    pub fn set(&self, registry: &Registry) {
        registry
            .gauge(
                metric::POOLED_COMMITMENTS,
                "Commitments pooled for one-round signing.",
            )
            .set(whole(self.commitments.len()));
        let available = registry.gauge_vec(
            metric::NODE_AVAILABLE,
            "Whether requests currently use the node (1) or skip it (0).",
            ["node"],
        );
        for node in self.pool.all() {
            available.set([&node.id], i64::from(node.is_available()));
        }
        for key in self.keys.cached() {
            set_key_gauges(
                registry,
                &key.manifest.key_id,
                key.manifest.threshold,
                key.reachable_holders(&self.pool),
            );
        }
        if let Ok(not_after) = self.tls.certificate_not_after() {
            registry
                .gauge(
                    metric::CERTIFICATE_NOT_AFTER,
                    "When the coordinator's own mTLS certificate expires (notAfter), Unix seconds.",
                )
                .set(not_after);
        }
    }
}

/// A count as a gauge value (gauges are `i64`; no count here comes near the limit).
fn whole(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Sets the threshold and reachable-holder gauges of key `key_id`.
pub fn set_key_gauges(registry: &Registry, key_id: &str, threshold: u16, reachable: usize) {
    registry
        .gauge_vec(
            metric::KEY_THRESHOLD,
            "Signers the key needs (its threshold t), by key.",
            ["key_id"],
        )
        .set([key_id], i64::from(threshold));
    registry
        .gauge_vec(
            metric::KEY_REACHABLE_HOLDERS,
            "The key's participants that requests would ask now (configured, attesting the key, and available), by key.",
            ["key_id"],
        )
        .set([key_id], whole(reachable));
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_transport::metrics::sample;

    #[test]
    fn key_gauges_export_threshold_and_reachable_holders_by_key() {
        let registry = Registry::new();
        set_key_gauges(&registry, "demo", 3, 5);
        set_key_gauges(&registry, "demo", 3, 3);
        set_key_gauges(&registry, "eu", 2, 1);
        let text = registry.render();
        assert!(text.contains("# TYPE quorate_coordinator_key_threshold gauge"));
        assert!(text.contains("# TYPE quorate_coordinator_key_reachable_holders gauge"));
        let get = |series: &str| sample(&text, series);
        assert_eq!(
            get("quorate_coordinator_key_threshold{key_id=\"demo\"}"),
            Some(3.0)
        );
        assert_eq!(
            get("quorate_coordinator_key_reachable_holders{key_id=\"demo\"}"),
            Some(3.0),
            "the latest reading replaces the earlier one"
        );
        assert_eq!(
            get("quorate_coordinator_key_reachable_holders{key_id=\"eu\"}"),
            Some(1.0)
        );
    }
}
