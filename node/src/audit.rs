//! The node's append-only, hash-chained audit log (format in
//! [`quorate_proto::audit`]), a file in the node's data directory ([`LOG_FILE`]), so
//! records stay in the node's region. [`AuditLog::append`] returns only after the
//! record is on disk: callers write the record before a signature share leaves the
//! node.
//!
//! The file holds one record per line, each exactly as sealed (JSON has no raw
//! newline), appended with one `write` and made durable with `fdatasync`. It is not
//! a sled tree, because a record is written once and never updated: a sled
//! insert and flush cost about twice the CPU of an append and `fdatasync` (measured
//! in docs/benchmarks.md), on every signature share, and sled's flush
//! (`sync_file_range`) does not flush the disk's write cache.
//!
//! Flushes are group commits: concurrent appends share one `fdatasync`. An append
//! writes its record under the chain lock and then waits until a flush that began
//! after its write has finished. One
//! flusher thread per log runs those flushes back to back: while one is on its way
//! to disk, the records inserted meanwhile queue for the next. The signing path
//! waits asynchronously ([`AuditLog::append_durable`]), so no thread is parked per
//! pending record; ceremony steps wait in place ([`AuditLog::append`]).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use quorate_proto::audit::{AuditRecord, GENESIS_HASH};

use crate::error::NodeError;

fn storage(e: impl std::fmt::Display) -> NodeError {
    NodeError::Storage(e.to_string())
}

