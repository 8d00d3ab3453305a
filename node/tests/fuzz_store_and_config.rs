//! Fuzz targets and properties for what a node reads from its disk: sealed key
//! records (the AEAD envelope and the plaintext framing inside it) and its config
//! file. Smoke pass by default; `QUORATE_FUZZ_CASES=<n>` for long runs (see
//! docs/security.md).

#[path = "../../proto/fuzzing/mod.rs"]
mod fuzzing;

use quorate_frost::Ciphersuite;
use quorate_keys::manifest;
use quorate_node::store::{Kek, KeyRecord, KeyStore};
use quorate_node::{NodeConfig, NodeError};
use quorate_wire::pb;
use rand::Rng;

fn kek(byte: u8) -> Kek {
    Kek::from_hex(&hex::encode([byte; 32])).unwrap()
}

/// A real record: a 2-of-3 manifest and node-1's key package.
fn record(suite: Ciphersuite) -> KeyRecord {
    let names: Vec<String> = (1..=3).map(|i| format!("node-{i}")).collect();
    let mut dealt = suite.ops().split(None, &names, 2).unwrap();
    let manifest = manifest::encode(
        "k1",
        suite,
        2,
        dealt.public_key_package.clone(),
        names
            .iter()
            .map(|n| pb::ManifestParticipant {
                node_id: n.clone(),
                region: "r".into(),
                jurisdiction: "EU".into(),
            })
            .collect(),
        "2026-01-01T00:00:00Z".into(),
        None,
    );
    KeyRecord {
        manifest,
        key_package: dealt.key_packages.remove(0).1,
    }
}

#[test]
fn fuzz_sealed_key_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path(), kek(1)).unwrap();
    let corpus: Vec<Vec<u8>> = Ciphersuite::ALL
        .into_iter()
        .map(|s| store.seal_record("k1", &record(s)).unwrap())
        .collect();
    fuzzing::run(
        "sealed KeyRecord (open_record)",
        &corpus,
        fuzzing::cases(2000),
        |b| match store.open_record("k1", b) {
            // Authenticated encryption: only an unchanged record opens (a mutation
            // can leave the bytes as they were, e.g. a truncation at the end).
            Ok(_) => {
                assert!(
                    corpus.iter().any(|c| c == b),
                    "a modified sealed record opened"
                );
                true
            }
            Err(NodeError::Corrupt(_)) => false,
            Err(e) => panic!("a damaged record must be reported as corruption, got {e}"),
        },
    );
    // The plaintext framing inside the envelope.
    let plain: Vec<Vec<u8>> = Ciphersuite::ALL
        .into_iter()
        .map(|s| record(s).encode().to_vec())
        .collect();
    fuzzing::run("KeyRecord::decode", &plain, fuzzing::cases(20_000), |b| {
        KeyRecord::decode(b).is_ok()
    });
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

#[test]
fn fuzz_node_config_parsing() {
    let corpus = vec![r#"node_id = "node-1"
trust_domain = "quorate.test"
listen = "127.0.0.1:7001"
metrics_listen = "127.0.0.1:9001"
region = "eu-central-sov"
jurisdiction = "EU"
data_dir = "/nonexistent/data"
kek_file = "/nonexistent/kek.hex"
[tls]
ca = "/nonexistent/ca.pem"
cert = "/nonexistent/node.pem"
key = "/nonexistent/node.key"
[nonces]
max_outstanding = 1000
ttl_secs = 60
"#
    .as_bytes()
    .to_vec()];
    let kek_hex = hex::encode([9u8; 32]);
    // Every input is refused in the end (the TLS files do not exist); the property is
    // that parsing and validation fail cleanly as configuration errors.
    let report =
        fuzzing::run_expecting_errors("node config", &corpus, fuzzing::cases(20_000), |b| {
            let text = String::from_utf8_lossy(b);
            match NodeConfig::from_toml(&text, |v| (v == "QUORATE_KEK").then(|| kek_hex.clone())) {
                Ok(_) => true,
                Err(NodeError::Config(_)) => false,
                Err(e) => panic!("config errors must be NodeError::Config, got {e}"),
            }
        });
    assert_eq!(report.accepted, 0);
}
