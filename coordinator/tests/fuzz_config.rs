//! The stable driver's pass over the fuzz target of the coordinator's config parsing
//! and validation (`fuzz/src/coordinator.rs`), the same target the libFuzzer binary
//! in `fuzz/` runs. Smoke pass by default; `QUORATE_FUZZ_CASES=<n>` for more,
//! `cargo fuzz` for long runs (see docs/security.md).

#[path = "../../fuzz/src/coordinator.rs"]
mod coordinator;
#[path = "../../proto/fuzzing/mod.rs"]
mod fuzzing;
#[path = "../../fuzz/src/target.rs"]
mod target;

/// Every input is refused in the end (the TLS files do not exist): the property is
/// that parsing and validation fail cleanly as configuration errors.
#[test]
fn fuzz_coordinator_config_parsing() {
    let t = coordinator::target("coordinator_config").unwrap();
    let report = fuzzing::run(
        t.name,
        &t.corpus,
        t.must_accept,
        fuzzing::cases(t.smoke_cases),
        &t.check,
    );
    assert_eq!(report.accepted, 0);
}

/// See `proto/keys/tests/fuzz_decoders.rs`.
#[test]
fn seed_corpus_is_committed_and_still_valid() {
    for name in coordinator::NAMES {
        let t = coordinator::target(name).unwrap();
        if std::env::var_os("QUORATE_WRITE_SEED_CORPUS").is_some() {
            target::write_seed_corpus(&t).unwrap();
        }
        target::check_committed_seeds(&t).unwrap();
    }
}
