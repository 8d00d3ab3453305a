//! Repairing a lost share (frost `keys::repairable`): `t` helpers rebuild a
//! participant's share from deltas and sigmas without any custodian.

use std::collections::BTreeMap;

use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::generic::{frost_err, malformed, parse_identifier, Frost, PublicEncoding};
use crate::secret::{SecretBytes, SecretKeyPackage};

/// Share repair.
pub trait Repair {
    /// Repair part 1, run by each helper: one delta per helper (helper identifier ->
    /// delta) towards rebuilding `target`'s share.
    fn repair_part1(
        &self,
        helpers: &[Vec<u8>],
        key_package: &SecretKeyPackage,
        target: &[u8],
    ) -> Result<BTreeMap<Vec<u8>, SecretBytes>, CryptoError>;
    /// Repair part 2, run by each helper: the sigma for the target from the deltas
    /// this helper received.
    fn repair_part2(&self, deltas: &[SecretBytes]) -> Result<SecretBytes, CryptoError>;
    /// Repair part 3, run by the target: its key package from every helper's sigma.
    fn repair_part3(
        &self,
        sigmas: &[SecretBytes],
        target: &[u8],
        public_key_package: &[u8],
    ) -> Result<SecretKeyPackage, CryptoError>;
}

impl<C: PublicEncoding> Repair for Frost<C> {
    fn repair_part1(
        &self,
        helpers: &[Vec<u8>],
        key_package: &SecretKeyPackage,
        target: &[u8],
    ) -> Result<BTreeMap<Vec<u8>, SecretBytes>, CryptoError> {
        let helpers = helpers
            .iter()
            .map(|h| parse_identifier::<C>(h))
            .collect::<Result<Vec<_>, _>>()?;
        let kp = Self::key_package(key_package)?;
        let deltas = frost_core::keys::repairable::repair_share_part1(
            &helpers,
            &kp,
            &mut OsRng,
            parse_identifier::<C>(target)?,
        )
        .map_err(frost_err)?;
        Ok(deltas
            .into_iter()
            .map(|(id, delta)| {
                (
                    id.serialize(),
                    SecretBytes(Zeroizing::new(delta.serialize())),
                )
            })
            .collect())
    }

    fn repair_part2(&self, deltas: &[SecretBytes]) -> Result<SecretBytes, CryptoError> {
        let deltas = deltas
            .iter()
            .map(|d| {
                frost_core::keys::repairable::Delta::<C>::deserialize(&d.0)
                    .map_err(malformed("repair delta"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sigma = frost_core::keys::repairable::repair_share_part2(&deltas);
        Ok(SecretBytes(Zeroizing::new(sigma.serialize())))
    }

    fn repair_part3(
        &self,
        sigmas: &[SecretBytes],
        target: &[u8],
        public_key_package: &[u8],
    ) -> Result<SecretKeyPackage, CryptoError> {
        let sigmas = sigmas
            .iter()
            .map(|s| {
                frost_core::keys::repairable::Sigma::<C>::deserialize(&s.0)
                    .map_err(malformed("repair sigma"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let kp = frost_core::keys::repairable::repair_share_part3(
            &sigmas,
            parse_identifier::<C>(target)?,
            &Self::public_key_package(public_key_package)?,
        )
        .map_err(frost_err)?;
        Ok(SecretKeyPackage::from_bytes(
            kp.serialize().map_err(frost_err)?,
        ))
    }
}
