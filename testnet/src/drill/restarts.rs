//! The rolling restart: every node, then every coordinator, stopped by SIGTERM
//! alone, as `kubectl rollout restart` or `systemctl restart` does, under load
//! through both coordinators. Each process must exit by itself within its shutdown
//! grace (a supervisor would SIGKILL it after its own), and no request may fail:
//! a node going away finishes its round-2 batches and the coordinators move to
//! other quorums, and a coordinator going away finishes its requests while its
//! clients fail over to the other one. Runs on both networks.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use quorate_transport::runtime::DEFAULT_SHUTDOWN_GRACE_MS;

use super::ctx::DrillCtx;
use super::verdict::{baseline_failures, verdict, Stats, Verdict};
use crate::network::Termination;

/// How long a process may take to exit after SIGTERM: the servers' default
/// `shutdown_grace_ms` (the testnets keep it) and a margin for the exit itself and
/// for the host (or Docker) to see it.
pub const EXIT_BOUND: Duration = Duration::from_millis(DEFAULT_SHUTDOWN_GRACE_MS + EXIT_MARGIN_MS);
const EXIT_MARGIN_MS: u64 = 2_000;

/// Pause after a restarted process serves, before the next one goes: the
/// coordinators' health probe (every second) takes a node back in that time.
const SETTLE: Duration = Duration::from_secs(2);

/// Drill 6: a rolling restart by SIGTERM alone, under load; zero failed requests.
pub(super) fn rolling_restart(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let names = ctx.target.coordinator_names();
        let load = ctx.load_with_failover("rolling")?;
        tokio::time::sleep(SETTLE).await;
        let started = Instant::now();
        let mut exits: Vec<(String, Termination)> = Vec::new();
        for id in ctx.target.node_ids() {
            let exit = ctx.target.terminate_node(&id, EXIT_BOUND).await?;
            exits.push((id.clone(), exit));
            ctx.target.start_node(&id).await?;
            tokio::time::sleep(SETTLE).await;
        }
        for (i, name) in names.iter().enumerate() {
            let exit = ctx.target.terminate_coordinator(i, EXIT_BOUND).await?;
            exits.push((name.clone(), exit));
            ctx.target.start_coordinator(i).await?;
            tokio::time::sleep(SETTLE).await;
        }
        let took = started.elapsed();
        let samples = load.stop().await;

        let stats = Stats::of(&samples);
        let mut why = baseline_failures(&stats, 20);
        if stats.failed > 0 {
            why.push(format!("{} requests failed", stats.failed));
        }
        for (name, exit) in &exits {
            if !exit.clean_within(EXIT_BOUND) {
                why.push(format!(
                    "{name} after SIGTERM: {exit} (bound {} ms, exit code 0 expected)",
                    EXIT_BOUND.as_millis()
                ));
            }
        }
        let slowest = exits
            .iter()
            .max_by_key(|(_, exit)| exit.took)
            .map(|(name, exit)| format!("{name} {} ms", exit.took.as_millis()))
            .unwrap_or_default();
        let detail = format!(
            "{} processes restarted in turn by SIGTERM alone in {:.1} s; exits {} (slowest {slowest}; bound {} ms)",
            exits.len(),
            took.as_secs_f64(),
            exits
                .iter()
                .map(|(name, exit)| format!("{name} {} ms", exit.took.as_millis()))
                .collect::<Vec<_>>()
                .join(", "),
            EXIT_BOUND.as_millis()
        );
        Ok(verdict(stats, why, detail, &samples))
    })
}
