//! Which epoch of each key this node last activated, as its audit log records it,
//! and the check that a stored record is not older ([`check_record`]): a sealed
//! share record restored from a backup of the store (an earlier epoch's share, or
//! a share this node retired) is refused when the node loads it. The same read
//! collects the approval tokens revoked, so that an old store does not bring a
//! revoked token back either, and the refreshes this node staged a share of or
//! abandoned, so that an old store does not make it forget a receipt it signed or a
//! promise it made.
//!
//! The marker is the audit log rather than the store, so that restoring an old
//! copy of the store does not also restore it (docs/decisions/0016-rollback-marker-in-the-audit-log.md).
//! The log is a separate file, hash-chained, and its checkpoints are signed by a
//! key only the node holds; a log rolled back with the store contradicts a
//! checkpoint an auditor or a peer has saved.
//!
//! The read checks the log's hash chain ([`FromLog::chain_break`]): a log edited in
//! place establishes no epoch, and the node's state refuses to load keys beside it
//! (or beside a missing or empty log) unless told to (`audit.accept_unverified_log`).
//!
//! Used by the node's state when it opens (read once, before any key is
//! activated), and by every install of a key the node does not hold
//! ([`check_install`]), so that an install cannot bring back what the log says is
//! retired or older either. Invariant: every activation (`key_generated`,
//! `key_installed`, `key_recovered`, `key_repaired`, `key_refreshed`, `key_loaded`)
//! records `manifest_sha256=<hex>` in its detail, and since this check exists also
//! ` generation=<n>`; `key_retired` ends the key's share on this node.

use std::collections::HashMap;

use quorate_keys::audit::{verify_chain, AuditRecord, ChainBreak};

use crate::audit::AuditLog;
use crate::error::NodeError;

/// Audit events that activate a manifest of a key on this node.
const ACTIVATIONS: [&str; 6] = [
    "key_generated",
    "key_installed",
    "key_recovered",
    "key_repaired",
    "key_refreshed",
    "key_loaded",
];
/// The audit event that deletes this node's share of a key.
const RETIRED: &str = "key_retired";

/// The last activation event of a key in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Last {
    /// A manifest was activated: its hash, its generation if the record names it,
    /// and the record's position.
    Active {
        manifest_hash: [u8; 32],
        generation: Option<u64>,
        seq: u64,
    },
    /// The share was deleted (a refresh removed this node) at `seq`.
    Retired { seq: u64 },
}

/// The detail of an activation record: the manifest's hash and generation.
pub(crate) fn detail(manifest_hash: &[u8; 32], generation: u64) -> String {
    format!(
        "manifest_sha256={} generation={generation}",
        hex::encode(manifest_hash)
    )
}

/// The audit event of a refresh's new share staged (`setup=<hex>` in its detail).
pub(crate) const STAGED: &str = "key_refresh_staged";
/// The audit event of a refresh abandoned by this node (`setup=<hex>`).
pub(crate) const ABANDONED: &str = "key_refresh_abandoned";

/// The audit event of an approval token's revocation (`approval_token_id` names
/// the token).
pub(crate) const REVOKED: &str = "approval_revoked";

/// What the node's audit log says about its keys.
#[derive(Debug, Default)]
pub(crate) struct FromLog {
    /// Each key's last activation or retirement, by key id.
    pub(crate) last: HashMap<String, Last>,
    /// Every approval token revoked: (key id, token id). The store keeps them too;
    /// the log's copy survives an old copy of the store written back.
    pub(crate) revoked: Vec<(String, String)>,
    /// Refreshes this node ever staged a share of (`key_refresh_staged`), by setup
    /// hash: it signed a receipt for each, so it must never abandon one.
    pub(crate) staged_setups: std::collections::HashSet<[u8; 32]>,
    /// Refreshes this node abandoned (`key_refresh_abandoned`), by setup hash: it
    /// promised never to store a share of them.
    pub(crate) abandoned_setups: std::collections::HashSet<[u8; 32]>,
    /// Records read.
    pub(crate) records: u64,
    /// Where the hash chain of the records read breaks: nothing read from the log
    /// can then be trusted (a record edited in place, or one that does not parse).
    pub(crate) chain_break: Option<ChainBreak>,
}

