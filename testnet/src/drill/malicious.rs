//! Drills with a peer that lies: a node answering with corrupt signature shares
//! (local processes only), which a coordinator must name and exclude; and the
//! untrusted coordinator's drill on both networks: a compromised coordinator
//! talking to the nodes directly, whose every attack the nodes must refuse
//! themselves, a node reporting a forged manifest, which the coordinator must
//! not believe, and a client's certificate presented as a node or a coordinator,
//! whose handshake the real coordinator and client library must refuse.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::future::BoxFuture;
use quorate_frost::Ciphersuite;

use super::ctx::{DrillCtx, EU_KEY};
use super::target::{Party, Rogue};
use super::verdict::{baseline_failures, verdict, Stats, Verdict};
use crate::rogue::{Impostor, ANSWERED, HANDSHAKE_COMPLETED, HANDSHAKE_FAILED};

/// The key the coordinator attacks sign with and the rogue node forges.
const KEY: &str = "demo-ed25519";
/// The node a rogue replaces.
const ROGUE_NODE: &str = "node-1";
/// The coordinator restarted to meet the rogue (the load keeps to the other).
const FRESH_COORDINATOR: usize = 1;

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

/// What the attacks of a drill came to: the ones refused, and why the drill
/// fails for the others.
#[derive(Debug, Default)]
struct Attacks {
    refused: Vec<&'static str>,
    why: Vec<String>,
}

impl Attacks {
    /// Records `attack` as refused when `failures` is empty, else its failures.
    fn judge(&mut self, attack: &'static str, failures: Vec<String>) {
        if failures.is_empty() {
            self.refused.push(attack);
        } else {
            self.why
                .extend(failures.into_iter().map(|f| format!("{attack}: {f}")));
        }
    }
}

/// Drill 11 (hardening): the coordinator is not trusted. A compromised
/// coordinator talks to the nodes directly, holding one real client intent, and
/// each of its attacks must be refused by the node itself; a node reporting a
/// forged manifest of a key must not make a freshly started coordinator serve
/// another key; a client's certificate presented as a node or as a coordinator
/// must fail the handshake of the real coordinator and of the client library.
/// Under background load on the other coordinator.
pub(super) fn malicious_coordinator(ctx: &mut DrillCtx) -> BoxFuture<'_, anyhow::Result<Verdict>> {
    Box::pin(async move {
        if ctx.target.coordinator_names().len() <= FRESH_COORDINATOR {
            anyhow::bail!("this drill needs two coordinators");
        }
        let load = ctx.load(&[0], "malicious-coordinator")?;
        let mut attacks = Attacks::default();
        let node_attacks = coordinator_attacks(ctx, &mut attacks).await;
        let forged = match node_attacks {
            Ok(()) => forged_manifest(ctx, &mut attacks).await,
            Err(e) => Err(e),
        };
        let as_node = match forged {
            Ok(()) => client_certificate_as_node(ctx, &mut attacks).await,
            Err(e) => Err(e),
        };
        // The node the rogue replaced serves again, whatever happened.
        let mended = async {
            ctx.target.stop_rogue().await?;
            ctx.target.start_node(ROGUE_NODE).await
        }
        .await;
        as_node?;
        mended?;
        client_certificate_as_coordinator(ctx, &mut attacks).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let samples = load.stop().await;
        let stats = Stats::of(&samples);
        let mut why = attacks.why;
        why.extend(baseline_failures(&stats, 10));
        if stats.failed > 0 {
            why.push(format!(
                "{} requests of the other coordinator's clients failed",
                stats.failed
            ));
        }
        let detail = format!(
            "{} of {ATTACKS} attacks refused ({}); the rogue ran as {}",
            attacks.refused.len(),
            attacks.refused.join(", "),
            ctx.target.rogue_method()
        );
        Ok(verdict(stats, why, detail, &samples))
    })
}

/// How many attacks the drill plays.
const ATTACKS: usize = 8;

