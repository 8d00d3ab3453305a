//! Drills on what nodes keep: a node's state wiped and rebuilt by repair (both
//! networks), a store damaged on disk, nodes SIGKILLed mid-signing, after which
//! no nonce was spent twice, no share was lost and every audit chain is intact,
//! and a node rebuilt from its custodians' escrow (local processes only: they edit
//! a store, issue an auditor certificate, or open parts with the custodians'
//! identities).

use std::time::Duration;

use anyhow::{anyhow, Context};
use futures::future::BoxFuture;
use rand_core::{OsRng, RngCore};

use super::ctx::DrillCtx;
use super::load::REQUEST_TIMEOUT;
use super::verdict::{baseline_failures, verdict, Stats, Verdict};
use crate::network::LocalNetwork;
use crate::probe::node_holds_key;

/// Signs `message` once with every load key while the `frozen` nodes are paused,
/// so that `victim` is in every quorum; says what went wrong (a refusal, `victim`
/// not among the signers, a signature that does not verify).
async fn signs_every_key_with(
    ctx: &mut DrillCtx,
    victim: &str,
    frozen: [&str; 2],
    message: &str,
) -> anyhow::Result<Vec<String>> {
    for id in frozen {
        ctx.target.pause_node(id).await?;
    }
    let client = ctx.target.client(0)?;
    let mut why = Vec::new();
    for key in &ctx.keys {
        match client
            .sign(&key.key_id, message.as_bytes(), None, REQUEST_TIMEOUT)
            .await
        {
            Ok(r) if r.signers.iter().any(|s| s == victim) => {
                if let Err(e) = crate::verify::verify(
                    key.ciphersuite,
                    &key.public_key,
                    message.as_bytes(),
                    &r.signature,
                ) {
                    why.push(format!("{}: invalid signature {message}: {e}", key.key_id));
                }
            }
            Ok(r) => why.push(format!(
                "{}: {victim} did not sign ({:?})",
                key.key_id, r.signers
            )),
            Err(s) => why.push(format!("{}: {s:?}", key.key_id)),
        }
    }
    for id in frozen {
        ctx.target.resume_node(id).await?;
    }
    Ok(why)
}

/// Drill 7: a node loses its state (its region is rebuilt empty). The ceremony
/// repairs its share of every key from t helper nodes; the node then signs.
pub(super) fn wipe_and_repair(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let load = ctx.load(&[], "wipe-and-repair")?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let victim = "node-3";
        // Every key, the EU key too: the node must come back whole.
        let keys = ctx.target.key_ids();
        ctx.target.wipe_node(victim).await?;
        let ceremony = ctx.target.ceremony()?;
        let mut why = Vec::new();
        // The wipe is real: the restarted node holds none of its shares.
        let node = ceremony
            .nodes
            .iter()
            .find(|n| n.id == victim)
            .ok_or_else(|| anyhow!("the ceremony file lists no {victim}"))?;
        for key_id in &keys {
            if node_holds_key(&ceremony.tls, node, key_id).await? {
                why.push(format!("{victim} still holds {key_id} after the wipe"));
            }
        }
        for key_id in &keys {
            if let Err(e) = ctx.target.repair_share(key_id, victim).await {
                why.push(format!("repairing {key_id}: {e:#}"));
            }
        }
        // The repaired node must sign.
        let frozen = ["node-4", "node-5"];
        let message = format!("after repair of {victim}");
        why.extend(signs_every_key_with(ctx, victim, frozen, &message).await?);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let samples = load.stop().await;
        let stats = Stats::of(&samples);
        why.extend(baseline_failures(&stats, 10));
        let detail = format!(
            "{victim} wiped ({}) and repaired for {} keys; it then signed each with {} frozen",
            ctx.target.wipe_method(),
            keys.len(),
            frozen.join(" and ")
        );
        // Requests sent while node-4 and node-5 were frozen may time out on them
        // before the coordinator skips them; only invalid signatures fail the drill
        // besides the repair itself.
        Ok(verdict(stats, why, detail, &samples))
    })
}

