//! The node's append-only, hash-chained audit log (format in
//! [`quorate_keys::audit`]), a file in the node's data directory ([`LOG_FILE`]), so
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
//!
//! Used by the node's state (every signing, escrow and key event is recorded here)
//! and by the `Audit` gRPC service, which serves only records whose flush has
//! completed. The file itself is in `file`, the group commits in `flusher`.
//!
//! The records are also the leaves of a Merkle tree ([`quorate_keys::merkle`], RFC
//! 9162 hashing over each record's bytes as stored), grown as records are
//! appended and rebuilt from the file when the log is opened (so a log written
//! before the tree existed gets its tree without any change on disk). Roots and
//! proofs are served only for sizes whose records are durable
//! ([`AuditLog::durable_len`]): a checkpoint signed over a record a crash could
//! take back would be a fork the node made itself.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use quorate_keys::audit::{AuditRecord, GENESIS_HASH};
use quorate_keys::merkle::{Hash, ProofError, Tree};

use crate::error::{storage, NodeError};

mod file;
mod flusher;
#[cfg(test)]
mod tests;

/// Kept at this path for the drills that damage a stopped node's store.
pub use crate::store::open_offline_tree;
pub use file::{log_path, LOG_FILE};
pub use flusher::FlushObserver;

use file::{migrate_from_sled, recover_tail, sync_dir_of};
use flusher::Flusher;

#[derive(Debug)]
struct Head {
    next_seq: u64,
    last_hash: String,
    /// Length of the file up to the end of the last record.
    end: u64,
    /// The Merkle tree over every record in the file (durable or not).
    tree: Tree,
}

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
        let tree = read_tree(&path, end)?;
        let head = match last {
            None => Head {
                next_seq: 0,
                last_hash: GENESIS_HASH.into(),
                end,
                tree,
            },
            Some(record) => {
                // The tree has a leaf per line; a log whose last record's `seq`
                // disagrees with its line count has lost or gained lines, and
                // appending after it would sign that damage into the tree.
                if record.seq.checked_add(1) != Some(tree.len()) {
                    return Err(NodeError::Corrupt(format!(
                        "{} holds {} records but its last says seq {}",
                        path.display(),
                        tree.len(),
                        record.seq
                    )));
                }
                Head {
                    next_seq: record.seq + 1,
                    last_hash: record.hash,
                    end,
                    tree,
                }
            }
        };
        // The records already in the file count as durable from here on (they are
        // in checkpoints at once); a process killed before its last group sync
        // may have left some only in the page cache, so sync them first.
        file.sync_data()
            .map_err(|e| storage(format!("cannot sync {}: {e}", path.display())))?;
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
    /// failed, an [`NodeError::AuditLogBroken`] for good: after a failed `fdatasync` the
    /// kernel may have dropped pages of the file, and after a failed `write` part of
    /// a record may be in it, so nothing written since can be vouched for until a
    /// restart reopens the log from what is on disk. The signing path checks
    /// this before it spends a nonce.
    pub fn check_writable(&self) -> Result<(), NodeError> {
        match self.flusher.broken.get() {
            None => Ok(()),
            Some(e) => Err(NodeError::AuditLogBroken { reason: e.clone() }),
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
        let leaf = quorate_keys::merkle::leaf_hash(&line);
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
        head.tree.push_hash(leaf);
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

    /// Syncs the log file to disk now (at shutdown: what the flusher has not
    /// flushed yet).
    pub fn sync(&self) -> Result<(), NodeError> {
        self.file
            .sync_data()
            .map_err(|e| storage(format!("cannot sync {}: {e}", self.path.display())))
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

    /// Number of records on disk (flushed): the largest tree size the log signs
    /// and proves.
    pub fn durable_len(&self) -> u64 {
        self.flusher.flushed().durable_below
    }

    /// The size of the durable log and its Merkle root, read together.
    pub fn durable_root(&self) -> (u64, Hash) {
        let size = self.durable_len();
        let root = self.head().tree.root(size);
        // The tree holds every durable record, so its root at a durable size exists.
        (
            size,
            root.unwrap_or_else(|_| quorate_keys::merkle::empty_root()),
        )
    }

    /// The inclusion proof of record `index` in the tree of the first `size`
    /// records (`size` at most [`AuditLog::durable_len`]).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, NodeError> {
        self.check_durable(size)?;
        Ok(self.head().tree.inclusion_proof(index, size)?)
    }

    /// The consistency proof between the trees of the first `first` and the first
    /// `second` records (`second` at most [`AuditLog::durable_len`]).
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, NodeError> {
        self.check_durable(second)?;
        Ok(self.head().tree.consistency_proof(first, second)?)
    }

    fn check_durable(&self, size: u64) -> Result<(), NodeError> {
        let len = self.durable_len();
        if size > len {
            return Err(ProofError::SizeTooLarge { size, len }.into());
        }
        Ok(())
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

/// The Merkle tree over the first `end` bytes of the log at `path`, one leaf per
/// line (the record as stored, without its newline).
fn read_tree(path: &Path, end: u64) -> Result<Tree, NodeError> {
    let file =
        File::open(path).map_err(|e| storage(format!("cannot read {}: {e}", path.display())))?;
    let mut tree = Tree::new();
    for line in BufReader::new(file.take(end)).split(b'\n') {
        let line = line.map_err(|e| storage(format!("cannot read {}: {e}", path.display())))?;
        tree.push(&line);
    }
    Ok(tree)
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
