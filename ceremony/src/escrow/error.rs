//! Why an escrow command (split, verify, recover) failed; the CLI maps
//! [`EscrowError::is_usage`] to exit code 64.

use std::path::PathBuf;

use quorate_escrow::EscrowFileError;

use crate::error::CeremonyError;

/// Why an escrow command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EscrowError {
    /// The command's arguments are wrong.
    #[error("{0}")]
    Usage(String),
    /// The ceremony file or its TLS material.
    #[error(transparent)]
    Ceremony(#[from] CeremonyError),
    /// The key's manifest names no escrow custodians, so its shares cannot be
    /// escrowed.
    #[error(
        "key {0} has no escrow custodians in its manifest, so its shares cannot be escrowed \
         (custodians come with the key, dkg or import with --custodians, or with a refresh its \
         administrators authorize, refresh --custodians)"
    )]
    NoCustodians(String),
    /// A file could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An age identity file that cannot be used.
    #[error("identity file {}: {message}", path.display())]
    Identity {
        /// The identity file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A part file that cannot be decrypted with the given identities.
    #[error("cannot decrypt {}: {message}", path.display())]
    Decrypt {
        /// The part file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A part that is malformed or does not verify.
    #[error("{}: {source}", path.display())]
    Part {
        /// The part file.
        path: PathBuf,
        /// Why.
        source: EscrowFileError,
    },
    /// The parts do not form a usable set (too few, duplicates, different splits,
    /// other key or node). Nothing was installed.
    #[error("refusing to recover, nothing was installed: {0}")]
    Parts(String),
    /// No trustworthy manifest of the key could be fetched. Nothing was installed.
    #[error("refusing to recover, nothing was installed: {0}")]
    Manifest(String),
    /// The rebuilt share is not the node's share of the key. Nothing was installed.
    #[error("refusing to recover, nothing was installed: {0}")]
    Mismatch(String),
    /// A node refused or failed a step.
    #[error("node {node_id}: {reason}")]
    Node {
        /// The node.
        node_id: String,
        /// What happened.
        reason: String,
    },
}

impl EscrowError {
    /// Whether the error is a usage or configuration mistake (exit 64).
    pub fn is_usage(&self) -> bool {
        match self {
            Self::Usage(_) | Self::Identity { .. } => true,
            Self::Io { what, .. } => !what.starts_with("writing"),
            Self::Ceremony(e) => e.is_usage(),
            _ => false,
        }
    }
}
