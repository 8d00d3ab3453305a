//! The drill report: a Markdown table with one row per drill (outcome, requests,
//! latency percentiles, invalid signatures, wall time), then one note per drill
//! with what happened. `quorate-testnet drill` prints it.

use std::time::Duration;

use super::registry::Drill;
use super::verdict::Verdict;

/// One row of the report.
#[derive(Clone, Debug)]
pub struct ReportRow {
    /// The drill.
    pub drill: Drill,
    /// Its verdict (an error is a failed verdict).
    pub verdict: Verdict,
    /// Wall time.
    pub took: Duration,
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

/// The report: a Markdown table, then one note per drill.
pub fn render_report(title: &str, rows: &[ReportRow]) -> String {
    let mut out = format!("{title}\n\n");
    out.push_str("| # | drill | expectation | outcome | sent | ok | failed | p50 ms | p99 ms | invalid sigs | time s |\n");
    out.push_str("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let s = &r.verdict.stats;
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |\n",
            r.drill.number,
            r.drill.name,
            r.drill.expectation,
            if r.verdict.pass { "PASS" } else { "FAIL" },
            s.sent,
            s.succeeded,
            s.failed,
            ms(s.p50),
            ms(s.p99),
            s.invalid,
            r.took.as_secs_f64()
        ));
    }
    out.push('\n');
    for r in rows {
        out.push_str(&format!(
            "- {} {}: {}\n",
            r.drill.number, r.drill.name, r.verdict.detail
        ));
    }
    out
}
