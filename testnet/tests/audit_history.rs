//! Audit logs an auditor can hold to their history, over real node processes: a
//! node's log is checked against its signed checkpoint and against the checkpoint
//! the auditor saved last time (`quorate-ceremony audit verify --state`). A node
//! stopped and its log truncated, rewritten with the chain recomputed, or deleted,
//! then restarted and signing again, fails the next audit naming the node with
//! the documented exit code; an honest node whose log grew verifies.

mod common;

use std::path::Path;
use std::process::Output;

use common::{bin_dir, start_default, DEADLINE};
use quorate_keys::audit::{verify_chain, AuditRecord};
use quorate_testnet::network::LocalNetwork;
use quorate_transport::identity::Role;

fn audit_verify(net: &LocalNetwork, node_id: &str, state: &Path) -> Output {
    let tls = net.issue(Role::Auditor, "auditor").unwrap();
    std::process::Command::new(bin_dir().join("quorate-ceremony"))
        .args(["audit", "verify", "--node", node_id, "--endpoint"])
        .arg(&net.node(node_id).unwrap().endpoint)
        .arg("--ca")
        .arg(&tls.ca)
        .arg("--cert")
        .arg(&tls.cert)
        .arg("--key")
        .arg(&tls.key)
        .arg("--state")
        .arg(state)
        .output()
        .unwrap()
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn log_lines(net: &LocalNetwork, node_id: &str) -> (std::path::PathBuf, Vec<String>) {
    let path = quorate_node::audit::log_path(&net.node(node_id).unwrap().data_dir);
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text.lines().map(str::to_string).collect())
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Changes record `at` and seals it and every later record again, so the hash
/// chain checks: what an operator who rewrites history would do.
fn rewrite_and_rechain(lines: &mut [String], at: usize) {
    let mut records: Vec<AuditRecord> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    records[at].detail = "nothing happened here".into();
    for i in at..records.len() {
        let prev = if i == 0 {
            quorate_keys::audit::GENESIS_HASH.to_string()
        } else {
            records[i - 1].hash.clone()
        };
        records[i] = records[i].clone().seal(i as u64, &prev);
    }
    for (line, record) in lines.iter_mut().zip(&records) {
        *line = serde_json::to_string(record).unwrap();
    }
    let chain = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u64, l.clone().into_bytes()));
    assert!(verify_chain(chain).is_ok(), "the rewritten chain checks");
}

async fn sign(net: &LocalNetwork, tag: &str, n: usize) {
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

#[tokio::test]
async fn truncated_rewritten_and_deleted_logs_fail_the_next_audit_and_a_grown_one_verifies() {
    let mut net = start_default().await;
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().join("audit-state.json");
    sign(&net, "first", 2).await;
    for node in ["node-1", "node-2", "node-3", "node-4"] {
        let out = audit_verify(&net, node, &state);
        assert!(out.status.success(), "{node}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("signed checkpoint of"),
            "{}",
            show(&out)
        );
    }
    // With node-4 and node-5 down, node-1, node-2 and node-3 sign every message:
    // their logs grow, and the next audit proves the growth consistent.
    net.stop_node("node-4").await.unwrap();
    net.stop_node("node-5").await.unwrap();
    sign(&net, "before", 6).await;
    for node in ["node-1", "node-2", "node-3"] {
        let out = audit_verify(&net, node, &state);
        assert!(out.status.success(), "{node}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("consistent with the checkpoint of"),
            "{}",
            show(&out)
        );
    }
    let saved = std::fs::read_to_string(&state).unwrap();

    // node-1 loses its last three records, node-2 gets record 2 rewritten with its
    // chain recomputed, node-3 loses its log; each while stopped.
    for node in ["node-1", "node-2", "node-3"] {
        net.stop_node(node).await.unwrap();
    }
    let (path, mut lines) = log_lines(&net, "node-1");
    assert!(lines.len() > 6, "node-1 has {} records", lines.len());
    lines.truncate(lines.len() - 3);
    write_lines(&path, &lines);
    let (path, mut lines) = log_lines(&net, "node-2");
    assert!(lines.len() > 6, "node-2 has {} records", lines.len());
    rewrite_and_rechain(&mut lines, 2);
    write_lines(&path, &lines);
    let (path, _) = log_lines(&net, "node-3");
    std::fs::remove_file(&path).unwrap();

    // With node-3 and node-5 down, node-1, node-2 and node-4 sign every message.
    net.start_node("node-1").await.unwrap();
    net.start_node("node-2").await.unwrap();
    net.start_node("node-4").await.unwrap();
    sign(&net, "after", 4).await;
    let honest = audit_verify(&net, "node-4", &state);
    assert!(honest.status.success(), "{}", show(&honest));
    assert!(
        String::from_utf8_lossy(&honest.stdout).contains("consistent with the checkpoint of"),
        "{}",
        show(&honest)
    );
    // And node-3 signs again in a new log: node-4 stops so it must.
    net.start_node("node-3").await.unwrap();
    net.stop_node("node-4").await.unwrap();
    sign(&net, "later", 2).await;

    for (node, code, says) in [
        ("node-1", 10, "truncated"),
        ("node-2", 11, "rewritten"),
        ("node-3", 13, "deleted"),
    ] {
        let out = audit_verify(&net, node, &state);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{node}: {}", show(&out));
        assert!(
            stderr.contains(&format!("{node}: its audit log was {says}")),
            "{}",
            show(&out)
        );
    }
    // A failed audit leaves the saved checkpoints as they were (node-4's moved on):
    // the next run still compares with what was verified, and fails again.
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let before: serde_json::Value = serde_json::from_str(&saved).unwrap();
    for node in ["node-1", "node-2", "node-3"] {
        assert_eq!(after["nodes"][node], before["nodes"][node], "{node}");
    }
    assert_ne!(after["nodes"]["node-4"], before["nodes"]["node-4"]);
    assert_eq!(audit_verify(&net, "node-1", &state).status.code(), Some(10));
}
