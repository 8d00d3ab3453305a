//! The background load every drill runs under: [`LOAD_WORKERS`] clients signing
//! continuously over the given coordinators, rotating over the load keys, each
//! request with a [`REQUEST_TIMEOUT`] deadline through the client library (which
//! verifies every signature under the key's public key) and checked again under the
//! key the drill fetched at its start; every request becomes a [`Sample`]. Bounded in count and
//! in time whatever a drill does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quorate_frost::Ciphersuite;

use quorate_client::{Client, ClientError, SignOptions};

/// Deadline each background request carries (the coordinator's default deadline
/// is 5 s; it answers a caller's shorter deadline less a margin).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Concurrent background clients.
pub const LOAD_WORKERS: usize = 4;
/// Pause between one client's requests, so a fast-failing network does not turn
/// the load into a busy loop on shared cores.
const LOAD_PACING: Duration = Duration::from_millis(20);
/// Upper bounds of one load run, whatever a drill does.
const LOAD_MAX_DURATION: Duration = Duration::from_secs(180);
const LOAD_MAX_REQUESTS_PER_WORKER: u64 = 20_000;

/// A key the load signs with, and what verifies its signatures.
#[derive(Clone, Debug)]
pub struct LoadKey {
    /// Key id.
    pub key_id: String,
    /// Ciphersuite.
    pub ciphersuite: Ciphersuite,
    /// Group public key (public API encoding).
    pub public_key: Vec<u8>,
}

/// What one request came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A signature that the independent verifier accepted.
    Signed,
    /// A signature that it rejected.
    Invalid(String),
    /// An error status.
    Failed(tonic::Code, String),
}

/// One request of the background load.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Which coordinator it went to.
    pub coordinator: usize,
    /// When it was sent.
    pub sent: Instant,
    /// How long it took.
    pub latency: Duration,
    /// Its outcome.
    pub outcome: Outcome,
}

impl Sample {
    /// When its answer came.
    pub fn done(&self) -> Instant {
        self.sent + self.latency
    }
}

/// Background signing load: [`LOAD_WORKERS`] clients signing continuously.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the load; worker `w` uses `clients[w % clients.len()]`.
    pub fn start(clients: &[(usize, Client)], keys: &[LoadKey], label: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let mut workers = Vec::new();
        for w in 0..LOAD_WORKERS {
            let Some((coordinator, client)) = clients.get(w % clients.len().max(1)).cloned() else {
                break;
            };
            let keys = keys.to_vec();
            let stop = stop.clone();
            let samples = samples.clone();
            let label = label.to_string();
            workers.push(tokio::spawn(async move {
                for n in 0..LOAD_MAX_REQUESTS_PER_WORKER {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > LOAD_MAX_DURATION {
                        break;
                    }
                    let Some(key) = keys.get((n as usize + w) % keys.len().max(1)) else {
                        break;
                    };
                    let message = format!("drill {label} worker {w} request {n}");
                    let sent = Instant::now();
                    let result = client
                        .sign(
                            &key.key_id,
                            message.as_bytes(),
                            SignOptions {
                                deadline: Some(REQUEST_TIMEOUT),
                                ..SignOptions::default()
                            },
                        )
                        .await;
                    let latency = sent.elapsed();
                    let outcome = match result {
                        Ok(signed) => match crate::verify::verify(
                            key.ciphersuite,
                            &key.public_key,
                            message.as_bytes(),
                            &signed.signature,
                        ) {
                            Ok(()) => Outcome::Signed,
                            Err(e) => Outcome::Invalid(e.to_string()),
                        },
                        Err(ClientError::InvalidSignature { source, .. }) => {
                            Outcome::Invalid(source.to_string())
                        }
                        Err(e) => {
                            Outcome::Failed(e.code().unwrap_or(tonic::Code::Unknown), e.to_string())
                        }
                    };
                    if let Ok(mut s) = samples.lock() {
                        s.push(Sample {
                            coordinator,
                            sent,
                            latency,
                            outcome,
                        });
                    }
                    tokio::time::sleep(LOAD_PACING).await;
                }
            }));
        }
        Self {
            stop,
            samples,
            workers,
        }
    }

    /// The samples so far.
    pub fn snapshot(&self) -> Vec<Sample> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits (at most `timeout`) for a request sent after `since` to be signed;
    /// returns when its answer came.
    pub async fn first_success_after(&self, since: Instant, timeout: Duration) -> Option<Instant> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Some(done) = self
                .snapshot()
                .iter()
                .filter(|s| s.sent >= since && s.outcome == Outcome::Signed)
                .map(Sample::done)
                .min()
            {
                return Some(done);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Stops the workers (each finishes its request in flight) and returns every
    /// sample.
    pub async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            // A request carries a deadline, so this ends; the bound is a backstop.
            let _ = tokio::time::timeout(REQUEST_TIMEOUT * 2, w).await;
        }
        let samples = self.samples.lock().map(|s| s.clone()).unwrap_or_default();
        samples
    }
}
