//! Coordinator configuration: TOML plus `QUORATE_*` overrides, validated before any
//! port is bound.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use quorate_transport::identity::{PeerIdentity, Role};
use quorate_transport::tls::{TlsMaterial, TlsPaths};
use serde::Deserialize;

use crate::error::CoordError;

/// Environment variables that override config keys.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("QUORATE_TRUST_DOMAIN", "trust_domain"),
    ("QUORATE_LISTEN", "listen"),
    ("QUORATE_TLS_CA", "tls.ca"),
    ("QUORATE_TLS_CERT", "tls.cert"),
    ("QUORATE_TLS_KEY", "tls.key"),
    ("QUORATE_DEADLINE_MS", "signing.deadline_ms"),
    ("QUORATE_NODE_TIMEOUT_MS", "signing.node_timeout_ms"),
    ("QUORATE_METRICS_LISTEN", "metrics_listen"),
    ("QUORATE_HEALTH_LISTEN", "health_listen"),
    ("QUORATE_SHUTDOWN_GRACE_MS", "shutdown_grace_ms"),
    (
        "QUORATE_MAX_IN_FLIGHT_PER_CLIENT",
        "signing.max_in_flight_per_client",
    ),
];

/// The config file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfigFile {
    /// SPIFFE trust domain of every peer.
    pub trust_domain: String,
    /// Address to serve the `Signer` API on.
    pub listen: SocketAddr,
    /// mTLS files (certificate with role `coordinator`).
    pub tls: TlsPaths,
    /// The signer nodes.
    pub nodes: Vec<NodeEndpoint>,
    /// After SIGTERM or SIGINT, how long in-flight work may take to finish before
    /// the process exits anyway (milliseconds). New work is refused at once.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// Signing timing.
    #[serde(default)]
    pub signing: SigningSettings,
    /// Where to serve Prometheus metrics over plain HTTP (`GET /metrics`); off when
    /// absent. Bind it to a private monitoring interface.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Where to serve `grpc.health.v1` alone in plaintext, for probes without a
    /// client certificate (the kubelet's `grpc` probe); off when absent. Every other
    /// method there is `UNIMPLEMENTED`. Bind it to an interface only probes reach.
    #[serde(default)]
    pub health_listen: Option<SocketAddr>,
}

/// A node the coordinator may ask to sign.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeEndpoint {
    /// Node id, as in its certificate.
    pub id: String,
    /// `https://host:port`.
    pub endpoint: String,
}

/// Timing and quorum settings.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SigningSettings {
    /// Longest a `Sign` call may take when the caller sets no shorter gRPC deadline.
    pub deadline_ms: u64,
    /// Longest one node may take to answer one round.
    pub node_timeout_ms: u64,
    /// Extra nodes asked in round 1 beyond the threshold, so one slow or dead node
    /// does not stall a request.
    pub round1_extra: usize,
    /// How often key manifests are re-read from the nodes.
    pub key_refresh_secs: u64,
    /// How often node health is probed.
    pub health_interval_ms: u64,
    /// Commitments fetched from a node per batch for one-round signing (at most 64);
    /// 0 turns one-round signing off.
    pub preprocess_batch: u32,
    /// Longest a pooled commitment is used; keep it well below the nodes'
    /// `nonces.ttl_secs`.
    pub preprocess_max_age_secs: u64,
    /// Most `Sign` requests one client identity may have in flight at once; more get
    /// `RESOURCE_EXHAUSTED` at once instead of queueing, so one busy or hostile
    /// client cannot hold every quorum slot and all the coordinator's memory.
    pub max_in_flight_per_client: usize,
    /// Width of the latency bands in which nodes count as equally near when a
    /// quorum is chosen: differences within one band are jitter, not distance. A
    /// band wider than every node's latency orders candidates by health, home
    /// jurisdiction and manifest order alone (a fixed preferred quorum).
    pub latency_band_ms: u64,
}

impl Default for SigningSettings {
    fn default() -> Self {
        Self {
            deadline_ms: 5_000,
            node_timeout_ms: 1_500,
            round1_extra: 1,
            key_refresh_secs: 30,
            health_interval_ms: 1_000,
            preprocess_batch: 64,
            preprocess_max_age_secs: 60,
            max_in_flight_per_client: 256,
            latency_band_ms: 4,
        }
    }
}

