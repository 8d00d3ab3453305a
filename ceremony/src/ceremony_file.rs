//! The ceremony file (TOML): who takes part in a ceremony and how to reach them,
//! parsed and validated before any node is contacted. Read by every ceremony
//! (import, DKG, refresh, repair, escrow, transcript verify) and by the testnet.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use quorate_transport::identity::{PeerIdentity, Role};
use quorate_transport::tls::{TlsMaterial, TlsPaths};
use serde::{Deserialize, Serialize};

use crate::error::CeremonyError;

/// A node taking part in a ceremony.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CeremonyNode {
    /// Node id: the name in the node's certificate, and its FROST identifier's seed.
    pub id: String,
    /// gRPC endpoint, `https://host:port`.
    pub endpoint: String,
    /// Cloud or sovereign region.
    pub region: String,
    /// Legal jurisdiction (e.g. `EU`).
    pub jurisdiction: String,
}

/// A ceremony file (TOML): who takes part and how to reach them.
///
/// ```toml
/// trust_domain = "quorate.test"
///
/// [tls]              # the ceremony's own certificate (role `ceremony`)
/// ca = "pki/ca.pem"  # relative paths are relative to the ceremony file
/// cert = "pki/ceremony-alice.pem"
/// key = "pki/ceremony-alice-key.pem"
///
/// [[nodes]]
/// id = "node-1"
/// endpoint = "https://127.0.0.1:7101"
/// region = "eu-central-sov"
/// jurisdiction = "EU"
/// ```
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CeremonyFile {
    /// SPIFFE trust domain of every party.
    pub trust_domain: String,
    /// The ceremony's own mTLS material.
    pub tls: TlsPaths,
    /// The share holders, in manifest order.
    pub nodes: Vec<CeremonyNode>,
    /// Where the file was loaded from (for messages); not part of the file.
    #[serde(skip)]
    pub source: PathBuf,
}

impl CeremonyFile {
    /// Reads, parses and validates a ceremony file. Relative TLS paths are taken
    /// relative to the file's directory.
    pub fn load(path: &Path) -> Result<Self, CeremonyError> {
        let text = std::fs::read_to_string(path).map_err(|source| CeremonyError::Read {
            what: "ceremony file",
            path: path.to_path_buf(),
            source,
        })?;
        let file = Self::parse(&text, path)?;
        file.validate()?;
        Ok(file)
    }

