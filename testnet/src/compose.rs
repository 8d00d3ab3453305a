//! The docker-compose testnet: its layout (containers, network segments, fixed
//! addresses), the `docker-compose.yml` rendered from it, the one-shot setup steps
//! that run inside containers (`compose-setup`, `compose-keys`), and
//! [`ComposeNetwork`], which drives the running network with docker commands for the
//! drills.
//!
//! One layout is the single source of truth: `testnet/docker-compose.yml` is
//! rendered from [`ComposeLayout::default_five_regions`] (a test checks the committed
//! file still matches), and the setup step writes configs for the same addresses.
//!
//! Containers reach each other by fixed IP address, not by service name: the images
//! hold statically linked glibc binaries, and static glibc cannot load the NSS
//! modules `getaddrinfo` needs for DNS, so a name lookup inside a container fails.
//! TLS still checks names: every connection presents the peer's name (`node-1`,
//! `coordinator-1`) as the TLS server name, and certificates carry those names.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use quorate_ceremony::import::{CeremonyFile, CeremonyNode};
use quorate_ceremony::keygen::{run_repair, PolicyFile, RepairRequest};
use quorate_ceremony::pki;
use quorate_proto::identity::Role;
use quorate_proto::pb;
use quorate_proto::tls::TlsPaths;

use crate::client::SignerClient;
use crate::spec::{
    KeySpec, NetworkSpec, NodeSpec, PolicySpec, TestnetCoordinator, TestnetJson, TestnetKey,
    TestnetNode,
};

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

/// The key ceremony the `keys` container runs once per demo key whose shares no
/// node holds yet: distributed key generation across the five nodes, as on the
/// local testnet (no process ever holds a whole key). Placeholders: `{ceremony}`
/// (ceremony file), `{key_id}`, `{ciphersuite}`, `{threshold}`, `{transcript}` (a
/// path that does not exist yet), and `{policy_args}`, an argument of its own that
/// becomes `--policy FILE` for a key with a policy (the file `compose-setup` wrote,
/// listing the network's approver) and disappears for an unrestricted key.
/// Switching the testnet to another ceremony (e.g. `import`, which takes the same
/// arguments) is a change of this list, then
/// `quorate-testnet compose-file > testnet/docker-compose.yml`.
pub const KEY_CEREMONY: &[&str] = &[
    "/bin/quorate-ceremony",
    "dkg",
    "--ceremony",
    "{ceremony}",
    "--key-id",
    "{key_id}",
    "--ciphersuite",
    "{ciphersuite}",
    "--threshold",
    "{threshold}",
    "--transcript",
    "{transcript}",
    POLICY_ARGS,
];

