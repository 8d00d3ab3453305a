//! Custodian escrow of one node's signing share: Feldman verifiable secret sharing
//! (vsss-rs) of the share's scalar, and the escrow part file format.
//!
//! A node splits **its own** signing share `s` into `m` parts with threshold `k`:
//! `f(x) = s + a_1 x + … + a_{k-1} x^{k-1}`, part `i` is `(i, f(i))`, and the Feldman
//! commitments are `G·s, G·a_1, …, G·a_{k-1}`. The first commitment is the node's
//! verifying share, so one custodian can check a part alone against public values,
//! and a recovered share is accepted only when `G·s` equals the verifying share the
//! key's manifest names (vsss-rs' `combine` of too few parts returns a wrong scalar
//! without error; that check is what catches it).
//!
//! vsss-rs 5 works over the same curve types as frost 3 (k256 0.13,
//! curve25519-dalek 4), but values cross between them as bytes in the ciphersuite's
//! FROST encoding, which is also what the part files hold. Scalars and points are
//! parsed strictly: a byte string is accepted only if it re-encodes to itself.

use std::fmt;

use serde::{Deserialize, Serialize};
use vsss_rs::elliptic_curve::ff::PrimeField;
use vsss_rs::elliptic_curve::group::{Group, GroupEncoding};
use vsss_rs::{
    DefaultShare, FeldmanVerifierSet, IdentifierPrimeField, ReadableShareSet, ShareVerifierGroup,
};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::suite::{Ciphersuite, CryptoError};

/// Format tag of escrow part files this build writes and reads.
pub const ESCROW_FORMAT: &str = "quorate-escrow/1";

/// Most custodians one split may name.
pub const MAX_CUSTODIANS: u16 = 64;

/// Longest custodian name, in bytes.
pub const MAX_CUSTODIAN_NAME_BYTES: usize = 64;

/// A secret scalar (a signing share or an escrow part's value) in the ciphersuite's
/// FROST scalar encoding. Zeroized on drop and never printed.
#[derive(Clone)]
pub struct SecretScalar(Zeroizing<Vec<u8>>);

impl SecretScalar {
    /// Wraps scalar bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The scalar's bytes. Handle with care: they are secret.
    pub fn expose_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretScalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretScalar(<redacted>)")
    }
}

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

/// The vsss-rs group of a FROST ciphersuite: the same curve, as a `group::Group`
/// whose element and scalar encodings equal the ciphersuite's FROST encodings.
pub trait FeldmanGroup: frost_core::Ciphersuite {
    /// The curve's points as vsss-rs sees them.
    type Point: FeldmanPoint;
}

