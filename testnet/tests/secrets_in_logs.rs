//! Secrets never reach logs: run drills with debug logging, then look for every
//! node's signing share, in hex and in base64, in every log the drill left behind.

mod common;

use std::path::Path;
use std::process::Command;

use common::bin_dir;
use quorate_keys::manifest::Manifest;
use quorate_node::store::{Kek, KeyStore};

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every signing share (with the name of its node and key) in the stores under
/// `net_dir`, read with each node's KEK.
fn signing_shares(net_dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut shares = Vec::new();
    for entry in std::fs::read_dir(net_dir).unwrap() {
        let dir = entry.unwrap().path();
        let Some(node) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        if !node.starts_with("node-") {
            continue;
        }
        let kek =
            Kek::from_hex(std::fs::read_to_string(dir.join("kek.hex")).unwrap().trim()).unwrap();
        let store = KeyStore::open(&dir.join("data"), kek).unwrap();
        for (key_id, record) in store.load_all().unwrap() {
            let manifest = Manifest::decode(&record.manifest).unwrap();
            let share = manifest
                .ciphersuite
                .ops()
                .signing_share(&record.key_package)
                .unwrap();
            shares.push((format!("{node}/{key_id}"), share.expose_bytes().to_vec()));
        }
    }
    shares
}

#[test]
fn no_signing_share_appears_in_any_log_of_a_drill() {
    let work = tempfile::tempdir().unwrap();
    let net_dir = work.path().join("net");
    let out = Command::new(bin_dir().join("quorate-testnet"))
        .args([
            "drill",
            "--only",
            "kill-2-nodes",
            "--only",
            "wipe-and-repair",
            "--only",
            "malicious-signer",
            "--dir",
        ])
        .arg(&net_dir)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let drill_output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "drill failed:\n{drill_output}");

    let mut logs = vec![("drill output".to_string(), drill_output)];
    for entry in std::fs::read_dir(net_dir.join("logs")).unwrap() {
        let path = entry.unwrap().path();
        logs.push((
            path.display().to_string(),
            std::fs::read_to_string(&path).unwrap(),
        ));
    }
    assert!(
        logs.iter().map(|(_, l)| l.len()).sum::<usize>() > 10_000,
        "the drill should have logged plenty"
    );

    let shares = signing_shares(&net_dir);
    assert!(
        shares.len() >= 5 * 4,
        "expected every node's share of every key, got {}",
        shares.len()
    );
    for (whose, share) in &shares {
        let needles = [hex::encode(share), hex::encode_upper(share), base64(share)];
        for (name, text) in &logs {
            for needle in &needles {
                assert!(
                    !text.contains(needle.as_str()),
                    "{whose}'s signing share is in {name}"
                );
            }
        }
    }
}

#[test]
fn the_base64_helper_matches_the_standard_alphabet() {
    assert_eq!(base64(b"Man"), "TWFu");
    assert_eq!(base64(b"Ma"), "TWE=");
    assert_eq!(base64(b"M"), "TQ==");
}
