//! `quorate-testnet`: runs a Quorate network on this machine.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use quorate_proto::runtime::{init_tracing, LogFormat, ShutdownSignals};
use quorate_proto::tls::TlsPaths;
use quorate_testnet::client::SignerClient;
use quorate_testnet::compose::{self, ComposeLayout, ComposeNetwork};
use quorate_testnet::drill;
use quorate_testnet::network::{default_bin_dir, LocalNetwork};
use quorate_testnet::spec::{NetworkSpec, TestnetJson};

/// Local Quorate testnet: five signer nodes in five "regions" (3-of-5) and a
/// coordinator, as processes on loopback, with a fresh dev PKI and demo keys.
#[derive(Debug, Parser)]
#[command(name = "quorate-testnet", version)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start the network in DIR, sign and verify once with every demo key, write
    /// DIR/testnet.json, and run until SIGINT/SIGTERM (then stop every process).
    Up {
        /// Working directory (PKI, configs, node stores, logs, testnet.json); must
        /// not already hold a testnet.
        #[arg(long)]
        dir: PathBuf,
        /// Where quorate-node and quorate-coordinator are (default: next to this
        /// executable).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Stop after the self-check instead of running until a signal.
        #[arg(long)]
        check_only: bool,
        /// Delete a previous testnet in DIR first (its PKI, keys, stores and logs)
        /// and start afresh. Without it, a DIR that already holds a testnet is
        /// refused.
        #[arg(long)]
        reset: bool,
    },
    /// Load-test a fresh local network: N concurrent clients sign for a while per
    /// ciphersuite; reports throughput, latency percentiles (HDR histogram), errors
    /// by code, CPU per signature and peak RSS of every process, next to the
    /// in-process FROST signing limit measured in the same run on the same cores
    /// (`ratio` = throughput / limit). Build with --release for meaningful numbers.
    Bench {
        /// Signer nodes.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Signers per signature.
        #[arg(long, default_value_t = 3)]
        threshold: u16,
        /// ed25519, secp256k1, secp256k1-tr, or all.
        #[arg(long, default_value = "ed25519")]
        ciphersuite: String,
        /// Concurrent clients.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds of measured load per ciphersuite.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// Seconds of unmeasured warm-up load first.
        #[arg(long, default_value_t = 3)]
        warmup: u64,
        /// Verify one signature in this many with an independent verifier.
        #[arg(long, default_value_t = 16)]
        verify_every: u64,
        /// Working directory for the network (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Where quorate-node and quorate-coordinator are.
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// End the output with one JSON line (throughput_sps, p50_ms, p99_ms,
        /// limit_sps, ratio, ...).
        #[arg(long)]
        json: bool,
    },
    /// Sign a message through the coordinator of the testnet in DIR and verify the
    /// signature with an independent verifier (ed25519-dalek, k256 BIP340, or the
    /// RFC 9591 equation over k256).
    Sign {
        /// Directory of a running testnet (holding testnet.json).
        #[arg(long)]
        dir: PathBuf,
        /// Key to sign with (see testnet.json).
        #[arg(long)]
        key_id: String,
        /// Message text (UTF-8).
        #[arg(long, conflicts_with = "message_hex")]
        message: Option<String>,
        /// Message as hex.
        #[arg(long)]
        message_hex: Option<String>,
        /// Idempotency key.
        #[arg(long)]
        request_id: Option<String>,
        /// Approval token file (from `quorate-ceremony approve`) permitting an
        /// out-of-policy quorum.
        #[arg(long, value_name = "FILE")]
        approval_token: Option<PathBuf>,
        /// Deadline in milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
        /// Use the coordinator at this position in testnet.json's `coordinators`
        /// (0 is the first) instead of `coordinator`.
        #[arg(long)]
        coordinator: Option<usize>,
    },
    /// Run the quorum drills under a steady signing load and print a report table;
    /// exits 1 if any drill fails. Without --compose, against a fresh network of
    /// local processes (two coordinators); with it, against the docker-compose
    /// testnet (brought up with `up -d` if it is not running).
    Drill {
        /// Run against the docker-compose testnet instead of local processes.
        #[arg(long)]
        compose: bool,
        /// List the drills and exit.
        #[arg(long)]
        list: bool,
        /// Run only these drills (names from --list; repeatable).
        #[arg(long = "only", value_name = "NAME")]
        only: Vec<String>,
        /// Working directory of the local network (default: a temporary directory,
        /// removed afterwards).
        #[arg(long, conflicts_with = "compose")]
        dir: Option<PathBuf>,
        /// Where quorate-node and quorate-coordinator are (local network).
        #[arg(long, conflicts_with = "compose")]
        bin_dir: Option<PathBuf>,
        /// The compose file.
        #[arg(long, default_value = "testnet/docker-compose.yml")]
        compose_file: PathBuf,
    },
    /// Print testnet/docker-compose.yml as rendered from the compose layout.
    ComposeFile,
    /// (Runs inside the compose `setup` container.) Write the PKI, every party's
    /// config and testnet.json for the host into DIR; keeps an existing PKI.
    ComposeSetup {
        /// The state directory as mounted in the container.
        #[arg(long)]
        dir: PathBuf,
    },
    /// (Runs inside the compose `keys` container.) Wait for every node, then run
    /// the key ceremony command after `--` once per demo key no node holds yet.
    /// Placeholders: {ceremony} {key_id} {ciphersuite} {threshold} {transcript}.
    ComposeKeys {
        /// The state directory as mounted in the container.
        #[arg(long)]
        dir: PathBuf,
        /// The ceremony command line.
        #[arg(last = true, required = true)]
        ceremony: Vec<String>,
    },
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    quorate_proto::install_crypto_provider();
    init_tracing(LogFormat::Text, "warn");
    if let Err(e) = run(args.command).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Up {
            dir,
            bin_dir,
            check_only,
            reset,
        } => {
            if reset {
                quorate_testnet::network::remove_testnet(&dir)?;
            }
            let bin_dir = match bin_dir {
                Some(d) => d,
                None => default_bin_dir()?,
            };
            let spec = NetworkSpec::default_five_regions();
            println!(
                "starting {} nodes ({}-of-{}) and a coordinator in {}",
                spec.nodes.len(),
                spec.threshold,
                spec.nodes.len(),
                dir.display()
            );
            // Caught from now on: a signal during startup must not leave node
            // processes behind.
            let mut signals = ShutdownSignals::new()?;
            let mut network = tokio::select! {
                started = LocalNetwork::start(&dir, &bin_dir, spec) => started?,
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
        Cmd::Bench {
            nodes,
            threshold,
            ciphersuite,
            clients,
            duration,
            warmup,
            verify_every,
            dir,
            bin_dir,
            json,
        } => {
            let ciphersuites = if ciphersuite == "all" {
                quorate_proto::suite::Ciphersuite::ALL.to_vec()
            } else {
                vec![ciphersuite
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!(e))?]
            };
            let bin_dir = match bin_dir {
                Some(d) => d,
                None => default_bin_dir()?,
            };
            if !quorate_testnet::bench::is_release_dir(&bin_dir) {
                eprintln!("warning: {} is not a release build; figures will be far below what the code can do", bin_dir.display());
            }
            let opts = quorate_testnet::bench::BenchOptions {
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
            let results = quorate_testnet::bench::run(&opts).await?;
            print!("{}", quorate_testnet::bench::table(&results));
            if json {
                println!("{}", quorate_testnet::bench::json_line(&results)?);
            }
            let invalid: u64 = results.iter().map(|r| r.invalid_signatures).sum();
            anyhow::ensure!(invalid == 0, "{invalid} invalid signatures");
            Ok(())
        }
        Cmd::Sign {
            dir,
            key_id,
            message,
            message_hex,
            request_id,
            approval_token,
            timeout_ms,
            coordinator,
        } => {
            let approval_token = approval_token
                .map(|p| std::fs::read(&p).with_context(|| format!("reading {}", p.display())))
                .transpose()?;
            let message = match (message, message_hex) {
                (Some(text), None) => text.into_bytes(),
                (None, Some(hex_text)) => hex::decode(hex_text.trim()).context("--message-hex")?,
                _ => anyhow::bail!("give --message or --message-hex"),
            };
            let testnet = TestnetJson::read(&dir)?;
            let (endpoint, server_name) = match coordinator {
                None => (testnet.coordinator.clone(), testnet.server_name.clone()),
                Some(i) => {
                    let c = testnet.coordinators.get(i).with_context(|| {
                        format!(
                            "testnet.json lists {} coordinators",
                            testnet.coordinators.len()
                        )
                    })?;
                    (c.endpoint.clone(), c.server_name.clone())
                }
            };
            let client = SignerClient::connect(
                &endpoint,
                &server_name,
                &TlsPaths {
                    ca: testnet.ca,
                    cert: testnet.client_cert,
                    key: testnet.client_key,
                },
            )?;
            let public = client.public_key(&key_id).await?;
            let response = client
                .sign_with(
                    &key_id,
                    &message,
                    request_id.as_deref(),
                    approval_token,
                    Duration::from_millis(timeout_ms),
                )
                .await?;
            let suite = quorate_proto::suite::Ciphersuite::from_pb(response.ciphersuite)?;
            quorate_testnet::verify::verify(
                suite,
                &public.public_key,
                &message,
                &response.signature,
            )
            .map_err(|e| anyhow::anyhow!("signature does not verify: {e}"))?;
            println!("key_id:     {}", response.key_id);
            println!("ciphersuite: {suite}");
            println!("public_key: {}", hex::encode(&public.public_key));
            println!("signature:  {}", hex::encode(&response.signature));
            println!("signers:    {}", response.signers.join(", "));
            println!("verified:   yes (independent verifier)");
            Ok(())
        }
        Cmd::Drill {
            compose,
            list,
            only,
            dir,
            bin_dir,
            compose_file,
        } => drill(compose, list, only, dir, bin_dir, compose_file).await,
        Cmd::ComposeFile => {
            print!(
                "{}",
                ComposeLayout::default_five_regions().render_compose_file()
            );
            Ok(())
        }
        Cmd::ComposeSetup { dir } => compose::setup(&ComposeLayout::default_five_regions(), &dir),
        Cmd::ComposeKeys { dir, ceremony } => {
            compose::create_keys(&ComposeLayout::default_five_regions(), &dir, &ceremony).await
        }
    }
}

