//! A Quorate network of real processes on loopback: PKI, node and coordinator
//! configs, `quorate-node` and `quorate-coordinator` processes, keys created by DKG
//! ceremonies, and `testnet.json`.
//!
//! Tests, drills and benchmarks use the same [`LocalNetwork`] as `quorate-testnet
//! up`, so the network they exercise is the one operators run. This file holds the
//! network and its start; [`access`] hands out clients, approvals and certificates,
//! [`control`] breaks and mends it (kill, stop, freeze, wipe), [`process`]
//! supervises one process, [`files`] writes its configs, [`ports`] leases its ports,
//! [`rogue`] runs a rogue in a stopped node's place.

mod access;
mod binaries;
mod control;
mod files;
mod ports;
mod process;
mod rogue;
mod rtt;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use quorate_ceremony::import::{CeremonyFile, CeremonyNode};
use quorate_ceremony::keygen::{run_dkg, DkgRequest};
use quorate_ceremony::pki;
use quorate_client::{ClientConfig, CoordinatorEntry};
use quorate_transport::identity::Role;
use quorate_transport::tls::TlsPaths;
use quorate_wire::pb;

use crate::client::SignerClient;
use crate::spec::{
    NetworkSpec, NodeSpec, TestnetCoordinator, TestnetJson, TestnetKey, TestnetNode,
};
use crate::wan::{Testbed, WanProfile};

pub use binaries::default_bin_dir;
pub use files::remove_testnet;
pub use ports::{lease_port, PortLease, PortLeases};
pub use process::{ManagedProcess, ProcessError, Termination};
pub use rogue::RogueProcess;

/// How long a process may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start a network, beyond its spec.
#[derive(Clone, Debug)]
pub struct StartOptions {
    /// Coordinator processes (at least one).
    pub coordinators: usize,
    /// Run every process in its own network namespace behind this WAN profile's
    /// links ([`crate::wan`]); `None`: every process on loopback.
    pub wan: Option<WanProfile>,
    /// TOML appended to coordinator `i`'s config (index 0 is the first), e.g.
    /// `[signing]\npreprocess_batch = 0` for a coordinator that signs in two rounds.
    pub coordinator_extra_toml: Vec<String>,
    /// Every node witnesses every other node's audit log (`[witness]`, checked
    /// each second). Off for tests that must see only the coordinator dial a node.
    pub witness: bool,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            coordinators: 1,
            wan: None,
            coordinator_extra_toml: Vec::new(),
            witness: true,
        }
    }
}

/// A running signer node.
#[derive(Debug)]
pub struct LocalNode {
    /// Its spec.
    pub spec: NodeSpec,
    /// `https://127.0.0.1:PORT` (on a WAN testbed, its address there).
    pub endpoint: String,
    /// `127.0.0.1:PORT` of its Prometheus endpoint.
    pub metrics: String,
    /// `127.0.0.1:PORT` of its plaintext `grpc.health.v1` port.
    pub health: String,
    /// The process.
    pub process: ManagedProcess,
    /// Its config file.
    pub config_path: PathBuf,
    /// Its store directory.
    pub data_dir: PathBuf,
    /// Its KEK file.
    pub kek_file: PathBuf,
}

/// A coordinator beyond the first (the first is [`LocalNetwork::coordinator`]).
#[derive(Debug)]
pub struct LocalCoordinator {
    /// Name in its certificate (`coordinator-2`, ...), also its TLS server name.
    pub name: String,
    /// `https://127.0.0.1:PORT`.
    pub endpoint: String,
    /// `127.0.0.1:PORT` of its Prometheus endpoint.
    pub metrics: String,
    /// `127.0.0.1:PORT` of its plaintext `grpc.health.v1` port.
    pub health: String,
    /// The process.
    pub process: ManagedProcess,
}

