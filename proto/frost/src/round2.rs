//! FROST round 2: the signing package as the coordinator builds it (to aggregate and
//! name culprits) and as a signer receives it (every other signer's commitments
//! decoded and checked, its own found by the caller with its nonces), the signature
//! share, and aggregation.

use std::collections::BTreeMap;

use frost_core::keys::KeyPackage;
use frost_core::round1::{SigningCommitments, SigningNonces};
use frost_core::round2::SignatureShare;
use frost_core::{Identifier, SigningPackage};

use crate::error::CryptoError;
use crate::generic::{frost_err, parse_identifier, wrong_suite, Frost, PublicEncoding};
use crate::packages::{ParsedKeyPackage, ParsedPublicKeyPackage};
use crate::round1::ParsedCommitments;
use crate::secret::SecretNonces;

/// A signing package built by the coordinator from decoded commitments, for
/// aggregation.
pub trait ParsedSigningPackage: Send + Sync {
    /// Round 2 with this package, for a signer in the same process (tests,
    /// benchmarks): this signer's signature share. Consumes the nonces.
    fn sign(
        &self,
        nonces: SecretNonces,
        key_package: &ParsedKeyPackage,
    ) -> Result<Vec<u8>, CryptoError>;
    /// Aggregates shares (identifier -> share) into a signature in the public API
    /// encoding; frost verifies it and names culprits when it does not verify.
    fn aggregate(
        &self,
        shares: &BTreeMap<Vec<u8>, Vec<u8>>,
        public_key_package: &ParsedPublicKeyPackage,
    ) -> Result<Vec<u8>, CryptoError>;
}

/// A signing package as a signer receives it: the message and the other signers'
/// commitments, each decoded and checked. Its own commitment the signer holds
/// already, with the nonces behind it, so it decodes two points fewer than the
/// whole package (for Ed25519, two scalar multiplications).
pub trait ReceivedSigningPackage: Send + Sync {
    /// Round 2: this signer's signature share, with the nonces of its own
    /// commitment. Consumes the nonces, and the package (used once, so its
    /// commitments move into frost's signing package instead of being copied).
    fn sign(
        self: Box<Self>,
        nonces: SecretNonces,
        key_package: &ParsedKeyPackage,
    ) -> Result<Vec<u8>, CryptoError>;
}

struct Parsed<C: frost_core::Ciphersuite> {
    sp: SigningPackage<C>,
}

struct Received<C: frost_core::Ciphersuite> {
    message: Vec<u8>,
    own: Identifier<C>,
    others: BTreeMap<Identifier<C>, SigningCommitments<C>>,
}

/// This suite's nonces out of `nonces`.
fn own_nonces<C: PublicEncoding>(
    nonces: SecretNonces,
) -> Result<Box<SigningNonces<C>>, CryptoError> {
    nonces
        .0
        .downcast::<SigningNonces<C>>()
        .map_err(|_| wrong_suite::<C>("signing nonces"))
}

/// Round 2 with `sp`: the signature share, encoded.
fn sign_share<C: frost_core::Ciphersuite>(
    sp: &SigningPackage<C>,
    nonces: &SigningNonces<C>,
    key_package: &KeyPackage<C>,
) -> Result<Vec<u8>, CryptoError> {
    let share = frost_core::round2::sign(sp, nonces, key_package).map_err(frost_err)?;
    Ok(share.serialize())
}

impl<C: PublicEncoding> ReceivedSigningPackage for Received<C> {
    fn sign(
        self: Box<Self>,
        nonces: SecretNonces,
        key_package: &ParsedKeyPackage,
    ) -> Result<Vec<u8>, CryptoError> {
        let kp = key_package.of::<C>()?;
        if *kp.identifier() != self.own {
            return Err(CryptoError::Malformed(
                "the package was received for another signer".into(),
            ));
        }
        let nonces = own_nonces::<C>(nonces)?;
        // The caller found these nonces by the commitment the package names for
        // this signer, so that entry is exactly the nonces' own commitment.
        let Received {
            message,
            own,
            mut others,
        } = *self;
        others.insert(own, *nonces.commitments());
        sign_share(&SigningPackage::new(others, &message), &nonces, kp)
    }
}