/// The placeholder argument of [`KEY_CEREMONY`] that becomes `--policy FILE` or
/// nothing.
pub const POLICY_ARGS: &str = "{policy_args}";

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
    fn network_key(&self) -> String {
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
    /// DESIGN.md's five regions, 3-of-5, two coordinators.
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

    /// `docker-compose.yml`.
    pub fn render_compose_file(&self) -> String {
        let mut y = String::new();
        let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        let list = |items: &[String]| {
            format!(
                "[{}]",
                items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
            )
        };
        let state = format!("./{STATE_DIR}");
        y.push_str(
            "# Quorate 3-of-5 testnet: five signer nodes in five regions, each alone on its own\n\
             # network segment, two coordinators attached to every segment, and one-shot\n\
             # setup (PKI, configs) and ceremony (keys) containers. See docs/testnet.md.\n\
             #\n\
             # GENERATED from testnet/src/compose.rs (ComposeLayout); do not edit by hand:\n\
             #   cargo run -p quorate-testnet -- compose-file > testnet/docker-compose.yml\n\
             # A test fails when this file and the layout disagree.\n\
             #\n\
             # Build the image first: testnet/build-images.sh\n",
        );
        y.push_str("version: \"2.4\"\n\nservices:\n");

        // setup: PKI, per-party configs, host testnet.json. No network needed.
        y.push_str("  setup:\n");
        y.push_str(&format!("    image: {IMAGE}\n"));
        y.push_str("    container_name: quorate-setup\n");
        y.push_str(&format!(
            "    command: {}\n",
            list(&[
                "/bin/quorate-testnet".into(),
                "compose-setup".into(),
                "--dir".into(),
                STATE_MOUNT.into(),
            ])
        ));
        y.push_str("    network_mode: none\n");
        y.push_str(&format!(
            "    volumes: [{}]\n",
            q(&format!("{state}:{STATE_MOUNT}"))
        ));

        // keys: the key ceremony, once the nodes serve.
        let mut keys_cmd: Vec<String> = vec![
            "/bin/quorate-testnet".into(),
            "compose-keys".into(),
            "--dir".into(),
            STATE_MOUNT.into(),
            "--".into(),
        ];
        keys_cmd.extend(KEY_CEREMONY.iter().map(|s| s.to_string()));
        y.push_str("  keys:\n");
        y.push_str(&format!("    image: {IMAGE}\n"));
        y.push_str("    container_name: quorate-keys\n");
        y.push_str(&format!("    command: {}\n", list(&keys_cmd)));
        y.push_str(
            "    depends_on:\n      setup:\n        condition: service_completed_successfully\n",
        );
        for n in &self.nodes {
            y.push_str(&format!(
                "      {}:\n        condition: service_started\n",
                n.service()
            ));
        }
        // Not the approver: its secret key stays with `setup` and the host.
        y.push_str(&format!(
            "    volumes: [{}, {}, {}]\n",
            q(&format!("{state}/ceremony:{STATE_MOUNT}/ceremony:ro")),
            q(&format!(
                "{state}/{POLICIES_DIR}:{STATE_MOUNT}/{POLICIES_DIR}:ro"
            )),
            q(&format!("{state}/transcripts:{STATE_MOUNT}/transcripts"))
        ));
        y.push_str("    networks:\n");
        for n in &self.nodes {
            y.push_str(&format!(
                "      {}:\n        ipv4_address: 172.29.{}.{}\n",
                n.network_key(),
                n.segment,
                self.ceremony_octet
            ));
        }

        for n in &self.nodes {
            y.push_str(&format!("  {}:\n", n.service()));
            y.push_str(&format!("    image: {IMAGE}\n"));
            y.push_str(&format!("    container_name: {}\n", n.container()));
            y.push_str(&format!("    hostname: {}\n", n.spec.id));
            y.push_str(&format!(
                "    labels:\n      org.quorate.region: {}\n      org.quorate.jurisdiction: {}\n",
                q(&n.spec.region),
                q(&n.spec.jurisdiction)
            ));
            y.push_str(&format!(
                "    command: {}\n",
                list(&[
                    "/bin/quorate-node".into(),
                    "--config".into(),
                    format!("{STATE_MOUNT}/{}/node.toml", n.spec.id),
                ])
            ));
            y.push_str("    depends_on:\n      setup:\n        condition: service_completed_successfully\n");
            y.push_str(&format!(
                "    volumes: [{}, {}]\n",
                q(&format!(
                    "{state}/{id}:{STATE_MOUNT}/{id}:ro",
                    id = n.spec.id
                )),
                q(&format!("{}:/data", n.volume()))
            ));
            y.push_str(&format!(
                "    networks:\n      {}:\n        ipv4_address: {}\n",
                n.network_key(),
                n.ip()
            ));
            y.push_str("    stop_grace_period: 5s\n");
        }

        for c in &self.coordinators {
            y.push_str(&format!("  {}:\n", c.name));
            y.push_str(&format!("    image: {IMAGE}\n"));
            y.push_str(&format!("    container_name: {}\n", c.container()));
            y.push_str(&format!(
                "    command: {}\n",
                list(&[
                    "/bin/quorate-coordinator".into(),
                    "--config".into(),
                    format!("{STATE_MOUNT}/{}/coordinator.toml", c.name),
                ])
            ));
            y.push_str(
                "    depends_on:\n      keys:\n        condition: service_completed_successfully\n",
            );
            y.push_str(&format!(
                "    volumes: [{}]\n",
                q(&format!("{state}/{n}:{STATE_MOUNT}/{n}:ro", n = c.name))
            ));
            y.push_str(&format!(
                "    ports: [{}]\n",
                q(&format!("127.0.0.1:{}:{COORDINATOR_PORT}", c.host_port))
            ));
            y.push_str("    networks:\n");
            for n in &self.nodes {
                y.push_str(&format!(
                    "      {}:\n        ipv4_address: {}\n",
                    n.network_key(),
                    c.ip_on(n)
                ));
            }
            y.push_str("    stop_grace_period: 5s\n");
        }

        y.push_str("\nnetworks:\n");
        for n in &self.nodes {
            y.push_str(&format!("  {}:\n", n.network_key()));
            y.push_str(&format!("    name: {}\n", n.network()));
            y.push_str("    ipam:\n      config:\n");
            // Addresses assigned dynamically come from the upper half, clear of the
            // fixed ones below .128.
            y.push_str(&format!(
                "        - subnet: {}\n          ip_range: 172.29.{}.128/25\n",
                n.subnet(),
                n.segment
            ));
        }
        y.push_str("\nvolumes:\n");
        for n in &self.nodes {
            y.push_str(&format!("  {}:\n    name: {}\n", n.volume(), n.volume()));
        }
        y
    }
}

/// TLS files of one party inside its own state subdirectory.
fn party_tls(dir: &Path) -> TlsPaths {
    TlsPaths {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    }
}

