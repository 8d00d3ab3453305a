//! Finishing a refresh (frost `keys::refresh`): new shares of the same group key from
//! the refresh DKG's rounds and this participant's old key package.

use std::collections::BTreeMap;

use crate::error::CryptoError;
use crate::generic::{frost_err, malformed, Frost, PublicEncoding};
use crate::keys::dkg::{dkg_err, round1_packages, round2_packages};
use crate::secret::{SecretBytes, SecretKeyPackage};

use frost_core::keys::dkg;

/// The last part of a refresh.
pub trait Refresh {
    /// Part 3 of a refresh: the new key package and public key package (same group
    /// key, new shares) from the old ones.
    fn refresh_part3(
        &self,
        secret: &SecretBytes,
        round1: &BTreeMap<Vec<u8>, Vec<u8>>,
        round2: &BTreeMap<Vec<u8>, SecretBytes>,
        old_public_key_package: &[u8],
        old_key_package: &SecretKeyPackage,
    ) -> Result<(SecretKeyPackage, Vec<u8>), CryptoError>;
}

impl<C: PublicEncoding> Refresh for Frost<C> {
    fn refresh_part3(
        &self,
        secret: &SecretBytes,
        round1: &BTreeMap<Vec<u8>, Vec<u8>>,
        round2: &BTreeMap<Vec<u8>, SecretBytes>,
        old_public_key_package: &[u8],
        old_key_package: &SecretKeyPackage,
    ) -> Result<(SecretKeyPackage, Vec<u8>), CryptoError> {
        let secret = dkg::round2::SecretPackage::<C>::deserialize(&secret.0)
            .map_err(malformed("round-2 secret package"))?;
        let round1 = round1_packages::<C>(round1)?;
        let round2 = round2_packages::<C>(round2)?;
        let (key_package, public_key_package) = frost_core::keys::refresh::refresh_dkg_shares(
            &secret,
            &round1,
            &round2,
            Self::public_key_package(old_public_key_package)?,
            Self::key_package(old_key_package)?,
        )
        .map_err(dkg_err)?;
        Ok((
            SecretKeyPackage::from_bytes(key_package.serialize().map_err(frost_err)?),
            public_key_package.serialize().map_err(frost_err)?,
        ))
    }
}
