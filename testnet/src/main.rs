//! `quorate-testnet`: runs a Quorate network on this machine. The subcommands live
//! in the library ([`quorate_testnet::cmd`]); this only parses, runs and maps an
//! error to exit code 1.

use clap::Parser;
use quorate_testnet::cmd::{run, Args};
use quorate_transport::runtime::{init_tracing, LogFormat};

#[tokio::main]
async fn main() {
    let args = Args::parse();
    quorate_transport::install_crypto_provider();
    init_tracing(LogFormat::Text, "warn");
    if let Err(e) = run(args.command).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
