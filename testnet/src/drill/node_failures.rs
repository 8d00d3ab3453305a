//! Drills that take nodes away: two killed (a quorum remains), three killed (none
//! does: fast UNAVAILABLE, then recovery), one partitioned and healed. They run on
//! both networks.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use futures::future::BoxFuture;

use super::ctx::DrillCtx;
use super::load::{Outcome, Sample, REQUEST_TIMEOUT};
use super::verdict::{baseline_failures, verdict, Stats, Verdict};

/// Drill 1: any two nodes die; the remaining three are a quorum.
pub(super) fn kill_two_nodes(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let victims = ctx.pick_nodes(2);
        let load = ctx.load(&[], "kill-2")?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        for id in &victims {
            ctx.target.kill_node(id).await?;
        }
        tokio::time::sleep(Duration::from_secs(8)).await;
        let samples = load.stop().await;
        for id in &victims {
            ctx.target.start_node(id).await?;
        }
        let stats = Stats::of(&samples);
        let mut why = baseline_failures(&stats, 20);
        if stats.failed > 0 {
            why.push(format!("{} requests failed", stats.failed));
        }
        let detail = format!("killed {}; restarted after 8 s", victims.join(", "));
        Ok(verdict(stats, why, detail, &samples))
    })
}

/// Drill 2: three nodes die, no quorum remains; requests must fail fast with
/// UNAVAILABLE, and signing must resume soon after the nodes return.
pub(super) fn kill_three_nodes(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let victims = ctx.pick_nodes(3);
        let load = ctx.load(&[], "kill-3")?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        for id in &victims {
            ctx.target.kill_node(id).await?;
        }
        let all_dead = Instant::now();
        tokio::time::sleep(Duration::from_secs(8)).await;
        let restart = Instant::now();
        let mut restart_error = None;
        for id in &victims {
            if let Err(e) = ctx.target.start_node(id).await {
                restart_error = Some(format!("restarting {id}: {e:#}"));
                break;
            }
        }
        let resumed = load
            .first_success_after(restart, Duration::from_secs(30))
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let samples = load.stop().await;

        // Requests sent and answered while no quorum existed.
        let down: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.sent >= all_dead && s.done() <= restart)
            .collect();
        let stats = Stats::of(&samples);
        let mut why = baseline_failures(&stats, 20);
        if let Some(e) = restart_error {
            why.push(e);
        }
        if down.len() < 5 {
            why.push(format!("only {} requests while down", down.len()));
        }
        let not_unavailable = down
            .iter()
            .filter(|s| !matches!(s.outcome, Outcome::Failed(tonic::Code::Unavailable, _)))
            .count();
        if not_unavailable > 0 {
            why.push(format!(
                "{not_unavailable} of {} requests while down did not fail with UNAVAILABLE",
                down.len()
            ));
        }
        let slowest = down.iter().map(|s| s.latency).max().unwrap_or_default();
        if slowest >= REQUEST_TIMEOUT {
            why.push(format!(
                "a request took {slowest:?} to fail, not within its {REQUEST_TIMEOUT:?} deadline"
            ));
        }
        let resume_after = resumed.map(|t| t.saturating_duration_since(restart));
        match resume_after {
            Some(d) if d <= Duration::from_secs(15) => {}
            Some(d) => why.push(format!("signing resumed only {d:.1?} after restart")),
            None => why.push("signing did not resume within 30 s of restart".into()),
        }
        let detail = format!(
            "killed {}; while down {}/{} UNAVAILABLE, slowest answer {:.2?} (deadline {:?}); signing resumed {} after restart began",
            victims.join(", "),
            down.len() - not_unavailable,
            down.len(),
            slowest,
            REQUEST_TIMEOUT,
            resume_after.map_or("never".to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
        );
        Ok(verdict(stats, why, detail, &samples))
    })
}

/// Drill 3: one node is cut off and healed. Requests keep signing throughout;
/// after the heal, two other nodes are frozen, so signing proves the healed node
/// is back in quorums.
pub(super) fn partition_node(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let picked = ctx.pick_nodes(3);
        let (victim, others) = picked
            .split_first()
            .ok_or_else(|| anyhow!("too few nodes"))?;
        let load = ctx.load(&[], "partition")?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        ctx.target.partition_node(victim).await?;
        tokio::time::sleep(Duration::from_secs(8)).await;
        ctx.target.heal_node(victim).await?;
        // The coordinators' health probe (every second) takes it back.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let healed_check = Instant::now();
        for id in others {
            ctx.target.pause_node(id).await?;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let check_end = Instant::now();
        for id in others {
            ctx.target.resume_node(id).await?;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let samples = load.stop().await;
        let stats = Stats::of(&samples);
        let mut why = baseline_failures(&stats, 20);
        if stats.failed > 0 {
            why.push(format!("{} requests failed", stats.failed));
        }
        let healed_signed = samples
            .iter()
            .filter(|s| s.sent >= healed_check && s.done() <= check_end)
            .filter(|s| s.outcome == Outcome::Signed)
            .count();
        if healed_signed == 0 {
            why.push(format!(
                "no signature while {} were frozen: {victim} did not rejoin",
                others.join(", ")
            ));
        }
        let detail = format!(
            "partitioned {victim} for 8 s by {}; after healing, {healed_signed} signatures with {} frozen (so {victim} signed)",
            ctx.target.partition_method(),
            others.join(" and ")
        );
        Ok(verdict(stats, why, detail, &samples))
    })
}