/// Copies an issued certificate into `dir` (created), so that each container
/// mounts only its own secrets, never the CA key or another party's key.
fn install_party(issued: &pki::IssuedCert, dir: &Path, key_mode: u32) -> anyhow::Result<TlsPaths> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let tls = party_tls(dir);
    std::fs::copy(&issued.ca, &tls.ca)?;
    std::fs::copy(&issued.cert, &tls.cert)?;
    std::fs::copy(&issued.key, &tls.key)?;
    std::fs::set_permissions(&tls.key, std::fs::Permissions::from_mode(key_mode))?;
    Ok(tls)
}

fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_string()).to_string()
}

fn tls_toml(paths: &TlsPaths) -> String {
    format!(
        "[tls]\nca = {}\ncert = {}\nkey = {}\n",
        toml_string(&paths.ca.display().to_string()),
        toml_string(&paths.cert.display().to_string()),
        toml_string(&paths.key.display().to_string())
    )
}

/// `compose-setup`: writes the PKI, each party's config and TLS files, the
/// ceremony file, the approver key, the policy files and `testnet.json` for clients
/// on the docker host, under `dir` (the state directory as mounted in the
/// container). What `dir` already holds is kept (the PKI, the approver key), so `up`
/// can be repeated; policy files and `testnet.json` follow from the layout and the
/// approver and are written every time. Node stores live in volumes and keys are
/// checked separately by `compose-keys`.
pub fn setup(layout: &ComposeLayout, dir: &Path) -> anyhow::Result<()> {
    if dir.join("pki").join(pki::CA_CERT_FILE).exists() {
        println!("{} already holds a PKI; keeping it", dir.display());
    } else {
        write_pki_and_configs(layout, dir)?;
        println!(
            "wrote PKI and configs for the compose testnet in {}",
            dir.display()
        );
    }
    // The compliance approver of the policy keys. Kept in `approver/`, which no
    // other container mounts; readable on the host (the state directory is written
    // by root in the container) so drills and custodians there can sign approval
    // tokens with it, as on the local testnet. It is a development approver.
    let approver_key = crate::approver::key_path(dir);
    if approver_key.exists() {
        println!("keeping the approver key {}", approver_key.display());
    } else {
        crate::approver::create(dir, 0o644)?;
        println!("created the approver key {}", approver_key.display());
    }
    let approver = crate::approver::public_key(&approver_key)?;
    write_policies(layout, dir, &approver)?;
    write_testnet_json(layout, dir)?;
    Ok(())
}

/// The PKI, every node's and coordinator's config and TLS files, the ceremony file
/// and the demo client's certificate.
fn write_pki_and_configs(layout: &ComposeLayout, dir: &Path) -> anyhow::Result<()> {
    let pki_dir = dir.join("pki");
    let td = layout.spec.trust_domain.as_str();
    pki::create_ca(&pki_dir, td)?;

    for node in &layout.nodes {
        let issued = pki::issue(&pki_dir, td, Role::Node, &node.spec.id, &[node.ip()])?;
        let node_dir = dir.join(&node.spec.id);
        let tls = install_party(&issued, &node_dir, 0o600)?;
        let kek = node_dir.join("kek.hex");
        std::fs::write(&kek, quorate_node::store::Kek::generate_hex())?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600))?;
        }
        let config = format!(
            "node_id = {}\ntrust_domain = {}\nlisten = {}\nregion = {}\njurisdiction = {}\ndata_dir = \"/data/store\"\nkek_file = {}\n{}",
            toml_string(&node.spec.id),
            toml_string(td),
            toml_string(&format!("0.0.0.0:{NODE_PORT}")),
            toml_string(&node.spec.region),
            toml_string(&node.spec.jurisdiction),
            toml_string(&kek.display().to_string()),
            tls_toml(&tls),
        );
        std::fs::write(node_dir.join("node.toml"), config)?;
    }

    for c in &layout.coordinators {
        let issued = pki::issue(&pki_dir, td, Role::Coordinator, &c.name, &[])?;
        let c_dir = dir.join(&c.name);
        let tls = install_party(&issued, &c_dir, 0o600)?;
        let mut text = format!(
            "trust_domain = {}\nlisten = {}\n{}",
            toml_string(td),
            toml_string(&format!("0.0.0.0:{COORDINATOR_PORT}")),
            tls_toml(&tls)
        );
        for node in &layout.nodes {
            text.push_str(&format!(
                "\n[[nodes]]\nid = {}\nendpoint = {}\n",
                toml_string(&node.spec.id),
                toml_string(&node.endpoint())
            ));
        }
        std::fs::write(c_dir.join("coordinator.toml"), text)?;
    }

    // The ceremony's file uses paths relative to itself, so the same file serves
    // inside the `keys` container and on the host (the drills probe nodes with it).
    let issued = pki::issue(&pki_dir, td, Role::Ceremony, "compose", &[])?;
    let ceremony_dir = dir.join("ceremony");
    // Readable by the host user running drills (the state directory is written by
    // root in the container); it is a development PKI.
    install_party(&issued, &ceremony_dir, 0o644)?;
    let ceremony = CeremonyFile {
        trust_domain: td.to_string(),
        tls: party_tls(Path::new("")),
        nodes: layout
            .nodes
            .iter()
            .map(|n| CeremonyNode {
                id: n.spec.id.clone(),
                endpoint: n.endpoint(),
                region: n.spec.region.clone(),
                jurisdiction: n.spec.jurisdiction.clone(),
            })
            .collect(),
        source: PathBuf::new(),
    };
    std::fs::write(
        ceremony_dir.join("ceremony.toml"),
        toml::to_string(&ceremony)?,
    )?;
    std::fs::create_dir_all(dir.join("transcripts"))?;

    let issued = pki::issue(&pki_dir, td, Role::Client, "demo-client", &[])?;
    install_party(&issued, &dir.join("client"), 0o644)?;
    Ok(())
}

