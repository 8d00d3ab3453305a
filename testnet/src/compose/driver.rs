//! [`ComposeNetwork`]: the running compose testnet, driven from the host for the
//! drills. It brings the network up, kills, stops, starts, pauses and cuts off
//! containers by the names the [`ComposeLayout`] gives them, wipes a node's volume,
//! and puts everything back between drills; the `docker` commands themselves run in
//! `docker.rs`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use quorate_ceremony::import::CeremonyFile;

use super::docker::{compose, compose_up, container_logs, container_state, docker, DockerError};
use super::layout::{party_tls, ComposeCoordinator, ComposeLayout, ComposeNode, STATE_DIR};
use super::rogue::remove_rogue;
use crate::client::SignerClient;
use crate::network::Termination;
use crate::probe::wait_node_serving;
use crate::spec::TestnetJson;

/// How long a restarted container may take to serve again.
const CONTAINER_START_TIMEOUT: Duration = Duration::from_secs(60);

/// The running compose testnet, driven with docker commands from the host.
#[derive(Debug)]
pub struct ComposeNetwork {
    /// The layout it was started from.
    pub layout: ComposeLayout,
    /// `docker-compose.yml`.
    pub compose_file: PathBuf,
    /// The state directory on the host (next to the compose file).
    pub state_dir: PathBuf,
}

impl ComposeNetwork {
    /// Brings the network up (`up -d`; containers already running are left as they
    /// are) and waits until both coordinators list every key.
    pub async fn up(compose_file: &Path) -> anyhow::Result<Self> {
        let compose_file = compose_file
            .canonicalize()
            .with_context(|| format!("{}", compose_file.display()))?;
        let state_dir = compose_file
            .parent()
            .ok_or_else(|| anyhow!("compose file has no directory"))?
            .join(STATE_DIR);
        let layout = ComposeLayout::default_five_regions();
        // A rogue an interrupted drill left in a node's place holds its address.
        remove_rogue().await?;
        // A drill run that was interrupted may have left nodes paused (docker, and
        // `up`, stall on paused containers) or cut off (the key ceremony would wait
        // for them in vain): put existing containers back first.
        for node in &layout.nodes {
            let Ok(state) = docker(&[
                "inspect",
                "-f",
                "{{.State.Paused}} {{json .NetworkSettings.Networks}}",
                &node.container(),
            ])
            .await
            else {
                continue; // not created yet
            };
            if state.starts_with("true") {
                docker(&["unpause", &node.container()]).await?;
            }
            if !state.contains(&format!("\"{}\"", node.network())) {
                docker(&[
                    "network",
                    "connect",
                    "--ip",
                    &node.ip(),
                    &node.network(),
                    &node.container(),
                ])
                .await?;
            }
        }
        compose_up(&compose_file).await?;
        let network = Self {
            layout,
            compose_file,
            state_dir,
        };
        // `up` starts stopped containers but does not reconnect them to their
        // segments; an interrupted drill run may have left some cut off.
        network.restore().await?;
        Ok(network)
    }

    /// The approver key `compose-setup` made (in the state directory, mounted into
    /// no node or coordinator).
    pub fn approver_key_file(&self) -> PathBuf {
        crate::approver::key_path(&self.state_dir)
    }

    /// An approval token from the network's approver for an out-of-policy quorum on
    /// `key_id`, valid for `valid_secs` from now.
    pub fn approve(&self, key_id: &str, valid_secs: u64, reason: &str) -> anyhow::Result<Vec<u8>> {
        crate::approver::approve(&self.approver_key_file(), key_id, valid_secs, reason)
    }

    /// The ceremony's view of the network: the file the `keys` container uses. Its
    /// TLS paths are relative to it and its node endpoints are the containers'
    /// addresses, which the docker host reaches directly (Linux).
    pub fn ceremony(&self) -> anyhow::Result<CeremonyFile> {
        Ok(CeremonyFile::load(
            &self.state_dir.join("ceremony").join("ceremony.toml"),
        )?)
    }

