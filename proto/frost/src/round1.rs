//! FROST round 1: a signer's fresh nonces and the commitments it publishes, and the
//! coordinator's decoding of commitments (every point checked) when it receives them.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use frost_core::round1::SigningCommitments;
use rand_core::OsRng;

use crate::error::CryptoError;
use crate::generic::{frost_err, malformed, Frost, PublicEncoding};
use crate::packages::ParsedKeyPackage;
use crate::secret::SecretNonces;

/// One signer's round-1 commitments, decoded once (every point checked), with the
/// encoding they arrived in. A coordinator decodes pooled commitments when they are
/// fetched, off the signing path. Cheap to clone.
#[derive(Clone)]
pub struct ParsedCommitments {
    pub(crate) inner: Arc<dyn Any + Send + Sync>,
    pub(crate) encoded: Vec<u8>,
}

impl ParsedCommitments {
    /// The frost encoding.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }
}

impl fmt::Debug for ParsedCommitments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ParsedCommitments")
            .field(&hex::encode(&self.encoded))
            .finish()
    }
}

/// Round 1 of FROST signing.
pub trait Round1 {
    /// Round 1: fresh nonces and their commitments.
    fn commit(
        &self,
        key_package: &ParsedKeyPackage,
    ) -> Result<(SecretNonces, Vec<u8>), CryptoError>;
    /// Decodes one signer's round-1 commitments.
    fn parse_commitments(&self, commitments: &[u8]) -> Result<ParsedCommitments, CryptoError>;
}

impl<C: PublicEncoding> Round1 for Frost<C> {
    fn commit(
        &self,
        key_package: &ParsedKeyPackage,
    ) -> Result<(SecretNonces, Vec<u8>), CryptoError> {
        let kp = key_package.of::<C>()?;
        let (nonces, commitments) = frost_core::round1::commit(kp.signing_share(), &mut OsRng);
        let commitments = commitments.serialize().map_err(frost_err)?;
        Ok((SecretNonces(Box::new(nonces)), commitments))
    }

    fn parse_commitments(&self, commitments: &[u8]) -> Result<ParsedCommitments, CryptoError> {
        let parsed =
            SigningCommitments::<C>::deserialize(commitments).map_err(malformed("commitments"))?;
        Ok(ParsedCommitments {
            inner: Arc::new(parsed),
            encoded: commitments.to_vec(),
        })
    }
}
