//! Fuzz targets for what a node reads from its disk: sealed key records (the AEAD
//! envelope and the plaintext framing inside it) and its config file.

#![allow(dead_code)]

use quorate_frost::Ciphersuite;
use quorate_keys::manifest;
use quorate_node::store::{Kek, KeyRecord, KeyStore};
use quorate_node::{NodeConfig, NodeError};
use quorate_wire::pb;

use crate::target::{committed_valid_seeds, Target, CHEAP, CRYPTO};

/// Every target of this module, by name.
pub const NAMES: &[&str] = &["sealed_key_record", "key_record", "node_config"];

/// The target called `name`, with a freshly built context and corpus.
pub fn target(name: &str) -> Option<Target> {
    Some(match name {
        "sealed_key_record" => sealed_key_record(),
        "key_record" => key_record(),
        "node_config" => node_config(),
        _ => return None,
    })
}

pub fn kek(byte: u8) -> Kek {
    Kek::from_hex(&hex::encode([byte; 32])).unwrap()
}

/// A real record: a 2-of-3 manifest and node-1's key package.
pub fn record(suite: Ciphersuite) -> KeyRecord {
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

/// Sealed records as read from the store, under a fixed KEK and key id.
/// Authenticated encryption: only an unchanged record opens, and anything else is
/// reported as corruption. Records are sealed under the store's data-encryption key,
/// which is drawn fresh for every new store, so committed seeds keep the shape of a
/// real record but no longer open: like an attacker editing a disk without the key.
fn sealed_key_record() -> Target {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path(), kek(1)).unwrap();
    let corpus: Vec<Vec<u8>> = Ciphersuite::ALL
        .into_iter()
        .map(|s| store.seal_record("k1", &record(s)).unwrap())
        .collect();
    let mut originals = corpus.clone();
    originals.extend(committed_valid_seeds("sealed_key_record"));
    Target {
        name: "sealed_key_record",
        must_accept: corpus.len(),
        corpus,
        seeds_stay_valid: false,
        smoke_cases: CRYPTO,
        check: Box::new(move |b| {
            // The store's directory lives as long as the target.
            let _ = &dir;
            match store.open_record("k1", b) {
                // A mutation can leave the bytes as they were (a truncation at the
                // end).
                Ok(_) => {
                    assert!(
                        originals.iter().any(|c| c == b),
                        "a modified sealed record opened"
                    );
                    true
                }
                Err(NodeError::Corrupt(_)) => false,
                Err(e) => panic!("a damaged record must be reported as corruption, got {e}"),
            }
        }),
    }
}

/// The plaintext framing inside the envelope.
fn key_record() -> Target {
    let corpus: Vec<Vec<u8>> = Ciphersuite::ALL
        .into_iter()
        .map(|s| record(s).encode().to_vec())
        .collect();
    Target {
        name: "key_record",
        must_accept: corpus.len(),
        corpus,
        seeds_stay_valid: true,
        smoke_cases: CHEAP,
        check: Box::new(|b| KeyRecord::decode(b).is_ok()),
    }
}

/// The node's config file, parsed and validated. Every input is refused in the end
/// (the TLS files do not exist); the property is that parsing and validation fail
/// cleanly as configuration errors.
fn node_config() -> Target {
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
    Target {
        name: "node_config",
        corpus,
        must_accept: 0,
        seeds_stay_valid: true,
        smoke_cases: CHEAP,
        check: Box::new(move |b| {
            let text = String::from_utf8_lossy(b);
            match NodeConfig::from_toml(&text, |v| (v == "QUORATE_KEK").then(|| kek_hex.clone())) {
                Ok(_) => true,
                Err(NodeError::Config(_)) => false,
                Err(e) => panic!("config errors must be NodeError::Config, got {e}"),
            }
        }),
    }
}
