//! The node as a witness of its peers' audit logs: what it remembers of each peer
//! (the latest checkpoint it cosigned, kept in sled so a restart keeps it), how a
//! peer's new checkpoint is judged against it, and the evidence it keeps when the
//! two conflict.
//!
//! The network side (fetching checkpoints and proofs from peers on an interval) is
//! [`peers`]; this module does no I/O but sled and the evidence files. Invariants:
//! a checkpoint is cosigned only after its log key's attestation by the peer's own
//! certificate, its signature, and its consistency with the last cosigned one were
//! checked; the cosigned state only moves forward; once evidence of an
//! inconsistency is held for a peer, nothing more of that peer is cosigned until an
//! operator removes it (`quorate-node witness forget`), and the evidence is durable
//! (sled, flushed, and a file under the data directory) before it is reported.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use prost::Message as _;
use quorate_keys::checkpoint::Checkpoint;
use quorate_keys::cosignature::{WitnessSigner, WITNESS_KEY_STATEMENT};
use quorate_keys::merkle::{verify_consistency, Hash};
use quorate_transport::attest::StatementSigner;
use quorate_wire::pb;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::NodeError;

pub mod peers;

/// Format of a stored cosigned checkpoint.
const STATE_FORMAT: &str = "quorate-witnessed/1";
/// Format of a piece of evidence (stored and served).
pub const EVIDENCE_FORMAT: &str = "quorate-witness-evidence/1";
/// The sled tree of the witness's state: `cosigned/<peer>` and `evidence/<peer>`.
const TREE: &str = "witness";
/// Where the evidence files go, under the data directory.
const EVIDENCE_DIR: &str = "witness-evidence";

/// The witness key's seed from the node's log key seed: a key of its own (another
/// Ed25519 key under a domain-separated hash), kept as well as the log key's seed
/// (sealed in the store, moved by a rekey with it) without a second sealed secret.
pub fn witness_seed(log_seed: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut input = Zeroizing::new(b"quorate-witness-key/v1\0".to_vec());
    input.extend_from_slice(log_seed);
    Zeroizing::new(quorate_wire::sha256(&input))
}

/// The latest checkpoint of one peer this witness cosigned.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Cosigned {
    /// [`STATE_FORMAT`].
    pub format: String,
    /// The peer's attested log key (verifier key text).
    pub log_key: String,
    /// The peer's attestation of it (a `pb::Signed`, hex of its protobuf).
    pub log_key_attestation: String,
    /// The peer's signed note with this witness's cosignature line added.
    pub note: String,
    /// Its tree size.
    pub size: u64,
    /// Its root (hex).
    pub root: String,
}

impl Cosigned {
    fn root(&self) -> Result<Hash, NodeError> {
        hex::decode(&self.root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| NodeError::Corrupt("witness state: root is not 32 bytes".into()))
    }
}

/// Evidence that a peer's log is not the one this witness cosigned.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// [`EVIDENCE_FORMAT`].
    pub format: String,
    /// The peer.
    pub node_id: String,
    /// When it was found, Unix seconds.
    pub found_unix: u64,
    /// Why the two checkpoints conflict.
    pub reason: String,
    /// The checkpoint this witness cosigned (the peer's signed note, cosigned).
    pub cosigned: String,
    /// The log key that signed it.
    pub cosigned_log_key: String,
    /// The peer's conflicting signed checkpoint, as served.
    pub served: String,
    /// The log key that signed it, as the peer attested it then.
    pub served_log_key: String,
    /// The consistency proof the peer served (hex hashes), if one was asked for.
    pub proof: Option<Vec<String>>,
    /// The peer's refusal to serve one, if it refused.
    pub proof_refused: Option<String>,
}

/// What a peer served in one round, verified on its own.
#[derive(Debug, Clone)]
pub struct Served {
    /// Its signed note.
    pub note: String,
    /// Its content.
    pub checkpoint: Checkpoint,
    /// The log key (verifier key text).
    pub log_key: String,
    /// The peer's attestation of it.
    pub attestation: pb::Signed,
}

/// The outcome of judging a served checkpoint against the cosigned one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Consistent: cosign it (a first checkpoint, or one that grew).
    Cosign,
    /// The same checkpoint as cosigned: nothing to do.
    Unchanged,
    /// A consistency proof from `from` is needed first.
    NeedsProof {
        /// The cosigned size.
        from: u64,
    },
    /// An inconsistency: the reason.
    Inconsistent(String),
}

