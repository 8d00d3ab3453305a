//! The drill that takes a coordinator away: clients of the other coordinator must
//! not notice, and the killed one signs again after its restart. Runs on both
//! networks.

use std::time::{Duration, Instant};

use anyhow::bail;
use futures::future::BoxFuture;

use super::ctx::DrillCtx;
use super::load::Outcome;
use super::verdict::{baseline_failures, verdict, Stats, Verdict};

/// Drill 4: one coordinator dies; clients of the other must not notice.
pub(super) fn kill_coordinator(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let names = ctx.target.coordinator_names();
        if names.len() < 2 {
            bail!(
                "this drill needs two coordinators, the network has {}",
                names.len()
            );
        }
        let (victim, survivor) = (0usize, 1usize);
        let victim_load = ctx.load(&[victim], "coordinator-victim")?;
        let survivor_load = ctx.load(&[survivor], "coordinator-survivor")?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        ctx.target.kill_coordinator(victim).await?;
        let killed = Instant::now();
        tokio::time::sleep(Duration::from_secs(8)).await;
        let restart = Instant::now();
        ctx.target.start_coordinator(victim).await?;
        let back = victim_load
            .first_success_after(restart, Duration::from_secs(20))
            .await;
        let survivor_samples = survivor_load.stop().await;
        let victim_samples = victim_load.stop().await;

        let stats = Stats::of(&survivor_samples);
        let mut why = baseline_failures(&stats, 20);
        if stats.failed > 0 {
            why.push(format!(
                "{} requests through {} failed",
                stats.failed, names[survivor]
            ));
        }
        let during = survivor_samples
            .iter()
            .filter(|s| s.sent >= killed && s.done() <= restart && s.outcome == Outcome::Signed)
            .count();
        if during == 0 {
            why.push(format!(
                "no signature through {} while {} was down",
                names[survivor], names[victim]
            ));
        }
        if back.is_none() {
            why.push(format!(
                "{} did not sign again after restart",
                names[victim]
            ));
        }
        let victim_stats = Stats::of(&victim_samples);
        let detail = format!(
            "killed {} for 8 s: figures are {}'s clients ({during} signatures while the other was down); {}'s own clients: {} failed of {} (expected), signing again after restart",
            names[victim], names[survivor], names[victim], victim_stats.failed, victim_stats.sent
        );
        Ok(verdict(stats, why, detail, &survivor_samples))
    })
}
