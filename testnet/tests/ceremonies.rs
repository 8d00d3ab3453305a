//! Key ceremonies over real node processes: DKG for every ciphersuite and several
//! t-of-n, a malicious relay driving the node RPCs itself, refresh and repair.

mod common;

use std::time::Duration;

use common::{start, DEADLINE};
use prost::Message;
use quorate_ceremony::import::Transcript;
use quorate_ceremony::keygen::RefreshRequest;
use quorate_ceremony::pki;
use quorate_keys::manifest::Manifest;
use quorate_testnet::network::LocalNetwork;
use quorate_testnet::spec::NetworkSpec;
use quorate_transport::identity::Role;
use quorate_wire::pb;
use quorate_wire::pb::ceremony_client::CeremonyClient;
use tonic::transport::Channel;
use tonic::Code;

/// Every demo key of a network (one per ciphersuite) was made by DKG; each signs
/// through the coordinator with exactly `t` signers and verifies independently.
async fn dkg_keys_sign(n: usize, t: u16) {
    let net = start(NetworkSpec::generic(n, t)).await;
    let client = net.client().await.unwrap();
    for key in &net.spec.keys {
        let transcript = Transcript::read(&net.transcripts[&key.key_id]).unwrap();
        assert_eq!(transcript.kind, "dkg");
        assert_eq!(transcript.confirmations.len(), n);
        assert_eq!(transcript.participants.len(), n);
        assert!(transcript.round1_transcript_hash.is_some());
        // The fingerprint recorded is that of the certificate each node serves
        // (observed on the ceremony's own connection to it).
        for p in &transcript.participants {
            let pem = std::fs::read(net.tls_paths(Role::Node, &p.node_id).cert).unwrap();
            assert_eq!(
                p.certificate_fingerprint.as_deref(),
                Some(pki::fingerprint_pem(&pem).unwrap().as_str()),
                "{}",
                p.node_id
            );
        }
        let signed = client
            .sign_verified(&key.key_id, b"made by DKG", DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("{} ({n}, {t}): {e:#}", key.key_id));
        assert_eq!(signed.response.signers.len(), usize::from(t));
        assert_eq!(hex::encode(&signed.public_key), transcript.public_key);
    }
}

#[tokio::test]
async fn dkg_2_of_3_keys_of_every_ciphersuite_sign_and_verify_independently() {
    dkg_keys_sign(3, 2).await;
}

#[tokio::test]
async fn dkg_3_of_5_keys_of_every_ciphersuite_sign_and_verify_independently() {
    dkg_keys_sign(5, 3).await;
}

#[tokio::test]
async fn dkg_5_of_7_keys_of_every_ciphersuite_sign_and_verify_independently() {
    dkg_keys_sign(7, 5).await;
}

/// A relay of our own making: the ceremony certificate, calling node RPCs directly.
struct Relay {
    clients: Vec<(String, CeremonyClient<Channel>)>,
    participants: Vec<pb::ManifestParticipant>,
}

impl Relay {
    fn new(net: &LocalNetwork) -> Self {
        let tls = net.tls_paths(Role::Ceremony, "testnet").load().unwrap();
        let clients = net
            .nodes
            .iter()
            .map(|n| {
                let channel = tls
                    .node_channel(&n.endpoint, &n.spec.id, Duration::from_secs(2))
                    .unwrap();
                (n.spec.id.clone(), CeremonyClient::new(channel))
            })
            .collect();
        let participants = net
            .nodes
            .iter()
            .map(|n| n.spec.manifest_participant())
            .collect();
        Self {
            clients,
            participants,
        }
    }

    fn setup(&self, ceremony_id: &str, key_id: &str) -> pb::CeremonySetup {
        pb::CeremonySetup {
            version: 1,
            ceremony_id: ceremony_id.into(),
            kind: pb::CeremonyKind::Dkg as i32,
            key_id: key_id.into(),
            ciphersuite: pb::Ciphersuite::Ed25519 as i32,
            threshold: 2,
            participants: self.participants.clone(),
            policy: Some(pb::KeyPolicy {
                unsafe_no_administrators: true,
                ..Default::default()
            }),
            created_at: "2026-01-01T00:00:00Z".into(),
            manifest_hash: Vec::new(),
            repair_target: String::new(),
            escrow: None,
        }
    }

    async fn round1(&self, setup: &pb::CeremonySetup) -> Vec<pb::Signed> {
        let mut out = Vec::new();
        for (_, c) in &self.clients {
            let req = pb::DkgRound1Request {
                setup: Some(setup.clone()),
                authorizations: Vec::new(),
            };
            out.push(c.clone().dkg_round1(req).await.unwrap().into_inner());
        }
        out
    }

