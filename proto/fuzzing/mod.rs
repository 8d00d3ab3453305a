//! A small, stable-toolchain fuzz driver: the seeded harness of the fuzz targets in
//! `fuzz/src/`, which the libFuzzer binaries in `fuzz/` run too (included with
//! `#[path]`, so each test crate compiles its own copy).
//!
//! Each target has a corpus of valid encodings and a check. Every case is either
//! random bytes or a corpus entry put through one to four structured mutations (bit
//! flips, interesting bytes, truncation, insertion, deletion, duplication, splicing
//! with another entry, huge varints). The property is the same for every decoder: it
//! returns (`Ok` or a clean `Err`) without panicking and within [`CASE_TIME_LIMIT`],
//! and the target's own assertions hold.
//!
//! What it adds to libFuzzer, which finds far more in a long run: it needs nothing but
//! the stable toolchain, so its smoke pass runs on every `cargo nextest run` and a
//! decoder regression fails the ordinary test loop; and each run builds the targets'
//! contexts afresh (new keys, nonces and shares), checking that every freshly made
//! valid encoding is accepted, where libFuzzer starts from fixed seeds.
//!
//! Runs are reproducible: the seed is printed with any failure, and
//! `QUORATE_FUZZ_SEED=<n>` replays it. `QUORATE_FUZZ_CASES=<n>` sets the number of
//! cases per target (the default is a quick smoke pass for every test run).

#![allow(dead_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Longest one decoder call may take before the case counts as a hang.
pub const CASE_TIME_LIMIT: Duration = Duration::from_secs(2);

/// Number of cases per target: `QUORATE_FUZZ_CASES`, or `default` for the smoke pass.
pub fn cases(default: u64) -> u64 {
    std::env::var("QUORATE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The run's seed: `QUORATE_FUZZ_SEED`, or fresh from the clock.
pub fn seed() -> u64 {
    std::env::var("QUORATE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// A seeded generator for structured (non-byte) fuzzing and property tests.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

const INTERESTING: &[u8] = &[0, 1, 0x7f, 0x80, 0xfe, 0xff, b'"', b'{', b'}', b'0', b'a'];

/// Applies one random structural mutation to `data`.
pub fn mutate_once(rng: &mut ChaCha8Rng, data: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let len = data.len();
    match rng.gen_range(0..9) {
        0 if len > 0 => {
            let i = rng.gen_range(0..len);
            data[i] ^= 1 << rng.gen_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.gen_range(0..len);
            data[i] = INTERESTING[rng.gen_range(0..INTERESTING.len())];
        }
        2 if len > 0 => {
            let i = rng.gen_range(0..len);
            data[i] = rng.gen();
        }
        3 => data.truncate(rng.gen_range(0..=len)),
        4 => {
            let at = rng.gen_range(0..=len);
            let n = rng.gen_range(1..=16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            data.splice(at..at, bytes);
        }
        5 if len > 0 => {
            let a = rng.gen_range(0..len);
            let b = rng.gen_range(a..=len.min(a + 64));
            data.drain(a..b);
        }
        6 if len > 0 => {
            let a = rng.gen_range(0..len);
            let b = rng.gen_range(a..=len.min(a + 64));
            let chunk = data[a..b].to_vec();
            let at = rng.gen_range(0..=data.len());
            data.splice(at..at, chunk);
        }
        7 if !corpus.is_empty() => {
            // Splice: a prefix of this input with a suffix of another valid one.
            let other = &corpus[rng.gen_range(0..corpus.len())];
            let cut = rng.gen_range(0..=len);
            let from = rng.gen_range(0..=other.len());
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        _ => {
            // Varint-sized lengths are where protobuf and length-prefixed decoders
            // go wrong: write a large one somewhere.
            let at = rng.gen_range(0..=len);
            data.splice(at..at, [0xff, 0xff, 0xff, 0xff, 0x0f]);
        }
    }
}

/// One fuzz input: random bytes (one case in eight) or a mutated corpus entry.
pub fn input(rng: &mut ChaCha8Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    if corpus.is_empty() || rng.gen_range(0..8) == 0 {
        let n = rng.gen_range(0..256);
        return (0..n).map(|_| rng.gen()).collect();
    }
    let mut data = corpus[rng.gen_range(0..corpus.len())].clone();
    for _ in 0..rng.gen_range(1..=4) {
        mutate_once(rng, &mut data, corpus);
    }
    data
}

/// What a run did, for the report line and docs/security.md.
#[derive(Debug)]
pub struct Report {
    pub target: &'static str,
    pub cases: u64,
    pub accepted: u64,
    pub elapsed: Duration,
}

/// Runs `decode` on `cases` inputs derived from `corpus`. `decode` returns whether
/// the decoder accepted the input; the first `must_accept` corpus entries must be
/// accepted unchanged (or the corpus tests nothing), the rest are starting points
/// only (another ciphersuite's encodings, a config whose files do not exist here).
/// Panics (failing the test) with the seed, the case number and the input in hex when
/// a decoder panics or hangs.
pub fn run(
    target: &'static str,
    corpus: &[Vec<u8>],
    must_accept: usize,
    cases: u64,
    decode: impl Fn(&[u8]) -> bool,
) -> Report {
    for (i, entry) in corpus[..must_accept].iter().enumerate() {
        assert!(decode(entry), "{target}: corpus entry {i} is not accepted");
    }
    let seed = seed();
    let mut rng = rng(seed);
    let started = Instant::now();
    let mut accepted = 0;
    for case in 0..cases {
        let data = input(&mut rng, corpus);
        let t0 = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| decode(&data)));
        let took = t0.elapsed();
        match outcome {
            Ok(ok) => accepted += u64::from(ok),
            Err(_) => panic!(
                "{target}: decoder panicked on case {case} (replay with QUORATE_FUZZ_SEED={seed}); input {}",
                hex::encode(&data)
            ),
        }
        assert!(
            took < CASE_TIME_LIMIT,
            "{target}: case {case} took {took:?} (QUORATE_FUZZ_SEED={seed}); input {}",
            hex::encode(&data)
        );
    }
    let report = Report {
        target,
        cases,
        accepted,
        elapsed: started.elapsed(),
    };
    eprintln!(
        "fuzz {target}: {} cases, {} accepted, {:.2?}, seed {seed}",
        report.cases, report.accepted, report.elapsed
    );
    report
}
