//! [`ComposeTarget`]: the drills' view of the running docker-compose testnet. A
//! partition is real here (`docker network disconnect` of the node's only segment).

use futures::future::BoxFuture;
use quorate_ceremony::import::CeremonyFile;

use super::target::DrillTarget;
use crate::client::SignerClient;
use crate::compose::ComposeNetwork;

/// The compose testnet as a drill target.
#[derive(Debug)]
pub struct ComposeTarget {
    network: ComposeNetwork,
}

impl ComposeTarget {
    /// Drills against `network`; it is left running afterwards.
    pub fn new(network: ComposeNetwork) -> Self {
        Self { network }
    }
}

impl DrillTarget for ComposeTarget {
    fn node_ids(&self) -> Vec<String> {
        let layout = &self.network.layout;
        layout.nodes.iter().map(|n| n.spec.id.clone()).collect()
    }

    fn coordinator_names(&self) -> Vec<String> {
        let layout = &self.network.layout;
        layout.coordinators.iter().map(|c| c.name.clone()).collect()
    }

    fn key_ids(&self) -> Vec<String> {
        let spec = &self.network.layout.spec;
        spec.keys.iter().map(|k| k.key_id.clone()).collect()
    }

    fn client(&self, i: usize) -> anyhow::Result<SignerClient> {
        self.network.coordinator_client(i)
    }

    fn client_config(&self, i: usize) -> anyhow::Result<quorate_client::ClientConfig> {
        self.network.coordinator_client_config(i)
    }

    fn approve(&self, key_id: &str, valid_secs: u64, reason: &str) -> anyhow::Result<Vec<u8>> {
        self.network.approve(key_id, valid_secs, reason)
    }

    fn ceremony(&self) -> anyhow::Result<CeremonyFile> {
        self.network.ceremony()
    }

    fn partition_method(&self) -> &'static str {
        "docker network disconnect/connect of its segment"
    }

    fn wipe_method(&self) -> &'static str {
        "docker rm -f, docker volume rm, up -d --no-deps"
    }

    fn kill_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.network.kill_node(id))
    }

    fn stop_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.network.stop_node(id))
    }

    fn start_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.network.start_node(id))
    }

    fn partition_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.network.partition_node(id))
    }

    fn heal_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.network.heal_node(id))
    }

    fn pause_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.network.pause_node(id))
    }

    fn resume_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.network.resume_node(id))
    }

    fn wipe_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.network.wipe_node(id))
    }

    fn kill_coordinator(&mut self, i: usize) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(self.network.kill_coordinator(i))
    }

    fn start_coordinator(&mut self, i: usize) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(self.network.start_coordinator(i))
    }

    fn restore_processes(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(self.network.restore())
    }

    fn shutdown(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
        // The network stays up as `up -d` left it, for the next run or for a look.
        Box::pin(async { Ok(()) })
    }
}
