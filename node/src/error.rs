//! The node's error type, named after what went wrong, and its single mapping to
//! gRPC status codes ([`NodeError::code`], `From<NodeError> for tonic::Status`).
//!
//! Used by every module of the node. Invariants: no error carries secret material
//! (shares, nonces, keys, messages: only ids, hashes and the cause); the message
//! text is what the caller reads, and the code tells it whether to retry elsewhere
//! (see `docs/ARCHITECTURE.md`, "Errors").

use tonic::{Code, Status};

/// Everything that can go wrong in a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    // The node's own setup and storage: the operator has to act.
    /// Invalid configuration; the node does not start.
    #[error("configuration: {0}")]
    Config(String),
    /// No configured key-encryption key provider can open (or create) the store;
    /// the message names each provider and why it failed.
    #[error("{0}")]
    KekUnavailable(String),
    /// The store is damaged.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// I/O or sled failure.
    #[error("storage: {0}")]
    Storage(String),
    /// The node failed at something of its own outside the signing path: binding,
    /// TLS setup, the async runtime, or a ceremony step's own bookkeeping.
    #[error("server: {0}")]
    Server(String),
    /// The node's audit log can no longer be made durable (a flush or a write
    /// failed): the node records and signs nothing more until it is restarted, and
    /// the caller should use another node.
    #[error("this node's audit log can no longer be made durable ({reason}); it records and signs nothing more until it is restarted")]
    AuditLogBroken {
        /// The failure that broke the log (an I/O error).
        reason: String,
    },
    /// A Merkle root or proof asked for a tree size the durable log does not reach,
    /// or a record outside the tree.
    #[error("{0}")]
    AuditProof(#[from] quorate_keys::merkle::ProofError),
    /// A bug: a step that every earlier check said would succeed failed.
    #[error("internal error: {0}")]
    Internal(String),

    // Requests that do not fit what the node holds.
    /// A request that does not decode, fails validation, or contradicts itself.
    #[error("{0}")]
    MalformedRequest(String),
    /// No such key on this node.
    #[error("unknown key {0:?}")]
    UnknownKey(String),
    /// The key is here, but no share of it under the manifest asked for: neither
    /// the current one nor one a refresh staged.
    #[error("this node holds no share of key {key_id:?} under manifest {manifest_sha256} (neither current nor staged by a refresh)")]
    ManifestNotHeld {
        /// The key.
        key_id: String,
        /// The manifest asked for, hex SHA-256.
        manifest_sha256: String,
    },
    /// A key with this id is already installed.
    #[error("key {0:?} is already installed on this node")]
    KeyExists(String),
    /// A key record that is not this node's share of a valid key (its manifest does
    /// not decode, does not name this node at its place, or the key package is
    /// another share).
    #[error("{0}")]
    KeyNotForThisNode(String),

    // Round 2.
    /// A round-2 quorum with fewer signers than the key's threshold.
    #[error("the quorum has {signers} signers; key {key_id:?} needs {threshold}")]
    QuorumTooSmall {
        /// Signers in the request.
        signers: usize,
        /// The key.
        key_id: String,
        /// Signers the key needs.
        threshold: u16,
    },
    /// A round-2 quorum naming a signer that holds no share of the key.
    #[error("the quorum names a signer that holds no share of this key")]
    SignerWithoutShare,
    /// A round-2 quorum without a commitment of this node.
    #[error("the quorum holds no commitment of this node")]
    NoOwnCommitment,
    /// The other signers' commitments do not form a signing package.
    #[error("{0}")]
    BadSigningPackage(String),
    /// A `SignShares` batch with no requests or too many.
    #[error("a SignShares batch carries 1..={max} requests, not {len}")]
    BadBatchSize {
        /// Requests in the batch.
        len: usize,
        /// Most requests a batch may carry.
        max: usize,
    },
    /// A commitment this node did not issue, already used, or expired: its nonce
    /// is not (or no longer) in the store.
    #[error("the commitment for this node was not issued by it, was already used, or expired")]
    CommitmentNotIssued,
    /// The request does not carry the client's own valid intent for it.
    #[error("{0}")]
    IntentRefused(#[from] quorate_transport::intent::IntentError),
    /// The key's policy does not allow this client.
    #[error("client {client_id:?} may not use key {key_id:?}")]
    ClientNotAllowed {
        /// The client that signed the request's intent.
        client_id: String,
        /// The key.
        key_id: String,
    },
    /// The quorum breaks the key's residency policy, and no approval token was given.
    #[error("{violation}, and no approval token was given")]
    UnlawfulQuorum {
        /// How the quorum breaks the policy.
        violation: String,
    },
    /// The quorum breaks the key's residency policy, and the approval token given
    /// for it is refused.
    #[error("{violation}, and the approval token is refused: {reason}")]
    ApprovalRefused {
        /// How the quorum breaks the policy.
        violation: String,
        /// Why the token is refused.
        reason: String,
    },
    /// A revocation of an approval token that is not signed by an approver of the
    /// key (or does not verify).
    #[error("revocation refused: {0}")]
    RevocationRefused(String),
    /// The client reached the key's rate limit.
    #[error("client {client_id:?} reached {limit} signatures per minute on key {key_id:?}; retry in {retry_secs} s")]
    RateLimited {
        /// The client the coordinator signs for.
        client_id: String,
        /// Signatures per minute the key's policy allows a client.
        limit: u32,
        /// The key.
        key_id: String,
        /// Seconds until the client may sign again (at least 1).
        retry_secs: u64,
    },

    // Escrow.
    /// The key's manifest names no escrow custodians, so its shares cannot be
    /// escrowed.
    #[error(
        "key {0:?} has no escrow custodians in its manifest, so its shares cannot be \
         escrowed; custodians come with the key (dkg or import with --custodians) or with \
         a refresh its administrators authorize (refresh --custodians)"
    )]
    NoEscrowCustodians(String),
    /// A part could not be encrypted to its custodian.
    #[error("cannot encrypt to custodian {custodian:?}: {reason}")]
    CannotEncryptToCustodian {
        /// The custodian.
        custodian: String,
        /// Why encryption failed.
        reason: String,
    },

    // Governance.
    /// A governed operation without enough valid administrators' authorizations
    /// of exactly its setup (refused and audited).
    #[error("not authorized: {0}")]
    NotAuthorized(String),

    // Ceremonies.
    /// A ceremony whose setup or manifest does not fit this node or the key it is
    /// about (it places this node elsewhere, names a node without a share, moves a
    /// node, or changes the key's parameters).
    #[error("{0}")]
    CeremonyMismatch(String),
    /// The key a ceremony is about is another version on this node (changed by
    /// another ceremony, or never the one the setup names).
    #[error("{0}")]
    KeyVersionMismatch(String),
    /// A ceremony with this id is already under way on this node.
    #[error("ceremony {ceremony_id} is already under way on this node")]
    CeremonyUnderWay {
        /// The ceremony.
        ceremony_id: String,
    },
    /// The node takes part in as many ceremonies as it may at once.
    #[error("too many ceremonies under way on this node")]
    TooManyCeremonies,
    /// No state for this ceremony on this node.
    #[error("no pending ceremony {ceremony_id:?} on this node (never started, aborted after an error, finished, or expired)")]
    NoPendingCeremony {
        /// The ceremony.
        ceremony_id: String,
    },
    /// A ceremony step asked for out of order; the ceremony's state on this node is
    /// dropped.
    #[error("{0}")]
    CeremonyOutOfStep(String),
    /// A ceremony step refused: a peer's message failed a check, or the relay
    /// tampered with one. The message names the party; the ceremony's state on this
    /// node is dropped.
    #[error("ceremony aborted: {0}")]
    CeremonyRejected(String),
}

