//! One code path over the FROST ciphersuites.
//!
//! [`Frost<C>`] implements [`SuiteOps`] once, generically over `frost_core::Ciphersuite`;
//! [`ops`] picks the instance for a [`Ciphersuite`]. Everything crosses this boundary as
//! bytes in frost's own serialization, so nodes, the coordinator and the ceremony handle
//! all ciphersuites alike.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use frost_core::keys::{
    dkg, IdentifierList, KeyPackage, PublicKeyPackage, SecretShare, SigningShare, VerifyingShare,
};
use frost_core::round1::{SigningCommitments, SigningNonces};
use frost_core::round2::SignatureShare;
use frost_core::{Identifier, Signature, SigningKey, SigningPackage, VerifyingKey};
use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::escrow::{EscrowSplit, FeldmanGroup, SecretScalar, ShamirPart};
use crate::pb;

/// A FROST ciphersuite Quorate signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ciphersuite {
    /// FROST(Ed25519, SHA-512); RFC 8032 signatures.
    Ed25519,
    /// FROST(secp256k1, SHA-256); RFC 9591 signatures.
    Secp256k1,
    /// FROST(secp256k1, SHA-256) producing BIP340 (Taproot) signatures.
    Secp256k1Tr,
}

impl Ciphersuite {
    /// Every supported ciphersuite.
    pub const ALL: [Ciphersuite; 3] = [Self::Ed25519, Self::Secp256k1, Self::Secp256k1Tr];

    /// Name as in the protobuf enum and in `testnet.json` (`ED25519`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Ed25519 => "ED25519",
            Self::Secp256k1 => "SECP256K1",
            Self::Secp256k1Tr => "SECP256K1_TR",
        }
    }

    /// The protobuf enum value.
    pub fn to_pb(self) -> pb::Ciphersuite {
        match self {
            Self::Ed25519 => pb::Ciphersuite::Ed25519,
            Self::Secp256k1 => pb::Ciphersuite::Secp256k1,
            Self::Secp256k1Tr => pb::Ciphersuite::Secp256k1Tr,
        }
    }

    /// Parses the protobuf enum's integer value.
    pub fn from_pb(value: i32) -> Result<Self, CryptoError> {
        match pb::Ciphersuite::try_from(value) {
            Ok(pb::Ciphersuite::Ed25519) => Ok(Self::Ed25519),
            Ok(pb::Ciphersuite::Secp256k1) => Ok(Self::Secp256k1),
            Ok(pb::Ciphersuite::Secp256k1Tr) => Ok(Self::Secp256k1Tr),
            _ => Err(CryptoError::Malformed(format!(
                "unknown or unspecified ciphersuite {value}"
            ))),
        }
    }

    /// The operations of this ciphersuite.
    pub fn ops(self) -> &'static dyn SuiteOps {
        ops(self)
    }
}

impl fmt::Display for Ciphersuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Ciphersuite {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().replace('-', "_").as_str() {
            "ED25519" => Ok(Self::Ed25519),
            "SECP256K1" => Ok(Self::Secp256k1),
            "SECP256K1_TR" | "TAPROOT" | "BIP340" => Ok(Self::Secp256k1Tr),
            _ => Err(format!(
                "unknown ciphersuite {s:?}; expected ED25519, SECP256K1 or SECP256K1_TR"
            )),
        }
    }
}

/// Errors of the cryptographic layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Bytes that do not decode as the expected FROST structure.
    #[error("malformed {0}")]
    Malformed(String),
    /// Signature shares that do not verify; `culprits` are FROST identifiers (bytes).
    #[error("invalid signature shares from {} signer(s)", culprits.len())]
    InvalidShares {
        /// Identifiers of the signers whose shares failed verification.
        culprits: Vec<Vec<u8>>,
    },
    /// A signature that does not verify under the group key.
    #[error("signature does not verify")]
    BadSignature,
    /// A secret that does not match its public commitment (an escrow part off the
    /// committed polynomial, or a rebuilt share that is not the expected one).
    #[error("{0}")]
    ShareMismatch(String),
    /// A key-generation message that fails its check and names its sender (an invalid
    /// proof of knowledge in round 1, or a share that does not match the sender's
    /// commitment in round 2). `culprit` is a FROST identifier (bytes).
    #[error("{reason}")]
    Culprit {
        /// Identifier of the participant whose message failed.
        culprit: Vec<u8>,
        /// frost's reason.
        reason: String,
    },
    /// Any other refusal by frost, with its reason.
    #[error("{0}")]
    Frost(String),
}