/// Drill 13: a region is destroyed and rebuilt from escrow, as the custodian guide
/// says (docs/ceremony.md): node-2 splits its share of every key among the key's
/// custodians (planned, authorized by two administrators), node-2 is wiped, three
/// custodians open their parts, and each share is recovered onto the empty node
/// (planned and authorized again, the node checking the attestations and the
/// authorizations); node-2 then signs every key in a quorum that needs it.
pub(super) fn escrow_rebuild(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let load = ctx.load(&[], "escrow-rebuild")?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let victim = "node-2";
        let keys = ctx.target.key_ids();
        let net = ctx.local()?;
        let escrow_dir = net.dir.join("drill-escrow");
        if escrow_dir.exists() {
            std::fs::remove_dir_all(&escrow_dir)
                .with_context(|| format!("removing {}", escrow_dir.display()))?;
        }
        let mut why = Vec::new();
        let mut parts_of = Vec::new();
        for key_id in &keys {
            let opened = async {
                let split = net.escrow_split(key_id, victim, &escrow_dir).await?;
                let k = usize::from(split.threshold);
                split
                    .files
                    .iter()
                    .take(k)
                    .map(|(name, file)| {
                        let custodian = net
                            .custodians
                            .iter()
                            .find(|c| &c.name == name)
                            .ok_or_else(|| anyhow!("no testnet custodian {name}"))?;
                        Ok((file.clone(), crate::custodians::open_part(custodian, file)?))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            };
            match opened.await {
                Ok(parts) => parts_of.push((key_id.clone(), parts)),
                Err(e) => why.push(format!("escrowing {key_id}: {e:#}")),
            }
        }
        net.wipe_node(victim).await?;
        let mut recovered = 0;
        for (key_id, parts) in parts_of {
            match net.escrow_recover(&key_id, victim, parts).await {
                Ok(_) => recovered += 1,
                Err(e) => why.push(format!("recovering {key_id}: {e:#}")),
            }
        }
        std::fs::remove_dir_all(&escrow_dir).ok();
        // The rebuilt node must sign.
        let frozen = ["node-4", "node-5"];
        let message = format!("after {victim} was rebuilt from escrow");
        why.extend(signs_every_key_with(ctx, victim, frozen, &message).await?);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let samples = load.stop().await;
        let stats = Stats::of(&samples);
        why.extend(baseline_failures(&stats, 10));
        let detail = format!(
            "{victim} escrowed to the keys' custodians, wiped, and its shares of {recovered} of {} \
             keys recovered from {} custodians' parts each (two administrators authorizing \
             every split and recovery); it then signed each with {} frozen",
            keys.len(),
            crate::custodians::THRESHOLD,
            frozen.join(" and ")
        );
        Ok(verdict(stats, why, detail, &samples))
    })
}

