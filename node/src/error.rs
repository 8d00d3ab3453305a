//! The node's error type and its single mapping to gRPC status codes.

use tonic::{Code, Status};

/// Everything that can go wrong in a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Invalid configuration; the node does not start.
    #[error("configuration: {0}")]
    Config(String),
    /// The store was sealed under another key-encryption key.
    #[error("the key-encryption key does not open this node's store (wrong KEK, or the store belongs to another node)")]
    WrongKek,
    /// The store is damaged.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// I/O or sled failure.
    #[error("storage: {0}")]
    Storage(String),
    /// Serving failed (bind, TLS setup).
    #[error("server: {0}")]
    Server(String),
    /// No such key on this node.
    #[error("unknown key {0:?}")]
    UnknownKey(String),
    /// A key with this id is already installed.
    #[error("key {0:?} is already installed on this node")]
    KeyExists(String),
    /// A request that is malformed or inconsistent.
    #[error("{0}")]
    InvalidArgument(String),
    /// The caller (or the client it acts for) may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// A per-client rate limit was reached.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A request that is well-formed but cannot be honoured in the current state
    /// (for example a replayed or unknown commitment).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A ceremony step refused: a peer's message failed a check, or the relay
    /// tampered with one. The message names the party; the ceremony's state on this
    /// node is dropped.
    #[error("ceremony aborted: {0}")]
    CeremonyRejected(String),
    /// The node cannot serve this until it is restarted (its audit log can no longer
    /// be made durable): the caller should use another node.
    #[error("{0}")]
    Unavailable(String),
    /// A bug: a step that every earlier check said would succeed failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl NodeError {
    /// Process exit code for a node that stops with this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            // EX_USAGE-style: the operator has to fix the setup.
            NodeError::Config(_) | NodeError::WrongKek => 64,
            // EX_DATAERR: damaged state needs repair.
            NodeError::Corrupt(_) => 65,
            _ => 1,
        }
    }
}

impl NodeError {
    /// The gRPC status code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            NodeError::UnknownKey(_) => Code::NotFound,
            NodeError::KeyExists(_) => Code::AlreadyExists,
            NodeError::InvalidArgument(_) => Code::InvalidArgument,
            NodeError::FailedPrecondition(_) => Code::FailedPrecondition,
            NodeError::CeremonyRejected(_) => Code::Aborted,
            NodeError::PermissionDenied(_) => Code::PermissionDenied,
            NodeError::ResourceExhausted(_) => Code::ResourceExhausted,
            NodeError::Unavailable(_) => Code::Unavailable,
            NodeError::Config(_)
            | NodeError::WrongKek
            | NodeError::Corrupt(_)
            | NodeError::Storage(_)
            | NodeError::Server(_)
            | NodeError::Internal(_) => Code::Internal,
        }
    }
}

/// A storage failure (I/O or sled) described by `e`.
pub(crate) fn storage(e: impl std::fmt::Display) -> NodeError {
    NodeError::Storage(e.to_string())
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}