    /// Destroys a node's state, as losing its region would: removes its container
    /// (SIGKILL) and its store's volume, and creates both afresh from the compose
    /// file (same identity, certificate and KEK, which live in the state
    /// directory), then waits until the empty node serves. Uses the local image
    /// only; nothing is pulled.
    pub async fn wipe_node(&self, id: &str) -> anyhow::Result<()> {
        let node = self.layout.node(id)?;
        docker(&["rm", "-f", &node.container()]).await?;
        match docker(&["volume", "rm", &node.volume()]).await {
            // Already gone (an earlier wipe that was interrupted) is fine.
            Ok(_) | Err(DockerError::NoSuchObject { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.recreate_node(node).await
    }

    /// `up -d --no-deps` of one node's service: creates its container (and volume,
    /// if missing) and starts it, touching no other service.
    async fn recreate_node(&self, node: &ComposeNode) -> anyhow::Result<()> {
        compose(
            &self.compose_file,
            &["up", "-d", "--no-deps", &node.service()],
        )
        .await?;
        self.wait_node(&node.spec.id).await
    }

    /// `testnet.json` written by the setup container.
    pub fn testnet_json(&self) -> anyhow::Result<TestnetJson> {
        TestnetJson::read(&self.state_dir)
    }

    /// A demo client of coordinator `i`.
    pub fn coordinator_client(&self, i: usize) -> anyhow::Result<SignerClient> {
        let c = self
            .layout
            .coordinators
            .get(i)
            .ok_or_else(|| anyhow!("no coordinator #{i}"))?;
        SignerClient::connect(
            &c.host_endpoint(),
            &c.name,
            &party_tls(&self.state_dir.join("client")),
        )
    }

    /// The demo client's configuration for coordinator `i` alone.
    pub fn coordinator_client_config(
        &self,
        i: usize,
    ) -> anyhow::Result<quorate_client::ClientConfig> {
        let c = self
            .layout
            .coordinators
            .get(i)
            .ok_or_else(|| anyhow!("no coordinator #{i}"))?;
        let tls = party_tls(&self.state_dir.join("client"));
        Ok(quorate_client::ClientConfig::new(
            vec![quorate_client::CoordinatorEntry::Named {
                endpoint: c.host_endpoint(),
                server_name: Some(c.name.clone()),
            }],
            tls.ca,
            tls.cert,
            tls.key,
        ))
    }

    async fn wait_coordinator(&self, i: usize) -> anyhow::Result<()> {
        let client = self.coordinator_client(i)?;
        let expected = self.layout.spec.keys.len();
        let started = Instant::now();
        loop {
            match client.list_keys().await {
                Ok(keys) if keys.len() >= expected => return Ok(()),
                _ if started.elapsed() > CONTAINER_START_TIMEOUT => bail!(
                    "coordinator #{} did not list {expected} keys within {CONTAINER_START_TIMEOUT:?}",
                    i + 1
                ),
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    async fn wait_node(&self, id: &str) -> anyhow::Result<()> {
        let node = self.layout.node(id)?;
        wait_node_serving(
            &party_tls(&self.state_dir.join("ceremony")),
            id,
            &node.endpoint(),
            CONTAINER_START_TIMEOUT,
        )
        .await
    }

    /// `docker kill` a node's container (SIGKILL, like a crash).
    pub async fn kill_node(&self, id: &str) -> anyhow::Result<()> {
        docker(&["kill", &self.layout.node(id)?.container()]).await?;
        Ok(())
    }

    /// `docker stop` (SIGTERM, SIGKILL after 5 s).
    pub async fn stop_node(&self, id: &str) -> anyhow::Result<()> {
        docker(&["stop", "-t", "5", &self.layout.node(id)?.container()]).await?;
        Ok(())
    }

    /// `docker stop -t N` a node: SIGTERM, then SIGKILL after `bound` (whole
    /// seconds, rounded up); [`terminate`] says which it took.
    pub async fn terminate_node(&self, id: &str, bound: Duration) -> anyhow::Result<Termination> {
        terminate(&self.layout.node(id)?.container(), bound).await
    }

    /// [`ComposeNetwork::terminate_node`] for coordinator `i`.
    pub async fn terminate_coordinator(
        &self,
        i: usize,
        bound: Duration,
    ) -> anyhow::Result<Termination> {
        terminate(&self.coordinator_container(i)?, bound).await
    }

    /// `docker start` a node and wait until it serves.
    pub async fn start_node(&self, id: &str) -> anyhow::Result<()> {
        docker(&["start", &self.layout.node(id)?.container()]).await?;
        self.wait_node(id).await
    }

    /// Cuts a node off: disconnects it from its segment (its only network).
    pub async fn partition_node(&self, id: &str) -> anyhow::Result<()> {
        let node = self.layout.node(id)?;
        docker(&["network", "disconnect", &node.network(), &node.container()]).await?;
        Ok(())
    }

    /// Reconnects a node to its segment at its fixed address and waits until it
    /// serves.
    pub async fn heal_node(&self, id: &str) -> anyhow::Result<()> {
        let node = self.layout.node(id)?;
        docker(&[
            "network",
            "connect",
            "--ip",
            &node.ip(),
            &node.network(),
            &node.container(),
        ])
        .await?;
        self.wait_node(id).await
    }

    /// `docker pause` (freezes the node's processes; its network stays up).
    pub async fn pause_node(&self, id: &str) -> anyhow::Result<()> {
        docker(&["pause", &self.layout.node(id)?.container()]).await?;
        Ok(())
    }

    /// `docker unpause`.
    pub async fn resume_node(&self, id: &str) -> anyhow::Result<()> {
        docker(&["unpause", &self.layout.node(id)?.container()]).await?;
        Ok(())
    }

    fn coordinator_container(&self, i: usize) -> anyhow::Result<String> {
        self.layout
            .coordinators
            .get(i)
            .map(ComposeCoordinator::container)
            .ok_or_else(|| anyhow!("no coordinator #{i}"))
    }

    /// Coordinator `i`'s log since its container last started.
    pub async fn coordinator_log(&self, i: usize) -> anyhow::Result<String> {
        let container = self.coordinator_container(i)?;
        let started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &container]).await?;
        Ok(container_logs(&container, Some(started.trim())).await?)
    }

    /// `docker kill` coordinator `i`.
    pub async fn kill_coordinator(&self, i: usize) -> anyhow::Result<()> {
        docker(&["kill", &self.coordinator_container(i)?]).await?;
        Ok(())
    }

    /// `docker start` coordinator `i` and wait until it lists every key.
    pub async fn start_coordinator(&self, i: usize) -> anyhow::Result<()> {
        docker(&["start", &self.coordinator_container(i)?]).await?;
        self.wait_coordinator(i).await
    }

    /// Removes a rogue (`rogue.rs`) and puts every container back as `up` left it (running, unpaused, connected to
    /// its segment), whatever a drill did, and waits until all serve.
    /// A node container that is gone (a wipe interrupted before it was created
    /// again) is created afresh; its lost shares are for the ceremony to repair
    /// (see `DrillTarget::restore`).
    pub async fn restore(&self) -> anyhow::Result<()> {
        // A rogue in a node's place holds the node's address.
        remove_rogue().await?;
        let mut missing = Vec::new();
        for node in &self.layout.nodes {
            let Some(state) = container_state(
                &node.container(),
                "{{.State.Running}} {{.State.Paused}} {{json .NetworkSettings.Networks}}",
            )
            .await?
            else {
                missing.push(node);
                continue;
            };
            if state.starts_with("false") {
                docker(&["start", &node.container()]).await?;
            }
            if state.contains("true true") {
                docker(&["unpause", &node.container()]).await?;
            }
            if !state.contains(&format!("\"{}\"", node.network())) {
                docker(&[
                    "network",
                    "connect",
                    "--ip",
                    &node.ip(),
                    &node.network(),
                    &node.container(),
                ])
                .await?;
            }
        }
        // Only once every other container runs unpaused: compose stalls on paused
        // containers.
        for node in missing {
            self.recreate_node(node).await?;
        }
        for (i, c) in self.layout.coordinators.iter().enumerate() {
            let running = docker(&["inspect", "-f", "{{.State.Running}}", &c.container()]).await?;
            if running.trim() != "true" {
                docker(&["start", &c.container()]).await?;
            }
            self.wait_coordinator(i).await?;
        }
        for node in &self.layout.nodes {
            self.wait_node(&node.spec.id).await?;
        }
        Ok(())
    }
}

/// `docker stop -t N container` (SIGTERM, SIGKILL after N whole seconds, `bound`
/// rounded up), timed from the host, and the exit code Docker recorded: 137 is its
/// SIGKILL. The time includes the Docker CLI's own round trips.
async fn terminate(container: &str, bound: Duration) -> anyhow::Result<Termination> {
    let secs = bound.as_secs() + u64::from(bound.subsec_nanos() > 0);
    let started = Instant::now();
    docker(&["stop", "-t", &secs.to_string(), container]).await?;
    let took = started.elapsed();
    let code = container_state(container, "{{.State.ExitCode}}")
        .await?
        .and_then(|c| c.trim().parse::<i32>().ok());
    // Docker's SIGKILL after the timeout shows as 128 + 9.
    let killed = code == Some(137);
    Ok(Termination {
        took,
        exit_code: if killed { None } else { code },
        killed,
    })
}