/// Judges `served` against `last` (the latest cosigned checkpoint, if any), with
/// the consistency proof the peer served from `last`'s size if one was asked for.
pub fn judge(
    last: Option<&Cosigned>,
    served: &Served,
    proof: Option<&Result<Vec<Hash>, String>>,
) -> Result<Verdict, NodeError> {
    let Some(last) = last else {
        return Ok(Verdict::Cosign);
    };
    let new = &served.checkpoint;
    if served.log_key != last.log_key {
        return Ok(Verdict::Inconsistent(format!(
            "its log is signed by another log key ({}) than the checkpoint of {} records \
             cosigned before ({})",
            served.log_key, last.size, last.log_key
        )));
    }
    let old_root = last.root()?;
    if new.size < last.size {
        return Ok(Verdict::Inconsistent(format!(
            "its checkpoint of {} records is smaller than the checkpoint of {} records \
             cosigned before: the log lost records",
            new.size, last.size
        )));
    }
    if new.size == last.size {
        return Ok(if new.root == old_root {
            Verdict::Unchanged
        } else {
            Verdict::Inconsistent(format!(
                "its checkpoint of {} records has another root than the one cosigned \
                 before at that size: records were changed",
                new.size
            ))
        });
    }
    match proof {
        None => Ok(Verdict::NeedsProof { from: last.size }),
        Some(Err(refused)) => Ok(Verdict::Inconsistent(format!(
            "it refused a consistency proof from {} to {} records: {refused}",
            last.size, new.size
        ))),
        Some(Ok(proof)) => Ok(
            if verify_consistency(last.size, new.size, &old_root, &new.root, proof) {
                Verdict::Cosign
            } else {
                Verdict::Inconsistent(format!(
                    "its checkpoint of {} records does not extend the checkpoint of {} \
                     records cosigned before: the consistency proof fails",
                    new.size, last.size
                ))
            },
        ),
    }
}

/// The witness's key and its durable state.
#[derive(Debug)]
pub struct Witness {
    signer: WitnessSigner,
    tree: sled::Tree,
    evidence_dir: PathBuf,
    /// The peers this node witnesses (from its config).
    peers: Vec<String>,
    /// When each peer last served a checkpoint that verified, Unix seconds.
    last_seen: Mutex<HashMap<String, u64>>,
}

