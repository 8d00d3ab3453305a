//! [`SuiteOps`]: every protocol step of one ciphersuite behind one `&'static dyn`,
//! so callers choose a ciphersuite at run time (from a manifest) and never name a
//! curve type. [`ops`] picks the instance for a [`Ciphersuite`].

use std::marker::PhantomData;

use frost_core::Identifier;

use crate::ciphersuite::Ciphersuite;
use crate::error::CryptoError;
use crate::generic::{frost_err, Frost, PublicEncoding};
use crate::keys::{Dealer, Dkg, Refresh, Repair};
use crate::packages::KeyPackages;
use crate::round1::Round1;
use crate::round2::Round2;
use crate::verify::Verify;

impl Ciphersuite {
    /// The operations of this ciphersuite.
    pub fn ops(self) -> &'static dyn SuiteOps {
        ops(self)
    }
}

/// Every FROST operation of one ciphersuite over serialized values: the steps'
/// traits together, so one `&'static dyn SuiteOps` reaches them all.
pub trait SuiteOps:
    KeyPackages + Round1 + Round2 + Verify + Dealer + Dkg + Refresh + Repair + Send + Sync
{
    /// Which ciphersuite this is.
    fn ciphersuite(&self) -> Ciphersuite;
    /// The FROST identifier of a named participant: `Identifier::derive(name)`.
    fn identifier(&self, name: &str) -> Result<Vec<u8>, CryptoError>;
}

impl<C: PublicEncoding> SuiteOps for Frost<C> {
    fn ciphersuite(&self) -> Ciphersuite {
        C::SUITE
    }

    fn identifier(&self, name: &str) -> Result<Vec<u8>, CryptoError> {
        Ok(Identifier::<C>::derive(name.as_bytes())
            .map_err(frost_err)?
            .serialize())
    }
}

static ED25519: Frost<frost_ed25519::Ed25519Sha512> = Frost(PhantomData);
static SECP256K1: Frost<frost_secp256k1::Secp256K1Sha256> = Frost(PhantomData);
static SECP256K1_TR: Frost<frost_secp256k1_tr::Secp256K1Sha256TR> = Frost(PhantomData);

/// The operations of `suite`.
pub fn ops(suite: Ciphersuite) -> &'static dyn SuiteOps {
    match suite {
        Ciphersuite::Ed25519 => &ED25519,
        Ciphersuite::Secp256k1 => &SECP256K1,
        Ciphersuite::Secp256k1Tr => &SECP256K1_TR,
    }
}
