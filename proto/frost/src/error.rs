//! Errors of the cryptographic layer. Peer misbehaviour (a share that does not verify,
//! a key-generation message that fails its check) names its culprit by FROST
//! identifier, so callers can exclude or report the party.

/// Errors of the cryptographic layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Bytes that do not decode as the expected FROST structure.
    #[error("malformed {0}")]
    Malformed(String),
    /// Signature shares that do not verify; `culprits` are FROST identifiers (bytes).
    #[error("invalid signature shares from {} signer(s)", culprits.len())]
    InvalidShares {
        /// Identifiers of the signers whose shares failed verification.
        culprits: Vec<Vec<u8>>,
    },
    /// A signature that does not verify under the group key.
    #[error("signature does not verify")]
    BadSignature,
    /// A secret that does not match its public commitment (an escrow part off the
    /// committed polynomial, or a rebuilt share that is not the expected one).
    #[error("{0}")]
    ShareMismatch(String),
    /// A key-generation message that fails its check and names its sender (an invalid
    /// proof of knowledge in round 1, or a share that does not match the sender's
    /// commitment in round 2). `culprit` is a FROST identifier (bytes).
    #[error("{reason}")]
    Culprit {
        /// Identifier of the participant whose message failed.
        culprit: Vec<u8>,
        /// frost's reason.
        reason: String,
    },
    /// Any other refusal by frost, with its reason.
    #[error("{0}")]
    Frost(String),
}
