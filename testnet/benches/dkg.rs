//! DKG 3-of-5 over the network (real node processes on loopback, mTLS, signed
//! contributions, sealed round-2 packages, confirmations, durable activation)
//! against the same FROST DKG run in-process (frost part1/2/3 for five
//! participants, no network, no signatures, no storage).
//!
//! Needs the release binaries: `cargo build --release --workspace --bins`, then
//! `cargo bench -p quorate-testnet --bench dkg`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{criterion_group, criterion_main, Criterion};
use quorate_ceremony::keygen::{run_dkg, DkgRequest};
use quorate_frost::{Ciphersuite, DkgMode};
use quorate_testnet::network::{default_bin_dir, LocalNetwork};
use quorate_testnet::spec::NetworkSpec;

/// frost DKG for `n` participants in one process.
fn in_process_dkg(suite: Ciphersuite, n: usize, t: u16) {
    let ops = suite.ops();
    let names: Vec<String> = (1..=n).map(|i| format!("node-{i}")).collect();
    let ids: Vec<Vec<u8>> = names.iter().map(|n| ops.identifier(n).unwrap()).collect();
    let mut secrets = Vec::new();
    let mut round1 = BTreeMap::new();
    for (name, id) in names.iter().zip(&ids) {
        let (s, p) = ops.dkg_part1(DkgMode::Generate, name, n as u16, t).unwrap();
        secrets.push(s);
        round1.insert(id.clone(), p);
    }
    let mut secrets2 = Vec::new();
    let mut inbox: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, _>> = BTreeMap::new();
    for (s, id) in secrets.into_iter().zip(&ids) {
        let mut others = round1.clone();
        others.remove(id);
        let (s2, packages) = ops.dkg_part2(DkgMode::Generate, s, &others).unwrap();
        for (to, p) in packages {
            inbox.entry(to).or_default().insert(id.clone(), p);
        }
        secrets2.push(s2);
    }
    for (s2, id) in secrets2.iter().zip(&ids) {
        let mut others = round1.clone();
        others.remove(id);
        ops.dkg_part3(s2, &others, &inbox[id]).unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("dkg-3-of-5-ed25519");
    group.sample_size(20);
    group.bench_function("in-process", |b| {
        b.iter(|| in_process_dkg(Ciphersuite::Ed25519, 5, 3))
    });

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = NetworkSpec::default_five_regions();
    spec.keys.truncate(1);
    let bin_dir = default_bin_dir().unwrap();
    let net = runtime
        .block_on(LocalNetwork::start(&dir.path().join("net"), &bin_dir, spec))
        .expect("the network starts (build the release binaries first)");
    let file = net.ceremony().unwrap();
    let counter = AtomicUsize::new(0);
    group.bench_function("network", |b| {
        b.iter(|| {
            let key_id = format!("bench-{}", counter.fetch_add(1, Ordering::Relaxed));
            runtime
                .block_on(run_dkg(
                    &file,
                    DkgRequest {
                        key_id,
                        ciphersuite: Ciphersuite::Ed25519,
                        threshold: 3,
                        policy: None,
                        escrow: None,
                    },
                ))
                .unwrap()
        })
    });
    group.finish();
    let mut net = net;
    runtime.block_on(net.stop()).unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