fn storage(e: sled::Error) -> NodeError {
    NodeError::Storage(e.to_string())
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Witness {
    /// The witness named `name` with the key from `seed`, its state in `db` and its
    /// evidence files under `data_dir`.
    pub fn open(
        name: &str,
        seed: &[u8; 32],
        db: &sled::Db,
        data_dir: &Path,
    ) -> Result<Self, NodeError> {
        let signer = WitnessSigner::from_seed(name, seed)
            .map_err(|e| NodeError::Config(format!("witness key: {e}")))?;
        Ok(Self {
            signer,
            tree: db.open_tree(TREE).map_err(storage)?,
            evidence_dir: data_dir.join(EVIDENCE_DIR),
            peers: Vec::new(),
            last_seen: Mutex::new(HashMap::new()),
        })
    }

    /// Sets the peers this node witnesses.
    pub fn set_peers(&mut self, peers: Vec<String>) {
        self.peers = peers;
    }

    /// Notes that `peer` just served a checkpoint that verified.
    pub fn saw(&self, peer: &str) {
        self.last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer.to_string(), now_unix());
    }

    /// The witness key's verifier key.
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    /// The node's statement, under its certificate, that the witness key is its own.
    pub fn attestation(&self, attestor: &StatementSigner) -> Result<pb::Signed, NodeError> {
        attestor
            .sign(WITNESS_KEY_STATEMENT, self.verifier_key().into_bytes())
            .map_err(|e| NodeError::Server(format!("cannot attest the witness key: {e}")))
    }

    fn get<T: for<'de> Deserialize<'de>>(&self, key: String) -> Result<Option<T>, NodeError> {
        let Some(bytes) = self.tree.get(key.as_bytes()).map_err(storage)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| NodeError::Corrupt(format!("witness state {key}: {e}")))
    }

    /// The latest cosigned checkpoint of `peer`.
    pub fn cosigned(&self, peer: &str) -> Result<Option<Cosigned>, NodeError> {
        self.get(format!("cosigned/{peer}"))
    }

    /// The evidence held against `peer`.
    pub fn evidence(&self, peer: &str) -> Result<Option<Evidence>, NodeError> {
        self.get(format!("evidence/{peer}"))
    }

    /// Cosigns `served` (judged consistent) and stores it durably as `peer`'s
    /// latest; returns the cosigned note.
    pub fn cosign(&self, peer: &str, served: &Served) -> Result<String, NodeError> {
        let note = self
            .signer
            .cosign(&served.note, now_unix())
            .map_err(|e| NodeError::Internal(format!("cosigning {peer}'s checkpoint: {e}")))?;
        let state = Cosigned {
            format: STATE_FORMAT.into(),
            log_key: served.log_key.clone(),
            log_key_attestation: hex::encode(served.attestation.encode_to_vec()),
            note: note.clone(),
            size: served.checkpoint.size,
            root: hex::encode(served.checkpoint.root),
        };
        let bytes = serde_json::to_vec(&state)
            .map_err(|e| NodeError::Internal(format!("witness state: {e}")))?;
        self.tree
            .insert(format!("cosigned/{peer}").as_bytes(), bytes)
            .map_err(storage)?;
        self.tree.flush().map_err(storage)?;
        Ok(note)
    }

    /// Keeps `evidence` durably (sled, and a file under the data directory), unless
    /// evidence against the peer is already held; returns the file's path.
    pub fn keep_evidence(&self, evidence: &Evidence) -> Result<PathBuf, NodeError> {
        let bytes = serde_json::to_vec_pretty(evidence)
            .map_err(|e| NodeError::Internal(format!("witness evidence: {e}")))?;
        let path = self
            .evidence_dir
            .join(format!("{}-{}.json", evidence.node_id, evidence.found_unix));
        std::fs::create_dir_all(&self.evidence_dir)
            .and_then(|()| std::fs::write(&path, &bytes))
            .and_then(|()| std::fs::File::open(&path)?.sync_all())
            .map_err(|e| NodeError::Storage(format!("{}: {e}", path.display())))?;
        let _ = self
            .tree
            .compare_and_swap(
                format!("evidence/{}", evidence.node_id).as_bytes(),
                None as Option<&[u8]>,
                Some(bytes),
            )
            .map_err(storage)?;
        self.tree.flush().map_err(storage)?;
        Ok(path)
    }

    /// What this witness holds of each peer it witnesses, for `GetWitnessed`.
    pub fn view(&self) -> Result<Vec<pb::WitnessedLog>, NodeError> {
        let last_seen = self
            .last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut logs = Vec::with_capacity(self.peers.len());
        for peer in &self.peers {
            let cosigned = self.cosigned(peer)?;
            let evidence = self.tree.get(format!("evidence/{peer}")).map_err(storage)?;
            let log_key = match &cosigned {
                Some(c) => Some(
                    hex::decode(&c.log_key_attestation)
                        .ok()
                        .and_then(|b| pb::Signed::decode(b.as_slice()).ok())
                        .ok_or_else(|| {
                            NodeError::Corrupt(format!(
                                "witness state cosigned/{peer}: attestation does not decode"
                            ))
                        })?,
                ),
                None => None,
            };
            logs.push(pb::WitnessedLog {
                node_id: peer.clone(),
                cosigned: cosigned.map(|c| c.note.into_bytes()).unwrap_or_default(),
                log_key,
                evidence: evidence.map(|e| e.to_vec()).unwrap_or_default(),
                last_seen_unix: last_seen.get(peer).copied().unwrap_or(0),
            });
        }
        Ok(logs)
    }
}

