//! `quorate-testnet up`: starts a local network in DIR, signs and verifies once
//! with every demo key, and serves until SIGINT/SIGTERM (or stops after the
//! self-check with `--check-only`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use quorate_client::SignOptions;
use quorate_transport::runtime::ShutdownSignals;

use crate::network::{default_bin_dir, remove_testnet, LocalNetwork, StartOptions};
use crate::spec::NetworkSpec;

/// Flags of `up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Working directory (PKI, configs, node stores, logs, testnet.json); must
    /// not already hold a testnet.
    #[arg(long)]
    pub dir: PathBuf,
    /// Where quorate-node and quorate-coordinator are (default: next to this
    /// executable).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Stop after the self-check instead of running until a signal.
    #[arg(long)]
    pub check_only: bool,
    /// Delete a previous testnet in DIR first (its PKI, keys, stores and logs)
    /// and start afresh. Without it, a DIR that already holds a testnet is
    /// refused.
    #[arg(long)]
    pub reset: bool,
    /// Run every node and the coordinator in a network namespace of its own behind
    /// emulated inter-region links of this profile (`eu-us-ap`, `eu-us-ap-loss1`;
    /// needs root): docs/testnet.md, "The WAN testbed".
    #[arg(long, value_name = "PROFILE")]
    pub wan: Option<String>,
}

/// Runs `up`.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let UpArgs {
        dir,
        bin_dir,
        check_only,
        reset,
        wan,
    } = args;
    let wan = wan
        .map(|name| crate::wan::WanProfile::named(&name).cloned())
        .transpose()?;
    if reset {
        remove_testnet(&dir)?;
    }
    let bin_dir = match bin_dir {
        Some(d) => d,
        None => default_bin_dir()?,
    };
    let spec = NetworkSpec::default_five_regions();
    println!(
        "starting {} nodes ({}-of-{}) and a coordinator in {}{}",
        spec.nodes.len(),
        spec.threshold,
        spec.nodes.len(),
        dir.display(),
        wan.as_ref()
            .map(|p| format!(", on the WAN testbed {p}"))
            .unwrap_or_default()
    );
    // Caught from now on: a signal during startup must not leave node
    // processes behind.
    let mut signals = ShutdownSignals::new()?;
    let options = StartOptions {
        wan,
        ..StartOptions::default()
    };
    let mut network = tokio::select! {
        started = LocalNetwork::start_opts(&dir, &bin_dir, spec, &options) => started?,
        // Dropping the half-started network kills what it started.
        _ = signals.recv() => anyhow::bail!("interrupted while starting"),
    };
    let (result, interrupted) = tokio::select! {
        checked = self_check(&network) => (checked, false),
        _ = signals.recv() => (Ok(()), true),
    };
    if result.is_ok() && !interrupted {
        println!(
            "testnet.json: {}",
            network.dir.join("testnet.json").display()
        );
        println!(
            "client.toml:  {}  (quorate --config {} sign --key-id demo-ed25519 --message hi)",
            network.dir.join("client.toml").display(),
            network.dir.join("client.toml").display()
        );
        println!("logs:         {}", network.dir.join("logs").display());
        if !check_only {
            println!("serving; press Ctrl-C to stop");
            signals.recv().await;
        }
    }
    println!("stopping");
    network.stop().await?;
    result
}

/// Signs once with every key and verifies independently.
async fn self_check(network: &LocalNetwork) -> anyhow::Result<()> {
    // The client library, as `client.toml` configures it: what the CLI will use.
    let client = network.quorate_client()?;
    for key in &network.spec.keys {
        let message = format!("quorate testnet self-check for {}", key.key_id);
        let signed = client
            .sign(
                &key.key_id,
                message.as_bytes(),
                SignOptions {
                    deadline: Some(Duration::from_secs(5)),
                    ..SignOptions::default()
                },
            )
            .await
            .with_context(|| format!("self-check signature with {}", key.key_id))?;
        println!(
            "  {:<16} {:<13} signed by {:<24} verified: yes  signature {}",
            key.key_id,
            signed.ciphersuite.name(),
            signed.signers.join(","),
            hex::encode(signed.signature.get(..16).unwrap_or_default()) + "..."
        );
    }
    Ok(())
}