/// Secret bytes of a key ceremony step: a DKG secret package, a round-2 package, a
/// repair delta or sigma, always in frost serialization. Zeroized on drop and never
/// printed.
pub struct SecretBytes(Zeroizing<Vec<u8>>);

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

/// Which key-generation protocol a DKG step runs: a new key, or a refresh of an
/// existing key's shares (the same rounds over a zero secret, so the group key stays).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DkgMode {
    /// frost `keys::dkg`: a new key.
    Generate,
    /// frost `keys::refresh` (DKG variant): new shares of an existing key.
    Refresh,
}

/// A signer's secret nonces for one commitment, decoded once and held in memory
/// only (frost zeroizes them on drop). Signing consumes them: a nonce signs once.
pub struct SecretNonces(Box<dyn Any + Send + Sync>);

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
    /// Group public key in the public API encoding (see [`SuiteOps::public_key`]).
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
    inner: Box<dyn Any + Send + Sync>,
    info: KeyPackageInfo,
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
    inner: Arc<dyn Any + Send + Sync>,
    info: PublicKeyInfo,
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

/// One signer's round-1 commitments, decoded once (every point checked), with the
/// encoding they arrived in. A coordinator decodes pooled commitments when they are
/// fetched, off the signing path. Cheap to clone.
#[derive(Clone)]
pub struct ParsedCommitments {
    inner: Arc<dyn Any + Send + Sync>,
    encoded: Vec<u8>,
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
        let kp = Frost::<C>::parsed_key_package(key_package)?;
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
        let kp = Frost::<C>::parsed_key_package(key_package)?;
        sign_share(&self.sp, &*own_nonces::<C>(nonces)?, kp)
    }

    fn aggregate(
        &self,
        shares: &BTreeMap<Vec<u8>, Vec<u8>>,
        public_key_package: &ParsedPublicKeyPackage,
    ) -> Result<Vec<u8>, CryptoError> {
        let pkp = Frost::<C>::parsed_public_key_package(public_key_package)?;
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

/// A key split by a trusted dealer.
#[derive(Debug)]
pub struct DealtKey {
    /// frost PublicKeyPackage.
    pub public_key_package: Vec<u8>,
    /// Key package per participant name, in the order of the names given.
    pub key_packages: Vec<(String, SecretKeyPackage)>,
}

/// How signers in one process receive the signing package ([`LocalQuorum::sign`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackageDelivery {
    /// Each signer decodes the other signers' commitments from the bytes it is
    /// sent, as a node does (and as RFC 9591 has every signer validate them).
    PerSigner,
    /// Every signer uses the coordinator's decoded package: no per-signer
    /// validation, so cheaper than any deployment of separate signers.
    Shared,
}

/// Every party of a threshold signature in one process: some signers' key packages
/// and the public key package, decoded once. For tests, benchmarks and the
/// in-process signing limit; in the network each key package lives on its own node.
#[derive(Debug)]
pub struct LocalQuorum {
    suite: Ciphersuite,
    signers: Vec<(Vec<u8>, ParsedKeyPackage)>,
    public_key_package: ParsedPublicKeyPackage,
}

impl LocalQuorum {
    /// The signers at positions `signers` of `dealt.key_packages`.
    pub fn new(
        suite: Ciphersuite,
        dealt: &DealtKey,
        signers: &[usize],
    ) -> Result<Self, CryptoError> {
        let ops = suite.ops();
        let signers = signers
            .iter()
            .map(|&i| {
                let (name, kp) = dealt
                    .key_packages
                    .get(i)
                    .ok_or_else(|| CryptoError::Frost(format!("no participant #{i}")))?;
                Ok((ops.identifier(name)?, ops.parse_key_package(kp)?))
            })
            .collect::<Result<Vec<_>, CryptoError>>()?;
        Ok(Self {
            suite,
            signers,
            public_key_package: ops.parse_public_key_package(&dealt.public_key_package)?,
        })
    }

