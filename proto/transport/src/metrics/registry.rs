//! The registry: metric families of the official Prometheus client, registered under
//! the names the dashboards, alert rules and docs read, and rendered in the
//! Prometheus text format (version 0.0.4, what Prometheus has always parsed).
//!
//! Two details of the client are absorbed here so that names and help texts stay
//! exactly what callers write: the client appends `_total` to a counter's name and a
//! full stop to every help text, so a counter is registered without its `_total`
//! and a help text without its final full stop.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Metric;

/// A counter (`u64`); cheap to clone, every clone counts into the same series.
pub type Counter = prometheus_client::metrics::counter::Counter;
/// A gauge (`i64`: every gauge Quorate exports is a whole number).
pub type Gauge = prometheus_client::metrics::gauge::Gauge;
/// A histogram; registered by [`Registry::histogram`] with [`LATENCY_BUCKETS`].
pub type Histogram = prometheus_client::metrics::histogram::Histogram;

/// The `Content-Type` of [`Registry::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Latency buckets in seconds. They start at 0.1 ms: a local disk's `fdatasync` and a
/// lone round-2 share on a node take a fraction of a millisecond.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A series' labels: the family's label names with this series' values.
type LabelSet<const N: usize> = [(&'static str, String); N];

/// A family of counters with the label names `N` fixed at registration.
#[derive(Debug, Clone)]
pub struct CounterVec<const N: usize> {
    names: [&'static str; N],
    family: Family<LabelSet<N>, Counter>,
}

impl<const N: usize> CounterVec<N> {
    /// Adds one to the series with label `values` (in the order of the names).
    pub fn inc(&self, values: [&str; N]) {
        self.inc_by(values, 1);
    }

    /// Adds `by` to the series with label `values`; `by` = 0 exports the series at
    /// zero before anything is counted.
    pub fn inc_by(&self, values: [&str; N], by: u64) {
        self.family
            .get_or_create(&labels(self.names, values))
            .inc_by(by);
    }

    /// The current value of the series with label `values` (0 if never counted).
    pub fn get(&self, values: [&str; N]) -> u64 {
        self.family
            .get(&labels(self.names, values))
            .map_or(0, |c| c.get())
    }
}

/// A family of gauges with the label names `N` fixed at registration.
#[derive(Debug, Clone)]
pub struct GaugeVec<const N: usize> {
    names: [&'static str; N],
    family: Family<LabelSet<N>, Gauge>,
}

impl<const N: usize> GaugeVec<N> {
    /// Sets the series with label `values` to `value`.
    pub fn set(&self, values: [&str; N], value: i64) {
        self.family
            .get_or_create(&labels(self.names, values))
            .set(value);
    }
}

fn labels<const N: usize>(names: [&'static str; N], values: [&str; N]) -> LabelSet<N> {
    std::array::from_fn(|i| (names[i], values[i].to_string()))
}

/// A metrics registry. Cheap to share (`Arc`). Updates go to the metric handles the
/// registration methods return (atomics, no registry lock); the lock is taken only
/// to register and to render.
#[derive(Default)]
pub struct Registry {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    registry: prometheus_client::registry::Registry,
    /// A handle to every registered metric by its exported name, so that asking for
    /// a name again returns the same metric instead of exporting the name twice.
    handles: BTreeMap<&'static str, Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f.debug_struct("Registry")
            .field("metrics", &state.handles.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The counter exported as `name` (which ends in `_total`), registered on first
    /// use; exported at 0 from then on.
    pub fn counter(&self, name: &'static str, help: &'static str) -> Counter {
        self.register(name, counter_name(name), help, Counter::default)
    }

    /// The family of counters exported as `name` (which ends in `_total`) with the
    /// label names `labels`, registered on first use. A series is exported once it
    /// is first counted.
    pub fn counter_vec<const N: usize>(
        &self,
        name: &'static str,
        help: &'static str,
        labels: [&'static str; N],
    ) -> CounterVec<N> {
        self.register(name, counter_name(name), help, || CounterVec {
            names: labels,
            family: Family::default(),
        })
    }

    /// The gauge exported as `name`, registered on first use.
    pub fn gauge(&self, name: &'static str, help: &'static str) -> Gauge {
        self.register(name, name, help, Gauge::default)
    }

    /// The family of gauges exported as `name` with the label names `labels`,
    /// registered on first use.
    pub fn gauge_vec<const N: usize>(
        &self,
        name: &'static str,
        help: &'static str,
        labels: [&'static str; N],
    ) -> GaugeVec<N> {
        self.register(name, name, help, || GaugeVec {
            names: labels,
            family: Family::default(),
        })
    }

    /// The histogram exported as `name` with [`LATENCY_BUCKETS`] (in seconds),
    /// registered on first use.
    pub fn histogram(&self, name: &'static str, help: &'static str) -> Histogram {
        self.register(name, name, help, || {
            Histogram::new(LATENCY_BUCKETS.iter().copied())
        })
    }

    /// The metric exported as `name`: the one registered before, or `make()`
    /// registered as `registered_name` (what the client turns into `name`).
    fn register<M>(
        &self,
        name: &'static str,
        registered_name: &'static str,
        help: &'static str,
        make: impl FnOnce() -> M,
    ) -> M
    where
        M: Clone + Send + Sync + 'static + Exported,
    {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = state.handles.get(name) {
            if let Some(metric) = existing.downcast_ref::<M>() {
                return metric.clone();
            }
            // A programming error (one name for two kinds of metric), pinned by the
            // tests that list every exported family; never worth stopping a signer.
            tracing::error!(
                metric = name,
                "metric registered twice as different types; the second is not exported"
            );
            return make();
        }
        let metric = make();
        // The client adds the full stop itself.
        let help = help.strip_suffix('.').unwrap_or(help);
        metric.register(&mut state.registry, registered_name, help);
        state.handles.insert(name, Box::new(metric.clone()));
        metric
    }

    /// Renders every metric in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug in the
        // client, and a scrape is better served what was rendered than nothing.
        if let Err(e) = prometheus_text::encode(&mut out, &state.registry) {
            tracing::error!("rendering metrics failed: {e}");
        }
        out
    }
}

/// What the client registers of each kind of handle.
trait Exported {
    fn register(
        &self,
        registry: &mut prometheus_client::registry::Registry,
        name: &str,
        help: &str,
    );
}

fn register_metric(
    registry: &mut prometheus_client::registry::Registry,
    name: &str,
    help: &str,
    metric: impl Metric,
) {
    registry.register(name, help, metric);
}

impl Exported for Counter {
    fn register(&self, r: &mut prometheus_client::registry::Registry, name: &str, help: &str) {
        register_metric(r, name, help, self.clone());
    }
}

impl Exported for Gauge {
    fn register(&self, r: &mut prometheus_client::registry::Registry, name: &str, help: &str) {
        register_metric(r, name, help, self.clone());
    }
}

impl Exported for Histogram {
    fn register(&self, r: &mut prometheus_client::registry::Registry, name: &str, help: &str) {
        register_metric(r, name, help, self.clone());
    }
}

impl<const N: usize> Exported for CounterVec<N> {
    fn register(&self, r: &mut prometheus_client::registry::Registry, name: &str, help: &str) {
        register_metric(r, name, help, self.family.clone());
    }
}

impl<const N: usize> Exported for GaugeVec<N> {
    fn register(&self, r: &mut prometheus_client::registry::Registry, name: &str, help: &str) {
        register_metric(r, name, help, self.family.clone());
    }
}

/// The name a counter exported as `name` is registered under: the client appends
/// `_total` itself.
fn counter_name(name: &'static str) -> &'static str {
    name.strip_suffix("_total").unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format_with_names_help_and_buckets_as_registered() {
        let r = Registry::new();
        r.counter_vec("q_requests_total", "Requests by RPC.", ["rpc", "code"])
            .inc_by(["Sign", "Ok"], 2);
        r.counter("q_retries_total", "Retries.");
        r.gauge("q_nonces", "Nonces.").set(7);
        r.gauge_vec("q_available", "Availability.", ["node"])
            .set(["node-\"1\"\\"], 1);
        r.histogram("q_latency_seconds", "Latency.").observe(0.003);
        let want = "\
# HELP q_requests_total Requests by RPC.
# TYPE q_requests_total counter
q_requests_total{rpc=\"Sign\",code=\"Ok\"} 2
# HELP q_retries_total Retries.
# TYPE q_retries_total counter
q_retries_total 0
# HELP q_nonces Nonces.
# TYPE q_nonces gauge
q_nonces 7
# HELP q_available Availability.
# TYPE q_available gauge
q_available{node=\"node-\\\"1\\\"\\\\\"} 1
# HELP q_latency_seconds Latency.
# TYPE q_latency_seconds histogram
q_latency_seconds_bucket{le=\"0.0001\"} 0
q_latency_seconds_bucket{le=\"0.00025\"} 0
q_latency_seconds_bucket{le=\"0.0005\"} 0
q_latency_seconds_bucket{le=\"0.001\"} 0
q_latency_seconds_bucket{le=\"0.0025\"} 0
q_latency_seconds_bucket{le=\"0.005\"} 1
q_latency_seconds_bucket{le=\"0.01\"} 1
q_latency_seconds_bucket{le=\"0.025\"} 1
q_latency_seconds_bucket{le=\"0.05\"} 1
q_latency_seconds_bucket{le=\"0.1\"} 1
q_latency_seconds_bucket{le=\"0.25\"} 1
q_latency_seconds_bucket{le=\"0.5\"} 1
q_latency_seconds_bucket{le=\"1\"} 1
q_latency_seconds_bucket{le=\"2.5\"} 1
q_latency_seconds_bucket{le=\"5\"} 1
q_latency_seconds_bucket{le=\"+Inf\"} 1
q_latency_seconds_sum 0.003
q_latency_seconds_count 1
";
        assert_eq!(r.render(), want);
    }

    #[test]
    fn a_name_asked_for_again_is_the_same_metric_exported_once() {
        let r = Registry::new();
        let a = r.counter_vec("q_requests_total", "Requests.", ["rpc"]);
        let b = r.counter_vec("q_requests_total", "Requests.", ["rpc"]);
        a.inc(["Sign"]);
        b.inc_by(["Sign"], 2);
        assert_eq!(a.get(["Sign"]), 3);
        assert_eq!(a.get(["Commit"]), 0);
        r.gauge("q_nonces", "Nonces.").set(1);
        r.gauge("q_nonces", "Nonces.").set(4);
        let text = r.render();
        assert_eq!(text.matches("# TYPE q_requests_total counter").count(), 1);
        assert_eq!(text.matches("# TYPE q_nonces gauge").count(), 1);
        assert!(text.contains("q_nonces 4\n"), "{text}");
        // The same name as another kind of metric is not exported a second time.
        r.counter("q_nonces", "Not a counter.").inc();
        assert_eq!(r.render(), text);
    }
}
