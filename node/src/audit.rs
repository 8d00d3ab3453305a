//! The node's append-only, hash-chained audit log (format in
//! [`quorate_proto::audit`]), in the node's own sled store, so records stay in the
//! node's region. [`AuditLog::append`] returns only after the record is flushed to
//! disk: callers write the record before a signature share leaves the node.
//!
//! Flushes are group commits: an fsync costs about as much CPU as a signature share,
//! so concurrent appends share one. An append inserts its record under the chain
//! lock and then waits until a flush that began after its insert has finished. One
//! flusher thread per log runs those flushes back to back: while one is on its way
//! to disk, the records inserted meanwhile queue for the next. The signing path
//! waits asynchronously ([`AuditLog::append_durable`]), so no thread is parked per
//! pending record; ceremony steps wait in place ([`AuditLog::append`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use quorate_proto::audit::{AuditRecord, GENESIS_HASH};

use crate::error::NodeError;

fn storage(e: impl std::fmt::Display) -> NodeError {
    NodeError::Storage(e.to_string())
}

#[derive(Debug)]
struct Head {
    next_seq: u64,
    last_hash: String,
}

/// What the flusher has done, as waiters see it.
#[derive(Clone, Debug, Default)]
struct Flushed {
    /// Every record with a sequence number below this is on disk.
    durable_below: u64,
    /// The last flush failed: records below `.0` it was to cover are not known to
    /// be on disk.
    failed: Option<(u64, String)>,
}

impl Flushed {
    /// `Some` once record `seq` is on disk or its flush failed.
    fn outcome(&self, seq: u64) -> Option<Result<(), NodeError>> {
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
struct FlushQueue {
    /// Records below this have been inserted and wait for a flush.
    requested_below: u64,
    /// The flusher has started flushes for everything below this.
    attempted_below: u64,
    closing: bool,
}

/// State shared with the flusher thread.
#[derive(Debug)]
struct Flusher {
    queue: Mutex<FlushQueue>,
    work: Condvar,
    /// Synchronous waiters ([`AuditLog::append`]).
    done: Condvar,
    flushed: Mutex<Flushed>,
    /// Asynchronous waiters ([`AuditLog::append_durable`]).
    flushed_tx: tokio::sync::watch::Sender<Flushed>,
    flushes: AtomicU64,
}

impl Flusher {
    /// A flusher for a log whose records below `next_seq` are on disk already.
    fn new(next_seq: u64) -> Arc<Self> {
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
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, FlushQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn flushed(&self) -> std::sync::MutexGuard<'_, Flushed> {
        self.flushed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for a flush covering every record below `below`.
    fn request(&self, below: u64) {
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

    /// The flusher thread: flushes (with `flush`) whenever records wait, until the
    /// log closes.
    fn run(&self, mut flush: impl FnMut() -> Result<(), String>) {
        // Should this thread die (a panic inside the store), every waiter, present
        // and future, gets an error instead of waiting for a flush that never comes.
        struct FailWaitersOnPanic<'a>(&'a Flusher);
        impl Drop for FailWaitersOnPanic<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
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
            let result = flush();
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
        }
    }
}

/// The audit log.
#[derive(Debug)]
pub struct AuditLog {
    tree: sled::Tree,
    node_id: String,
    head: Mutex<Head>,
    flusher: Arc<Flusher>,
    flusher_thread: Option<std::thread::JoinHandle<()>>,
}

/// A record inserted into the chain whose flush may still be under way.
#[derive(Debug)]
#[must_use = "a record is not durable until AuditLog::durable returns"]
pub struct PendingRecord(AuditRecord);

impl AuditLog {
    /// Opens the log in `db` (tree `audit`), continuing the chain after its last
    /// record, and starts its flusher thread.
    pub fn open(db: sled::Db, node_id: &str) -> Result<Self, NodeError> {
        let tree = db.open_tree("audit").map_err(storage)?;
        let head = match tree.last().map_err(storage)? {
            None => Head {
                next_seq: 0,
                last_hash: GENESIS_HASH.into(),
            },
            Some((k, v)) => {
                let seq = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| {
                    NodeError::Corrupt("audit key is not a sequence number".into())
                })?);
                let record: AuditRecord = serde_json::from_slice(&v).map_err(|e| {
                    NodeError::Corrupt(format!("last audit record {seq} does not parse: {e}"))
                })?;
                Head {
                    next_seq: seq + 1,
                    last_hash: record.hash,
                }
            }
        };
        let flusher = Flusher::new(head.next_seq);
        let thread = {
            let flusher = flusher.clone();
            std::thread::Builder::new()
                .name("audit-flush".into())
                .spawn(move || flusher.run(|| db.flush().map(drop).map_err(|e| e.to_string())))
                .map_err(storage)?
        };
        Ok(Self {
            tree,
            node_id: node_id.to_string(),
            head: Mutex::new(head),
            flusher,
            flusher_thread: Some(thread),
        })
    }

