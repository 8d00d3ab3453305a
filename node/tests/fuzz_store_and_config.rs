//! The stable driver's pass over the fuzz targets of what a node reads from its disk
//! (`fuzz/src/node.rs`: sealed key records, the plaintext framing inside them, the
//! config file), the same targets the libFuzzer binaries in `fuzz/` run, and
//! properties of sealed records. Smoke pass by default; `QUORATE_FUZZ_CASES=<n>` for
//! more, `cargo fuzz` for long runs (see docs/security.md).

#[path = "../../proto/fuzzing/mod.rs"]
mod fuzzing;
#[path = "../../fuzz/src/node.rs"]
mod node;
#[path = "../../fuzz/src/target.rs"]
mod target;

use node::{kek, record};
use quorate_frost::Ciphersuite;
use quorate_node::store::{KeyRecord, KeyStore};
use quorate_node::NodeError;
use rand::Rng;

fn run(name: &str) -> fuzzing::Report {
    let t = node::target(name).unwrap();
    fuzzing::run(
        t.name,
        &t.corpus,
        t.must_accept,
        fuzzing::cases(t.smoke_cases),
        &t.check,
    )
}

#[test]
fn fuzz_sealed_key_records() {
    run("sealed_key_record");
}

#[test]
fn fuzz_key_record_decode() {
    run("key_record");
}

/// Every input is refused in the end (the TLS files do not exist): the property is
/// that parsing and validation fail cleanly as configuration errors.
#[test]
fn fuzz_node_config_parsing() {
    assert_eq!(run("node_config").accepted, 0);
}

/// See `proto/keys/tests/fuzz_decoders.rs`.
#[test]
fn seed_corpus_is_committed_and_still_valid() {
    for name in node::NAMES {
        let t = node::target(name).unwrap();
        if std::env::var_os("QUORATE_WRITE_SEED_CORPUS").is_some() {
            target::write_seed_corpus(&t).unwrap();
        }
        target::check_committed_seeds(&t).unwrap();
    }
}

#[test]
fn sealed_key_records_round_trip_for_every_ciphersuite() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path(), kek(3)).unwrap();
    for suite in Ciphersuite::ALL {
        let r = record(suite);
        let sealed = store.seal_record("k1", &r).unwrap();
        let back = store.open_record("k1", &sealed).unwrap();
        assert_eq!(back.manifest, r.manifest);
        assert_eq!(
            back.key_package.expose_bytes(),
            r.key_package.expose_bytes()
        );
        let plain = KeyRecord::decode(&r.encode()).unwrap();
        assert_eq!(plain.manifest, r.manifest);
        // Bound to the key id: the same bytes under another id do not open.
        assert!(matches!(
            store.open_record("k2", &sealed),
            Err(NodeError::Corrupt(_))
        ));
    }
}

#[test]
fn every_single_bit_flip_of_a_sealed_share_record_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path(), kek(4)).unwrap();
    let sealed = store
        .seal_record("k1", &record(Ciphersuite::Ed25519))
        .unwrap();
    let mut flips = 0;
    for byte in 0..sealed.len() {
        for bit in 0..8 {
            let mut damaged = sealed.clone();
            damaged[byte] ^= 1 << bit;
            let result = store.open_record("k1", &damaged);
            assert!(
                matches!(result, Err(NodeError::Corrupt(_))),
                "flip of bit {bit} in byte {byte} was not detected"
            );
            flips += 1;
        }
    }
    assert_eq!(flips, sealed.len() * 8);
}

#[test]
fn a_bit_flipped_record_on_disk_stops_the_store_from_loading() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fuzzing::rng(fuzzing::seed());
    {
        let store = KeyStore::open(dir.path(), kek(5)).unwrap();
        store
            .insert_new("k1", &record(Ciphersuite::Secp256k1Tr))
            .unwrap();
        let keys = store.db().open_tree("keys").unwrap();
        let mut value = keys.get("k1").unwrap().unwrap().to_vec();
        let i = rng.gen_range(0..value.len());
        value[i] ^= 1 << rng.gen_range(0..8);
        keys.insert("k1", value).unwrap();
        store.db().flush().unwrap();
    }
    // sled releases its file lock from background threads shortly after the last
    // handle is dropped; an in-process reopen may have to wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let store = loop {
        match KeyStore::open(dir.path(), kek(5)) {
            Err(NodeError::Storage(m))
                if m.contains("could not acquire lock") && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => break other.unwrap(),
        }
    };
    let err = store.load_all().unwrap_err();
    assert!(
        matches!(&err, NodeError::Corrupt(m) if m.contains("k1")),
        "{err}"
    );
}
