//! The node's signed checkpoints of its audit log: a C2SP checkpoint (origin, tree
//! size, root hash) of the durable log, signed with the node's log key
//! ([`quorate_keys::checkpoint`]), and the statement by which the node's
//! certificate attests that key.
//!
//! Used by the node's state (which owns the signer) and the `Audit` service. The
//! log key's seed is sealed in the node's store ([`crate::store::KeyStore::audit_log_seed`]),
//! so a node keeps its log key across restarts and across a lost or replaced log
//! file. Invariants: a checkpoint covers only durable records; the latest
//! checkpoint never goes back to a smaller size within one process.

use std::sync::Mutex;

use quorate_keys::checkpoint::{Checkpoint, LogSigner, LOG_KEY_STATEMENT};
use quorate_transport::attest::StatementSigner;
use quorate_wire::pb;

use crate::audit::AuditLog;
use crate::error::NodeError;

/// Signs checkpoints of one node's audit log.
#[derive(Debug)]
pub struct Checkpoints {
    origin: String,
    signer: LogSigner,
    /// The latest signed checkpoint: its tree size and signed note.
    latest: Mutex<Option<(u64, String)>>,
}

impl Checkpoints {
    /// A signer for the log with origin `origin`, with the log key `signer`.
    pub fn new(origin: String, signer: LogSigner) -> Self {
        Self {
            origin,
            signer,
            latest: Mutex::new(None),
        }
    }

    /// The log key's verifier key (`<name>+<key id>+<key>`).
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    /// The node's statement, under its certificate, that the log key is its own.
    pub fn attestation(&self, attestor: &StatementSigner) -> Result<pb::Signed, NodeError> {
        attestor
            .sign(LOG_KEY_STATEMENT, self.verifier_key().into_bytes())
            .map_err(|e| NodeError::Server(format!("cannot attest the audit log key: {e}")))
    }

    /// The signed checkpoint of `log`'s durable records, and its size: the one
    /// signed last if the log has not grown since, else a new one.
    pub fn latest(&self, log: &AuditLog) -> (u64, String) {
        let (size, root) = log.durable_root();
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((signed, note)) = &*latest {
            // A caller that read a smaller size before another signed a larger one
            // gets the larger: checkpoints served by one process never shrink.
            if *signed >= size {
                return (*signed, note.clone());
            }
        }
        let note = self.signer.sign(&Checkpoint {
            origin: self.origin.clone(),
            size,
            root,
        });
        *latest = Some((size, note.clone()));
        (size, note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_keys::audit::AuditRecord;
    use quorate_keys::checkpoint::LogVerifier;

    #[test]
    fn the_latest_checkpoint_verifies_and_covers_exactly_the_durable_log() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path().join("sled"))
            .open()
            .unwrap();
        let log = AuditLog::open(dir.path(), &db, "node-1", Box::new(|_| {})).unwrap();
        let origin = "quorate.test/quorate-audit/node-1".to_string();
        let checkpoints = Checkpoints::new(
            origin.clone(),
            LogSigner::from_seed(&origin, &[5u8; 32]).unwrap(),
        );
        let verifier = LogVerifier::parse(&checkpoints.verifier_key()).unwrap();

        let (size, empty) = checkpoints.latest(&log);
        assert_eq!(size, 0);
        assert_eq!(verifier.verify(&empty).unwrap().size, 0);
        for _ in 0..3 {
            log.append(AuditRecord::default()).unwrap();
        }
        let (size, grown) = checkpoints.latest(&log);
        assert_eq!(size, 3);
        let checkpoint = verifier.verify(&grown).unwrap();
        assert_eq!((checkpoint.size, checkpoint.root), log.durable_root());
        assert_eq!(
            checkpoints.latest(&log),
            (3, grown),
            "unchanged log, same note"
        );
    }
}
