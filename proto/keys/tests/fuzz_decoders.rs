//! The stable driver's pass over the fuzz targets of the shared layers' decoders
//! (`fuzz/src/shared.rs`: protobuf requests into domain types, FROST packages of all
//! three ciphersuites, key manifests, approval tokens, escrow part files, audit
//! records and checkpoints), the same targets the libFuzzer binaries in `fuzz/` run.
//!
//! Property: no panic, no hang, a clean `Err` for what does not decode, every valid
//! corpus entry accepted, and nothing forged verifies. The default is a quick smoke
//! pass run by every `cargo nextest run`; long runs are coverage-guided, with
//! `cargo fuzz` (docs/security.md).

#[path = "../../fuzzing/mod.rs"]
mod fuzzing;
#[path = "../../../fuzz/src/shared.rs"]
mod shared;
#[path = "../../../fuzz/src/target.rs"]
mod target;

use quorate_frost::Ciphersuite;

/// One test per target, so nextest runs them in parallel, and the list of them.
macro_rules! each_target {
    ($($name:ident),* $(,)?) => {
        mod each_target {
            $(
                #[test]
                fn $name() {
                    let t = crate::shared::target(stringify!($name)).unwrap();
                    crate::fuzzing::run(
                        t.name,
                        &t.corpus,
                        t.must_accept,
                        crate::fuzzing::cases(t.smoke_cases),
                        &t.check,
                    );
                }
            )*
        }
        const TESTED: &[&str] = &[$(stringify!($name)),*];
    };
}

each_target!(
    sign_intent_body,
    sign_request,
    commit_request,
    sign_share_request,
    install_key_request,
    escrow_split_request,
    read_audit_request,
    get_manifest_request,
    frost_received_commitments,
    frost_commitments,
    frost_identifier,
    frost_signature_share,
    frost_key_package,
    frost_public_key_package,
    frost_signature,
    frost_public_key,
    key_manifest,
    approval_token,
    approval_revocation,
    administrator_authorization,
    escrow_part,
    audit_record,
    audit_checkpoint,
    audit_cosignature,
);

#[test]
fn every_target_has_a_stable_test() {
    assert_eq!(TESTED, shared::NAMES);
}

/// The committed seed corpus (`fuzz/corpus/<target>/`) matches the targets: one
/// libFuzzer binary and one seed per corpus entry for each, and the seeds that must
/// decode still do. `QUORATE_WRITE_SEED_CORPUS=1` writes the seeds afresh first.
#[test]
fn seed_corpus_is_committed_and_still_valid() {
    for name in shared::NAMES {
        let t = shared::target(name).unwrap();
        if std::env::var_os("QUORATE_WRITE_SEED_CORPUS").is_some() {
            target::write_seed_corpus(&t).unwrap();
        }
        target::check_committed_seeds(&t).unwrap();
    }
}

/// The FROST targets also start from the other ciphersuites' encodings; an Ed25519
/// commitment read as secp256k1 (or the reverse) must be refused, not misread.
#[test]
fn received_commitments_of_another_ciphersuite_are_refused() {
    let rounds = shared::rounds();
    for r in &rounds {
        for other in rounds.iter().filter(|o| o.suite != r.suite) {
            if r.suite == Ciphersuite::Ed25519 || other.suite == Ciphersuite::Ed25519 {
                for c in &other.commitments {
                    assert!(
                        !shared::receive_other_commitments(r, c),
                        "{} accepted {} commitments",
                        r.suite,
                        other.suite
                    );
                }
            }
        }
    }
}
