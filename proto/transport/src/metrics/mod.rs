//! Prometheus metrics: a [`Registry`] of counters, gauges and histograms kept by the
//! official Prometheus client (`prometheus-client`) and rendered in the Prometheus
//! text exposition format (version 0.0.4), and the scrape endpoint ([`serve`]) that
//! answers `GET /metrics` over plain HTTP/1.1 (hyper). The endpoint is meant for a
//! private monitoring network; it exposes counts and latencies only, never key
//! material or messages.
//!
//! Invariant: a metric is exported under exactly the name it is registered with
//! (counters included: their names end in `_total` here as on the wire), because
//! dashboards, alert rules, docs and the testnet read those names.

mod endpoint;
mod registry;

pub use endpoint::{scrape, serve, Refresh};
pub use registry::{
    Counter, CounterVec, Gauge, GaugeVec, Histogram, Registry, CONTENT_TYPE, LATENCY_BUCKETS,
};

/// The value of `series` (its name and labels exactly as [`Registry::render`] writes
/// them, e.g. `quorate_node_sign_share_seconds_sum`) in exposition `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The `# TYPE` lines of exposition `text`: each family's name and type, in order.
/// For tests that pin what is exported.
pub fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let (name, kind) = line.strip_prefix("# TYPE ")?.split_once(' ')?;
            Some((name.to_string(), kind.to_string()))
        })
        .collect()
}
