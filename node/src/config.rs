//! Node configuration: a TOML file, then `QUORATE_*` environment overrides, validated
//! completely before any port is bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quorate_transport::identity::{PeerIdentity, Role};
use quorate_transport::tls::{TlsMaterial, TlsPaths};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::NodeError;
use crate::kek::{KekProvider, KekProviderConfig};
use crate::store::{Kek, LEGACY_KEK_ID};

/// Environment variables that override config keys (`VAR` -> dotted TOML key).
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("QUORATE_NODE_ID", "node_id"),
    ("QUORATE_TRUST_DOMAIN", "trust_domain"),
    ("QUORATE_LISTEN", "listen"),
    ("QUORATE_REGION", "region"),
    ("QUORATE_JURISDICTION", "jurisdiction"),
    ("QUORATE_DATA_DIR", "data_dir"),
    ("QUORATE_KEK_FILE", "kek_file"),
    ("QUORATE_TLS_CA", "tls.ca"),
    ("QUORATE_TLS_CERT", "tls.cert"),
    ("QUORATE_TLS_KEY", "tls.key"),
    ("QUORATE_METRICS_LISTEN", "metrics_listen"),
    ("QUORATE_HEALTH_LISTEN", "health_listen"),
    ("QUORATE_SHUTDOWN_GRACE_MS", "shutdown_grace_ms"),
];

/// Environment variable holding the key-encryption key itself (64 hex digits), as an
/// alternative to `kek_file` for secret stores that inject environment variables.
pub const KEK_ENV: &str = "QUORATE_KEK";

/// The node config file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfigFile {
    /// Node id; must equal the name in the node certificate's SPIFFE id.
    pub node_id: String,
    /// SPIFFE trust domain of every peer.
    pub trust_domain: String,
    /// Address to serve gRPC on.
    pub listen: SocketAddr,
    /// Region tag (e.g. `eu-central-sov`).
    pub region: String,
    /// Jurisdiction tag (e.g. `EU`).
    pub jurisdiction: String,
    /// Directory of the node's sled store.
    pub data_dir: PathBuf,
    /// File with the key-encryption key (64 hex digits). Or set `QUORATE_KEK`. Either
    /// is the `file`/`env` provider with id `kek`, beside any `[[kek]]` tables.
    #[serde(default)]
    pub kek_file: Option<PathBuf>,
    /// Key-encryption key providers (`[[kek]]` tables); any one of them (or
    /// `kek_file`/`QUORATE_KEK`) that unwraps the store's DEK opens it.
    #[serde(default)]
    pub kek: Vec<KekProviderConfig>,
    /// mTLS files.
    pub tls: TlsPaths,
    /// Where to serve Prometheus metrics over plain HTTP (`GET /metrics`); off when
    /// absent. Bind it to a private monitoring interface.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Where to serve `grpc.health.v1` alone in plaintext, for probes without a
    /// client certificate (the kubelet's `grpc` probe); off when absent. Every other
    /// method there is `UNIMPLEMENTED`. Bind it to an interface only probes reach.
    #[serde(default)]
    pub health_listen: Option<SocketAddr>,
    /// After SIGTERM or SIGINT, how long in-flight work may take to finish before
    /// the process exits anyway (milliseconds). New work is refused at once.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// Nonce store limits.
    #[serde(default)]
    pub nonces: NonceLimits,
    /// What the node does when its audit log cannot vouch for its stored keys.
    #[serde(default)]
    pub audit: AuditSettings,
    /// Fault injection for drills. Never set these in production.
    #[serde(default)]
    pub danger: DangerSettings,
    /// The peers whose audit logs this node witnesses (`[witness]`).
    #[serde(default)]
    pub witness: WitnessSettings,
}

/// Which peers' audit logs this node witnesses, and how often it checks them.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WitnessSettings {
    /// How often each peer's latest checkpoint is fetched and checked (milliseconds).
    pub interval_ms: u64,
    /// The witnessed peers (`[[witness.peers]]`); none by default.
    pub peers: Vec<WitnessPeer>,
}

impl Default for WitnessSettings {
    fn default() -> Self {
        Self {
            interval_ms: 5000,
            peers: Vec::new(),
        }
    }
}

impl WitnessSettings {
    /// The interval as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
}

/// A witnessed peer: its node id (its certificate's name, which the connection is
/// pinned to) and its gRPC endpoint.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WitnessPeer {
    /// The peer's node id.
    pub node_id: String,
    /// `https://host:port`.
    pub endpoint: String,
}

/// The `[audit]` section.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Start although the audit log cannot establish the epoch of the stored keys
    /// (the log is missing or empty beside a store that holds keys, or its hash
    /// chain is broken), loading the stored records unchecked. The node records that
    /// it did so (`audit_log_unverified_accepted`, naming why) before anything
    /// else. For recovery from a lost or damaged log; remove it after that start.
    pub accept_unverified_log: bool,
}

