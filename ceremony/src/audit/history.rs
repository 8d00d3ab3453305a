//! What an auditor remembers of each node's audit log between runs, and how a
//! node's log is judged against it: the last signed checkpoint the auditor
//! verified (with the log key that signed it, the log's first record and the last
//! record it covered), kept in a state file (`audit verify --state FILE`).
//!
//! A log that only grew verifies: its records hash to the node's new signed
//! checkpoint, the first `m` of them to the saved one, and the node proves the new
//! checkpoint consistent with the saved one (RFC 9162). Anything else is a
//! [`Finding`] with its own exit code: truncated, rewritten, forked, deleted, or
//! signed by another log key.

use std::collections::BTreeMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use quorate_keys::audit::AuditRecord;
use quorate_keys::checkpoint::Checkpoint;
use quorate_keys::merkle::{leaf_hash, verify_consistency, Hash, Tree};
use serde::{Deserialize, Serialize};

/// Format of the state file this build writes and reads.
pub const STATE_FORMAT: &str = "quorate-audit-state/1";

/// The auditor's saved state: per node, the last checkpoint verified.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuditState {
    /// [`STATE_FORMAT`].
    pub format: String,
    /// By node id.
    pub nodes: BTreeMap<String, SavedLog>,
}

/// The last verified checkpoint of one node's log.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SavedLog {
    /// The log key's verifier key, as the node attested it.
    pub log_key: String,
    /// The signed checkpoint, as the node served it (evidence for a later finding).
    pub checkpoint: String,
    /// Its tree size.
    pub size: u64,
    /// Its root hash (base64).
    pub root: String,
    /// Leaf hash (hex) of record 0, empty for an empty log.
    pub first_leaf: String,
    /// SHA-256 (hex) of the last record the checkpoint covers with its `prev_hash`
    /// and `hash` emptied: the event itself, whatever chain it was later put in.
    pub last_event: String,
}

/// Why a state file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Not readable.
    #[error("cannot read the audit state {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not a state file of a format this build reads.
    #[error("{path} is not an audit state file of format {STATE_FORMAT}: {reason}")]
    Format {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Not writable.
    #[error("cannot write the audit state {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// An exclusive hold on a state file (an advisory lock on `<file>.lock` beside it),
/// from reading it to writing it back: two audits run at once with one state file
/// (one node each, from cron) take turns instead of each writing back a state
/// without the other's node.
#[derive(Debug)]
pub struct StateLock {
    _file: std::fs::File,
}

impl StateLock {
    /// Waits for the lock on the state file at `path`.
    pub fn acquire(path: &Path) -> Result<Self, StateError> {
        let lock_path = sibling(path, "lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .and_then(|file| file.lock().map(|()| file))
            .map_err(|source| StateError::Write {
                path: lock_path.display().to_string(),
                source,
            })?;
        Ok(Self { _file: file })
    }
}

/// `path` with `.suffix` appended to its whole file name (`a.json` -> `a.json.lock`),
/// so no two state files share one.
fn sibling(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".");
    name.push(suffix);
    name.into()
}

impl AuditState {
    /// Reads the state at `path`; a missing file is an empty state (a first run).
    pub fn load(path: &Path) -> Result<Self, StateError> {
        let shown = path.display().to_string();
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    format: STATE_FORMAT.into(),
                    nodes: BTreeMap::new(),
                })
            }
            Err(source) => {
                return Err(StateError::Read {
                    path: shown,
                    source,
                })
            }
        };
        let state: Self = serde_json::from_slice(&bytes).map_err(|e| StateError::Format {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        if state.format != STATE_FORMAT {
            return Err(StateError::Format {
                path: shown,
                reason: format!("format {:?}", state.format),
            });
        }
        Ok(state)
    }

    /// Writes the state to `path`, replacing it whole (written beside it, synced,
    /// renamed): a crash leaves the old state or the new one.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let write = |source| StateError::Write {
            path: path.display().to_string(),
            source,
        };
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| write(e.into()))?;
        bytes.push(b'\n');
        let partial = sibling(path, "partial");
        {
            use std::io::Write as _;
            let mut file = std::fs::File::create(&partial).map_err(write)?;
            file.write_all(&bytes).map_err(write)?;
            file.sync_all().map_err(write)?;
        }
        std::fs::rename(&partial, path).map_err(write)?;
        // The rename itself is durable once the directory is.
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write)
    }
}