    /// Parses a ceremony file's text (without validating it); `path` names the file in
    /// messages and anchors relative TLS paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, CeremonyError> {
        let mut file: Self = toml::from_str(text).map_err(|e| CeremonyError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        for p in [&mut file.tls.ca, &mut file.tls.cert, &mut file.tls.key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        file.source = path.to_path_buf();
        Ok(file)
    }

    /// Checks the file: at least two nodes with unique, valid ids, `https://`
    /// endpoints, non-empty region and jurisdiction, and a TLS certificate of role
    /// `ceremony` in the file's trust domain.
    pub fn validate(&self) -> Result<(), CeremonyError> {
        self.check().map(drop)
    }

    fn config_error(&self, message: impl Into<String>) -> CeremonyError {
        CeremonyError::Config {
            path: self.source.clone(),
            message: message.into(),
        }
    }

    /// [`validate`](Self::validate), returning the loaded TLS material.
    pub(crate) fn check(&self) -> Result<TlsMaterial, CeremonyError> {
        PeerIdentity::new(&self.trust_domain, Role::Ceremony, "check")
            .map_err(|e| self.config_error(format!("trust_domain: {e}")))?;
        if self.nodes.len() < 2 {
            return Err(self.config_error(format!(
                "needs at least 2 [[nodes]], found {}",
                self.nodes.len()
            )));
        }
        if self.nodes.len() > usize::from(u16::MAX) {
            return Err(self.config_error("too many [[nodes]]"));
        }
        let mut seen = HashSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let at = format!("nodes[{i}] ({:?})", node.id);
            PeerIdentity::new(&self.trust_domain, Role::Node, &node.id)
                .map_err(|e| self.config_error(format!("{at}: invalid id: {e}")))?;
            if !seen.insert(node.id.as_str()) {
                return Err(self.config_error(format!("{at}: node id listed twice")));
            }
            if !node.endpoint.starts_with("https://")
                || node.endpoint.parse::<tonic::transport::Uri>().is_err()
            {
                return Err(self.config_error(format!(
                    "{at}: endpoint {:?} is not an https://host:port URL",
                    node.endpoint
                )));
            }
            if node.region.trim().is_empty() {
                return Err(self.config_error(format!("{at}: region is empty")));
            }
            if node.jurisdiction.trim().is_empty() {
                return Err(self.config_error(format!("{at}: jurisdiction is empty")));
            }
        }
        let tls = self.tls.load()?;
        let id = tls.identity();
        if id.role != Role::Ceremony || id.trust_domain != self.trust_domain {
            return Err(self.config_error(format!(
                "tls.cert {} belongs to {id}; the ceremony needs a certificate of role \
                 `ceremony` in trust domain {:?} (quorate-ceremony pki issue --role ceremony)",
                self.tls.cert.display(),
                self.trust_domain
            )));
        }
        Ok(tls)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::test_support::{file_text, nodes_toml, setup};

    fn load(path: &Path, text: &str) -> Result<CeremonyFile, CeremonyError> {
        std::fs::write(path, text).unwrap();
        CeremonyFile::load(path)
    }

    fn config_message(result: Result<CeremonyFile, CeremonyError>) -> String {
        match result {
            Err(e @ CeremonyError::Config { .. }) => {
                assert!(e.is_usage());
                e.to_string()
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn valid_ceremony_file_loads_with_paths_relative_to_the_file() {
        let (dir, path) = setup();
        let file = load(
            &path,
            &file_text(
                "ceremony-alice",
                &nodes_toml(&["node-1", "node-2", "node-3"]),
            ),
        )
        .unwrap();
        assert_eq!(file.nodes.len(), 3);
        assert_eq!(file.nodes[1].id, "node-2");
        assert_eq!(file.tls.ca, dir.path().join("pki/ca.pem"));
    }

    #[test]
    fn ceremony_file_with_one_node_is_refused() {
        let (_dir, path) = setup();
        let msg = config_message(load(
            &path,
            &file_text("ceremony-alice", &nodes_toml(&["node-1"])),
        ));
        assert!(msg.contains("at least 2"), "{msg}");
    }

    #[test]
    fn ceremony_file_with_duplicate_node_ids_is_refused() {
        let (_dir, path) = setup();
        let msg = config_message(load(
            &path,
            &file_text(
                "ceremony-alice",
                &nodes_toml(&["node-1", "node-2", "node-1"]),
            ),
        ));
        assert!(msg.contains("listed twice"), "{msg}");
    }

    #[test]
    fn ceremony_file_with_empty_region_or_jurisdiction_is_refused() {
        let (_dir, path) = setup();
        let nodes = nodes_toml(&["node-1", "node-2"]);
        let msg = config_message(load(
            &path,
            &file_text(
                "ceremony-alice",
                &nodes.replace("region = \"r1\"", "region = \" \""),
            ),
        ));
        assert!(
            msg.contains("nodes[1]") && msg.contains("region is empty"),
            "{msg}"
        );
        let msg = config_message(load(
            &path,
            &file_text(
                "ceremony-alice",
                &nodes.replacen("jurisdiction = \"EU\"", "jurisdiction = \"\"", 1),
            ),
        ));
        assert!(msg.contains("jurisdiction is empty"), "{msg}");
    }

    #[test]
    fn ceremony_file_with_plain_http_endpoint_is_refused() {
        let (_dir, path) = setup();
        let nodes = nodes_toml(&["node-1", "node-2"]).replace("https://", "http://");
        let msg = config_message(load(&path, &file_text("ceremony-alice", &nodes)));
        assert!(msg.contains("https://"), "{msg}");
    }

    #[test]
    fn ceremony_file_with_unknown_field_is_refused() {
        let (_dir, path) = setup();
        let text = file_text("ceremony-alice", &nodes_toml(&["node-1", "node-2"]))
            .replace("region = \"r0\"", "region = \"r0\"\nzone = \"a\"");
        let msg = config_message(load(&path, &text));
        assert!(msg.contains("zone"), "{msg}");
    }

    #[test]
    fn ceremony_file_with_a_node_certificate_is_refused() {
        let (_dir, path) = setup();
        let msg = config_message(load(
            &path,
            &file_text("node-node-1", &nodes_toml(&["node-1", "node-2"])),
        ));
        assert!(msg.contains("role `ceremony`"), "{msg}");
    }

    #[test]
    fn ceremony_file_in_another_trust_domain_is_refused() {
        let (_dir, path) = setup();
        let text = file_text("ceremony-alice", &nodes_toml(&["node-1", "node-2"])).replace(
            "trust_domain = \"quorate.test\"",
            "trust_domain = \"other.test\"",
        );
        let msg = config_message(load(&path, &text));
        assert!(msg.contains("trust domain \"other.test\""), "{msg}");
    }

    #[test]
    fn missing_ceremony_file_is_a_usage_error() {
        let err = CeremonyFile::load(Path::new("/nonexistent/ceremony.toml")).unwrap_err();
        assert!(
            matches!(err, CeremonyError::Read { .. }) && err.is_usage(),
            "{err}"
        );
    }
}
