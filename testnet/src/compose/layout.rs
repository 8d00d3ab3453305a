//! The compose testnet's layout, the one source of truth for it: which containers
//! run (a node per region, each alone on its own network segment; coordinators on
//! every segment), their fixed addresses and published ports, their volumes, and the
//! state directory bind-mounted into them. `yaml.rs` renders `docker-compose.yml`
//! from it, `setup.rs` writes configs for the same addresses, and `driver.rs` finds
//! containers by the same names.
//!
//! Containers reach each other by fixed IP address, not by service name: the images
//! hold statically linked glibc binaries, and static glibc cannot load the NSS
//! modules `getaddrinfo` needs for DNS, so a name lookup inside a container fails.
//! TLS still checks names: every connection presents the peer's name (`node-1`,
//! `coordinator-1`) as the TLS server name, and certificates carry those names.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use quorate_transport::tls::TlsPaths;

use crate::spec::{NetworkSpec, NodeSpec};

/// The image every container runs (built by `testnet/build-images.sh`).
pub const IMAGE: &str = "quorate-testnet:dev";

/// Port every node listens on inside its container.
pub const NODE_PORT: u16 = 7000;
/// Port every coordinator listens on inside its container.
pub const COORDINATOR_PORT: u16 = 7443;

/// Where the shared state directory (next to the compose file, bind-mounted) is
/// mounted inside containers.
pub const STATE_MOUNT: &str = "/quorate";
/// The state directory's name, relative to the compose file.
pub const STATE_DIR: &str = ".compose-state";

/// The state subdirectory holding one policy file per policy key
/// (`policies/KEY.toml`), written by `compose-setup` and mounted read-only into the
/// `keys` container. Policies are public: they hold the approver's public key only.
pub const POLICIES_DIR: &str = "policies";

/// A node container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComposeNode {
    /// Node id, region, jurisdiction.
    pub spec: NodeSpec,
    /// Its segment number (1-based): the third octet of its subnet.
    pub segment: u8,
}

impl ComposeNode {
    /// Compose service name (also its host name and certificate name).
    pub fn service(&self) -> String {
        self.spec.id.clone()
    }
    /// Container name: the node named for its region and jurisdiction.
    pub fn container(&self) -> String {
        format!(
            "quorate-{}-{}-{}",
            self.spec.id,
            self.spec.region,
            self.spec.jurisdiction.to_lowercase()
        )
    }
    /// Docker network of its segment (it is the only node on it).
    pub fn network(&self) -> String {
        format!("quorate-{}", self.spec.region)
    }
    /// Compose's key for that network.
    pub fn network_key(&self) -> String {
        format!("seg-{}", self.spec.region)
    }
    /// Subnet of its segment.
    pub fn subnet(&self) -> String {
        format!("172.29.{}.0/24", self.segment)
    }
    /// Its fixed address.
    pub fn ip(&self) -> String {
        format!("172.29.{}.10", self.segment)
    }
    /// Its gRPC endpoint (reachable from coordinators, the ceremony, and on Linux
    /// from the docker host).
    pub fn endpoint(&self) -> String {
        format!("https://{}:{NODE_PORT}", self.ip())
    }
    /// Named volume holding its store.
    pub fn volume(&self) -> String {
        format!("quorate-{}-data", self.spec.id)
    }
}

/// A coordinator container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComposeCoordinator {
    /// `coordinator-1`, ...: service, container suffix and certificate name.
    pub name: String,
    /// Host octet of its address on every segment.
    pub host_octet: u8,
    /// Port published on the docker host's loopback.
    pub host_port: u16,
}

impl ComposeCoordinator {
    /// Container name.
    pub fn container(&self) -> String {
        format!("quorate-{}", self.name)
    }
    /// Its address on `node`'s segment.
    pub fn ip_on(&self, node: &ComposeNode) -> String {
        format!("172.29.{}.{}", node.segment, self.host_octet)
    }
    /// Endpoint for clients on the docker host (published port).
    pub fn host_endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.host_port)
    }
}

/// The whole compose network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComposeLayout {
    /// Nodes, keys, threshold, trust domain.
    pub spec: NetworkSpec,
    /// Node containers, one per segment.
    pub nodes: Vec<ComposeNode>,
    /// Coordinators, each attached to every segment.
    pub coordinators: Vec<ComposeCoordinator>,
    /// Host octet of the ceremony (`keys`) container on every segment.
    pub ceremony_octet: u8,
}

impl ComposeLayout {
    /// The default network's five regions, 3-of-5, with two coordinators.
    pub fn default_five_regions() -> Self {
        // The local testnet's keys, the EU-policy key included.
        let spec = NetworkSpec::default_five_regions();
        let nodes = spec
            .nodes
            .iter()
            .zip(1u8..)
            .map(|(n, segment)| ComposeNode {
                spec: n.clone(),
                segment,
            })
            .collect();
        let coordinators = (1u8..=2)
            .map(|i| ComposeCoordinator {
                name: format!("coordinator-{i}"),
                host_octet: 20 + i,
                host_port: 17440 + u16::from(i),
            })
            .collect();
        Self {
            spec,
            nodes,
            coordinators,
            ceremony_octet: 30,
        }
    }

    /// The node named `id`.
    pub fn node(&self, id: &str) -> anyhow::Result<&ComposeNode> {
        self.nodes
            .iter()
            .find(|n| n.spec.id == id)
            .ok_or_else(|| anyhow!("no node {id}"))
    }
}

/// TLS files of one party inside its own state subdirectory.
pub fn party_tls(dir: &Path) -> TlsPaths {
    TlsPaths {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    }
}

/// The policy file of `key` in the state directory `dir`.
pub fn policy_path(dir: &Path, key_id: &str) -> PathBuf {
    dir.join(POLICIES_DIR).join(format!("{key_id}.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_has_its_own_segment_and_address() {
        let layout = ComposeLayout::default_five_regions();
        let mut networks: Vec<String> = layout.nodes.iter().map(ComposeNode::network).collect();
        networks.dedup();
        assert_eq!(networks.len(), 5);
        let mut ips: Vec<String> = layout.nodes.iter().map(ComposeNode::ip).collect();
        ips.dedup();
        assert_eq!(ips.len(), 5);
        assert_eq!(
            layout.nodes[0].container(),
            "quorate-node-1-eu-central-sov-eu"
        );
    }
}
