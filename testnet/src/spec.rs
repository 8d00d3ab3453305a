//! What a local network consists of, and `testnet.json`, the file that tells
//! clients and drills how to reach it (a contract:
//! docs/testnet.md, "The local testnet and `testnet.json`").

use std::path::PathBuf;

use quorate_frost::Ciphersuite;
use quorate_wire::pb;
use serde::{Deserialize, Serialize};

/// A signer node to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// Node id.
    pub id: String,
    /// Region tag.
    pub region: String,
    /// Jurisdiction tag.
    pub jurisdiction: String,
}

impl NodeSpec {
    /// The node as a key's manifest (or a ceremony's setup) names it.
    pub fn manifest_participant(&self) -> pb::ManifestParticipant {
        pb::ManifestParticipant {
            node_id: self.id.clone(),
            region: self.region.clone(),
            jurisdiction: self.jurisdiction.clone(),
        }
    }

    /// The node's location, as its certificate attests it.
    pub fn location(
        &self,
    ) -> Result<quorate_transport::identity::Location, quorate_transport::identity::IdentityError>
    {
        quorate_transport::identity::Location::new(&self.region, &self.jurisdiction)
    }
}

/// A key to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpec {
    /// Key id.
    pub key_id: String,
    /// Ciphersuite.
    pub ciphersuite: Ciphersuite,
    /// Residency and access policy; `None` for an unrestricted key. The network's
    /// approver key is added to its approvers.
    pub policy: Option<PolicySpec>,
}

impl KeySpec {
    /// An unrestricted key.
    pub fn new(key_id: &str, ciphersuite: Ciphersuite) -> Self {
        Self {
            key_id: key_id.into(),
            ciphersuite,
            policy: None,
        }
    }

    /// The same key with a policy.
    pub fn with_policy(mut self, policy: PolicySpec) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The policy a ceremony fixes with the key: its [`PolicySpec`] with the
    /// network's `approvers`, or none but its administrators for an unrestricted
    /// key; either way governed by the network's `administrators`, of whom
    /// [`crate::administrators::REQUIRED`] must authorize an operation.
    pub fn policy_pb(&self, approvers: &[[u8; 32]], administrators: &[[u8; 32]]) -> pb::KeyPolicy {
        match &self.policy {
            Some(p) => p.to_pb(approvers, administrators),
            None => PolicySpec::default().to_pb(&[], administrators),
        }
    }
}

/// A key policy in a network spec.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PolicySpec {
    /// Allowed client SPIFFE ids or prefixes; empty: any client.
    pub allowed_clients: Vec<String>,
    /// Home jurisdictions.
    pub home_jurisdictions: Vec<String>,
    /// Least home signers per quorum.
    pub min_home_signers: u32,
    /// Signatures per client per minute; 0: unlimited.
    pub rate_limit_per_minute: u32,
}

impl PolicySpec {
    /// At least `min` signers in `jurisdiction`.
    pub fn residency(jurisdiction: &str, min: u32) -> Self {
        Self {
            home_jurisdictions: vec![jurisdiction.into()],
            min_home_signers: min,
            ..Self::default()
        }
    }

    /// The policy a ceremony fixes with the key: this spec, with `approvers` (the
    /// network's approver public keys) permitted to approve out-of-policy quorums
    /// and `administrators` governing it. Both testnets build their policies here
    /// (through [`KeySpec::policy_pb`]), so a key's policy is the same on local
    /// processes and on compose.
    pub fn to_pb(&self, approvers: &[[u8; 32]], administrators: &[[u8; 32]]) -> pb::KeyPolicy {
        pb::KeyPolicy {
            allowed_clients: self.allowed_clients.clone(),
            home_jurisdictions: self.home_jurisdictions.clone(),
            min_home_signers: self.min_home_signers,
            approver_keys: approvers.iter().map(|k| k.to_vec()).collect(),
            rate_limit_per_minute: self.rate_limit_per_minute,
            approvals_required: 0,
            administrator_keys: administrators.iter().map(|k| k.to_vec()).collect(),
            administrators_required: crate::administrators::REQUIRED,
            unsafe_no_administrators: false,
        }
    }

