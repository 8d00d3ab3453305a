//! [`LocalTarget`]: the drills' view of a [`LocalNetwork`] of processes on
//! loopback. A partition is a stand-in here: the node is frozen with SIGSTOP (its
//! sockets stay open and nothing answers, which is what its peers see of one).

use futures::future::BoxFuture;
use quorate_ceremony::import::CeremonyFile;

use super::target::DrillTarget;
use crate::client::SignerClient;
use crate::network::LocalNetwork;

/// Local processes as a drill target.
#[derive(Debug)]
pub struct LocalTarget {
    network: LocalNetwork,
}

impl LocalTarget {
    /// Drills against `network`; [`DrillTarget::shutdown`] stops it.
    pub fn new(network: LocalNetwork) -> Self {
        Self { network }
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

    fn partition_method(&self) -> &'static str {
        "SIGSTOP/SIGCONT of the node process (stand-in for a partition)"
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

    fn start_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.network.start_node(id))
    }

    fn partition_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move { self.network.pause_node(id) })
    }

    fn heal_node<'a>(&'a mut self, id: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move { self.network.resume_node(id) })
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
        Box::pin(self.network.stop())
    }

    fn local_network(&mut self) -> Option<&mut LocalNetwork> {
        Some(&mut self.network)
    }
}