/// What kind of tampering a finding shows; each has its own exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FindingKind {
    /// Fewer records than the saved checkpoint covered, or the records it covered
    /// at its end replaced by others: the log was cut.
    Truncated,
    /// A record the saved checkpoint covered was changed (its event still in place).
    Rewritten,
    /// The node signed a checkpoint that does not extend the saved one, or serves
    /// records that are not the log it signs.
    Forked,
    /// The log starts with another first record (or is empty): it was deleted and
    /// begun again.
    Deleted,
    /// The log is signed by another log key than the saved checkpoint was.
    KeyChanged,
    /// A witness (another node) holds evidence that the log is not the one it
    /// cosigned, or cosigned a checkpoint the log no longer extends.
    Witnessed,
}

impl FindingKind {
    /// The process exit code of `quorate-ceremony audit verify` for this finding.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Truncated => 10,
            Self::Rewritten => 11,
            Self::Forked => 12,
            Self::Deleted => 13,
            Self::KeyChanged => 14,
            Self::Witnessed => 15,
        }
    }
}

/// A node's log that does not stand against its own signed checkpoint or the
/// auditor's saved state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{node}: {message}")]
pub struct Finding {
    /// The node.
    pub node: String,
    /// What it shows.
    pub kind: FindingKind,
    /// What was found, for the auditor.
    pub message: String,
}

/// What was fetched from a node and verified on its own: its attested log key,
/// its latest signed checkpoint under that key, its records, and (when the
/// auditor had a saved checkpoint no larger) the node's consistency proof from the
/// saved checkpoint to the new one.
#[derive(Clone, Debug)]
pub struct Observed {
    /// Verifier key the node attested.
    pub log_key: String,
    /// The node's region and jurisdiction, from the certificate that attested the
    /// log key (verified under the auditor's CA).
    pub location: Option<quorate_transport::identity::Location>,
    /// The signed checkpoint as served.
    pub note: String,
    /// Its content (signature verified).
    pub checkpoint: Checkpoint,
    /// Every record served, `(seq, bytes)`.
    pub records: Vec<(u64, Vec<u8>)>,
    /// The consistency proof from the saved size to the checkpoint's, if asked for
    /// (`Err`: the node's refusal).
    pub consistency: Option<Result<Vec<Hash>, String>>,
}

