//! The audit log's Merkle tree and proofs checked against a reference written here
//! straight from RFC 9162's recursive definitions (MTH, PATH, PROOF/SUBPROOF in
//! sections 2.1.1, 2.1.3.1 and 2.1.4.1), over `sha2` directly: nothing of
//! `quorate_keys::merkle` is reused by the reference.

use quorate_keys::merkle::{verify_consistency, verify_inclusion, Hash, Tree};
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

fn sha(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// k: the largest power of two smaller than n (n > 1).
fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH(D[n]).
fn mth(d: &[Vec<u8>]) -> Hash {
    match d.len() {
        0 => sha(&[]),
        1 => sha(&[&[0x00], &d[0]]),
        n => {
            let k = k_of(n);
            sha(&[&[0x01], &mth(&d[..k]), &mth(&d[k..])])
        }
    }
}

/// PATH(m, D[n]).
fn path(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
    let n = d.len();
    if n == 1 {
        return vec![];
    }
    let k = k_of(n);
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

/// SUBPROOF(m, D[n], b).
fn subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = k_of(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

fn records(n: usize, salt: u8) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{{\"seq\":{i},\"salt\":{salt}}}").into_bytes())
        .collect()
}

fn tree_of(d: &[Vec<u8>]) -> Tree {
    let mut t = Tree::new();
    for r in d {
        t.push(r);
    }
    t
}

#[test]
fn roots_inclusion_and_consistency_proofs_equal_the_rfc_definitions_up_to_70_records() {
    let d = records(70, 0);
    let tree = tree_of(&d);
    for n in 0..=d.len() {
        let root = mth(&d[..n]);
        assert_eq!(tree.root(n as u64).expect("in range"), root, "root of {n}");
        for m in 0..n {
            let proof = tree.inclusion_proof(m as u64, n as u64).expect("in range");
            assert_eq!(proof, path(m, &d[..n]), "PATH({m}, D[{n}])");
            let leaf = sha(&[&[0x00], &d[m]]);
            assert!(verify_inclusion(m as u64, n as u64, &leaf, &proof, &root));
        }
        for m in 1..n {
            let proof = tree
                .consistency_proof(m as u64, n as u64)
                .expect("in range");
            assert_eq!(proof, subproof(m, &d[..n], true), "PROOF({m}, D[{n}])");
            assert!(verify_consistency(
                m as u64,
                n as u64,
                &mth(&d[..m]),
                &root,
                &proof
            ));
        }
    }
}

#[test]
fn a_wrong_leaf_root_index_or_proof_hash_fails_inclusion() {
    let d = records(37, 1);
    let tree = tree_of(&d);
    let root = mth(&d);
    for m in 0..d.len() {
        let leaf = sha(&[&[0x00], &d[m]]);
        let proof = path(m, &d);
        let other_leaf = sha(&[&[0x00], b"forged"]);
        assert!(!verify_inclusion(m as u64, 37, &other_leaf, &proof, &root));
        assert!(!verify_inclusion(
            m as u64,
            37,
            &leaf,
            &proof,
            &mth(&d[..36])
        ));
        assert!(!verify_inclusion(
            (m as u64 + 1) % 37,
            37,
            &leaf,
            &proof,
            &root
        ));
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i][0] ^= 1;
            assert!(!verify_inclusion(m as u64, 37, &leaf, &bad, &root));
        }
        assert!(tree.inclusion_proof(m as u64, 38).is_err());
    }
}

/// What an auditor meets when a log was truncated, rewritten or forked: the new
/// tree is not an extension of the old, and no proof the node can give verifies.
#[test]
fn a_rewritten_record_or_a_shrunk_tree_fails_consistency() {
    let old = records(20, 2);
    let mut rewritten = records(26, 2);
    rewritten[7] = b"{\"seq\":7,\"salt\":99}".to_vec();
    let tree = tree_of(&rewritten);
    for m in 1..20u64 {
        let proof = tree.consistency_proof(m, 26).expect("in range");
        let verified =
            verify_consistency(m, 26, &mth(&old[..m as usize]), &mth(&rewritten), &proof);
        // Trees of 7 records or fewer never included the rewritten one.
        assert_eq!(verified, m <= 7, "m = {m}");
        assert!(!verify_consistency(
            m,
            20,
            &mth(&old[..m as usize]),
            &mth(&old),
            &[]
        ));
    }
    assert!(!verify_consistency(
        20,
        26,
        &mth(&old),
        &mth(&rewritten),
        &tree.consistency_proof(20, 26).expect("in range")
    ));
    assert!(!verify_consistency(
        20,
        15,
        &mth(&old),
        &mth(&old[..15]),
        &[]
    ));
    assert!(!verify_consistency(
        20,
        20,
        &mth(&old),
        &mth(&rewritten[..20]),
        &[]
    ));
}

#[test]
fn random_sizes_up_to_3000_agree_with_the_rfc_definitions() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9162);
    let d = records(3000, 3);
    let tree = tree_of(&d);
    for _ in 0..60 {
        let n = rng.gen_range(1..=d.len());
        let m = rng.gen_range(0..n);
        let root = mth(&d[..n]);
        assert_eq!(tree.root(n as u64).expect("in range"), root);
        let proof = tree.inclusion_proof(m as u64, n as u64).expect("in range");
        assert_eq!(proof, path(m, &d[..n]));
        if m > 0 {
            let proof = tree
                .consistency_proof(m as u64, n as u64)
                .expect("in range");
            assert_eq!(proof, subproof(m, &d[..n], true));
            assert!(verify_consistency(
                m as u64,
                n as u64,
                &mth(&d[..m]),
                &root,
                &proof
            ));
        }
    }
}
