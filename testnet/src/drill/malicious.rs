//! Drills with a peer that lies (local processes only): a node answering with
//! corrupt signature shares, which a coordinator must name and exclude, and a
//! compromised coordinator talking to the nodes directly, whose every attack the
//! nodes must refuse themselves.

use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use quorate_frost::Ciphersuite;

use super::ctx::{DrillCtx, EU_KEY};
use super::verdict::{baseline_failures, verdict, Stats, Verdict};

/// Drill 8 (hardening): one node answers with corrupt signature shares. The
/// coordinator names it as culprit, leaves it out, and every request still signs.
pub(super) fn malicious_signer(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        let victim = "node-2";
        ctx.local()?.set_corrupt_signer(victim, true).await?;
        let load = ctx.load(&[], "malicious-signer")?;
        tokio::time::sleep(Duration::from_secs(8)).await;
        let samples = load.stop().await;
        let net = ctx.local()?;
        // Either coordinator may have met the bad share first.
        let named = std::iter::once(&net.coordinator)
            .chain(net.extra_coordinators.iter().map(|c| &c.process))
            .any(|c| {
                std::fs::read_to_string(&c.log)
                    .unwrap_or_default()
                    .lines()
                    .any(|l| l.contains("culprit") && l.contains(victim))
            });
        net.set_corrupt_signer(victim, false).await?;
        let stats = Stats::of(&samples);
        let mut why = baseline_failures(&stats, 20);
        if stats.failed > 0 {
            why.push(format!("{} requests failed", stats.failed));
        }
        if !named {
            why.push(format!("the coordinator never named {victim} as culprit"));
        }
        let detail = format!("{victim} corrupted its shares; named culprit: {named}");
        Ok(verdict(stats, why, detail, &samples))
    })
}

