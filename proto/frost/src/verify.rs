//! Verification of a finished signature in the public API encoding, the check every
//! standard verifier makes (RFC 8032, BIP340, RFC 9591).

use frost_core::{Signature, VerifyingKey};

use crate::error::CryptoError;
use crate::generic::{malformed, Frost, PublicEncoding};

/// Signature verification.
pub trait Verify {
    /// Verifies a signature (public API encoding) under a public key (public API
    /// encoding).
    fn verify(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError>;
}

impl<C: PublicEncoding> Verify for Frost<C> {
    fn verify(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        let key = VerifyingKey::<C>::deserialize(&C::frost_key_bytes(public_key))
            .map_err(malformed("public key"))?;
        let signature = Signature::<C>::deserialize(signature).map_err(malformed("signature"))?;
        key.verify(message, &signature)
            .map_err(|_| CryptoError::BadSignature)
    }
}
