//! `quorate-coordinator`: the stateless Quorate coordinator.

use std::path::PathBuf;

use clap::Parser;
use quorate_coordinator::{BoundCoordinator, CoordinatorConfig};
use quorate_transport::runtime::{init_tracing, shutdown_signal, LogFormat};

/// Quorate coordinator: serves the Signer gRPC API (Sign, GetPublicKey, ListKeys) to
/// clients over mTLS and runs FROST sessions across the signer nodes. Stateless: run
/// as many as you like.
///
/// Environment overrides: QUORATE_TRUST_DOMAIN, QUORATE_LISTEN, QUORATE_TLS_CA,
/// QUORATE_TLS_CERT, QUORATE_TLS_KEY, QUORATE_DEADLINE_MS, QUORATE_NODE_TIMEOUT_MS,
/// QUORATE_METRICS_LISTEN, QUORATE_HEALTH_LISTEN, QUORATE_MAX_IN_FLIGHT_PER_CLIENT,
/// QUORATE_SHUTDOWN_GRACE_MS.
///
/// SIGINT/SIGTERM drains: clients are told to go away, requests in flight finish,
/// and the coordinator exits within `shutdown_grace_ms` (default 5000).
///
/// Exit codes: 0 after SIGINT/SIGTERM, 64 bad configuration, 1 anything else.
#[derive(Debug, Parser)]
#[command(name = "quorate-coordinator", version)]
struct Args {
    /// Coordinator config file (TOML).
    #[arg(long, short, env = "QUORATE_CONFIG")]
    config: PathBuf,
    /// Log format: text or json.
    #[arg(long, default_value = "text", env = "QUORATE_LOG_FORMAT")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    quorate_transport::install_crypto_provider();
    init_tracing(args.log_format, "info");
    let result = async {
        let config = CoordinatorConfig::load(&args.config)?;
        BoundCoordinator::bind(config)
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
