//! The in-process FROST signing path per ciphersuite: the compute floor every
//! networked signature pays. `cargo bench -p quorate-proto --bench signing`.
//!
//! "sign_3_of_5" is one whole threshold signature as the network computes it (three
//! commitments, three shares, aggregation with its verification); the single steps
//! show where the time goes.

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, Criterion};
use quorate_proto::suite::{Ciphersuite, DealtKey};

fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("node-{i}")).collect()
}

fn sign(suite: Ciphersuite, dealt: &DealtKey, t: usize, message: &[u8]) -> Vec<u8> {
    let ops = suite.ops();
    let mut nonces = Vec::with_capacity(t);
    let mut commitments = BTreeMap::new();
    for (name, kp) in dealt.key_packages.iter().take(t) {
        let (n, c) = ops.commit(kp).expect("commit");
        commitments.insert(ops.identifier(name).expect("identifier"), c);
        nonces.push(n);
    }
    let package = ops
        .new_signing_package(&commitments, message)
        .expect("package");
    let mut shares = BTreeMap::new();
    for ((name, kp), n) in dealt.key_packages.iter().take(t).zip(&nonces) {
        shares.insert(
            ops.identifier(name).expect("identifier"),
            package.sign(n, kp).expect("sign"),
        );
    }
    package
        .aggregate(&shares, &dealt.public_key_package)
        .expect("aggregate")
}

fn bench(c: &mut Criterion) {
    let message = [0x42u8; 32];
    for suite in Ciphersuite::ALL {
        let ops = suite.ops();
        let dealt = ops.split(None, &names(5), 3).expect("split");
        let mut group = c.benchmark_group(suite.name());
        group.bench_function("sign_3_of_5", |b| {
            b.iter(|| sign(suite, &dealt, 3, &message))
        });
        let kp = &dealt.key_packages[0].1;
        group.bench_function("round1_commit", |b| {
            b.iter(|| ops.commit(kp).expect("commit"))
        });
        let signature = sign(suite, &dealt, 3, &message);
        let public = ops
            .public_key_info(&dealt.public_key_package)
            .expect("public key")
            .public_key;
        group.bench_function("verify", |b| {
            b.iter(|| ops.verify(&public, &message, &signature).expect("verify"))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