/// Drill 10 (hardening): a node's key store is damaged on disk. It must refuse to
/// start and say why (rather than sign with a wrong share or silently drop a key);
/// the ceremony then rebuilds its shares by repair and it signs again.
pub(super) fn disk_corruption(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let load = ctx.load(&[], "disk-corruption")?;
        let victim = "node-4";
        let net = ctx.local()?;
        net.kill_node(victim).await?;
        let data_dir = net.node(victim)?.data_dir.clone();
        {
            let keys = quorate_node::audit::open_offline_tree(&data_dir, "keys")?;
            let (k, v) = keys.iter().next().context("no key record to damage")??;
            let mut damaged = v.to_vec();
            let at = damaged.len() / 2;
            damaged[at] ^= 0x40;
            keys.insert(k, damaged)?;
            keys.flush()?;
        }
        let mut why = Vec::new();
        match net.start_node(victim).await {
            Ok(()) => why.push(format!("{victim} started with a damaged store")),
            Err(e) => {
                let text = format!("{e:#}");
                if !text.contains("corrupt") {
                    why.push(format!(
                        "{victim} failed to start without naming the damage: {text}"
                    ));
                }
            }
        }
        net.wipe_node(victim).await?;
        for key_id in all_key_ids(net) {
            if let Err(e) = net.repair(&key_id, victim).await {
                why.push(format!("repairing {key_id}: {e:#}"));
            }
        }
        net.pause_node("node-1")?;
        net.pause_node("node-5")?;
        let client = net.client().await?;
        for key in ctx.keys.clone() {
            match client
                .sign(&key.key_id, b"after disk repair", None, REQUEST_TIMEOUT)
                .await
            {
                Ok(r) if r.signers.iter().any(|s| s == victim) => {}
                Ok(r) => why.push(format!(
                    "{}: {victim} did not sign ({:?})",
                    key.key_id, r.signers
                )),
                Err(s) => why.push(format!("{}: {s:?}", key.key_id)),
            }
        }
        let net = ctx.local()?;
        net.resume_node("node-1")?;
        net.resume_node("node-5")?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let samples = load.stop().await;
        let stats = Stats::of(&samples);
        why.extend(baseline_failures(&stats, 10));
        let detail =
            format!("{victim}'s key store damaged on disk; refused to start; wiped and repaired");
        Ok(verdict(stats, why, detail, &samples))
    })
}

