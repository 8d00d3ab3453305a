//! Supervision of one `quorate-node` or `quorate-coordinator` process of a local
//! network: start it with its config, and kill, stop, freeze, thaw or wait for it
//! the way drills and tests break a network. Used by `LocalNetwork`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// How a process met a SIGTERM ([`ManagedProcess::terminate`], and the compose
/// network's `docker stop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Termination {
    /// From the signal to the exit.
    pub took: Duration,
    /// Its exit code, if it exited by itself.
    pub exit_code: Option<i32>,
    /// Whether it was still running at the bound and had to be killed.
    pub killed: bool,
}

impl Termination {
    /// Whether it exited by itself, with code 0, within `bound`.
    pub fn clean_within(&self, bound: Duration) -> bool {
        !self.killed && self.exit_code == Some(0) && self.took <= bound
    }
}

impl std::fmt::Display for Termination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.took.as_millis();
        match (self.killed, self.exit_code) {
            (true, _) => write!(f, "still running after {ms} ms, killed"),
            (false, Some(code)) => write!(f, "exited with {code} after {ms} ms"),
            (false, None) => write!(f, "ended by a signal after {ms} ms"),
        }
    }
}

/// What went wrong handling a managed process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// `start` of a process that runs.
    #[error("{name} is already running")]
    AlreadyRunning {
        /// The process.
        name: String,
    },
    /// A signal or wait for a process that does not run.
    #[error("{name} is not running")]
    NotRunning {
        /// The process.
        name: String,
    },
    /// Its log file could not be opened.
    #[error("opening {}", .path.display())]
    OpenLog {
        /// The log file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The program could not be started.
    #[error("starting {}", .program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The process id does not fit a `pid_t`.
    #[error("pid out of range")]
    PidOutOfRange(#[source] std::num::TryFromIntError),
    /// The kernel refused the signal.
    #[error("{signal} to {name}")]
    Signal {
        /// The signal.
        signal: Signal,
        /// The process.
        name: String,
        /// Why.
        #[source]
        source: nix::errno::Errno,
    },
    /// The process did not exit in time.
    #[error("{name} did not exit within {timeout:?}")]
    ExitTimeout {
        /// The process.
        name: String,
        /// How long it was given.
        timeout: Duration,
    },
    /// Killing or waiting for it failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One managed process (node or coordinator).
#[derive(Debug)]
pub struct ManagedProcess {
    /// Name (node id or `coordinator`).
    pub name: String,
    program: PathBuf,
    config: PathBuf,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    /// The network namespace it runs in (a WAN testbed's); `None`: this process's.
    netns: Option<String>,
    child: Option<Child>,
}

impl ManagedProcess {
    pub(super) fn new(name: &str, program: PathBuf, config: PathBuf, log: PathBuf) -> Self {
        Self {
            name: name.to_string(),
            program,
            config,
            log,
            netns: None,
            child: None,
        }
    }

    /// The same process, started in network namespace `netns` (by `ip netns exec`,
    /// which execs the program, so the process id is the program's).
    pub(super) fn in_netns(mut self, netns: Option<String>) -> Self {
        self.netns = netns;
        self
    }

    /// Starts the process (appending to its log).
    pub fn start(&mut self) -> Result<(), ProcessError> {
        if self.is_running() {
            return Err(ProcessError::AlreadyRunning {
                name: self.name.clone(),
            });
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|source| ProcessError::OpenLog {
                path: self.log.clone(),
                source,
            })?;
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        let child = command
            .arg("--config")
            .arg(&self.config)
            .env_remove("QUORATE_KEK")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // A test that panics must not leave processes behind.
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                program: self.program.clone(),
                source,
            })?;
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
    pub fn freeze(&self) -> Result<(), ProcessError> {
        self.signal(Signal::SIGSTOP)
    }

    /// Resumes a frozen process (SIGCONT).
    pub fn thaw(&self) -> Result<(), ProcessError> {
        self.signal(Signal::SIGCONT)
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub async fn kill(&mut self) -> Result<(), ProcessError> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Stops the process gracefully (SIGTERM), killing it after `grace`.
    pub async fn stop(&mut self, grace: Duration) -> Result<(), ProcessError> {
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

    /// Sends SIGTERM and nothing else for up to `bound`, as a supervisor does
    /// before it resorts to SIGKILL: how long the process took to exit by itself and
    /// with what code, or that it had to be killed after `bound`.
    pub async fn terminate(&mut self, bound: Duration) -> Result<Termination, ProcessError> {
        let Some(mut child) = self.child.take() else {
            return Err(self.not_running());
        };
        let started = std::time::Instant::now();
        if let Some(pid) = child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        match tokio::time::timeout(bound, child.wait()).await {
            Ok(status) => Ok(Termination {
                took: started.elapsed(),
                exit_code: status?.code(),
                killed: false,
            }),
            Err(_) => {
                child.kill().await?;
                Ok(Termination {
                    took: started.elapsed(),
                    exit_code: None,
                    killed: true,
                })
            }
        }
    }

    /// Sends `signal` to the running process (e.g. SIGSTOP/SIGCONT to freeze it in
    /// place, which the drills use as a stand-in for a network partition: its sockets
    /// stay open but nothing answers).
    pub fn signal(&self, signal: Signal) -> Result<(), ProcessError> {
        let pid = self.pid().ok_or_else(|| self.not_running())?;
        let pid = i32::try_from(pid).map_err(ProcessError::PidOutOfRange)?;
        kill(Pid::from_raw(pid), signal).map_err(|source| ProcessError::Signal {
            signal,
            name: self.name.clone(),
            source,
        })
    }

    fn not_running(&self) -> ProcessError {
        ProcessError::NotRunning {
            name: self.name.clone(),
        }
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>, ProcessError> {
        let not_running = self.not_running();
        let child = self.child.as_mut().ok_or(not_running)?;
        let status = tokio::time::timeout(timeout, child.wait())
            .await
            .map_err(|_| ProcessError::ExitTimeout {
                name: self.name.clone(),
                timeout,
            })??;
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
