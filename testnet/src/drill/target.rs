//! [`DrillTarget`]: what a drill may do to a network, whichever network it is. The
//! local processes (`LocalTarget`) and the compose testnet (`ComposeTarget`) each
//! implement it once, so a drill is written once for both.
//!
//! Methods return boxed futures so that the drills can hold a `dyn DrillTarget`
//! and one drill body serves both networks.

use std::time::Duration;

use futures::future::BoxFuture;
use quorate_ceremony::import::CeremonyFile;

use anyhow::Context;

use quorate_transport::tls::TlsPaths;

use crate::client::SignerClient;
use crate::network::{LocalNetwork, Termination};
use crate::probe::node_holds_key;

/// A party of the network whose certificate and key a drill may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Party {
    /// The node with this id.
    Node(String),
    /// Coordinator `i`.
    Coordinator(usize),
    /// The demo client.
    Client,
}

/// A rogue in a node's place: it presents `presents`' certificate; with
/// `forge_key` it serves as the node that certificate names, reporting a forged
/// manifest of that key, and without it only reports each TLS handshake
/// (`crate::rogue`).
#[derive(Clone, Debug)]
pub struct Rogue {
    /// Whose certificate it presents.
    pub presents: Party,
    /// The key whose manifest it forges, if it serves as a node.
    pub forge_key: Option<String>,
}

/// A network the drills can break and mend. Every `start_*`, `heal_node` and
/// `wipe_node` waits until what it started serves.
pub trait DrillTarget: Send + Sync + std::fmt::Debug {
    /// Node ids.
    fn node_ids(&self) -> Vec<String>;

    /// Coordinator names, in order.
    fn coordinator_names(&self) -> Vec<String>;

    /// Every key of the network (the load signs with the unrestricted ones).
    fn key_ids(&self) -> Vec<String>;

    /// A demo client of coordinator `i`.
    fn client(&self, i: usize) -> anyhow::Result<SignerClient>;

    /// The demo client's configuration for coordinator `i` alone (the load's
    /// clients: each keeps to its coordinator, so a drill sees what that one does).
    fn client_config(&self, i: usize) -> anyhow::Result<quorate_client::ClientConfig>;

    /// An approval token from the network's approver (its key in
    /// `DIR/approver/`) for an out-of-policy quorum on `key_id`.
    fn approve(&self, key_id: &str, valid_secs: u64, reason: &str) -> anyhow::Result<Vec<u8>>;

    /// The ceremony's view of the network (nodes, endpoints, the ceremony's
    /// certificate), for repairs run from here.
    fn ceremony(&self) -> anyhow::Result<CeremonyFile>;

    /// The TLS files (CA, certificate, key) of `party`, as the host reads them.
    fn tls(&self, party: &Party) -> anyhow::Result<TlsPaths>;

    /// The gRPC endpoint of node `id`, as the host reaches it.
    fn node_endpoint(&self, id: &str) -> anyhow::Result<String>;

    /// What coordinator `i` logged (since it last started, where the target can
    /// tell; its whole log otherwise).
    fn coordinator_log(&self, i: usize) -> BoxFuture<'_, anyhow::Result<String>>;