impl FromLog {
    /// Why the log cannot establish the epoch of stored keys, if it cannot: it is
    /// empty (missing: a new one was opened) or its hash chain breaks.
    pub(crate) fn unverified(&self) -> Option<String> {
        if let Some(brk) = &self.chain_break {
            Some(format!("the node's audit log is altered ({brk})"))
        } else if self.records == 0 {
            Some("the node's audit log is missing or empty".into())
        } else {
            None
        }
    }
}

/// Reads the log once, checking its hash chain as it goes
/// ([`quorate_keys::audit::verify_chain`]); stops at a break and says where.
pub(crate) fn read(log: &AuditLog) -> Result<FromLog, NodeError> {
    let mut out = FromLog::default();
    let mut read_error = None;
    let lines = log.read_from(0)?.map_while(|line| match line {
        Ok(line) => Some(line),
        Err(e) => {
            read_error = Some(e);
            None
        }
    });
    let checked = verify_chain(lines.inspect(|(seq, line)| take(&mut out, *seq, line)));
    if let Some(e) = read_error {
        return Err(e);
    }
    match checked {
        Ok((records, _)) => out.records = records,
        Err(brk) => {
            out.records = brk.seq;
            out.chain_break = Some(brk);
        }
    }
    Ok(out)
}

/// Counts one record (not yet checked against the chain: a record after a break
/// is read, but the break makes the whole read untrusted).
fn take(out: &mut FromLog, seq: u64, line: &[u8]) {
    // Most records are signing events: skip them without parsing.
    if !line.windows(13).any(|w| w == b"\"event\":\"key_")
        && !line
            .windows(26)
            .any(|w| w == b"\"event\":\"approval_revoked\"")
    {
        return;
    }
    // A line that does not parse breaks the chain, which the caller reports.
    let Ok(record) = serde_json::from_slice::<AuditRecord>(line) else {
        return;
    };
    let setup = || {
        field(&record.detail, "setup")
            .and_then(|h| hex::decode(h).ok())
            .and_then(|h| <[u8; 32]>::try_from(h).ok())
    };
    if record.event == STAGED {
        out.staged_setups.extend(setup());
        return;
    }
    if record.event == ABANDONED {
        out.abandoned_setups.extend(setup());
        return;
    }
    let last = &mut out.last;
    if record.event == REVOKED {
        out.revoked.push((record.key_id, record.approval_token_id));
    } else if record.event == RETIRED {
        last.insert(record.key_id, Last::Retired { seq });
    } else if ACTIVATIONS.contains(&record.event.as_str()) {
        // Every build recorded the manifest hash of an activation; a record in an
        // intact chain without one (none is known) is not counted.
        let Some(manifest_hash) = field(&record.detail, "manifest_sha256")
            .and_then(|h| hex::decode(h).ok())
            .and_then(|h| <[u8; 32]>::try_from(h).ok())
        else {
            tracing::warn!(
                seq,
                event = %record.event,
                key_id = %record.key_id,
                "audit log record names no manifest hash; not counted as an activation"
            );
            return;
        };
        let generation = field(&record.detail, "generation").and_then(|g| g.parse().ok());
        last.insert(
            record.key_id,
            Last::Active {
                manifest_hash,
                generation,
                seq,
            },
        );
    }
}

fn field<'a>(detail: &'a str, name: &str) -> Option<&'a str> {
    detail
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// What loading a stored record of a key means for the log.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The record is the epoch the log last activated.
    Current,
    /// The log records no activation of the key (a log begun after the key was
    /// stored) or an older generation than the record's (the node stopped between
    /// storing a refreshed share and recording it): the node records this
    /// activation now, so that the record cannot be rolled back below it.
    Record,
}

/// Checks the stored record of `key_id` (manifest `hash`, `generation`) against
/// the log's last activation of the key. A record of another epoch than the last
/// activated, unless of a later generation, or of a key the log says was retired,
/// is [`NodeError::Corrupt`] naming the key, the record's epoch and the expected.
pub(crate) fn check_record(
    key_id: &str,
    hash: &[u8; 32],
    generation: u64,
    last: Option<&Last>,
) -> Result<Verdict, NodeError> {
    compare(hash, generation, last).map_err(|expected| {
        NodeError::Corrupt(format!(
            "stored key {key_id:?} is rolled back: its record is of epoch {} (generation \
             {generation}), but {expected}; an old copy of the store was restored. The node \
             does not serve a share older than its last activation: restore the current \
             store, or move the record out and rebuild this node's share by repair \
             (docs/security.md)",
            hex::encode(hash)
        ))
    })
}

