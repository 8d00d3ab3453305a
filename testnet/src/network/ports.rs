//! Reserved loopback ports: every port of a local network is leased for as long as
//! the network lives, so parallel test processes on one machine never pick the same
//! one. Used by `LocalNetwork::start_with` and by tests that need a port of their
//! own.

use std::net::TcpListener;

use anyhow::bail;

/// Ports handed to testnet processes are drawn from below Linux's ephemeral range
/// (32768-60999): a port taken from the ephemeral range and released could be
/// reused at once as the source port of some outgoing connection, and the process
/// that is meant to listen on it would fail to bind.
const PORT_RANGE: std::ops::Range<u16> = 10_000..32_000;

/// A port reserved for one network for as long as the lease lives. Networks started
/// by parallel test processes on one machine coordinate through lock files, so two
/// of them never pick the same port (a bind check alone cannot tell a port another
/// network picked but has not bound yet).
#[derive(Debug)]
pub struct PortLease {
    /// The port.
    pub port: u16,
    _lock: std::fs::File,
}

/// Reserves a free loopback port outside the ephemeral range.
pub fn lease_port() -> anyhow::Result<PortLease> {
    use rand_core::{OsRng, RngCore};
    let dir = std::env::temp_dir().join("quorate-testnet-ports");
    std::fs::create_dir_all(&dir)?;
    let span = u32::from(PORT_RANGE.end - PORT_RANGE.start);
    for _ in 0..1000 {
        let port = PORT_RANGE.start + (OsRng.next_u32() % span) as u16;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{port}.lock")))?;
        // flock is per open file: another lease of this port, in this process or
        // another, holds its own open file and makes this fail.
        if lock.try_lock().is_err() {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(PortLease { port, _lock: lock });
        }
    }
    bail!("no free port in {PORT_RANGE:?}")
}

/// The ports of one network.
#[derive(Debug, Default)]
pub struct PortLeases(Vec<PortLease>);

impl PortLeases {
    /// Leases another port and returns its number.
    pub fn lease(&mut self) -> anyhow::Result<u16> {
        let lease = lease_port()?;
        let port = lease.port;
        self.0.push(lease);
        Ok(port)
    }
}
