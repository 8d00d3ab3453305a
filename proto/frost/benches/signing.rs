//! The in-process FROST signing path per ciphersuite: the compute floor every
//! networked signature pays. `cargo bench -p quorate-frost --bench signing`.
//!
//! "sign_3_of_5" is one whole threshold signature as the network computes it (three
//! commitments, each signer decoding the signing package it receives, three shares,
//! aggregation with its verification); "sign_3_of_5_shared_package" the same with one
//! decoded package shared by the signers; the single steps show where the time goes.

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, Criterion};
use quorate_frost::{Ciphersuite, LocalQuorum, PackageDelivery};

fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("node-{i}")).collect()
}

fn bench(c: &mut Criterion) {
    let message = [0x42u8; 32];
    for suite in Ciphersuite::ALL {
        let ops = suite.ops();
        let dealt = ops.split(None, &names(5), 3).expect("split");
        let quorum = LocalQuorum::new(suite, &dealt, &[0, 1, 2]).expect("quorum");
        let mut group = c.benchmark_group(suite.name());
        group.bench_function("sign_3_of_5", |b| {
            b.iter(|| {
                quorum
                    .sign(&message, PackageDelivery::PerSigner)
                    .expect("sign")
            })
        });
        group.bench_function("sign_3_of_5_shared_package", |b| {
            b.iter(|| {
                quorum
                    .sign(&message, PackageDelivery::Shared)
                    .expect("sign")
            })
        });
        let kp = ops
            .parse_key_package(&dealt.key_packages[0].1)
            .expect("key package");
        group.bench_function("round1_commit", |b| {
            b.iter(|| ops.commit(&kp).expect("commit"))
        });
        let mut commitments = BTreeMap::new();
        for (name, kp) in &dealt.key_packages[..3] {
            let kp = ops.parse_key_package(kp).expect("key package");
            let (_, c) = ops.commit(&kp).expect("commit");
            commitments.insert(ops.identifier(name).expect("identifier"), c);
        }
        let own = ops.identifier("node-1").expect("identifier");
        // What a signer decodes of a 3-signer package: the two other commitments.
        group.bench_function("receive_signing_package_3", |b| {
            b.iter(|| {
                ops.receive_signing_package(&message, &commitments, &own)
                    .expect("decode")
            })
        });
        let signature = quorum
            .sign(&message, PackageDelivery::PerSigner)
            .expect("sign");
        let public = quorum.public_key().to_vec();
        group.bench_function("verify", |b| {
            b.iter(|| ops.verify(&public, &message, &signature).expect("verify"))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
