//! A Quorate network of real processes on loopback: PKI, node and coordinator
//! configs, `quorate-node` and `quorate-coordinator` processes, keys created by DKG
//! ceremonies, and `testnet.json`.
//!
//! Tests and drills use the same [`LocalNetwork`] as `quorate-testnet up`, so the
//! network they exercise is the one operators run.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use quorate_ceremony::import::{CeremonyFile, CeremonyNode};
use quorate_ceremony::keygen::{run_dkg, DkgRequest};
use quorate_ceremony::pki;
use quorate_proto::identity::Role;
use quorate_proto::pb;
use quorate_proto::tls::TlsPaths;
use tokio::process::{Child, Command};

use crate::client::SignerClient;
use crate::spec::{
    NetworkSpec, NodeSpec, TestnetCoordinator, TestnetJson, TestnetKey, TestnetNode,
};

/// How long a process may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Ports handed to testnet processes are drawn from below Linux's ephemeral range
/// (32768-60999): a port taken from the ephemeral range and released could be
/// reused at once as the source port of some outgoing connection, and the process
/// that is meant to listen on it would fail to bind.
const PORT_RANGE: std::ops::Range<u16> = 10_000..32_000;

/// A port reserved for one network for as long as the lease lives. Networks started
/// by parallel test processes on one machine coordinate through lock files, so two
/// of them never pick the same port (a bind check alone cannot tell a port another
/// network picked but has not bound yet).
#[derive(Debug)]
pub struct PortLease {
    /// The port.
    pub port: u16,
    _lock: std::fs::File,
}

/// Reserves a free loopback port outside the ephemeral range.
pub fn lease_port() -> anyhow::Result<PortLease> {
    use rand_core::{OsRng, RngCore};
    let dir = std::env::temp_dir().join("quorate-testnet-ports");
    std::fs::create_dir_all(&dir)?;
    let span = u32::from(PORT_RANGE.end - PORT_RANGE.start);
    for _ in 0..1000 {
        let port = PORT_RANGE.start + (OsRng.next_u32() % span) as u16;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{port}.lock")))?;
        // flock is per open file: another lease of this port, in this process or
        // another, holds its own open file and makes this fail.
        if lock.try_lock().is_err() {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(PortLease { port, _lock: lock });
        }
    }
    bail!("no free port in {PORT_RANGE:?}")
}

/// The directory holding `quorate-node` and `quorate-coordinator`: the directory of
/// the running executable (they are built side by side).
pub fn default_bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("executable has no directory"))?;
    // Test executables live one level down, in target/<profile>/deps.
    if dir.ends_with("deps") {
        if let Some(parent) = dir.parent() {
            return Ok(parent.to_path_buf());
        }
    }
    Ok(dir.to_path_buf())
}

fn binary(bin_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not found; build every binary first (`cargo build --workspace --bins`, with --release if this is a release build) or pass --bin-dir",
            path.display()
        );
    }
    Ok(path)
}

/// Deletes what [`LocalNetwork::start`] created in `dir`, leaving anything else. A
/// directory without `testnet.json` or `pki/` is left alone.
pub fn remove_testnet(dir: &Path) -> anyhow::Result<()> {
    if !dir.join("testnet.json").exists() && !dir.join("pki").exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let ours = matches!(
            name,
            "pki"
                | "logs"
                | "transcripts"
                | "approver"
                | "testnet.json"
                | "testnet.json.tmp"
                | "ceremony.toml"
                | "coordinator.toml"
        ) || name.starts_with("node-")
            || (name.starts_with("coordinator-") && name.ends_with(".toml"));
        if ours {
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
    }
    Ok(())
}

/// The ports of one network.
#[derive(Debug, Default)]
pub struct PortLeases(Vec<PortLease>);

impl PortLeases {
    /// Leases another port and returns its number.
    pub fn lease(&mut self) -> anyhow::Result<u16> {
        let lease = lease_port()?;
        let port = lease.port;
        self.0.push(lease);
        Ok(port)
    }
}

/// One managed process (node or coordinator).
#[derive(Debug)]
pub struct ManagedProcess {
    /// Name (node id or `coordinator`).
    pub name: String,
    program: PathBuf,
    config: PathBuf,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    child: Option<Child>,
}

impl ManagedProcess {
    fn new(name: &str, program: PathBuf, config: PathBuf, log: PathBuf) -> Self {
        Self {
            name: name.to_string(),
            program,
            config,
            log,
            child: None,
        }
    }

    /// Starts the process (appending to its log).
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("{} is already running", self.name);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = Command::new(&self.program)
            .arg("--config")
            .arg(&self.config)
            .env_remove("QUORATE_KEK")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // A test that panics must not leave processes behind.
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Whether the process is alive.
    pub fn is_running(&self) -> bool {
        self.child.as_ref().is_some_and(|c| c.id().is_some())
    }

