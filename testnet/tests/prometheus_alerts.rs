//! The alert rules of deploy/prometheus/alerts.yml against a real Prometheus server
//! scraping a real local network: two nodes are killed, and Prometheus's own API
//! must report the node-down and key-at-threshold alerts firing.
//!
//! Needs the `prometheus` binary (Debian's `prometheus` package; `QUORATE_PROMETHEUS`
//! names another). Without it the test says so loudly and passes: CI installs it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::start_default;
use quorate_testnet::network::lease_port;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The rules exactly as shipped: the test loads the file itself, `for:` durations
/// included.
const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/prometheus/alerts.yml"
);

/// How long the alerts may take to fire: the longest `for:` the test waits on is 30 s.
const FIRE_WITHIN: Duration = Duration::from_secs(120);

fn prometheus_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("QUORATE_PROMETHEUS") {
        return Some(PathBuf::from(path));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("prometheus"))
        .find(|path| path.is_file())
}

/// `GET path` from the server at `addr`: the body of a 200 answer. HTTP/1.0, so
/// that the answer is neither chunked nor kept alive.
async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    match response.split_once("\r\n\r\n") {
        Some((head, body))
            if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") =>
        {
            Ok(body.to_string())
        }
        _ => anyhow::bail!(
            "{addr}{path}: {:?}",
            response.lines().next().unwrap_or("no answer")
        ),
    }
}

/// The `data` of a Prometheus API answer at `path`.
async fn api(addr: &str, path: &str) -> anyhow::Result<Value> {
    let body: Value = serde_json::from_str(&http_get(addr, path).await?)?;
    anyhow::ensure!(body["status"] == "success", "{path}: {body}");
    Ok(body["data"].clone())
}

/// The firing alerts named `name`, as label maps.
fn firing<'a>(alerts: &'a Value, name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    alerts["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |a| a["labels"]["alertname"] == name && a["state"] == "firing")
        .map(|a| &a["labels"])
}

/// A Prometheus config scraping every node and the coordinator over plain HTTP
/// (their metrics endpoints serve no TLS), every second, with the rules evaluated
/// every second.
fn prometheus_config(nodes: &[String], coordinators: &[String], rules: &Path) -> String {
    let targets = |addrs: &[String]| {
        addrs
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
         rule_files:\n  - '{}'\n\
         scrape_configs:\n\
         \x20 - job_name: quorate-node\n    scheme: http\n    static_configs:\n      - targets: [{}]\n\
         \x20 - job_name: quorate-coordinator\n    scheme: http\n    static_configs:\n      - targets: [{}]\n",
        rules.display(),
        targets(nodes),
        targets(coordinators),
    )
}

#[tokio::test]
async fn prometheus_fires_node_down_and_key_at_threshold_when_two_nodes_die() {
    let Some(prometheus) = prometheus_binary() else {
        eprintln!(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             SKIPPED: no `prometheus` binary on PATH (apt-get install prometheus, or set\n\
             QUORATE_PROMETHEUS): the alert rules were NOT tested against Prometheus.\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        );
        return;
    };
    let mut net = start_default().await;
    let node_metrics: Vec<String> = net.nodes.iter().map(|n| n.metrics.clone()).collect();
    let coordinator_metrics = vec![net.coordinator_metrics.clone()];

    let dir = net.dir.path().join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("alerts.yml");
    std::fs::copy(RULES, &rules).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        prometheus_config(&node_metrics, &coordinator_metrics, &rules),
    )
    .unwrap();
    let port = lease_port().unwrap();
    let addr = format!("127.0.0.1:{}", port.port);
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let mut server = tokio::process::Command::new(&prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus starts");
    let log_tail = || {
        let text = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };

    // Before the failure: every target is scraped, every key is known with all
    // five holders reachable, and nothing fires.
    let started = Instant::now();
    let holders = loop {
        let up = api(&addr, "/api/v1/query?query=up").await;
        let holders = api(
            &addr,
            "/api/v1/query?query=quorate_coordinator_key_reachable_holders",
        )
        .await;
        if let (Ok(up), Ok(holders)) = (up, holders) {
            let up: Vec<&Value> = up["result"].as_array().into_iter().flatten().collect();
            let all_up =
                up.len() == node_metrics.len() + 1 && up.iter().all(|s| s["value"][1] == "1");
            let known = holders["result"].as_array().map_or(0, Vec::len);
            if all_up && known == net.spec.keys.len() {
                break holders;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Prometheus never saw every target up and every key; its log:\n{}",
            log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for series in holders["result"].as_array().unwrap() {
        assert_eq!(series["value"][1], "5", "before the failure: {series}");
    }
    let alerts = api(&addr, "/api/v1/alerts").await.unwrap();
    assert_eq!(
        alerts["alerts"].as_array().map_or(0, Vec::len),
        0,
        "alerts before any failure: {alerts}"
    );

    net.kill_node("node-1").await.unwrap();
    net.kill_node("node-2").await.unwrap();
    let mut killed: Vec<String> = ["node-1", "node-2"]
        .iter()
        .map(|id| net.node(id).unwrap().metrics.clone())
        .collect();
    killed.sort();

    let killed_at = Instant::now();
    let alerts = loop {
        let alerts = api(&addr, "/api/v1/alerts").await.unwrap();
        let mut down: Vec<String> = firing(&alerts, "QuorateNodeDown")
            .map(|l| l["instance"].as_str().unwrap_or_default().to_string())
            .collect();
        down.sort();
        let mut at_risk: Vec<String> = firing(&alerts, "QuorateKeyOneFailureFromOutage")
            .map(|l| l["key_id"].as_str().unwrap_or_default().to_string())
            .collect();
        at_risk.sort();
        if down == killed && at_risk.len() == net.spec.keys.len() {
            break alerts;
        }
        assert!(
            killed_at.elapsed() < FIRE_WITHIN,
            "after {:?}: node down for {down:?} (want {killed:?}), key at risk for \
             {at_risk:?} (want every key); alerts: {alerts}\nPrometheus log:\n{}",
            killed_at.elapsed(),
            log_tail()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    eprintln!(
        "node-down and key-at-risk alerts fired {:?} after two nodes were killed",
        killed_at.elapsed()
    );

    // Each key's alert names it, and three of five holders (t = 3) is no fewer than
    // t: the key can still sign, so the cannot-sign alert stays quiet.
    let mut keys: Vec<&str> = firing(&alerts, "QuorateKeyOneFailureFromOutage")
        .map(|l| l["key_id"].as_str().unwrap())
        .collect();
    keys.sort();
    let mut want: Vec<&str> = net.spec.keys.iter().map(|k| k.key_id.as_str()).collect();
    want.sort();
    assert_eq!(keys, want);
    assert_eq!(
        firing(&alerts, "QuorateKeyCannotSign").count(),
        0,
        "{alerts}"
    );
    let reachable = api(
        &addr,
        "/api/v1/query?query=quorate_coordinator_key_reachable_holders",
    )
    .await
    .unwrap();
    for series in reachable["result"].as_array().unwrap() {
        assert_eq!(series["value"][1], "3", "after the failure: {series}");
    }
    // The coordinator is still scraped: only the two nodes are down.
    assert_eq!(firing(&alerts, "QuorateCoordinatorDown").count(), 0);

    server.kill().await.ok();
    net.stop().await.unwrap();
}
