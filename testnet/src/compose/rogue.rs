//! The rogue on the compose network: a container of the testnet image running
//! `quorate-testnet rogue-node` on a node's segment at the node's own address (the
//! node's container stopped first), with one party's TLS files mounted read-only,
//! so the coordinators reach it exactly as they reach that node.

use std::path::Path;
use std::time::Duration;

use super::docker::{container_logs, docker, DockerError};
use super::layout::{party_tls, ComposeLayout, IMAGE, NODE_PORT};
use crate::rogue::{command_args, wait_listening};

/// The rogue's container (one at a time).
pub const ROGUE_CONTAINER: &str = "quorate-rogue";

/// Where the party's TLS files are mounted in the rogue's container.
const ROGUE_MOUNT: &str = "/rogue";

/// Stops node `id`'s container and starts the rogue at its address, presenting
/// the TLS files in the state subdirectory `party` of `state_dir` (`node-1`,
/// `client`, ...); with `forge_key`, as that node reporting a forged manifest of
/// the key. Waits until it listens. Uses the local image only.
pub async fn start_rogue(
    layout: &ComposeLayout,
    state_dir: &Path,
    id: &str,
    party: &str,
    forge_key: Option<&str>,
) -> anyhow::Result<()> {
    let node = layout.node(id)?;
    remove_rogue().await?;
    docker(&["stop", "-t", "5", &node.container()]).await?;
    let mount = format!("{}:{ROGUE_MOUNT}:ro", state_dir.join(party).display());
    let inside = party_tls(Path::new(ROGUE_MOUNT));
    let listen = format!("0.0.0.0:{NODE_PORT}");
    let (network, ip) = (node.network(), node.ip());
    let mut args: Vec<String> = [
        "run",
        "-d",
        "--pull",
        "never",
        "--name",
        ROGUE_CONTAINER,
        "--network",
        &network,
        "--ip",
        &ip,
        "-v",
        &mount,
        IMAGE,
        "/bin/quorate-testnet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(command_args(&listen, &inside, forge_key));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&args).await?;
    wait_listening(&format!("{ip}:{NODE_PORT}"), Duration::from_secs(20)).await
}

/// What the rogue printed.
pub async fn rogue_log() -> anyhow::Result<String> {
    Ok(container_logs(ROGUE_CONTAINER, None).await?)
}

/// Removes the rogue's container, if any (the node it replaced stays stopped).
pub async fn remove_rogue() -> Result<(), DockerError> {
    match docker(&["rm", "-f", ROGUE_CONTAINER]).await {
        Ok(_) | Err(DockerError::NoSuchObject { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