    /// Both FROST rounds and the aggregation (which verifies the signature); the
    /// signature in the public API encoding.
    pub fn sign(&self, message: &[u8], delivery: PackageDelivery) -> Result<Vec<u8>, CryptoError> {
        let ops = self.suite.ops();
        let mut nonces = Vec::with_capacity(self.signers.len());
        let mut commitments = BTreeMap::new();
        for (id, kp) in &self.signers {
            let (n, c) = ops.commit(kp)?;
            // The coordinator decodes what each signer sends.
            commitments.insert(id.clone(), ops.parse_commitments(&c)?);
            nonces.push(n);
        }
        let package = ops.new_signing_package(&commitments, message)?;
        let encoded: BTreeMap<Vec<u8>, Vec<u8>> = commitments
            .iter()
            .map(|(id, c)| (id.clone(), c.encoded().to_vec()))
            .collect();
        let mut shares = BTreeMap::new();
        for ((id, kp), n) in self.signers.iter().zip(nonces) {
            let share = match delivery {
                PackageDelivery::PerSigner => ops
                    .receive_signing_package(message, &encoded, id)?
                    .sign(n, kp)?,
                PackageDelivery::Shared => package.sign(n, kp)?,
            };
            shares.insert(id.clone(), share);
        }
        package.aggregate(&shares, &self.public_key_package)
    }

    /// The group public key in the public API encoding.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key_package.info().public_key
    }
}

