//! `client.toml`: where the coordinators are and the client's TLS material.
//!
//! ```toml
//! coordinators = ["https://127.0.0.1:7000", "https://127.0.0.1:7001"]
//! # or, naming the certificate each coordinator presents:
//! # [[coordinators]]
//! # endpoint = "https://127.0.0.1:7000"
//! # server_name = "coordinator"
//! ca = "pki/ca.pem"
//! cert = "pki/client/demo-client.pem"
//! key = "pki/client/demo-client-key.pem"
//! trust_domain = "quorate.test"   # optional: checked against the client certificate
//! deadline_ms = 5000              # optional: the whole call, every retry included
//! intent_validity_secs = 60       # optional: how long a signed intent is valid
//! ```
//!
//! Relative paths are relative to the directory of the config file. The file is a
//! contract: `quorate-testnet up` writes one and other programs read it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use quorate_transport::intent::MAX_VALIDITY_SECS;
use serde::{Deserialize, Serialize};

/// Default deadline of a whole call.
pub const DEFAULT_DEADLINE_MS: u64 = 5000;
/// Default validity of a sign intent.
pub const DEFAULT_INTENT_VALIDITY_SECS: u64 = 60;

/// Why a client configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read client config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("client config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A setting is missing or out of range.
    #[error("client config: {0}")]
    Invalid(String),
}

/// A coordinator the client may call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CoordinatorEntry {
    /// `"https://host:port"`: the certificate must be issued for the host.
    Endpoint(String),
    /// `{ endpoint = "https://host:port", server_name = "coordinator" }`.
    Named {
        /// `https://host:port`.
        endpoint: String,
        /// The name the coordinator's certificate is issued for (default: the host).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server_name: Option<String>,
    },
}

impl CoordinatorEntry {
    /// The endpoint URI.
    pub fn endpoint(&self) -> &str {
        match self {
            Self::Endpoint(e) | Self::Named { endpoint: e, .. } => e,
        }
    }

    /// The name the coordinator's certificate must carry: as configured, or the
    /// endpoint's host.
    pub fn server_name(&self) -> Result<String, ConfigError> {
        if let Self::Named {
            server_name: Some(name),
            ..
        } = self
        {
            return Ok(name.clone());
        }
        host_of(self.endpoint())
    }
}

fn host_of(endpoint: &str) -> Result<String, ConfigError> {
    let uri: tonic::codegen::http::Uri = endpoint.parse().map_err(|e| {
        ConfigError::Invalid(format!(
            "coordinator endpoint {endpoint:?} is not a URI: {e}"
        ))
    })?;
    if uri.scheme_str() != Some("https") {
        return Err(ConfigError::Invalid(format!(
            "coordinator endpoint {endpoint:?} must start with https:// (every connection is mTLS)"
        )));
    }
    let host = uri.host().ok_or_else(|| {
        ConfigError::Invalid(format!("coordinator endpoint {endpoint:?} names no host"))
    })?;
    // An IPv6 literal comes back in brackets; a certificate names it without.
    Ok(host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string())
}

/// A client's configuration (`client.toml`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Coordinators in order of preference; any of them can serve any request.
    pub coordinators: Vec<CoordinatorEntry>,
    /// CA certificate(s) (PEM) that sign the coordinators' certificates.
    pub ca: PathBuf,
    /// The client's certificate (PEM, role `client`).
    pub cert: PathBuf,
    /// The client's private key (PEM).
    pub key: PathBuf,
    /// The trust domain the client certificate must belong to, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
    /// Deadline of a whole call, every retry included.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Validity of a signed intent, in seconds.
    #[serde(default = "default_intent_validity_secs")]
    pub intent_validity_secs: u64,
}

fn default_deadline_ms() -> u64 {
    DEFAULT_DEADLINE_MS
}

fn default_intent_validity_secs() -> u64 {
    DEFAULT_INTENT_VALIDITY_SECS
}

impl ClientConfig {
    /// A configuration with the defaults for everything but the essentials.
    pub fn new(
        coordinators: Vec<CoordinatorEntry>,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    ) -> Self {
        Self {
            coordinators,
            ca,
            cert,
            key,
            trust_domain: None,
            deadline_ms: DEFAULT_DEADLINE_MS,
            intent_validity_secs: DEFAULT_INTENT_VALIDITY_SECS,
        }
    }

    /// Reads and validates `path`; relative paths in it are taken relative to its
    /// directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        for p in [&mut config.ca, &mut config.cert, &mut config.key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// The TOML text of this configuration.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// Checks what can be checked without touching the network or the files.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.coordinators.is_empty() {
            return Err(ConfigError::Invalid(
                "no coordinators: give at least one endpoint".into(),
            ));
        }
        for c in &self.coordinators {
            c.server_name()?;
        }
        if self.deadline_ms == 0 {
            return Err(ConfigError::Invalid("deadline_ms must be positive".into()));
        }
        if self.intent_validity_secs == 0 || self.intent_validity_secs > MAX_VALIDITY_SECS {
            return Err(ConfigError::Invalid(format!(
                "intent_validity_secs is {}, must be 1..={MAX_VALIDITY_SECS}",
                self.intent_validity_secs
            )));
        }
        Ok(())
    }

    /// The deadline of a whole call.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_as_strings_or_tables_and_relative_paths_follow_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("client.toml");
        std::fs::write(
            &path,
            r#"
coordinators = ["https://127.0.0.1:7000", { endpoint = "https://10.0.0.2:7000", server_name = "coordinator" }]
ca = "pki/ca.pem"
cert = "/abs/cert.pem"
key = "key.pem"
"#,
        )
        .expect("write");
        let config = ClientConfig::load(&path).expect("loads");
        assert_eq!(
            config.coordinators[0].server_name().expect("name"),
            "127.0.0.1"
        );
        assert_eq!(
            config.coordinators[1].server_name().expect("name"),
            "coordinator"
        );
        assert_eq!(config.ca, dir.path().join("pki/ca.pem"));
        assert_eq!(config.cert, PathBuf::from("/abs/cert.pem"));
        assert_eq!(config.deadline_ms, DEFAULT_DEADLINE_MS);
        assert_eq!(config.intent_validity_secs, DEFAULT_INTENT_VALIDITY_SECS);
    }

    #[test]
    fn plain_http_endpoints_and_empty_lists_are_refused() {
        let mut config = ClientConfig::new(
            vec![CoordinatorEntry::Endpoint("http://127.0.0.1:1".into())],
            "ca".into(),
            "c".into(),
            "k".into(),
        );
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("https://"));
        config.coordinators.clear();
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("no coordinators"));
    }

    #[test]
    fn written_config_reads_back() {
        let config = ClientConfig::new(
            vec![CoordinatorEntry::Named {
                endpoint: "https://127.0.0.1:7000".into(),
                server_name: Some("coordinator".into()),
            }],
            "/ca.pem".into(),
            "/c.pem".into(),
            "/k.pem".into(),
        );
        let text = config.to_toml().expect("serializes");
        let back: ClientConfig = toml::from_str(&text).expect("parses");
        assert_eq!(back, config);
    }
}
