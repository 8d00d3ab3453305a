//! The files a local network keeps in its directory: each node's config and KEK
//! file, each coordinator's config and certificate, and [`remove_testnet`], which
//! deletes exactly those (with the PKI, logs and `testnet.json`) for `up --reset`.
//! Used by `LocalNetwork::start_with`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use quorate_ceremony::pki;
use quorate_transport::identity::Role;
use quorate_transport::tls::TlsPaths;

use crate::spec::NodeSpec;
use crate::toml_text::{node_entry, tls_toml, toml_path, toml_string};

/// Writes a file only its owner can read (a node's KEK).
pub(super) fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
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

/// Where one node listens and keeps its state.
#[derive(Clone, Copy, Debug)]
pub(super) struct NodeFiles<'a> {
    /// The address it listens on: loopback, or its address in a WAN testbed.
    pub host: std::net::IpAddr,
    /// Its gRPC port.
    pub port: u16,
    /// Its Prometheus port on loopback.
    pub metrics_port: u16,
    /// Its plaintext `grpc.health.v1` port on loopback.
    pub health_port: u16,
    /// Its store directory.
    pub data_dir: &'a Path,
    /// Its KEK file.
    pub kek_file: &'a Path,
    /// Its certificate and key.
    pub tls: &'a TlsPaths,
}

/// The text of a node's `node.toml`.
pub(super) fn node_config(node: &NodeSpec, trust_domain: &str, files: &NodeFiles<'_>) -> String {
    format!(
        "node_id = {}\ntrust_domain = {}\nlisten = {}\nmetrics_listen = {}\nhealth_listen = {}\nregion = {}\njurisdiction = {}\ndata_dir = {}\nkek_file = {}\n{}",
        toml_string(&node.id),
        toml_string(trust_domain),
        toml_string(&format!("{}:{}", files.host, files.port)),
        toml_string(&format!("{}:{}", files.host, files.metrics_port)),
        toml_string(&format!("{}:{}", files.host, files.health_port)),
        toml_string(&node.region),
        toml_string(&node.jurisdiction),
        toml_path(files.data_dir),
        toml_path(files.kek_file),
        tls_toml(files.tls),
    )
}

/// A coordinator's address (loopback, or its address in a WAN testbed) and ports:
/// gRPC (mTLS), Prometheus, plaintext health.
#[derive(Clone, Copy, Debug)]
pub(super) struct CoordinatorPorts {
    pub host: std::net::IpAddr,
    pub grpc: u16,
    pub metrics: u16,
    pub health: u16,
}

/// Issues the certificate of coordinator `name` and writes `DIR/<name>.toml`
/// naming every node (`(id, endpoint)`), with `extra` (TOML tables, e.g. a
/// `[signing]` table) at its end; returns the config's path.
pub(super) fn write_coordinator_config(
    dir: &Path,
    trust_domain: &str,
    name: &str,
    ports: CoordinatorPorts,
    nodes: &[(&str, &str)],
    extra: &str,
) -> anyhow::Result<PathBuf> {
    let pki_dir = dir.join("pki");
    let cert = pki::issue(&pki_dir, trust_domain, Role::Coordinator, name, None, &[])?;
    let config = dir.join(format!("{name}.toml"));
    let mut text = format!(
        "trust_domain = {}\nlisten = {}\nmetrics_listen = {}\nhealth_listen = {}\n{}",
        toml_string(trust_domain),
        toml_string(&format!("{}:{}", ports.host, ports.grpc)),
        toml_string(&format!("{}:{}", ports.host, ports.metrics)),
        toml_string(&format!("{}:{}", ports.host, ports.health)),
        tls_toml(&cert.tls_paths())
    );
    for (id, endpoint) in nodes {
        text.push_str(&node_entry(id, endpoint));
    }
    text.push_str(extra);
    std::fs::write(&config, text)?;
    Ok(config)
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
                | "custodians"
                | "testnet.json"
                | "testnet.json.tmp"
                | "client.toml"
                | "client.toml.tmp"
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
