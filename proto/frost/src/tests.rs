//! The crate's protocol flows end to end, in one process, for every ciphersuite.

use std::collections::BTreeMap;

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
        // node-2 answers with node-1's share: valid encoding, wrong value.
        let id1 = ops.identifier("node-1").unwrap();
        let id2 = ops.identifier("node-2").unwrap();
        let wrong = shares[&id1].clone();
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
fn a_key_package_whose_signing_share_does_not_match_its_verifying_share_is_refused() {
    type E = frost_ed25519::Ed25519Sha512;
    let dealt = Ciphersuite::Ed25519
        .ops()
        .split(None, &names(3), 2)
        .unwrap();
    let decode = |i: usize| {
        frost_core::keys::KeyPackage::<E>::deserialize(dealt.key_packages[i].1.expose_bytes())
            .unwrap()
    };
    let (first, second) = (decode(0), decode(1));
    // node-1's package, all its public parts as dealt, with node-2's signing share.
    let swapped = frost_core::keys::KeyPackage::<E>::new(
        *first.identifier(),
        *second.signing_share(),
        *first.verifying_share(),
        *first.verifying_key(),
        *first.min_signers(),
    );
    let swapped = SecretKeyPackage::from_bytes(swapped.serialize().unwrap());
    let ops = Ciphersuite::Ed25519.ops();
    let err = ops.parse_key_package(&swapped).unwrap_err();
    assert!(err.to_string().contains("signing share"), "{err}");
    ops.parse_key_package(&dealt.key_packages[0].1).unwrap();
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
    assert!(
        !format!("{dealt:?}").contains(&hex::encode(&dealt.key_packages[0].1.expose_bytes()[..16]))
    );
}