    fn head(&self) -> std::sync::MutexGuard<'_, Head> {
        // The head changes only after a successful insert, so it is consistent even
        // if a holder panicked.
        self.head.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seals `record` into the chain and inserts it; it is on disk once
    /// [`AuditLog::durable`] returns.
    pub fn insert(&self, mut record: AuditRecord) -> Result<PendingRecord, NodeError> {
        let mut head = self.head();
        record.node_id = self.node_id.clone();
        record.time_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let record = record.seal(head.next_seq, &head.last_hash);
        self.tree
            .insert(head.next_seq.to_be_bytes(), record.encode())
            .map_err(storage)?;
        head.next_seq += 1;
        head.last_hash = record.hash.clone();
        drop(head);
        self.flusher.request(record.seq + 1);
        Ok(PendingRecord(record))
    }

    /// Waits (asynchronously) until `pending` is on disk.
    pub async fn durable(&self, pending: PendingRecord) -> Result<AuditRecord, NodeError> {
        let mut rx = self.flusher.flushed_tx.subscribe();
        let seq = pending.0.seq;
        let outcome = rx
            .wait_for(|f| f.outcome(seq).is_some())
            .await
            .map_err(|_| NodeError::Storage("audit log closed".into()))?
            .outcome(seq);
        match outcome {
            Some(Ok(())) => Ok(pending.0),
            Some(Err(e)) => Err(e),
            None => Err(NodeError::Storage("audit log flush state lost".into())),
        }
    }

    /// Appends `record` and waits (asynchronously) until it is on disk.
    pub async fn append_durable(&self, record: AuditRecord) -> Result<AuditRecord, NodeError> {
        let pending = self.insert(record)?;
        self.durable(pending).await
    }