impl NodeError {
    /// Process exit code for a node that stops with this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            // EX_USAGE-style: the operator has to fix the setup.
            NodeError::Config(_) | NodeError::KekUnavailable(_) => 64,
            // EX_DATAERR: damaged state needs repair.
            NodeError::Corrupt(_) => 65,
            _ => 1,
        }
    }

    /// The gRPC status code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            NodeError::UnknownKey(_) | NodeError::ManifestNotHeld { .. } => Code::NotFound,
            NodeError::KeyExists(_) => Code::AlreadyExists,
            NodeError::MalformedRequest(_)
            | NodeError::KeyNotForThisNode(_)
            | NodeError::QuorumTooSmall { .. }
            | NodeError::SignerWithoutShare
            | NodeError::NoOwnCommitment
            | NodeError::BadSigningPackage(_)
            | NodeError::BadBatchSize { .. }
            | NodeError::CeremonyMismatch(_) => Code::InvalidArgument,
            NodeError::CommitmentNotIssued
            | NodeError::UnlawfulQuorum { .. }
            | NodeError::ApprovalRefused { .. }
            | NodeError::KeyVersionMismatch(_)
            | NodeError::CeremonyUnderWay { .. }
            | NodeError::TooManyCeremonies
            | NodeError::NoPendingCeremony { .. }
            | NodeError::CeremonyOutOfStep(_)
            | NodeError::NoEscrowCustodians(_) => Code::FailedPrecondition,
            NodeError::CeremonyRejected(_) => Code::Aborted,
            NodeError::IntentRefused(_) => Code::Unauthenticated,
            NodeError::ClientNotAllowed { .. }
            | NodeError::RevocationRefused(_)
            | NodeError::NotAuthorized(_) => Code::PermissionDenied,
            NodeError::RateLimited { .. } => Code::ResourceExhausted,
            NodeError::AuditLogBroken { .. } => Code::Unavailable,
            NodeError::AuditProof(_) => Code::OutOfRange,
            NodeError::Config(_)
            | NodeError::KekUnavailable(_)
            | NodeError::Corrupt(_)
            | NodeError::CannotEncryptToCustodian { .. }
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