    async fn round2(
        &self,
        id: &str,
        i: usize,
        contributions: Vec<pb::Signed>,
    ) -> Result<Vec<pb::Envelope>, tonic::Status> {
        let req = pb::DkgRound2Request {
            ceremony_id: id.into(),
            contributions,
        };
        Ok(self.clients[i]
            .1
            .clone()
            .dkg_round2(req)
            .await?
            .into_inner()
            .envelopes)
    }

    /// Runs rounds 1-3 honestly; returns the confirmations.
    async fn to_round3(&self, id: &str, key_id: &str) -> Vec<pb::Signed> {
        let contributions = self.round1(&self.setup(id, key_id)).await;
        let mut envelopes = Vec::new();
        for i in 0..self.clients.len() {
            envelopes.extend(self.round2(id, i, contributions.clone()).await.unwrap());
        }
        let mut confirmations = Vec::new();
        for (node, c) in &self.clients {
            let req = pb::DkgRound3Request {
                ceremony_id: id.into(),
                envelopes: envelopes
                    .iter()
                    .filter(|e| &e.recipient == node)
                    .cloned()
                    .collect(),
            };
            confirmations.push(c.clone().dkg_round3(req).await.unwrap().into_inner());
        }
        confirmations
    }

    async fn holds(&self, key_id: &str) -> Vec<bool> {
        let mut out = Vec::new();
        for (_, c) in &self.clients {
            let r = c
                .clone()
                .get_manifest(pb::GetManifestRequest {
                    key_id: key_id.into(),
                })
                .await;
            out.push(r.is_ok());
        }
        out
    }
}

/// A node that signs a setup placing it elsewhere than its certificate (its own
/// software would refuse; its key is enough to forge one) is refused by every other
/// node: a participant's place is the one its CA attests.
#[tokio::test]
async fn a_setup_placing_a_node_elsewhere_than_its_certificate_is_refused_by_its_peers() {
    let net = start(NetworkSpec::generic(3, 2)).await;
    let mut relay = Relay::new(&net);
    // node-2's certificate attests region-2/US; the setup counts it in the EU.
    relay.participants[1].jurisdiction = "EU".into();
    let setup = relay.setup("liar-1", "k-liar");
    let hash = quorate_ceremony_protocol::setup::Setup::from_pb(setup.clone())
        .unwrap()
        .hash;
    let mut contributions = Vec::new();
    for i in [0, 2] {
        let req = pb::DkgRound1Request {
            setup: Some(setup.clone()),
            authorizations: Vec::new(),
        };
        let c = relay.clients[i].1.clone().dkg_round1(req).await.unwrap();
        contributions.push(c.into_inner());
    }
    let body = pb::Contribution {
        setup_hash: hash.to_vec(),
        node_id: "node-2".into(),
        envelope_key: vec![7; 32],
        round1_package: contributions[0].body.clone(),
    };
    let forged = net
        .tls_paths(Role::Node, "node-2")
        .load()
        .unwrap()
        .statement_signer()
        .unwrap()
        .sign(
            quorate_ceremony_protocol::setup::CONTRIBUTION,
            body.encode_to_vec(),
        )
        .unwrap();
    contributions.insert(1, forged);
    for i in [0, 2] {
        let err = relay
            .round2("liar-1", i, contributions.clone())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Aborted, "{err:?}");
        assert!(
            err.message().contains("node-2")
                && err.message().contains("certificate attests")
                && err.message().contains("\"US\""),
            "{}",
            err.message()
        );
    }
}