/// The policy file of `key` in the state directory `dir`.
pub fn policy_path(dir: &Path, key_id: &str) -> PathBuf {
    dir.join(POLICIES_DIR).join(format!("{key_id}.toml"))
}

/// `policies/KEY.toml` for every key with a policy: the spec's policy with the
/// network's approver, as `quorate-ceremony dkg --policy` reads it.
fn write_policies(layout: &ComposeLayout, dir: &Path, approver: &[u8; 32]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join(POLICIES_DIR))?;
    for key in &layout.spec.keys {
        let Some(policy) = &key.policy else {
            continue;
        };
        let file = PolicyFile::from_pb(&policy.to_pb(&[*approver]));
        let path = policy_path(dir, &key.key_id);
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, toml::to_string(&file)?)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(())
}

/// `testnet.json` for clients on the docker host: coordinators at their published
/// ports, TLS paths relative to the state directory.
fn write_testnet_json(layout: &ComposeLayout, dir: &Path) -> anyhow::Result<()> {
    let first = layout
        .coordinators
        .first()
        .ok_or_else(|| anyhow!("layout has no coordinator"))?;
    let client = party_tls(Path::new("client"));
    let json = TestnetJson {
        coordinator: first.host_endpoint(),
        server_name: first.name.clone(),
        ca: client.ca,
        client_cert: client.cert,
        client_key: client.key,
        nodes: layout
            .nodes
            .iter()
            .map(|n| TestnetNode {
                id: n.spec.id.clone(),
                endpoint: n.endpoint(),
                region: n.spec.region.clone(),
                jurisdiction: n.spec.jurisdiction.clone(),
                pid: 0,
            })
            .collect(),
        keys: layout
            .spec
            .keys
            .iter()
            .map(|k| TestnetKey {
                key_id: k.key_id.clone(),
                ciphersuite: k.ciphersuite.name().to_string(),
                policy: k.policy.as_ref().map(PolicySpec::to_testnet_json),
            })
            .collect(),
        coordinators: layout
            .coordinators
            .iter()
            .map(|c| TestnetCoordinator {
                endpoint: c.host_endpoint(),
                server_name: c.name.clone(),
            })
            .collect(),
    };
    let tmp = dir.join("testnet.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&json)?)?;
    std::fs::rename(&tmp, dir.join("testnet.json"))?;
    Ok(())
}

/// How long `compose-keys` waits for every node to serve.
const NODES_TIMEOUT: Duration = Duration::from_secs(90);

/// Waits until the node at `endpoint` answers an authenticated `Ceremony.GetInfo`.
pub async fn wait_node_serving(
    tls: &TlsPaths,
    node_id: &str,
    endpoint: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let channel = tls
        .load()?
        .channel(endpoint, node_id, Duration::from_secs(1))?;
    let started = Instant::now();
    loop {
        let mut client = pb::ceremony_client::CeremonyClient::new(channel.clone());
        let mut req = tonic::Request::new(pb::GetInfoRequest {});
        req.set_timeout(Duration::from_secs(1));
        match client.get_info(req).await {
            Ok(_) => return Ok(()),
            Err(e) if started.elapsed() > timeout => {
                bail!("{node_id} at {endpoint} did not serve within {timeout:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Whether `node` holds key `key_id` (asks `Ceremony.GetManifest`).
pub async fn node_holds_key(
    tls: &TlsPaths,
    node: &CeremonyNode,
    key_id: &str,
) -> anyhow::Result<bool> {
    let channel = tls
        .load()?
        .channel(&node.endpoint, &node.id, Duration::from_secs(2))?;
    let mut client = pb::ceremony_client::CeremonyClient::new(channel);
    let mut req = tonic::Request::new(pb::GetManifestRequest {
        key_id: key_id.to_string(),
    });
    req.set_timeout(Duration::from_secs(5));
    match client.get_manifest(req).await {
        Ok(_) => Ok(true),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
        Err(s) => Err(anyhow!("{}: GetManifest({key_id}): {s}", node.id)),
    }
}

/// `compose-keys`: waits until every node serves, then runs `ceremony` (the
/// [`KEY_CEREMONY`] command line with its placeholders) once for each demo key that
/// no node holds yet. A key that every node already holds is kept (a repeated `up`).
/// A key that at least `t` nodes hold but others lost (a node whose volume was
/// wiped, e.g. by an interrupted `wipe-and-repair` drill) is repaired on those from
/// `t` holders; with fewer than `t` holders nothing can rebuild it, which is an
/// error.
pub async fn create_keys(
    layout: &ComposeLayout,
    dir: &Path,
    ceremony: &[String],
) -> anyhow::Result<()> {
    let program = ceremony
        .first()
        .ok_or_else(|| anyhow!("no key ceremony command given"))?;
    let ceremony_path = dir.join("ceremony").join("ceremony.toml");
    let file = CeremonyFile::load(&ceremony_path)?;
    for node in &file.nodes {
        wait_node_serving(&file.tls, &node.id, &node.endpoint, NODES_TIMEOUT).await?;
    }
    let transcripts = dir.join("transcripts");
    std::fs::create_dir_all(&transcripts)?;
    for key in &layout.spec.keys {
        let mut lacking = Vec::new();
        for node in &file.nodes {
            if !node_holds_key(&file.tls, node, &key.key_id).await? {
                lacking.push(node.id.clone());
            }
        }
        let holders = file.nodes.len() - lacking.len();
        if lacking.is_empty() {
            println!("{}: every node holds it already; keeping it", key.key_id);
            continue;
        }
        if holders >= usize::from(layout.spec.threshold) {
            for node in &lacking {
                let outcome = run_repair(
                    &file,
                    RepairRequest {
                        key_id: key.key_id.clone(),
                        node: node.clone(),
                    },
                )
                .await
                .with_context(|| format!("{}: repairing {node}'s share", key.key_id))?;
                println!(
                    "{}: {node} had lost its share; repaired from {}",
                    key.key_id,
                    outcome.helpers.join(", ")
                );
            }
            continue;
        }
        if holders > 0 {
            bail!(
                "{}: only {holders} of {} nodes hold it, fewer than the {} that can rebuild it; remove the volumes (docker-compose down -v) and start again",
                key.key_id,
                file.nodes.len(),
                layout.spec.threshold
            );
        }
        let transcript = transcripts.join(format!("{}.json", key.key_id));
        if transcript.exists() {
            // From an earlier network whose node volumes were removed since.
            let stale = transcripts.join(format!(
                "{}.json.stale-{}",
                key.key_id,
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default()
            ));
            std::fs::rename(&transcript, &stale)?;
        }
        let policy = key.policy.as_ref().map(|_| policy_path(dir, &key.key_id));
        if let Some(path) = &policy {
            if !path.is_file() {
                bail!(
                    "{}: its policy file {} is missing (compose-setup writes it)",
                    key.key_id,
                    path.display()
                );
            }
        }
        let args = ceremony_command(
            &ceremony[1..],
            &CeremonyArgs {
                ceremony: &ceremony_path,
                key,
                threshold: layout.spec.threshold,
                transcript: &transcript,
                policy: policy.as_deref(),
            },
        )?;
        println!("{}: running {program} {}", key.key_id, args.join(" "));
        let status = tokio::process::Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .status()
            .await
            .with_context(|| format!("starting {program}"))?;
        if !status.success() {
            bail!("{}: key ceremony failed ({status})", key.key_id);
        }
    }
    Ok(())
}

/// What fills the placeholders of [`KEY_CEREMONY`] for one key.
#[derive(Clone, Copy, Debug)]
pub struct CeremonyArgs<'a> {
    /// The ceremony file.
    pub ceremony: &'a Path,
    /// The key to create.
    pub key: &'a KeySpec,
    /// Signers needed.
    pub threshold: u16,
    /// Where the transcript goes.
    pub transcript: &'a Path,
    /// The key's policy file, for a key with a policy.
    pub policy: Option<&'a Path>,
}

/// The ceremony's arguments for one key: `template` (the arguments of
/// [`KEY_CEREMONY`], program excluded) with its placeholders filled in. A key with
/// a policy needs [`POLICY_ARGS`] in the template: without it the key would be
/// created unrestricted, so that is an error, not a silent downgrade.
pub fn ceremony_command(
    template: &[String],
    args: &CeremonyArgs<'_>,
) -> anyhow::Result<Vec<String>> {
    let key = args.key;
    match (key.policy.is_some(), args.policy) {
        (true, None) => bail!(
            "{}: the key has a policy but no policy file was given",
            key.key_id
        ),
        (false, Some(path)) => bail!(
            "{}: the key is unrestricted, yet a policy file ({}) was given",
            key.key_id,
            path.display()
        ),
        _ => {}
    }
    if args.policy.is_some() && !template.iter().any(|a| a == POLICY_ARGS) {
        bail!(
            "{}: the key has a policy, but the key ceremony command has no {POLICY_ARGS} argument to pass it; it would be created unrestricted",
            key.key_id
        );
    }
    let mut out = Vec::with_capacity(template.len() + 1);
    for a in template {
        if a == POLICY_ARGS {
            if let Some(path) = args.policy {
                out.push("--policy".to_string());
                out.push(path.display().to_string());
            }
            continue;
        }
        out.push(
            a.replace("{ceremony}", &args.ceremony.display().to_string())
                .replace("{key_id}", &key.key_id)
                .replace("{ciphersuite}", ceremony_arg(key.ciphersuite))
                .replace("{threshold}", &args.threshold.to_string())
                .replace("{transcript}", &args.transcript.display().to_string()),
        );
    }
    Ok(out)
}

/// The ciphersuite as `quorate-ceremony` spells it on its command line.
fn ceremony_arg(suite: quorate_proto::suite::Ciphersuite) -> &'static str {
    use quorate_proto::suite::Ciphersuite;
    match suite {
        Ciphersuite::Ed25519 => "ed25519",
        Ciphersuite::Secp256k1 => "secp256k1",
        Ciphersuite::Secp256k1Tr => "secp256k1-tr",
    }
}

/// How the host runs Compose: the `docker compose` plugin when present, else the
/// standalone `docker-compose` (v1 or v2).
pub fn compose_command() -> anyhow::Result<Vec<String>> {
    let works = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works("docker", &["compose", "version"]) {
        Ok(vec!["docker".into(), "compose".into()])
    } else if works("docker-compose", &["version"]) {
        Ok(vec!["docker-compose".into()])
    } else {
        bail!("neither `docker compose` nor `docker-compose` is available")
    }
}

/// Runs a docker command, failing with its stderr.
async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("docker")
            .args(args)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .map_err(|_| anyhow!("docker {} did not finish within 120 s", args.join(" ")))?
    .with_context(|| format!("running docker {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The state of container `name` (`docker inspect -f FORMAT`), or `None` when no
/// such container exists.
async fn container_state(name: &str, format: &str) -> anyhow::Result<Option<String>> {
    match docker(&["inspect", "--type", "container", "-f", format, name]).await {
        Ok(state) => Ok(Some(state)),
        Err(e) if format!("{e:#}").contains("No such") => Ok(None),
        Err(e) => Err(e),
    }
}

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
        let mut cmd = compose_command()?;
        cmd.extend([
            "-f".into(),
            compose_file.display().to_string(),
            "up".into(),
            "-d".into(),
        ]);
        let status = tokio::time::timeout(
            Duration::from_secs(300),
            tokio::process::Command::new(&cmd[0])
                .args(&cmd[1..])
                .stdin(Stdio::null())
                .status(),
        )
        .await
        .map_err(|_| anyhow!("{} did not finish within 300 s", cmd.join(" ")))??;
        if !status.success() {
            bail!(
                "{} failed ({status}); see `docker logs quorate-setup` and `docker logs quorate-keys`",
                cmd.join(" ")
            );
        }
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

    /// Runs `docker-compose -f FILE ARGS` (or `docker compose`), failing with its
    /// output.
    async fn compose(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut cmd = compose_command()?;
        cmd.extend(["-f".into(), self.compose_file.display().to_string()]);
        cmd.extend(args.iter().map(|a| a.to_string()));
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::new(&cmd[0])
                .args(&cmd[1..])
                .stdin(Stdio::null())
                .output(),
        )
        .await
        .map_err(|_| anyhow!("{} did not finish within 120 s", cmd.join(" ")))?
        .with_context(|| format!("running {}", cmd.join(" ")))?;
        if !out.status.success() {
            bail!(
                "{} failed ({}): {}",
                cmd.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
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
        if let Err(e) = docker(&["volume", "rm", &node.volume()]).await {
            // Already gone (an earlier wipe that was interrupted) is fine.
            if !format!("{e:#}").contains("No such volume") {
                return Err(e);
            }
        }
        self.recreate_node(node).await
    }

    /// `up -d --no-deps` of one node's service: creates its container (and volume,
    /// if missing) and starts it, touching no other service.
    async fn recreate_node(&self, node: &ComposeNode) -> anyhow::Result<()> {
        self.compose(&["up", "-d", "--no-deps", &node.service()])
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
        docker(&["kill", &self.layout.node(id)?.container()])
            .await
            .map(drop)
    }

    /// `docker stop` (SIGTERM, SIGKILL after 5 s).
    pub async fn stop_node(&self, id: &str) -> anyhow::Result<()> {
        docker(&["stop", "-t", "5", &self.layout.node(id)?.container()])
            .await
            .map(drop)
    }

    /// `docker start` a node and wait until it serves.
    pub async fn start_node(&self, id: &str) -> anyhow::Result<()> {
        docker(&["start", &self.layout.node(id)?.container()]).await?;
        self.wait_node(id).await
    }

    /// Cuts a node off: disconnects it from its segment (its only network).
    pub async fn partition_node(&self, id: &str) -> anyhow::Result<()> {
        let node = self.layout.node(id)?;
        docker(&["network", "disconnect", &node.network(), &node.container()])
            .await
            .map(drop)
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
        docker(&["pause", &self.layout.node(id)?.container()])
            .await
            .map(drop)
    }

    /// `docker unpause`.
    pub async fn resume_node(&self, id: &str) -> anyhow::Result<()> {
        docker(&["unpause", &self.layout.node(id)?.container()])
            .await
            .map(drop)
    }

    fn coordinator_container(&self, i: usize) -> anyhow::Result<String> {
        self.layout
            .coordinators
            .get(i)
            .map(ComposeCoordinator::container)
            .ok_or_else(|| anyhow!("no coordinator #{i}"))
    }

    /// `docker kill` coordinator `i`.
    pub async fn kill_coordinator(&self, i: usize) -> anyhow::Result<()> {
        docker(&["kill", &self.coordinator_container(i)?])
            .await
            .map(drop)
    }

    /// `docker start` coordinator `i` and wait until it lists every key.
    pub async fn start_coordinator(&self, i: usize) -> anyhow::Result<()> {
        docker(&["start", &self.coordinator_container(i)?]).await?;
        self.wait_coordinator(i).await
    }

    /// Puts every container back as `up` left it (running, unpaused, connected to
    /// its segment), whatever a drill did, and waits until all serve.
    /// A node container that is gone (a wipe interrupted before it was created
    /// again) is created afresh; its lost shares are for the ceremony to repair
    /// (see `Target::restore`).
    pub async fn restore(&self) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed compose file is the one the layout renders, so the addresses
    /// the setup step writes into configs are the ones the containers get.
    #[test]
    fn committed_compose_file_matches_the_layout() {
        let committed = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docker-compose.yml"),
        )
        .unwrap_or_default();
        let rendered = ComposeLayout::default_five_regions().render_compose_file();
        assert!(
            committed == rendered,
            "testnet/docker-compose.yml is out of date; regenerate it with\n  cargo run -p quorate-testnet -- compose-file > testnet/docker-compose.yml"
        );
    }

    /// The volumes line of every service in the rendered compose file.
    fn service_volumes(rendered: &str) -> Vec<(String, String)> {
        let services = rendered
            .split("\nservices:\n")
            .nth(1)
            .and_then(|rest| rest.split("\nnetworks:\n").next())
            .unwrap_or_default();
        let mut current = String::new();
        let mut out = Vec::new();
        for line in services.lines() {
            if let Some(name) = line
                .strip_prefix("  ")
                .filter(|l| !l.starts_with(' '))
                .and_then(|l| l.strip_suffix(':'))
            {
                current = name.to_string();
            } else if let Some(volumes) = line.trim_start().strip_prefix("volumes: ") {
                out.push((current.clone(), volumes.to_string()));
            }
        }
        out
    }

    #[test]
    fn compose_keys_are_made_by_dkg_with_the_eu_key_and_its_policy() {
        let layout = ComposeLayout::default_five_regions();
        // The same keys as the local testnet, the EU-policy key included.
        assert_eq!(layout.spec.keys, NetworkSpec::default_five_regions().keys);
        let eu = layout
            .spec
            .keys
            .iter()
            .find(|k| k.key_id == "eu-payments")
            .expect("the compose layout has the EU key");
        assert_eq!(eu.ciphersuite, quorate_proto::suite::Ciphersuite::Ed25519);
        assert_eq!(eu.policy, Some(PolicySpec::residency("EU", 2)));

        let rendered = layout.render_compose_file();
        let keys_command = rendered
            .lines()
            .skip_while(|l| *l != "  keys:")
            .find_map(|l| l.trim_start().strip_prefix("command: "))
            .expect("the keys service has a command");
        assert!(
            keys_command.contains(r#""/bin/quorate-ceremony", "dkg""#),
            "{keys_command}"
        );
        assert!(!keys_command.contains("import"), "{keys_command}");
        assert!(keys_command.contains(POLICY_ARGS), "{keys_command}");
    }

    #[test]
    fn only_setup_sees_the_approver_key_and_the_keys_container_gets_the_policies() {
        let rendered = ComposeLayout::default_five_regions().render_compose_file();
        let volumes = service_volumes(&rendered);
        assert_eq!(volumes.len(), 1 + 1 + 5 + 2, "{volumes:?}");
        for (service, v) in &volumes {
            let whole_state = v.contains(&format!("\"./{STATE_DIR}:{STATE_MOUNT}\""));
            assert_eq!(whole_state, service == "setup", "{service}: {v}");
            assert!(!v.contains(crate::approver::APPROVER_DIR), "{service}: {v}");
        }
        let keys = volumes
            .iter()
            .find(|(s, _)| s == "keys")
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        assert!(
            keys.contains(&format!(
                "./{STATE_DIR}/{POLICIES_DIR}:{STATE_MOUNT}/{POLICIES_DIR}:ro"
            )),
            "{keys}"
        );
    }

    #[test]
    fn setup_writes_the_approver_and_the_eu_policy_and_lists_it_in_testnet_json(
    ) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let layout = ComposeLayout::default_five_regions();
        let dir = tempfile::tempdir()?;
        setup(&layout, dir.path())?;

        let approver_file = crate::approver::key_path(dir.path());
        let approver = crate::approver::public_key(&approver_file)?;
        let mode = std::fs::metadata(&approver_file)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "readable by the host user running drills");

        let policy = PolicyFile::load(&policy_path(dir.path(), "eu-payments"))?;
        assert_eq!(policy.home_jurisdictions, vec!["EU".to_string()]);
        assert_eq!(policy.min_home_signers, 2);
        assert_eq!(policy.approver_keys, vec![approver.to_vec()]);
        assert!(policy.allowed_clients.is_empty());
        // Unrestricted keys get no policy file.
        assert!(!policy_path(dir.path(), "demo-ed25519").exists());

        let json = TestnetJson::read(dir.path())?;
        let policies: Vec<(String, Option<serde_json::Value>)> = json
            .keys
            .iter()
            .map(|k| (k.key_id.clone(), k.policy.clone()))
            .collect();
        assert_eq!(
            policies,
            vec![
                ("demo-ed25519".into(), None),
                ("demo-taproot".into(), None),
                ("demo-secp256k1".into(), None),
                (
                    "eu-payments".into(),
                    Some(serde_json::json!({"home_jurisdiction": "EU", "min_home_signers": 2}))
                ),
            ]
        );

        // No node or coordinator directory (the only parts of the state directory
        // those containers mount) holds the approver's secret key.
        let secret = std::fs::read_to_string(&approver_file)?;
        for party in layout
            .nodes
            .iter()
            .map(|n| n.spec.id.clone())
            .chain(layout.coordinators.iter().map(|c| c.name.clone()))
        {
            for entry in std::fs::read_dir(dir.path().join(&party))? {
                let text = std::fs::read(entry?.path())?;
                assert!(
                    !String::from_utf8_lossy(&text).contains(secret.trim()),
                    "{party} holds the approver key"
                );
            }
        }

        // A repeated setup (a repeated `up`) keeps the approver, so keys made with
        // its policy keep working.
        setup(&layout, dir.path())?;
        assert_eq!(std::fs::read_to_string(&approver_file)?, secret);
        assert_eq!(
            PolicyFile::load(&policy_path(dir.path(), "eu-payments"))?.approver_keys,
            vec![approver.to_vec()]
        );
        Ok(())
    }

    #[test]
    fn the_key_ceremony_passes_a_policy_file_to_policy_keys_only() -> anyhow::Result<()> {
        let spec = NetworkSpec::default_five_regions();
        let template: Vec<String> = KEY_CEREMONY[1..].iter().map(|s| s.to_string()).collect();
        fn args<'a>(key: &'a KeySpec, policy: Option<&'a Path>) -> CeremonyArgs<'a> {
            CeremonyArgs {
                ceremony: Path::new("/quorate/ceremony/ceremony.toml"),
                key,
                threshold: 3,
                transcript: Path::new("/quorate/transcripts/k.json"),
                policy,
            }
        }
        let eu = spec
            .keys
            .iter()
            .find(|k| k.policy.is_some())
            .context("a policy key")?;
        let plain = spec
            .keys
            .iter()
            .find(|k| k.policy.is_none())
            .context("an unrestricted key")?;
        let policy = Path::new("/quorate/policies/eu-payments.toml");

        let with = ceremony_command(&template, &args(eu, Some(policy)))?;
        assert_eq!(
            with,
            [
                "dkg",
                "--ceremony",
                "/quorate/ceremony/ceremony.toml",
                "--key-id",
                "eu-payments",
                "--ciphersuite",
                "ed25519",
                "--threshold",
                "3",
                "--transcript",
                "/quorate/transcripts/k.json",
                "--policy",
                "/quorate/policies/eu-payments.toml",
            ]
        );
        let without = ceremony_command(&template, &args(plain, None))?;
        assert!(!without.iter().any(|a| a == "--policy" || a == POLICY_ARGS));
        assert_eq!(without.len(), with.len() - 2);

        // A policy key is never created unrestricted by accident.
        assert!(ceremony_command(&template, &args(eu, None)).is_err());
        let no_placeholder: Vec<String> = template
            .iter()
            .filter(|a| *a != POLICY_ARGS)
            .cloned()
            .collect();
        assert!(ceremony_command(&no_placeholder, &args(eu, Some(policy))).is_err());
        Ok(())
    }

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
