//! `rogue-node`: a rogue at a node's address, for the drills (started by the local
//! drill target as a process, and by the compose one in a container of the image).

use std::net::SocketAddr;
use std::path::PathBuf;

use quorate_transport::tls::TlsPaths;

/// Flags of `rogue-node`.
#[derive(Debug, clap::Args)]
pub struct RogueNodeArgs {
    /// Address to listen on (the node's own).
    #[arg(long)]
    pub listen: SocketAddr,
    /// The CA certificate (PEM).
    #[arg(long)]
    pub ca: PathBuf,
    /// The certificate to present (PEM).
    #[arg(long)]
    pub cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    pub key: PathBuf,
    /// Serve as the node the certificate names, reporting a forged manifest of this
    /// key; without it, only report each TLS handshake.
    #[arg(long)]
    pub forge_key: Option<String>,
}

/// Runs `rogue-node` until killed.
pub async fn run(args: RogueNodeArgs) -> anyhow::Result<()> {
    let tls = TlsPaths {
        ca: args.ca,
        cert: args.cert,
        key: args.key,
    };
    crate::rogue::serve(args.listen, &tls, args.forge_key.as_deref()).await
}
