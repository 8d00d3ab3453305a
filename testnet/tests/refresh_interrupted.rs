//! A refresh that removes node-5 from a 3-of-5 key, interrupted after each of its
//! steps (the ceremony killed: here a relay of the test's own that stops), leaves
//! a key that signs, and running the same plan again converges: it finishes what
//! every node stored, rolls back what only some did, and starts afresh what no
//! node stored. No old share is deleted before every remaining node has stored
//! its new one, and until every node has committed both epochs sign.

mod common;

use common::audit_log::records_of;
use common::refresh_relay::{refresh_plan, RefreshRelay};
use common::{ceremony_client, start_default, TestNetwork, DEADLINE};
use quorate_ceremony::keygen::{run_refresh, RefreshRequest};
use quorate_ceremony::plan::Plan;
use quorate_keys::manifest::Manifest;
use quorate_wire::pb;
use quorate_wire::pb::refresh_state_response::State;
use tonic::Code;

const KEY: &str = "demo-ed25519";

/// Where the relay stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stop {
    AfterRound1,
    AfterRound3,
    AfterTwoStaged,
    AfterThreeStaged,
    AfterAllStaged,
    AfterTwoCommitted,
    AfterAllCommitted,
}

/// Runs the refresh of `plan` step by step until `stop`.
async fn run_until(net: &TestNetwork, plan: &Plan, authorizations: &[Vec<u8>], stop: Stop) {
    let mut relay = RefreshRelay::new(net, plan.clone(), authorizations.to_vec()).await;
    let contributions = relay.round1().await;
    if stop == Stop::AfterRound1 {
        return;
    }
    relay.rounds_2_and_3(contributions).await;
    if stop == Stop::AfterRound3 {
        return;
    }
    let mut receipts = Vec::new();
    for i in 0..relay.clients.len() {
        if (i == 2 && stop == Stop::AfterTwoStaged) || (i == 3 && stop == Stop::AfterThreeStaged) {
            return;
        }
        receipts.push(relay.stage(i).await);
    }
    if stop == Stop::AfterAllStaged {
        return;
    }
    for i in 0..relay.clients.len() {
        if i == 2 && stop == Stop::AfterTwoCommitted {
            return;
        }
        relay.commit(i, &receipts).await;
    }
}

/// The manifest `node` holds now, or `None`.
async fn held(net: &TestNetwork, node: &str) -> Option<Manifest> {
    match ceremony_client(net, node)
        .await
        .get_manifest(pb::GetManifestRequest { key_id: KEY.into() })
        .await
    {
        Ok(nk) => Some(Manifest::decode(&nk.into_inner().manifest).unwrap()),
        Err(status) if status.code() == Code::NotFound => None,
        Err(status) => panic!("{node}: {status}"),
    }
}

async fn signs(net: &mut TestNetwork, what: &str) {
    net.restart_coordinator().await.unwrap();
    net.client()
        .await
        .unwrap()
        .sign_verified(KEY, what.as_bytes(), DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("{what}: the key does not sign: {e:#}"));
}

