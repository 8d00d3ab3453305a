//! Feldman verifiable secret sharing of one signing share (vsss-rs), for every
//! ciphersuite: the share's scalar is split, a part checked against the public
//! commitments, and parts combined, always crossing to and from frost as bytes in
//! the ciphersuite's FROST encoding.

use vsss_rs::elliptic_curve::ff::PrimeField;
use vsss_rs::elliptic_curve::group::{Group, GroupEncoding};
use vsss_rs::{
    DefaultShare, FeldmanVerifierSet, IdentifierPrimeField, ReadableShareSet, ShareVerifierGroup,
};
use zeroize::Zeroize;

use quorate_frost::{Ciphersuite, CryptoError, SecretKeyPackage, SecretScalar};

use crate::MAX_CUSTODIANS;

/// Feldman-splits the signing share of `key_package` into `parts` parts with
/// threshold `threshold`. The first commitment is the key package's verifying share,
/// checked here, so custodians can check each part against public values alone.
pub fn split(
    suite: Ciphersuite,
    key_package: &SecretKeyPackage,
    threshold: u16,
    parts: u16,
) -> Result<EscrowSplit, CryptoError> {
    let ops = suite.ops();
    let share = ops.signing_share(key_package)?;
    let split = match suite {
        Ciphersuite::Ed25519 => split_scalar::<Edwards>(&share, threshold, parts),
        Ciphersuite::Secp256k1 | Ciphersuite::Secp256k1Tr => {
            split_scalar::<k256::ProjectivePoint>(&share, threshold, parts)
        }
    }?;
    // The commitments are computed by vsss-rs; they must be frost's encoding of
    // this node's verifying share, or custodians could not check parts against it.
    if split.verifying_share != ops.key_package_info(key_package)?.verifying_share {
        return Err(CryptoError::Frost(
            "escrow commitments do not encode the verifying share".into(),
        ));
    }
    Ok(split)
}

/// Checks one part against the Feldman commitments alone.
pub fn verify(
    suite: Ciphersuite,
    part: &ShamirPart,
    commitments: &[Vec<u8>],
) -> Result<(), CryptoError> {
    match suite {
        Ciphersuite::Ed25519 => verify_part::<Edwards>(part, commitments),
        Ciphersuite::Secp256k1 | Ciphersuite::Secp256k1Tr => {
            verify_part::<k256::ProjectivePoint>(part, commitments)
        }
    }
}

/// Rebuilds a signing share from parts, and returns it only if it is the share
/// behind `verifying_share` ([`CryptoError::ShareMismatch`] otherwise: too few or
/// foreign parts make vsss-rs return a wrong scalar without error).
pub fn combine(
    suite: Ciphersuite,
    parts: &[ShamirPart],
    verifying_share: &[u8],
) -> Result<SecretScalar, CryptoError> {
    match suite {
        Ciphersuite::Ed25519 => combine_parts::<Edwards>(parts, verifying_share),
        Ciphersuite::Secp256k1 | Ciphersuite::Secp256k1Tr => {
            combine_parts::<k256::ProjectivePoint>(parts, verifying_share)
        }
    }
}

/// Ed25519's curve as vsss-rs sees it; its element and scalar encodings equal
/// frost's.
type Edwards = vsss_rs::curve25519::WrappedEdwards;

/// One escrow part before it is written into a file: the Shamir x-coordinate and
/// the secret value `f(x)`.
#[derive(Clone, Debug)]
pub struct ShamirPart {
    /// The x-coordinate, `1..=m`.
    pub identifier: u16,
    /// `f(identifier)`, FROST scalar encoding.
    pub value: SecretScalar,
}

/// The result of splitting a signing share.
#[derive(Debug)]
pub struct EscrowSplit {
    /// The verifying share of the split signing share (equals `commitments[0]`).
    pub verifying_share: Vec<u8>,
    /// Feldman commitments `G·a_0 … G·a_{k-1}`, FROST element encoding.
    pub commitments: Vec<Vec<u8>>,
    /// One part per custodian, identifiers `1..=m` in order.
    pub parts: Vec<ShamirPart>,
}