/// Judges node `node`'s log as `observed` against `saved` (the auditor's last
/// verified checkpoint of it, if any). On success, the state to save for the next
/// run.
pub fn judge(
    node: &str,
    observed: &Observed,
    saved: Option<&SavedLog>,
) -> Result<SavedLog, Finding> {
    let finding = |kind, message: String| Finding {
        node: node.to_string(),
        kind,
        message,
    };
    let cp = &observed.checkpoint;
    let n = cp.size;
    let records = &observed.records;
    if (records.len() as u64) < n {
        return Err(finding(
            FindingKind::Forked,
            format!(
                "it signed a checkpoint of {n} records but serves only {}",
                records.len()
            ),
        ));
    }
    let mut tree = Tree::new();
    for (_, bytes) in records.iter().take(n as usize) {
        tree.push(bytes);
    }
    if let Some(saved) = saved {
        let m = saved.size;
        if saved.log_key != observed.log_key {
            return Err(finding(
                FindingKind::KeyChanged,
                format!(
                    "its log is signed by another key ({}) than at the last audit ({}): \
                     its store was replaced, and this log cannot be linked to the {m} records audited then",
                    observed.log_key, saved.log_key
                ),
            ));
        }
        let first_leaf = records
            .first()
            .filter(|_| n > 0)
            .map(|(_, r)| hex::encode(leaf_hash(r)))
            .unwrap_or_default();
        if m > 0 && first_leaf != saved.first_leaf {
            return Err(finding(
                FindingKind::Deleted,
                format!(
                    "its audit log was deleted and begun again: it holds {n} records and \
                     its first is not the first of the {m} records audited last time"
                ),
            ));
        }
        if n < m {
            return Err(finding(
                FindingKind::Truncated,
                format!(
                    "its audit log was truncated: {m} records at the last audit, {n} now \
                     (records {n}..{} are gone)",
                    m - 1
                ),
            ));
        }
        let saved_root = decode_root(&saved.root).map_err(|e| {
            finding(
                FindingKind::Forked,
                format!("the saved checkpoint is unreadable: {e}"),
            )
        })?;
        let root_then = tree
            .root(m)
            .unwrap_or_else(|_| quorate_keys::merkle::empty_root());
        if root_then != saved_root {
            // m > 0 here: the empty tree's root is fixed, so a saved root of size 0
            // that differs is a damaged state file, reported as what it then shows.
            let event_then = (m as usize)
                .checked_sub(1)
                .and_then(|last| records.get(last))
                .map(|(_, r)| event_digest(r))
                .unwrap_or_default();
            return Err(if m > 0 && event_then == saved.last_event {
                finding(
                    FindingKind::Rewritten,
                    format!(
                        "its audit log was rewritten: its first {m} records no longer hash to \
                         the checkpoint audited last time, though record {} is still the \
                         event it was (records before it were changed and the chain recomputed)",
                        m.saturating_sub(1)
                    ),
                )
            } else {
                finding(
                    FindingKind::Truncated,
                    format!(
                        "its audit log was truncated and grown again: record {} is no longer \
                         the event audited last time, and its first {m} records no longer \
                         hash to the checkpoint audited then ({n} records now)",
                        m.saturating_sub(1)
                    ),
                )
            });
        }
        let consistent = match &observed.consistency {
            Some(Ok(proof)) => verify_consistency(m, n, &saved_root, &cp.root, proof),
            Some(Err(_)) | None => false,
        };
        if !consistent {
            let why = match &observed.consistency {
                Some(Err(e)) => format!("the node refused the consistency proof: {e}"),
                _ => "its consistency proof does not verify".to_string(),
            };
            return Err(finding(
                FindingKind::Forked,
                format!(
                    "its signed checkpoint of {n} records does not provably extend the one \
                     of {m} records audited last time ({why}); both checkpoints are evidence"
                ),
            ));
        }
    }
    let root = tree
        .root(n)
        .unwrap_or_else(|_| quorate_keys::merkle::empty_root());
    if root != cp.root {
        return Err(finding(
            FindingKind::Forked,
            format!(
                "the {n} records it serves do not hash to the root of its own signed checkpoint: \
                 it signs one log and serves another"
            ),
        ));
    }
    Ok(SavedLog {
        log_key: observed.log_key.clone(),
        checkpoint: observed.note.clone(),
        size: n,
        root: B64.encode(cp.root),
        first_leaf: records
            .first()
            .filter(|_| n > 0)
            .map(|(_, r)| hex::encode(leaf_hash(r)))
            .unwrap_or_default(),
        last_event: if n > 0 {
            event_digest(&records[n as usize - 1].1)
        } else {
            String::new()
        },
    })
}

fn decode_root(b64: &str) -> Result<Hash, String> {
    B64.decode(b64)
        .ok()
        .and_then(|r| r.try_into().ok())
        .ok_or_else(|| "root is not 32 bytes of base64".to_string())
}