/// A running network.
#[derive(Debug)]
pub struct LocalNetwork {
    /// Working directory (PKI, configs, logs, stores, testnet.json).
    pub dir: PathBuf,
    /// Every port of the network, reserved while it lives (nodes restart on theirs).
    pub ports: PortLeases,
    /// What was started.
    pub spec: NetworkSpec,
    /// Nodes, in spec order.
    pub nodes: Vec<LocalNode>,
    /// The coordinator.
    pub coordinator: ManagedProcess,
    /// `https://127.0.0.1:PORT` of the coordinator.
    pub coordinator_endpoint: String,
    /// `127.0.0.1:PORT` of the coordinator's Prometheus endpoint.
    pub coordinator_metrics: String,
    /// `127.0.0.1:PORT` of the coordinator's plaintext `grpc.health.v1` port.
    pub coordinator_health: String,
    /// The secret key of the network's compliance approver (listed in every policy
    /// key's approvers).
    pub approver_key_file: PathBuf,
    /// The network's escrow custodians, fixed in every key's manifest (their
    /// identities are in `DIR/custodians/`).
    pub custodians: Vec<crate::custodians::TestnetCustodian>,
    /// Further coordinators over the same nodes (stateless, so any of them can
    /// serve any request); empty unless started with [`LocalNetwork::start_with`].
    pub extra_coordinators: Vec<LocalCoordinator>,
    /// PKI directory.
    pub pki_dir: PathBuf,
    /// The ceremony file used to install keys.
    pub ceremony_file: PathBuf,
    /// Transcripts, by key id.
    pub transcripts: BTreeMap<String, PathBuf>,
    /// The WAN testbed the processes run in, if any; torn down when the network is
    /// dropped (after its processes, which are killed on drop too).
    pub wan: Option<Testbed>,
}

impl LocalNetwork {
    /// Creates everything under `dir` (which must be empty or absent), starts the
    /// nodes, installs the keys, starts the coordinator and writes `testnet.json`.
    pub async fn start(dir: &Path, bin_dir: &Path, spec: NetworkSpec) -> anyhow::Result<Self> {
        Self::start_with(dir, bin_dir, spec, 1).await
    }

    /// As [`LocalNetwork::start`], with `coordinators` coordinator processes (at
    /// least one). The first is `coordinator` (the one `testnet.json` names in
    /// `coordinator`); the others are `coordinator-2`, `coordinator-3`, ...
    pub async fn start_with(
        dir: &Path,
        bin_dir: &Path,
        spec: NetworkSpec,
        coordinators: usize,
    ) -> anyhow::Result<Self> {
        Self::start_opts(
            dir,
            bin_dir,
            spec,
            &StartOptions {
                coordinators,
                ..StartOptions::default()
            },
        )
        .await
    }

