//! Why a `quorate-ceremony` command failed: the library's errors, passed through
//! unchanged, and the mistakes and failures the commands find themselves. The
//! binary prints the error with its causes and exits 64 when [`CliError::is_usage`].

use std::path::PathBuf;

use crate::audit::AuditError;
use crate::error::CeremonyError;
use crate::escrow::EscrowError;
use crate::pki::PkiError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A usage mistake found by the command itself (arguments, existing files).
    #[error("{0}")]
    Usage(String),
    /// The dev PKI failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A ceremony (import, DKG, refresh, repair, transcript verify) failed.
    #[error(transparent)]
    Ceremony(#[from] CeremonyError),
    /// An escrow command failed.
    #[error(transparent)]
    Escrow(#[from] EscrowError),
    /// A node's audit log could not be fetched.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The async runtime could not be started.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// A ceremony succeeded but its transcript could not be written; the
    /// transcript was printed to stdout instead.
    #[error("the ceremony succeeded, but its transcript (printed above) was not saved")]
    TranscriptNotSaved(#[source] CeremonyError),
    /// An import succeeded but its transcript could not be written; the transcript
    /// was printed to stdout instead.
    #[error("the key was imported, but its transcript (printed above) was not saved")]
    ImportTranscriptNotSaved(#[source] CeremonyError),
    /// A transcript does not match the live nodes (each mismatch was printed).
    #[error("{count} mismatch(es) between {} and the live nodes", path.display())]
    TranscriptMismatch {
        /// Mismatches found.
        count: usize,
        /// The transcript.
        path: PathBuf,
    },
    /// A node's audit log has a broken or missing record.
    #[error("{node}: {brk} ({records} records fetched)")]
    AuditChainBroken {
        /// The node.
        node: String,
        /// Where and how the chain breaks.
        brk: quorate_keys::audit::ChainBreak,
        /// Records fetched.
        records: u64,
    },
    /// A node's log does not stand against its signed checkpoint or the auditor's
    /// saved state (truncated, rewritten, forked, deleted, or another log key).
    #[error(transparent)]
    AuditFinding(#[from] crate::audit::history::Finding),
    /// Several nodes' logs, each verified on its own, do not reconcile.
    #[error(transparent)]
    AuditReconcile(#[from] crate::audit::reconcile::ReconcileFinding),
    /// The auditor's state file could not be read or written.
    #[error(transparent)]
    AuditState(#[from] crate::audit::history::StateError),
    /// A file could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error(transparent)]
    Write(std::io::Error),
}

impl CliError {
    /// The process exit code this error calls for besides usage (64) and plain
    /// failure (1): a finding in a node's audit log has its own.
    pub fn audit_exit_code(&self) -> Option<u8> {
        match self {
            Self::AuditFinding(f) => Some(f.kind.exit_code()),
            Self::AuditReconcile(f) => Some(f.kind.exit_code()),
            _ => None,
        }
    }

    /// Whether the error is a usage or configuration mistake (exit 64), as opposed
    /// to a failure while running the command (exit 1).
    pub fn is_usage(&self) -> bool {
        match self {
            Self::Usage(_) => true,
            Self::Pki(e) => e.is_usage(),
            Self::Ceremony(e) => e.is_usage(),
            Self::Escrow(e) => e.is_usage(),
            _ => false,
        }
    }
}
