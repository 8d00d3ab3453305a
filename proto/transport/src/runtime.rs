//! Process plumbing shared by the Quorate binaries: logging setup, shutdown signals
//! and the graceful drain of a server.
//!
//! A server drains in three steps once its shutdown signal arrives ([`Drain`]): it
//! stops taking new work (its handlers check [`Drain::is_draining`], and its health
//! says `NOT_SERVING`), tells its peers to go away (tonic's graceful shutdown sends
//! HTTP/2 GOAWAY on every connection when [`Drain::begun`] resolves) and finishes
//! what is in flight, but for no longer than its grace ([`drain_within`]): a peer
//! that keeps a stream open must not keep the process alive until a supervisor
//! kills it. A plaintext health port ([`crate::health`]) keeps answering, from the
//! same status, `NOT_SERVING` through the drain, and closes after it.

use std::future::Future;
use std::time::Duration;

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?}; expected text or json"
            )),
        }
    }
}

/// Installs the global `tracing` subscriber writing to stderr. The filter comes from
/// `RUST_LOG`, else `default_filter` (servers use `info`, command-line tools `warn`). Secrets never reach these logs: secret types redact
/// themselves and handlers log hashes, not messages.
pub fn init_tracing(format: LogFormat, default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a terminal, not in log files and collectors.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // Err means a subscriber is already installed (tests running several servers).
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// SIGINT and SIGTERM, caught from the moment this is created: a process that must
/// clean up (stop the processes it started) creates it before starting anything, so
/// a signal that arrives early is not fatal.
#[derive(Debug)]
pub struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Starts catching SIGINT and SIGTERM.
    pub fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves on the next SIGINT or SIGTERM.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    match ShutdownSignals::new() {
        Ok(mut signals) => signals.recv().await,
        Err(e) => {
            tracing::error!("cannot listen for SIGINT/SIGTERM: {e}");
            std::future::pending::<()>().await
        }
    }
}

/// Default of the servers' `shutdown_grace_ms`: how long a server finishes what is in
/// flight after SIGTERM before it exits anyway. Well below the 10 s of `docker stop`
/// and systemd's and Kubernetes' defaults, so they never need SIGKILL.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 5_000;

/// Begins a server's drain; see [`drain`].
#[derive(Debug)]
pub struct DrainSwitch(tokio::sync::watch::Sender<bool>);

/// Whether a server is draining, and a future that resolves once it is. Cheap to
/// clone; every handler that takes up new work holds one.
#[derive(Clone, Debug)]
pub struct Drain(tokio::sync::watch::Receiver<bool>);

/// A new drain, not begun, and the switch that begins it.
pub fn drain() -> (DrainSwitch, Drain) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    (DrainSwitch(tx), Drain(rx))
}

impl DrainSwitch {
    /// Begins the drain (again is harmless).
    pub fn begin(&self) {
        self.0.send_replace(true);
    }

    /// A [`Drain`] of this switch.
    pub fn drain(&self) -> Drain {
        Drain(self.0.subscribe())
    }
}

impl Drain {
    /// Whether the drain has begun: take no new work.
    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the drain has begun; never if its switch is dropped unused.
    pub async fn begun(self) {
        let mut rx = self.0;
        if rx.wait_for(|draining| *draining).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Awaits `serve`, but once `drain` has begun for no longer than `grace`: `None`
/// when the grace ran out first (the caller returns anyway and the process exits,
/// closing whatever was still open).
pub async fn drain_within<T>(
    serve: impl Future<Output = T>,
    drain: &Drain,
    grace: Duration,
) -> Option<T> {
    tokio::pin!(serve);
    tokio::select! {
        done = &mut serve => return Some(done),
        () = drain.clone().begun() => {}
    }
    tokio::time::timeout(grace, serve).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_drain_begins_once_and_every_clone_sees_it() {
        let (switch, drain) = drain();
        let other = switch.drain();
        assert!(!drain.is_draining() && !other.is_draining());
        let waiting = tokio::spawn(other.clone().begun());
        switch.begin();
        switch.begin();
        assert!(drain.is_draining() && other.is_draining());
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("begun resolves once the drain begins")
            .unwrap();
    }

    #[tokio::test]
    async fn a_server_that_finishes_within_its_grace_returns_its_result() {
        let (switch, drain) = drain();
        let serve = {
            let drain = drain.clone();
            async move {
                drain.begun().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                7
            }
        };
        switch.begin();
        assert_eq!(
            drain_within(serve, &drain, Duration::from_secs(5)).await,
            Some(7)
        );
    }

    #[tokio::test]
    async fn a_server_that_keeps_a_connection_open_is_cut_off_after_its_grace() {
        let (switch, drain) = drain();
        let serve = std::future::pending::<()>();
        let begun_at = std::time::Instant::now();
        switch.begin();
        let grace = Duration::from_millis(200);
        assert_eq!(drain_within(serve, &drain, grace).await, None);
        let took = begun_at.elapsed();
        assert!(took >= grace && took < Duration::from_secs(3), "{took:?}");
    }

    #[tokio::test]
    async fn a_drain_whose_switch_is_dropped_never_begins() {
        let (switch, drain) = drain();
        drop(switch);
        let begun = tokio::time::timeout(Duration::from_millis(100), drain.begun()).await;
        assert!(begun.is_err());
    }
}
