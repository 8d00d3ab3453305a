//! The `quorate-testnet` command line: [`Args`] as clap parses it, one file per
//! subcommand holding its flags and what it does, and [`run`], which dispatches.
//! `main.rs` only parses, runs and maps an error to the exit code.

pub mod bench;
pub mod compose;
pub mod drill;
pub mod rogue;
pub mod sign;
pub mod up;

use clap::{Parser, Subcommand};

/// Local Quorate testnet: five signer nodes in five "regions" (3-of-5) and a
/// coordinator, as processes on loopback, with a fresh dev PKI and demo keys.
#[derive(Debug, Parser)]
#[command(name = "quorate-testnet", version)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

/// The subcommands. Their help texts are the doc comments here; each one's flags
/// are in its own file.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Start the network in DIR, sign and verify once with every demo key, write
    /// DIR/testnet.json, and run until SIGINT/SIGTERM (then stop every process).
    Up(up::UpArgs),
    /// Load-test a fresh local network: N concurrent clients sign for a while per
    /// ciphersuite; reports throughput, latency percentiles (HDR histogram), errors
    /// by code, CPU per signature and peak RSS of every process, next to the
    /// in-process FROST signing limit measured in the same run on the same cores
    /// (`ratio` = throughput / limit). Build with --release for meaningful numbers.
    Bench(bench::BenchArgs),
    /// Sign a message through the coordinator of the testnet in DIR and verify the
    /// signature with an independent verifier (ed25519-dalek, k256 BIP340, or the
    /// RFC 9591 equation over k256).
    Sign(sign::SignArgs),
    /// Run the quorum drills under a steady signing load and print a report table;
    /// exits 1 if any drill fails. Without --compose, against a fresh network of
    /// local processes (two coordinators); with it, against the docker-compose
    /// testnet (brought up with `up -d` if it is not running).
    Drill(drill::DrillArgs),
    /// Print testnet/docker-compose.yml as rendered from the compose layout.
    ComposeFile,
    /// (Runs inside the compose `setup` container.) Write the PKI, every party's
    /// config and testnet.json for the host into DIR; keeps an existing PKI.
    ComposeSetup(compose::ComposeSetupArgs),
    /// (Runs inside the compose `keys` container.) Wait for every node, then run
    /// the key ceremony command after `--` once per demo key no node holds yet.
    /// Placeholders: {ceremony} {key_id} {ciphersuite} {threshold} {transcript}.
    ComposeKeys(compose::ComposeKeysArgs),
    /// (Drills only.) Play a rogue at a node's address until killed: with
    /// --forge-key, the node its certificate names reporting a forged manifest of
    /// that key; without, an impostor presenting the certificate and printing the
    /// outcome of each TLS handshake.
    #[command(hide = true)]
    RogueNode(rogue::RogueNodeArgs),
}

/// Runs one subcommand.
pub async fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Up(args) => up::run(args).await,
        Cmd::Bench(args) => bench::run(args).await,
        Cmd::Sign(args) => sign::run(args).await,
        Cmd::Drill(args) => drill::run(args).await,
        Cmd::ComposeFile => compose::file(),
        Cmd::ComposeSetup(args) => compose::setup(args),
        Cmd::ComposeKeys(args) => compose::keys(args).await,
        Cmd::RogueNode(args) => rogue::run(args).await,
    }
}