/// Faults a node can be told to inject, so drills can prove the network survives a
/// malicious or broken signer. Off by default; a node that has one on logs a
/// warning at startup. Only a build with the cargo feature `fault-injection` (the
/// testnet's drills) accepts one; any other build refuses the config.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DangerSettings {
    /// Answer round 2 with well-formed but wrong signature shares.
    pub corrupt_signature_shares: bool,
}

/// Limits of the in-memory nonce store.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NonceLimits {
    /// Most outstanding (issued, unused) commitments; the oldest are dropped beyond it.
    pub max_outstanding: usize,
    /// Seconds a commitment stays usable.
    pub ttl_secs: u64,
}

impl Default for NonceLimits {
    fn default() -> Self {
        Self {
            max_outstanding: 100_000,
            ttl_secs: 120,
        }
    }
}

impl NonceLimits {
    /// TTL as a duration.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs)
    }
}

fn default_shutdown_grace_ms() -> u64 {
    quorate_transport::runtime::DEFAULT_SHUTDOWN_GRACE_MS
}

impl NodeConfigFile {
    /// How long a shutdown may finish in-flight work.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// A validated configuration: every file read, every value checked.
#[derive(Debug)]
pub struct NodeConfig {
    /// The file's values after overrides.
    pub file: NodeConfigFile,
    /// Loaded mTLS material.
    pub tls: TlsMaterial,
    /// Key-encryption key providers for the store, `kek_file`/`QUORATE_KEK` first.
    pub keks: Vec<KekProvider>,
}

fn config_err(msg: impl Into<String>) -> NodeError {
    NodeError::Config(msg.into())
}

impl NodeConfig {
    /// Reads `path`, applies `QUORATE_*` overrides from the process environment, and
    /// validates.
    pub fn load(path: &Path) -> Result<Self, NodeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| config_err(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text, |name| std::env::var(name).ok())
    }