/// Drill 11 (hardening): a compromised coordinator talks to the nodes directly,
/// holding one real client intent. Each attack must be refused by the node itself,
/// under the background load.
pub(super) fn malicious_coordinator(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        use quorate_wire::pb;
        let load = ctx.load(&[], "malicious-coordinator")?;
        let net = ctx.local()?;
        let tls = net
            .tls_paths(
                quorate_transport::identity::Role::Coordinator,
                "coordinator",
            )
            .load()?;
        let mut clients = std::collections::BTreeMap::new();
        for id in ["node-1", "node-2", "node-3", "node-4", "node-5"] {
            let channel = tls.node_channel(&net.node(id)?.endpoint, id, Duration::from_secs(2))?;
            clients.insert(id, pb::node_client::NodeClient::new(channel));
        }
        // The attacker holds the coordinator's certificate only; the one client
        // intent it has is what a real client sent it, for "pay 10" on the demo key.
        let client = net.client().await?;
        let mut why = Vec::new();
        let mut refused = 0;
        fn expect_refusal(
            why: &mut Vec<String>,
            refused: &mut usize,
            what: &str,
            code: tonic::Code,
            result: Result<tonic::Response<pb::SignShareResponse>, tonic::Status>,
        ) {
            match result {
                Err(s) if s.code() == code => *refused += 1,
                other => why.push(format!(
                    "{what}: expected {code:?}, got {:?}",
                    other.map(|_| "a signature share")
                )),
            }
        }
        async fn commit(
            c: &mut pb::node_client::NodeClient<tonic::transport::Channel>,
            key_id: &str,
        ) -> anyhow::Result<Vec<u8>> {
            let mut r = c
                .commit(pb::CommitRequest {
                    key_id: key_id.into(),
                    count: 1,
                })
                .await?
                .into_inner();
            r.commitments.pop().context("no commitment")
        }
        let ops = Ciphersuite::Ed25519.ops();
        let key = "demo-ed25519";
        let signers = ["node-1", "node-2", "node-3"];
        let mut commitments = std::collections::BTreeMap::new();
        for id in signers {
            let c = clients.get_mut(id).context("client")?;
            commitments.insert(ops.identifier(id)?, commit(c, key).await?);
        }
        let request_id = "malicious-coordinator";
        let intent =
            |message: &[u8], key_id: &str| client.intent(key_id, message, request_id, None);
        type Quorum = std::collections::BTreeMap<Vec<u8>, Vec<u8>>;
        let request =
            |quorum: &Quorum, message: &[u8], key_id: &str, intent: Option<pb::Signed>| {
                pb::SignShareRequest {
                    key_id: key_id.into(),
                    message: message.to_vec(),
                    commitments: quorate_wire::api::signer_commitments(quorum),
                    request_id: request_id.into(),
                    approval_token: Vec::new(),
                    intent,
                }
            };
        let pay_10 = intent(b"pay 10", key)?;
        let n1 = clients.get_mut("node-1").context("client")?;
        // The honest first use succeeds; a replay of it is refused.
        let honest = request(&commitments, b"pay 10", key, Some(pay_10.clone()));
        if let Err(s) = n1.sign_share(honest.clone()).await {
            why.push(format!("first use refused: {s:?}"));
        }
        let replay = n1.sign_share(honest).await;
        let precondition = tonic::Code::FailedPrecondition;
        let unauthenticated = tonic::Code::Unauthenticated;
        expect_refusal(
            &mut why,
            &mut refused,
            "replayed round 2",
            precondition,
            replay,
        );
        // The message swapped after round 1, under the client's intent for the
        // original: refused before the nonce is spent, so the original still signs.
        let n2 = clients.get_mut("node-2").context("client")?;
        let swapped = n2
            .sign_share(request(
                &commitments,
                b"pay 10000",
                key,
                Some(pay_10.clone()),
            ))
            .await;
        expect_refusal(
            &mut why,
            &mut refused,
            "message swapped under the client's intent",
            unauthenticated,
            swapped,
        );
        // No intent at all: the coordinator's word for the client counts for nothing.
        let bare = n2
            .sign_share(request(&commitments, b"pay 10000", key, None))
            .await;
        expect_refusal(
            &mut why,
            &mut refused,
            "no client intent",
            unauthenticated,
            bare,
        );
        if let Err(s) = n2
            .sign_share(request(&commitments, b"pay 10", key, Some(pay_10.clone())))
            .await
        {
            why.push(format!(
                "the original message, its nonce unspent, refused: {s:?}"
            ));
        }
        // Another node's commitment passed off as node-4's.
        let mut forged = std::collections::BTreeMap::new();
        let theirs = commit(clients.get_mut("node-5").context("client")?, key).await?;
        forged.insert(ops.identifier("node-4")?, theirs);
        for id in ["node-1", "node-3"] {
            let c = clients.get_mut(id).context("client")?;
            forged.insert(ops.identifier(id)?, commit(c, key).await?);
        }
        let result = clients
            .get_mut("node-4")
            .context("client")?
            .sign_share(request(&forged, b"pay 10", key, Some(pay_10)))
            .await;
        expect_refusal(
            &mut why,
            &mut refused,
            "another node's commitment",
            precondition,
            result,
        );
        // An unlawful quorum for the EU key: one EU signer with two others.
        let mut unlawful = std::collections::BTreeMap::new();
        for id in ["node-1", "node-4", "node-5"] {
            let c = clients.get_mut(id).context("client")?;
            unlawful.insert(ops.identifier(id)?, commit(c, EU_KEY).await?);
        }
        let eu_intent = intent(b"pay 10", EU_KEY)?;
        let result = clients
            .get_mut("node-1")
            .context("client")?
            .sign_share(request(&unlawful, b"pay 10", EU_KEY, Some(eu_intent)))
            .await;
        expect_refusal(
            &mut why,
            &mut refused,
            "unlawful EU quorum",
            precondition,
            result,
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let samples = load.stop().await;
        let stats = Stats::of(&samples);
        why.extend(baseline_failures(&stats, 10));
        let detail = format!(
            "{refused} of 5 attacks (replay, message swapped under the client's intent, no intent, foreign commitment, unlawful quorum) refused by the nodes themselves"
        );
        Ok(verdict(stats, why, detail, &samples))
    })
}