/// Drill 12: under load, a node's operator cuts the node's audit log back to what
/// it held before the load began (stopped, the file truncated, restarted): the
/// records of the last seconds of signing gone. Every other node witnesses its log
/// (the testnet's witnesses check each second) and must report the inconsistency
/// (`quorate_node_witness_inconsistent{peer}` = 1) within seconds of the node
/// serving again, while the load signs on.
pub(super) fn doctored_audit_log(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        // A node in most quorums, so the load writes many records to its log.
        let victim = "node-2";
        let log = quorate_node::audit::log_path(&ctx.local()?.node(victim)?.data_dir);
        let kept = std::fs::read_to_string(&log)
            .with_context(|| format!("reading {}", log.display()))?
            .lines()
            .count();
        let load = ctx.load(&[], "doctored-audit-log")?;
        // Seconds of load: the witnesses cosign checkpoints of the grown log.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let net = ctx.local()?;
        net.stop_node(victim).await?;
        let text = std::fs::read_to_string(&log)?;
        let lines: Vec<&str> = text.lines().collect();
        let mut why = Vec::new();
        let cut = lines.len().saturating_sub(kept);
        if cut == 0 {
            why.push(format!("{victim} recorded nothing under load"));
        }
        let mut doctored = lines[..kept.min(lines.len())].join("\n");
        doctored.push('\n');
        std::fs::write(&log, doctored)?;
        net.start_node(victim).await?;
        let restarted = std::time::Instant::now();
        let witnesses: Vec<(String, String)> = net
            .nodes
            .iter()
            .filter(|n| n.spec.id != victim)
            .map(|n| (n.spec.id.clone(), n.metrics.clone()))
            .collect();
        let series = format!(
            "{}{{peer=\"{victim}\"}}",
            quorate_node::metrics::WITNESS_INCONSISTENT
        );
        let mut reported = Vec::new();
        let mut pending = witnesses.clone();
        while !pending.is_empty() && restarted.elapsed() < Duration::from_secs(15) {
            let mut still = Vec::new();
            for (id, metrics) in pending {
                let said = quorate_transport::metrics::scrape(&metrics)
                    .await
                    .ok()
                    .and_then(|text| quorate_transport::metrics::sample(&text, &series));
                if said == Some(1.0) {
                    reported.push(format!("{id} {} ms", restarted.elapsed().as_millis()));
                } else {
                    still.push((id, metrics));
                }
            }
            pending = still;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (id, _) in &pending {
            why.push(format!(
                "{id} did not report {victim}'s cut log within 15 s of its restart"
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let samples = load.stop().await;
        let stats = Stats::of(&samples);
        why.extend(baseline_failures(&stats, 10));
        let detail = format!(
            "{victim} stopped under load, its audit log cut by {cut} records (back to the \
             {kept} it held before the load), restarted; reported by its witnesses after \
             it served again: {}",
            reported.join(", ")
        );
        Ok(verdict(stats, why, detail, &samples))
    })
}

/// Every key id of the local network.
fn all_key_ids(net: &LocalNetwork) -> Vec<String> {
    net.spec.keys.iter().map(|k| k.key_id.clone()).collect()
}

/// Checks every node's audit chain, that no commitment (nonce) was spent twice on
/// any node, and that every node still holds every key. Returns the problems.
async fn check_nodes_after_crashes(net: &LocalNetwork) -> anyhow::Result<(Vec<String>, usize)> {
    let auditor = net.issue(quorate_transport::identity::Role::Auditor, "drill-auditor")?;
    let ceremony_tls = net
        .tls_paths(quorate_transport::identity::Role::Ceremony, "testnet")
        .load()?;
    let mut problems = Vec::new();
    let mut shares_checked = 0;
    for node in &net.nodes {
        let id = &node.spec.id;
        let records = quorate_ceremony::audit::fetch(&node.endpoint, id, &auditor).await?;
        if let Err(brk) = quorate_ceremony::audit::check(&records).head {
            problems.push(format!("{id}: {brk}"));
        }
        let mut seen = std::collections::HashSet::new();
        for r in quorate_ceremony::audit::decode(&records) {
            // A share's record names the commitment it spent; so does a refusal
            // that spent one unused (a client over its rate limit).
            let Some(commitment) = r.spent_commitment() else {
                continue;
            };
            if r.event == "sign_share" {
                shares_checked += 1;
            }
            if !seen.insert(format!("{} {commitment}", r.key_id)) {
                problems.push(format!(
                    "{id}: commitment spent twice ({} {commitment})",
                    r.key_id
                ));
            }
        }
        let channel = ceremony_tls.node_channel(&node.endpoint, id, Duration::from_secs(2))?;
        let mut client = quorate_wire::pb::ceremony_client::CeremonyClient::new(channel);
        for key_id in all_key_ids(net) {
            if let Err(s) = client
                .get_manifest(quorate_wire::pb::GetManifestRequest {
                    key_id: key_id.clone(),
                })
                .await
            {
                problems.push(format!("{id} lost key {key_id}: {}", s.message()));
            }
        }
    }
    Ok((problems, shares_checked))
}

/// Drill 9 (hardening): nodes die by SIGKILL at random moments of both rounds under
/// load and come back. Afterwards no node has spent a nonce twice (each signature
/// share's audit record names the commitment it consumed), no node lost a share,
/// and every audit chain is intact.
pub(super) fn crash_during_signing(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let load = ctx.load(&[], "crash-during-signing")?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut killed = Vec::new();
        for _ in 0..6 {
            let victim = ctx.pick_nodes(1).remove(0);
            // A random point in the middle of the traffic: both rounds are always
            // in flight under this load.
            tokio::time::sleep(Duration::from_millis(
                50 + u64::from(OsRng.next_u32() % 450),
            ))
            .await;
            ctx.target.kill_node(&victim).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            ctx.target.start_node(&victim).await?;
            killed.push(victim);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let samples = load.stop().await;
        let (problems, shares) = check_nodes_after_crashes(ctx.local()?).await?;
        let stats = Stats::of(&samples);
        let mut why = baseline_failures(&stats, 20);
        why.extend(problems);
        let detail = format!(
            "SIGKILLed and restarted {}; {shares} signature shares checked for nonce reuse",
            killed.join(", ")
        );
        Ok(verdict(stats, why, detail, &samples))
    })
}