    /// Exit status, if it has exited (reaping it).
    pub fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    /// Freezes the process (SIGSTOP): it keeps its sockets but answers nothing, like
    /// a hung host or a network path that drops packets.
    pub fn freeze(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGSTOP)
    }

    /// Resumes a frozen process (SIGCONT).
    pub fn thaw(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGCONT)
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Stops the process gracefully (SIGTERM), killing it after `grace`.
    pub async fn stop(&mut self, grace: Duration) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                child.kill().await?;
            }
        }
        Ok(())
    }

    /// Sends `signal` to the running process (e.g. SIGSTOP/SIGCONT to freeze it in
    /// place, which the drills use as a stand-in for a network partition: its sockets
    /// stay open but nothing answers).
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow!("{} is not running", self.name))?;
        let pid = i32::try_from(pid).context("pid out of range")?;
        kill(Pid::from_raw(pid), signal).with_context(|| format!("{signal} to {}", self.name))?;
        Ok(())
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| anyhow!("{} is not running", self.name))?;
        let status = tokio::time::timeout(timeout, child.wait())
            .await
            .map_err(|_| anyhow!("{} did not exit within {timeout:?}", self.name))??;
        self.child = None;
        Ok(status.code())
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// A running signer node.
#[derive(Debug)]
pub struct LocalNode {
    /// Its spec.
    pub spec: NodeSpec,
    /// `https://127.0.0.1:PORT`.
    pub endpoint: String,
    /// `127.0.0.1:PORT` of its Prometheus endpoint.
    pub metrics: String,
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
    /// The secret key of the network's compliance approver (listed in every policy
    /// key's approvers).
    pub approver_key_file: PathBuf,
    /// Further coordinators over the same nodes (stateless, so any of them can
    /// serve any request); empty unless started with [`LocalNetwork::start_with`].
    pub extra_coordinators: Vec<LocalCoordinator>,
    /// PKI directory.
    pub pki_dir: PathBuf,
    /// The ceremony file used to install keys.
    pub ceremony_file: PathBuf,
    /// Transcripts, by key id.
    pub transcripts: BTreeMap<String, PathBuf>,
}

fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_string()).to_string()
}

fn toml_path(path: &Path) -> String {
    toml_string(&path.display().to_string())
}

