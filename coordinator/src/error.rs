//! The coordinator's error type and its single mapping to gRPC status codes.

use tonic::{Code, Status};

/// Everything a coordinator can answer besides a signature.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordError {
    /// Invalid configuration; the coordinator does not start.
    #[error("configuration: {0}")]
    Config(String),
    /// Serving failed (bind, TLS setup).
    #[error("server: {0}")]
    Server(String),
    /// A request the caller must fix.
    #[error("{0}")]
    InvalidArgument(String),
    /// No such key on a quorum of nodes.
    #[error("unknown key {0:?}")]
    UnknownKey(String),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// Policy needs something the request lacks.
    #[error("{0}")]
    FailedPrecondition(String),
    /// No quorum could be gathered in time.
    #[error("no quorum for key {key_id:?}: {answered} of {participants} nodes answered, {needed} needed{detail}")]
    NoQuorum {
        /// Key id.
        key_id: String,
        /// Nodes that answered (and were not excluded as culprits).
        answered: usize,
        /// Nodes holding shares.
        participants: usize,
        /// Threshold.
        needed: usize,
        /// Extra context, e.g. "; deadline reached".
        detail: String,
    },
    /// A per-client rate limit was reached.
    #[error("{0}")]
    ResourceExhausted(String),
    /// Nodes could not be reached to resolve a key.
    #[error("{0}")]
    Unavailable(String),
    /// A request id reused for another message.
    #[error("request_id {0:?} was already used with a different message")]
    RequestIdReused(String),
    /// A bug or an inconsistency between nodes.
    #[error("{0}")]
    Internal(String),
}

impl CoordError {
    /// Process exit code for a coordinator that stops with this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CoordError::Config(_) => 64,
            _ => 1,
        }
    }
}

impl CoordError {
    /// The gRPC status code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            CoordError::InvalidArgument(_) => Code::InvalidArgument,
            CoordError::UnknownKey(_) => Code::NotFound,
            CoordError::PermissionDenied(_) => Code::PermissionDenied,
            CoordError::FailedPrecondition(_) => Code::FailedPrecondition,
            CoordError::ResourceExhausted(_) => Code::ResourceExhausted,
            CoordError::NoQuorum { .. } | CoordError::Unavailable(_) => Code::Unavailable,
            CoordError::RequestIdReused(_) => Code::AlreadyExists,
            CoordError::Config(_) | CoordError::Server(_) | CoordError::Internal(_) => {
                Code::Internal
            }
        }
    }
}

impl From<CoordError> for Status {
    fn from(e: CoordError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}
