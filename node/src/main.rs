//! `quorate-node`: a Quorate signer node.

use std::path::PathBuf;

use clap::Parser;
use quorate_node::{BoundNode, NodeConfig, NodeError};
use quorate_transport::runtime::{init_tracing, shutdown_signal, LogFormat};

/// Quorate signer node: holds this region's FROST key shares (sealed at rest under a
/// key-encryption key) and serves signing rounds to coordinators over mTLS.
///
/// These config keys can be overridden from the environment: QUORATE_NODE_ID,
/// QUORATE_TRUST_DOMAIN, QUORATE_LISTEN, QUORATE_REGION, QUORATE_JURISDICTION,
/// QUORATE_DATA_DIR, QUORATE_KEK_FILE, QUORATE_TLS_CA, QUORATE_TLS_CERT,
/// QUORATE_TLS_KEY, QUORATE_METRICS_LISTEN, QUORATE_HEALTH_LISTEN,
/// QUORATE_SHUTDOWN_GRACE_MS; QUORATE_KEK
/// holds the key-encryption key itself (64 hex digits). TOKIO_WORKER_THREADS sets
/// the async runtime's worker threads (default 1; the heavy work runs on a thread
/// pool of its own).
///
/// SIGINT/SIGTERM drains: new work is refused, work in flight finishes, and the
/// node exits within `shutdown_grace_ms` (default 5000).
///
/// Exit codes: 0 after SIGINT/SIGTERM, 64 bad configuration or no KEK provider
/// opens the store, 65 damaged store, a share record older than its key's last
/// activation in the audit log, or an audit log missing, empty or broken beside
/// stored keys (see `[audit] accept_unverified_log`), 1 anything else.
#[derive(Debug, Parser)]
#[command(name = "quorate-node", version)]
struct Args {
    /// Node config file (TOML).
    #[arg(long, short, env = "QUORATE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(
        long,
        default_value = "text",
        env = "QUORATE_LOG_FORMAT",
        global = true
    )]
    log_format: LogFormat,
    /// Without a command: run the node.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Key-encryption keys of a stopped node's store.
    #[command(subcommand)]
    Kek(KekCommand),
    /// What a stopped node holds as a witness of its peers' audit logs.
    #[command(subcommand)]
    Witness(WitnessCommand),
}

#[derive(Debug, clap::Subcommand)]
enum WitnessCommand {
    /// Removes the evidence and the cosigned checkpoint held for a peer, after an
    /// operator dealt with an inconsistency: the node then witnesses the peer's log
    /// afresh. The evidence files under the data directory stay. The node must be
    /// stopped.
    Forget {
        /// The peer's node id.
        #[arg(long)]
        peer: String,
    },
}

#[derive(Debug, clap::Subcommand)]
enum KekCommand {
    /// Re-wraps the store's DEK under exactly the providers the config names (any
    /// one of them must open it now). Crash-safe; the node must be stopped.
    Rotate,
    /// Re-seals every record under a new DEK wrapped under exactly the configured
    /// providers; old copies then open only under the old KEKs. Crash-safe; the
    /// node must be stopped.
    Rekey,
}

fn main() {
    let args = Args::parse();
    quorate_transport::install_crypto_provider();
    init_tracing(args.log_format, "info");
    let result = runtime().and_then(|runtime| {
        let result = runtime.block_on(async {
            let path = args.config.as_deref().ok_or_else(|| {
                NodeError::Config("--config (or QUORATE_CONFIG) is required".into())
            })?;
            let config = NodeConfig::load(path)?;
            match args.command {
                None => {
                    BoundNode::bind(config)
                        .await?
                        .serve(shutdown_signal())
                        .await
                }
                Some(Command::Kek(KekCommand::Rotate)) => {
                    println!("{}", quorate_node::rotation::rotate(&config)?);
                    Ok(())
                }
                Some(Command::Kek(KekCommand::Rekey)) => {
                    println!("{}", quorate_node::rotation::rekey(&config)?);
                    Ok(())
                }
                Some(Command::Witness(WitnessCommand::Forget { peer })) => {
                    println!("{}", quorate_node::witness::forget_peer(&config, &peer)?);
                    Ok(())
                }
            }
        });
        // Dropping a runtime waits for its blocking tasks without limit: one stuck
        // (an fsync that hangs) must not keep the node from exiting after its grace.
        runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        result
    });
    if let Err(e) = result {
        tracing::error!("{e}");
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}

/// The node's runtime: one worker thread, unless `TOKIO_WORKER_THREADS` asks for
/// more. The worker serves the connections and the light handlers; the heavy work
/// (calls of several round-2 requests, commitment batches, escrow splits, audit
/// reads) runs on tokio's blocking pool, which grows with the load. A second worker
/// only adds wake-ups between the two on every exchange: one worker brought
/// concurrency-1 latency closer to its target and cost nothing under load
/// (docs/benchmarks.md, "One tokio worker per node").
fn runtime() -> Result<tokio::runtime::Runtime, NodeError> {
    let workers = match std::env::var_os("TOKIO_WORKER_THREADS") {
        None => 1,
        Some(value) => value
            .to_str()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                NodeError::Config(format!(
                    "TOKIO_WORKER_THREADS must be a whole number of at least 1, not {value:?}"
                ))
            })?,
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(|e| NodeError::Server(format!("cannot start the async runtime: {e}")))
}
