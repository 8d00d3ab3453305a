//! Key packages and public key packages, decoded once and kept with their public
//! facts: a node decodes its key package when it loads a key, a coordinator the
//! public key package when it learns one, never per signature.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::error::CryptoError;
use crate::secret::SecretKeyPackage;
use frost_core::keys::{KeyPackage, PublicKeyPackage, VerifyingShare};

use crate::generic::{frost_err, wrong_suite, Frost, PublicEncoding};

/// Public facts read from a key package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPackageInfo {
    /// FROST identifier (scalar encoding).
    pub identifier: Vec<u8>,
    /// The signer's verifying share.
    pub verifying_share: Vec<u8>,
    /// The group verifying key (frost encoding).
    pub verifying_key: Vec<u8>,
    /// Threshold `t`.
    pub min_signers: u16,
}

/// Public facts read from a public key package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKeyInfo {
    /// Group public key in the public API encoding ([`PublicEncoding`](crate::suite::PublicEncoding)).
    pub public_key: Vec<u8>,
    /// The group verifying key in frost encoding.
    pub verifying_key: Vec<u8>,
    /// Threshold, when the package records it.
    pub min_signers: Option<u16>,
    /// Verifying share per identifier (both in frost encoding).
    pub verifying_shares: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A key package decoded once (every point checked) and held in memory for
/// signing, with its public facts. Decoding an Ed25519 key package costs two
/// scalar multiplications, so a node decodes each key package when it loads the
/// key, not per commitment or share. frost zeroizes the signing share on drop.
pub struct ParsedKeyPackage {
    pub(crate) inner: Box<dyn Any + Send + Sync>,
    pub(crate) info: KeyPackageInfo,
}

impl ParsedKeyPackage {
    /// Identifier, verifying share, group key and threshold.
    pub fn info(&self) -> &KeyPackageInfo {
        &self.info
    }
}

impl fmt::Debug for ParsedKeyPackage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ParsedKeyPackage(<redacted>)")
    }
}

/// A public key package decoded once, for aggregation (it verifies signatures and
/// names culprits), with its public facts. Cheap to clone.
#[derive(Clone)]
pub struct ParsedPublicKeyPackage {
    pub(crate) inner: Arc<dyn Any + Send + Sync>,
    pub(crate) info: PublicKeyInfo,
}

impl ParsedPublicKeyPackage {
    /// Group key, threshold and verifying shares.
    pub fn info(&self) -> &PublicKeyInfo {
        &self.info
    }
}

impl fmt::Debug for ParsedPublicKeyPackage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ParsedPublicKeyPackage")
            .field(&self.info)
            .finish()
    }
}

/// Decoding and reading key packages and public key packages.
pub trait KeyPackages {
    /// Decodes a key package once, for signing.
    fn parse_key_package(
        &self,
        key_package: &SecretKeyPackage,
    ) -> Result<ParsedKeyPackage, CryptoError>;
    /// Reads the public parts of a key package.
    fn key_package_info(
        &self,
        key_package: &SecretKeyPackage,
    ) -> Result<KeyPackageInfo, CryptoError> {
        Ok(self.parse_key_package(key_package)?.info)
    }
    /// Decodes a public key package once, for aggregation.
    fn parse_public_key_package(
        &self,
        public_key_package: &[u8],
    ) -> Result<ParsedPublicKeyPackage, CryptoError>;
    /// Reads a public key package.
    fn public_key_info(&self, public_key_package: &[u8]) -> Result<PublicKeyInfo, CryptoError> {
        Ok(self.parse_public_key_package(public_key_package)?.info)
    }
}

impl<C: PublicEncoding> KeyPackages for Frost<C> {
    fn parse_key_package(
        &self,
        key_package: &SecretKeyPackage,
    ) -> Result<ParsedKeyPackage, CryptoError> {
        let kp = Self::key_package(key_package)?;
        // frost decodes the verifying share as written, without deriving it from
        // the signing share: a package whose share does not match what it declares
        // would pass every check against a manifest and then make only invalid
        // signature shares. One scalar multiplication, once per decoding.
        if VerifyingShare::<C>::from(*kp.signing_share()) != *kp.verifying_share() {
            return Err(CryptoError::Malformed(
                "key package: its signing share is not the one its verifying share commits to"
                    .into(),
            ));
        }
        let info = KeyPackageInfo {
            identifier: kp.identifier().serialize(),
            verifying_share: kp.verifying_share().serialize().map_err(frost_err)?,
            verifying_key: kp.verifying_key().serialize().map_err(frost_err)?,
            min_signers: *kp.min_signers(),
        };
        Ok(ParsedKeyPackage {
            inner: Box::new(kp),
            info,
        })
    }

    fn parse_public_key_package(
        &self,
        public_key_package: &[u8],
    ) -> Result<ParsedPublicKeyPackage, CryptoError> {
        let pkp = Self::public_key_package(public_key_package)?;
        let verifying_key = pkp.verifying_key().serialize().map_err(frost_err)?;
        let mut verifying_shares = BTreeMap::new();
        for (id, share) in pkp.verifying_shares() {
            verifying_shares.insert(id.serialize(), share.serialize().map_err(frost_err)?);
        }
        let info = PublicKeyInfo {
            public_key: C::public_key_bytes(verifying_key.clone()),
            verifying_key,
            min_signers: pkp.min_signers(),
            verifying_shares,
        };
        Ok(ParsedPublicKeyPackage {
            inner: Arc::new(pkp),
            info,
        })
    }
}

impl ParsedKeyPackage {
    /// The decoded key package, if it is of ciphersuite `C`.
    pub(crate) fn of<C: PublicEncoding>(&self) -> Result<&KeyPackage<C>, CryptoError> {
        self.inner
            .downcast_ref()
            .ok_or_else(|| wrong_suite::<C>("key package"))
    }
}

impl ParsedPublicKeyPackage {
    /// The decoded public key package, if it is of ciphersuite `C`.
    pub(crate) fn of<C: PublicEncoding>(&self) -> Result<&PublicKeyPackage<C>, CryptoError> {
        self.inner
            .downcast_ref()
            .ok_or_else(|| wrong_suite::<C>("public key package"))
    }
}
