//! deploy/grafana/quorate.json and deploy/prometheus/alerts.yml read only metrics
//! that the node and the coordinator export: a renamed metric would otherwise leave
//! a panel or an alert silently empty.

use std::collections::BTreeSet;

use quorate_coordinator::metric as coordinator;
use quorate_node::metrics as node;

const DASHBOARD: &str = include_str!("../../deploy/grafana/quorate.json");
const ALERTS: &str = include_str!("../../deploy/prometheus/alerts.yml");

/// Every metric name exported, with a histogram's `_bucket`, `_sum` and `_count`.
fn exported() -> BTreeSet<String> {
    let histograms = [
        coordinator::SIGN_LATENCY,
        node::SIGN_LATENCY,
        node::AUDIT_FLUSH_SECONDS,
    ];
    let others = [
        coordinator::REQUESTS,
        coordinator::ERRORS,
        coordinator::RETRIES,
        coordinator::CULPRITS,
        coordinator::POLICY_DENIALS,
        coordinator::FAILOVERS,
        coordinator::ONE_ROUND,
        coordinator::POOLED_COMMITMENTS,
        coordinator::NODE_AVAILABLE,
        coordinator::SHARE_CALLS,
        coordinator::SHARE_REQUESTS,
        coordinator::KEY_THRESHOLD,
        coordinator::KEY_REACHABLE_HOLDERS,
        coordinator::CLIENT_SIGN_REQUESTS,
        coordinator::CERTIFICATE_NOT_AFTER,
        node::REQUESTS,
        node::ERRORS,
        node::NONCE_POOL,
        node::POLICY_DENIALS,
        node::FAILOVERS,
        node::KEYS,
        node::AUDIT_RECORDS,
        node::AUDIT_LOG_BROKEN,
        node::CERTIFICATE_NOT_AFTER,
        node::KEK_PROVIDERS_UNAVAILABLE,
        node::WITNESS_INCONSISTENT,
        node::WITNESS_LAST_CHECKED,
        node::WITNESS_CHECKS,
        quorate_transport::tls_reload::RELOADS,
        quorate_transport::tls_reload::RELOAD_FAILURES,
    ];
    histograms
        .iter()
        .flat_map(|h| ["_bucket", "_sum", "_count"].map(|s| format!("{h}{s}")))
        .chain(others.iter().map(|m| m.to_string()))
        .collect()
}

/// The `quorate_*` metric names in `text` (a name ends at the first character that
/// cannot be part of one; the regex `quorate_(node|coordinator)_certificate_...`
/// selector is expanded by the caller).
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("quorate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

fn unknown(text: &str) -> Vec<String> {
    let exported = exported();
    let expanded = text.replace(
        "quorate_(node|coordinator)_certificate_not_after_seconds",
        &format!(
            "{} {}",
            node::CERTIFICATE_NOT_AFTER,
            coordinator::CERTIFICATE_NOT_AFTER
        ),
    );
    names_in(&expanded)
        .into_iter()
        .filter(|n| !exported.contains(n))
        .collect()
}

#[test]
fn grafana_dashboard_is_json_and_queries_only_exported_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(DASHBOARD).expect("the dashboard is valid JSON");
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| t["expr"].as_str().expect("every target has an expr"))
        .collect();
    assert!(exprs.len() >= 10, "{} queries", exprs.len());
    for expr in &exprs {
        assert!(expr.contains("quorate_") || expr.contains("up{"), "{expr}");
    }
    let unknown = unknown(&exprs.join("\n"));
    assert!(
        unknown.is_empty(),
        "the dashboard reads unexported {unknown:?}"
    );
}

#[test]
fn alert_rules_read_only_exported_metrics() {
    // The rules name `quorate_coordinator_key_threshold` in a description too; a
    // name is a name wherever it is written.
    let unknown = unknown(ALERTS);
    assert!(
        unknown.is_empty(),
        "the alert rules read unexported {unknown:?}"
    );
}