/// A vsss-rs group whose secret scalars can be wiped (ff's `Field` has no zeroize).
trait FeldmanPoint: Group + GroupEncoding + Default {
    /// Overwrites a secret scalar so that it does not outlive its use.
    fn wipe(scalar: &mut Self::Scalar);
}

impl FeldmanPoint for vsss_rs::curve25519::WrappedEdwards {
    fn wipe(scalar: &mut Self::Scalar) {
        scalar.0.zeroize();
    }
}

impl FeldmanPoint for k256::ProjectivePoint {
    fn wipe(scalar: &mut Self::Scalar) {
        scalar.zeroize();
    }
}

type Scalar<G> = <G as Group>::Scalar;
type Part<G> = DefaultShare<IdentifierPrimeField<Scalar<G>>, IdentifierPrimeField<Scalar<G>>>;

fn vsss_err(what: &str) -> impl Fn(vsss_rs::Error) -> CryptoError + '_ {
    move |e| CryptoError::Frost(format!("{what}: {e:?}"))
}

/// Parses a canonical scalar encoding (never quotes the bytes: they may be secret).
fn scalar<G: Group>(bytes: &[u8]) -> Result<Scalar<G>, CryptoError> {
    let mut repr = <Scalar<G> as PrimeField>::Repr::default();
    if repr.as_ref().len() != bytes.len() {
        return Err(CryptoError::Malformed(format!(
            "scalar: expected {} bytes, found {}",
            repr.as_ref().len(),
            bytes.len()
        )));
    }
    repr.as_mut().copy_from_slice(bytes);
    let parsed: Option<Scalar<G>> = Scalar::<G>::from_repr(repr).into();
    // curve25519's wrapper also accepts other byte orders; only the canonical
    // encoding round-trips.
    match parsed {
        Some(s) if s.to_repr().as_ref() == bytes => Ok(s),
        _ => Err(CryptoError::Malformed(
            "scalar: not a canonical scalar encoding".into(),
        )),
    }
}

fn scalar_bytes<G: Group>(s: &Scalar<G>) -> SecretScalar {
    let mut repr = s.to_repr();
    let out = SecretScalar::from_bytes(repr.as_ref().to_vec());
    repr.as_mut().zeroize();
    out
}

fn point<G: Group + GroupEncoding>(bytes: &[u8]) -> Result<G, CryptoError> {
    let mut repr = G::Repr::default();
    if repr.as_ref().len() != bytes.len() {
        return Err(CryptoError::Malformed(format!(
            "group element: expected {} bytes, found {}",
            repr.as_ref().len(),
            bytes.len()
        )));
    }
    repr.as_mut().copy_from_slice(bytes);
    let parsed: Option<G> = G::from_bytes(&repr).into();
    match parsed {
        Some(p) if p.to_bytes().as_ref() == bytes && !bool::from(p.is_identity()) => Ok(p),
        _ => Err(CryptoError::Malformed(
            "group element: not a canonical encoding of a non-identity point".into(),
        )),
    }
}

fn id<G: Group>(identifier: u16) -> IdentifierPrimeField<Scalar<G>> {
    IdentifierPrimeField(Scalar::<G>::from(u64::from(identifier)))
}