async fn drill(
    use_compose: bool,
    list: bool,
    only: Vec<String>,
    dir: Option<PathBuf>,
    bin_dir: Option<PathBuf>,
    compose_file: PathBuf,
) -> anyhow::Result<()> {
    let all = drill::registry();
    if list {
        for d in &all {
            let scope = if d.local_only {
                " (local processes only)"
            } else {
                ""
            };
            println!("{:<2} {:<18} {}{scope}", d.number, d.name, d.expectation);
        }
        return Ok(());
    }
    for name in &only {
        if !all.iter().any(|d| d.name == name) {
            anyhow::bail!("no drill named {name}; see --list");
        }
    }
    let drills: Vec<drill::Drill> = all
        .into_iter()
        .filter(|d| only.is_empty() || only.iter().any(|n| n == d.name))
        .filter(|d| {
            if use_compose && d.local_only {
                eprintln!("skipping {} on compose: it needs local processes", d.name);
                false
            } else {
                true
            }
        })
        .collect();
    // The background load signs with the unrestricted keys: the EU key may lawfully
    // refuse when EU nodes are down (drill eu-failover covers it).
    let key_ids: Vec<String> = NetworkSpec::default_five_regions()
        .keys
        .iter()
        .filter(|k| k.policy.is_none())
        .map(|k| k.key_id.clone())
        .collect();
    let started = std::time::Instant::now();
    // Kept alive until the local network has stopped.
    let mut temp = None;
    let (target, title) = if use_compose {
        eprintln!(
            "bringing up the compose testnet ({})",
            compose_file.display()
        );
        let network = ComposeNetwork::up(&compose_file).await?;
        (
            drill::Target::Compose(network),
            "Quorum drills against the docker-compose testnet (5 containers, 3-of-5, 2 coordinators)",
        )
    } else {
        let dir = match dir {
            Some(d) => d,
            None => {
                let t = tempfile::tempdir()?;
                let d = t.path().join("net");
                temp = Some(t);
                d
            }
        };
        let bin_dir = match bin_dir {
            Some(d) => d,
            None => default_bin_dir()?,
        };
        eprintln!(
            "starting a local network with two coordinators in {}",
            dir.display()
        );
        let network =
            LocalNetwork::start_with(&dir, &bin_dir, NetworkSpec::default_five_regions(), 2)
                .await?;
        (
            drill::Target::Local(Box::new(network)),
            "Quorum drills against local processes (5 nodes, 3-of-5, 2 coordinators)",
        )
    };
    let mut ctx = drill::DrillCtx::new(target, &key_ids).await?;
    let rows = drill::run_drills(&mut ctx, &drills).await;
    if let drill::Target::Local(network) = &mut ctx.target {
        network.stop().await?;
    }
    drop(temp);
    println!("{}", drill::render_report(title, &rows));
    println!(
        "{} of {} drills passed in {:.0} s",
        rows.iter().filter(|r| r.verdict.pass).count(),
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    if rows.iter().all(|r| r.verdict.pass) {
        Ok(())
    } else {
        anyhow::bail!("some drills failed")
    }
}

/// Signs once with every key and verifies independently.
async fn self_check(network: &LocalNetwork) -> anyhow::Result<()> {
    let client = network.client().await?;
    for key in &network.spec.keys {
        let message = format!("quorate testnet self-check for {}", key.key_id);
        let signed = client
            .sign_verified(&key.key_id, message.as_bytes(), Duration::from_secs(5))
            .await
            .with_context(|| format!("self-check signature with {}", key.key_id))?;
        println!(
            "  {:<16} {:<13} signed by {:<24} verified: yes  signature {}",
            key.key_id,
            signed.ciphersuite.name(),
            signed.response.signers.join(","),
            hex::encode(&signed.response.signature[..16]) + "..."
        );
    }
    Ok(())
}
