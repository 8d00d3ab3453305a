//! `DrillTarget::restore`, which runs between drills, puts the network back whole even
//! when a drill failed half way: here a node wiped and never repaired (drill 7
//! stopped by an error after the wipe) gets its shares back by repair.

mod common;

use common::{bin_dir, DEADLINE};
use quorate_testnet::drill::{DrillTarget, LocalTarget};
use quorate_testnet::network::LocalNetwork;
use quorate_testnet::probe::node_holds_key;
use quorate_testnet::spec::NetworkSpec;

#[tokio::test]
async fn restore_repairs_every_share_of_a_node_a_drill_wiped_and_left() {
    let dir = tempfile::tempdir().unwrap();
    let net = LocalNetwork::start(
        &dir.path().join("net"),
        &bin_dir(),
        NetworkSpec::default_five_regions(),
    )
    .await
    .unwrap();
    let mut target = LocalTarget::new(net);
    let keys = target.key_ids();
    assert_eq!(keys.len(), 4, "the EU key too");
    target.wipe_node("node-3").await.unwrap();

    let ceremony = target.ceremony().unwrap();
    let node_3 = ceremony.nodes.iter().find(|n| n.id == "node-3").unwrap();
    for key_id in &keys {
        assert!(
            !node_holds_key(&ceremony.tls, node_3, key_id).await.unwrap(),
            "the wipe left {key_id} on node-3"
        );
    }

    target.restore().await.unwrap();
    for node in &ceremony.nodes {
        for key_id in &keys {
            assert!(
                node_holds_key(&ceremony.tls, node, key_id).await.unwrap(),
                "{} lacks {key_id} after restore",
                node.id
            );
        }
    }
    // A second restore finds nothing to do.
    assert!(target.repair_lost_shares().await.unwrap().is_empty());

    // And the repaired node signs: with node-4 and node-5 frozen it must be in
    // every quorum.
    target.pause_node("node-4").await.unwrap();
    target.pause_node("node-5").await.unwrap();
    let client = target.client(0).unwrap();
    let signed = client
        .sign_verified("demo-ed25519", b"after restore", DEADLINE)
        .await
        .unwrap();
    assert!(signed.response.signers.iter().any(|s| s == "node-3"));
    target.resume_node("node-4").await.unwrap();
    target.resume_node("node-5").await.unwrap();
    target.shutdown().await.unwrap();
}
