//! Breaking and mending a running [`LocalNetwork`] the way drills and tests do:
//! kill (SIGKILL), stop (SIGTERM), freeze (SIGSTOP) and thaw a node, wipe its store,
//! restart it as a corrupt signer, kill and restart a coordinator. Every start waits
//! until the process serves again.

use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::Signal;

use super::{LocalNetwork, Termination};

impl LocalNetwork {
    /// Kills a node (SIGKILL).
    pub async fn kill_node(&mut self, id: &str) -> anyhow::Result<()> {
        let i = self.node_index(id)?;
        Ok(self.nodes[i].process.kill().await?)
    }

    /// Restarts a stopped node and waits until it serves.
    pub async fn start_node(&mut self, id: &str) -> anyhow::Result<()> {
        let i = self.node_index(id)?;
        self.nodes[i].process.start()?;
        self.wait_node_ready(i).await
    }

    /// Restarts a node with fault injection on or off (the `[danger]` section of its
    /// config): with `corrupt_signature_shares` it answers round 2 with well-formed
    /// but wrong shares, as a malicious or broken signer would.
    pub async fn set_corrupt_signer(&mut self, id: &str, corrupt: bool) -> anyhow::Result<()> {
        let i = self.node_index(id)?;
        self.nodes[i].process.kill().await?;
        let path = self.nodes[i].config_path.clone();
        let text = std::fs::read_to_string(&path)?;
        let mut text = match text.find("\n[danger]") {
            Some(at) => text[..at + 1].to_string(),
            None => text,
        };
        if corrupt {
            text.push_str("\n[danger]\ncorrupt_signature_shares = true\n");
        }
        std::fs::write(&path, text)?;
        self.nodes[i].process.start()?;
        self.wait_node_ready(i).await
    }

    /// Sets `[audit] accept_unverified_log = true` in a node's config, for its next
    /// start: it then loads its stored keys although its audit log is missing,
    /// empty or altered (which it records), instead of refusing to start.
    pub fn accept_unverified_log(&mut self, id: &str) -> anyhow::Result<()> {
        let i = self.node_index(id)?;
        let path = self.nodes[i].config_path.clone();
        let mut text = std::fs::read_to_string(&path)?;
        if !text.contains("\n[audit]") {
            text.push_str("\n[audit]\naccept_unverified_log = true\n");
        }
        std::fs::write(&path, text)?;
        Ok(())
    }

    /// Destroys a node's state, as losing its region would: kills it, deletes its
    /// store, and starts it again empty (same identity, certificate and KEK).
    pub async fn wipe_node(&mut self, id: &str) -> anyhow::Result<()> {
        let i = self.node_index(id)?;
        self.nodes[i].process.kill().await?;
        let data_dir = self.nodes[i].data_dir.clone();
        if data_dir.exists() {
            std::fs::remove_dir_all(&data_dir)
                .with_context(|| format!("wiping {}", data_dir.display()))?;
        }
        self.nodes[i].process.start()?;
        self.wait_node_ready(i).await
    }

    /// Restarts the coordinator (it forgets cached key manifests, e.g. after a
    /// refresh) and waits until it lists every key again.
    pub async fn restart_coordinator(&mut self) -> anyhow::Result<()> {
        self.coordinator.stop(Duration::from_secs(5)).await?;
        self.coordinator.start()?;
        self.wait_coordinator_ready(0).await
    }

    /// Kills coordinator `i` (SIGKILL).
    pub async fn kill_coordinator(&mut self, i: usize) -> anyhow::Result<()> {
        Ok(self.coordinator_process_mut(i)?.kill().await?)
    }

    /// Restarts coordinator `i` and waits until it lists every key.
    pub async fn start_coordinator(&mut self, i: usize) -> anyhow::Result<()> {
        self.coordinator_process_mut(i)?.start()?;
        self.wait_coordinator_ready(i).await
    }

    /// Stops a node gracefully (SIGTERM, then SIGKILL after 5 s), as an operator's
    /// restart would.
    pub async fn stop_node(&mut self, id: &str) -> anyhow::Result<()> {
        let i = self.node_index(id)?;
        Ok(self.nodes[i].process.stop(Duration::from_secs(5)).await?)
    }

    /// Sends a node SIGTERM alone and waits up to `bound` for it to exit by itself
    /// (killing it after that), as a supervisor's stop does.
    pub async fn terminate_node(
        &mut self,
        id: &str,
        bound: Duration,
    ) -> anyhow::Result<Termination> {
        let i = self.node_index(id)?;
        Ok(self.nodes[i].process.terminate(bound).await?)
    }

    /// [`LocalNetwork::terminate_node`] for coordinator `i`.
    pub async fn terminate_coordinator(
        &mut self,
        i: usize,
        bound: Duration,
    ) -> anyhow::Result<Termination> {
        Ok(self.coordinator_process_mut(i)?.terminate(bound).await?)
    }

    /// Freezes a node (SIGSTOP): its connections stay open but it answers nothing,
    /// which is what its peers see of a network partition.
    pub fn pause_node(&self, id: &str) -> anyhow::Result<()> {
        Ok(self.node(id)?.process.signal(Signal::SIGSTOP)?)
    }

    /// Thaws a node frozen by [`LocalNetwork::pause_node`] (SIGCONT).
    pub fn resume_node(&self, id: &str) -> anyhow::Result<()> {
        Ok(self.node(id)?.process.signal(Signal::SIGCONT)?)
    }

    /// Partitions a node from every other party: on a WAN testbed its links drop
    /// every packet (the process runs on); on loopback, where no link can be cut,
    /// the node is frozen instead ([`LocalNetwork::pause_node`]).
    pub fn partition_node(&self, id: &str) -> anyhow::Result<()> {
        match &self.wan {
            Some(testbed) => {
                self.node(id)?;
                testbed.set_partitioned(id, true)
            }
            None => self.pause_node(id),
        }
    }

    /// Heals [`LocalNetwork::partition_node`].
    pub fn heal_node(&self, id: &str) -> anyhow::Result<()> {
        match &self.wan {
            Some(testbed) => {
                self.node(id)?;
                testbed.set_partitioned(id, false)
            }
            None => self.resume_node(id),
        }
    }

    /// How [`LocalNetwork::partition_node`] partitions here.
    pub fn partition_method(&self) -> &'static str {
        match &self.wan {
            Some(_) => "every packet to and from the node dropped by the WAN link emulator (the process runs on)",
            None => "SIGSTOP/SIGCONT of the node process (stand-in for a partition on loopback)",
        }
    }
}