#[tokio::test]
async fn relay_that_alters_or_splits_round1_packages_is_caught_naming_the_party() {
    let net = start(NetworkSpec::generic(3, 2)).await;
    let relay = Relay::new(&net);

    // Tampering: node-1 gets node-2's round-1 package with one byte changed.
    let contributions = relay.round1(&relay.setup("tamper-1", "k-tamper")).await;
    let mut forged = contributions.clone();
    let mut body = pb::Contribution::decode(forged[1].body.as_slice()).unwrap();
    let last = body.round1_package.len() - 1;
    body.round1_package[last] ^= 1;
    forged[1].body = body.encode_to_vec();
    let err = relay.round2("tamper-1", 0, forged).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert!(err.message().contains("node-2"), "{}", err.message());
    assert!(err.message().contains("signature"), "{}", err.message());
    // The others go on, but cannot finish without node-1's round-2 packages.
    let mut envelopes = Vec::new();
    for i in 1..3 {
        envelopes.extend(
            relay
                .round2("tamper-1", i, contributions.clone())
                .await
                .unwrap(),
        );
    }
    for (node, c) in &relay.clients[1..] {
        let req = pb::DkgRound3Request {
            ceremony_id: "tamper-1".into(),
            envelopes: envelopes
                .iter()
                .filter(|e| &e.recipient == node)
                .cloned()
                .collect(),
        };
        let err = c.clone().dkg_round3(req).await.unwrap_err();
        assert!(err.message().contains("node-1"), "{}", err.message());
    }
    assert_eq!(relay.holds("k-tamper").await, [false, false, false]);

    // Splitting: node-1 gets node-2's genuine, signed contribution of a parallel
    // ceremony (another view of the same key).
    let a = relay.round1(&relay.setup("split-a", "k-split")).await;
    let b = relay.round1(&relay.setup("split-b", "k-split")).await;
    let mixed = vec![a[0].clone(), b[1].clone(), a[2].clone()];
    let err = relay.round2("split-a", 0, mixed).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert!(err.message().contains("node-2"), "{}", err.message());
    assert!(
        err.message().contains("another ceremony"),
        "{}",
        err.message()
    );
    assert_eq!(relay.holds("k-split").await, [false, false, false]);
}

#[tokio::test]
async fn activation_with_a_foreign_confirmation_or_another_manifest_fails_on_every_node() {
    let net = start(NetworkSpec::generic(3, 2)).await;
    let relay = Relay::new(&net);
    let a = relay.to_round3("conf-a", "k-conf").await;
    let b = relay.to_round3("conf-b", "k-conf").await;
    let first = pb::Confirmation::decode(a[0].body.as_slice()).unwrap();
    let setup =
        quorate_ceremony_protocol::setup::Setup::from_pb(relay.setup("conf-a", "k-conf")).unwrap();
    let manifest = quorate_ceremony_protocol::setup::build_manifest(
        &setup,
        None,
        first.public_key_package.clone(),
    )
    .unwrap()
    .encoded;
    // node-3's confirmation is swapped for its confirmation of the other ceremony:
    // genuinely signed by node-3, but of a different key.
    let split = vec![a[0].clone(), a[1].clone(), b[2].clone()];
    for (node, c) in &relay.clients {
        let req = pb::DkgActivateRequest {
            ceremony_id: "conf-a".into(),
            manifest: manifest.clone(),
            confirmations: split.clone(),
        };
        let err = c.clone().dkg_activate(req).await.unwrap_err();
        assert_eq!(err.code(), Code::Aborted, "{node}: {err:?}");
        assert!(
            err.message().contains("node-3"),
            "{node}: {}",
            err.message()
        );
    }
    assert_eq!(relay.holds("k-conf").await, [false, false, false]);
    // The state was dropped: a retry with the honest confirmations finds nothing.
    let req = pb::DkgActivateRequest {
        ceremony_id: "conf-a".into(),
        manifest: manifest.clone(),
        confirmations: a.clone(),
    };
    let err = relay.clients[0]
        .1
        .clone()
        .dkg_activate(req)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Ceremony b, with a manifest that is not the one the nodes computed.
    let mut other = pb::KeyManifest::decode(manifest.as_slice()).unwrap();
    other.created_at = "2030-01-01T00:00:00Z".into();
    let mut rejected = 0;
    for (node, c) in &relay.clients {
        let req = pb::DkgActivateRequest {
            ceremony_id: "conf-b".into(),
            manifest: other.encode_to_vec(),
            confirmations: b.clone(),
        };
        let err = c.clone().dkg_activate(req).await.unwrap_err();
        assert_eq!(err.code(), Code::Aborted, "{node}: {err:?}");
        rejected += 1;
    }
    assert_eq!(rejected, 3);
    assert_eq!(relay.holds("k-conf").await, [false, false, false]);
}

async fn manifest_of(relay: &Relay, i: usize, key_id: &str) -> Result<Manifest, tonic::Status> {
    let nk = relay.clients[i]
        .1
        .clone()
        .get_manifest(pb::GetManifestRequest {
            key_id: key_id.into(),
        })
        .await?
        .into_inner();
    Ok(Manifest::decode(&nk.manifest).unwrap())
}

