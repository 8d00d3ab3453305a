//! DANGER, fault injection for drills only (cargo feature `fault-injection`, which
//! release images never enable): a well-formed signature share that is wrong, as a
//! malicious or broken signer would send it.

use crate::ciphersuite::Ciphersuite;
use crate::error::CryptoError;

/// The given signature share plus one: it decodes, and fails verification, so the
/// coordinator's aggregation names its sender as a culprit. Nodes use it only when
/// their config says `danger.corrupt_signature_shares`.
pub fn corrupt_share(suite: Ciphersuite, share: &[u8]) -> Result<Vec<u8>, CryptoError> {
    match suite {
        Ciphersuite::Ed25519 => corrupt::<frost_ed25519::Ed25519Sha512>(share),
        Ciphersuite::Secp256k1 => corrupt::<frost_secp256k1::Secp256K1Sha256>(share),
        Ciphersuite::Secp256k1Tr => corrupt::<frost_secp256k1_tr::Secp256K1Sha256TR>(share),
    }
}

fn corrupt<C: frost_core::Ciphersuite>(share: &[u8]) -> Result<Vec<u8>, CryptoError> {
    use frost_core::Field;
    type F<C> = <<C as frost_core::Ciphersuite>::Group as frost_core::Group>::Field;
    let encoded = <F<C> as Field>::Serialization::try_from(share)
        .map_err(|_| CryptoError::Malformed("signature share".into()))?;
    let scalar = <F<C> as Field>::deserialize(&encoded)
        .map_err(|_| CryptoError::Malformed("signature share".into()))?;
    let wrong = scalar + <F<C> as Field>::one();
    Ok(<F<C> as Field>::serialize(&wrong).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_share_keeps_its_encoding_and_changes_its_value_for_every_ciphersuite() {
        for suite in Ciphersuite::ALL {
            let share = vec![7u8; 32];
            let wrong = corrupt_share(suite, &share).expect("a canonical scalar corrupts");
            assert_eq!(wrong.len(), share.len(), "{suite}");
            assert_ne!(wrong, share, "{suite}");
        }
        assert!(corrupt_share(Ciphersuite::Ed25519, &[1, 2, 3]).is_err());
    }
}
