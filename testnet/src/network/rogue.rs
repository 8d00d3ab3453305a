//! The rogue on local processes: `quorate-testnet rogue-node` as a process of its
//! own on a stopped node's port (loopback), its stdout and stderr in a log file.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use quorate_transport::tls::TlsPaths;

use crate::rogue::{command_args, wait_listening};

/// A running rogue process.
#[derive(Debug)]
pub struct RogueProcess {
    child: tokio::process::Child,
    log: PathBuf,
}

impl RogueProcess {
    /// Starts `program` (`quorate-testnet`) as a rogue on `listen` (`host:port`)
    /// presenting `tls`, writing its log to `log` (truncated); with `forge_key`, as
    /// the node `tls` names reporting a forged manifest of the key; in network
    /// namespace `netns` if given (the stopped node's, on a WAN testbed). Waits
    /// until it listens.
    pub async fn start(
        program: &Path,
        listen: &str,
        tls: &TlsPaths,
        forge_key: Option<&str>,
        log: &Path,
        netns: Option<&str>,
    ) -> anyhow::Result<Self> {
        let file = std::fs::File::create(log).with_context(|| format!("{}", log.display()))?;
        let mut command = match netns {
            Some(ns) => {
                let mut c = tokio::process::Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => tokio::process::Command::new(program),
        };
        let child = command
            .args(command_args(listen, tls, forge_key))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let rogue = Self {
            child,
            log: log.to_path_buf(),
        };
        wait_listening(listen, Duration::from_secs(10))
            .await
            .with_context(|| format!("the rogue did not listen; its log: {}", rogue.log_text()))?;
        Ok(rogue)
    }

    /// What it printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills it and waits until it is gone (its port free again).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}
