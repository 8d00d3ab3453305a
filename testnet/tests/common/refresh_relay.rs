//! A refresh relayed step by step by the test itself, with the ceremony's
//! certificate: what the ceremony tool does, stopped (or misused) wherever a test
//! needs (governance, refresh_interrupted).

use prost::Message;
use quorate_ceremony::import::CeremonyFile;
use quorate_ceremony::keygen::{plan_refresh, RefreshRequest};
use quorate_ceremony::plan::Plan;
use quorate_keys::manifest::Manifest;
use quorate_testnet::network::LocalNetwork;
use quorate_wire::pb;
use quorate_wire::pb::ceremony_client::CeremonyClient;
use tonic::transport::Channel;

use super::ceremony_client;

/// A refresh of `key_id` planned as the ceremony tool plans it, removing `remove`.
pub async fn refresh_plan(ceremony: &CeremonyFile, key_id: &str, remove: Option<&str>) -> Plan {
    plan_refresh(
        ceremony,
        RefreshRequest {
            key_id: key_id.into(),
            remove_node: remove.map(String::from),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// The refresh of a plan, on the nodes it keeps (in setup order).
pub struct RefreshRelay {
    pub plan: Plan,
    pub authorizations: Vec<Vec<u8>>,
    pub clients: Vec<CeremonyClient<Channel>>,
    pub confirmations: Vec<pb::Signed>,
    /// The refreshed manifest, once round 3 is done.
    pub manifest: Option<Manifest>,
}

impl RefreshRelay {
    pub async fn new(net: &LocalNetwork, plan: Plan, authorizations: Vec<Vec<u8>>) -> Self {
        let mut clients = Vec::new();
        for node in plan.setup().participant_ids() {
            clients.push(ceremony_client(net, &node).await);
        }
        Self {
            plan,
            authorizations,
            clients,
            confirmations: Vec::new(),
            manifest: None,
        }
    }

    fn id(&self) -> String {
        self.plan.setup().ceremony_id().to_string()
    }

    /// Round 1 on every node; the contributions.
    pub async fn round1(&mut self) -> Vec<pb::Signed> {
        let mut contributions = Vec::new();
        for c in &mut self.clients {
            let req = pb::DkgRound1Request {
                setup: Some(self.plan.setup().pb.clone()),
                authorizations: self.authorizations.clone(),
            };
            contributions.push(c.dkg_round1(req).await.unwrap().into_inner());
        }
        contributions
    }

    /// Rounds 2 and 3 after `round1`; keeps the confirmations and the manifest.
    pub async fn rounds_2_and_3(&mut self, contributions: Vec<pb::Signed>) {
        let id = self.id();
        let mut envelopes = Vec::new();
        for c in &mut self.clients {
            let req = pb::DkgRound2Request {
                ceremony_id: id.clone(),
                contributions: contributions.clone(),
            };
            envelopes.extend(c.dkg_round2(req).await.unwrap().into_inner().envelopes);
        }
        for (node, c) in self
            .plan
            .setup()
            .participant_ids()
            .iter()
            .zip(&mut self.clients)
        {
            let req = pb::DkgRound3Request {
                ceremony_id: id.clone(),
                envelopes: envelopes
                    .iter()
                    .filter(|e| &e.recipient == node)
                    .cloned()
                    .collect(),
            };
            self.confirmations
                .push(c.dkg_round3(req).await.unwrap().into_inner());
        }
        let first = pb::Confirmation::decode(self.confirmations[0].body.as_slice()).unwrap();
        self.manifest = Some(
            quorate_ceremony_protocol::setup::build_manifest(
                self.plan.setup(),
                Some(self.plan.manifest()),
                first.public_key_package,
            )
            .unwrap(),
        );
    }

    /// `DkgActivate` on node `i` (in setup order): it stages its share; its receipt.
    pub async fn stage(&mut self, i: usize) -> pb::Signed {
        let req = pb::DkgActivateRequest {
            ceremony_id: self.id(),
            manifest: self.manifest.as_ref().unwrap().encoded.clone(),
            confirmations: self.confirmations.clone(),
        };
        self.clients[i]
            .dkg_activate(req)
            .await
            .unwrap()
            .into_inner()
            .receipt
            .expect("an activation answers with a receipt")
    }

    /// `DkgCommit` on node `i` with `receipts`.
    pub async fn commit(&mut self, i: usize, receipts: &[pb::Signed]) {
        let req = pb::DkgCommitRequest {
            setup: Some(self.plan.setup().pb.clone()),
            manifest: self.manifest.as_ref().unwrap().encoded.clone(),
            receipts: receipts.to_vec(),
        };
        self.clients[i].dkg_commit(req).await.unwrap();
    }
}
