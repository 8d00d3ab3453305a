//! Supervision of one `quorate-node` or `quorate-coordinator` process of a local
//! network: start it with its config, and kill, stop, freeze, thaw or wait for it
//! the way drills and tests break a network. Used by `LocalNetwork`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// One managed process (node or coordinator).
#[derive(Debug)]
pub struct ManagedProcess {
    /// Name (node id or `coordinator`).
    pub name: String,
    program: PathBuf,
    config: PathBuf,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    child: Option<Child>,
}

impl ManagedProcess {
    pub(super) fn new(name: &str, program: PathBuf, config: PathBuf, log: PathBuf) -> Self {
        Self {
            name: name.to_string(),
            program,
            config,
            log,
            child: None,
        }
    }

    /// Starts the process (appending to its log).
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("{} is already running", self.name);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = Command::new(&self.program)
            .arg("--config")
            .arg(&self.config)
            .env_remove("QUORATE_KEK")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // A test that panics must not leave processes behind.
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Whether the process is alive.
    pub fn is_running(&self) -> bool {
        self.child.as_ref().is_some_and(|c| c.id().is_some())
    }

    /// Exit status, if it has exited (reaping it).
    pub fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    /// Freezes the process (SIGSTOP): it keeps its sockets but answers nothing, like
    /// a hung host or a network path that drops packets.
    pub fn freeze(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGSTOP)
    }

    /// Resumes a frozen process (SIGCONT).
    pub fn thaw(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGCONT)
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Stops the process gracefully (SIGTERM), killing it after `grace`.
    pub async fn stop(&mut self, grace: Duration) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                child.kill().await?;
            }
        }
        Ok(())
    }

    /// Sends `signal` to the running process (e.g. SIGSTOP/SIGCONT to freeze it in
    /// place, which the drills use as a stand-in for a network partition: its sockets
    /// stay open but nothing answers).
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow!("{} is not running", self.name))?;
        let pid = i32::try_from(pid).context("pid out of range")?;
        kill(Pid::from_raw(pid), signal).with_context(|| format!("{signal} to {}", self.name))?;
        Ok(())
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| anyhow!("{} is not running", self.name))?;
        let status = tokio::time::timeout(timeout, child.wait())
            .await
            .map_err(|_| anyhow!("{} did not exit within {timeout:?}", self.name))??;
        self.child = None;
        Ok(status.code())
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}
