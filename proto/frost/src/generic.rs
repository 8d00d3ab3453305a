//! [`Frost<C>`]: the one implementation of every protocol step, generic over
//! `frost_core::Ciphersuite`, and what the steps share: how each ciphersuite encodes
//! its group key in the public API, decoding helpers and error conversions. Each
//! step's trait and its `impl` for `Frost<C>` live in the step's own module.

use std::marker::PhantomData;

use frost_core::keys::{KeyPackage, PublicKeyPackage};
use frost_core::Identifier;

use crate::ciphersuite::Ciphersuite;
use crate::error::CryptoError;
use crate::secret::SecretKeyPackage;

/// The generic implementation of every step for a frost ciphersuite; a unit value
/// per ciphersuite is all [`crate::suite::ops`] hands out.
#[derive(Debug)]
pub struct Frost<C>(pub(crate) PhantomData<fn() -> C>);

/// Per-ciphersuite encoding of the group key in the public API.
pub trait PublicEncoding: frost_core::Ciphersuite {
    /// Which [`Ciphersuite`] this is.
    const SUITE: Ciphersuite;
    /// Public API encoding of a frost-serialized verifying key.
    fn public_key_bytes(frost_encoding: Vec<u8>) -> Vec<u8> {
        frost_encoding
    }
    /// frost encoding of a public API verifying key.
    fn frost_key_bytes(public: &[u8]) -> Vec<u8> {
        public.to_vec()
    }
}

impl PublicEncoding for frost_ed25519::Ed25519Sha512 {
    const SUITE: Ciphersuite = Ciphersuite::Ed25519;
}

impl PublicEncoding for frost_secp256k1::Secp256K1Sha256 {
    const SUITE: Ciphersuite = Ciphersuite::Secp256k1;
}

impl PublicEncoding for frost_secp256k1_tr::Secp256K1Sha256TR {
    const SUITE: Ciphersuite = Ciphersuite::Secp256k1Tr;
    /// BIP340 keys are x-only: drop the SEC1 parity byte. Signing negates shares as
    /// needed so the key has even Y, which is what a BIP340 verifier assumes.
    fn public_key_bytes(frost_encoding: Vec<u8>) -> Vec<u8> {
        frost_encoding
            .get(1..)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }
    fn frost_key_bytes(public: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(33);
        bytes.push(0x02);
        bytes.extend_from_slice(public);
        bytes
    }
}

pub(crate) fn frost_err<C: frost_core::Ciphersuite>(e: frost_core::Error<C>) -> CryptoError {
    CryptoError::Frost(e.to_string())
}

pub(crate) fn malformed<C: frost_core::Ciphersuite>(
    what: &str,
) -> impl Fn(frost_core::Error<C>) -> CryptoError + '_ {
    move |e| CryptoError::Malformed(format!("{what}: {e}"))
}

pub(crate) fn parse_identifier<C: frost_core::Ciphersuite>(
    bytes: &[u8],
) -> Result<Identifier<C>, CryptoError> {
    Identifier::<C>::deserialize(bytes).map_err(malformed("identifier"))
}

impl<C: PublicEncoding> Frost<C> {
    pub(crate) fn key_package(bytes: &SecretKeyPackage) -> Result<KeyPackage<C>, CryptoError> {
        KeyPackage::<C>::deserialize(bytes.expose_bytes()).map_err(malformed("key package"))
    }
    pub(crate) fn public_key_package(bytes: &[u8]) -> Result<PublicKeyPackage<C>, CryptoError> {
        PublicKeyPackage::<C>::deserialize(bytes).map_err(malformed("public key package"))
    }
}

/// A parsed value of another ciphersuite was handed to this one (a caller's bug).
pub(crate) fn wrong_suite<C: PublicEncoding>(what: &str) -> CryptoError {
    CryptoError::Malformed(format!(
        "{what} of another ciphersuite used with {}",
        C::SUITE
    ))
}