impl<C: PublicEncoding> ParsedSigningPackage for Parsed<C> {
    fn sign(
        &self,
        nonces: SecretNonces,
        key_package: &ParsedKeyPackage,
    ) -> Result<Vec<u8>, CryptoError> {
        let kp = key_package.of::<C>()?;
        sign_share(&self.sp, &*own_nonces::<C>(nonces)?, kp)
    }

    fn aggregate(
        &self,
        shares: &BTreeMap<Vec<u8>, Vec<u8>>,
        public_key_package: &ParsedPublicKeyPackage,
    ) -> Result<Vec<u8>, CryptoError> {
        let pkp = public_key_package.of::<C>()?;
        let mut map = BTreeMap::new();
        let mut undecodable = Vec::new();
        for (id, share) in shares {
            let identifier = parse_identifier::<C>(id)?;
            match SignatureShare::<C>::deserialize(share) {
                Ok(share) => {
                    map.insert(identifier, share);
                }
                Err(_) => undecodable.push(id.clone()),
            }
        }
        // A share that does not even decode is as much a culprit as one that does
        // not verify.
        if !undecodable.is_empty() {
            return Err(CryptoError::InvalidShares {
                culprits: undecodable,
            });
        }
        match frost_core::aggregate_custom(
            &self.sp,
            &map,
            pkp,
            frost_core::CheaterDetection::AllCheaters,
        ) {
            Ok(signature) => signature.serialize().map_err(frost_err),
            Err(frost_core::Error::InvalidSignatureShare { culprits }) => {
                Err(CryptoError::InvalidShares {
                    culprits: culprits.iter().map(Identifier::serialize).collect(),
                })
            }
            Err(e) => Err(frost_err(e)),
        }
    }
}

/// Round 2 of FROST signing: building and receiving signing packages.
pub trait Round2 {
    /// Builds the coordinator's signing package from decoded commitments
    /// (identifier -> commitments), for aggregation.
    fn new_signing_package(
        &self,
        commitments: &BTreeMap<Vec<u8>, ParsedCommitments>,
        message: &[u8],
    ) -> Result<Box<dyn ParsedSigningPackage>, CryptoError>;
    /// A signer's view of a signing package: `message` and the quorum's
    /// commitments (identifier -> frost encoding) as received, `own` being this
    /// signer's identifier. Every other signer's identifier and commitments are
    /// decoded and checked here; this signer's entry is left to the caller, who
    /// must find its nonces by exactly those bytes.
    fn receive_signing_package(
        &self,
        message: &[u8],
        commitments: &BTreeMap<Vec<u8>, Vec<u8>>,
        own: &[u8],
    ) -> Result<Box<dyn ReceivedSigningPackage>, CryptoError>;
}

impl<C: PublicEncoding> Round2 for Frost<C> {
    fn new_signing_package(
        &self,
        commitments: &BTreeMap<Vec<u8>, ParsedCommitments>,
        message: &[u8],
    ) -> Result<Box<dyn ParsedSigningPackage>, CryptoError> {
        let mut map = BTreeMap::new();
        for (id, c) in commitments {
            let parsed: &SigningCommitments<C> = c
                .inner
                .downcast_ref()
                .ok_or_else(|| wrong_suite::<C>("commitments"))?;
            map.insert(parse_identifier::<C>(id)?, *parsed);
        }
        Ok(Box::new(Parsed::<C> {
            sp: SigningPackage::new(map, message),
        }))
    }

    fn receive_signing_package(
        &self,
        message: &[u8],
        commitments: &BTreeMap<Vec<u8>, Vec<u8>>,
        own: &[u8],
    ) -> Result<Box<dyn ReceivedSigningPackage>, CryptoError> {
        if !commitments.contains_key(own) {
            return Err(CryptoError::Malformed(
                "the quorum holds no commitment of this signer".into(),
            ));
        }
        let mut others = BTreeMap::new();
        for (id, c) in commitments.iter().filter(|(id, _)| id.as_slice() != own) {
            let identifier = parse_identifier::<C>(id)?;
            let c = SigningCommitments::<C>::deserialize(c).map_err(|e| {
                CryptoError::Malformed(format!("commitments of signer {}: {e}", hex::encode(id)))
            })?;
            others.insert(identifier, c);
        }
        Ok(Box::new(Received::<C> {
            message: message.to_vec(),
            own: parse_identifier::<C>(own)?,
            others,
        }))
    }
}
