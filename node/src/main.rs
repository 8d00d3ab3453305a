//! `quorate-node`: a Quorate signer node.

use std::path::PathBuf;

use clap::Parser;
use quorate_node::{BoundNode, NodeConfig};
use quorate_proto::runtime::{init_tracing, shutdown_signal, LogFormat};

/// Quorate signer node: holds this region's FROST key shares (sealed at rest under a
/// key-encryption key) and serves signing rounds to coordinators over mTLS.
///
/// Every config key can be overridden from the environment: QUORATE_NODE_ID,
/// QUORATE_TRUST_DOMAIN, QUORATE_LISTEN, QUORATE_REGION, QUORATE_JURISDICTION,
/// QUORATE_DATA_DIR, QUORATE_KEK_FILE, QUORATE_TLS_CA, QUORATE_TLS_CERT,
/// QUORATE_TLS_KEY; QUORATE_KEK holds the key-encryption key itself (64 hex digits).
///
/// Exit codes: 0 after SIGINT/SIGTERM, 64 bad configuration or wrong KEK, 65 damaged
/// store, 1 anything else.
#[derive(Debug, Parser)]
#[command(name = "quorate-node", version)]
struct Args {
    /// Node config file (TOML).
    #[arg(long, short, env = "QUORATE_CONFIG")]
    config: PathBuf,
    /// Log format: text or json.
    #[arg(long, default_value = "text", env = "QUORATE_LOG_FORMAT")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    quorate_proto::install_crypto_provider();
    init_tracing(args.log_format, "info");
    let result = async {
        let config = NodeConfig::load(&args.config)?;
        BoundNode::bind(config)
            .await?
            .serve(shutdown_signal())
            .await
    }
    .await;
    if let Err(e) = result {
        tracing::error!("{e}");
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
