//! Runs drills one after another against one network: each under a time bound (a
//! drill that hangs is a failed drill), the network restored between them.

use std::time::{Duration, Instant};

use super::ctx::DrillCtx;
use super::registry::Drill;
use super::report::ReportRow;
use super::verdict::{Stats, Verdict};

/// Runs `drills` in order against `ctx`, restoring the network between them.
pub async fn run_drills(ctx: &mut DrillCtx, drills: &[Drill]) -> Vec<ReportRow> {
    let mut rows = Vec::new();
    for drill in drills {
        eprintln!("drill {} {} ...", drill.number, drill.name);
        let started = Instant::now();
        // A drill that hangs is a failed drill, not a hung command.
        let verdict = match tokio::time::timeout(Duration::from_secs(240), (drill.run)(ctx)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => Verdict {
                pass: false,
                stats: Stats::default(),
                detail: format!("FAILED: drill error: {e:#}"),
            },
            Err(_) => Verdict {
                pass: false,
                stats: Stats::default(),
                detail: "FAILED: drill did not finish within 240 s".into(),
            },
        };
        let took = started.elapsed();
        eprintln!(
            "drill {} {}: {} ({:.1} s)",
            drill.number,
            drill.name,
            if verdict.pass { "PASS" } else { "FAIL" },
            took.as_secs_f64()
        );
        rows.push(ReportRow {
            drill: *drill,
            verdict,
            took,
        });
        if let Err(e) = ctx.target.restore().await {
            eprintln!("restoring the network after {} failed: {e:#}", drill.name);
        }
        // Let coordinators' health records settle so drills do not bleed into each
        // other.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    rows
}
