//! The administrator quorum, played by an attacker holding the ceremony's
//! certificate against real nodes: every governed operation (escrow split,
//! refresh, retirement of a removed node's share, repair) with no, too few, forged
//! or misdirected administrator authorizations is refused by every node with
//! PERMISSION_DENIED and audited, and changes nothing; with two of the key's three
//! administrators it goes ahead and each node records who authorized it. A key's
//! custodians and policy change only by an authorized refresh, and a new key needs
//! administrators or the explicit opt-out.

mod common;

use common::audit_log::log_lines;
use common::refresh_relay::{refresh_plan, RefreshRelay};
use common::{ceremony_client, start_default, TestNetwork};
use quorate_ceremony::escrow::plan_split;
use quorate_ceremony::import::CeremonyFile;
use quorate_ceremony::keygen::{plan_refresh, plan_repair, RefreshRequest, RepairRequest};
use quorate_ceremony::plan::Plan;
use quorate_keys::audit::AuditRecord;
use quorate_keys::authorization::AdministratorKey;
use quorate_wire::pb;
use tonic::Code;

const KEY: &str = "demo-ed25519";

/// A repair of `node`'s share of [`KEY`] planned as the ceremony tool plans it.
async fn repair_plan(ceremony: &CeremonyFile, node: &str) -> Plan {
    plan_repair(
        ceremony,
        RepairRequest {
            key_id: KEY.into(),
            node: node.into(),
        },
    )
    .await
    .unwrap()
}

fn node_ids(net: &TestNetwork) -> Vec<String> {
    net.nodes.iter().map(|n| n.spec.id.clone()).collect()
}

/// The `operation_refused` / `operation_authorized` records of `node_id`.
fn governance_records(net: &TestNetwork, node_id: &str) -> Vec<AuditRecord> {
    log_lines(net, node_id)
        .1
        .iter()
        .map(|l| serde_json::from_str::<AuditRecord>(l).unwrap())
        .filter(|r| r.event.starts_with("operation_"))
        .collect()
}

/// What an attacker with the ceremony certificate can offer as authorizations of
/// `plan`, each of which a node must refuse: none; one administrator's where the
/// policy needs two; one administrator's twice; two made with keys of the
/// attacker's own; two genuine ones of another setup of the same key.
fn bad_authorizations(
    net: &TestNetwork,
    plan: &Plan,
    other: &Plan,
) -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let genuine = net.authorize(plan).unwrap();
    let mallory = AdministratorKey::generate();
    let trudy = AdministratorKey::generate();
    vec![
        ("none", Vec::new()),
        ("one of two", genuine[..1].to_vec()),
        (
            "one administrator twice",
            vec![genuine[0].clone(), genuine[0].clone()],
        ),
        (
            "forged",
            vec![plan.authorize(&mallory, 600), plan.authorize(&trudy, 600)],
        ),
        ("another setup", net.authorize(other).unwrap()),
    ]
}

fn assert_refused(what: &str, result: Result<impl std::fmt::Debug, tonic::Status>) {
    let status = result.expect_err(what);
    assert_eq!(status.code(), Code::PermissionDenied, "{what}: {status:?}");
    assert!(
        status.message().contains("not authorized"),
        "{what}: {status:?}"
    );
}