async fn interrupted_then_rerun(stop: Stop) {
    let mut net = start_default().await;
    let ceremony = net.ceremony().unwrap();
    let plan = refresh_plan(&ceremony, KEY, Some("node-5")).await;
    let authorizations = net.authorize(&plan).unwrap();
    let old = plan.manifest().clone();
    run_until(&net, &plan, &authorizations, stop).await;

    // Interrupted: the key signs, and node-5 still holds its share.
    signs(&mut net, &format!("interrupted {stop:?}")).await;
    assert!(held(&net, "node-5").await.is_some(), "{stop:?}");

    // The same plan again converges.
    let rerun = run_refresh(&ceremony, &plan, &authorizations).await;
    let remaining = ["node-1", "node-2", "node-3", "node-4"];
    if stop == Stop::AfterTwoStaged {
        // Two nodes stored their new share, two did not: rolled back.
        let err = rerun.expect_err("a refresh only half stored is rolled back");
        assert!(err.to_string().contains("rolled back"), "{err}");
        for node in remaining {
            assert_eq!(held(&net, node).await.unwrap().hash, old.hash, "{node}");
            let state = ceremony_client(&net, node)
                .await
                .refresh_state(pb::RefreshStateRequest {
                    setup: Some(plan.setup().pb.clone()),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                state.state(),
                State::None,
                "{node} still holds a staged share"
            );
        }
        assert!(held(&net, "node-5").await.is_some());
        // The abandoned refresh does not start again; a new plan runs.
        let again = run_refresh(&ceremony, &plan, &authorizations).await;
        assert!(
            again.is_err_and(|e| e.to_string().contains("abandoned")),
            "an abandoned refresh ran again"
        );
        let transcript = net
            .refresh(RefreshRequest {
                key_id: KEY.into(),
                remove_node: Some("node-5".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(transcript.participants.len(), 4);
    } else {
        rerun.unwrap_or_else(|e| panic!("{stop:?}: the rerun did not finish: {e}"));
    }
    // Converged: the four remaining nodes hold one refreshed manifest, node-5
    // none, and the key signs.
    let new = held(&net, "node-1").await.unwrap();
    assert_eq!(new.generation, old.generation + 1, "{stop:?}");
    assert_eq!(new.public_key.public_key, old.public_key.public_key);
    for node in remaining {
        assert_eq!(
            held(&net, node).await.unwrap().hash,
            new.hash,
            "{stop:?}: {node}"
        );
    }
    assert!(held(&net, "node-5").await.is_none(), "{stop:?}");
    signs(&mut net, &format!("converged after {stop:?}")).await;
}

#[tokio::test]
async fn a_refresh_interrupted_after_round_1_starts_afresh() {
    interrupted_then_rerun(Stop::AfterRound1).await;
}

#[tokio::test]
async fn a_refresh_interrupted_after_round_3_starts_afresh() {
    interrupted_then_rerun(Stop::AfterRound3).await;
}

#[tokio::test]
async fn a_refresh_stored_on_only_some_nodes_is_rolled_back() {
    interrupted_then_rerun(Stop::AfterTwoStaged).await;
}

#[tokio::test]
async fn a_refresh_stored_on_every_node_is_committed() {
    interrupted_then_rerun(Stop::AfterAllStaged).await;
}

#[tokio::test]
async fn a_refresh_committed_on_some_nodes_is_committed_on_the_rest() {
    interrupted_then_rerun(Stop::AfterTwoCommitted).await;
}

#[tokio::test]
async fn a_refresh_committed_everywhere_retires_the_removed_node() {
    interrupted_then_rerun(Stop::AfterAllCommitted).await;
}

/// A node restarted while its new share is staged keeps it staged (durable), and
/// the rerun commits it.
#[tokio::test]
async fn a_staged_share_survives_a_restart_and_is_committed_by_the_rerun() {
    let mut net = start_default().await;
    let ceremony = net.ceremony().unwrap();
    let plan = refresh_plan(&ceremony, KEY, None).await;
    let authorizations = net.authorize(&plan).unwrap();
    run_until(&net, &plan, &authorizations, Stop::AfterAllStaged).await;
    net.kill_node("node-2").await.unwrap();
    net.start_node("node-2").await.unwrap();
    run_refresh(&ceremony, &plan, &authorizations)
        .await
        .unwrap();
    let new = held(&net, "node-2").await.unwrap();
    assert_eq!(new.generation, plan.manifest().generation + 1);
    signs(&mut net, "after a restart while staged").await;
}

/// A refresh staged on every node cannot be run again under the same plan (which
/// would overwrite staged shares and make their receipts lie), and no node that
/// staged it abandons it: the only ways on are to commit it or, while some node
/// never stored its share, to roll it back.
#[tokio::test]
async fn a_staged_refresh_is_neither_run_again_nor_abandoned_by_a_node_that_stored_it() {
    let net = start_default().await;
    let ceremony = net.ceremony().unwrap();
    let plan = refresh_plan(&ceremony, KEY, Some("node-5")).await;
    let authorizations = net.authorize(&plan).unwrap();
    run_until(&net, &plan, &authorizations, Stop::AfterAllStaged).await;
    let mut node_1 = ceremony_client(&net, "node-1").await;
    let _ = node_1
        .abort(pb::AbortRequest {
            ceremony_id: plan.setup().ceremony_id().into(),
            reason: "test".into(),
        })
        .await;
    let again = node_1
        .dkg_round1(pb::DkgRound1Request {
            setup: Some(plan.setup().pb.clone()),
            authorizations: authorizations.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    assert!(again.message().contains("already"), "{again:?}");
    let abandon = node_1
        .abandon_refresh(pb::AbandonRefreshRequest {
            setup: Some(plan.setup().pb.clone()),
            authorizations: authorizations.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(abandon.code(), Code::FailedPrecondition, "{abandon:?}");
    assert!(abandon.message().contains("receipt"), "{abandon:?}");
    // Without the administrators' authorizations no node abandons anything.
    let plan_2 = refresh_plan(&ceremony, KEY, None).await;
    let unauthorized = ceremony_client(&net, "node-2")
        .await
        .abandon_refresh(pb::AbandonRefreshRequest {
            setup: Some(plan_2.setup().pb.clone()),
            authorizations: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        unauthorized.code(),
        Code::PermissionDenied,
        "{unauthorized:?}"
    );
    run_refresh(&ceremony, &plan, &authorizations)
        .await
        .unwrap();
}

/// Committed on two nodes, then one of the others loses its state (wiped): the
/// rerun does not roll back (a commit means every receipt existed); it commits the
/// rest with the receipts the committed nodes kept, names the wiped node, which is
/// then repaired, and the key signs.
#[tokio::test]
async fn a_refresh_committed_somewhere_is_never_rolled_back() {
    let mut net = start_default().await;
    let ceremony = net.ceremony().unwrap();
    let plan = refresh_plan(&ceremony, KEY, Some("node-5")).await;
    let authorizations = net.authorize(&plan).unwrap();
    run_until(&net, &plan, &authorizations, Stop::AfterTwoCommitted).await;
    net.wipe_node("node-4").await.unwrap();
    let err = run_refresh(&ceremony, &plan, &authorizations)
        .await
        .expect_err("node-4 holds no share of the refresh");
    assert!(
        err.to_string()
            .contains("committed on [node-1, node-2, node-3]")
            && err.to_string().contains("[node-4] hold no share"),
        "{err}"
    );
    let new = held(&net, "node-1").await.unwrap();
    assert_eq!(held(&net, "node-3").await.unwrap().hash, new.hash);
    assert!(held(&net, "node-5").await.is_none());
    let repaired = net.repair(KEY, "node-4").await.unwrap();
    assert_eq!(repaired.manifest_hash, hex::encode(new.hash));
    // Repaired onto the refreshed key: the rerun now finds nothing missing.
    run_refresh(&ceremony, &plan, &authorizations)
        .await
        .unwrap();
    signs(&mut net, "committed, then node-4 repaired").await;
}

/// The manifest hashes (hex) node `node`'s `sign_share` records name, oldest first.
fn signed_with(net: &TestNetwork, node: &str) -> Vec<String> {
    records_of(net, node)
        .into_iter()
        .filter(|r| r.event == "sign_share")
        .map(|r| {
            r.detail
                .split("manifest_sha256=")
                .nth(1)
                .unwrap_or_else(|| panic!("{node}: a share record names no manifest: {r:?}"))
                .to_string()
        })
        .collect()
}

/// Both epochs of a refresh sign until every node has committed: staged on all
/// five nodes and committed on node-1 and node-2 (which deleted their old
/// shares), with node-4 and node-5 down, the old epoch has one reachable holder
/// (node-3) and the new one three (node-1 and node-2 committed, node-3 staged):
/// the key signs, node-3 with its staged share. The rerun then commits the rest.
#[tokio::test]
async fn while_a_refresh_commits_a_staged_share_signs_in_the_new_epoch() {
    let mut net = start_default().await;
    let ceremony = net.ceremony().unwrap();
    let plan = refresh_plan(&ceremony, KEY, None).await;
    let authorizations = net.authorize(&plan).unwrap();
    let old = plan.manifest().clone();
    run_until(&net, &plan, &authorizations, Stop::AfterTwoCommitted).await;
    let new = held(&net, "node-1").await.unwrap();
    assert_eq!(new.generation, old.generation + 1);
    assert_eq!(held(&net, "node-3").await.unwrap().hash, old.hash);

    net.restart_coordinator().await.unwrap();
    let client = net.client().await.unwrap();
    // Clients are shown the generation three nodes hold as current, not the one
    // every node holds committed or staged.
    let served = client.public_key(KEY).await.unwrap();
    assert_eq!(Manifest::decode(&served.manifest).unwrap().hash, old.hash);
    net.pause_node("node-4").unwrap();
    net.pause_node("node-5").unwrap();
    let signed = client
        .sign_verified(KEY, b"both epochs sign", DEADLINE)
        .await;
    net.resume_node("node-4").unwrap();
    net.resume_node("node-5").unwrap();
    let signed = signed.unwrap_or_else(|e| panic!("the key does not sign mid-commit: {e:#}"));
    assert_eq!(signed.public_key, old.public_key.public_key);
    let mut signers = signed.response.signers.clone();
    signers.sort();
    assert_eq!(signers, ["node-1", "node-2", "node-3"]);
    // node-3's share came from its staged share, and its record says so.
    assert_eq!(
        signed_with(&net, "node-3").last(),
        Some(&hex::encode(new.hash)),
        "node-3 did not sign with the refresh's staged share"
    );

    run_refresh(&ceremony, &plan, &authorizations)
        .await
        .unwrap();
    for node in ["node-3", "node-4", "node-5"] {
        assert_eq!(held(&net, node).await.unwrap().hash, new.hash, "{node}");
    }
    signs(&mut net, "after the rerun committed the rest").await;
}

/// A node listed as holding a staged share it no longer holds (here node-3, whose
/// staged share is rolled back after the coordinator read the nodes' lists, as a
/// node that lies about it would look) costs the request a retry in the other
/// epoch, not the signature: the new epoch (three staged holders, as many
/// reachable as the old one, and newer) is tried first, node-3 answers that it
/// holds no share of it, and the old epoch signs.
#[tokio::test]
async fn a_node_without_the_staged_share_it_listed_costs_a_retry_not_the_signature() {
    let mut net = start_default().await;
    let ceremony = net.ceremony().unwrap();
    let plan = refresh_plan(&ceremony, KEY, None).await;
    let authorizations = net.authorize(&plan).unwrap();
    let old = plan.manifest().clone();
    let mut relay = RefreshRelay::new(&net, plan.clone(), authorizations.clone()).await;
    let contributions = relay.round1().await;
    relay.rounds_2_and_3(contributions).await;
    for i in 0..3 {
        relay.stage(i).await;
    }
    let new = relay.manifest.clone().unwrap();

    // node-4 never stored its share: it abandons the refresh (node-3 rolls its
    // staged share back on that, below). node-4 and node-5 then go down.
    let abandonment = ceremony_client(&net, "node-4")
        .await
        .abandon_refresh(pb::AbandonRefreshRequest {
            setup: Some(plan.setup().pb.clone()),
            authorizations: authorizations.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    net.stop_node("node-4").await.unwrap();
    net.stop_node("node-5").await.unwrap();
    // The coordinator reads the nodes' lists: both epochs have three reachable
    // holders (node-1 to node-3), and the newer goes first.
    net.restart_coordinator().await.unwrap();
    let client = net.client().await.unwrap();
    client.public_key(KEY).await.unwrap();
    let rolled_back = ceremony_client(&net, "node-3")
        .await
        .rollback_refresh(pb::RollbackRefreshRequest {
            setup: Some(plan.setup().pb.clone()),
            abandonment: Some(abandonment),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(rolled_back.dropped);

    let signed = client
        .sign_verified(KEY, b"one epoch fails, the other signs", DEADLINE)
        .await;
    let signed = signed.unwrap_or_else(|e| panic!("the key does not sign: {e:#}"));
    assert_eq!(signed.public_key, old.public_key.public_key);
    // The new epoch was tried (node-1 spent a nonce on it), then the old one
    // signed.
    let node_1 = signed_with(&net, "node-1");
    assert!(
        node_1.contains(&hex::encode(new.hash)),
        "the new epoch was never tried: {node_1:?}"
    );
    assert_eq!(node_1.last(), Some(&hex::encode(old.hash)));
    assert_eq!(
        signed_with(&net, "node-3").last(),
        Some(&hex::encode(old.hash))
    );
    // node-3 recorded why it gave no share in the new epoch.
    assert!(
        records_of(&net, "node-3")
            .iter()
            .any(|r| r.event == "sign_refused" && r.detail.contains("holds no share")),
        "node-3 did not record its refusal"
    );
}

/// A coordinator that last read the nodes before a refresh (its directory still
/// fresh, so it does not read them again by itself) signs right after the refresh
/// committed everywhere: the nodes answer that they hold no share of the old
/// manifest, and the coordinator reads them again and signs with the new one.
#[tokio::test]
async fn a_coordinator_that_read_the_nodes_before_a_refresh_signs_right_after_it() {
    let net = start_default().await;
    let client = net.client().await.unwrap();
    let before = client.public_key(KEY).await.unwrap();
    net.refresh(RefreshRequest {
        key_id: KEY.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let new = held(&net, "node-1").await.unwrap();
    assert_eq!(new.generation, 1);
    let signed = client
        .sign_verified(KEY, b"after the refresh", DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("the key does not sign after its refresh: {e:#}"));
    assert_eq!(signed.public_key, before.public_key);
    for node in &signed.response.signers {
        assert_eq!(
            signed_with(&net, node).last(),
            Some(&hex::encode(new.hash)),
            "{node}"
        );
    }
}