impl SigningSettings {
    /// Default request deadline.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
    /// Per-node, per-round timeout.
    pub fn node_timeout(&self) -> Duration {
        Duration::from_millis(self.node_timeout_ms)
    }
}

fn default_shutdown_grace_ms() -> u64 {
    quorate_transport::runtime::DEFAULT_SHUTDOWN_GRACE_MS
}

impl CoordinatorConfigFile {
    /// How long a shutdown may finish in-flight work.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// A validated configuration.
#[derive(Debug)]
pub struct CoordinatorConfig {
    /// Values after overrides.
    pub file: CoordinatorConfigFile,
    /// Loaded mTLS material.
    pub tls: TlsMaterial,
}

fn config_err(msg: impl Into<String>) -> CoordError {
    CoordError::Config(msg.into())
}

impl CoordinatorConfig {
    /// Reads `path`, applies environment overrides, validates.
    pub fn load(path: &Path) -> Result<Self, CoordError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| config_err(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text, |v| std::env::var(v).ok())
    }

    /// Parses TOML text, applies overrides from `env`, validates.
    pub fn from_toml(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, CoordError> {
        let file: CoordinatorConfigFile =
            quorate_transport::config::from_toml_with_env(text, ENV_OVERRIDES, env)
                .map_err(|e| config_err(format!("config: {e}")))?;
        if file.nodes.is_empty() {
            return Err(config_err("no [[nodes]] configured"));
        }
        for (i, node) in file.nodes.iter().enumerate() {
            PeerIdentity::new(&file.trust_domain, Role::Node, &node.id)
                .map_err(|e| config_err(format!("nodes[{i}].id: {e}")))?;
            if !node.endpoint.starts_with("https://") {
                return Err(config_err(format!(
                    "nodes[{i}].endpoint {:?} must start with https:// (all traffic is mTLS)",
                    node.endpoint
                )));
            }
            if file.nodes[..i].iter().any(|n| n.id == node.id) {
                return Err(config_err(format!("node {} is listed twice", node.id)));
            }
        }
        let s = file.signing;
        if s.preprocess_batch > 64 {
            return Err(config_err("signing.preprocess_batch must be at most 64"));
        }
        if s.preprocess_batch > 0 && s.preprocess_max_age_secs == 0 {
            return Err(config_err("signing.preprocess_max_age_secs must be > 0"));
        }
        if s.deadline_ms == 0
            || s.node_timeout_ms == 0
            || s.key_refresh_secs == 0
            || s.health_interval_ms == 0
        {
            return Err(config_err("signing timeouts and intervals must be > 0"));
        }
        if s.max_in_flight_per_client == 0 {
            return Err(config_err("signing.max_in_flight_per_client must be > 0"));
        }
        if s.latency_band_ms == 0 {
            return Err(config_err("signing.latency_band_ms must be > 0"));
        }
        let tls = file.tls.load().map_err(|e| config_err(e.to_string()))?;
        let me = tls.identity();
        if me.role != Role::Coordinator || me.trust_domain != file.trust_domain {
            return Err(config_err(format!(
                "certificate {} is for {me}; a coordinator needs spiffe://{}/coordinator/<name>",
                file.tls.cert.display(),
                file.trust_domain
            )));
        }
        Ok(Self { file, tls })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_transport::config::from_toml_with_env;

    const TEXT: &str = r#"
trust_domain = "quorate.test"
listen = "127.0.0.1:7443"
nodes = []
[tls]
ca = "ca.pem"
cert = "cert.pem"
key = "key.pem"
"#;

    #[test]
    fn shutdown_grace_defaults_to_five_seconds_and_follows_its_environment_override() {
        let file: CoordinatorConfigFile =
            from_toml_with_env(TEXT, ENV_OVERRIDES, |_| None).unwrap();
        assert_eq!(file.shutdown_grace(), Duration::from_secs(5));
        let file: CoordinatorConfigFile = from_toml_with_env(TEXT, ENV_OVERRIDES, |var| {
            (var == "QUORATE_SHUTDOWN_GRACE_MS").then(|| "1500".to_string())
        })
        .unwrap();
        assert_eq!(file.shutdown_grace(), Duration::from_millis(1500));
    }
}