/// FROST operations of one ciphersuite over serialized values.
pub trait SuiteOps: Send + Sync {
    /// Which ciphersuite this is.
    fn ciphersuite(&self) -> Ciphersuite;
    /// The FROST identifier of a named participant: `Identifier::derive(name)`.
    fn identifier(&self, name: &str) -> Result<Vec<u8>, CryptoError>;
    /// Splits `secret` (a signing key in frost scalar encoding), or a fresh random key,
    /// into key packages for `names` with threshold `threshold`.
    fn split(
        &self,
        secret: Option<&[u8]>,
        names: &[String],
        threshold: u16,
    ) -> Result<DealtKey, CryptoError>;
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
    /// Round 1: fresh nonces and their commitments.
    fn commit(
        &self,
        key_package: &ParsedKeyPackage,
    ) -> Result<(SecretNonces, Vec<u8>), CryptoError>;
    /// Decodes one signer's round-1 commitments.
    fn parse_commitments(&self, commitments: &[u8]) -> Result<ParsedCommitments, CryptoError>;
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
    /// Escrow: Feldman-splits the signing share of `key_package` into `parts` parts
    /// with threshold `threshold` (see [`crate::escrow`]).
    fn escrow_split(
        &self,
        key_package: &SecretKeyPackage,
        threshold: u16,
        parts: u16,
    ) -> Result<EscrowSplit, CryptoError>;
    /// Escrow: checks one part against the Feldman commitments alone.
    fn escrow_verify(&self, part: &ShamirPart, commitments: &[Vec<u8>]) -> Result<(), CryptoError>;
    /// Escrow: rebuilds a signing share from parts, and returns it only if it is the
    /// share behind `verifying_share` ([`CryptoError::ShareMismatch`] otherwise: too
    /// few or foreign parts make vsss-rs return a wrong scalar without error).
    fn escrow_combine(
        &self,
        parts: &[ShamirPart],
        verifying_share: &[u8],
    ) -> Result<SecretScalar, CryptoError>;
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
    /// Verifies a signature (public API encoding) under a public key (public API
    /// encoding).
    fn verify(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError>;

    /// The signing share inside a key package. For checks that secrets never leak
    /// (tests grep logs for it); the signing path never needs it.
    fn signing_share(&self, key_package: &SecretKeyPackage) -> Result<SecretScalar, CryptoError>;

    /// DANGER, fault injection for drills only: a well-formed signature share that
    /// is wrong (the given share plus one), as a malicious or broken signer would
    /// send. Nodes use it only when their config says `danger.corrupt_signature_shares`.
    fn danger_corrupt_share(&self, share: &[u8]) -> Result<Vec<u8>, CryptoError>;

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

/// The generic implementation of [`SuiteOps`] for a frost ciphersuite.
#[derive(Debug)]
pub struct Frost<C>(PhantomData<fn() -> C>);

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

fn frost_err<C: frost_core::Ciphersuite>(e: frost_core::Error<C>) -> CryptoError {
    CryptoError::Frost(e.to_string())
}

fn malformed<C: frost_core::Ciphersuite>(
    what: &str,
) -> impl Fn(frost_core::Error<C>) -> CryptoError + '_ {
    move |e| CryptoError::Malformed(format!("{what}: {e}"))
}

fn parse_identifier<C: frost_core::Ciphersuite>(
    bytes: &[u8],
) -> Result<Identifier<C>, CryptoError> {
    Identifier::<C>::deserialize(bytes).map_err(malformed("identifier"))
}

impl<C: PublicEncoding> Frost<C> {
    fn key_package(bytes: &SecretKeyPackage) -> Result<KeyPackage<C>, CryptoError> {
        KeyPackage::<C>::deserialize(bytes.expose_bytes()).map_err(malformed("key package"))
    }
    fn public_key_package(bytes: &[u8]) -> Result<PublicKeyPackage<C>, CryptoError> {
        PublicKeyPackage::<C>::deserialize(bytes).map_err(malformed("public key package"))
    }
    fn parsed_key_package(parsed: &ParsedKeyPackage) -> Result<&KeyPackage<C>, CryptoError> {
        parsed
            .inner
            .downcast_ref()
            .ok_or_else(|| wrong_suite::<C>("key package"))
    }
    fn parsed_public_key_package(
        parsed: &ParsedPublicKeyPackage,
    ) -> Result<&PublicKeyPackage<C>, CryptoError> {
        parsed
            .inner
            .downcast_ref()
            .ok_or_else(|| wrong_suite::<C>("public key package"))
    }
}

/// A parsed value of another ciphersuite was handed to this one (a caller's bug).
fn wrong_suite<C: PublicEncoding>(what: &str) -> CryptoError {
    CryptoError::Malformed(format!(
        "{what} of another ciphersuite used with {}",
        C::SUITE
    ))
}

impl<C: PublicEncoding + FeldmanGroup> SuiteOps for Frost<C> {
    fn ciphersuite(&self) -> Ciphersuite {
        C::SUITE
    }

    fn identifier(&self, name: &str) -> Result<Vec<u8>, CryptoError> {
        Ok(Identifier::<C>::derive(name.as_bytes())
            .map_err(frost_err)?
            .serialize())
    }

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