/// `quorate-node witness forget --peer ID` on a stopped node: removes the evidence
/// and the cosigned checkpoint held for `peer` (the evidence files stay), so the
/// node witnesses the peer's log afresh from its next checkpoint; returns what to
/// tell the operator.
pub fn forget_peer(config: &crate::config::NodeConfig, peer: &str) -> Result<String, NodeError> {
    let (store, _) = crate::store::KeyStore::open_with(&config.file.data_dir, &config.keks)?;
    let tree = store.db().open_tree(TREE).map_err(storage)?;
    let evidence = tree
        .remove(format!("evidence/{peer}").as_bytes())
        .map_err(storage)?
        .is_some();
    let cosigned = tree
        .remove(format!("cosigned/{peer}").as_bytes())
        .map_err(storage)?
        .is_some();
    tree.flush().map_err(storage)?;
    Ok(match (evidence, cosigned) {
        (false, false) => format!("this node held nothing of {peer:?}"),
        _ => format!(
            "forgot {peer:?} (evidence: {evidence}, cosigned checkpoint: {cosigned}); the \
             evidence files under {} stay; the node witnesses {peer:?} afresh once it runs",
            config.file.data_dir.join(EVIDENCE_DIR).display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_keys::checkpoint::{LogSigner, LogVerifier};
    use quorate_keys::merkle::Tree;

    const ORIGIN: &str = "quorate.test/quorate-audit/node-2";

    fn served(tree: &Tree, size: u64, seed: u8) -> Served {
        let signer = LogSigner::from_seed(ORIGIN, &[seed; 32]).unwrap();
        let checkpoint = Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: tree.root(size).unwrap(),
        };
        Served {
            note: signer.sign(&checkpoint),
            checkpoint,
            log_key: signer.verifier_key(),
            attestation: pb::Signed::default(),
        }
    }

    fn tree(records: &[&str]) -> Tree {
        let mut tree = Tree::new();
        for r in records {
            tree.push(r.as_bytes());
        }
        tree
    }

    #[test]
    fn growth_is_cosigned_and_survives_reopen_while_truncation_rewrite_and_key_change_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path().join("sled"))
            .open()
            .unwrap();
        let witness = Witness::open(
            "quorate.test/quorate-witness/node-1",
            &[1; 32],
            &db,
            dir.path(),
        )
        .unwrap();
        let honest = tree(&["a", "b", "c", "d", "e"]);
        let first = served(&honest, 3, 9);
        assert_eq!(judge(None, &first, None).unwrap(), Verdict::Cosign);
        witness.cosign("node-2", &first).unwrap();
        let last = witness.cosigned("node-2").unwrap().unwrap();
        let verifier =
            quorate_keys::cosignature::WitnessVerifier::parse(&witness.verifier_key()).unwrap();
        verifier.verify(&last.note).unwrap();
        LogVerifier::parse(&first.log_key)
            .unwrap()
            .verify(&last.note)
            .unwrap();

        let grown = served(&honest, 5, 9);
        assert_eq!(
            judge(Some(&last), &grown, None).unwrap(),
            Verdict::NeedsProof { from: 3 }
        );
        let proof = Ok(honest.consistency_proof(3, 5).unwrap());
        assert_eq!(
            judge(Some(&last), &grown, Some(&proof)).unwrap(),
            Verdict::Cosign
        );
        assert_eq!(
            judge(Some(&last), &served(&honest, 3, 9), None).unwrap(),
            Verdict::Unchanged
        );
        assert!(matches!(
            judge(Some(&last), &served(&honest, 2, 9), None).unwrap(),
            Verdict::Inconsistent(m) if m.contains("smaller")
        ));
        let rewritten = tree(&["a", "X", "c", "d", "e"]);
        assert!(matches!(
            judge(Some(&last), &served(&rewritten, 3, 9), None).unwrap(),
            Verdict::Inconsistent(m) if m.contains("another root")
        ));
        let forged = Ok(rewritten.consistency_proof(3, 5).unwrap());
        assert!(matches!(
            judge(Some(&last), &served(&rewritten, 5, 9), Some(&forged)).unwrap(),
            Verdict::Inconsistent(m) if m.contains("does not extend")
        ));
        assert!(matches!(
            judge(Some(&last), &served(&honest, 5, 8), None).unwrap(),
            Verdict::Inconsistent(m) if m.contains("another log key")
        ));

        drop(witness);
        drop(db);
        let db = sled::Config::new()
            .path(dir.path().join("sled"))
            .open()
            .unwrap();
        let witness = Witness::open(
            "quorate.test/quorate-witness/node-1",
            &[1; 32],
            &db,
            dir.path(),
        )
        .unwrap();
        assert_eq!(witness.cosigned("node-2").unwrap(), Some(last));
    }
}
