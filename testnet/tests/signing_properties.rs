//! Property: any `t` of `n` signers (2 <= t <= n <= 10, a random subset) produce, for
//! any message of 1..=65536 bytes, a signature that the independent verifiers of
//! `quorate_testnet::verify` accept, for each ciphersuite. In process (no network):
//! the multi-process paths are covered by the other tests here.
//! `QUORATE_PROPTEST_CASES=<n>` raises the case count; `QUORATE_FUZZ_SEED=<n>`
//! replays a run.

#[path = "../../proto/fuzzing/mod.rs"]
mod fuzzing;

use quorate_frost::{Ciphersuite, LocalQuorum, PackageDelivery};
use rand::seq::SliceRandom;
use rand::Rng;

#[test]
fn any_t_of_n_signers_produce_a_signature_independent_verifiers_accept() {
    let cases: u64 = std::env::var("QUORATE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let seed = fuzzing::seed();
    eprintln!("seed {seed} (replay with QUORATE_FUZZ_SEED={seed})");
    let mut rng = fuzzing::rng(seed);
    for suite in Ciphersuite::ALL {
        let ops = suite.ops();
        for _ in 0..cases {
            let n = rng.gen_range(2..=10usize);
            let t = rng.gen_range(2..=n);
            let len = if rng.gen_bool(0.2) {
                quorate_wire::MAX_MESSAGE_BYTES
            } else {
                rng.gen_range(1..=quorate_wire::MAX_MESSAGE_BYTES)
            };
            let message: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let names: Vec<String> = (1..=n).map(|i| format!("node-{i}")).collect();
            let dealt = ops.split(None, &names, t as u16).unwrap();
            let mut signers: Vec<usize> = (0..n).collect();
            signers.shuffle(&mut rng);
            signers.truncate(t);

            let quorum = LocalQuorum::new(suite, &dealt, &signers).unwrap();
            let signature = quorum.sign(&message, PackageDelivery::PerSigner).unwrap();
            let public_key = quorum.public_key().to_vec();
            let what = format!("{suite} {t}-of-{n} signers {signers:?}, {len}-byte message");
            quorate_testnet::verify::verify(suite, &public_key, &message, &signature)
                .unwrap_or_else(|e| panic!("{what}: independent verifier refused: {e}"));
            // And the verifier is not a rubber stamp: another message fails.
            let mut other = message.clone();
            other[rng.gen_range(0..len)] ^= 1;
            assert!(
                quorate_testnet::verify::verify(suite, &public_key, &other, &signature).is_err(),
                "{what}: signature verified for another message"
            );
        }
    }
}