    fn parse_key_package(
        &self,
        key_package: &SecretKeyPackage,
    ) -> Result<ParsedKeyPackage, CryptoError> {
        let kp = Self::key_package(key_package)?;
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

    fn commit(
        &self,
        key_package: &ParsedKeyPackage,
    ) -> Result<(SecretNonces, Vec<u8>), CryptoError> {
        let kp = Self::parsed_key_package(key_package)?;
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

    fn escrow_split(
        &self,
        key_package: &SecretKeyPackage,
        threshold: u16,
        parts: u16,
    ) -> Result<EscrowSplit, CryptoError> {
        let kp = Self::key_package(key_package)?;
        let share = SecretScalar::from_bytes(kp.signing_share().serialize());
        drop(kp);
        let split = crate::escrow::split::<C::Point>(&share, threshold, parts)?;
        // The commitments are computed by vsss-rs; they must be frost's encoding of
        // this node's verifying share, or custodians could not check parts against it.
        let info = self.key_package_info(key_package)?;
        if split.verifying_share != info.verifying_share {
            return Err(CryptoError::Frost(
                "escrow commitments do not encode the verifying share".into(),
            ));
        }
        Ok(split)
    }

    fn escrow_verify(&self, part: &ShamirPart, commitments: &[Vec<u8>]) -> Result<(), CryptoError> {
        crate::escrow::verify::<C::Point>(part, commitments)
    }

    fn escrow_combine(
        &self,
        parts: &[ShamirPart],
        verifying_share: &[u8],
    ) -> Result<SecretScalar, CryptoError> {
        crate::escrow::combine::<C::Point>(parts, verifying_share)
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

    fn verify(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        let key = VerifyingKey::<C>::deserialize(&C::frost_key_bytes(public_key))
            .map_err(malformed("public key"))?;
        let signature = Signature::<C>::deserialize(signature).map_err(malformed("signature"))?;
        key.verify(message, &signature)
            .map_err(|_| CryptoError::BadSignature)
    }

    fn signing_share(&self, key_package: &SecretKeyPackage) -> Result<SecretScalar, CryptoError> {
        let kp = Self::key_package(key_package)?;
        Ok(SecretScalar::from_bytes(kp.signing_share().serialize()))
    }

    fn danger_corrupt_share(&self, share: &[u8]) -> Result<Vec<u8>, CryptoError> {
        use frost_core::Field;
        type F<C> = <<C as frost_core::Ciphersuite>::Group as frost_core::Group>::Field;
        let encoded = <F<C> as Field>::Serialization::try_from(share)
            .map_err(|_| CryptoError::Malformed("signature share".into()))?;
        let scalar = <F<C> as Field>::deserialize(&encoded)
            .map_err(|_| CryptoError::Malformed("signature share".into()))?;
        let wrong = scalar + <F<C> as Field>::one();
        Ok(<F<C> as Field>::serialize(&wrong).as_ref().to_vec())
    }

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

fn round1_packages<C: frost_core::Ciphersuite>(
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

fn round2_packages<C: frost_core::Ciphersuite>(
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
fn dkg_err<C: frost_core::Ciphersuite>(e: frost_core::Error<C>) -> CryptoError {
    match e.culprits().first() {
        Some(culprit) => CryptoError::Culprit {
            culprit: culprit.serialize(),
            reason: e.to_string(),
        },
        None => frost_err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("node-{i}")).collect()
    }

    /// Runs both FROST rounds for the first `t` participants of a dealt key.
    fn sign_with(suite: Ciphersuite, dealt: &DealtKey, t: usize, message: &[u8]) -> Vec<u8> {
        let signers: Vec<usize> = (0..t).collect();
        LocalQuorum::new(suite, dealt, &signers)
            .unwrap()
            .sign(message, PackageDelivery::PerSigner)
            .unwrap()
    }

    /// Identifiers and parsed key packages of the first `t` participants.
    fn parsed(suite: Ciphersuite, dealt: &DealtKey, t: usize) -> Vec<(Vec<u8>, ParsedKeyPackage)> {
        let ops = suite.ops();
        dealt
            .key_packages
            .iter()
            .take(t)
            .map(|(name, kp)| {
                (
                    ops.identifier(name).unwrap(),
                    ops.parse_key_package(kp).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn threshold_signature_verifies_for_every_ciphersuite() {
        for suite in Ciphersuite::ALL {
            let dealt = suite.ops().split(None, &names(5), 3).unwrap();
            let sig = sign_with(suite, &dealt, 3, b"hello");
            let info = suite
                .ops()
                .public_key_info(&dealt.public_key_package)
                .unwrap();
            suite
                .ops()
                .verify(&info.public_key, b"hello", &sig)
                .unwrap();
            assert!(suite
                .ops()
                .verify(&info.public_key, b"other", &sig)
                .is_err());
        }
    }

    #[test]
    fn ed25519_signature_verifies_with_ed25519_dalek() {
        let dealt = Ciphersuite::Ed25519
            .ops()
            .split(None, &names(3), 2)
            .unwrap();
        let sig = sign_with(Ciphersuite::Ed25519, &dealt, 2, b"msg");
        let info = Ciphersuite::Ed25519
            .ops()
            .public_key_info(&dealt.public_key_package)
            .unwrap();
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(&info.public_key.try_into().unwrap()).unwrap();
        let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
        key.verify_strict(b"msg", &sig).unwrap();
    }

    #[test]
    fn taproot_signature_verifies_as_bip340_with_k256() {
        // Repeat: half of all keys have odd Y, which BIP340 handling must cover.
        for _ in 0..8 {
            let dealt = Ciphersuite::Secp256k1Tr
                .ops()
                .split(None, &names(3), 2)
                .unwrap();
            let sig = sign_with(Ciphersuite::Secp256k1Tr, &dealt, 2, b"msg");
            let info = Ciphersuite::Secp256k1Tr
                .ops()
                .public_key_info(&dealt.public_key_package)
                .unwrap();
            assert_eq!(info.public_key.len(), 32);
            assert_eq!(sig.len(), 64);
            let key = k256::schnorr::VerifyingKey::from_bytes(&info.public_key).unwrap();
            let sig = k256::schnorr::Signature::try_from(sig.as_slice()).unwrap();
            // verify_raw is plain BIP340 over the message bytes (no pre-hash).
            key.verify_raw(b"msg", &sig).unwrap();
        }
    }

    #[test]
    fn corrupt_share_is_named_as_culprit() {
        for suite in Ciphersuite::ALL {
            let ops = suite.ops();
            let dealt = ops.split(None, &names(3), 2).unwrap();
            let signers = parsed(suite, &dealt, 2);
            let mut nonces = Vec::new();
            let mut commitments = BTreeMap::new();
            let mut parsed_commitments = BTreeMap::new();
            for (id, kp) in &signers {
                let (n, c) = ops.commit(kp).unwrap();
                parsed_commitments.insert(id.clone(), ops.parse_commitments(&c).unwrap());
                commitments.insert(id.clone(), c);
                nonces.push(n);
            }
            let mut shares = BTreeMap::new();
            for ((id, kp), n) in signers.iter().zip(nonces) {
                let received = ops.receive_signing_package(b"m", &commitments, id).unwrap();
                shares.insert(id.clone(), received.sign(n, kp).unwrap());
            }
            let sp = ops.new_signing_package(&parsed_commitments, b"m").unwrap();
            let pkp = ops
                .parse_public_key_package(&dealt.public_key_package)
                .unwrap();
            // node-2 answers with a share off by one: valid encoding, wrong value.
            let id2 = ops.identifier("node-2").unwrap();
            let wrong = ops.danger_corrupt_share(&shares[&id2]).unwrap();
            assert_ne!(wrong, shares[&id2]);
            shares.insert(id2.clone(), wrong);
            match sp.aggregate(&shares, &pkp) {
                Err(CryptoError::InvalidShares { culprits }) => assert_eq!(culprits, vec![id2]),
                other => panic!("{suite}: expected culprit, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_signer_refuses_packages_it_cannot_sign_and_foreign_commitments() {
        let suite = Ciphersuite::Ed25519;
        let ops = suite.ops();
        let dealt = ops.split(None, &names(3), 2).unwrap();
        let signers = parsed(suite, &dealt, 2);
        let (id1, kp1) = &signers[0];
        let (id2, kp2) = &signers[1];
        let (n1, c1) = ops.commit(kp1).unwrap();
        let (_, c2) = ops.commit(kp2).unwrap();
        let quorum = BTreeMap::from([(id1.clone(), c1.clone()), (id2.clone(), c2.clone())]);
        // No entry for this signer.
        let others = BTreeMap::from([(id2.clone(), c2.clone())]);
        assert!(ops.receive_signing_package(b"m", &others, id1).is_err());
        // Another signer's commitment that does not decode.
        let mut bad = quorum.clone();
        bad.insert(id2.clone(), vec![0xff; c2.len()]);
        let err = ops
            .receive_signing_package(b"m", &bad, id1)
            .err()
            .expect("a malformed commitment is refused");
        assert!(err.to_string().contains("commitments of signer"), "{err}");
        // Received for one signer, signed with another's key package.
        let received = ops.receive_signing_package(b"m", &quorum, id1).unwrap();
        assert!(received.sign(n1, kp2).is_err());
        // Nonces of another ciphersuite.
        let secp = Ciphersuite::Secp256k1.ops();
        let secp_dealt = secp.split(None, &names(2), 2).unwrap();
        let secp_kp = secp
            .parse_key_package(&secp_dealt.key_packages[0].1)
            .unwrap();
        let (secp_nonces, _) = secp.commit(&secp_kp).unwrap();
        let received = ops.receive_signing_package(b"m", &quorum, id1).unwrap();
        assert!(received.sign(secp_nonces, kp1).is_err());
    }

    /// In-process DKG for `names`: key packages (by name) and public key packages.
    fn run_dkg(
        suite: Ciphersuite,
        mode: DkgMode,
        names: &[String],
        t: u16,
        old: Option<&(Vec<SecretKeyPackage>, Vec<u8>)>,
    ) -> (Vec<SecretKeyPackage>, Vec<Vec<u8>>) {
        let ops = suite.ops();
        let n = names.len() as u16;
        let ids: Vec<Vec<u8>> = names.iter().map(|n| ops.identifier(n).unwrap()).collect();
        let mut secrets = Vec::new();
        let mut round1 = BTreeMap::new();
        for (name, id) in names.iter().zip(&ids) {
            let (s, p) = ops.dkg_part1(mode, name, n, t).unwrap();
            secrets.push(s);
            round1.insert(id.clone(), p);
        }
        let mut inbox: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, SecretBytes>> = BTreeMap::new();
        let mut secrets2 = Vec::new();
        for (s, id) in secrets.into_iter().zip(&ids) {
            let mut others = round1.clone();
            others.remove(id);
            let (s2, packages) = ops.dkg_part2(mode, s, &others).unwrap();
            for (to, p) in packages {
                inbox.entry(to).or_default().insert(id.clone(), p);
            }
            secrets2.push(s2);
        }
        let mut kps = Vec::new();
        let mut pkps = Vec::new();
        for (i, (s2, id)) in secrets2.iter().zip(&ids).enumerate() {
            let mut others = round1.clone();
            others.remove(id);
            let (kp, pkp) = match old {
                None => ops.dkg_part3(s2, &others, &inbox[id]).unwrap(),
                Some((old_kps, old_pkp)) => ops
                    .refresh_part3(s2, &others, &inbox[id], old_pkp, &old_kps[i])
                    .unwrap(),
            };
            kps.push(kp);
            pkps.push(pkp);
        }
        (kps, pkps)
    }

    fn dealt(names: &[String], kps: Vec<SecretKeyPackage>, pkp: Vec<u8>) -> DealtKey {
        DealtKey {
            public_key_package: pkp,
            key_packages: names.iter().cloned().zip(kps).collect(),
        }
    }

    #[test]
    fn dkg_refresh_and_repair_sign_under_one_group_key_for_every_ciphersuite() {
        for suite in Ciphersuite::ALL {
            let ops = suite.ops();
            let all = names(5);
            let (kps, pkps) = run_dkg(suite, DkgMode::Generate, &all, 3, None);
            // Every participant computes the same public key package.
            assert!(pkps.iter().all(|p| p == &pkps[0]), "{suite}");
            let group = ops.public_key_info(&pkps[0]).unwrap().public_key;
            let key = dealt(&all, kps, pkps[0].clone());
            let sig = sign_with(suite, &key, 3, b"dkg");
            ops.verify(&group, b"dkg", &sig).unwrap();
            if suite == Ciphersuite::Secp256k1Tr {
                // The tweaked DKG key verifies as BIP340 under its x-only encoding.
                let vk = k256::schnorr::VerifyingKey::from_bytes(&group).unwrap();
                let s = k256::schnorr::Signature::try_from(sig.as_slice()).unwrap();
                vk.verify_raw(b"dkg", &s).unwrap();
            }

            // Refresh among the first four: same group key, new shares.
            let four: Vec<String> = all[..4].to_vec();
            let old_kps: Vec<SecretKeyPackage> = key.key_packages[..4]
                .iter()
                .map(|(_, k)| k.clone())
                .collect();
            let old = (old_kps, key.public_key_package.clone());
            let (new_kps, new_pkps) = run_dkg(suite, DkgMode::Refresh, &four, 3, Some(&old));
            let info = ops.public_key_info(&new_pkps[0]).unwrap();
            assert_eq!(info.public_key, group, "{suite}");
            assert_eq!(info.verifying_shares.len(), 4);
            let refreshed = dealt(&four, new_kps, new_pkps[0].clone());
            ops.verify(&group, b"r", &sign_with(suite, &refreshed, 3, b"r"))
                .unwrap();
            assert_ne!(
                ops.key_package_info(&refreshed.key_packages[0].1)
                    .unwrap()
                    .verifying_share,
                ops.key_package_info(&key.key_packages[0].1)
                    .unwrap()
                    .verifying_share
            );

            // Repair node-4's refreshed share from three helpers.
            let helpers: Vec<Vec<u8>> = four[..3]
                .iter()
                .map(|n| ops.identifier(n).unwrap())
                .collect();
            let target = ops.identifier("node-4").unwrap();
            let mut inbox: BTreeMap<Vec<u8>, Vec<SecretBytes>> = BTreeMap::new();
            for (_, kp) in &refreshed.key_packages[..3] {
                for (to, d) in ops.repair_part1(&helpers, kp, &target).unwrap() {
                    inbox.entry(to).or_default().push(d);
                }
            }
            let sigmas: Vec<SecretBytes> = helpers
                .iter()
                .map(|h| ops.repair_part2(&inbox[h]).unwrap())
                .collect();
            let repaired = ops
                .repair_part3(&sigmas, &target, &refreshed.public_key_package)
                .unwrap();
            assert_eq!(
                ops.key_package_info(&repaired).unwrap().verifying_share,
                info.verifying_shares[&target],
                "{suite}"
            );
        }
    }

    #[test]
    fn tampered_round1_package_names_its_sender() {
        let ops = Ciphersuite::Ed25519.ops();
        let all = names(3);
        let mut secrets = Vec::new();
        let mut round1 = BTreeMap::new();
        for name in &all {
            let (s, p) = ops.dkg_part1(DkgMode::Generate, name, 3, 2).unwrap();
            secrets.push(s);
            round1.insert(ops.identifier(name).unwrap(), p);
        }
        let id1 = ops.identifier("node-1").unwrap();
        let id2 = ops.identifier("node-2").unwrap();
        round1.remove(&id1);
        // node-2's proof of knowledge no longer matches its commitment.
        let p2 = round1.get_mut(&id2).unwrap();
        let last = p2.len() - 1;
        p2[last] ^= 1;
        match ops.dkg_part2(DkgMode::Generate, secrets.remove(0), &round1) {
            Err(CryptoError::Culprit { culprit, .. }) => assert_eq!(culprit, id2),
            other => panic!("expected node-2 as culprit, got {other:?}"),
        }
    }

    #[test]
    fn secret_types_redact_debug() {
        let dealt = Ciphersuite::Ed25519
            .ops()
            .split(None, &names(2), 2)
            .unwrap();
        let ops = Ciphersuite::Ed25519.ops();
        let kp = ops.parse_key_package(&dealt.key_packages[0].1).unwrap();
        assert_eq!(format!("{kp:?}"), "ParsedKeyPackage(<redacted>)");
        let (nonces, _) = ops.commit(&kp).unwrap();
        assert_eq!(format!("{nonces:?}"), "SecretNonces(<redacted>)");
        assert!(format!("{dealt:?}").contains("<redacted>"));
        assert!(!format!("{dealt:?}")
            .contains(&hex::encode(&dealt.key_packages[0].1.expose_bytes()[..16])));
    }
}
