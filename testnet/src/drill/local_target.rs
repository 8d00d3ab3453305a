//! [`LocalTarget`]: the drills' view of a [`LocalNetwork`] of processes, on
//! loopback or on a WAN testbed. On a WAN testbed a partition is real: the link
//! emulator drops every packet to and from the node. On loopback it is a stand-in:
//! the node is frozen with SIGSTOP (its sockets stay open and nothing answers,
//! which is what its peers see of one).

use anyhow::Context;
use futures::future::BoxFuture;
use quorate_ceremony::import::CeremonyFile;
use quorate_transport::identity::Role;
use quorate_transport::tls::TlsPaths;

use super::target::{DrillTarget, Party, Rogue};
use crate::client::SignerClient;
use crate::network::{default_bin_dir, LocalNetwork, RogueProcess, Termination};

/// Local processes as a drill target.
#[derive(Debug)]
pub struct LocalTarget {
    network: LocalNetwork,
    rogue: Option<RogueProcess>,
}

impl LocalTarget {
    /// Drills against `network`; [`DrillTarget::shutdown`] stops it.
    pub fn new(network: LocalNetwork) -> Self {
        Self {
            network,
            rogue: None,
        }
    }

    fn rogue_log_path(&self) -> std::path::PathBuf {
        self.network.dir.join("rogue.log")
    }
}

impl DrillTarget for LocalTarget {
    fn node_ids(&self) -> Vec<String> {
        self.network
            .nodes
            .iter()
            .map(|n| n.spec.id.clone())
            .collect()
    }

    fn coordinator_names(&self) -> Vec<String> {
        let n = &self.network;
        (0..n.coordinator_count())
            .filter_map(|i| n.coordinator_access(i).ok().map(|(name, _)| name))
            .collect()
    }

    fn key_ids(&self) -> Vec<String> {
        let spec = &self.network.spec;
        spec.keys.iter().map(|k| k.key_id.clone()).collect()
    }

    fn client(&self, i: usize) -> anyhow::Result<SignerClient> {
        self.network.coordinator_client(i)
    }

    fn client_config(&self, i: usize) -> anyhow::Result<quorate_client::ClientConfig> {
        let mut config = self.network.client_config();
        let (name, endpoint) = self.network.coordinator_access(i)?;
        config.coordinators = vec![quorate_client::CoordinatorEntry::Named {
            endpoint,
            server_name: Some(name),
        }];
        Ok(config)
    }

    fn approve(&self, key_id: &str, valid_secs: u64, reason: &str) -> anyhow::Result<Vec<u8>> {
        self.network.approve(key_id, valid_secs, reason)
    }

    fn ceremony(&self) -> anyhow::Result<CeremonyFile> {
        self.network.ceremony()
    }

    fn testnet_dir(&self) -> &std::path::Path {
        &self.network.dir
    }

    fn tls(&self, party: &Party) -> anyhow::Result<TlsPaths> {
        let n = &self.network;
        Ok(match party {
            Party::Node(id) => n.tls_paths(Role::Node, id),
            Party::Coordinator(i) => n.tls_paths(Role::Coordinator, &n.coordinator_access(*i)?.0),
            Party::Client => n.tls_paths(Role::Client, "demo-client"),
        })
    }

    fn node_endpoint(&self, id: &str) -> anyhow::Result<String> {
        Ok(self.network.node(id)?.endpoint.clone())
    }

    fn coordinator_log(&self, i: usize) -> BoxFuture<'_, anyhow::Result<String>> {
        Box::pin(async move {
            let n = &self.network;
            let log = match i {
                0 => &n.coordinator.log,
                _ => {
                    &n.extra_coordinators
                        .get(i - 1)
                        .with_context(|| format!("no coordinator #{i}"))?
                        .process
                        .log
                }
            };
            Ok(std::fs::read_to_string(log)?)
        })
    }

    fn start_rogue<'a>(
        &'a mut self,
        id: &'a str,
        rogue: &'a Rogue,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.stop_rogue().await?;
            let tls = self.tls(&rogue.presents)?;
            let endpoint = self.node_endpoint(id)?;
            let listen = endpoint.trim_start_matches("https://").to_string();
            self.network.stop_node(id).await?;
            let program = default_bin_dir()?.join("quorate-testnet");
            let log = self.rogue_log_path();
            let netns = match &self.network.wan {
                Some(testbed) => testbed.party(id)?.netns.clone(),
                None => None,
            };
            self.rogue = Some(
                RogueProcess::start(
                    &program,
                    &listen,
                    &tls,
                    rogue.forge_key.as_deref(),
                    &log,
                    netns.as_deref(),
                )
                .await?,
            );
            Ok(())
        })
    }

    fn rogue_log(&self) -> BoxFuture<'_, anyhow::Result<String>> {
        Box::pin(async move {
            Ok(self
                .rogue
                .as_ref()
                .map(RogueProcess::log_text)
                .unwrap_or_default())
        })
    }

    fn stop_rogue(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            if let Some(rogue) = self.rogue.take() {
                rogue.stop().await?;
            }
            Ok(())
        })
    }

    fn rogue_method(&self) -> &'static str {
        "a `quorate-testnet rogue-node` process on the stopped node's port"
    }

    fn partition_method(&self) -> &'static str {
        self.network.partition_method()
    }

    fn wipe_method(&self) -> &'static str {
        "SIGKILL, store deleted, restarted empty"
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
        Box::pin(async move { self.network.partition_node(id) })
    }

    fn heal_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move { self.network.heal_node(id) })
    }

    fn pause_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move { self.network.pause_node(id) })
    }

    fn resume_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move { self.network.resume_node(id) })
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
        Box::pin(async move {
            // A rogue in a node's place holds the node's port.
            self.stop_rogue().await?;
            let n = &mut self.network;
            for i in 0..n.nodes.len() {
                let id = n.nodes[i].spec.id.clone();
                if n.nodes[i].process.is_running() {
                    // Harmless when it is not stopped.
                    n.resume_node(&id)?;
                } else {
                    n.start_node(&id).await?;
                }
            }
            for i in 0..n.coordinator_count() {
                let running = match i {
                    0 => n.coordinator.is_running(),
                    _ => n.extra_coordinators[i - 1].process.is_running(),
                };
                if !running {
                    n.start_coordinator(i).await?;
                }
            }
            Ok(())
        })
    }

    fn shutdown(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            self.stop_rogue().await?;
            self.network.stop().await
        })
    }

    fn local_network(&mut self) -> Option<&mut LocalNetwork> {
        Some(&mut self.network)
    }
}
