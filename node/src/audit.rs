//! The node's append-only, hash-chained audit log (format in
//! [`quorate_proto::audit`]), in the node's own sled store, so records stay in the
//! node's region. [`AuditLog::append`] returns only after the record is flushed to
//! disk: callers write the record before a signature share leaves the node.

use std::sync::Mutex;

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

/// The audit log.
#[derive(Debug)]
pub struct AuditLog {
    db: sled::Db,
    tree: sled::Tree,
    node_id: String,
    head: Mutex<Head>,
}

impl AuditLog {
    /// Opens the log in `db` (tree `audit`), continuing the chain after its last
    /// record.
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
        Ok(Self {
            db,
            tree,
            node_id: node_id.to_string(),
            head: Mutex::new(head),
        })
    }

    /// Appends `record` (sealed into the chain here) and flushes it to disk.
    pub fn append(&self, mut record: AuditRecord) -> Result<AuditRecord, NodeError> {
        let mut head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        record.node_id = self.node_id.clone();
        record.time_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let record = record.seal(head.next_seq, &head.last_hash);
        self.tree
            .insert(head.next_seq.to_be_bytes(), record.encode())
            .map_err(storage)?;
        self.db.flush().map_err(storage)?;
        head.next_seq += 1;
        head.last_hash = record.hash.clone();
        Ok(record)
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
        self.head.lock().unwrap_or_else(|p| p.into_inner()).next_seq
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    #[test]
    fn appended_records_chain_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            // sled releases its file lock from background threads shortly after the
            // last handle is dropped, so the in-process reopen may have to wait.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let db = loop {
                match sled::Config::new()
                    .path(dir.path())
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
            };
            AuditLog::open(db, "node-1").unwrap()
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
        let records: Vec<_> = log.read_from(0).map(Result::unwrap).collect();
        assert_eq!(verify_chain(records).unwrap().0, 4);
    }
}