    /// As [`LocalNetwork::start`], as `opts` says: how many coordinators, on a WAN
    /// testbed or on loopback.
    pub async fn start_opts(
        dir: &Path,
        bin_dir: &Path,
        spec: NetworkSpec,
        opts: &StartOptions,
    ) -> anyhow::Result<Self> {
        let coordinators = opts.coordinators;
        if coordinators == 0 {
            bail!("a network needs at least one coordinator");
        }
        quorate_transport::install_crypto_provider();
        let node_bin = binaries::binary(bin_dir, "quorate-node")?;
        let coordinator_bin = binaries::binary(bin_dir, "quorate-coordinator")?;
        if dir.join("testnet.json").exists() || dir.join("pki").exists() {
            bail!(
                "{} already holds a testnet; use an empty directory (or remove it)",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let pki_dir = dir.join("pki");
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let td = spec.trust_domain.as_str();
        pki::create_ca(&pki_dir, td)?;
        // The compliance approver of this network's policy keys.
        let approver_key_file = crate::approver::create(&dir, 0o600)?;
        let approver_public = crate::approver::public_key(&approver_key_file)?;
        // The escrow custodians of every key it creates.
        let custodians = crate::custodians::create(&dir, 0o600)?;
        // The administrators of every key it creates.
        let administrators = crate::administrators::create_or_keep(&dir, 0o600)?;
        let coordinator_names: Vec<String> = (1..=coordinators)
            .map(|i| match i {
                1 => "coordinator".to_string(),
                _ => format!("coordinator-{i}"),
            })
            .collect();
        let wan = match &opts.wan {
            Some(profile) => {
                let parties: Vec<(String, String)> = spec
                    .nodes
                    .iter()
                    .map(|n| (n.id.clone(), n.region.clone()))
                    .chain(
                        coordinator_names
                            .iter()
                            .map(|c| (c.clone(), profile.coordinator_site.to_string())),
                    )
                    .collect();
                Some(Testbed::create(profile, &parties)?)
            }
            None => None,
        };
        // Where each party listens, and the namespace it runs in.
        let place = |name: &str| -> anyhow::Result<(std::net::IpAddr, Option<String>)> {
            match &wan {
                Some(testbed) => {
                    let party = testbed.party(name)?;
                    Ok((party.addr.into(), party.netns.clone()))
                }
                None => Ok((std::net::Ipv4Addr::LOCALHOST.into(), None)),
            }
        };

        let mut network_ports = PortLeases::default();
        let mut nodes = Vec::new();
        for node in &spec.nodes {
            let port = network_ports.lease()?;
            let metrics_port = network_ports.lease()?;
            let health_port = network_ports.lease()?;
            let cert = pki::issue(
                &pki_dir,
                td,
                Role::Node,
                &node.id,
                Some(&node.location()?),
                &[],
            )?;
            let node_dir = dir.join(&node.id);
            std::fs::create_dir_all(&node_dir)?;
            let kek_file = node_dir.join("kek.hex");
            files::write_private(&kek_file, &quorate_node::store::Kek::generate_hex())?;
            let data_dir = node_dir.join("data");
            let config_path = node_dir.join("node.toml");
            let (host, netns) = place(&node.id)?;
            let config = files::node_config(
                node,
                td,
                &files::NodeFiles {
                    host,
                    port,
                    metrics_port,
                    health_port,
                    data_dir: &data_dir,
                    kek_file: &kek_file,
                    tls: &cert.tls_paths(),
                },
            );
            std::fs::write(&config_path, config)?;
            let process = ManagedProcess::new(
                &node.id,
                node_bin.clone(),
                config_path.clone(),
                logs.join(format!("{}.log", node.id)),
            )
            .in_netns(netns);
            nodes.push(LocalNode {
                spec: node.clone(),
                endpoint: format!("https://{host}:{port}"),
                metrics: format!("{host}:{metrics_port}"),
                health: format!("{host}:{health_port}"),
                process,
                config_path,
                data_dir,
                kek_file,
            });
        }

        // Coordinator configs (started after the keys exist).
        let node_endpoints: Vec<(&str, &str)> = nodes
            .iter()
            .map(|n| (n.spec.id.as_str(), n.endpoint.as_str()))
            .collect();
        // Every node witnesses every other node's audit log.
        for node in nodes.iter().filter(|_| opts.witness) {
            use std::io::Write as _;
            std::fs::OpenOptions::new()
                .append(true)
                .open(&node.config_path)
                .and_then(|mut f| {
                    f.write_all(
                        crate::toml_text::witness_toml(&node.spec.id, &node_endpoints).as_bytes(),
                    )
                })
                .with_context(|| format!("writing {}", node.config_path.display()))?;
        }
        let mut coordinator_ports = Vec::new();
        let mut coordinator_processes = Vec::new();
        for (i, name) in coordinator_names.iter().enumerate() {
            let (host, netns) = place(name)?;
            let ports = files::CoordinatorPorts {
                host,
                grpc: network_ports.lease()?,
                metrics: network_ports.lease()?,
                health: network_ports.lease()?,
            };
            let extra = opts
                .coordinator_extra_toml
                .get(i)
                .map_or("", String::as_str);
            let config =
                files::write_coordinator_config(&dir, td, name, ports, &node_endpoints, extra)?;
            coordinator_processes.push(
                ManagedProcess::new(
                    name,
                    coordinator_bin.clone(),
                    config,
                    logs.join(format!("{name}.log")),
                )
                .in_netns(netns),
            );
            coordinator_ports.push(ports);
        }
        let mut coordinator_processes = coordinator_processes.into_iter();
        let coordinator = coordinator_processes
            .next()
            .ok_or_else(|| anyhow!("no coordinator"))?;
        let extra_coordinators: Vec<LocalCoordinator> = coordinator_processes
            .zip(coordinator_ports.iter().skip(1))
            .zip(coordinator_names.iter().skip(1))
            .map(|((process, ports), name)| LocalCoordinator {
                process,
                endpoint: format!("https://{}:{}", ports.host, ports.grpc),
                metrics: format!("{}:{}", ports.host, ports.metrics),
                health: format!("{}:{}", ports.host, ports.health),
                name: name.clone(),
            })
            .collect();
        let first = coordinator_ports[0];
        pki::issue(&pki_dir, td, Role::Client, "demo-client", None, &[])?;
        let ceremony_cert = pki::issue(&pki_dir, td, Role::Ceremony, "testnet", None, &[])?;
        let ceremony_file = dir.join("ceremony.toml");
        let ceremony = CeremonyFile {
            trust_domain: td.to_string(),
            tls: ceremony_cert.tls_paths(),
            nodes: nodes
                .iter()
                .map(|n| CeremonyNode {
                    id: n.spec.id.clone(),
                    endpoint: n.endpoint.clone(),
                    region: n.spec.region.clone(),
                    jurisdiction: n.spec.jurisdiction.clone(),
                })
                .collect(),
            source: ceremony_file.clone(),
        };
        std::fs::write(&ceremony_file, toml::to_string(&ceremony)?)?;

        let mut network = Self {
            dir: dir.clone(),
            ports: network_ports,
            spec: spec.clone(),
            nodes,
            coordinator,
            coordinator_endpoint: format!("https://{}:{}", first.host, first.grpc),
            coordinator_metrics: format!("{}:{}", first.host, first.metrics),
            coordinator_health: format!("{}:{}", first.host, first.health),
            approver_key_file,
            custodians,
            extra_coordinators,
            pki_dir,
            ceremony_file,
            transcripts: BTreeMap::new(),
            wan,
        };
        for i in 0..network.nodes.len() {
            network.nodes[i].process.start()?;
        }
        for i in 0..network.nodes.len() {
            network.wait_node_ready(i).await?;
        }
        let transcripts = dir.join("transcripts");
        std::fs::create_dir_all(&transcripts)?;
        for key in &spec.keys {
            // Demo keys are made the way production keys are: by DKG across the nodes.
            let transcript = run_dkg(
                &ceremony,
                DkgRequest {
                    key_id: key.key_id.clone(),
                    ciphersuite: key.ciphersuite,
                    threshold: spec.threshold,
                    policy: Some(key.policy_pb(&[approver_public], &administrators)),
                    escrow: Some(crate::custodians::escrow(&network.custodians)),
                },
            )
            .await
            .with_context(|| format!("creating key {}", key.key_id))?;
            let path = transcripts.join(format!("{}.json", key.key_id));
            transcript.write(&path)?;
            network.transcripts.insert(key.key_id.clone(), path);
        }
        network.coordinator.start()?;
        for extra in &mut network.extra_coordinators {
            extra.process.start()?;
        }
        for i in 0..coordinators {
            network.wait_coordinator_ready(i).await?;
        }
        network.write_testnet_json()?;
        Ok(network)
    }

    /// TLS paths of a party issued by this network's CA (e.g. `(Role::Client,
    /// "demo-client")`).
    pub fn tls_paths(&self, role: Role, name: &str) -> TlsPaths {
        TlsPaths {
            ca: self.pki_dir.join(pki::CA_CERT_FILE),
            cert: self.pki_dir.join(format!("{role}-{name}.pem")),
            key: self.pki_dir.join(format!("{role}-{name}-key.pem")),
        }
    }

    /// The node named `id`.
    pub fn node(&self, id: &str) -> anyhow::Result<&LocalNode> {
        self.nodes
            .iter()
            .find(|n| n.spec.id == id)
            .ok_or_else(|| anyhow!("no node {id}"))
    }

    fn node_index(&self, id: &str) -> anyhow::Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.spec.id == id)
            .ok_or_else(|| anyhow!("no node {id}"))
    }

