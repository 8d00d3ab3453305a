//! The bench's output: a table for people and one JSON line (`--json`) for
//! scripts, from the [`SuiteResult`] of each ciphersuite.

use anyhow::Context;

use super::result::SuiteResult;

/// A human-readable table of results.
pub fn table(results: &[SuiteResult]) -> String {
    let mut out = String::new();
    out.push_str("ciphersuite   t/n   clients  throughput   limit    ratio   p50 ms  p90 ms  p99 ms  max ms  cpu ms/sig  errors  invalid\n");
    for r in results {
        let errors: u64 = r.errors.values().sum();
        out.push_str(&format!(
            "{:<13} {}/{:<3} {:>7}  {:>8.0}/s {:>6.0}/s  {:>5.2}  {:>6.2}  {:>6.2}  {:>6.2}  {:>6.1}  {:>10.2}  {:>6}  {:>7}\n",
            r.ciphersuite, r.threshold, r.nodes, r.clients, r.throughput_sps, r.limit_sps, r.ratio,
            r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms, r.cpu_ms_per_signature, errors, r.invalid_signatures
        ));
    }
    for r in results {
        out.push_str(&format!(
            "{}: one signature in process {:.2} ms (limit), {:.2} ms with one shared signing package (bare {:.0}/s, ratio {:.2})\n",
            r.ciphersuite, r.compute_ms, r.bare_compute_ms, r.bare_limit_sps, r.bare_ratio
        ));
        out.push_str(&format!(
            "{}: signed intents {:.3} ms per signature (signed once, verified {} times); limit with them {:.0}/s, ratio {:.2}\n",
            r.ciphersuite, r.intent_ms, r.threshold + 1, r.intent_limit_sps, r.intent_ratio
        ));
        out.push_str(&format!(
            "{}: loopback mTLS round trip {:.3} ms\n",
            r.ciphersuite, r.rtt_ms
        ));
        if let (Some(share), Some(flush), Some(per_flush)) =
            (r.node_share_ms, r.audit_flush_ms, r.audit_records_per_flush)
        {
            out.push_str(&format!(
                "{}: on the nodes, a share took {share:.3} ms from when its request was taken up until it could leave with its audit record on disk; an audit fdatasync {flush:.3} ms, {per_flush:.1} records per flush\n",
                r.ciphersuite
            ));
        }
        if r.clients == 1 {
            out.push_str(&format!(
                "{}: p50 {:.2} ms against the concurrency-1 target {:.2} ms (in-process signature + 1.5 round trips): {:.2}x, {}\n",
                r.ciphersuite,
                r.p50_ms,
                r.latency_target_ms,
                r.p50_vs_target,
                if r.p50_vs_target <= 1.0 { "met" } else { "not met" }
            ));
        }
    }
    for r in results {
        let rss: Vec<String> = r
            .peak_rss_mib
            .iter()
            .map(|(n, m)| {
                format!(
                    "{n} {m:.1} MiB ({:+.1}/{:+.1})",
                    r.rss_growth_mib.get(n).copied().unwrap_or(0.0),
                    r.rss_growth_second_half_mib.get(n).copied().unwrap_or(0.0)
                )
            })
            .collect();
        out.push_str(&format!(
            "peak RSS ({}), growth over the whole run/its second half in parentheses: {}\n",
            r.ciphersuite,
            rss.join(", ")
        ));
    }
    out
}

/// The final `--json` line: the contract fields (docs/benchmarks.md) at the top level (from the
/// ciphersuite with the lowest ratio), and every result under `results`.
pub fn json_line(results: &[SuiteResult]) -> anyhow::Result<String> {
    let worst = results
        .iter()
        .min_by(|a, b| a.ratio.total_cmp(&b.ratio))
        .context("no results")?;
    let mut v = serde_json::to_value(worst)?;
    v["results"] = serde_json::to_value(results)?;
    Ok(serde_json::to_string(&v)?)
}