#[tokio::test]
async fn every_governed_operation_needs_two_of_the_three_administrators() {
    let net = start_default().await;
    let ceremony = net.ceremony().unwrap();
    let ids = node_ids(&net);

    // Escrow split: the attack of the issue, now with the manifest's custodians
    // fixed, is the ceremony certificate alone asking every node for its parts.
    let split = plan_split(&ceremony, KEY, &ids).await.unwrap();
    let other_split = plan_split(&ceremony, KEY, &ids).await.unwrap();
    for node in &ids {
        let mut client = ceremony_client(&net, node).await;
        let answer = client
            .escrow_split(pb::EscrowSplitRequest {
                key_id: KEY.into(),
                ..Default::default()
            })
            .await;
        assert_refused(&format!("{node}: split without a setup"), answer);
        for (what, authorizations) in bad_authorizations(&net, &split, &other_split) {
            let answer = client
                .escrow_split(pb::EscrowSplitRequest {
                    key_id: KEY.into(),
                    setup: Some(split.setup().pb.clone()),
                    authorizations,
                    ..Default::default()
                })
                .await;
            assert_refused(&format!("{node}: split, {what}"), answer);
        }
        // A split setup naming the nodes elsewhere than the manifest does (what an
        // administrator would be shown) is not this key's split.
        let mut misplaced = split.setup().pb.clone();
        misplaced.participants[0].jurisdiction = "XX".into();
        let answer = client
            .escrow_split(pb::EscrowSplitRequest {
                key_id: KEY.into(),
                setup: Some(misplaced),
                authorizations: net.authorize(&split).unwrap(),
                ..Default::default()
            })
            .await
            .expect_err("a misplaced node");
        assert_eq!(answer.code(), Code::InvalidArgument, "{node}: {answer:?}");
        // Each refusal is in the node's audit log, with why.
        let refused: Vec<AuditRecord> = governance_records(&net, node)
            .into_iter()
            .filter(|r| r.event == "operation_refused" && r.key_id == KEY)
            .collect();
        assert_eq!(refused.len(), 6, "{node}: {refused:?}");
        assert!(
            refused[0].caller.ends_with("/ceremony/testnet"),
            "{:?}",
            refused[0]
        );
        for (record, says) in refused[1..].iter().zip([
            "0 of the key's administrators authorized",
            "1 of the key's administrators authorized",
            "1 of the key's administrators authorized",
            "not an administrator of this key",
            "is for escrow-split",
        ]) {
            assert!(
                record.detail.contains(says),
                "{node}: {says}: {}",
                record.detail
            );
        }
    }

    // Refresh: no node starts the ceremony (no session: round 2 finds none).
    let refresh = refresh_plan(&ceremony, KEY, None).await;
    let other_refresh = refresh_plan(&ceremony, KEY, None).await;
    for node in &ids {
        let mut client = ceremony_client(&net, node).await;
        for (what, authorizations) in bad_authorizations(&net, &refresh, &other_refresh) {
            let answer = client
                .dkg_round1(pb::DkgRound1Request {
                    setup: Some(refresh.setup().pb.clone()),
                    authorizations,
                })
                .await;
            assert_refused(&format!("{node}: refresh, {what}"), answer);
        }
        let status = client
            .dkg_round2(pb::DkgRound2Request {
                ceremony_id: refresh.setup().ceremony_id().into(),
                contributions: Vec::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::FailedPrecondition,
            "{node}: {status:?}"
        );
    }

    // Retirement: a refresh without node-5, offered to node-5 as if it had run.
    let removal = refresh_plan(&ceremony, KEY, Some("node-5")).await;
    let other_removal = refresh_plan(&ceremony, KEY, Some("node-5")).await;
    let mut node_5 = ceremony_client(&net, "node-5").await;
    for (what, authorizations) in bad_authorizations(&net, &removal, &other_removal) {
        let answer = node_5
            .retire_key(pb::RetireKeyRequest {
                ceremony_id: removal.setup().ceremony_id().into(),
                setup: Some(removal.setup().pb.clone()),
                manifest: Vec::new(),
                authorizations,
                receipts: Vec::new(),
            })
            .await;
        assert_refused(&format!("retire, {what}"), answer);
    }

    // Repair: every helper refuses to start.
    let repair = repair_plan(&ceremony, "node-5").await;
    let other_repair = repair_plan(&ceremony, "node-5").await;
    for helper in repair.setup().participant_ids() {
        let mut client = ceremony_client(&net, &helper).await;
        for (what, authorizations) in bad_authorizations(&net, &repair, &other_repair) {
            let answer = client
                .repair_start(pb::RepairStartRequest {
                    setup: Some(repair.setup().pb.clone()),
                    authorizations,
                })
                .await;
            assert_refused(&format!("{helper}: repair, {what}"), answer);
        }
    }

    // Nothing changed: every node holds the key as before, node-5 included.
    for node in &ids {
        let held = ceremony_client(&net, node)
            .await
            .get_manifest(pb::GetManifestRequest { key_id: KEY.into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            quorate_wire::sha256(&held.manifest).as_slice(),
            split.setup().pb.manifest_hash.as_slice(),
            "{node}"
        );
    }

    // Two of the three administrators: the split goes ahead, and each node
    // records which two authorized it.
    let out = net.dir.path().join("escrow");
    let authorizations = net.authorize(&split).unwrap();
    let administrators: Vec<String> = quorate_testnet::administrators::public_keys(&net.net.dir)
        .unwrap()
        .iter()
        .take(2)
        .map(hex::encode)
        .collect();
    for node in ["node-1", "node-2"] {
        quorate_ceremony::escrow::split(
            &ceremony,
            quorate_ceremony::escrow::SplitRequest {
                key_id: KEY.into(),
                node_id: node.into(),
                out_dir: out.clone(),
                plan: Some(split.clone()),
                authorizations: authorizations.clone(),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{node}: {e}"));
        let authorized = governance_records(&net, node)
            .into_iter()
            .find(|r| r.event == "operation_authorized")
            .unwrap_or_else(|| panic!("{node} recorded no authorization"));
        assert_eq!(authorized.authorized_by, administrators, "{node}");
        assert!(
            authorized.detail.contains(split.setup().ceremony_id()),
            "{node}: {}",
            authorized.detail
        );
    }
}

/// A relay that collects the confirmations of a refresh removing node-5, has only
/// some of the remaining nodes store their new shares, and asks node-5 to delete
/// its share would leave the key short of holders: node-5 refuses until every
/// remaining node has signed a receipt for its stored share, then retires, and
/// the key signs.
#[tokio::test]
async fn a_removed_node_keeps_its_share_until_every_remaining_node_stored_its_new_one() {
    let mut net = start_default().await;
    let plan = refresh_plan(&net.ceremony().unwrap(), KEY, Some("node-5")).await;
    let authorizations = net.authorize(&plan).unwrap();
    let setup = plan.setup().pb.clone();
    let id = plan.setup().ceremony_id().to_string();
    let mut relay = RefreshRelay::new(&net, plan, authorizations.clone()).await;
    let contributions = relay.round1().await;
    relay.rounds_2_and_3(contributions).await;
    let manifest = relay.manifest.clone().unwrap();
    // node-1..3 store their new shares; node-4 has not (yet).
    let mut receipts = Vec::new();
    for i in 0..3 {
        receipts.push(relay.stage(i).await);
    }
    let mut node_5 = ceremony_client(&net, "node-5").await;
    let retire = |receipts: Vec<pb::Signed>| pb::RetireKeyRequest {
        ceremony_id: id.clone(),
        setup: Some(setup.clone()),
        manifest: manifest.encoded.clone(),
        authorizations: authorizations.clone(),
        receipts,
    };
    for (what, offered) in [
        ("no receipts", Vec::new()),
        ("three of four", receipts.clone()),
    ] {
        let status = node_5.retire_key(retire(offered)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status.message().contains("no receipt"),
            "{what}: {status:?}"
        );
        node_5
            .get_manifest(pb::GetManifestRequest { key_id: KEY.into() })
            .await
            .unwrap_or_else(|e| panic!("{what}: node-5 deleted its share: {e}"));
    }
    // A receipt of another node's presented twice is still one node's.
    let mut doubled = receipts.clone();
    doubled.push(receipts[0].clone());
    let status = node_5.retire_key(retire(doubled)).await.unwrap_err();
    assert!(status.message().contains("node-4"), "{status:?}");

    // node-4 stores its share too: now node-5 retires.
    receipts.push(relay.stage(3).await);
    node_5.retire_key(retire(receipts)).await.unwrap();
    let gone = node_5
        .get_manifest(pb::GetManifestRequest { key_id: KEY.into() })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    net.restart_coordinator().await.unwrap();
    net.kill_node("node-4").await.unwrap();
    let signed = net
        .client()
        .await
        .unwrap()
        .sign_verified(KEY, b"refreshed without node-5", common::DEADLINE)
        .await
        .unwrap();
    assert_eq!(signed.response.signers.len(), 3);
}

/// A refresh authorized by two administrators gives the key new custodians: its
/// manifest names them from then on (every node confirmed it), and an escrow
/// split encrypts to them and to no one else. The same refresh without
/// authorizations is refused.
#[tokio::test]
async fn custodians_change_only_by_an_authorized_refresh() {
    let mut net = start_default().await;
    let ceremony = net.ceremony().unwrap();
    let new_custodians = pb::KeyEscrow {
        threshold: 2,
        custodians: ["auditor-e", "trustee-f"]
            .iter()
            .map(|name| pb::EscrowCustodian {
                name: (*name).into(),
                age_recipient: age::x25519::Identity::generate().to_public().to_string(),
            })
            .collect(),
    };
    let change = RefreshRequest {
        key_id: KEY.into(),
        escrow: Some(new_custodians.clone()),
        ..Default::default()
    };
    let plan = plan_refresh(&ceremony, change.clone()).await.unwrap();
    let refused = quorate_ceremony::keygen::run_refresh(&ceremony, &plan, &[])
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("0 of the key's administrators authorized"),
        "{refused}"
    );
    let transcript = net.refresh(change).await.unwrap();
    let recorded = transcript
        .escrow
        .expect("the refresh's transcript names the custodians");
    assert_eq!(recorded.threshold, 2);
    assert_eq!(recorded.custodians[0].name, "auditor-e");
    net.restart_coordinator().await.unwrap();
    let out = net.dir.path().join("escrow");
    let split = net.escrow_split(KEY, "node-3", &out).await.unwrap();
    assert_eq!(
        split.custodians,
        new_custodians
            .custodians
            .iter()
            .map(|c| (c.name.clone(), c.age_recipient.clone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(split.threshold, 2);
}

/// Every node refuses to create a key whose policy lists no administrators unless
/// its creator opted out explicitly.
#[tokio::test]
async fn a_new_key_needs_administrators_or_the_explicit_opt_out() {
    let net = start_default().await;
    let ceremony = net.ceremony().unwrap();
    let dkg = |policy: Option<pb::KeyPolicy>| quorate_ceremony::keygen::DkgRequest {
        key_id: "new-key".into(),
        ciphersuite: quorate_frost::Ciphersuite::Ed25519,
        threshold: 3,
        policy,
        escrow: None,
    };
    let err = quorate_ceremony::keygen::run_dkg(&ceremony, dkg(None))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unsafe_no_administrators"),
        "{err}"
    );
    // Past the tool: a node shown such a setup refuses it itself.
    let setup = pb::CeremonySetup {
        version: 1,
        ceremony_id: "dkg-ungoverned".into(),
        kind: pb::CeremonyKind::Dkg as i32,
        key_id: "new-key".into(),
        ciphersuite: pb::Ciphersuite::Ed25519 as i32,
        threshold: 3,
        participants: net
            .nodes
            .iter()
            .map(|n| n.spec.manifest_participant())
            .collect(),
        created_at: "2026-01-01T00:00:00Z".into(),
        ..Default::default()
    };
    let status = ceremony_client(&net, "node-1")
        .await
        .dkg_round1(pb::DkgRound1Request {
            setup: Some(setup),
            authorizations: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("unsafe_no_administrators"),
        "{status:?}"
    );
    // Nor does a node install such a key's share as an import.
    let dealt = quorate_frost::Ciphersuite::Ed25519
        .ops()
        .split(None, &node_ids(&net), 3)
        .unwrap();
    let manifest = quorate_keys::manifest::encode(
        "new-key",
        quorate_frost::Ciphersuite::Ed25519,
        3,
        dealt.public_key_package.clone(),
        net.nodes
            .iter()
            .map(|n| n.spec.manifest_participant())
            .collect(),
        quorate_ceremony::transcript::now_rfc3339().unwrap(),
        None,
    );
    let status = ceremony_client(&net, "node-1")
        .await
        .install_key(pb::InstallKeyRequest {
            manifest,
            key_package: dealt.key_packages[0].1.expose_bytes().to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("unsafe_no_administrators"),
        "{status:?}"
    );
    // With the opt-out, the key is made, and its refresh needs no authorization.
    quorate_ceremony::keygen::run_dkg(
        &ceremony,
        dkg(Some(pb::KeyPolicy {
            unsafe_no_administrators: true,
            ..Default::default()
        })),
    )
    .await
    .unwrap();
    let plan = plan_refresh(
        &ceremony,
        RefreshRequest {
            key_id: "new-key".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    quorate_ceremony::keygen::run_refresh(&ceremony, &plan, &[])
        .await
        .unwrap();
    // Nobody governs it, so nobody may change its custodians or policy: the
    // ceremony certificate would otherwise escrow it to recipients of its own.
    for (what, change) in [
        (
            "custodians",
            RefreshRequest {
                key_id: "new-key".into(),
                escrow: Some(pb::KeyEscrow {
                    threshold: 2,
                    custodians: ["mallory", "trudy"]
                        .iter()
                        .map(|name| pb::EscrowCustodian {
                            name: (*name).into(),
                            age_recipient: age::x25519::Identity::generate()
                                .to_public()
                                .to_string(),
                        })
                        .collect(),
                }),
                ..Default::default()
            },
        ),
        (
            "policy",
            RefreshRequest {
                key_id: "new-key".into(),
                policy: Some(pb::KeyPolicy {
                    administrator_keys: vec![AdministratorKey::generate().public_key().to_vec()],
                    administrators_required: 1,
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
    ] {
        let plan = plan_refresh(&ceremony, change).await.unwrap();
        let err = quorate_ceremony::keygen::run_refresh(&ceremony, &plan, &[])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("never change"), "{what}: {err}");
    }
}