#[derive(Debug)]
struct Head {
    next_seq: u64,
    last_hash: String,
    /// Length of the file up to the end of the last record.
    end: u64,
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
    /// Why the log can no longer be made durable, once a flush or a write has
    /// failed (or the flusher thread died). Set once and never cleared: see [`Flusher::attempt`]. A
    /// lock-free cell, so that appends check it without waiting on a flush.
    broken: OnceLock<String>,
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
            broken: OnceLock::new(),
        })
    }

    /// Records that the log can no longer be made durable; the first time, says so
    /// in the node's log (the error is the store's, an I/O error: no secrets) and
    /// wakes [`AuditLog::wait_broken`].
    fn mark_broken(&self, error: &str) {
        if self.broken.set(error.to_string()).is_ok() {
            tracing::error!(
                error,
                "the audit log can no longer be made durable: this node signs nothing \
                 more until it is restarted"
            );
            self.flushed_tx.send_modify(|_| {});
        }
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
    fn run(&self, mut flush: impl FnMut() -> Result<(), String>, on_flush: FlushObserver) {
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

/// Name of the log file in the node's data directory.
pub const LOG_FILE: &str = "audit.log";
/// Longest record line read back when the log is opened; records are a few hundred
/// bytes, so a longer last line means the file is not an audit log.
const MAX_RECORD_BYTES: u64 = 64 * 1024;

/// The audit log file of the node whose data directory is `data_dir` (for offline
/// inspection, and for tests that tamper with a record to prove detection).
pub fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.join(LOG_FILE)
}

/// Called on the flusher thread with the time each flush (`fdatasync`) of the log
/// took, after its waiters have been told. The node exports it as a histogram: a
/// share waits for its record's flush, so on a slow disk this is most of a node's
/// round-2 latency.
pub type FlushObserver = Box<dyn Fn(Duration) + Send>;

/// The audit log.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    /// Opened for appending; every record is one `write` of its line.
    file: Arc<File>,
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
    /// Opens the log in the node's data directory `dir` (creating it, or moving the
    /// records of an earlier build's sled tree `audit` in `db` into it), continuing
    /// the chain after its last record, and starts its flusher thread, which reports
    /// each flush's duration to `on_flush`.
    pub fn open(
        dir: &Path,
        db: &sled::Db,
        node_id: &str,
        on_flush: FlushObserver,
    ) -> Result<Self, NodeError> {
        Self::open_with_sync(dir, db, node_id, on_flush, File::sync_data)
    }

    /// [`AuditLog::open`], flushing the file with `sync` (`fdatasync` but in tests,
    /// which make it fail).
    pub(crate) fn open_with_sync(
        dir: &Path,
        db: &sled::Db,
        node_id: &str,
        on_flush: FlushObserver,
        mut sync: impl FnMut(&File) -> std::io::Result<()> + Send + 'static,
    ) -> Result<Self, NodeError> {
        let path = log_path(dir);
        migrate_from_sled(db, &path)?;
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| storage(format!("cannot open {}: {e}", path.display())))?;
        // The file's directory entry is durable only once its directory is synced:
        // without this, a crash could lose a new log and every record acknowledged
        // in it. Every open syncs, not only the one that created the file, since a
        // node that crashed between creating it and syncing finds it in place.
        sync_dir_of(&path)?;
        let (end, last) = recover_tail(&file, &path)?;
        let head = match last {
            None => Head {
                next_seq: 0,
                last_hash: GENESIS_HASH.into(),
                end,
            },
            Some(record) => Head {
                next_seq: record.seq + 1,
                last_hash: record.hash,
                end,
            },
        };
        let file = Arc::new(file);
        let flusher = Flusher::new(head.next_seq);
        let thread = {
            let flusher = flusher.clone();
            let file = file.clone();
            std::thread::Builder::new()
                .name("audit-flush".into())
                .spawn(move || {
                    flusher.run(move || sync(&file).map_err(|e| e.to_string()), on_flush)
                })
                .map_err(storage)?
        };
        Ok(Self {
            path,
            file,
            node_id: node_id.to_string(),
            head: Mutex::new(head),
            flusher,
            flusher_thread: Some(thread),
        })
    }

    fn head(&self) -> std::sync::MutexGuard<'_, Head> {
        // The head changes only after a successful append, so it is consistent even
        // if a holder panicked.
        self.head.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Ok` while records can still be made durable. Once a flush or a write has
    /// failed, an [`NodeError::Unavailable`] for good: after a failed `fdatasync` the
    /// kernel may have dropped pages of the file, and after a failed `write` part of
    /// a record may be in it, so nothing written since can be vouched for until a
    /// restart reopens the log from what is on disk. The signing path checks
    /// this before it spends a nonce.
    pub fn check_writable(&self) -> Result<(), NodeError> {
        match self.flusher.broken.get() {
            None => Ok(()),
            Some(e) => Err(NodeError::Unavailable(format!(
                "this node's audit log can no longer be made durable ({e}); \
                 it records and signs nothing more until it is restarted"
            ))),
        }
    }

    /// Returns once the log can no longer be made durable (see
    /// [`AuditLog::check_writable`]); never, while it can.
    pub async fn wait_broken(&self) {
        // Marking the log broken notifies this channel after setting the cell, so
        // the check made on that notification sees it.
        let mut rx = self.flusher.flushed_tx.subscribe();
        let closed = rx
            .wait_for(|_| self.flusher.broken.get().is_some())
            .await
            .is_err();
        if closed {
            // Cannot happen: the sender lives in the flusher, which lives as long as
            // `self`. Should it, the log is not known to be broken.
            std::future::pending::<()>().await;
        }
    }

    /// Seals `record` into the chain and appends it; it is on disk once
    /// [`AuditLog::durable`] returns. Refused at once if the log is broken (a flush
    /// or a write failed: [`AuditLog::check_writable`]).
    pub fn insert(&self, mut record: AuditRecord) -> Result<PendingRecord, NodeError> {
        let mut head = self.head();
        // Checked under the chain lock, under which a failed write marks the log
        // broken: an append waiting for the lock behind that write must not add its
        // line after a partial one.
        self.check_writable()?;
        record.node_id = self.node_id.clone();
        record.time_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let record = record.seal(head.next_seq, &head.last_hash);
        let mut line = record.encode();
        line.push(b'\n');
        if let Err(e) = (&*self.file).write_all(&line) {
            // Part of the line may be in the file. It is cut off, but the log is
            // broken all the same, as after a failed flush: what the kernel kept of
            // the write is not known, and a record appended after a partial line
            // that the cut left would sit mid-file, past what the next open can
            // recover (it drops only a partial last line). A full disk is the usual
            // cause; the node stops signing (its health says so) until the operator
            // has made room and restarted it.
            let cut = match self.file.set_len(head.end) {
                Ok(()) => String::new(),
                Err(cut) => format!("; cutting off the partial record failed too: {cut}"),
            };
            let error = format!("cannot append to {}: {e}{cut}", self.path.display());
            self.flusher.mark_broken(&error);
            return Err(storage(error));
        }
        head.next_seq += 1;
        head.end += line.len() as u64;
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

    /// Records from `from_seq` on, as stored: those on disk when the call is made,
    /// each with its position in the log (an auditor checks that it matches the
    /// record's own `seq`). A record whose flush has not completed is left out: a
    /// crash could still lose it, and an auditor would then see another record under
    /// its `seq`.
    pub fn read_from(
        &self,
        from_seq: u64,
    ) -> Result<impl Iterator<Item = Result<(u64, Vec<u8>), NodeError>>, NodeError> {
        // Under the flusher's result lock, which a flush takes only once its
        // `fdatasync` has returned, so a read never waits for one; and which an
        // `append` has seen before it returns, so its record is read (the published
        // copy may lag it by a moment).
        let durable_below = self.flusher.flushed().durable_below;
        let end = self.head().end;
        let file = File::open(&self.path)
            .map_err(|e| storage(format!("cannot read {}: {e}", self.path.display())))?;
        Ok(BufReader::new(file.take(end))
            .split(b'\n')
            .zip(0u64..)
            .take_while(move |(_, seq)| *seq < durable_below)
            .skip_while(move |(_, seq)| *seq < from_seq)
            .map(|(line, seq)| line.map(|line| (seq, line)).map_err(storage)))
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
    /// Flushes what is still pending and stops the flusher thread.
    fn drop(&mut self) {
        self.flusher.queue().closing = true;
        self.flusher.work.notify_one();
        if let Some(thread) = self.flusher_thread.take() {
            let _ = thread.join();
        }
    }
}

/// Finds the end of the last whole record and reads that record. A record is
/// acknowledged only after its line is on disk, so bytes after the last newline
/// are a line cut short by a crash (never acknowledged): they are cut off, and the
/// cut made durable, before anything is appended.
fn recover_tail(file: &File, path: &Path) -> Result<(u64, Option<AuditRecord>), NodeError> {
    let len = file.metadata().map_err(storage)?.len();
    let window = len.min(MAX_RECORD_BYTES + 1);
    let mut tail = vec![0u8; window as usize];
    file.read_exact_at(&mut tail, len - window)
        .map_err(|e| storage(format!("cannot read {}: {e}", path.display())))?;
    let end = match tail.iter().rposition(|b| *b == b'\n') {
        Some(i) => len - window + i as u64 + 1,
        None if len <= MAX_RECORD_BYTES => 0,
        None => {
            return Err(NodeError::Corrupt(format!(
                "{} ends in {} bytes without a record separator",
                path.display(),
                window
            )))
        }
    };
    if end < len {
        tracing::warn!(
            path = %path.display(),
            bytes = len - end,
            "dropping an unfinished audit record left by a crash"
        );
        file.set_len(end).map_err(storage)?;
        file.sync_all().map_err(storage)?;
    }
    if end == 0 {
        return Ok((0, None));
    }
    let tail_start = len - window;
    let body = &tail[..(end - tail_start) as usize - 1];
    let start = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if start == 0 && tail_start > 0 {
        return Err(NodeError::Corrupt(format!(
            "the last record of {} is longer than {MAX_RECORD_BYTES} bytes",
            path.display()
        )));
    }
    let record: AuditRecord = serde_json::from_slice(&body[start..]).map_err(|e| {
        NodeError::Corrupt(format!(
            "the last record of {} does not parse: {e}",
            path.display()
        ))
    })?;
    Ok((end, Some(record)))
}

/// Moves the audit records of an earlier build, kept in sled's tree `audit`, into
/// the log file, in order, and drops the tree once the file is durable in its place.
/// A crash before the rename leaves the tree as it was (the copy is redone); after
/// it, the file is the log and the leftover tree is dropped.
fn migrate_from_sled(db: &sled::Db, path: &Path) -> Result<(), NodeError> {
    const TREE: &[u8] = b"audit";
    if !db.tree_names().iter().any(|name| name.as_ref() == TREE) {
        return Ok(());
    }
    let tree = db.open_tree(TREE).map_err(storage)?;
    if !path.exists() && !tree.is_empty() {
        let partial = path.with_extension("log.migrating");
        let mut out = File::create(&partial).map_err(storage)?;
        let mut records = 0u64;
        for item in tree.iter() {
            let (_, record) = item.map_err(storage)?;
            out.write_all(&record).map_err(storage)?;
            out.write_all(b"\n").map_err(storage)?;
            records += 1;
        }
        out.sync_all().map_err(storage)?;
        std::fs::rename(&partial, path).map_err(storage)?;
        sync_dir_of(path)?;
        tracing::info!(records, path = %path.display(), "moved the audit log out of sled");
    }
    drop(tree);
    db.drop_tree(TREE).map_err(storage)?;
    db.flush().map_err(storage)?;
    Ok(())
}

/// Makes the directory entry of `path` durable by syncing its directory (a new or
/// renamed file's data can be on disk while its name is not).
fn sync_dir_of(path: &Path) -> Result<(), NodeError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| storage(format!("cannot sync the directory {}: {e}", dir.display())))?;
    #[cfg(test)]
    tests::SYNCED_DIRS.with(|synced| synced.borrow_mut().push(dir.to_path_buf()));
    Ok(())
}

/// Opens one tree (`keys`, `meta`) of a stopped node's store directly, for offline
/// inspection and for drills that damage a store on purpose.
pub fn open_offline_tree(data_dir: &Path, tree: &str) -> Result<sled::Tree, NodeError> {
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

    thread_local! {
        /// Directories [`sync_dir_of`] synced on this thread (each test runs on a
        /// thread of its own).
        pub(super) static SYNCED_DIRS: std::cell::RefCell<Vec<PathBuf>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }

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

    /// Opens a sled store, waiting for the lock: sled releases it from background
    /// threads shortly after the last handle of an in-process reopen is dropped.
    fn open_db(dir: &std::path::Path) -> sled::Db {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match sled::Config::new()
                .path(dir.join("sled"))
                .flush_every_ms(None)
                .open()
            {
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
        let open = || {
            AuditLog::open(dir.path(), &open_db(dir.path()), "node-1", ignore_flushes()).unwrap()
        };
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
        let records: Vec<_> = log.read_from(0).unwrap().map(Result::unwrap).collect();
        assert_eq!(verify_chain(records).unwrap().0, 4);
    }

    #[test]
    fn every_flush_is_reported_with_its_duration() {
        let dir = tempfile::tempdir().unwrap();
        let reported = Arc::new(Mutex::new(Vec::new()));
        let log = {
            let reported = reported.clone();
            AuditLog::open(
                dir.path(),
                &open_db(dir.path()),
                "node-1",
                Box::new(move |took| reported.lock().unwrap().push(took)),
            )
            .unwrap()
        };
        for i in 0..3 {
            log.append(record(i)).unwrap();
        }
        let flushes = log.flushes();
        // The flusher reports a flush just after it publishes it: closing the log
        // joins the flusher thread, so every report is in by then.
        drop(log);
        let reported = reported.lock().unwrap().clone();
        assert_eq!(reported.len() as u64, flushes);
        assert!(flushes >= 1);
        assert!(reported.iter().all(|took| *took > Duration::ZERO));
    }

    fn open_log(dir: &std::path::Path) -> std::sync::Arc<AuditLog> {
        std::sync::Arc::new(AuditLog::open(dir, &open_db(dir), "node-1", ignore_flushes()).unwrap())
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
        let records: Vec<_> = log.read_from(0).unwrap().map(Result::unwrap).collect();
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
        // Until all 16 have asked for their flush: an append asks after it has
        // written its record (and `len` counts it), so waiting on `len` alone could
        // let the flusher resume before the last one asked, and flush it apart.
        while log.flusher.queue().requested_below < 16 {
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
        let log =
            AuditLog::open(dir.path(), &open_db(dir.path()), "node-1", ignore_flushes()).unwrap();
        assert_eq!(log.len(), 16);
    }

    fn append_three(dir: &std::path::Path) {
        let log = open_log(dir);
        for i in 0..3 {
            log.append(record(i)).unwrap();
        }
    }

    #[test]
    fn an_unfinished_last_line_left_by_a_crash_is_dropped_on_open() {
        let dir = tempfile::tempdir().unwrap();
        append_three(dir.path());
        let path = log_path(dir.path());
        let whole = std::fs::read(&path).unwrap();
        // A crash in the middle of the fourth record's write.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"format":"quorate-audit/1","seq":3,"ti"#)
            .unwrap();
        drop(file);
        let log = open_log(dir.path());
        assert_eq!(log.len(), 3);
        assert_eq!(std::fs::read(&path).unwrap(), whole);
        log.append(record(3)).unwrap();
        let records: Vec<_> = log.read_from(0).unwrap().map(Result::unwrap).collect();
        assert_eq!(verify_chain(records).unwrap().0, 4);
    }

    #[test]
    fn a_last_record_that_does_not_parse_is_refused_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        append_three(dir.path());
        let mut file = OpenOptions::new()
            .append(true)
            .open(log_path(dir.path()))
            .unwrap();
        file.write_all(b"not a record\n").unwrap();
        drop(file);
        let err = AuditLog::open(dir.path(), &open_db(dir.path()), "node-1", ignore_flushes())
            .unwrap_err();
        assert!(matches!(err, NodeError::Corrupt(_)), "{err}");
        assert!(err.to_string().contains("does not parse"), "{err}");
    }

    #[test]
    fn read_from_starts_at_the_given_record() {
        let dir = tempfile::tempdir().unwrap();
        append_three(dir.path());
        let log = open_log(dir.path());
        let seqs: Vec<u64> = log.read_from(1).unwrap().map(|r| r.unwrap().0).collect();
        assert_eq!(seqs, [1, 2]);
        assert_eq!(log.read_from(3).unwrap().count(), 0);
    }

    #[test]
    fn records_of_an_earlier_builds_sled_tree_move_into_the_log_file() {
        let dir = tempfile::tempdir().unwrap();
        // The layout before the log file: records under their big-endian seq in
        // sled's tree `audit`.
        let mut stored = Vec::new();
        {
            let db = open_db(dir.path());
            let tree = db.open_tree("audit").unwrap();
            let mut prev = GENESIS_HASH.to_string();
            for i in 0..3u64 {
                let sealed = record(i as usize).seal(i, &prev);
                prev = sealed.hash.clone();
                tree.insert(i.to_be_bytes(), sealed.encode()).unwrap();
                stored.push((i, sealed.encode()));
            }
            db.flush().unwrap();
        }
        let log = open_log(dir.path());
        assert_eq!(log.len(), 3);
        log.append(record(3)).unwrap();
        let records: Vec<_> = log.read_from(0).unwrap().map(Result::unwrap).collect();
        assert_eq!(records[..3], stored[..]);
        assert_eq!(verify_chain(records).unwrap().0, 4);
        drop(log);
        let db = open_db(dir.path());
        assert!(
            !db.tree_names().iter().any(|n| n.as_ref() == b"audit"),
            "the sled tree is dropped once the file holds its records"
        );
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

    /// A log whose every `fdatasync` fails, as on a disk that has gone bad.
    fn open_failing_log(dir: &std::path::Path) -> AuditLog {
        AuditLog::open_with_sync(
            dir,
            &open_db(dir),
            "node-1",
            ignore_flushes(),
            |_: &File| Err(std::io::Error::other("EIO")),
        )
        .unwrap()
    }

    #[test]
    fn after_a_failed_flush_the_log_refuses_records_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_failing_log(dir.path());
        assert!(log.check_writable().is_ok());
        let err = log.append(record(0)).unwrap_err();
        assert!(err.to_string().contains("EIO"), "{err}");
        let len = std::fs::metadata(log_path(dir.path())).unwrap().len();

        let err = log.check_writable().unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
        let err = log.insert(record(1)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
        assert!(err.to_string().contains("until it is restarted"), "{err}");
        assert!(err.to_string().contains("EIO"), "{err}");
        // Nothing more was written after the failure.
        assert_eq!(log.len(), 1);
        assert_eq!(std::fs::metadata(log_path(dir.path())).unwrap().len(), len);
    }

    #[test]
    fn a_failed_write_breaks_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open_log(dir.path());
        log.append(record(0)).unwrap();
        let len = std::fs::metadata(log_path(dir.path())).unwrap().len();
        // A handle that can neither write nor truncate: the write fails, and so
        // does cutting off what it may have left.
        Arc::get_mut(&mut log).unwrap().file = Arc::new(File::open(log_path(dir.path())).unwrap());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        // Someone (the node's health) is already waiting when the write fails: no
        // flush follows to wake it, so marking the log broken must.
        let waiting = {
            let log = log.clone();
            runtime.spawn(async move { log.wait_broken().await })
        };
        runtime.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
        assert!(
            !waiting.is_finished(),
            "a healthy log is not reported broken"
        );

        let err = log.insert(record(1)).unwrap_err();
        assert!(err.to_string().contains("cannot append"), "{err}");
        let err = log.check_writable().unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
        assert!(err.to_string().contains("cutting off"), "{err}");
        runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), waiting).await })
            .expect("a broken log is reported")
            .unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(std::fs::metadata(log_path(dir.path())).unwrap().len(), len);
    }

    #[test]
    fn wait_broken_returns_once_a_flush_fails() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_failing_log(dir.path());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let waited =
            |wait| runtime.block_on(async { tokio::time::timeout(wait, log.wait_broken()).await });
        assert!(
            waited(Duration::from_millis(50)).is_err(),
            "a healthy log is not reported broken"
        );
        log.append(record(0)).unwrap_err();
        waited(Duration::from_secs(10)).expect("a broken log is reported");
    }

    #[test]
    fn a_record_whose_flush_has_not_completed_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        // A disk that is slow while the test holds `disk`.
        let disk = std::sync::Arc::new(std::sync::Mutex::new(()));
        let log = {
            let disk = disk.clone();
            AuditLog::open_with_sync(
                dir.path(),
                &open_db(dir.path()),
                "node-1",
                ignore_flushes(),
                move |file: &File| {
                    let _slow = disk.lock().unwrap();
                    file.sync_data()
                },
            )
            .unwrap()
        };
        log.append(record(0)).unwrap();
        let stalled = disk.lock().unwrap();
        let pending = log.insert(record(1)).unwrap();
        assert_eq!(log.len(), 2);
        let seqs: Vec<u64> = log.read_from(0).unwrap().map(|r| r.unwrap().0).collect();
        assert_eq!(seqs, [0], "only the flushed record is served");
        assert_eq!(log.read_from(1).unwrap().count(), 0);
        drop(stalled);
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(log.durable(pending))
            .unwrap();
        let seqs: Vec<u64> = log.read_from(0).unwrap().map(|r| r.unwrap().0).collect();
        assert_eq!(seqs, [0, 1]);
    }

    #[test]
    fn opening_a_new_log_syncs_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        SYNCED_DIRS.with(|synced| synced.borrow_mut().clear());
        let log = open_log(dir.path());
        assert!(log.is_empty());
        let synced = SYNCED_DIRS.with(|synced| synced.borrow().clone());
        assert!(
            synced.iter().any(|d| d == dir.path()),
            "{synced:?} lacks {}",
            dir.path().display()
        );
    }
}
