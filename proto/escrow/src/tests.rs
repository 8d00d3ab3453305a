//! Escrow end to end for every ciphersuite: split, check alone, combine, files.

use quorate_frost::{Ciphersuite, CryptoError, SecretScalar};

use super::*;

fn dealt(suite: Ciphersuite) -> quorate_frost::DealtKey {
    let names: Vec<String> = (1..=3).map(|i| format!("node-{i}")).collect();
    suite.ops().split(None, &names, 2).unwrap()
}

fn key_package(suite: Ciphersuite) -> quorate_frost::SecretKeyPackage {
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
        let split = crate::split(suite, &kp, 3, 5).unwrap();
        assert_eq!(split.verifying_share, info.verifying_share, "{suite}");
        assert_eq!(split.commitments[0], info.verifying_share, "{suite}");
        assert_eq!(split.parts.len(), 5);
        for p in &split.parts {
            crate::verify(suite, p, &split.commitments).unwrap();
        }
        // Any 3 of 5 rebuild it.
        for pick in [[0, 1, 2], [1, 3, 4], [0, 2, 4]] {
            let parts: Vec<ShamirPart> = pick.iter().map(|&i| split.parts[i].clone()).collect();
            let share = crate::combine(suite, &parts, &info.verifying_share).unwrap();
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
        let kp = key_package(suite);
        let split = crate::split(suite, &kp, 3, 5).unwrap();
        let err = crate::combine(suite, &split.parts[..2], &split.verifying_share).unwrap_err();
        assert!(
            matches!(err, CryptoError::ShareMismatch(_)),
            "{suite}: {err}"
        );
    }
}

#[test]
fn a_tampered_value_fails_feldman_verification() {
    for suite in Ciphersuite::ALL {
        let split = crate::split(suite, &key_package(suite), 2, 3).unwrap();
        // Another part's value under this part's identifier: a valid scalar that
        // is not on the committed polynomial at this x.
        let forged = ShamirPart {
            identifier: 1,
            value: split.parts[1].value.clone(),
        };
        assert!(matches!(
            crate::verify(suite, &forged, &split.commitments),
            Err(CryptoError::ShareMismatch(_))
        ));
    }
}

#[test]
fn escrow_file_round_trips_and_one_custodian_verifies_alone() {
    for suite in Ciphersuite::ALL {
        let split = crate::split(suite, &key_package(suite), 2, 3).unwrap();
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
    let split = crate::split(suite, &key_package(suite), 2, 3).unwrap();
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
    let split = crate::split(suite, &key_package(suite), 2, 2).unwrap();
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
    let split = crate::split(
        Ciphersuite::Ed25519,
        &key_package(Ciphersuite::Ed25519),
        2,
        2,
    )
    .unwrap();
    assert!(matches!(
        crate::verify(Ciphersuite::Ed25519, &part, &split.commitments),
        Err(CryptoError::Malformed(_))
    ));
}