/// Checks an install (import, recovery, repair, DKG) of `key_id` at manifest
/// `hash`, `generation` on a node that does not hold the key, by the rule of
/// [`check_record`]: the log must not say the key was retired here or activated at
/// another epoch of the same or a later generation. (Installed anyway, the record
/// would stop the node at its next start.)
pub(crate) fn check_install(
    key_id: &str,
    hash: &[u8; 32],
    generation: u64,
    last: Option<&Last>,
) -> Result<(), NodeError> {
    compare(hash, generation, last)
        .map(drop)
        .map_err(|expected| {
            NodeError::KeyVersionMismatch(format!(
            "key {key_id:?} at epoch {} (generation {generation}) is not installed: {expected}; \
             a node takes back no share its log retired or superseded",
            hex::encode(hash)
        ))
        })
}

/// Compares an epoch of a key with the log's last activation or retirement of it;
/// on refusal, says what the log records.
fn compare(hash: &[u8; 32], generation: u64, last: Option<&Last>) -> Result<Verdict, String> {
    match last {
        None => Ok(Verdict::Record),
        Some(Last::Active {
            manifest_hash,
            generation: last_generation,
            seq,
        }) => {
            if manifest_hash == hash {
                Ok(Verdict::Current)
            } else if last_generation.is_some_and(|g| generation > g) {
                Ok(Verdict::Record)
            } else {
                let generation = last_generation
                    .map(|g| format!("generation {g}"))
                    .unwrap_or_else(|| "generation not recorded".into());
                Err(format!(
                    "the audit log's last activation of the key (record {seq}) is epoch {} \
                     ({generation})",
                    hex::encode(manifest_hash)
                ))
            }
        }
        Some(Last::Retired { seq }) => Err(format!(
            "the audit log records this node's share of the key retired (record {seq})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(byte: u8, generation: Option<u64>) -> Last {
        Last::Active {
            manifest_hash: [byte; 32],
            generation,
            seq: 7,
        }
    }

    #[test]
    fn a_record_of_the_last_epoch_loads_and_an_older_one_is_refused_naming_both() {
        let last = active(2, Some(1));
        assert_eq!(
            check_record("k", &[2; 32], 1, Some(&last)).unwrap(),
            Verdict::Current
        );
        let err = check_record("k", &[1; 32], 0, Some(&last)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&hex::encode([1u8; 32]))
                && msg.contains(&hex::encode([2u8; 32]))
                && msg.contains("\"k\""),
            "{msg}"
        );
        assert_eq!(err.exit_code(), 65);
        // Same generation, another manifest: not newer, refused.
        assert!(check_record("k", &[3; 32], 1, Some(&last)).is_err());
        // Without a recorded generation, any other epoch is refused.
        assert!(check_record("k", &[3; 32], 5, Some(&active(2, None))).is_err());
    }

    #[test]
    fn a_later_generation_or_an_unrecorded_key_is_recorded_and_a_retired_key_refused() {
        assert_eq!(
            check_record("k", &[3; 32], 2, Some(&active(2, Some(1)))).unwrap(),
            Verdict::Record
        );
        assert_eq!(
            check_record("k", &[3; 32], 0, None).unwrap(),
            Verdict::Record
        );
        let err = check_record("k", &[3; 32], 0, Some(&Last::Retired { seq: 9 })).unwrap_err();
        assert!(err.to_string().contains("retired"), "{err}");
    }

    #[test]
    fn detail_fields_parse_back() {
        let d = detail(&[0xab; 32], 4);
        assert_eq!(field(&d, "generation"), Some("4"));
        assert_eq!(
            field(&d, "manifest_sha256"),
            Some(hex::encode([0xab; 32]).as_str())
        );
        assert_eq!(field("manifest_sha256=00", "generation"), None);
    }
}
