//! Prometheus metrics: a small registry of counters, gauges and histograms with
//! labels, rendered in the text exposition format and served over plain HTTP at
//! `GET /metrics` (a scrape endpoint meant for a private monitoring network; it
//! exposes counts and latencies only, never key material or messages).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Latency buckets in seconds. They start at 0.1 ms: a local disk's `fdatasync` and a
/// lone round-2 share on a node take a fraction of a millisecond.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

type Labels = Vec<(String, String)>;

#[derive(Debug)]
enum Series {
    Counter(BTreeMap<Labels, u64>),
    Gauge(BTreeMap<Labels, f64>),
    Histogram(BTreeMap<Labels, Histogram>),
}

#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    series: Series,
}

/// A metrics registry. Cheap to share (`Arc`); every update takes one short lock.
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn with_family<R>(
        &self,
        name: &'static str,
        help: &'static str,
        make: fn() -> Series,
        f: impl FnOnce(&mut Series) -> R,
    ) -> R {
        let mut families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            series: make(),
        });
        f(&mut family.series)
    }

    /// Declares a counter so it is rendered (at 0) before its first increment.
    pub fn declare_counter(&self, name: &'static str, help: &'static str) {
        self.with_family(name, help, || Series::Counter(BTreeMap::new()), |_| ());
    }

    /// Adds `by` to counter `name` with `labels`.
    pub fn inc(&self, name: &'static str, help: &'static str, pairs: &[(&str, &str)], by: u64) {
        self.with_family(
            name,
            help,
            || Series::Counter(BTreeMap::new()),
            |s| {
                if let Series::Counter(m) = s {
                    *m.entry(labels(pairs)).or_default() += by;
                }
            },
        );
    }

    /// Sets gauge `name` with `labels` to `value`.
    pub fn set(&self, name: &'static str, help: &'static str, pairs: &[(&str, &str)], value: f64) {
        self.with_family(
            name,
            help,
            || Series::Gauge(BTreeMap::new()),
            |s| {
                if let Series::Gauge(m) = s {
                    m.insert(labels(pairs), value);
                }
            },
        );
    }

    /// Records `seconds` in histogram `name` with `labels`.
    pub fn observe(
        &self,
        name: &'static str,
        help: &'static str,
        pairs: &[(&str, &str)],
        seconds: f64,
    ) {
        self.with_family(
            name,
            help,
            || Series::Histogram(BTreeMap::new()),
            |s| {
                if let Series::Histogram(m) = s {
                    let h = m.entry(labels(pairs)).or_insert_with(|| Histogram {
                        buckets: vec![0; LATENCY_BUCKETS.len()],
                        ..Histogram::default()
                    });
                    for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                        if seconds <= *bound {
                            h.buckets[i] += 1;
                        }
                    }
                    h.sum += seconds;
                    h.count += 1;
                }
            },
        );
    }

    /// The current value of a counter (for tests and reports).
    pub fn counter_value(&self, name: &str, pairs: &[(&str, &str)]) -> u64 {
        let families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        match families.get(name).map(|f| &f.series) {
            Some(Series::Counter(m)) => m.get(&labels(pairs)).copied().unwrap_or(0),
            _ => 0,
        }
    }

    /// Renders every family in the Prometheus text format.
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let fmt_labels = |l: &Labels, extra: Option<(&str, String)>| {
            let mut parts: Vec<String> = l
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            if let Some((k, v)) = extra {
                parts.push(format!("{k}=\"{v}\""));
            }
            if parts.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", parts.join(","))
            }
        };
        for (name, family) in families.iter() {
            let kind = match family.series {
                Series::Counter(_) => "counter",
                Series::Gauge(_) => "gauge",
                Series::Histogram(_) => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            match &family.series {
                Series::Counter(m) => {
                    for (l, v) in m {
                        let _ = writeln!(out, "{name}{} {v}", fmt_labels(l, None));
                    }
                }
                Series::Gauge(m) => {
                    for (l, v) in m {
                        let _ = writeln!(out, "{name}{} {v}", fmt_labels(l, None));
                    }
                }
                Series::Histogram(m) => {
                    for (l, h) in m {
                        for (bound, count) in LATENCY_BUCKETS.iter().zip(&h.buckets) {
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {count}",
                                fmt_labels(l, Some(("le", bound.to_string())))
                            );
                        }
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {}",
                            fmt_labels(l, Some(("le", "+Inf".into()))),
                            h.count
                        );
                        let _ = writeln!(out, "{name}_sum{} {}", fmt_labels(l, None), h.sum);
                        let _ = writeln!(out, "{name}_count{} {}", fmt_labels(l, None), h.count);
                    }
                }
            }
        }
        out
    }
}

