//! The docker command line, as the compose driver runs it from the host: `docker`
//! (kill, start, pause, network connect, inspect, ...) and Compose (`docker compose`
//! or the standalone `docker-compose`), each bounded in time, failing with a
//! [`DockerError`] that carries the command's own complaint. Used by the compose
//! driver (`driver.rs`).

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

/// How long one docker or Compose command may take (`up -d` aside).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `up -d` may take: it may create every container and run the setup.
const UP_TIMEOUT: Duration = Duration::from_secs(300);

/// A docker or Compose command that did not do its job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DockerError {
    /// Neither Compose plugin nor standalone Compose is installed.
    #[error("neither `docker compose` nor `docker-compose` is available")]
    NoCompose,
    /// The command could not be started.
    #[error("running {command}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        #[source]
        source: std::io::Error,
    },
    /// The command did not finish in time.
    #[error("{command} did not finish within {} s", .limit.as_secs())]
    TimedOut {
        /// The command line.
        command: String,
        /// How long it was given.
        limit: Duration,
    },
    /// The object the command names (container, volume, network) does not exist.
    #[error("{command} failed: {stderr}")]
    NoSuchObject {
        /// The command line.
        command: String,
        /// What docker said.
        stderr: String,
    },
    /// The command failed; `status` is shown for Compose commands, whose complaint
    /// may be on stdout.
    #[error("{command} failed{}: {stderr}", status.map(|s| format!(" ({s})")).unwrap_or_default())]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status, for Compose commands.
        status: Option<ExitStatus>,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// `up -d` failed; its output went to the terminal, and the one-shot
    /// containers' logs say why.
    #[error("{command} failed ({status}); see `docker logs quorate-setup` and `docker logs quorate-keys`")]
    UpFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
    },
}

/// How the host runs Compose: the `docker compose` plugin when present, else the
/// standalone `docker-compose` (v1 or v2).
pub fn compose_command() -> Result<Vec<String>, DockerError> {
    let works = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works("docker", &["compose", "version"]) {
        Ok(vec!["docker".into(), "compose".into()])
    } else if works("docker-compose", &["version"]) {
        Ok(vec!["docker-compose".into()])
    } else {
        Err(DockerError::NoCompose)
    }
}

/// Runs `cmd` to completion within `limit`, capturing its output.
async fn output(cmd: &[String], limit: Duration) -> Result<std::process::Output, DockerError> {
    let command = cmd.join(" ");
    let (program, args) = cmd.split_first().ok_or(DockerError::NoCompose)?;
    tokio::time::timeout(
        limit,
        tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .map_err(|_| DockerError::TimedOut {
        command: command.clone(),
        limit,
    })?
    .map_err(|source| DockerError::Spawn { command, source })
}

/// Runs a docker command and returns its stdout.
pub async fn docker(args: &[&str]) -> Result<String, DockerError> {
    let cmd: Vec<String> = std::iter::once("docker")
        .chain(args.iter().copied())
        .map(str::to_string)
        .collect();
    let out = output(&cmd, COMMAND_TIMEOUT).await?;
    if !out.status.success() {
        let command = cmd.join(" ");
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        // Docker words it "No such container: X" and, since 28, "get X: no such
        // volume"; both mean the object is absent, which callers may accept.
        return Err(if stderr.to_ascii_lowercase().contains("no such") {
            DockerError::NoSuchObject { command, stderr }
        } else {
            DockerError::Failed {
                command,
                status: None,
                stderr,
            }
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What container `name` wrote to stdout and stderr (`docker logs`), since
/// `since` (a timestamp docker accepts, e.g. its own `State.StartedAt`) when given.
pub async fn container_logs(name: &str, since: Option<&str>) -> Result<String, DockerError> {
    let mut cmd: Vec<String> = vec!["docker".into(), "logs".into()];
    if let Some(since) = since {
        cmd.extend(["--since".into(), since.to_string()]);
    }
    cmd.push(name.to_string());
    let out = output(&cmd, COMMAND_TIMEOUT).await?;
    if !out.status.success() {
        return Err(DockerError::Failed {
            command: cmd.join(" "),
            status: Some(out.status),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// The state of container `name` (`docker inspect -f FORMAT`), or `None` when no
/// such container exists.
pub async fn container_state(name: &str, format: &str) -> Result<Option<String>, DockerError> {
    match docker(&["inspect", "--type", "container", "-f", format, name]).await {
        Ok(state) => Ok(Some(state)),
        Err(DockerError::NoSuchObject { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs `docker-compose -f FILE ARGS` (or `docker compose`).
pub async fn compose(file: &Path, args: &[&str]) -> Result<(), DockerError> {
    let mut cmd = compose_command()?;
    cmd.extend(["-f".into(), file.display().to_string()]);
    cmd.extend(args.iter().map(|a| a.to_string()));
    let out = output(&cmd, COMMAND_TIMEOUT).await?;
    if !out.status.success() {
        return Err(DockerError::Failed {
            command: cmd.join(" "),
            status: Some(out.status),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// `up -d` of the whole network, its output on the terminal (it may build nothing,
/// but it shows the one-shot containers finishing).
pub async fn compose_up(file: &Path) -> Result<(), DockerError> {
    let mut cmd = compose_command()?;
    cmd.extend([
        "-f".into(),
        file.display().to_string(),
        "up".into(),
        "-d".into(),
    ]);
    let command = cmd.join(" ");
    let (program, args) = cmd.split_first().ok_or(DockerError::NoCompose)?;
    let status = tokio::time::timeout(
        UP_TIMEOUT,
        tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .status(),
    )
    .await
    .map_err(|_| DockerError::TimedOut {
        command: command.clone(),
        limit: UP_TIMEOUT,
    })?
    .map_err(|source| DockerError::Spawn {
        command: command.clone(),
        source,
    })?;
    if !status.success() {
        return Err(DockerError::UpFailed { command, status });
    }
    Ok(())
}
