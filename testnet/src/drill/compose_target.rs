//! [`ComposeTarget`]: the drills' view of the running docker-compose testnet. A
//! partition is real here (`docker network disconnect` of the node's only segment).

use anyhow::Context;
use futures::future::BoxFuture;
use quorate_ceremony::import::CeremonyFile;
use quorate_transport::tls::TlsPaths;

use super::target::{DrillTarget, Party, Rogue};
use crate::client::SignerClient;
use crate::compose::layout::party_tls;
use crate::compose::rogue::{remove_rogue, rogue_log, start_rogue};
use crate::compose::ComposeNetwork;
use crate::network::Termination;

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

impl ComposeTarget {
    /// The state subdirectory holding `party`'s TLS files.
    fn party_dir(&self, party: &Party) -> anyhow::Result<String> {
        Ok(match party {
            Party::Node(id) => self.network.layout.node(id)?.spec.id.clone(),
            Party::Coordinator(i) => self
                .network
                .layout
                .coordinators
                .get(*i)
                .with_context(|| format!("no coordinator #{i}"))?
                .name
                .clone(),
            Party::Client => "client".into(),
        })
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

    fn testnet_dir(&self) -> &std::path::Path {
        &self.network.state_dir
    }

    fn tls(&self, party: &Party) -> anyhow::Result<TlsPaths> {
        Ok(party_tls(
            &self.network.state_dir.join(self.party_dir(party)?),
        ))
    }

    fn node_endpoint(&self, id: &str) -> anyhow::Result<String> {
        Ok(self.network.layout.node(id)?.endpoint())
    }

    fn coordinator_log(&self, i: usize) -> BoxFuture<'_, anyhow::Result<String>> {
        Box::pin(self.network.coordinator_log(i))
    }

    fn start_rogue<'a>(
        &'a mut self,
        id: &'a str,
        rogue: &'a Rogue,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let party = self.party_dir(&rogue.presents)?;
            let network = &self.network;
            start_rogue(
                &network.layout,
                &network.state_dir,
                id,
                &party,
                rogue.forge_key.as_deref(),
            )
            .await
        })
    }

    fn rogue_log(&self) -> BoxFuture<'_, anyhow::Result<String>> {
        Box::pin(rogue_log())
    }

    fn stop_rogue(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async { Ok(remove_rogue().await?) })
    }

    fn rogue_method(&self) -> &'static str {
        "a container of the image running `quorate-testnet rogue-node` at the stopped node's address on its segment"
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

    fn terminate_node<'a>(
        &'a mut self,
        id: &'a str,
        bound: std::time::Duration,
    ) -> BoxFuture<'a, anyhow::Result<Termination>> {
        Box::pin(self.network.terminate_node(id, bound))
    }

    fn terminate_coordinator(
        &mut self,
        i: usize,
        bound: std::time::Duration,
    ) -> BoxFuture<'_, anyhow::Result<Termination>> {
        Box::pin(self.network.terminate_coordinator(i, bound))
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
