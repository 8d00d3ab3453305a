//! `quorate-testnet drill`: lists the drills, or runs them (all, or those named
//! with `--only`) against a fresh local network or the compose testnet, prints the
//! report and fails when any drill failed.

use std::path::PathBuf;

use crate::compose::ComposeNetwork;
use crate::drill::{self, ComposeTarget, DrillTarget, LocalTarget};
use crate::network::{default_bin_dir, LocalNetwork, StartOptions};
use crate::spec::NetworkSpec;

/// Flags of `drill`.
#[derive(Debug, clap::Args)]
pub struct DrillArgs {
    /// Run against the docker-compose testnet instead of local processes.
    #[arg(long)]
    pub compose: bool,
    /// List the drills and exit.
    #[arg(long)]
    pub list: bool,
    /// Run only these drills (names from --list; repeatable).
    #[arg(long = "only", value_name = "NAME")]
    pub only: Vec<String>,
    /// Working directory of the local network (default: a temporary directory,
    /// removed afterwards).
    #[arg(long, conflicts_with = "compose")]
    pub dir: Option<PathBuf>,
    /// Where quorate-node and quorate-coordinator are (local network).
    #[arg(long, conflicts_with = "compose")]
    pub bin_dir: Option<PathBuf>,
    /// Run the local network on a WAN testbed with this profile (`eu-us-ap`,
    /// `eu-us-ap-loss1`): every process in its own network namespace behind
    /// emulated inter-region links (needs root).
    #[arg(long, value_name = "PROFILE", conflicts_with = "compose")]
    pub wan: Option<String>,
    /// The compose file.
    #[arg(long, default_value = "testnet/docker-compose.yml")]
    pub compose_file: PathBuf,
}

/// Runs `drill`.
pub async fn run(args: DrillArgs) -> anyhow::Result<()> {
    let DrillArgs {
        compose: use_compose,
        list,
        only,
        dir,
        bin_dir,
        wan,
        compose_file,
    } = args;
    let wan = wan
        .map(|name| crate::wan::WanProfile::named(&name).cloned())
        .transpose()?;
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
    let (target, title): (Box<dyn DrillTarget>, String) = if use_compose {
        eprintln!(
            "bringing up the compose testnet ({})",
            compose_file.display()
        );
        let network = ComposeNetwork::up(&compose_file).await?;
        (
        Box::new(ComposeTarget::new(network)),
        "Quorum drills against the docker-compose testnet (5 containers, 3-of-5, 2 coordinators)".to_string(),
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
            "starting a local network with two coordinators in {}{}",
            dir.display(),
            wan.as_ref()
                .map(|p| format!(" on the WAN testbed {p}"))
                .unwrap_or_default()
        );
        let network = LocalNetwork::start_opts(
            &dir,
            &bin_dir,
            NetworkSpec::default_five_regions(),
            &StartOptions {
                coordinators: 2,
                wan: wan.clone(),
                ..StartOptions::default()
            },
        )
        .await?;
        let title = match &wan {
            Some(p) => format!(
                "Quorum drills against local processes on the WAN testbed {} (5 nodes, 3-of-5, 2 coordinators)",
                p.name
            ),
            None => "Quorum drills against local processes (5 nodes, 3-of-5, 2 coordinators)".into(),
        };
        (Box::new(LocalTarget::new(network)), title)
    };
    // On SIGINT or SIGTERM the drills are dropped with the network, which kills its
    // processes and tears a WAN testbed down.
    let mut signals = quorate_transport::runtime::ShutdownSignals::new()?;
    let mut ctx = drill::DrillCtx::new(target, &key_ids).await?;
    let rows = tokio::select! {
        rows = drill::run_drills(&mut ctx, &drills) => rows,
        _ = signals.recv() => anyhow::bail!("interrupted"),
    };
    ctx.target.shutdown().await?;
    drop(temp);
    println!("{}", drill::render_report(&title, &rows));
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
