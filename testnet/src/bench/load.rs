//! The bench's signing load: `concurrency` clients signing one key as fast as the
//! network answers, into an HDR histogram of latencies, error counts by code, and
//! every signature verified by the client library under the key's public key, and
//! one in `verify_every` checked again under the key the bench fetched itself.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use quorate_frost::Ciphersuite;

use quorate_client::{Client, ClientError, SignOptions};

#[derive(Default)]
pub(super) struct Shared {
    pub(super) ok: AtomicU64,
    pub(super) verified: AtomicU64,
    pub(super) invalid: AtomicU64,
    pub(super) errors: Mutex<BTreeMap<String, u64>>,
    pub(super) latencies: Mutex<Option<Histogram<u64>>>,
    /// Signatures by quorum (its node ids, sorted, joined by `+`).
    pub(super) quorums: Mutex<BTreeMap<String, u64>>,
}

/// Runs `clients` signing loops for `window`, recording into `shared` when `record`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn load(
    clients: &[Client],
    concurrency: usize,
    key_id: &str,
    suite: Ciphersuite,
    public_key: Arc<Vec<u8>>,
    verify_every: u64,
    window: Duration,
    shared: Arc<Shared>,
    progress: bool,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let client = clients[i % clients.len()].clone();
        let key_id = key_id.to_string();
        let shared = shared.clone();
        let stop = stop.clone();
        let public_key = public_key.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let message = format!("bench {i} {n}");
                let t0 = Instant::now();
                match client
                    .sign(
                        &key_id,
                        message.as_bytes(),
                        SignOptions {
                            deadline: Some(Duration::from_secs(5)),
                            ..SignOptions::default()
                        },
                    )
                    .await
                {
                    Ok(resp) => {
                        let us = t0.elapsed().as_micros() as u64;
                        // Counted over all clients: with many clients and slow
                        // signing, a per-client count might never reach the sample.
                        let nth = shared.ok.fetch_add(1, Ordering::Relaxed) + 1;
                        if let Some(h) = shared
                            .latencies
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .as_mut()
                        {
                            let _ = h.record(us.max(1));
                        }
                        let mut signers = resp.signers.clone();
                        signers.sort();
                        *shared
                            .quorums
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(signers.join("+"))
                            .or_default() += 1;
                        if nth.is_multiple_of(verify_every) {
                            shared.verified.fetch_add(1, Ordering::Relaxed);
                            if crate::verify::verify(
                                suite,
                                &public_key,
                                message.as_bytes(),
                                &resp.signature,
                            )
                            .is_err()
                            {
                                shared.invalid.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Err(ClientError::InvalidSignature { .. }) => {
                        shared.invalid.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        let code = e
                            .code()
                            .map_or_else(|| "Client".to_string(), |c| format!("{c:?}"));
                        *shared
                            .errors
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(code)
                            .or_default() += 1;
                    }
                }
            }
        }));
    }
    let mut last_ok = 0;
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1).min(window.saturating_sub(started.elapsed())))
            .await;
        if progress {
            let ok = shared.ok.load(Ordering::Relaxed);
            let errors: u64 = shared
                .errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .sum();
            eprint!(
                "\r  {:>5.1}s/{:.0}s  {:>8} ok  {:>5} errors  {:>7.0} sps   ",
                started.elapsed().as_secs_f64(),
                window.as_secs_f64(),
                ok,
                errors,
                (ok - last_ok) as f64
            );
            last_ok = ok;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    if progress {
        eprintln!();
    }
}