/// Reads `GET /metrics` from the endpoint at `addr` ([`serve`]): the exposition text,
/// without the HTTP head. For the bench and tests, which read the processes they
/// start.
pub async fn scrape(addr: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\n\r\n")
        .await?;
    let mut response = String::new();
    // The server closes the connection after its answer.
    stream.read_to_string(&mut response).await?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(std::io::Error::other(format!(
            "{addr} did not serve metrics: {:?}",
            response.lines().next().unwrap_or("no answer")
        ))),
    }
}

/// The value of `series` (its name and labels exactly as [`Registry::render`] writes
/// them, e.g. `quorate_node_sign_share_seconds_sum`) in exposition `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Serves `GET /metrics` on `listener` until the task is dropped. `refresh` runs
/// before each scrape to update gauges that are read rather than counted.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    refresh: Arc<dyn Fn(&Registry) + Send + Sync>,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let registry = registry.clone();
        let refresh = refresh.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            // Read the request head (bounded in size and time).
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while len < buf.len() {
                    match stream.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            len += n;
                            if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let response = if head.starts_with("GET /metrics ") || head.starts_with("GET /metrics?")
            {
                refresh(&registry);
                let body = registry.render();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let r = Registry::new();
        r.inc("q_requests_total", "Requests.", &[("rpc", "Sign")], 2);
        r.set("q_nonces", "Nonces.", &[], 7.0);
        r.observe("q_latency_seconds", "Latency.", &[], 0.003);
        let text = r.render();
        assert!(text.contains("# TYPE q_requests_total counter"));
        assert!(text.contains("q_requests_total{rpc=\"Sign\"} 2"));
        assert!(text.contains("q_nonces 7"));
        assert!(text.contains("q_latency_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("q_latency_seconds_bucket{le=\"0.001\"} 0"));
        assert!(text.contains("q_latency_seconds_count 1"));
        assert_eq!(r.counter_value("q_requests_total", &[("rpc", "Sign")]), 2);
    }

    #[tokio::test]
    async fn scrape_reads_what_serve_renders() {
        let registry = Registry::new();
        registry.inc("q_requests_total", "Requests.", &[("rpc", "Sign")], 2);
        registry.observe("q_latency_seconds", "Latency.", &[], 0.003);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let refreshed = Arc::new(AtomicU64::new(0));
        let refresh = {
            let refreshed = refreshed.clone();
            Arc::new(move |r: &Registry| {
                let n = refreshed.fetch_add(1, Ordering::Relaxed) + 1;
                r.set("q_scrapes", "Scrapes.", &[], n as f64);
            })
        };
        let server = tokio::spawn(serve(listener, registry, refresh));
        let text = scrape(&addr).await.unwrap();
        assert!(!text.starts_with("HTTP/"), "the head is stripped: {text}");
        assert_eq!(sample(&text, "q_requests_total{rpc=\"Sign\"}"), Some(2.0));
        assert_eq!(sample(&text, "q_latency_seconds_sum"), Some(0.003));
        assert_eq!(sample(&text, "q_latency_seconds_count"), Some(1.0));
        assert_eq!(sample(&text, "q_scrapes"), Some(1.0));
        // A name that is only the start of another series is not that series.
        assert_eq!(sample(&text, "q_latency_seconds"), None);
        assert_eq!(sample(&text, "q_missing"), None);
        server.abort();
        let _ = server.await;
        assert!(
            scrape(&addr).await.is_err(),
            "nothing serves {addr} any more"
        );
    }
}
