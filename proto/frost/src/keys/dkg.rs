//! Distributed key generation (frost `keys::dkg` parts 1-3). Secret state between
//! parts travels as [`SecretBytes`]; a message that fails its check names its sender.
//! The same rounds over a zero secret refresh an existing key ([`DkgMode::Refresh`],
//! finished by [`crate::keys::Refresh`]).

use std::collections::BTreeMap;

use frost_core::keys::dkg;
use frost_core::Identifier;
use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::generic::{frost_err, malformed, parse_identifier, Frost, PublicEncoding};
use crate::secret::{SecretBytes, SecretKeyPackage};

/// Which key-generation protocol a DKG step runs: a new key, or a refresh of an
/// existing key's shares (the same rounds over a zero secret, so the group key stays).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DkgMode {
    /// frost `keys::dkg`: a new key.
    Generate,
    /// frost `keys::refresh` (DKG variant): new shares of an existing key.
    Refresh,
}

/// Distributed key generation.
pub trait Dkg {
    /// DKG part 1 for participant `name`: this participant's secret state and its
    /// round-1 package (commitment and proof of knowledge) for every other participant.
    fn dkg_part1(
        &self,
        mode: DkgMode,
        name: &str,
        max_signers: u16,
        min_signers: u16,
    ) -> Result<(SecretBytes, Vec<u8>), CryptoError>;
    /// DKG part 2: checks the others' round-1 packages (identifier -> package) and
    /// returns the round-2 secret state and one secret round-2 package per recipient.
    /// Consumes the round-1 secret state.
    fn dkg_part2(
        &self,
        mode: DkgMode,
        secret: SecretBytes,
        round1: &BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Result<(SecretBytes, BTreeMap<Vec<u8>, SecretBytes>), CryptoError>;
    /// DKG part 3 of a new key: checks the round-2 packages received (sender
    /// identifier -> package) against the senders' commitments, and returns this
    /// participant's key package and the group's public key package.
    fn dkg_part3(
        &self,
        secret: &SecretBytes,
        round1: &BTreeMap<Vec<u8>, Vec<u8>>,
        round2: &BTreeMap<Vec<u8>, SecretBytes>,
    ) -> Result<(SecretKeyPackage, Vec<u8>), CryptoError>;
}

impl<C: PublicEncoding> Dkg for Frost<C> {
    fn dkg_part1(
        &self,
        mode: DkgMode,
        name: &str,
        max_signers: u16,
        min_signers: u16,
    ) -> Result<(SecretBytes, Vec<u8>), CryptoError> {
        let id = Identifier::<C>::derive(name.as_bytes()).map_err(frost_err)?;
        let (secret, package) = match mode {
            DkgMode::Generate => dkg::part1(id, max_signers, min_signers, OsRng),
            DkgMode::Refresh => {
                frost_core::keys::refresh::refresh_dkg_part1(id, max_signers, min_signers, OsRng)
            }
        }
        .map_err(frost_err)?;
        Ok((
            SecretBytes(Zeroizing::new(secret.serialize().map_err(frost_err)?)),
            package.serialize().map_err(frost_err)?,
        ))
    }

    fn dkg_part2(
        &self,
        mode: DkgMode,
        secret: SecretBytes,
        round1: &BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Result<(SecretBytes, BTreeMap<Vec<u8>, SecretBytes>), CryptoError> {
        let secret = dkg::round1::SecretPackage::<C>::deserialize(&secret.0)
            .map_err(malformed("round-1 secret package"))?;
        let round1 = round1_packages::<C>(round1)?;
        let (secret, packages) = match mode {
            DkgMode::Generate => dkg::part2(secret, &round1),
            DkgMode::Refresh => frost_core::keys::refresh::refresh_dkg_part2(secret, &round1),
        }
        .map_err(dkg_err)?;
        let mut out = BTreeMap::new();
        for (id, package) in packages {
            out.insert(
                id.serialize(),
                SecretBytes(Zeroizing::new(package.serialize().map_err(frost_err)?)),
            );
        }
        Ok((
            SecretBytes(Zeroizing::new(secret.serialize().map_err(frost_err)?)),
            out,
        ))
    }

    fn dkg_part3(
        &self,
        secret: &SecretBytes,
        round1: &BTreeMap<Vec<u8>, Vec<u8>>,
        round2: &BTreeMap<Vec<u8>, SecretBytes>,
    ) -> Result<(SecretKeyPackage, Vec<u8>), CryptoError> {
        let secret = dkg::round2::SecretPackage::<C>::deserialize(&secret.0)
            .map_err(malformed("round-2 secret package"))?;
        let round1 = round1_packages::<C>(round1)?;
        let round2 = round2_packages::<C>(round2)?;
        let (key_package, public_key_package) =
            dkg::part3(&secret, &round1, &round2).map_err(dkg_err)?;
        Ok((
            SecretKeyPackage::from_bytes(key_package.serialize().map_err(frost_err)?),
            public_key_package.serialize().map_err(frost_err)?,
        ))
    }
}

pub(crate) fn round1_packages<C: frost_core::Ciphersuite>(
    packages: &BTreeMap<Vec<u8>, Vec<u8>>,
) -> Result<BTreeMap<Identifier<C>, dkg::round1::Package<C>>, CryptoError> {
    let mut out = BTreeMap::new();
    for (id, bytes) in packages {
        let identifier = parse_identifier::<C>(id)?;
        let package =
            dkg::round1::Package::<C>::deserialize(bytes).map_err(|e| CryptoError::Culprit {
                culprit: id.clone(),
                reason: format!("round-1 package does not decode: {e}"),
            })?;
        out.insert(identifier, package);
    }
    Ok(out)
}

pub(crate) fn round2_packages<C: frost_core::Ciphersuite>(
    packages: &BTreeMap<Vec<u8>, SecretBytes>,
) -> Result<BTreeMap<Identifier<C>, dkg::round2::Package<C>>, CryptoError> {
    let mut out = BTreeMap::new();
    for (id, bytes) in packages {
        let identifier = parse_identifier::<C>(id)?;
        let package = dkg::round2::Package::<C>::deserialize(&bytes.0).map_err(|_| {
            // Never quote the bytes: they are a secret share.
            CryptoError::Culprit {
                culprit: id.clone(),
                reason: "round-2 package does not decode".into(),
            }
        })?;
        out.insert(identifier, package);
    }
    Ok(out)
}

/// frost's key-generation errors, with the culprit kept when frost names one.
pub(crate) fn dkg_err<C: frost_core::Ciphersuite>(e: frost_core::Error<C>) -> CryptoError {
    match e.culprits().first() {
        Some(culprit) => CryptoError::Culprit {
            culprit: culprit.serialize(),
            reason: e.to_string(),
        },
        None => frost_err(e),
    }
}
