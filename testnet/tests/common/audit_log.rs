//! A node's audit log as its operator sees it on disk, for the tests that doctor
//! logs (audit_history, audit_witness): read, written back, records changed with
//! the hash chain recomputed; and the demo signatures that fill it.

use std::path::{Path, PathBuf};

use quorate_keys::audit::{verify_chain, AuditRecord};
use quorate_testnet::network::LocalNetwork;

use super::DEADLINE;

/// Node `node_id`'s `audit.log` and its lines.
pub fn log_lines(net: &LocalNetwork, node_id: &str) -> (PathBuf, Vec<String>) {
    let path = quorate_node::audit::log_path(&net.node(node_id).unwrap().data_dir);
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text.lines().map(str::to_string).collect())
}

/// Node `node_id`'s audit records, parsed.
pub fn records_of(net: &LocalNetwork, node_id: &str) -> Vec<AuditRecord> {
    let (_, lines) = log_lines(net, node_id);
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Writes `lines` as the log at `path`.
pub fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Changes record `at` and seals it and every later record again, so the hash
/// chain checks: what an operator who rewrites history would do.
pub fn rewrite_and_rechain(lines: &mut Vec<String>, at: usize) {
    edit_and_rechain(lines, |records| {
        records[at].detail = "nothing happened here".into();
    });
}

/// Applies `edit` to the records (changing, removing or adding any) and seals them
/// all again in order, so the hash chain checks.
pub fn edit_and_rechain(lines: &mut Vec<String>, edit: impl FnOnce(&mut Vec<AuditRecord>)) {
    let mut records: Vec<AuditRecord> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    edit(&mut records);
    let mut prev = quorate_keys::audit::GENESIS_HASH.to_string();
    *lines = records
        .into_iter()
        .enumerate()
        .map(|(i, record)| {
            let sealed = record.seal(i as u64, &prev);
            prev = sealed.hash.clone();
            serde_json::to_string(&sealed).unwrap()
        })
        .collect();
    let chain = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u64, l.clone().into_bytes()));
    assert!(verify_chain(chain).is_ok(), "the rewritten chain checks");
}

/// `n` signatures with `demo-ed25519` of messages `<tag><i>`.
pub async fn sign(net: &LocalNetwork, tag: &str, n: usize) {
    let client = net.client().await.unwrap();
    for i in 0..n {
        client
            .sign(
                "demo-ed25519",
                format!("{tag}{i}").as_bytes(),
                None,
                DEADLINE,
            )
            .await
            .unwrap();
    }
}