    /// Waits until node `i` answers an authenticated call.
    async fn wait_node_ready(&mut self, i: usize) -> anyhow::Result<()> {
        let tls = self.tls_paths(Role::Ceremony, "testnet").load()?;
        let node = &mut self.nodes[i];
        let channel = tls.node_channel(&node.endpoint, &node.spec.id, Duration::from_secs(1))?;
        let started = Instant::now();
        loop {
            let mut client = pb::ceremony_client::CeremonyClient::new(channel.clone());
            if client.get_info(pb::GetInfoRequest {}).await.is_ok() {
                return Ok(());
            }
            if let Some(status) = node.process.try_exit_status() {
                bail!(
                    "{} exited ({status}) while starting; log tail:\n{}",
                    node.spec.id,
                    node.process.log_tail(20)
                );
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "{} did not serve within {START_TIMEOUT:?}; log tail:\n{}",
                    node.spec.id,
                    node.process.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until coordinator `i` (0 is the first) lists every key.
    async fn wait_coordinator_ready(&mut self, i: usize) -> anyhow::Result<()> {
        let started = Instant::now();
        let expected = self.spec.keys.len();
        let client = self.coordinator_client(i)?;
        let process = self.coordinator_process_mut(i)?;
        loop {
            if let Ok(keys) = client.list_keys().await {
                if keys.len() >= expected {
                    return Ok(());
                }
            }
            if let Some(status) = process.try_exit_status() {
                bail!(
                    "{} exited ({status}) while starting; log tail:\n{}",
                    process.name,
                    process.log_tail(20)
                );
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "{} did not serve within {START_TIMEOUT:?}; log tail:\n{}",
                    process.name,
                    process.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Number of coordinators.
    pub fn coordinator_count(&self) -> usize {
        1 + self.extra_coordinators.len()
    }

    /// `(name, endpoint)` of coordinator `i` (0 is the first, named `coordinator`).
    pub fn coordinator_access(&self, i: usize) -> anyhow::Result<(String, String)> {
        match i {
            0 => Ok(("coordinator".into(), self.coordinator_endpoint.clone())),
            _ => self
                .extra_coordinators
                .get(i - 1)
                .map(|c| (c.name.clone(), c.endpoint.clone()))
                .ok_or_else(|| anyhow!("no coordinator #{i}")),
        }
    }

    fn coordinator_process_mut(&mut self, i: usize) -> anyhow::Result<&mut ManagedProcess> {
        match i {
            0 => Ok(&mut self.coordinator),
            _ => self
                .extra_coordinators
                .get_mut(i - 1)
                .map(|c| &mut c.process)
                .ok_or_else(|| anyhow!("no coordinator #{i}")),
        }
    }

    /// A demo client of coordinator `i` (0 is the first).
    pub fn coordinator_client(&self, i: usize) -> anyhow::Result<SignerClient> {
        let (name, endpoint) = self.coordinator_access(i)?;
        SignerClient::connect(
            &endpoint,
            &name,
            &self.tls_paths(Role::Client, "demo-client"),
        )
    }

    /// The contents of `testnet.json` for the current processes.
    pub fn testnet_json(&self) -> TestnetJson {
        let client = self.tls_paths(Role::Client, "demo-client");
        TestnetJson {
            coordinator: self.coordinator_endpoint.clone(),
            server_name: "coordinator".into(),
            ca: client.ca,
            client_cert: client.cert,
            client_key: client.key,
            nodes: self
                .nodes
                .iter()
                .map(|n| TestnetNode {
                    id: n.spec.id.clone(),
                    endpoint: n.endpoint.clone(),
                    region: n.spec.region.clone(),
                    jurisdiction: n.spec.jurisdiction.clone(),
                    pid: n.process.pid().unwrap_or(0),
                })
                .collect(),
            keys: self
                .spec
                .keys
                .iter()
                .map(|k| TestnetKey {
                    key_id: k.key_id.clone(),
                    ciphersuite: k.ciphersuite.name().to_string(),
                    policy: k
                        .policy
                        .as_ref()
                        .map(crate::spec::PolicySpec::to_testnet_json),
                })
                .collect(),
            coordinators: if self.extra_coordinators.is_empty() {
                Vec::new()
            } else {
                (0..self.coordinator_count())
                    .filter_map(|i| self.coordinator_access(i).ok())
                    .map(|(name, endpoint)| TestnetCoordinator {
                        server_name: name,
                        endpoint,
                    })
                    .collect()
            },
        }
    }

    /// Writes `DIR/testnet.json` and `DIR/client.toml` atomically (write then
    /// rename), so a reader never sees half a file.
    pub fn write_testnet_json(&self) -> anyhow::Result<()> {
        let tmp = self.dir.join("testnet.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&self.testnet_json())?)?;
        std::fs::rename(&tmp, self.dir.join("testnet.json"))?;
        let tmp = self.dir.join("client.toml.tmp");
        std::fs::write(&tmp, self.client_toml()?)?;
        std::fs::rename(&tmp, self.dir.join("client.toml"))?;
        Ok(())
    }

    /// The demo client's configuration: every coordinator, the CA, and the demo
    /// client's certificate and key (`DIR/client.toml`, read by the `quorate` CLI).
    pub fn client_config(&self) -> ClientConfig {
        let tls = self.tls_paths(Role::Client, "demo-client");
        let mut config = ClientConfig::new(
            (0..self.coordinator_count())
                .filter_map(|i| self.coordinator_access(i).ok())
                .map(|(name, endpoint)| CoordinatorEntry::Named {
                    endpoint,
                    server_name: Some(name),
                })
                .collect(),
            absolute(&tls.ca),
            absolute(&tls.cert),
            absolute(&tls.key),
        );
        config.trust_domain = Some(self.spec.trust_domain.clone());
        config
    }

    fn client_toml(&self) -> anyhow::Result<String> {
        Ok(format!(
            "# The demo client of this testnet, for the quorate CLI:\n\
             #   quorate --config {} sign --key-id demo-ed25519 --message \"hi\"\n{}",
            self.dir.join("client.toml").display(),
            self.client_config().to_toml()?
        ))
    }

    /// A client of every coordinator, as the demo client (the client library:
    /// failover, intents, every signature verified).
    pub fn quorate_client(&self) -> anyhow::Result<quorate_client::Client> {
        Ok(quorate_client::Client::new(&self.client_config())?)
    }

    /// Stops every process gracefully.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.coordinator.stop(Duration::from_secs(5)).await?;
        for extra in &mut self.extra_coordinators {
            extra.process.stop(Duration::from_secs(5)).await?;
        }
        for node in &mut self.nodes {
            node.process.stop(Duration::from_secs(5)).await?;
        }
        Ok(())
    }
}

/// `path` made absolute (against the current directory), so `client.toml` works from
/// anywhere; left as it is if the current directory is unknown.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