/// The digest of a record's event: the record with `prev_hash` and `hash` emptied
/// (the bytes hashed if it does not parse).
fn event_digest(bytes: &[u8]) -> String {
    match serde_json::from_slice::<AuditRecord>(bytes) {
        Ok(mut record) => {
            record.prev_hash.clear();
            record.hash.clear();
            hex::encode(quorate_wire::sha256(&record.encode()))
        }
        Err(_) => hex::encode(quorate_wire::sha256(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_keys::audit::GENESIS_HASH;

    /// A second audit with the same state file waits for the first (it cannot take
    /// the lock while the first holds it), and the state's temporary file is named
    /// after the whole file name, so a state file called `x.partial` is not its own
    /// temporary file.
    #[test]
    fn state_files_are_locked_for_a_run_and_written_beside_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.partial");
        let held = StateLock::acquire(&path).unwrap();
        let other = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("x.partial.lock"))
            .unwrap();
        assert!(other.try_lock().is_err(), "a second run took the lock");
        drop(held);
        other.try_lock().unwrap();
        drop(other);

        let state = AuditState::load(&path).unwrap();
        state.save(&path).unwrap();
        assert_eq!(AuditState::load(&path).unwrap().nodes.len(), 0);
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["x.partial", "x.partial.lock"]);
    }

    /// A log of records `events`, chained from genesis, as `(seq, bytes)`.
    fn log(events: &[String]) -> Vec<(u64, Vec<u8>)> {
        let mut prev = GENESIS_HASH.to_string();
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let r = AuditRecord {
                    event: "sign_share".into(),
                    request_id: e.clone(),
                    time_unix_ms: 1000 + i as u64,
                    ..Default::default()
                }
                .seal(i as u64, &prev);
                prev = r.hash.clone();
                (i as u64, r.encode())
            })
            .collect()
    }

    fn events(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    fn tree(records: &[(u64, Vec<u8>)]) -> Tree {
        let mut t = Tree::new();
        for (_, r) in records {
            t.push(r);
        }
        t
    }

    /// What an honest node serving `records` shows, asked for a proof from `m`.
    fn observed(records: Vec<(u64, Vec<u8>)>, m: Option<u64>) -> Observed {
        let t = tree(&records);
        let n = records.len() as u64;
        Observed {
            log_key: "key-a".into(),
            location: None,
            note: "note".into(),
            checkpoint: Checkpoint {
                origin: "o".into(),
                size: n,
                root: t.root(n).expect("in range"),
            },
            consistency: m
                .filter(|m| *m <= n)
                .map(|m| Ok(t.consistency_proof(m, n).expect("in range"))),
            records,
        }
    }

    fn first_audit(records: Vec<(u64, Vec<u8>)>) -> SavedLog {
        judge("node-1", &observed(records, None), None).expect("a first audit verifies")
    }

    fn kind(r: Result<SavedLog, Finding>) -> FindingKind {
        r.expect_err("a finding").kind
    }

    #[test]
    fn a_log_that_only_grew_verifies_and_is_saved_at_its_new_size() {
        let saved = first_audit(log(&events("a", 5)));
        let grown = observed(log(&events("a", 9)), Some(5));
        let next = judge("node-1", &grown, Some(&saved)).expect("grew only");
        assert_eq!(next.size, 9);
        assert_eq!(next.first_leaf, saved.first_leaf);
        let same = observed(log(&events("a", 5)), Some(5));
        assert_eq!(
            judge("node-1", &same, Some(&saved)).expect("unchanged"),
            saved
        );
    }

    #[test]
    fn a_truncated_log_is_truncated_whether_or_not_it_grew_again() {
        let saved = first_audit(log(&events("a", 8)));
        let cut = observed(log(&events("a", 5)), Some(8));
        assert_eq!(
            kind(judge("node-1", &cut, Some(&saved))),
            FindingKind::Truncated
        );
        let mut regrown = events("a", 5);
        regrown.extend(events("b", 6));
        let regrown = observed(log(&regrown), Some(8));
        assert_eq!(
            kind(judge("node-1", &regrown, Some(&saved))),
            FindingKind::Truncated
        );
    }

    #[test]
    fn a_record_rewritten_with_the_chain_recomputed_is_a_rewrite() {
        let saved = first_audit(log(&events("a", 8)));
        let mut changed = events("a", 10);
        changed[2] = "forged".into();
        let rewritten = observed(log(&changed), Some(8));
        assert!(
            crate::audit::check(&rewritten.records).head.is_ok(),
            "the chain checks"
        );
        let finding = judge("node-1", &rewritten, Some(&saved)).expect_err("caught");
        assert_eq!(finding.kind, FindingKind::Rewritten);
        assert!(finding
            .to_string()
            .starts_with("node-1: its audit log was rewritten"));
    }

    #[test]
    fn a_deleted_and_restarted_log_is_a_deletion() {
        let saved = first_audit(log(&events("a", 8)));
        let restarted = observed(log(&events("new", 3)), Some(8));
        assert_eq!(
            kind(judge("node-1", &restarted, Some(&saved))),
            FindingKind::Deleted
        );
        let empty = observed(Vec::new(), Some(8));
        assert_eq!(
            kind(judge("node-1", &empty, Some(&saved))),
            FindingKind::Deleted
        );
        let regrown = observed(log(&events("new", 12)), Some(8));
        assert_eq!(
            kind(judge("node-1", &regrown, Some(&saved))),
            FindingKind::Deleted
        );
    }

    #[test]
    fn a_checkpoint_the_records_do_not_match_or_an_unproven_extension_is_a_fork() {
        // Signs one log and serves another.
        let mut served = observed(log(&events("a", 6)), None);
        served.checkpoint.root = tree(&log(&events("b", 6))).root(6).expect("in range");
        assert_eq!(kind(judge("node-1", &served, None)), FindingKind::Forked);
        // Serves fewer records than it signed.
        let mut short = observed(log(&events("a", 6)), None);
        short.records.truncate(4);
        assert_eq!(kind(judge("node-1", &short, None)), FindingKind::Forked);
        // Its consistency proof does not verify (or it refuses one).
        let saved = first_audit(log(&events("a", 5)));
        let mut unproven = observed(log(&events("a", 9)), Some(5));
        unproven.consistency = Some(Ok(vec![[0u8; 32]; 3]));
        assert_eq!(
            kind(judge("node-1", &unproven, Some(&saved))),
            FindingKind::Forked
        );
        unproven.consistency = Some(Err("no".into()));
        assert_eq!(
            kind(judge("node-1", &unproven, Some(&saved))),
            FindingKind::Forked
        );
    }

    #[test]
    fn a_log_signed_by_another_key_cannot_be_linked_to_the_saved_one() {
        let saved = first_audit(log(&events("a", 5)));
        let mut other = observed(log(&events("a", 6)), Some(5));
        other.log_key = "key-b".into();
        assert_eq!(
            kind(judge("node-1", &other, Some(&saved))),
            FindingKind::KeyChanged
        );
    }

    #[test]
    fn every_finding_has_its_own_exit_code() {
        let codes: std::collections::BTreeSet<u8> = [
            FindingKind::Truncated,
            FindingKind::Rewritten,
            FindingKind::Forked,
            FindingKind::Deleted,
            FindingKind::KeyChanged,
        ]
        .iter()
        .map(|k| k.exit_code())
        .collect();
        assert_eq!(codes.len(), 5);
        assert!(!codes.contains(&0) && !codes.contains(&1) && !codes.contains(&64));
    }

    #[test]
    fn the_state_file_round_trips_and_a_missing_one_is_a_first_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        let mut state = AuditState::load(&path).expect("missing is empty");
        assert!(state.nodes.is_empty());
        state
            .nodes
            .insert("node-1".into(), first_audit(log(&events("a", 3))));
        state.save(&path).expect("saved");
        assert_eq!(AuditState::load(&path).expect("loads"), state);
        std::fs::write(&path, b"{\"format\":\"other\",\"nodes\":{}}").expect("write");
        assert!(matches!(
            AuditState::load(&path),
            Err(StateError::Format { .. })
        ));
    }
}