    /// The `testnet.json` form: `{"home_jurisdiction": "EU", "min_home_signers": 2}`.
    pub fn to_testnet_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "home_jurisdiction": self.home_jurisdictions.join(","),
            "min_home_signers": self.min_home_signers,
        });
        if !self.allowed_clients.is_empty() {
            v["allowed_clients"] = serde_json::json!(self.allowed_clients);
        }
        v
    }
}

/// A whole network: nodes, threshold, keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkSpec {
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// Signer nodes.
    pub nodes: Vec<NodeSpec>,
    /// Signers needed per key.
    pub threshold: u16,
    /// Keys, each shared by every node.
    pub keys: Vec<KeySpec>,
}

impl NetworkSpec {
    /// The default network (docs/testnet.md): five regions, 3-of-5, demo keys.
    pub fn default_five_regions() -> Self {
        let node = |i: usize, region: &str, jurisdiction: &str| NodeSpec {
            id: format!("node-{i}"),
            region: region.into(),
            jurisdiction: jurisdiction.into(),
        };
        Self {
            trust_domain: "quorate.test".into(),
            nodes: vec![
                node(1, "eu-central-sov", "EU"),
                node(2, "eu-west-sov", "EU"),
                node(3, "eu-onprem", "EU"),
                node(4, "us-east", "US"),
                node(5, "ap-southeast", "SG"),
            ],
            threshold: 3,
            keys: vec![
                KeySpec::new("demo-ed25519", Ciphersuite::Ed25519),
                KeySpec::new("demo-taproot", Ciphersuite::Secp256k1Tr),
                KeySpec::new("demo-secp256k1", Ciphersuite::Secp256k1),
                KeySpec::new("eu-payments", Ciphersuite::Ed25519)
                    .with_policy(PolicySpec::residency("EU", 2)),
            ],
        }
    }

    /// `n` nodes in generic regions (odd ones EU, even ones US), threshold `t`, one
    /// unrestricted key per ciphersuite.
    pub fn generic(n: usize, t: u16) -> Self {
        let mut spec = Self::default_five_regions();
        spec.keys.retain(|k| k.policy.is_none());
        spec.nodes = (1..=n)
            .map(|i| NodeSpec {
                id: format!("node-{i}"),
                region: format!("region-{i}"),
                jurisdiction: if i % 2 == 1 { "EU".into() } else { "US".into() },
            })
            .collect();
        spec.threshold = t;
        spec
    }
}

/// `testnet.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TestnetJson {
    /// `https://127.0.0.1:PORT` of the coordinator.
    pub coordinator: String,
    /// Name the coordinator's certificate is issued for.
    pub server_name: String,
    /// CA certificate.
    pub ca: PathBuf,
    /// Client certificate (role `client`).
    pub client_cert: PathBuf,
    /// Client private key.
    pub client_key: PathBuf,
    /// Signer nodes.
    pub nodes: Vec<TestnetNode>,
    /// Keys.
    pub keys: Vec<TestnetKey>,
    /// Every coordinator, when there is more than one (the first is `coordinator`);
    /// any of them can serve any request. Absent for a single-coordinator network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coordinators: Vec<TestnetCoordinator>,
}

/// A coordinator in `testnet.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TestnetCoordinator {
    /// `https://HOST:PORT`.
    pub endpoint: String,
    /// Name its certificate is issued for.
    pub server_name: String,
}

/// A node in `testnet.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TestnetNode {
    /// Node id.
    pub id: String,
    /// `https://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Region tag.
    pub region: String,
    /// Jurisdiction tag.
    pub jurisdiction: String,
    /// Process id.
    pub pid: u32,
}

/// A key in `testnet.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TestnetKey {
    /// Key id.
    pub key_id: String,
    /// `ED25519`, `SECP256K1` or `SECP256K1_TR`.
    pub ciphersuite: String,
    /// The key's residency policy, `null` when unrestricted.
    pub policy: Option<serde_json::Value>,
}

impl TestnetJson {
    /// Reads `DIR/testnet.json`. Relative certificate paths are taken relative to
    /// DIR: the compose testnet writes its file from inside a container, where the
    /// host's absolute path is unknown.
    pub fn read(dir: &std::path::Path) -> anyhow::Result<Self> {
        let path = dir.join("testnet.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!("cannot read {}: {e} (is the testnet up?)", path.display())
        })?;
        let mut json: Self = serde_json::from_str(&text)?;
        for p in [&mut json.ca, &mut json.client_cert, &mut json.client_key] {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
        Ok(json)
    }
}
