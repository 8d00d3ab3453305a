//! The sovereignty drill: with both EU sovereign nodes lost, the EU key refuses
//! without an approval and signs with one from the network's approver, while the
//! load on unrestricted keys keeps signing. Runs on both networks.

use std::time::Duration;

use futures::future::BoxFuture;
use quorate_frost::Ciphersuite;

use super::ctx::{DrillCtx, EU_KEY};
use super::load::REQUEST_TIMEOUT;
use super::verdict::{baseline_failures, verdict, Stats, Verdict};

/// Drill 5: both EU sovereign clouds are lost. The EU key (at least 2 EU signers)
/// must refuse without an approval and sign with a compliance approval, while the
/// background load on unrestricted keys keeps signing.
pub(super) fn eu_failover(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let load = ctx.load(&[], "eu-failover")?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let lost = ["node-1", "node-2"];
        for id in lost {
            ctx.target.kill_node(id).await?;
        }
        let client = ctx.target.client(0)?;
        let mut why = Vec::new();
        match client
            .sign(EU_KEY, b"eu drill", None, REQUEST_TIMEOUT)
            .await
        {
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {}
            other => why.push(format!(
                "without approval: expected FAILED_PRECONDITION, got {other:?}"
            )),
        }
        let approval = ctx
            .target
            .approve(EU_KEY, 600, "drill: eu-central and eu-west lost")?;
        let public = client.public_key(EU_KEY).await?;
        let mut approved_signers = Vec::new();
        match client
            .sign_with(EU_KEY, b"eu drill", None, Some(approval), REQUEST_TIMEOUT)
            .await
        {
            Ok(r) => {
                if let Err(e) = crate::verify::verify(
                    Ciphersuite::Ed25519,
                    &public.public_key,
                    b"eu drill",
                    &r.signature,
                ) {
                    why.push(format!("approved signature does not verify: {e}"));
                }
                if let Some(dead) = r.signers.iter().find(|s| lost.contains(&s.as_str())) {
                    why.push(format!("{dead} is down, yet reported as a signer"));
                }
                approved_signers = r.signers;
            }
            Err(s) => why.push(format!("with approval: {s:?}")),
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let samples = load.stop().await;
        for id in lost {
            ctx.target.start_node(id).await?;
        }
        let stats = Stats::of(&samples);
        why.extend(baseline_failures(&stats, 10));
        if stats.failed > 0 {
            why.push(format!("{} background requests failed", stats.failed));
        }
        let detail = format!(
            "node-1 and node-2 (EU sovereign) killed; EU key refused, then signed under an approval token by {}",
            approved_signers.join(", ")
        );
        Ok(verdict(stats, why, detail, &samples))
    })
}
