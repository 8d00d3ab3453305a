//! The coordinator's error type, saying what went wrong, and its single mapping to
//! gRPC status codes ([`CoordError::code`], used by `From<CoordError> for Status`).
//! Every module of the coordinator reports with it; only the service turns it into
//! a `Status`, and the binary into an exit code.

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
    /// The request is malformed (key id, message size); the caller must fix it.
    #[error("{0}")]
    InvalidRequest(String),
    /// The request does not carry its caller's own valid sign intent for it.
    #[error("{0}")]
    Unauthenticated(String),
    /// No such key on a quorum of nodes.
    #[error("unknown key {0:?}")]
    UnknownKey(String),
    /// The caller may not do this: its certificate's role or trust domain is wrong,
    /// or the key's policy does not list it as an allowed client.
    #[error("{0}")]
    NotAllowed(String),
    /// The request carries an approval token that does not verify for the key
    /// (signature, approver, key id, scope or validity).
    #[error("{0}")]
    InvalidApproval(String),
    /// The nodes that answered cannot form a quorum the key's policy accepts
    /// (too few home-jurisdiction signers), and no approval permits another.
    #[error("{0}")]
    NoLawfulQuorum(String),
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
    /// The client reached its per-minute signature limit for the key, here or at
    /// the nodes the quorum needed; the message says when to retry.
    #[error("{0}")]
    RateLimited(String),
    /// The client already has as many `Sign` requests in flight as it may.
    #[error("{0}")]
    TooManyInFlight(String),
    /// Too few nodes answered to tell whether a key exists.
    #[error("{0}")]
    NodesUnreachable(String),
    /// No signature was made within the request's deadline.
    #[error("{0}")]
    DeadlineReached(String),
    /// Nodes the quorum needed hold no share of the manifest the coordinator's
    /// directory knows for the key: a refresh committed (or was rolled back) since
    /// it last read the nodes. The service reads them again and retries once.
    #[error("{0}")]
    KeyMovedOn(String),
    /// A request id reused for another message.
    #[error("request_id {0:?} was already used with a different message")]
    RequestIdReused(String),
    /// A bug or an inconsistency between nodes (a signing package that cannot be
    /// built, an aggregation that fails without naming culprits).
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
            CoordError::InvalidRequest(_) => Code::InvalidArgument,
            CoordError::Unauthenticated(_) => Code::Unauthenticated,
            CoordError::UnknownKey(_) => Code::NotFound,
            CoordError::NotAllowed(_) => Code::PermissionDenied,
            CoordError::InvalidApproval(_) | CoordError::NoLawfulQuorum(_) => {
                Code::FailedPrecondition
            }
            CoordError::RateLimited(_) | CoordError::TooManyInFlight(_) => Code::ResourceExhausted,
            CoordError::NoQuorum { .. }
            | CoordError::NodesUnreachable(_)
            | CoordError::DeadlineReached(_)
            | CoordError::KeyMovedOn(_) => Code::Unavailable,
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