/// Feldman-splits `secret` (FROST scalar encoding) into `parts` parts, any
/// `threshold` of which rebuild it.
fn split_scalar<G: FeldmanPoint>(
    secret: &SecretScalar,
    threshold: u16,
    parts: u16,
) -> Result<EscrowSplit, CryptoError> {
    if threshold < 2 || parts < threshold || parts > MAX_CUSTODIANS {
        return Err(CryptoError::Frost(format!(
            "escrow threshold {threshold} of {parts} parts: need 2 <= threshold <= parts <= \
             {MAX_CUSTODIANS}"
        )));
    }
    let mut s = IdentifierPrimeField(scalar::<G>(secret.expose_bytes())?);
    let result = vsss_rs::feldman::split_secret::<Part<G>, ShareVerifierGroup<G>>(
        usize::from(threshold),
        usize::from(parts),
        &s,
        None,
        rand_core::OsRng,
    );
    G::wipe(&mut s.0);
    let (mut shares, verifiers) = result.map_err(vsss_err("Feldman split"))?;
    let commitments: Vec<Vec<u8>> =
        FeldmanVerifierSet::<Part<G>, ShareVerifierGroup<G>>::verifiers(&verifiers)
            .iter()
            .map(|v| v.0.to_bytes().as_ref().to_vec())
            .collect();
    let verifying_share = (G::generator() * scalar::<G>(secret.expose_bytes())?)
        .to_bytes()
        .as_ref()
        .to_vec();
    if commitments.len() != usize::from(threshold) || commitments[0] != verifying_share {
        return Err(CryptoError::Frost(
            "Feldman split produced commitments that do not match the share".into(),
        ));
    }
    let mut out = Vec::with_capacity(shares.len());
    for (i, share) in (1..=parts).zip(&shares) {
        // vsss-rs numbers participants 1, 2, …; the files carry that integer.
        if share.identifier != id::<G>(i) {
            return Err(CryptoError::Frost(
                "Feldman split numbered its parts unexpectedly".into(),
            ));
        }
        out.push(ShamirPart {
            identifier: i,
            value: scalar_bytes::<G>(&share.value.0),
        });
    }
    for share in &mut shares {
        G::wipe(&mut share.value.0);
    }
    Ok(EscrowSplit {
        verifying_share,
        commitments,
        parts: out,
    })
}

/// Checks one part against the Feldman commitments alone.
fn verify_part<G: FeldmanPoint>(
    part: &ShamirPart,
    commitments: &[Vec<u8>],
) -> Result<(), CryptoError> {
    if part.identifier == 0 {
        return Err(CryptoError::Malformed("escrow part identifier 0".into()));
    }
    if commitments.is_empty() {
        return Err(CryptoError::Malformed("no Feldman commitments".into()));
    }
    let mut set: Vec<ShareVerifierGroup<G>> = Vec::with_capacity(commitments.len() + 1);
    set.push(ShareVerifierGroup::from(G::generator()));
    for c in commitments {
        set.push(ShareVerifierGroup::from(point::<G>(c)?));
    }
    let mut share = Part::<G> {
        identifier: id::<G>(part.identifier),
        value: IdentifierPrimeField(scalar::<G>(part.value.expose_bytes())?),
    };
    let verified = FeldmanVerifierSet::<Part<G>, ShareVerifierGroup<G>>::verify_share(&set, &share);
    G::wipe(&mut share.value.0);
    verified.map_err(|_| {
        CryptoError::ShareMismatch(format!(
            "escrow part {} does not match the Feldman commitments",
            part.identifier
        ))
    })
}

/// Interpolates parts at 0 and accepts the result only when `G·s` equals
/// `verifying_share`.
fn combine_parts<G: FeldmanPoint>(
    parts: &[ShamirPart],
    verifying_share: &[u8],
) -> Result<SecretScalar, CryptoError> {
    let expected = point::<G>(verifying_share)?;
    let shares = parts
        .iter()
        .map(|p| {
            Ok(Part::<G> {
                identifier: id::<G>(p.identifier),
                value: IdentifierPrimeField(scalar::<G>(p.value.expose_bytes())?),
            })
        })
        .collect::<Result<Vec<_>, CryptoError>>()?;
    let combined = shares.combine();
    for mut share in shares {
        G::wipe(&mut share.value.0);
    }
    let mut secret = combined.map_err(vsss_err("combining parts"))?;
    let matches = G::generator() * secret.0 == expected;
    let out = scalar_bytes::<G>(&secret.0);
    G::wipe(&mut secret.0);
    if !matches {
        return Err(CryptoError::ShareMismatch(format!(
            "the {} part(s) do not rebuild the share behind the verifying share \
             (too few parts for the threshold, or parts of different splits)",
            parts.len()
        )));
    }
    Ok(out)
}
