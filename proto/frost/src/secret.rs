//! Secret values that cross the crate boundary as frost-serialized bytes: key
//! packages, ceremony step state, nonces and bare scalars. Each is zeroized on drop
//! and prints `<redacted>` from `Debug`, so no secret reaches a log, an error or a
//! panic message.

use std::any::Any;
use std::fmt;

use zeroize::Zeroizing;

/// Secret bytes of a key ceremony step: a DKG secret package, a round-2 package, a
/// repair delta or sigma, always in frost serialization. Zeroized on drop and never
/// printed.
pub struct SecretBytes(pub(crate) Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps secret bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The bytes. Handle with care: they are secret.
    pub fn expose_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

/// A signer's secret nonces for one commitment, decoded once and held in memory
/// only (frost zeroizes them on drop). Signing consumes them: a nonce signs once.
pub struct SecretNonces(pub(crate) Box<dyn Any + Send + Sync>);

impl fmt::Debug for SecretNonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretNonces(<redacted>)")
    }
}

/// A signer's key package (holds the signing share), in frost serialization.
/// Zeroized on drop and never printed.
#[derive(Clone)]
pub struct SecretKeyPackage(Zeroizing<Vec<u8>>);

impl SecretKeyPackage {
    /// Wraps serialized key package bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The serialized key package. Handle with care: it holds the signing share.
    pub fn expose_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretKeyPackage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKeyPackage(<redacted>)")
    }
}

/// A secret scalar (a signing share or an escrow part's value) in the ciphersuite's
/// FROST scalar encoding. Zeroized on drop and never printed.
#[derive(Clone)]
pub struct SecretScalar(Zeroizing<Vec<u8>>);

impl SecretScalar {
    /// Wraps scalar bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The scalar's bytes. Handle with care: they are secret.
    pub fn expose_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretScalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretScalar(<redacted>)")
    }
}
