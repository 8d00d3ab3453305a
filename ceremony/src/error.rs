//! The ceremony library's error: why a ceremony (import, DKG, refresh, repair,
//! transcript verify) failed, naming the nodes at fault. Used by every ceremony
//! module and by the CLI, which maps [`CeremonyError::is_usage`] to exit code 64.

use std::fmt;
use std::path::PathBuf;

use quorate_frost::CryptoError;
use quorate_keys::manifest::ManifestError;
use quorate_transport::tls::TlsError;

/// Why a ceremony failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CeremonyError {
    /// A file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {what} {}: {source}", path.display())]
    Write {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The ceremony file does not parse or is inconsistent.
    #[error("ceremony file {}: {message}", path.display())]
    Config {
        /// The ceremony file.
        path: PathBuf,
        /// What is wrong, in terms of the file's fields.
        message: String,
    },
    /// The import request is invalid (key id, threshold).
    #[error("invalid request: {0}")]
    Request(String),
    /// The secret key file is malformed. The message never quotes its contents.
    #[error("secret file {}: {message}", path.display())]
    Secret {
        /// The secret file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The ceremony's own TLS material cannot be loaded.
    #[error("ceremony TLS material: {0}")]
    Tls(#[from] TlsError),
    /// Some nodes failed the check before dealing; nothing was dealt or sent.
    #[error(
        "refusing to deal: {} of {total} node(s) failed the pre-check, nothing was sent:{}",
        failures.len(),
        join(failures)
    )]
    PreCheck {
        /// Nodes in the ceremony file.
        total: usize,
        /// The nodes that failed and why.
        failures: Vec<NodeFailure>,
    },
    /// The key could not be split.
    #[error("cannot split the key: {0}")]
    Crypto(#[from] CryptoError),
    /// The manifest this build encoded does not decode; a bug, nothing was sent.
    #[error("internal error, nothing was sent: {0}")]
    Manifest(#[from] ManifestError),
    /// Some nodes did not install their share.
    #[error(
        "import of key {key_id} is incomplete: installed on {} of {total} node(s) [{}] \
         (threshold {threshold}). The key is unusable on the failing nodes (they did not \
         confirm holding their share){}. Failed:{}",
        installed.len(),
        installed.join(", "),
        if installed.len() >= usize::from(*threshold) {
            "; the nodes that installed it can still reach the threshold"
        } else {
            "; fewer than threshold nodes hold it, so it cannot sign"
        },
        join(failed)
    )]
    Install {
        /// The key id.
        key_id: String,
        /// Threshold `t`.
        threshold: u16,
        /// Nodes in the ceremony.
        total: usize,
        /// Nodes that installed the key and acknowledged the manifest.
        installed: Vec<String>,
        /// Nodes that did not, and why.
        failed: Vec<NodeFailure>,
    },
    /// A key ceremony (DKG, refresh, repair) failed at a step and was aborted on
    /// every node; the failures name the party at fault where one is known.
    #[error(
        "{kind} of key {key_id} failed at {step}; the ceremony was aborted on every node and no key changed:{}",
        join(failures)
    )]
    Aborted {
        /// `DKG`, `refresh` or `repair`.
        kind: &'static str,
        /// The key id.
        key_id: String,
        /// Which step.
        step: &'static str,
        /// What failed, by node.
        failures: Vec<NodeFailure>,
    },
    /// Some nodes did not store an approval token's revocation; they still honour
    /// the token.
    #[error(
        "revocation of approval token {token_id} of key {key_id} reached {} of {total} \
         node(s) [{}]; the others still honour the token until it is delivered to them \
         (the command can be run again). Failed:{}",
        revoked.len(),
        revoked.join(", "),
        join(failed)
    )]
    Revoke {
        /// The key id.
        key_id: String,
        /// The token id.
        token_id: String,
        /// Nodes in the ceremony file.
        total: usize,
        /// Nodes that hold the revocation.
        revoked: Vec<String>,
        /// Nodes that did not store it, and why.
        failed: Vec<NodeFailure>,
    },
    /// The key's nodes disagree about it before a refresh or repair starts.
    #[error("key {key_id}: {message}")]
    KeyState {
        /// The key id.
        key_id: String,
        /// What is wrong.
        message: String,
    },
    /// A transcript could not be written or read.
    #[error("transcript {}: {message}", path.display())]
    Transcript {
        /// The transcript file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The clock cannot be formatted as RFC 3339.
    #[error("cannot format the current time: {0}")]
    Clock(String),
}

impl CeremonyError {
    /// Whether the error is a usage or configuration mistake (the command's
    /// arguments or files), as opposed to a failure while running the ceremony.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Read { .. }
                | Self::Config { .. }
                | Self::Request(_)
                | Self::Secret { .. }
                | Self::Tls(_)
        )
    }
}

/// One node that failed a ceremony step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFailure {
    /// The node id.
    pub node_id: String,
    /// Why.
    pub reason: String,
}

impl fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.node_id, self.reason)
    }
}

/// One failure per line, so that a five-node ceremony's error stays readable.
fn join(failures: &[NodeFailure]) -> String {
    failures.iter().map(|f| format!("\n  - {f}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_install_error_names_both_sides() {
        let err = CeremonyError::Install {
            key_id: "k1".into(),
            threshold: 2,
            total: 3,
            installed: vec!["node-1".into()],
            failed: vec![
                NodeFailure {
                    node_id: "node-2".into(),
                    reason: "Unavailable: down".into(),
                },
                NodeFailure {
                    node_id: "node-3".into(),
                    reason: "PermissionDenied: no".into(),
                },
            ],
        };
        let msg = err.to_string();
        assert!(
            msg.contains("installed on 1 of 3 node(s) [node-1]"),
            "{msg}"
        );
        assert!(
            msg.contains("\n  - node-2 (Unavailable: down)\n  - node-3"),
            "{msg}"
        );
        assert!(msg.contains("unusable on the failing nodes"), "{msg}");
        assert!(msg.contains("cannot sign"), "{msg}");
        assert!(!err.is_usage());
    }

    #[test]
    fn revocation_error_reads_as_one_sentence() {
        let err = CeremonyError::Revoke {
            key_id: "k1".into(),
            token_id: "t1".into(),
            total: 3,
            revoked: vec!["node-1".into(), "node-2".into()],
            failed: vec![NodeFailure {
                node_id: "node-3".into(),
                reason: "Unavailable: down".into(),
            }],
        };
        let msg = err.to_string();
        assert!(!msg.contains("  node(s)") && !msg.contains("  ("), "{msg}");
        assert!(
            msg.contains("reached 2 of 3 node(s) [node-1, node-2]; the others"),
            "{msg}"
        );
        assert!(msg.contains("\n  - node-3 (Unavailable: down)"), "{msg}");
    }
}