fn tls_toml(paths: &TlsPaths) -> String {
    format!(
        "[tls]\nca = {}\ncert = {}\nkey = {}\n",
        toml_path(&paths.ca),
        toml_path(&paths.cert),
        toml_path(&paths.key)
    )
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

/// Issues the certificate of coordinator `name`, writes `DIR/<name>.toml` naming
/// every node, and returns its (not yet started) process.
fn coordinator_process(
    dir: &Path,
    program: &Path,
    trust_domain: &str,
    name: &str,
    port: u16,
    metrics_port: u16,
    nodes: &[LocalNode],
) -> anyhow::Result<ManagedProcess> {
    let pki_dir = dir.join("pki");
    let cert = pki::issue(&pki_dir, trust_domain, Role::Coordinator, name, &[])?;
    let config = dir.join(format!("{name}.toml"));
    let mut text = format!(
        "trust_domain = {}\nlisten = {}\nmetrics_listen = {}\n{}",
        toml_string(trust_domain),
        toml_string(&format!("127.0.0.1:{port}")),
        toml_string(&format!("127.0.0.1:{metrics_port}")),
        tls_toml(&cert.tls_paths())
    );
    for node in nodes {
        text.push_str(&format!(
            "\n[[nodes]]\nid = {}\nendpoint = {}\n",
            toml_string(&node.spec.id),
            toml_string(&node.endpoint)
        ));
    }
    std::fs::write(&config, text)?;
    Ok(ManagedProcess::new(
        name,
        program.to_path_buf(),
        config,
        dir.join("logs").join(format!("{name}.log")),
    ))
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
        if coordinators == 0 {
            bail!("a network needs at least one coordinator");
        }
        quorate_proto::install_crypto_provider();
        let node_bin = binary(bin_dir, "quorate-node")?;
        let coordinator_bin = binary(bin_dir, "quorate-coordinator")?;
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

        let mut network_ports = PortLeases::default();
        let mut nodes = Vec::new();
        for node in &spec.nodes {
            let port = network_ports.lease()?;
            let metrics_port = network_ports.lease()?;
            let cert = pki::issue(&pki_dir, td, Role::Node, &node.id, &[])?;
            let node_dir = dir.join(&node.id);
            std::fs::create_dir_all(&node_dir)?;
            let kek_file = node_dir.join("kek.hex");
            write_private(&kek_file, &quorate_node::store::Kek::generate_hex())?;
            let data_dir = node_dir.join("data");
            let config_path = node_dir.join("node.toml");
            let config = format!(
                "node_id = {}\ntrust_domain = {}\nlisten = {}\nmetrics_listen = {}\nregion = {}\njurisdiction = {}\ndata_dir = {}\nkek_file = {}\n{}",
                toml_string(&node.id),
                toml_string(td),
                toml_string(&format!("127.0.0.1:{port}")),
                toml_string(&format!("127.0.0.1:{metrics_port}")),
                toml_string(&node.region),
                toml_string(&node.jurisdiction),
                toml_path(&data_dir),
                toml_path(&kek_file),
                tls_toml(&cert.tls_paths()),
            );
            std::fs::write(&config_path, config)?;
            let process = ManagedProcess::new(
                &node.id,
                node_bin.clone(),
                config_path.clone(),
                logs.join(format!("{}.log", node.id)),
            );
            nodes.push(LocalNode {
                spec: node.clone(),
                endpoint: format!("https://127.0.0.1:{port}"),
                metrics: format!("127.0.0.1:{metrics_port}"),
                process,
                config_path,
                data_dir,
                kek_file,
            });
        }

        // Coordinator configs (started after the keys exist).
        let coordinator_port = network_ports.lease()?;
        let coordinator_metrics_port = network_ports.lease()?;
        let coordinator = coordinator_process(
            &dir,
            &coordinator_bin,
            td,
            "coordinator",
            coordinator_port,
            coordinator_metrics_port,
            &nodes,
        )?;
        let mut extra_coordinators = Vec::new();
        for i in 2..=coordinators {
            let name = format!("coordinator-{i}");
            let port = network_ports.lease()?;
            let metrics_port = network_ports.lease()?;
            extra_coordinators.push(LocalCoordinator {
                process: coordinator_process(
                    &dir,
                    &coordinator_bin,
                    td,
                    &name,
                    port,
                    metrics_port,
                    &nodes,
                )?,
                endpoint: format!("https://127.0.0.1:{port}"),
                name,
            });
        }
        pki::issue(&pki_dir, td, Role::Client, "demo-client", &[])?;
        let ceremony_cert = pki::issue(&pki_dir, td, Role::Ceremony, "testnet", &[])?;
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
            coordinator_endpoint: format!("https://127.0.0.1:{coordinator_port}"),
            coordinator_metrics: format!("127.0.0.1:{coordinator_metrics_port}"),
            approver_key_file,
            extra_coordinators,
            pki_dir,
            ceremony_file,
            transcripts: BTreeMap::new(),
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
                    policy: key.policy.as_ref().map(|p| p.to_pb(&[approver_public])),
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

    /// An approval token from the network's approver for an out-of-policy quorum on
    /// `key_id`, valid for `valid_secs` from now.
    pub fn approve(&self, key_id: &str, valid_secs: u64, reason: &str) -> anyhow::Result<Vec<u8>> {
        crate::approver::approve(&self.approver_key_file, key_id, valid_secs, reason)
    }

    /// The ceremony's view of the network.
    pub fn ceremony(&self) -> anyhow::Result<CeremonyFile> {
        Ok(CeremonyFile::load(&self.ceremony_file)?)
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

    /// Issues a certificate for another party (e.g. a second client).
    pub fn issue(&self, role: Role, name: &str) -> anyhow::Result<TlsPaths> {
        Ok(pki::issue(&self.pki_dir, &self.spec.trust_domain, role, name, &[])?.tls_paths())
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

    /// Kills a node (SIGKILL).
    pub async fn kill_node(&mut self, id: &str) -> anyhow::Result<()> {
        let i = self.node_index(id)?;
        self.nodes[i].process.kill().await
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

    /// A client for the public API, as the demo client.
    pub async fn client(&self) -> anyhow::Result<SignerClient> {
        SignerClient::connect(
            &self.coordinator_endpoint,
            "coordinator",
            &self.tls_paths(Role::Client, "demo-client"),
        )
    }

    /// Waits until node `i` answers an authenticated call.
    async fn wait_node_ready(&mut self, i: usize) -> anyhow::Result<()> {
        let tls = self.tls_paths(Role::Ceremony, "testnet").load()?;
        let node = &mut self.nodes[i];
        let channel = tls.channel(&node.endpoint, &node.spec.id, Duration::from_secs(1))?;
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

    /// Kills coordinator `i` (SIGKILL).
    pub async fn kill_coordinator(&mut self, i: usize) -> anyhow::Result<()> {
        self.coordinator_process_mut(i)?.kill().await
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
        self.nodes[i].process.stop(Duration::from_secs(5)).await
    }

    /// Freezes a node (SIGSTOP): its connections stay open but it answers nothing,
    /// which is what its peers see of a network partition.
    pub fn pause_node(&self, id: &str) -> anyhow::Result<()> {
        self.node(id)?.process.signal(Signal::SIGSTOP)
    }

    /// Thaws a node frozen by [`LocalNetwork::pause_node`] (SIGCONT).
    pub fn resume_node(&self, id: &str) -> anyhow::Result<()> {
        self.node(id)?.process.signal(Signal::SIGCONT)
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

    /// Writes `DIR/testnet.json` atomically (write then rename), so a reader never
    /// sees half a file.
    pub fn write_testnet_json(&self) -> anyhow::Result<()> {
        let tmp = self.dir.join("testnet.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&self.testnet_json())?)?;
        std::fs::rename(&tmp, self.dir.join("testnet.json"))?;
        Ok(())
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
