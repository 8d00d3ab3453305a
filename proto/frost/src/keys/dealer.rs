//! Trusted-dealer key material: splitting a key into shares (imports, tests,
//! benchmarks), and rebuilding one participant's key package from its bare signing
//! share (escrow recovery) only when it matches the participant's verifying share.

use frost_core::keys::{IdentifierList, KeyPackage, SecretShare, SigningShare, VerifyingShare};
use frost_core::{Identifier, SigningKey};
use rand_core::OsRng;

use crate::error::CryptoError;
use crate::generic::{frost_err, malformed, parse_identifier, Frost, PublicEncoding};
use crate::secret::{SecretKeyPackage, SecretScalar};

/// A key split by a trusted dealer.
#[derive(Debug)]
pub struct DealtKey {
    /// frost PublicKeyPackage.
    pub public_key_package: Vec<u8>,
    /// Key package per participant name, in the order of the names given.
    pub key_packages: Vec<(String, SecretKeyPackage)>,
}

/// Dealing shares and moving between a share and its key package.
pub trait Dealer {
    /// Splits `secret` (a signing key in frost scalar encoding), or a fresh random key,
    /// into key packages for `names` with threshold `threshold`.
    fn split(
        &self,
        secret: Option<&[u8]>,
        names: &[String],
        threshold: u16,
    ) -> Result<DealtKey, CryptoError>;
    /// Builds the key package of participant `identifier` from its signing share and
    /// the key's public key package; refuses a share whose verifying share is not the
    /// one the package records for `identifier`.
    fn key_package_from_signing_share(
        &self,
        identifier: &[u8],
        signing_share: &SecretScalar,
        public_key_package: &[u8],
        min_signers: u16,
    ) -> Result<SecretKeyPackage, CryptoError>;

    /// The signing share inside a key package. For checks that secrets never leak
    /// (tests grep logs for it); the signing path never needs it.
    fn signing_share(&self, key_package: &SecretKeyPackage) -> Result<SecretScalar, CryptoError>;
}

impl<C: PublicEncoding> Dealer for Frost<C> {
    fn split(
        &self,
        secret: Option<&[u8]>,
        names: &[String],
        threshold: u16,
    ) -> Result<DealtKey, CryptoError> {
        let mut rng = OsRng;
        let key = match secret {
            Some(bytes) => SigningKey::<C>::deserialize(bytes).map_err(malformed("signing key"))?,
            None => SigningKey::<C>::new(&mut rng),
        };
        let ids = names
            .iter()
            .map(|n| Identifier::<C>::derive(n.as_bytes()).map_err(frost_err))
            .collect::<Result<Vec<_>, _>>()?;
        let max = u16::try_from(names.len())
            .map_err(|_| CryptoError::Frost("too many participants".into()))?;
        let (shares, public_key_package) =
            frost_core::keys::split(&key, max, threshold, IdentifierList::Custom(&ids), &mut rng)
                .map_err(frost_err)?;
        let mut key_packages = Vec::with_capacity(names.len());
        for (name, id) in names.iter().zip(&ids) {
            let share: &SecretShare<C> = shares
                .get(id)
                .ok_or_else(|| CryptoError::Frost(format!("no share dealt for {name}")))?;
            let package = KeyPackage::<C>::try_from(share.clone()).map_err(frost_err)?;
            let bytes = package.serialize().map_err(frost_err)?;
            key_packages.push((name.clone(), SecretKeyPackage::from_bytes(bytes)));
        }
        Ok(DealtKey {
            public_key_package: public_key_package.serialize().map_err(frost_err)?,
            key_packages,
        })
    }

    fn key_package_from_signing_share(
        &self,
        identifier: &[u8],
        signing_share: &SecretScalar,
        public_key_package: &[u8],
        min_signers: u16,
    ) -> Result<SecretKeyPackage, CryptoError> {
        let identifier = parse_identifier::<C>(identifier)?;
        let pkp = Self::public_key_package(public_key_package)?;
        let share = SigningShare::<C>::deserialize(signing_share.expose_bytes())
            .map_err(|_| CryptoError::Malformed("signing share".into()))?;
        let expected = pkp.verifying_shares().get(&identifier).ok_or_else(|| {
            CryptoError::Malformed("the public key package has no such participant".into())
        })?;
        let computed = VerifyingShare::<C>::from(share);
        if computed != *expected {
            return Err(CryptoError::ShareMismatch(
                "the signing share does not match the participant's verifying share".into(),
            ));
        }
        let kp = KeyPackage::new(
            identifier,
            share,
            computed,
            *pkp.verifying_key(),
            min_signers,
        );
        Ok(SecretKeyPackage::from_bytes(
            kp.serialize().map_err(frost_err)?,
        ))
    }

    fn signing_share(&self, key_package: &SecretKeyPackage) -> Result<SecretScalar, CryptoError> {
        let kp = Self::key_package(key_package)?;
        Ok(SecretScalar::from_bytes(kp.signing_share().serialize()))
    }
}
