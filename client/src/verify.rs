//! Signature verification with libraries other than the one that signed.
//!
//! The coordinator signs with frost; here each signature is checked the way an
//! ordinary verifier out in the world would: ed25519-dalek (RFC 8032, strict) for
//! Ed25519, k256's BIP340 for Taproot, and for FROST(secp256k1, SHA-256) the RFC 9591
//! verification equation computed directly with k256.

use k256::elliptic_curve::group::GroupEncoding;
use k256::elliptic_curve::hash2curve::{ExpandMsgXmd, GroupDigest};
use k256::elliptic_curve::ops::LinearCombination;
use k256::elliptic_curve::sec1::FromEncodedPoint;
use k256::elliptic_curve::PrimeField;
use quorate_frost::Ciphersuite;

/// Why a signature does not verify (or the key or signature is malformed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct VerifyError(pub String);

/// Checks `signature` on `message` under `public_key` (public API encodings).
pub fn verify(
    suite: Ciphersuite,
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), VerifyError> {
    verify_inner(suite, public_key, message, signature).map_err(VerifyError)
}

fn verify_inner(
    suite: Ciphersuite,
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    match suite {
        Ciphersuite::Ed25519 => {
            let key: [u8; 32] = public_key
                .try_into()
                .map_err(|_| format!("Ed25519 key is {} bytes, not 32", public_key.len()))?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|e| e.to_string())?;
            let sig = ed25519_dalek::Signature::from_slice(signature).map_err(|e| e.to_string())?;
            key.verify_strict(message, &sig).map_err(|e| e.to_string())
        }
        Ciphersuite::Secp256k1Tr => {
            let key =
                k256::schnorr::VerifyingKey::from_bytes(public_key).map_err(|e| e.to_string())?;
            let sig = k256::schnorr::Signature::try_from(signature).map_err(|e| e.to_string())?;
            key.verify_raw(message, &sig).map_err(|e| e.to_string())
        }
        Ciphersuite::Secp256k1 => verify_frost_secp256k1(public_key, message, signature),
    }
}

/// RFC 9591 section 6.5 verification: `z*G == R + c*PK` with
/// `c = H2(enc(R) || enc(PK) || msg)`, H2 = hash_to_field(XMD:SHA-256) with the DST
/// `FROST-secp256k1-SHA256-v1chal`.
fn verify_frost_secp256k1(
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    if signature.len() != 65 {
        return Err(format!(
            "FROST secp256k1 signature is {} bytes, not 65",
            signature.len()
        ));
    }
    let point = |bytes: &[u8]| -> Result<k256::ProjectivePoint, String> {
        let encoded = k256::EncodedPoint::from_bytes(bytes).map_err(|e| e.to_string())?;
        Option::<k256::AffinePoint>::from(k256::AffinePoint::from_encoded_point(&encoded))
            .map(Into::into)
            .ok_or_else(|| "not a curve point".to_string())
    };
    let r = point(&signature[..33])?;
    let pk = point(public_key)?;
    let z_bytes: [u8; 32] = signature[33..].try_into().map_err(|_| "bad scalar")?;
    let z = Option::<k256::Scalar>::from(k256::Scalar::from_repr(z_bytes.into()))
        .ok_or("signature scalar out of range")?;
    let c = k256::Secp256k1::hash_to_scalar::<ExpandMsgXmd<sha2::Sha256>>(
        &[&r.to_bytes(), &pk.to_bytes(), message],
        &[b"FROST-secp256k1-SHA256-v1chal"],
    )
    .map_err(|e| e.to_string())?;
    // `z*G - c*PK == R` as one interleaved double multiplication, as k256's own
    // BIP340 check computes it: a third cheaper than two separate ones, on every
    // signature a client receives.
    if k256::ProjectivePoint::lincomb(&k256::ProjectivePoint::GENERATOR, &z, &pk, &-c) == r {
        Ok(())
    } else {
        Err("signature does not verify".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_frost::{LocalQuorum, PackageDelivery};

    fn frost_signature(suite: Ciphersuite, message: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let names: Vec<String> = (1..=3).map(|i| format!("n{i}")).collect();
        let dealt = suite.ops().split(None, &names, 2).unwrap();
        let quorum = LocalQuorum::new(suite, &dealt, &[0, 1]).unwrap();
        let sig = quorum.sign(message, PackageDelivery::PerSigner).unwrap();
        (quorum.public_key().to_vec(), sig)
    }

    #[test]
    fn independent_verifiers_accept_frost_signatures_and_reject_other_messages() {
        for suite in Ciphersuite::ALL {
            let (pk, sig) = frost_signature(suite, b"pay 10 EUR");
            verify(suite, &pk, b"pay 10 EUR", &sig).unwrap();
            assert!(verify(suite, &pk, b"pay 99 EUR", &sig).is_err(), "{suite}");
            let mut bad = sig.clone();
            bad[40] ^= 1;
            assert!(verify(suite, &pk, b"pay 10 EUR", &bad).is_err(), "{suite}");
        }
    }
}