    /// Parses TOML text, applies overrides from `env`, and validates.
    pub fn from_toml(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, NodeError> {
        let file: NodeConfigFile =
            quorate_transport::config::from_toml_with_env(text, ENV_OVERRIDES, &env)
                .map_err(|e| config_err(format!("config: {e}")))?;
        let keks = Self::kek_providers(&file, &env)?;
        Self::validate(file, keks)
    }

    /// `QUORATE_KEK` (which wins over `kek_file`, as one key from two sources), then
    /// each `[[kek]]` table. Secrets are read when a provider is used, except those
    /// in the environment, which are taken now.
    fn kek_providers(
        file: &NodeConfigFile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<KekProvider>, NodeError> {
        let mut keks = Vec::new();
        match (&file.kek_file, env(KEK_ENV)) {
            (_, Some(hex)) => {
                let hex = Zeroizing::new(hex);
                keks.push(KekProvider::key(LEGACY_KEK_ID, Kek::from_hex(hex.trim())?));
            }
            (Some(path), None) => keks.push(KekProvider::file(LEGACY_KEK_ID, path.clone())),
            (None, None) => {}
        }
        for table in &file.kek {
            let id = table.id();
            // The id is stored beside its wrap of the DEK: a short plain name keeps
            // every wrap readable (an over-long id would not fit its length field).
            let well_formed = (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !well_formed {
                return Err(config_err(format!(
                    "a [[kek]] table's id {id:?} must be 1 to 64 characters of A-Z, a-z,                      0-9, '.', '_' or '-'"
                )));
            }
            if keks.iter().any(|k| k.id() == id) {
                return Err(config_err(format!(
                    "two key-encryption key providers have the id {id:?} (kek_file and \
                     QUORATE_KEK use {LEGACY_KEK_ID:?})"
                )));
            }
            keks.push(KekProvider::from_config(table, env).map_err(config_err)?);
        }
        if keks.is_empty() {
            return Err(config_err(format!(
                "no key-encryption key: set kek_file in the config or {KEK_ENV}, or \
                 add [[kek]] providers"
            )));
        }
        Ok(keks)
    }

    fn validate(mut file: NodeConfigFile, keks: Vec<KekProvider>) -> Result<Self, NodeError> {
        let expected = PeerIdentity::new(&file.trust_domain, Role::Node, &file.node_id)
            .map_err(|e| config_err(format!("node_id/trust_domain: {e}")))?;
        for (name, value) in [
            ("region", &file.region),
            ("jurisdiction", &file.jurisdiction),
        ] {
            if value.trim().is_empty() {
                return Err(config_err(format!("{name} is empty")));
            }
        }
        if file.danger.corrupt_signature_shares && !cfg!(feature = "fault-injection") {
            return Err(config_err(
                "danger.corrupt_signature_shares needs a build with the cargo feature \
                 fault-injection (drills only; release images never have it)",
            ));
        }
        if file.nonces.max_outstanding == 0 || file.nonces.ttl_secs == 0 {
            return Err(config_err(
                "nonces.max_outstanding and nonces.ttl_secs must be > 0",
            ));
        }
        validate_witness(&mut file)?;
        let tls = file.tls.load().map_err(|e| config_err(e.to_string()))?;
        if tls.identity() != &expected {
            return Err(config_err(format!(
                "certificate {} is for {}, but this node is {}",
                file.tls.cert.display(),
                tls.identity(),
                expected
            )));
        }
        // The certificate decides where this node is; the config states what its
        // operator expects, and a node whose operator expects otherwise (or whose
        // certificate attests nothing) does not start rather than count elsewhere.
        let attested = tls
            .location()
            .map_err(|e| config_err(format!("certificate {}: {e}", file.tls.cert.display())))?;
        let configured = format!(
            "region {:?}, jurisdiction {:?}",
            file.region, file.jurisdiction
        );
        match attested {
            None => {
                return Err(config_err(format!(
                    "certificate {} carries no region and jurisdiction; the config says \
                     {configured} (issue the node's certificate with --region and \
                     --jurisdiction)",
                    file.tls.cert.display()
                )))
            }
            Some(at) if at.region != file.region || at.jurisdiction != file.jurisdiction => {
                return Err(config_err(format!(
                    "certificate {} attests {at}, but the config says {configured}",
                    file.tls.cert.display()
                )))
            }
            Some(_) => {}
        }
        Ok(Self { file, tls, keks })
    }
}

/// Witnessed peers: valid node ids, each once, at `https://` endpoints
/// (checkpoints are fetched over mTLS pinned to the peer), and a non-zero interval.
/// This node itself, if listed, is dropped: every region's node can then share one
/// list of all the nodes (as the Kubernetes base config does), each witnessing the
/// others.
fn validate_witness(file: &mut NodeConfigFile) -> Result<(), NodeError> {
    let witness = &file.witness;
    if witness.interval_ms == 0 {
        return Err(config_err("witness.interval_ms must be > 0"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for peer in &witness.peers {
        PeerIdentity::new(&file.trust_domain, Role::Node, &peer.node_id)
            .map_err(|e| config_err(format!("witness.peers node_id {:?}: {e}", peer.node_id)))?;
        if !seen.insert(peer.node_id.as_str()) {
            return Err(config_err(format!(
                "witness.peers names {:?} twice",
                peer.node_id
            )));
        }
        if !peer.endpoint.starts_with("https://") {
            return Err(config_err(format!(
                "witness.peers endpoint {:?} of {:?} is not an https://host:port URL",
                peer.endpoint, peer.node_id
            )));
        }
    }
    let own = file.node_id.clone();
    file.witness.peers.retain(|p| p.node_id != own);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every required key, and no KEK.
    const MINIMAL: &str = r#"
        node_id = "node-1"
        trust_domain = "quorate.test"
        listen = "127.0.0.1:0"
        region = "r"
        jurisdiction = "EU"
        data_dir = "/nonexistent"
        tls = { ca = "a", cert = "b", key = "c" }
    "#;

    #[test]
    fn shutdown_grace_defaults_to_five_seconds_and_follows_its_environment_override() {
        let parse = |env: &dyn Fn(&str) -> Option<String>| -> NodeConfigFile {
            quorate_transport::config::from_toml_with_env(MINIMAL, ENV_OVERRIDES, env).unwrap()
        };
        assert_eq!(parse(&|_| None).shutdown_grace(), Duration::from_secs(5));
        let overridden = parse(&|var| (var == "QUORATE_SHUTDOWN_GRACE_MS").then(|| "250".into()));
        assert_eq!(overridden.shutdown_grace(), Duration::from_millis(250));
    }

    #[test]
    fn missing_kek_is_a_config_error_naming_both_sources() {
        let err = NodeConfig::from_toml(MINIMAL, |_| None).unwrap_err();
        assert!(
            matches!(err, NodeError::Config(ref m) if m.contains("QUORATE_KEK")),
            "{err}"
        );
    }

    /// Builds without the cargo feature (every release image) refuse fault
    /// injection instead of ignoring it. CI runs the node's tests alone
    /// (`cargo nextest run -p quorate-node`), so that this one is compiled in.
    #[cfg(not(feature = "fault-injection"))]
    #[test]
    fn a_danger_setting_is_refused_by_a_build_without_fault_injection() {
        let text = format!("{MINIMAL}\n[danger]\ncorrupt_signature_shares = true\n");
        let kek = |name: &str| (name == KEK_ENV).then(|| "00".repeat(32));
        let err = NodeConfig::from_toml(&text, kek).unwrap_err();
        assert!(
            matches!(err, NodeError::Config(ref m) if m.contains("fault-injection")),
            "{err}"
        );
    }

    #[test]
    fn kek_tables_add_providers_beside_kek_file_and_ids_must_be_unique() {
        let text = format!(
            "{MINIMAL}kek_file = \"/k.hex\"\n\
             [[kek]]\ntype = \"pkcs11\"\nid = \"hsm\"\nmodule = \"/m.so\"\n\
             token_label = \"t\"\nkey_label = \"k\"\npin_env = \"PIN\"\n\
             [[kek]]\ntype = \"env\"\nid = \"backup\"\nvar = \"BACKUP_KEK\"\n"
        );
        let file: NodeConfigFile =
            quorate_transport::config::from_toml_with_env(&text, ENV_OVERRIDES, |_: &str| None)
                .unwrap();
        let keks = NodeConfig::kek_providers(&file, &|_| None).unwrap();
        let ids: Vec<_> = keks.iter().map(KekProvider::id).collect();
        assert_eq!(ids, ["kek", "hsm", "backup"]);
        let dup = text.replace("id = \"backup\"", "id = \"kek\"");
        let file: NodeConfigFile =
            quorate_transport::config::from_toml_with_env(&dup, ENV_OVERRIDES, |_: &str| None)
                .unwrap();
        let err = NodeConfig::kek_providers(&file, &|_| None).unwrap_err();
        assert!(err.to_string().contains("\"kek\""), "{err}");
    }

    #[test]
    fn kek_ids_are_short_plain_names() {
        let table =
            |id: &str| format!("{MINIMAL}[[kek]]\ntype = \"env\"\nid = \"{id}\"\nvar = \"K\"\n");
        for bad in ["", " ", "a b", "ü", &"x".repeat(65)] {
            let file: NodeConfigFile = quorate_transport::config::from_toml_with_env(
                &table(bad),
                ENV_OVERRIDES,
                |_: &str| None,
            )
            .unwrap();
            let err = NodeConfig::kek_providers(&file, &|_| None).unwrap_err();
            assert!(
                err.to_string().contains("1 to 64 characters"),
                "{bad:?}: {err}"
            );
        }
        for good in ["hsm", "eu-west.hsm_2", &"x".repeat(64)] {
            let file: NodeConfigFile = quorate_transport::config::from_toml_with_env(
                &table(good),
                ENV_OVERRIDES,
                |_: &str| None,
            )
            .unwrap();
            NodeConfig::kek_providers(&file, &|_| None).unwrap();
        }
    }

    #[test]
    fn witness_peers_are_nodes_once_each_at_https_endpoints_and_this_one_is_dropped() {
        let parse = |extra: &str| -> NodeConfigFile {
            quorate_transport::config::from_toml_with_env(
                &format!("{MINIMAL}{extra}"),
                ENV_OVERRIDES,
                |_: &str| None,
            )
            .unwrap()
        };
        let peer = |id: &str, endpoint: &str| {
            format!("[[witness.peers]]\nnode_id = \"{id}\"\nendpoint = \"{endpoint}\"\n")
        };
        let file = parse("");
        assert_eq!(file.witness.interval(), Duration::from_secs(5));
        assert!(file.witness.peers.is_empty());
        let good = format!(
            "[witness]\ninterval_ms = 1000\n{}{}",
            peer("node-2", "https://127.0.0.1:7102"),
            peer("node-3", "https://127.0.0.1:7103")
        );
        let mut file = parse(&good);
        validate_witness(&mut file).unwrap();
        assert_eq!(file.witness.peers.len(), 2);
        // One list of every node serves every node: this one (node-1) is dropped.
        let mut file = parse(&format!("{good}{}", peer("node-1", "https://h:1")));
        validate_witness(&mut file).unwrap();
        let ids: Vec<&str> = file
            .witness
            .peers
            .iter()
            .map(|p| p.node_id.as_str())
            .collect();
        assert_eq!(ids, ["node-2", "node-3"]);
        for (bad, says) in [
            (
                format!(
                    "{}{}",
                    peer("node-2", "https://h:1"),
                    peer("node-2", "https://h:2")
                ),
                "twice",
            ),
            (peer("node-2", "http://h:1"), "https://"),
            (peer("no de", "https://h:1"), "node_id"),
            ("[witness]\ninterval_ms = 0\n".into(), "interval_ms"),
        ] {
            let err = validate_witness(&mut parse(&bad)).unwrap_err();
            assert!(err.to_string().contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_field_is_refused() {
        let err = NodeConfig::from_toml("node_idd = \"x\"", |_| None).unwrap_err();
        assert!(err.to_string().contains("node_idd"), "{err}");
    }
}
