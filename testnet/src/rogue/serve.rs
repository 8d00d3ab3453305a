//! The body of `quorate-testnet rogue-node`: one rogue at a node's address,
//! printing one line per event on stdout (its log, which a drill reads): a node
//! that turned, serving forged manifest reports with its own certificate, or an
//! impostor presenting another party's certificate and reporting each handshake.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use quorate_transport::tls::TlsPaths;
use quorate_wire::pb::node_server::NodeServer;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use super::impostor::Impostor;
use super::manifest::{forged_manifest, forged_reports};
use super::node::ForgingNode;
use crate::spec::NetworkSpec;

/// Logged each time the forging node answers `ListNodeKeys`.
pub const ANSWERED: &str = "rogue: answered ListNodeKeys";
/// Logged for each handshake the impostor completes.
pub const HANDSHAKE_COMPLETED: &str = "rogue: handshake completed";
/// Logged for each handshake the impostor's client broke off, with the reason.
pub const HANDSHAKE_FAILED: &str = "rogue: handshake failed";

/// Serves on `listen` with `tls` until killed. With `forge_key`, as the node that
/// `tls` names, reporting a forged manifest of that key (the default network's
/// nodes); without, as an impostor that only reports handshakes.
pub async fn serve(
    listen: SocketAddr,
    tls: &TlsPaths,
    forge_key: Option<&str>,
) -> anyhow::Result<()> {
    quorate_transport::install_crypto_provider();
    let material = tls.load()?;
    let me = material.identity().clone();
    let Some(key_id) = forge_key else {
        let impostor = Impostor::listen(listen, tls)?;
        println!("rogue: presenting {me} on {}", impostor.addr());
        return tokio::task::spawn_blocking(move || loop {
            match impostor.recv(Duration::from_secs(3600)) {
                Some(Ok(())) => println!("{HANDSHAKE_COMPLETED}"),
                Some(Err(e)) => println!("{HANDSHAKE_FAILED}: {e}"),
                None => {}
            }
        })
        .await
        .context("impostor thread");
    };
    let spec = NetworkSpec::default_five_regions();
    let other = spec
        .nodes
        .iter()
        .find(|n| n.id != me.name)
        .context("another node to misattribute a statement to")?;
    let forged = forged_manifest(&spec, key_id)?;
    let keys = forged_reports(&material.statement_signer()?, &me.name, &other.id, &forged)?;
    let key_id = key_id.to_string();
    let on_answer = Arc::new(move |n: usize| {
        println!("{ANSWERED} with {n} forged reports of {key_id}");
    });
    let incoming =
        TcpIncoming::bind(listen).map_err(|e| anyhow::anyhow!("binding {listen}: {e}"))?;
    println!("rogue: {} serves forged manifests on {listen}", me.name);
    Server::builder()
        .tls_config(material.server_config())?
        .add_service(NodeServer::new(ForgingNode::new(keys, on_answer)))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}

/// The arguments of `quorate-testnet` that run [`serve`]: `rogue-node` and its
/// flags, for `listen` and the files of `tls` (as the rogue's process sees them).
pub fn command_args(listen: &str, tls: &TlsPaths, forge_key: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "rogue-node".to_string(),
        "--listen".into(),
        listen.into(),
        "--ca".into(),
        tls.ca.display().to_string(),
        "--cert".into(),
        tls.cert.display().to_string(),
        "--key".into(),
        tls.key.display().to_string(),
    ];
    if let Some(key_id) = forge_key {
        args.extend(["--forge-key".into(), key_id.into()]);
    }
    args
}

/// Waits until something accepts TCP connections on `addr` (`host:port`), for at
/// most `within`.
pub async fn wait_listening(addr: &str, within: Duration) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if started.elapsed() > within {
            anyhow::bail!("nothing listens on {addr} after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
