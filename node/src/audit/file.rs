//! The audit log's file on disk: where it is ([`LOG_FILE`] in the node's data
//! directory), how its tail is recovered when it is opened, and the one-time move of
//! an earlier build's records out of sled.
//!
//! Used by the audit log when it opens (`AuditLog::open`) and by tools that
//! read a stopped node's log ([`log_path`]). Invariants: a line cut short by a crash
//! (never acknowledged) is cut off, durably, before anything is appended; the file's
//! name is made durable by syncing its directory.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use quorate_keys::audit::AuditRecord;

use crate::error::{storage, NodeError};

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

/// Finds the end of the last whole record and reads that record. A record is
/// acknowledged only after its line is on disk, so bytes after the last newline
/// are a line cut short by a crash (never acknowledged): they are cut off, and the
/// cut made durable, before anything is appended.
pub(super) fn recover_tail(
    file: &File,
    path: &Path,
) -> Result<(u64, Option<AuditRecord>), NodeError> {
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
pub(super) fn migrate_from_sled(db: &sled::Db, path: &Path) -> Result<(), NodeError> {
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
pub(super) fn sync_dir_of(path: &Path) -> Result<(), NodeError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| storage(format!("cannot sync the directory {}: {e}", dir.display())))?;
    #[cfg(test)]
    SYNCED_DIRS.with(|synced| synced.borrow_mut().push(dir.to_path_buf()));
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// Directories [`sync_dir_of`] synced on this thread (each test runs on a
    /// thread of its own).
    pub(super) static SYNCED_DIRS: std::cell::RefCell<Vec<PathBuf>> =
        const { std::cell::RefCell::new(Vec::new()) };
}
