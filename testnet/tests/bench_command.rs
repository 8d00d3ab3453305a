//! `quorate-testnet bench --json` as other programs read it: the last line of its
//! output is one JSON object with the contract fields (docs/benchmarks.md), from a real run
//! against a local network.

mod common;

use std::process::Command;

use common::bin_dir;

#[test]
fn bench_json_reports_a_real_run_with_the_contracted_fields() {
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(bin_dir().join("quorate-testnet"))
        .args([
            "bench",
            "--nodes",
            "3",
            "--threshold",
            "2",
            "--clients",
            "2",
        ])
        .args(["--duration", "2", "--warmup", "1", "--verify-every", "1"])
        .args(["--ciphersuite", "ed25519", "--json", "--dir"])
        .arg(work.path().join("net"))
        .arg("--bin-dir")
        .arg(bin_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().expect("bench printed nothing");
    let v: serde_json::Value = serde_json::from_str(last).expect("the last line is JSON");
    let num = |field: &str| {
        v[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} is missing or not a number in {v}"))
    };

    // The contract: at least these, `ratio` = throughput_sps / limit_sps.
    let (throughput, limit, ratio) = (num("throughput_sps"), num("limit_sps"), num("ratio"));
    assert!(throughput > 0.0 && limit > 0.0, "{v}");
    assert!((ratio - throughput / limit).abs() < 1e-9, "{v}");
    assert!(num("p50_ms") > 0.0 && num("p99_ms") >= num("p50_ms"), "{v}");

    // Every signature succeeded, and every one was checked by an independent
    // verifier (`--verify-every 1`).
    assert_eq!(v["errors"], serde_json::json!({}), "{v}");
    assert_eq!(v["invalid_signatures"], 0, "{v}");
    assert_eq!(v["verified"], v["ok"], "{v}");
    assert!(v["ok"].as_u64().unwrap() > 0, "{v}");

    // The concurrency-1 target is derived from the same run's baseline.
    let target = num("compute_ms") + 1.5 * num("rtt_ms");
    assert!(num("rtt_ms") > 0.0, "{v}");
    assert!((num("latency_target_ms") - target).abs() < 1e-9, "{v}");
    assert!(
        (num("p50_vs_target") - num("p50_ms") / target).abs() < 1e-9,
        "{v}"
    );

    // The nodes' own timings, read from their metrics over the measured load (each
    // share waited for an fdatasync of its audit record).
    for field in ["node_share_ms", "audit_flush_ms", "audit_records_per_flush"] {
        assert!(num(field) > 0.0, "{field}: {v}");
    }

    // Peak memory of every process of the network.
    let rss = v["peak_rss_mib"].as_object().expect("peak_rss_mib");
    let mut names: Vec<&str> = rss.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["coordinator", "node-1", "node-2", "node-3"], "{v}");
    assert!(rss.values().all(|m| m.as_f64().unwrap() > 0.0), "{v}");

    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "{v}");
    assert_eq!(results[0]["ciphersuite"], "ED25519", "{v}");
}
