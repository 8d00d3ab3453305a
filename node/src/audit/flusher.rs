//! The audit log's flusher: one thread per log that runs the `fdatasync`s back to
//! back, so that concurrent appends share one (group commit), and tells the waiting
//! appends how their flush went.
//!
//! Used only by the audit log (`AuditLog`), which inserts records and asks for flushes.
//! Invariants: a waiter is told `Ok` only once a flush that *began after* its
//! record was written has completed; from the first failed flush or write on, the
//! log is broken for good (every later flush fails) and the first failure is logged
//! once; should the thread die, every waiter, present and future, gets an error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::NodeError;

/// Called on the flusher thread with the time each flush (`fdatasync`) of the log
/// took, after its waiters have been told. The node exports it as a histogram: a
/// share waits for its record's flush, so on a slow disk this is most of a node's
/// round-2 latency.
pub type FlushObserver = Box<dyn Fn(Duration) + Send>;

/// What the flusher has done, as waiters see it.
#[derive(Clone, Debug, Default)]
pub(super) struct Flushed {
    /// Every record with a sequence number below this is on disk.
    pub(super) durable_below: u64,
    /// The last flush failed: records below `.0` it was to cover are not known to
    /// be on disk.
    failed: Option<(u64, String)>,
}

impl Flushed {
    /// `Some` once record `seq` is on disk or its flush failed.
    pub(super) fn outcome(&self, seq: u64) -> Option<Result<(), NodeError>> {
        if self.durable_below > seq {
            return Some(Ok(()));
        }
        match &self.failed {
            Some((below, e)) if *below > seq => Some(Err(NodeError::Storage(format!(
                "audit log flush failed: {e}"
            )))),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct FlushQueue {
    /// Records below this have been inserted and wait for a flush.
    pub(super) requested_below: u64,
    /// The flusher has started flushes for everything below this.
    attempted_below: u64,
    pub(super) closing: bool,
}

/// State shared with the flusher thread.
#[derive(Debug)]
pub(super) struct Flusher {
    queue: Mutex<FlushQueue>,
    pub(super) work: Condvar,
    /// Synchronous waiters (`AuditLog::append`).
    pub(super) done: Condvar,
    pub(super) flushed: Mutex<Flushed>,
    /// Asynchronous waiters (`AuditLog::append_durable`).
    pub(super) flushed_tx: tokio::sync::watch::Sender<Flushed>,
    pub(super) flushes: AtomicU64,
    /// Why the log can no longer be made durable, once a flush or a write has
    /// failed (or the flusher thread died). Set once and never cleared: see [`Flusher::attempt`]. A
    /// lock-free cell, so that appends check it without waiting on a flush.
    pub(super) broken: OnceLock<String>,
}

impl Flusher {
    /// A flusher for a log whose records below `next_seq` are on disk already.
    pub(super) fn new(next_seq: u64) -> Arc<Self> {
        let flushed = Flushed {
            durable_below: next_seq,
            failed: None,
        };
        Arc::new(Flusher {
            queue: Mutex::new(FlushQueue {
                requested_below: next_seq,
                attempted_below: next_seq,
                closing: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            flushed: Mutex::new(flushed.clone()),
            flushed_tx: tokio::sync::watch::Sender::new(flushed),
            flushes: AtomicU64::new(0),
            broken: OnceLock::new(),
        })
    }

    /// Records that the log can no longer be made durable; the first time, says so
    /// in the node's log (the error is the store's, an I/O error: no secrets) and
    /// wakes `AuditLog::wait_broken`.
    pub(super) fn mark_broken(&self, error: &str) {
        if self.broken.set(error.to_string()).is_ok() {
            tracing::error!(
                error,
                "the audit log can no longer be made durable: this node signs nothing \
                 more until it is restarted"
            );
            self.flushed_tx.send_modify(|_| {});
        }
    }

    pub(super) fn queue(&self) -> std::sync::MutexGuard<'_, FlushQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn flushed(&self) -> std::sync::MutexGuard<'_, Flushed> {
        self.flushed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for a flush covering every record below `below`.
    pub(super) fn request(&self, below: u64) {
        let mut queue = self.queue();
        if below > queue.requested_below {
            queue.requested_below = below;
            self.work.notify_one();
        }
    }

    /// Publishes `flushed` to both kinds of waiters (the asynchronous ones first, so
    /// a synchronous waiter that wakes finds both views agreeing).
    fn publish(&self, flushed: Flushed) {
        self.flushed_tx.send_replace(flushed);
        self.done.notify_all();
    }

    /// One flush with `flush`, unless the log is broken (an earlier flush or write
    /// failed): after a failed
    /// `fdatasync` the kernel may have dropped the pages it could not write, and a
    /// later call can succeed without them ever reaching the disk, so from the first
    /// failure on every flush fails (the node reopens the log from what is on disk
    /// when it restarts). The first failure marks the log broken, before it is
    /// published: an append that sees a failed flush finds the log refusing records
    /// already.
    fn attempt(&self, flush: &mut impl FnMut() -> Result<(), String>) -> Result<(), String> {
        if let Some(e) = self.broken.get() {
            return Err(format!(
                "the log broke earlier ({e}); restart the node to reopen it"
            ));
        }
        flush().inspect_err(|e| self.mark_broken(&format!("a flush failed: {e}")))
    }

    /// The flusher thread: flushes (with `flush`) whenever records wait, until the
    /// log closes, and reports each flush's duration to `on_flush` once its waiters
    /// have been told, so that the report never holds up a share.
    pub(super) fn run(
        &self,
        mut flush: impl FnMut() -> Result<(), String>,
        on_flush: FlushObserver,
    ) {
        // Should this thread die (a panic inside the store), every waiter, present
        // and future, gets an error instead of waiting for a flush that never comes.
        struct FailWaitersOnPanic<'a>(&'a Flusher);
        impl Drop for FailWaitersOnPanic<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.mark_broken("the audit flusher thread stopped");
                    let snapshot = {
                        let mut flushed = self.0.flushed();
                        flushed.failed =
                            Some((u64::MAX, "the audit flusher thread stopped".into()));
                        flushed.clone()
                    };
                    self.0.publish(snapshot);
                }
            }
        }
        let _guard = FailWaitersOnPanic(self);
        loop {
            let target = {
                let mut queue = self.queue();
                while queue.requested_below <= queue.attempted_below && !queue.closing {
                    queue = self.work.wait(queue).unwrap_or_else(|p| p.into_inner());
                }
                if queue.requested_below <= queue.attempted_below {
                    return; // closing, nothing left to flush
                }
                queue.attempted_below = queue.requested_below;
                queue.requested_below
            };
            // Every record below `target` was inserted before this call.
            let started = Instant::now();
            let result = self.attempt(&mut flush);
            let took = started.elapsed();
            self.flushes.fetch_add(1, Ordering::Relaxed);
            let snapshot = {
                let mut flushed = self.flushed();
                match result {
                    Ok(_) => {
                        flushed.durable_below = flushed.durable_below.max(target);
                        flushed.failed = None;
                    }
                    Err(e) => flushed.failed = Some((target, e)),
                }
                flushed.clone()
            };
            self.publish(snapshot);
            on_flush(took);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a flusher thread with `flush`, asks it to cover record 0, and returns
    /// what a waiter for record 0 is told, and whether the thread panicked.
    fn flush_outcome(
        flush: impl FnMut() -> Result<(), String> + Send + 'static,
    ) -> (Result<(), NodeError>, bool) {
        let flusher = Flusher::new(0);
        let thread = {
            let flusher = flusher.clone();
            std::thread::spawn(move || flusher.run(flush, ignore_flushes()))
        };
        flusher.request(1);
        // What a synchronous waiter does (`AuditLog::append`), with a deadline.
        let outcome = {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let mut flushed = flusher.flushed();
            loop {
                if let Some(outcome) = flushed.outcome(0) {
                    break outcome;
                }
                let left = deadline
                    .checked_duration_since(std::time::Instant::now())
                    .expect("a synchronous waiter hangs");
                flushed = flusher.done.wait_timeout(flushed, left).unwrap().0;
            }
        };
        // An asynchronous waiter (`AuditLog::durable`) is told the same.
        let mut rx = flusher.flushed_tx.subscribe();
        let told = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(async {
                tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    rx.wait_for(|f| f.outcome(0).is_some()),
                )
                .await
                .expect("an asynchronous waiter hangs")
                .expect("flusher state dropped")
                .outcome(0)
                .map(|o| o.is_ok())
            });
        assert_eq!(told, Some(outcome.is_ok()));
        flusher.queue().closing = true;
        flusher.work.notify_one();
        (outcome, thread.join().is_err())
    }

    #[test]
    fn a_failed_flush_is_reported_to_its_waiters() {
        let (outcome, panicked) = flush_outcome(|| Err("disk full".into()));
        assert!(!panicked);
        let err = outcome.unwrap_err().to_string();
        assert!(err.contains("disk full"), "{err}");
    }

    #[test]
    fn waiters_get_an_error_if_the_flusher_thread_dies() {
        let (outcome, panicked) = flush_outcome(|| panic!("simulated panic inside the store"));
        assert!(panicked);
        let err = outcome.unwrap_err().to_string();
        assert!(err.contains("flusher thread stopped"), "{err}");
    }

    fn ignore_flushes() -> FlushObserver {
        Box::new(|_| {})
    }

    #[test]
    fn after_a_failed_flush_every_later_flush_fails() {
        let flusher = Flusher::new(0);
        let mut calls = 0;
        let mut flush = move || {
            calls += 1;
            if calls == 2 {
                Err("EIO".to_string())
            } else {
                Ok(())
            }
        };
        assert!(flusher.attempt(&mut flush).is_ok());
        assert_eq!(flusher.attempt(&mut flush).unwrap_err(), "EIO");
        let later = flusher.attempt(&mut flush).unwrap_err();
        assert!(
            later.contains("broke earlier (a flush failed: EIO)"),
            "{later}"
        );
    }
}