    /// Stops node `id` and puts `rogue` at its address, where the coordinators
    /// reach it as they reach the node; waits until it listens. One rogue at a
    /// time: an earlier one is removed first.
    fn start_rogue<'a>(
        &'a mut self,
        id: &'a str,
        rogue: &'a Rogue,
    ) -> BoxFuture<'a, anyhow::Result<()>>;

    /// What the rogue printed (`crate::rogue::serve`).
    fn rogue_log(&self) -> BoxFuture<'_, anyhow::Result<String>>;

    /// Removes the rogue, if any; the node it replaced stays stopped (start it,
    /// or let [`DrillTarget::restore_processes`] do it).
    fn stop_rogue(&mut self) -> BoxFuture<'_, anyhow::Result<()>>;

    /// How the rogue runs on this target, for the report.
    fn rogue_method(&self) -> &'static str;

    /// How a partition is made on this target, for the report.
    fn partition_method(&self) -> &'static str;

    /// How a node's state is destroyed on this target, for the report.
    fn wipe_method(&self) -> &'static str;

    /// Kills a node (SIGKILL / `docker kill`).
    fn kill_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Stops a node gracefully (SIGTERM / `docker stop`).
    fn stop_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Stops a node by SIGTERM alone (`docker stop -t`), waiting up to `bound` for
    /// it to exit by itself before it is killed; says which it was, and how long it
    /// took.
    fn terminate_node<'a>(
        &'a mut self,
        id: &'a str,
        bound: Duration,
    ) -> BoxFuture<'a, anyhow::Result<Termination>>;

    /// [`DrillTarget::terminate_node`] for coordinator `i`.
    fn terminate_coordinator(
        &mut self,
        i: usize,
        bound: Duration,
    ) -> BoxFuture<'_, anyhow::Result<Termination>>;

    /// Starts a stopped node and waits until it serves.
    fn start_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Cuts a node off from everyone.
    fn partition_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Undoes [`DrillTarget::partition_node`].
    fn heal_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Freezes a node in place (SIGSTOP / `docker pause`).
    fn pause_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Thaws a frozen node.
    fn resume_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Destroys a node's state (its store, every share it held) and starts it
    /// again empty, with the same identity, certificate and KEK; waits until it
    /// serves.
    fn wipe_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Kills coordinator `i`.
    fn kill_coordinator(&mut self, i: usize) -> BoxFuture<'_, anyhow::Result<()>>;

    /// Starts coordinator `i` and waits until it serves every key.
    fn start_coordinator(&mut self, i: usize) -> BoxFuture<'_, anyhow::Result<()>>;

    /// Removes a rogue and brings every node and coordinator back to running and
    /// serving (started, thawed, reconnected), whatever a drill did to them.
    fn restore_processes(&mut self) -> BoxFuture<'_, anyhow::Result<()>>;

    /// Ends the run: stops what the drills started, leaves alone what they found
    /// running.
    fn shutdown(&mut self) -> BoxFuture<'_, anyhow::Result<()>>;

    /// The local network, for the drills only local processes allow (rewriting a
    /// node's config, editing its store, the CA key, coordinator logs).
    fn local_network(&mut self) -> Option<&mut LocalNetwork> {
        None
    }

    /// The testnet's directory on this host (its administrators' keys are in
    /// `administrators/`).
    fn testnet_dir(&self) -> &std::path::Path;

    /// Repairs `node`'s share of `key_id` from t helpers, authorized by the
    /// network's administrators.
    fn repair_share<'a>(
        &'a self,
        key_id: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<quorate_ceremony::keygen::RepairOutcome>> {
        Box::pin(async move {
            crate::administrators::repair(self.testnet_dir(), &self.ceremony()?, key_id, node).await
        })
    }

    /// Rebuilds, by `repair` from t helpers, every share a node lacks of a key
    /// the other nodes hold (a node wiped by a drill that then failed). Returns
    /// what it repaired, `key_id@node`.
    fn repair_lost_shares(&self) -> BoxFuture<'_, anyhow::Result<Vec<String>>> {
        Box::pin(async move {
            let ceremony = self.ceremony()?;
            let mut repaired = Vec::new();
            for key_id in self.key_ids() {
                let mut lacking = Vec::new();
                for node in &ceremony.nodes {
                    if !node_holds_key(&ceremony.tls, node, &key_id).await? {
                        lacking.push(node.id.clone());
                    }
                }
                // A key no node holds is not ours to create here.
                if lacking.len() == ceremony.nodes.len() {
                    continue;
                }
                for node in lacking {
                    self.repair_share(&key_id, &node)
                        .await
                        .with_context(|| format!("repairing {node}'s share of {key_id}"))?;
                    repaired.push(format!("{key_id}@{node}"));
                }
            }
            Ok(repaired)
        })
    }

    /// Brings every node and coordinator back to running and serving, and every
    /// node back to holding every key. Runs between drills, so a drill that failed
    /// half way does not leave a crippled network to the next one.
    fn restore(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            self.restore_processes().await?;
            let repaired = self.repair_lost_shares().await?;
            if !repaired.is_empty() {
                eprintln!("restore: repaired lost shares {}", repaired.join(", "));
            }
            Ok(())
        })
    }
}