    /// Appends `record` and returns once it is on disk, blocking this thread.
    pub fn append(&self, record: AuditRecord) -> Result<AuditRecord, NodeError> {
        let PendingRecord(record) = self.insert(record)?;
        let mut flushed = self.flusher.flushed();
        loop {
            if let Some(outcome) = flushed.outcome(record.seq) {
                return outcome.map(|()| record);
            }
            flushed = self
                .flusher
                .done
                .wait(flushed)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Flushes to disk so far (records per flush shows how well appends group).
    pub fn flushes(&self) -> u64 {
        self.flusher.flushes.load(Ordering::Relaxed)
    }

    /// Records from `from_seq` on, as stored.
    pub fn read_from(
        &self,
        from_seq: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), NodeError>> {
        self.tree.range(from_seq.to_be_bytes()..).map(|item| {
            let (k, v) = item.map_err(storage)?;
            let seq =
                u64::from_be_bytes(k.as_ref().try_into().map_err(|_| {
                    NodeError::Corrupt("audit key is not a sequence number".into())
                })?);
            Ok((seq, v.to_vec()))
        })
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        self.head().next_seq
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for AuditLog {
    /// Flushes what is still pending and stops the flusher thread (which holds the
    /// store open).
    fn drop(&mut self) {
        self.flusher.queue().closing = true;
        self.flusher.work.notify_one();
        if let Some(thread) = self.flusher_thread.take() {
            let _ = thread.join();
        }
    }
}

/// Opens the audit log of a stopped node's store directory directly, for offline
/// inspection (and for tests that tamper with a record to prove detection).
pub fn open_offline(data_dir: &std::path::Path) -> Result<sled::Tree, NodeError> {
    open_offline_tree(data_dir, "audit")
}

/// Opens one tree (`audit`, `keys`, `meta`) of a stopped node's store directly, for
/// offline inspection and for drills that damage a store on purpose.
pub fn open_offline_tree(data_dir: &std::path::Path, tree: &str) -> Result<sled::Tree, NodeError> {
    let db = sled::Config::new()
        .path(data_dir.join("sled"))
        .flush_every_ms(None)
        .open()
        .map_err(storage)?;
    db.open_tree(tree).map_err(storage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_proto::audit::verify_chain;

    /// Runs a flusher thread with `flush`, asks it to cover record 0, and returns
    /// what a waiter for record 0 is told, and whether the thread panicked.
    fn flush_outcome(
        flush: impl FnMut() -> Result<(), String> + Send + 'static,
    ) -> (Result<(), NodeError>, bool) {
        let flusher = Flusher::new(0);
        let thread = {
            let flusher = flusher.clone();
            std::thread::spawn(move || flusher.run(flush))
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

    /// Opens a sled store, waiting for the lock: sled releases it from background
    /// threads shortly after the last handle of an in-process reopen is dropped.
    fn open_db(dir: &std::path::Path) -> sled::Db {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match sled::Config::new().path(dir).flush_every_ms(None).open() {
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other.unwrap(),
            }
        }
    }

    #[test]
    fn appended_records_chain_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let open = || AuditLog::open(open_db(dir.path()), "node-1").unwrap();
        {
            let log = open();
            for i in 0..3 {
                log.append(AuditRecord {
                    event: "sign_share".into(),
                    key_id: format!("k{i}"),
                    ..Default::default()
                })
                .unwrap();
            }
        }
        let log = open();
        assert_eq!(log.len(), 3);
        log.append(AuditRecord {
            event: "key_installed".into(),
            ..Default::default()
        })
        .unwrap();
        let records: Vec<_> = log.read_from(0).map(Result::unwrap).collect();
        assert_eq!(verify_chain(records).unwrap().0, 4);
    }

    fn open_log(dir: &std::path::Path) -> std::sync::Arc<AuditLog> {
        std::sync::Arc::new(AuditLog::open(open_db(dir), "node-1").unwrap())
    }

    fn record(i: usize) -> AuditRecord {
        AuditRecord {
            event: "sign_share".into(),
            key_id: format!("k{i}"),
            ..Default::default()
        }
    }

    #[test]
    fn appends_waiting_for_a_flush_share_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path());
        // Stall the flusher after its first flush, as a slow disk would, while
        // eight appends queue behind it.
        let stalled = log.flusher.flushed.lock().unwrap();
        let appenders: Vec<_> = (0..8)
            .map(|i| {
                let log = log.clone();
                std::thread::spawn(move || log.append(record(i)).unwrap())
            })
            .collect();
        while log.len() < 8 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(
            appenders.iter().all(|a| !a.is_finished()),
            "no append returns before its record is flushed"
        );
        drop(stalled);
        for a in appenders {
            a.join().unwrap();
        }
        // The flush under way when the appends queued, and one for all the rest.
        assert!(
            log.flushes() <= 2,
            "{} flushes for 8 records",
            log.flushes()
        );
        let records: Vec<_> = log.read_from(0).map(Result::unwrap).collect();
        assert_eq!(verify_chain(records).unwrap().0, 8);
    }

    #[test]
    fn async_appends_return_once_durable_and_share_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path());
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let stalled = log.flusher.flushed.lock().unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let log = log.clone();
                runtime.spawn(async move { log.append_durable(record(i)).await.unwrap() })
            })
            .collect();
        while log.len() < 16 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(tasks.iter().all(|t| !t.is_finished()));
        drop(stalled);
        let seqs: Vec<u64> = runtime.block_on(async {
            let mut seqs = Vec::new();
            for t in tasks {
                seqs.push(t.await.unwrap().seq);
            }
            seqs
        });
        assert_eq!(seqs.len(), 16);
        assert!(
            log.flushes() <= 2,
            "{} flushes for 16 records",
            log.flushes()
        );
        drop(runtime);
        // Everything acknowledged is in the store after a reopen.
        drop(std::sync::Arc::try_unwrap(log).unwrap());
        let log = AuditLog::open(open_db(dir.path()), "node-1").unwrap();
        assert_eq!(log.len(), 16);
    }
}