/// The compromised coordinator's own attacks, with the coordinator's certificate
/// and one real client intent, against the nodes directly: a replayed round 2,
/// the message swapped under the client's intent, no intent, another node's
/// commitment, an unlawful quorum of the EU key.
async fn coordinator_attacks(ctx: &mut DrillCtx, attacks: &mut Attacks) -> anyhow::Result<()> {
    use quorate_wire::pb;
    let target = &ctx.target;
    let tls = target.tls(&Party::Coordinator(0))?.load()?;
    let mut clients = std::collections::BTreeMap::new();
    for id in ["node-1", "node-2", "node-3", "node-4", "node-5"] {
        let endpoint = target.node_endpoint(id)?;
        let channel = tls.node_channel(&endpoint, id, Duration::from_secs(2))?;
        clients.insert(id, pb::node_client::NodeClient::new(channel));
    }
    // The attacker holds the coordinator's certificate only; the one client
    // intent it has is what a real client sent it, for "pay 10" on the demo key.
    let client = target.client(0)?;
    fn refusal(
        code: tonic::Code,
        result: Result<tonic::Response<pb::SignShareResponse>, tonic::Status>,
    ) -> Vec<String> {
        match result {
            Err(s) if s.code() == code => Vec::new(),
            other => vec![format!(
                "expected {code:?}, got {:?}",
                other.map(|_| "a signature share")
            )],
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
    let signers = ["node-1", "node-2", "node-3"];
    let mut commitments = std::collections::BTreeMap::new();
    for id in signers {
        let c = clients.get_mut(id).context("client")?;
        commitments.insert(ops.identifier(id)?, commit(c, KEY).await?);
    }
    let request_id = "malicious-coordinator";
    let intent = |message: &[u8], key_id: &str| client.intent(key_id, message, request_id, None);
    type Quorum = std::collections::BTreeMap<Vec<u8>, Vec<u8>>;
    let request = |quorum: &Quorum, message: &[u8], key_id: &str, intent: Option<pb::Signed>| {
        pb::SignShareRequest {
            key_id: key_id.into(),
            message: message.to_vec(),
            commitments: quorate_wire::api::signer_commitments(quorum),
            request_id: request_id.into(),
            approval_token: Vec::new(),
            intent,
            manifest_hash: Vec::new(),
        }
    };
    let pay_10 = intent(b"pay 10", KEY)?;
    let precondition = tonic::Code::FailedPrecondition;
    let unauthenticated = tonic::Code::Unauthenticated;
    let n1 = clients.get_mut("node-1").context("client")?;
    // The honest first use succeeds; a replay of it is refused.
    let honest = request(&commitments, b"pay 10", KEY, Some(pay_10.clone()));
    let mut replay = Vec::new();
    if let Err(s) = n1.sign_share(honest.clone()).await {
        replay.push(format!("the honest first use refused: {s:?}"));
    }
    replay.extend(refusal(precondition, n1.sign_share(honest).await));
    attacks.judge("replay", replay);
    // The message swapped after round 1, under the client's intent for the
    // original: refused before the nonce is spent, so the original still signs.
    let n2 = clients.get_mut("node-2").context("client")?;
    let swapped = n2
        .sign_share(request(
            &commitments,
            b"pay 10000",
            KEY,
            Some(pay_10.clone()),
        ))
        .await;
    attacks.judge(
        "message swapped under the client's intent",
        refusal(unauthenticated, swapped),
    );
    // No intent at all: the coordinator's word for the client counts for nothing.
    let bare = n2
        .sign_share(request(&commitments, b"pay 10000", KEY, None))
        .await;
    let mut no_intent = refusal(unauthenticated, bare);
    if let Err(s) = n2
        .sign_share(request(&commitments, b"pay 10", KEY, Some(pay_10.clone())))
        .await
    {
        no_intent.push(format!(
            "the original message, its nonce unspent, refused: {s:?}"
        ));
    }
    attacks.judge("no intent", no_intent);
    // Another node's commitment passed off as node-4's.
    let mut forged = std::collections::BTreeMap::new();
    let theirs = commit(clients.get_mut("node-5").context("client")?, KEY).await?;
    forged.insert(ops.identifier("node-4")?, theirs);
    for id in ["node-1", "node-3"] {
        let c = clients.get_mut(id).context("client")?;
        forged.insert(ops.identifier(id)?, commit(c, KEY).await?);
    }
    let result = clients
        .get_mut("node-4")
        .context("client")?
        .sign_share(request(&forged, b"pay 10", KEY, Some(pay_10)))
        .await;
    attacks.judge("foreign commitment", refusal(precondition, result));
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
    attacks.judge("unlawful quorum", refusal(precondition, result));
    Ok(())
}

/// Polls `read` (a log) every 200 ms for at most `within` until `done` holds of
/// it; returns the last text read.
async fn poll_log<'a, F>(within: Duration, mut read: F, done: impl Fn(&str) -> bool) -> String
where
    F: FnMut() -> BoxFuture<'a, anyhow::Result<String>>,
{
    let started = Instant::now();
    loop {
        let text = read()
            .await
            .unwrap_or_else(|e| format!("(log unreadable: {e:#})"));
        if done(&text) || started.elapsed() > within {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The last `n` lines of `text`, for a failure message.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Restarts the coordinator that meets the rogue: a fresh one has nothing cached
/// and only the nodes' reports to go on, and connects to every node anew.
async fn restart_fresh_coordinator(ctx: &mut DrillCtx) -> anyhow::Result<()> {
    ctx.target.kill_coordinator(FRESH_COORDINATOR).await?;
    ctx.target.start_coordinator(FRESH_COORDINATOR).await
}

/// node-1 turns: in its place, a rogue with node-1's own certificate reports a
/// forged manifest of the demo key 28 times (unattested, attested in node-2's
/// name, and with its own valid attestation). A freshly started coordinator must
/// keep serving the true key, which still signs, and log why each report did not
/// count; the rogue must have been asked (else nothing was tested).
async fn forged_manifest(ctx: &mut DrillCtx, attacks: &mut Attacks) -> anyhow::Result<()> {
    let true_key = ctx
        .target
        .client(FRESH_COORDINATOR)?
        .public_key(KEY)
        .await?
        .public_key;
    let rogue = Rogue {
        presents: Party::Node(ROGUE_NODE.into()),
        forge_key: Some(KEY.into()),
    };
    ctx.target.start_rogue(ROGUE_NODE, &rogue).await?;
    restart_fresh_coordinator(ctx).await?;
    let mut failures = Vec::new();
    let client = ctx.target.client(FRESH_COORDINATOR)?;
    match client
        .raw()
        .get_public_key(quorate_wire::pb::GetPublicKeyRequest { key_id: KEY.into() })
        .await
    {
        Ok(a) if a.get_ref().public_key == true_key => {}
        Ok(_) => failures.push("the coordinator serves another public key".to_string()),
        Err(s) => failures.push(format!("GetPublicKey refused: {s:?}")),
    }
    // The client's own check of the attestation accepts what it serves.
    if let Err(s) = client.public_key(KEY).await {
        failures.push(format!("the client refused the served key: {s:?}"));
    }
    match client
        .sign_verified(KEY, b"attested", Duration::from_secs(5))
        .await
    {
        Ok(signed) if signed.public_key == true_key => {}
        Ok(_) => failures.push("signed under another public key".into()),
        Err(e) => failures.push(format!("signing with the true key failed: {e:#}")),
    }
    let target = &ctx.target;
    let rogue_log = poll_log(
        Duration::from_secs(10),
        || target.rogue_log(),
        |t| t.contains(ANSWERED),
    )
    .await;
    if !rogue_log.contains(ANSWERED) {
        failures.push(format!(
            "the coordinator never asked the rogue {ROGUE_NODE} for its keys (rogue: {})",
            tail(&rogue_log, 5)
        ));
    }
    // Each kind of report that does not count is named in the coordinator's log.
    let warned = |log: &str| -> Vec<&'static str> {
        let lines: Vec<&str> = log.lines().collect();
        let any = |f: &dyn Fn(&str) -> bool| lines.iter().any(|l| f(l));
        let mut missing = Vec::new();
        if !any(&|l| l.contains("does not count") && l.contains(ROGUE_NODE) && l.contains("node-2"))
        {
            missing.push("an attestation in node-2's name does not count");
        }
        if !any(&|l| l.contains(ROGUE_NODE) && l.contains("no attestation")) {
            missing.push("a report without attestation does not count");
        }
        if !any(&|l| l.contains(KEY) && l.contains("attested by 1 of its participants")) {
            missing.push("the forged manifest is attested by 1 participant");
        }
        missing
    };
    let log = poll_log(
        Duration::from_secs(10),
        || target.coordinator_log(FRESH_COORDINATOR),
        |t| warned(t).is_empty(),
    )
    .await;
    for missing in warned(&log) {
        failures.push(format!("the coordinator's log does not say that {missing}"));
    }
    attacks.judge("forged manifest", failures);
    Ok(())
}

/// A rogue at node-1's address presents the demo client's certificate (signed
/// by the CA, but not a server's). The freshly restarted coordinator must break
/// off every handshake with it (an alert, seen by the rogue) and complete none.
async fn client_certificate_as_node(
    ctx: &mut DrillCtx,
    attacks: &mut Attacks,
) -> anyhow::Result<()> {
    let rogue = Rogue {
        presents: Party::Client,
        forge_key: None,
    };
    ctx.target.start_rogue(ROGUE_NODE, &rogue).await?;
    restart_fresh_coordinator(ctx).await?;
    let client = ctx.target.client(FRESH_COORDINATOR)?;
    let target = &ctx.target;
    // Signing keeps the coordinator reaching for node-1 should discovery have
    // left it alone (rounds, then health probes).
    let mut log = String::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        log = target.rogue_log().await?;
        if log.contains(HANDSHAKE_FAILED) || log.contains(HANDSHAKE_COMPLETED) {
            break;
        }
        let _ = client.sign(KEY, b"pin", None, Duration::from_secs(2)).await;
    }
    let mut failures = Vec::new();
    let completed = log.matches(HANDSHAKE_COMPLETED).count();
    let refused = log
        .lines()
        .filter(|l| l.contains(HANDSHAKE_FAILED) && l.contains("alert"))
        .count();
    if completed > 0 {
        failures.push(format!(
            "the coordinator completed {completed} handshakes with a client certificate as {ROGUE_NODE}"
        ));
    }
    if refused == 0 {
        failures.push(format!(
            "no handshake refused by the coordinator within 20 s (rogue: {})",
            tail(&log, 5)
        ));
    }
    attacks.judge("client certificate as a node", failures);
    Ok(())
}

/// An impostor here presents the demo client's certificate as coordinator 0;
/// the client library, configured for that coordinator's name at the impostor's
/// address, must break off the handshake. Control: the coordinator's own
/// certificate on the same impostor completes one, so the refusal is the
/// certificate's doing.
async fn client_certificate_as_coordinator(
    ctx: &mut DrillCtx,
    attacks: &mut Attacks,
) -> anyhow::Result<()> {
    let target = &ctx.target;
    let impostor = Impostor::listen("127.0.0.1:0".parse()?, &target.tls(&Party::Client)?)?;
    let mut config = target.client_config(0)?;
    let name = target
        .coordinator_names()
        .into_iter()
        .next()
        .context("a coordinator")?;
    config.coordinators = vec![quorate_client::CoordinatorEntry::Named {
        endpoint: format!("https://{}", impostor.addr()),
        server_name: Some(name.clone()),
    }];
    let try_once = || async {
        let client = quorate_client::Client::new(&config)?;
        let listed = client.list_keys().await;
        anyhow::Ok((listed.is_ok(), impostor.recv(Duration::from_secs(5))))
    };
    let mut failures = Vec::new();
    match try_once().await? {
        (true, _) => failures.push("the client library listed keys from it".into()),
        (false, Some(Err(e))) if e.contains("alert") => {}
        (false, Some(Err(e))) => failures.push(format!(
            "the handshake failed, but not by the client's alert: {e}"
        )),
        (false, Some(Ok(()))) => failures.push(format!(
            "the client library completed a handshake with a client certificate as {name}"
        )),
        (false, None) => failures.push("the client library never connected".into()),
    }
    impostor.present(&target.tls(&Party::Coordinator(0))?)?;
    match try_once().await? {
        (_, Some(Ok(()))) => {}
        (_, other) => failures.push(format!(
            "control: {name}'s own certificate did not complete a handshake: {other:?}"
        )),
    }
    attacks.judge("client certificate as a coordinator", failures);
    Ok(())
}
