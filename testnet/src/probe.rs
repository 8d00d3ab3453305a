//! Probes of a node as the ceremony sees it (authenticated `Ceremony` calls): does
//! it serve, does it hold a key. Used by `compose-keys`, by the compose driver to
//! wait for a restarted container, and by the drills to find lost shares.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use quorate_ceremony::import::CeremonyNode;
use quorate_transport::tls::TlsPaths;
use quorate_wire::pb;

/// Waits until the node at `endpoint` answers an authenticated `Ceremony.GetInfo`.
pub async fn wait_node_serving(
    tls: &TlsPaths,
    node_id: &str,
    endpoint: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let channel = tls
        .load()?
        .node_channel(endpoint, node_id, Duration::from_secs(1))?;
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
        .node_channel(&node.endpoint, &node.id, Duration::from_secs(2))?;
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
