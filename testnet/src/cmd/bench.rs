//! `quorate-testnet bench`: a load test of a fresh local network ([`crate::bench`]),
//! printed as a table and, with `--json`, one JSON line for scripts.

use std::path::PathBuf;
use std::time::Duration;

use crate::bench::{is_release_dir, json_line, table, BenchOptions};
use crate::network::default_bin_dir;

/// Flags of `bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Signer nodes.
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Signers per signature.
    #[arg(long, default_value_t = 3)]
    pub threshold: u16,
    /// ed25519, secp256k1, secp256k1-tr, or all.
    #[arg(long, default_value = "ed25519")]
    pub ciphersuite: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Seconds of measured load per ciphersuite.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Seconds of unmeasured warm-up load first.
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// Verify one signature in this many with an independent verifier.
    #[arg(long, default_value_t = 16)]
    pub verify_every: u64,
    /// Working directory for the network (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Where quorate-node and quorate-coordinator are.
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Run on a WAN testbed with this profile (`eu-us-ap`, `eu-us-ap-loss1`): every
    /// process in its own network namespace behind emulated inter-region links
    /// (needs root). Measures the demo key of each ciphersuite (and the EU key with
    /// Ed25519) at concurrency 1 and at `--clients`, with one-round signing on and
    /// off.
    #[arg(long, value_name = "PROFILE")]
    pub wan: Option<String>,
    /// End the output with one JSON line (throughput_sps, p50_ms, p99_ms,
    /// limit_sps, ratio, ...).
    #[arg(long)]
    pub json: bool,
}

/// Runs `bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let BenchArgs {
        nodes,
        threshold,
        ciphersuite,
        clients,
        duration,
        warmup,
        verify_every,
        dir,
        bin_dir,
        wan,
        json,
    } = args;
    let ciphersuites = if ciphersuite == "all" {
        quorate_frost::Ciphersuite::ALL.to_vec()
    } else {
        vec![ciphersuite
            .parse()
            .map_err(|e: String| anyhow::anyhow!(e))?]
    };
    let bin_dir = match bin_dir {
        Some(d) => d,
        None => default_bin_dir()?,
    };
    if !is_release_dir(&bin_dir) {
        eprintln!(
            "warning: {} is not a release build; figures will be far below what the code can do",
            bin_dir.display()
        );
    }
    if let Some(profile) = wan {
        let profile = crate::wan::WanProfile::named(&profile)?.clone();
        if nodes != 5 || threshold != 3 {
            anyhow::bail!("--wan runs the default network (5 nodes, 3-of-5): leave out --nodes and --threshold");
        }
        let mut concurrencies = vec![1, clients];
        concurrencies.dedup();
        let opts = crate::bench::wan::WanBenchOptions {
            profile,
            ciphersuites,
            concurrencies,
            duration: Duration::from_secs(duration),
            warmup: Duration::from_secs(warmup),
            bin_dir,
            dir,
            verify_every: verify_every.max(1),
        };
        // On SIGINT or SIGTERM the run is dropped, which kills the processes and
        // tears the testbed down.
        let mut signals = quorate_transport::runtime::ShutdownSignals::new()?;
        let results = tokio::select! {
            results = crate::bench::wan::run(&opts) => results?,
            _ = signals.recv() => anyhow::bail!("interrupted; the WAN testbed is torn down"),
        };
        print!("{}", crate::bench::wan::wan_table(&results));
        if json {
            for r in &results {
                println!("{}", serde_json::to_string(r)?);
            }
        }
        let invalid: u64 = results.iter().map(|r| r.invalid_signatures).sum();
        anyhow::ensure!(invalid == 0, "{invalid} invalid signatures");
        return Ok(());
    }
    let opts = BenchOptions {
        nodes,
        threshold,
        ciphersuites,
        clients,
        duration: Duration::from_secs(duration),
        warmup: Duration::from_secs(warmup),
        bin_dir,
        dir,
        verify_every: verify_every.max(1),
    };
    let results = crate::bench::run(&opts).await?;
    print!("{}", table(&results));
    if json {
        println!("{}", json_line(&results)?);
    }
    let invalid: u64 = results.iter().map(|r| r.invalid_signatures).sum();
    anyhow::ensure!(invalid == 0, "{invalid} invalid signatures");
    Ok(())
}