#[tokio::test]
async fn refresh_keeps_the_group_key_replaces_every_share_and_drops_a_removed_node() {
    let mut net = start(NetworkSpec::generic(5, 3)).await;
    let relay = Relay::new(&net);
    for key in net.spec.keys.clone() {
        let before = manifest_of(&relay, 0, &key.key_id).await.unwrap();
        let transcript = net
            .refresh(RefreshRequest {
                key_id: key.key_id.clone(),
                remove_node: Some("node-5".into()),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", key.key_id));
        assert_eq!(transcript.kind, "refresh");
        assert_eq!(transcript.participants.len(), 4);
        for i in 0..4 {
            let after = manifest_of(&relay, i, &key.key_id).await.unwrap();
            assert_eq!(hex::encode(after.hash), transcript.manifest_hash);
            assert_eq!(after.public_key.public_key, before.public_key.public_key);
            assert_eq!(after.generation, before.generation + 1);
            // Every remaining node holds a new share: its verifying share changed.
            let id = &after.participants[i].node_id;
            assert_ne!(
                after.participant(id).unwrap().verifying_share,
                before.participant(id).unwrap().verifying_share,
                "{id}"
            );
            assert!(after.participant("node-5").is_none());
        }
        let gone = manifest_of(&relay, 4, &key.key_id).await.unwrap_err();
        assert_eq!(
            gone.code(),
            Code::NotFound,
            "node-5 still holds {}",
            key.key_id
        );
    }
    net.restart_coordinator().await.unwrap();
    let client = net.client().await.unwrap();
    // node-4 down: the quorum is node-1..3 with refreshed shares.
    net.kill_node("node-4").await.unwrap();
    for key in &net.spec.keys {
        let signed = client
            .sign_verified(&key.key_id, b"after refresh", DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", key.key_id));
        let transcript = Transcript::read(&net.transcripts[&key.key_id]).unwrap();
        assert_eq!(hex::encode(&signed.public_key), transcript.public_key);
    }
}

#[tokio::test]
async fn repair_restores_a_wiped_node_which_then_signs_in_a_quorum() {
    let mut net = start(NetworkSpec::generic(5, 3)).await;
    net.wipe_node("node-2").await.unwrap();
    let relay = Relay::new(&net);
    for key in net.spec.keys.clone() {
        assert_eq!(
            manifest_of(&relay, 1, &key.key_id)
                .await
                .unwrap_err()
                .code(),
            Code::NotFound
        );
        let outcome = net
            .repair(&key.key_id, "node-2")
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", key.key_id));
        assert_eq!(outcome.helpers.len(), 3);
        let repaired = manifest_of(&relay, 1, &key.key_id).await.unwrap();
        assert_eq!(hex::encode(repaired.hash), outcome.manifest_hash);
    }
    // Only node-1, node-2 and node-3 remain: node-2 must sign.
    net.kill_node("node-4").await.unwrap();
    net.kill_node("node-5").await.unwrap();
    let client = net.client().await.unwrap();
    for key in &net.spec.keys {
        let signed = client
            .sign_verified(&key.key_id, b"repaired", DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", key.key_id));
        assert!(signed.response.signers.contains(&"node-2".to_string()));
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A node's store copied aside before a refresh and written back after it (an old
/// backup restored): the node refuses the old epoch's share when it loads it,
/// naming the key, the record's epoch and the one its audit log last activated;
/// it stays down (exit 65) rather than sign with it, and the key signs through the
/// other nodes.
#[tokio::test]
async fn a_share_record_of_an_earlier_epoch_written_back_is_refused_at_load() {
    let mut net = start(NetworkSpec::generic(3, 2)).await;
    let relay = Relay::new(&net);
    let key_id = net.spec.keys[0].key_id.clone();
    let before = manifest_of(&relay, 1, &key_id).await.unwrap();
    let store = net.node("node-2").unwrap().data_dir.join("sled");
    let backup = tempfile::tempdir().unwrap();
    net.kill_node("node-2").await.unwrap();
    copy_dir(&store, &backup.path().join("sled"));
    net.start_node("node-2").await.unwrap();

    let transcript = net
        .refresh(RefreshRequest {
            key_id: key_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    net.restart_coordinator().await.unwrap();

    net.kill_node("node-2").await.unwrap();
    std::fs::remove_dir_all(&store).unwrap();
    copy_dir(&backup.path().join("sled"), &store);
    let refused = net
        .start_node("node-2")
        .await
        .expect_err("node-2 started with its share of the epoch before the refresh");
    let text = format!("{refused:#}");
    for needle in [
        "rolled back",
        key_id.as_str(),
        &hex::encode(before.hash),
        &transcript.manifest_hash,
        "exit status: 65",
    ] {
        assert!(text.contains(needle), "{needle:?} not in: {text}");
    }

    let client = net.client().await.unwrap();
    let signed = client
        .sign_verified(&key_id, b"after a rollback was refused", DEADLINE)
        .await
        .unwrap();
    assert!(!signed.response.signers.contains(&"node-2".to_string()));
}