/// A vsss-rs group whose secret scalars can be wiped (ff's `Field` has no zeroize).
pub trait FeldmanPoint: Group + GroupEncoding + Default {
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

impl FeldmanGroup for frost_ed25519::Ed25519Sha512 {
    type Point = vsss_rs::curve25519::WrappedEdwards;
}

impl FeldmanGroup for frost_secp256k1::Secp256K1Sha256 {
    type Point = k256::ProjectivePoint;
}

impl FeldmanGroup for frost_secp256k1_tr::Secp256K1Sha256TR {
    type Point = k256::ProjectivePoint;
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
pub(crate) fn split<G: FeldmanPoint>(
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
pub(crate) fn verify<G: FeldmanPoint>(
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
pub(crate) fn combine<G: FeldmanPoint>(
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

/// Why an escrow part file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EscrowFileError {
    /// Not JSON of the expected shape. Never quotes the input (it holds a secret).
    #[error("not an escrow part: {0}")]
    Decode(String),
    /// A format this build does not read.
    #[error("unsupported escrow format {0:?} (this build reads {ESCROW_FORMAT})")]
    Format(String),
    /// Well-formed, but inconsistent; the message says how.
    #[error("invalid escrow part: {0}")]
    Invalid(String),
    /// The part does not verify.
    #[error("escrow part of custodian {custodian:?} does not verify: {source}")]
    Verify {
        /// The custodian named in the part.
        custodian: String,
        /// Why.
        source: CryptoError,
    },
}

/// The plaintext of one custodian's escrow file (JSON). Holds one secret field,
/// `value`; zeroized on drop and redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct EscrowPart {
    /// Always [`ESCROW_FORMAT`].
    pub format: String,
    /// The key whose share this escrows.
    pub key_id: String,
    /// The node whose signing share this escrows.
    pub node_id: String,
    /// Ciphersuite name (`ED25519`, `SECP256K1`, `SECP256K1_TR`).
    pub ciphersuite: String,
    /// The custodian this part is for.
    pub custodian: String,
    /// Parts needed to recover the share (`k`).
    pub threshold: u16,
    /// Parts made (`m`).
    pub parts: u16,
    /// The Shamir x-coordinate of this part, `1..=parts`.
    pub identifier: u16,
    /// The part's scalar `f(identifier)`, hex, FROST scalar encoding. Secret.
    pub value: String,
    /// The node's verifying share for the key, hex (FROST encoding); equals
    /// `commitments[0]`.
    pub verifying_share: String,
    /// Feldman commitments to the sharing polynomial's coefficients, hex (FROST
    /// element encoding), constant term first.
    pub commitments: Vec<String>,
    /// The key's group public key, hex (public API encoding).
    pub group_public_key: String,
    /// SHA-256 of the key's manifest when the part was made, hex.
    pub manifest_hash: String,
}

impl fmt::Debug for EscrowPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EscrowPart")
            .field("key_id", &self.key_id)
            .field("node_id", &self.node_id)
            .field("ciphersuite", &self.ciphersuite)
            .field("custodian", &self.custodian)
            .field("threshold", &self.threshold)
            .field("identifier", &self.identifier)
            .field("value", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn unhex(field: &str, text: &str) -> Result<Vec<u8>, EscrowFileError> {
    hex::decode(text).map_err(|_| EscrowFileError::Invalid(format!("{field} is not hex")))
}

impl EscrowPart {
    /// Pretty JSON, in a zeroizing buffer.
    pub fn to_json(&self) -> Zeroizing<String> {
        // A struct of strings and integers always serializes.
        let mut json = Zeroizing::new(serde_json::to_string_pretty(self).unwrap_or_default());
        json.push('\n');
        json
    }

    /// Parses a part and checks its format tag; see [`verify`](Self::verify) for the
    /// cryptographic check. Error messages never quote the input.
    pub fn from_json(text: &str) -> Result<Self, EscrowFileError> {
        #[derive(Deserialize)]
        struct Header {
            format: String,
        }
        let header: Header = serde_json::from_str(text).map_err(|e| {
            EscrowFileError::Decode(format!("line {} column {}", e.line(), e.column()))
        })?;
        if header.format != ESCROW_FORMAT {
            return Err(EscrowFileError::Format(header.format));
        }
        serde_json::from_str(text).map_err(|e| {
            // serde names the field, never the value, for missing/unknown fields.
            let reason = match e.classify() {
                serde_json::error::Category::Data => e.to_string(),
                _ => format!("line {} column {}", e.line(), e.column()),
            };
            EscrowFileError::Decode(reason)
        })
    }

    /// The ciphersuite named in the part.
    pub fn suite(&self) -> Result<Ciphersuite, EscrowFileError> {
        self.ciphersuite
            .parse()
            .map_err(|e: String| EscrowFileError::Invalid(e))
    }

    /// The part's secret as a Shamir part.
    pub fn shamir_part(&self) -> Result<ShamirPart, EscrowFileError> {
        let mut value = unhex("value", &self.value)?;
        let part = ShamirPart {
            identifier: self.identifier,
            value: SecretScalar::from_bytes(value.clone()),
        };
        value.zeroize();
        Ok(part)
    }

    /// The commitments, decoded.
    pub fn commitment_bytes(&self) -> Result<Vec<Vec<u8>>, EscrowFileError> {
        self.commitments
            .iter()
            .map(|c| unhex("commitments", c))
            .collect()
    }

    /// Everything one custodian can check alone: the format and field consistency
    /// (`threshold` commitments, identifier within `1..=parts`, the first commitment
    /// is the verifying share) and that the value lies on the committed polynomial.
    pub fn verify(&self) -> Result<(), EscrowFileError> {
        if self.format != ESCROW_FORMAT {
            return Err(EscrowFileError::Format(self.format.clone()));
        }
        let suite = self.suite()?;
        crate::validate_key_id(&self.key_id).map_err(EscrowFileError::Invalid)?;
        if self.threshold < 2 || self.parts < self.threshold || self.parts > MAX_CUSTODIANS {
            return Err(EscrowFileError::Invalid(format!(
                "threshold {} of {} parts is not within 2 <= threshold <= parts <= \
                 {MAX_CUSTODIANS}",
                self.threshold, self.parts
            )));
        }
        if self.identifier == 0 || self.identifier > self.parts {
            return Err(EscrowFileError::Invalid(format!(
                "identifier {} is not within 1..={}",
                self.identifier, self.parts
            )));
        }
        if self.commitments.len() != usize::from(self.threshold) {
            return Err(EscrowFileError::Invalid(format!(
                "{} commitments for threshold {}",
                self.commitments.len(),
                self.threshold
            )));
        }
        let commitments = self.commitment_bytes()?;
        if commitments.first() != Some(&unhex("verifying_share", &self.verifying_share)?) {
            return Err(EscrowFileError::Invalid(
                "the first commitment is not the verifying share".into(),
            ));
        }
        let part = self.shamir_part()?;
        suite
            .ops()
            .escrow_verify(&part, &commitments)
            .map_err(|source| EscrowFileError::Verify {
                custodian: self.custodian.clone(),
                source,
            })
    }
}

/// Checks a custodian name: 1..=64 bytes of `[A-Za-z0-9._-]`, so it is safe in file
/// names and logs.
pub fn validate_custodian_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_CUSTODIAN_NAME_BYTES {
        return Err(format!(
            "custodian name {name:?} must be 1..={MAX_CUSTODIAN_NAME_BYTES} bytes"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        || name.starts_with('.')
    {
        return Err(format!(
            "custodian name {name:?} may only hold letters, digits, '.', '_' and '-' \
             (not leading '.')"
        ));
    }
    Ok(())
}

/// A validated `EscrowSplit` request: the boundary conversion of
/// [`pb::EscrowSplitRequest`](crate::pb::EscrowSplitRequest).
#[derive(Clone, Debug)]
pub struct SplitRequest {
    /// The key whose share to split.
    pub key_id: String,
    /// Parts needed to recover (`k`).
    pub threshold: u16,
    /// `(custodian name, age recipient)`, in the order given.
    pub custodians: Vec<(String, String)>,
}

impl TryFrom<crate::pb::EscrowSplitRequest> for SplitRequest {
    type Error = String;

    fn try_from(req: crate::pb::EscrowSplitRequest) -> Result<Self, String> {
        crate::validate_key_id(&req.key_id)?;
        let m = req.custodians.len();
        if m < 2 || m > usize::from(MAX_CUSTODIANS) {
            return Err(format!(
                "{m} custodian(s); an escrow needs 2..={MAX_CUSTODIANS}"
            ));
        }
        let threshold = u16::try_from(req.threshold)
            .ok()
            .filter(|k| *k >= 2 && usize::from(*k) <= m)
            .ok_or_else(|| {
                format!(
                    "threshold {} is not within 2..={m} (the number of custodians)",
                    req.threshold
                )
            })?;
        let mut custodians: Vec<(String, String)> = Vec::with_capacity(m);
        for c in req.custodians {
            validate_custodian_name(&c.name)?;
            if custodians.iter().any(|(n, _)| *n == c.name) {
                return Err(format!("custodian {:?} is named twice", c.name));
            }
            if !c.age_recipient.starts_with("age1") {
                return Err(format!(
                    "custodian {:?}: recipient must be an age X25519 recipient (age1…)",
                    c.name
                ));
            }
            custodians.push((c.name, c.age_recipient));
        }
        Ok(Self {
            key_id: req.key_id,
            threshold,
            custodians,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dealt(suite: Ciphersuite) -> crate::suite::DealtKey {
        let names: Vec<String> = (1..=3).map(|i| format!("node-{i}")).collect();
        suite.ops().split(None, &names, 2).unwrap()
    }

    fn key_package(suite: Ciphersuite) -> crate::suite::SecretKeyPackage {
        dealt(suite).key_packages.into_iter().next().unwrap().1
    }

    fn part_file(suite: Ciphersuite, split: &EscrowSplit, i: usize) -> EscrowPart {
        EscrowPart {
            format: ESCROW_FORMAT.into(),
            key_id: "k1".into(),
            node_id: "node-1".into(),
            ciphersuite: suite.name().into(),
            custodian: format!("custodian-{i}"),
            threshold: u16::try_from(split.commitments.len()).unwrap(),
            parts: u16::try_from(split.parts.len()).unwrap(),
            identifier: split.parts[i].identifier,
            value: hex::encode(split.parts[i].value.expose_bytes()),
            verifying_share: hex::encode(&split.verifying_share),
            commitments: split.commitments.iter().map(hex::encode).collect(),
            group_public_key: "00".into(),
            manifest_hash: "00".into(),
        }
    }

    #[test]
    fn split_parts_verify_alone_and_threshold_parts_rebuild_the_share_for_every_suite() {
        for suite in Ciphersuite::ALL {
            let ops = suite.ops();
            let dealt = dealt(suite);
            let kp = dealt.key_packages[0].1.clone();
            let info = ops.key_package_info(&kp).unwrap();
            let split = ops.escrow_split(&kp, 3, 5).unwrap();
            assert_eq!(split.verifying_share, info.verifying_share, "{suite}");
            assert_eq!(split.commitments[0], info.verifying_share, "{suite}");
            assert_eq!(split.parts.len(), 5);
            for p in &split.parts {
                ops.escrow_verify(p, &split.commitments).unwrap();
            }
            // Any 3 of 5 rebuild it.
            for pick in [[0, 1, 2], [1, 3, 4], [0, 2, 4]] {
                let parts: Vec<ShamirPart> = pick.iter().map(|&i| split.parts[i].clone()).collect();
                let share = ops.escrow_combine(&parts, &info.verifying_share).unwrap();
                let rebuilt = ops
                    .key_package_from_signing_share(
                        &info.identifier,
                        &share,
                        &dealt.public_key_package,
                        2,
                    )
                    .unwrap();
                assert_eq!(rebuilt.expose_bytes(), kp.expose_bytes(), "{suite}");
            }
        }
    }

    #[test]
    fn too_few_parts_are_refused_not_silently_wrong() {
        for suite in Ciphersuite::ALL {
            let ops = suite.ops();
            let kp = key_package(suite);
            let split = ops.escrow_split(&kp, 3, 5).unwrap();
            let err = ops
                .escrow_combine(&split.parts[..2], &split.verifying_share)
                .unwrap_err();
            assert!(
                matches!(err, CryptoError::ShareMismatch(_)),
                "{suite}: {err}"
            );
        }
    }

    #[test]
    fn a_tampered_value_fails_feldman_verification() {
        for suite in Ciphersuite::ALL {
            let ops = suite.ops();
            let split = ops.escrow_split(&key_package(suite), 2, 3).unwrap();
            // Another part's value under this part's identifier: a valid scalar that
            // is not on the committed polynomial at this x.
            let forged = ShamirPart {
                identifier: 1,
                value: split.parts[1].value.clone(),
            };
            assert!(matches!(
                ops.escrow_verify(&forged, &split.commitments),
                Err(CryptoError::ShareMismatch(_))
            ));
        }
    }

    #[test]
    fn escrow_file_round_trips_and_one_custodian_verifies_alone() {
        for suite in Ciphersuite::ALL {
            let split = suite.ops().escrow_split(&key_package(suite), 2, 3).unwrap();
            let part = part_file(suite, &split, 2);
            let json = part.to_json();
            let back = EscrowPart::from_json(&json).unwrap();
            assert_eq!(back, part);
            back.verify().unwrap();
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(v["format"], "quorate-escrow/1");
            assert_eq!(v["identifier"], 3, "the x-coordinate is an integer");
            assert_eq!(v["ciphersuite"], suite.name());
        }
    }

    #[test]
    fn escrow_file_with_forged_value_or_unknown_format_is_refused() {
        let suite = Ciphersuite::Secp256k1Tr;
        let split = suite.ops().escrow_split(&key_package(suite), 2, 3).unwrap();
        let mut forged = part_file(suite, &split, 0);
        forged.value = hex::encode(split.parts[1].value.expose_bytes());
        let err = forged.verify().unwrap_err();
        assert!(matches!(err, EscrowFileError::Verify { .. }), "{err}");
        assert!(err.to_string().contains("custodian-0"), "{err}");

        let mut other = part_file(suite, &split, 0);
        other.format = "quorate-escrow/2".into();
        let err = EscrowPart::from_json(&other.to_json()).unwrap_err();
        assert!(matches!(err, EscrowFileError::Format(_)), "{err}");

        let mut short = part_file(suite, &split, 0);
        short.commitments.pop();
        assert!(matches!(short.verify(), Err(EscrowFileError::Invalid(_))));
    }

    #[test]
    fn secrets_are_redacted_in_debug_and_errors() {
        let suite = Ciphersuite::Ed25519;
        let split = suite.ops().escrow_split(&key_package(suite), 2, 2).unwrap();
        let part = part_file(suite, &split, 0);
        let value = part.value.clone();
        assert!(!format!("{part:?}").contains(&value));
        assert!(!format!("{split:?}").contains(&value));
        let mut bad = part.to_json().to_string();
        bad = bad.replace("\"key_id\"", "\"key_idx\"");
        let err = EscrowPart::from_json(&bad).unwrap_err().to_string();
        assert!(!err.contains(&value), "{err}");
    }

    #[test]
    fn non_canonical_scalar_is_refused() {
        // The Ed25519 group order, little-endian: not a canonical scalar.
        let mut l = [0u8; 32];
        l[..16].copy_from_slice(&hex::decode("edd3f55c1a631258d69cf7a2def9de14").unwrap());
        l[31] = 0x10;
        let part = ShamirPart {
            identifier: 1,
            value: SecretScalar::from_bytes(l.to_vec()),
        };
        let split = Ciphersuite::Ed25519
            .ops()
            .escrow_split(&key_package(Ciphersuite::Ed25519), 2, 2)
            .unwrap();
        assert!(matches!(
            Ciphersuite::Ed25519
                .ops()
                .escrow_verify(&part, &split.commitments),
            Err(CryptoError::Malformed(_))
        ));
    }
}
