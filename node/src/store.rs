//! The node's durable key store: sled on disk, every record sealed with
//! XChaCha20-Poly1305 under a random data-encryption key (DEK) that is kept only
//! wrapped by key-encryption keys (KEKs) that never touch the disk next to the data
//! ([`crate::kek`]: a file, an environment variable, a PKCS#11 token).
//!
//! Layout (format 2): tree `meta` holds `format`, `dek-wraps` (the DEK wrapped once
//! per provider, by provider id; any one opens the store) and a sealed `dek-check`
//! that tells a provider that unwraps something else apart from the right one; tree
//! `keys` maps key id -> sealed [`KeyRecord`], bound to its key id and to its epoch
//! (the hash of its manifest, which the node checks against the last activation
//! of the key in its audit log: see [`crate::state`]). `meta/audit-log-key` holds the sealed
//! seed of the node's audit-log signing key ([`KeyStore::audit_log_seed`]), made
//! the first time it is asked for. Tree `revocations` holds the approval tokens
//! approvers revoked ([`KeyStore::revoke_approval`]). The envelope and records change only
//! together, in one sled transaction, so a crash leaves the old keys or the new
//! ones. Every write is flushed before it is acknowledged. Format 1 (records sealed
//! under the KEK itself, a sealed `kek-check`) is upgraded when opened.

use std::fmt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use quorate_frost::SecretKeyPackage;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::error::{storage, NodeError};
use crate::kek::{Dek, KekProvider};

/// Where the sealed seed of the audit-log key is kept in `meta`, and the context
/// it is sealed under.
const LOG_SEED_KEY: &str = "audit-log-key";
const LOG_SEED_CONTEXT: &[u8] = b"audit-log-key";

/// Version byte leading every sealed value but a key record of [`RECORD_SEALED_V2`].
const SEALED_VERSION: u8 = 1;
/// Version byte of a key record sealed under its key id and its epoch: the byte,
/// the SHA-256 of the record's manifest (in the clear, so the epoch can be read
/// without the DEK), then nonce and ciphertext as in [`seal`]. The associated
/// data binds both: a record does not open under another key id, and the epoch it
/// names is the one sealed with it ([`KeyStore::open_record`] also checks that the
/// manifest inside hashes to it).
const RECORD_SEALED_V2: u8 = 2;
/// Store layout, in `meta/format`: version 2 seals records under a DEK kept
/// wrapped in `meta/dek-wraps`.
const STORE_FORMAT: &[u8] = b"quorate-node-store/2";
/// Version 1 sealed records under the KEK itself (upgraded when opened).
const STORE_FORMAT_V1: &[u8] = b"quorate-node-store/1";
/// Version byte of `meta/dek-wraps`.
const WRAPS_VERSION: u8 = 1;
const KEK_CHECK_PLAINTEXT: &[u8] = b"quorate kek check";
const DEK_CHECK_PLAINTEXT: &[u8] = b"quorate dek check";

/// The 32-byte key-encryption key. Zeroized on drop, never printed.
pub struct Kek(Zeroizing<[u8; 32]>);

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

impl Kek {
    /// Parses 64 hex digits.
    pub fn from_hex(hex_digits: &str) -> Result<Self, NodeError> {
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_digits, key.as_mut_slice()).map_err(|_| {
            NodeError::Config("the key-encryption key must be exactly 64 hex digits".into())
        })?;
        Ok(Self(key))
    }

    /// A fresh random KEK as 64 hex digits (for provisioning).
    pub fn generate_hex() -> Zeroizing<String> {
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut_slice());
        Zeroizing::new(hex::encode(key.as_slice()))
    }

    /// A second handle on the same key (for a provider that holds it in memory).
    pub(crate) fn clone_secret(&self) -> Self {
        Self(Zeroizing::new(*self.0))
    }

    pub(crate) fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Seals and opens values under a 32-byte key: the DEK (format 2) or, for reading a
/// store of format 1, the KEK itself.
fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

/// A key share as stored: the public manifest and this node's key package.
#[derive(Clone, Debug)]
pub struct KeyRecord {
    /// Encoded `KeyManifest`.
    pub manifest: Vec<u8>,
    /// This node's key package.
    pub key_package: SecretKeyPackage,
}

impl KeyRecord {
    /// The record's plaintext encoding: the manifest's length (u32, big-endian), the
    /// manifest, then the key package. Secret: it is only ever sealed.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let kp = self.key_package.expose_bytes();
        let mut out = Zeroizing::new(Vec::with_capacity(4 + self.manifest.len() + kp.len()));
        out.extend_from_slice(&(self.manifest.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.manifest);
        out.extend_from_slice(kp);
        out
    }

    /// The record's epoch: the SHA-256 of its manifest as encoded (the manifest's
    /// `hash`).
    pub fn manifest_hash(&self) -> [u8; 32] {
        quorate_wire::sha256(&self.manifest)
    }

    /// Parses [`encode`](Self::encode)'s output. Only the framing is checked here;
    /// the node validates the manifest and key package when it activates the key.
    pub fn decode(bytes: &[u8]) -> Result<Self, NodeError> {
        let truncated = || NodeError::Corrupt("key record is truncated".into());
        let len_bytes: [u8; 4] = bytes
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(truncated)?;
        let end = usize::try_from(u32::from_be_bytes(len_bytes))
            .ok()
            .and_then(|len| len.checked_add(4))
            .ok_or_else(truncated)?;
        let manifest = bytes.get(4..end).ok_or_else(truncated)?.to_vec();
        let key_package = bytes.get(end..).ok_or_else(truncated)?.to_vec();
        Ok(Self {
            manifest,
            key_package: SecretKeyPackage::from_bytes(key_package),
        })
    }
}

/// The sled-backed, encrypted key store.
pub struct KeyStore {
    dir: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    keys: sled::Tree,
    /// Approval tokens revoked by an approver: key id, newline, token id -> the
    /// signed revocation as delivered.
    revocations: sled::Tree,
    /// What refreshes did (public, not sealed): `committed:KEY` -> the setup hash
    /// and manifest hash of the refresh that produced the key's current record;
    /// `abandoned:SETUP` -> empty, for a refresh this node promised never to join.
    refreshes: sled::Tree,
    dek: Dek,
}

/// The name under which a refresh's new share waits in the `keys` tree until every
/// participant has stored its own ([`KeyStore::stage`]): `staged:KEY:SETUP` (a key
/// id holds no `:`), sealed like any record under that name, so a rekey carries it.
fn staged_name(key_id: &str, setup_hash: &[u8; 32]) -> String {
    format!("staged:{key_id}:{}", hex::encode(setup_hash))
}

/// Which refresh made a key's current record.
#[derive(Clone, Debug, PartialEq)]
pub struct CommittedRefresh {
    /// The refresh's setup hash.
    pub setup_hash: [u8; 32],
    /// The manifest it committed.
    pub manifest_hash: [u8; 32],
    /// Every participant's receipt, with which it committed.
    pub receipts: Vec<quorate_wire::pb::Signed>,
}

/// The key id and setup hash of a staged record's name, or `None` for a key's
/// current record.
pub fn parse_staged_name(name: &str) -> Option<(&str, [u8; 32])> {
    let rest = name.strip_prefix("staged:")?;
    let (key_id, setup) = rest.rsplit_once(':')?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(setup, &mut hash).ok()?;
    Some((key_id, hash))
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore").finish_non_exhaustive()
    }
}

/// sled's page cache bound. The store holds keys only (a few pages), but sled's
/// default cache (1 GiB) would let a node's RSS grow with whatever it once read.
const SLED_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// The id of the provider that `kek_file` or `QUORATE_KEK` configures (the two are
/// one key from two sources, so they share the id its wrap is stored under).
pub const LEGACY_KEK_ID: &str = "kek";

/// What opening the store found about its KEK providers.
#[derive(Debug, Default)]
pub struct KekReport {
    /// The provider whose wrap opened the store.
    pub opened_with: String,
    /// Configured providers that could not unwrap the DEK, each with the reason.
    pub unavailable: Vec<(String, String)>,
    /// Ids of providers whose wraps the store holds but the config does not name.
    pub unconfigured: Vec<String>,
    /// The store was of format 1 (sealed under the KEK itself) and was upgraded.
    pub upgraded: bool,
}

type Wraps = Vec<(String, Vec<u8>)>;

impl KeyStore {
    /// Opens (or creates) the store in `dir` with one in-memory KEK (tests, tools).
    /// A store this KEK does not open is refused with [`NodeError::KekUnavailable`].
    pub fn open(dir: &Path, kek: Kek) -> Result<Self, NodeError> {
        Self::open_with(dir, &[KekProvider::key(LEGACY_KEK_ID, kek)]).map(|(store, _)| store)
    }

    /// Opens (or creates) the store in `dir`. Every configured provider is tried;
    /// any one that unwraps the DEK opens the store, and the report names those that
    /// could not. None: [`NodeError::KekUnavailable`] naming each and why. A new
    /// store is created only if every provider can wrap its DEK. A store of format 1
    /// (sealed under a `file`/`env` KEK) is upgraded in place in one transaction:
    /// a crash leaves it either as it was or upgraded.
    pub fn open_with(
        dir: &Path,
        providers: &[KekProvider],
    ) -> Result<(Self, KekReport), NodeError> {
        if providers.is_empty() {
            return Err(NodeError::Config(
                "no key-encryption key provider is configured".into(),
            ));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| storage(format!("cannot create {}: {e}", dir.display())))?;
        discard_partial_snapshots(&dir.join("sled"));
        // Every write is flushed explicitly before it is acknowledged, so sled's
        // background flusher is not needed; without it, dropping the store releases
        // the directory lock at once.
        let db = sled::Config::new()
            .path(dir.join("sled"))
            .flush_every_ms(None)
            .cache_capacity(SLED_CACHE_BYTES)
            .open()
            .map_err(|e| storage(format!("cannot open store in {}: {e}", dir.display())))?;
        let meta = db.open_tree("meta").map_err(storage)?;
        let keys = db.open_tree("keys").map_err(storage)?;
        let revocations = db.open_tree("revocations").map_err(storage)?;
        let refreshes = db.open_tree("refreshes").map_err(storage)?;
        let mut report = KekReport::default();
        let format = meta.get("format").map_err(storage)?;
        let dek = match format.as_deref() {
            // A store with records or wraps but no format marker is damaged, not new:
            // starting over would draw a new DEK and make every record unreadable.
            None if !(meta.is_empty() && keys.is_empty()) => {
                return Err(NodeError::Corrupt(format!(
                    "the store in {} holds data but no format marker; refusing to \
                     create a new one over it (restore it from a backup)",
                    dir.display()
                )))
            }
            None => {
                let dek = Dek::generate();
                let wraps = wrap_under_all(providers, &dek, "cannot create the store")?;
                commit_envelope(&db, &meta, &keys, &dek, &wraps, &[], None)?;
                report.opened_with = describe_all(providers);
                dek
            }
            Some(STORE_FORMAT) => unwrap_dek(&meta, providers, &mut report)?,
            Some(STORE_FORMAT_V1) => {
                report.upgraded = true;
                upgrade_v1(&db, &meta, &keys, providers, &mut report)?
            }
            Some(other) => {
                return Err(NodeError::Corrupt(format!(
                    "unsupported store format {:?}",
                    String::from_utf8_lossy(other)
                )))
            }
        };
        Ok((
            Self {
                dir: dir.to_path_buf(),
                db,
                meta,
                keys,
                revocations,
                refreshes,
                dek,
            },
            report,
        ))
    }

    /// Re-wraps the DEK under exactly `providers` (each must succeed), replacing
    /// every wrap the store held: providers left out can no longer open it. One
    /// atomic write: a crash leaves the old wraps or the new ones.
    pub fn rewrap(&self, providers: &[KekProvider]) -> Result<(), NodeError> {
        let wraps = wrap_under_all(providers, &self.dek, "cannot re-wrap the DEK")?;
        commit_envelope(
            &self.db,
            &self.meta,
            &self.keys,
            &self.dek,
            &wraps,
            &[],
            None,
        )
    }

    /// Re-seals every record under a fresh DEK wrapped under exactly `providers`
    /// (each must succeed), in one transaction with the new wraps: a crash leaves
    /// the old DEK and records or the new ones. Once the old KEKs are destroyed, a
    /// copy of the store from before cannot be opened by anyone.
    pub fn rekey(&mut self, providers: &[KekProvider]) -> Result<(), NodeError> {
        let dek = Dek::generate();
        let wraps = wrap_under_all(providers, &dek, "cannot wrap the new DEK")?;
        let mut records = Vec::new();
        for (key_id, record) in self.load_all()? {
            let sealed = Self::seal_record_under(&dek.0, &key_id, &record)?;
            records.push((key_id, sealed));
        }
        // The log key's seed moves to the new DEK with the records: the node's log
        // keeps its key (auditors hold its attested verifier key).
        let log_seed = match self.stored_log_seed()? {
            Some(seed) => Some(seal(&dek.0, LOG_SEED_CONTEXT, seed.as_slice())?),
            None => None,
        };
        commit_envelope(
            &self.db,
            &self.meta,
            &self.keys,
            &dek,
            &wraps,
            &records,
            log_seed.as_deref(),
        )?;
        self.dek = dek;
        Ok(())
    }

    /// The seed of the node's audit-log signing key, made (at random) and stored
    /// sealed the first time it is asked for. Kept in the store rather than beside
    /// the log, so that deleting or replacing the log does not give it a new key:
    /// an auditor who saved a checkpoint signed by this key can tell the new log
    /// from the old.
    pub fn audit_log_seed(&self) -> Result<Zeroizing<[u8; 32]>, NodeError> {
        if let Some(seed) = self.stored_log_seed()? {
            return Ok(seed);
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(seed.as_mut_slice());
        let sealed = seal(&self.dek.0, LOG_SEED_CONTEXT, seed.as_slice())?;
        let swapped = self
            .meta
            .compare_and_swap(LOG_SEED_KEY, None as Option<&[u8]>, Some(sealed))
            .map_err(storage)?;
        if swapped.is_err() {
            // Made by another caller meanwhile: use that one.
            return self
                .stored_log_seed()?
                .ok_or_else(|| NodeError::Corrupt("meta/audit-log-key vanished".into()));
        }
        self.db.flush().map_err(storage)?;
        Ok(seed)
    }

    fn stored_log_seed(&self) -> Result<Option<Zeroizing<[u8; 32]>>, NodeError> {
        let Some(sealed) = self.meta.get(LOG_SEED_KEY).map_err(storage)? else {
            return Ok(None);
        };
        let plain = open_sealed(&self.dek.0, LOG_SEED_CONTEXT, &sealed)
            .map_err(|_| NodeError::Corrupt("meta/audit-log-key does not authenticate".into()))?;
        let seed: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| NodeError::Corrupt("meta/audit-log-key is not 32 bytes".into()))?;
        Ok(Some(Zeroizing::new(seed)))
    }

    /// The associated data of a record sealed with [`SEALED_VERSION`] (bound to the
    /// key id only): records written before epochs were bound, and format-1 stores.
    fn record_context(key_id: &str) -> Vec<u8> {
        [b"key:".as_slice(), key_id.as_bytes()].concat()
    }

    /// The associated data of a [`RECORD_SEALED_V2`] record: the epoch (fixed
    /// length, first) and the key id.
    fn record_epoch_context(key_id: &str, manifest_hash: &[u8; 32]) -> Vec<u8> {
        [b"key-epoch:".as_slice(), manifest_hash, key_id.as_bytes()].concat()
    }

    /// Seals `record` under `key` as a [`RECORD_SEALED_V2`] record of `key_id`.
    fn seal_record_under(
        key: &[u8; 32],
        key_id: &str,
        record: &KeyRecord,
    ) -> Result<Vec<u8>, NodeError> {
        let epoch = record.manifest_hash();
        let sealed = seal(
            key,
            &Self::record_epoch_context(key_id, &epoch),
            &record.encode(),
        )?;
        // `seal` leads with its own version byte; a record replaces it with its
        // version and epoch.
        Ok([[RECORD_SEALED_V2].as_slice(), &epoch, &sealed[1..]].concat())
    }

    /// The node's data directory, which also holds the audit log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The underlying database (the audit log moves an earlier build's records out
    /// of it).
    pub fn db(&self) -> sled::Db {
        self.db.clone()
    }

    /// Seals `record` as stored under `key_id`: bound to the key id and to the
    /// record's epoch (its manifest's hash), so a sealed record moved under another
    /// id does not open, and the epoch it names cannot be altered.
    pub fn seal_record(&self, key_id: &str, record: &KeyRecord) -> Result<Vec<u8>, NodeError> {
        Self::seal_record_under(&self.dek.0, key_id, record)
    }

    /// Opens a sealed record as read from the `keys` tree. Anything that does not
    /// authenticate under this store's KEK, `key_id` and the epoch it names, or does
    /// not parse, is [`NodeError::Corrupt`] naming the key. Records sealed before
    /// epochs were bound (bound to the key id only) still open; the node seals them
    /// again with their epoch once it has loaded them ([`KeyStore::upgrade_records`]).
    pub fn open_record(&self, key_id: &str, sealed: &[u8]) -> Result<KeyRecord, NodeError> {
        let bad = || NodeError::Corrupt(format!("key record {key_id:?} does not authenticate"));
        let plain = match sealed.split_first() {
            Some((&RECORD_SEALED_V2, rest)) if rest.len() > 32 => {
                let (epoch, body) = rest.split_at(32);
                let epoch: [u8; 32] = epoch.try_into().map_err(|_| bad())?;
                let context = Self::record_epoch_context(key_id, &epoch);
                let as_v1 = [[SEALED_VERSION].as_slice(), body].concat();
                let plain = open_sealed(&self.dek.0, &context, &as_v1).map_err(|_| bad())?;
                let record = KeyRecord::decode(&plain).map_err(|_| {
                    NodeError::Corrupt(format!("key record {key_id:?} is truncated"))
                })?;
                if record.manifest_hash() != epoch {
                    return Err(NodeError::Corrupt(format!(
                        "key record {key_id:?} names another epoch than its manifest's"
                    )));
                }
                return Ok(record);
            }
            _ => open_sealed(&self.dek.0, &Self::record_context(key_id), sealed)
                .map_err(|_| bad())?,
        };
        KeyRecord::decode(&plain)
            .map_err(|_| NodeError::Corrupt(format!("key record {key_id:?} is truncated")))
    }

    /// Seals again, bound to their epochs, the records sealed before epochs were
    /// bound (to their key id only); returns how many. The node calls this once it
    /// has loaded and checked every record.
    ///
    /// No record is ever lost or changed here: each is swapped from exactly the
    /// bytes read to a new sealing of the same plaintext (sled's compare-and-swap,
    /// atomic per record), so a crash leaves it sealed the old way or the new way,
    /// both of which open; one that changed meanwhile (a concurrent install) is left
    /// as it is. Nothing is written unless an old record is found.
    pub fn upgrade_records(&self) -> Result<usize, NodeError> {
        let mut upgraded = 0;
        for item in self.keys.iter() {
            let (k, v) = item.map_err(storage)?;
            if v.first() == Some(&RECORD_SEALED_V2) {
                continue;
            }
            let key_id = String::from_utf8_lossy(&k).into_owned();
            let record = self.open_record(&key_id, &v)?;
            let sealed = self.seal_record(&key_id, &record)?;
            let swapped = self
                .keys
                .compare_and_swap(&k, Some(&v), Some(sealed))
                .map_err(storage)?;
            if swapped.is_ok() {
                upgraded += 1;
            }
        }
        if upgraded > 0 {
            self.db.flush().map_err(storage)?;
        }
        Ok(upgraded)
    }

    /// Seals `record` the way records were sealed before epochs were bound (to the
    /// key id only), for the tests of their upgrade.
    #[doc(hidden)]
    pub fn seal_record_unbound(
        &self,
        key_id: &str,
        record: &KeyRecord,
    ) -> Result<Vec<u8>, NodeError> {
        seal(&self.dek.0, &Self::record_context(key_id), &record.encode())
    }

    /// Stores a new key durably. Refuses to overwrite an existing key id.
    pub fn insert_new(&self, key_id: &str, record: &KeyRecord) -> Result<(), NodeError> {
        let sealed = self.seal_record(key_id, record)?;
        let swapped = self
            .keys
            .compare_and_swap(key_id.as_bytes(), None as Option<&[u8]>, Some(sealed))
            .map_err(storage)?;
        if swapped.is_err() {
            return Err(NodeError::KeyExists(key_id.to_string()));
        }
        self.db.flush().map_err(storage)?;
        Ok(())
    }

    /// Replaces a stored key durably (a refresh). sled's insert swaps the record
    /// atomically: a crash leaves either the old record or the new one.
    pub fn replace(&self, key_id: &str, record: &KeyRecord) -> Result<(), NodeError> {
        let sealed = self.seal_record(key_id, record)?;
        self.keys
            .insert(key_id.as_bytes(), sealed)
            .map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }

    /// Stores an approver's revocation of approval token `token_id` of `key_id`
    /// durably (public: not sealed). Returns false if one was stored already.
    pub fn revoke_approval(
        &self,
        key_id: &str,
        token_id: &str,
        revocation: &[u8],
    ) -> Result<bool, NodeError> {
        let swapped = self
            .revocations
            .compare_and_swap(
                revocation_key(key_id, token_id),
                None as Option<&[u8]>,
                Some(revocation),
            )
            .map_err(storage)?;
        if swapped.is_err() {
            return Ok(false);
        }
        self.db.flush().map_err(storage)?;
        Ok(true)
    }

    /// Every stored revocation: (key id, token id).
    pub fn revocations(&self) -> Result<Vec<(String, String)>, NodeError> {
        let mut out = Vec::new();
        for item in self.revocations.iter() {
            let (k, _) = item.map_err(storage)?;
            let text = String::from_utf8_lossy(&k);
            let (key_id, token_id) = text.split_once('\n').ok_or_else(|| {
                NodeError::Corrupt(format!("revocations: entry {text:?} names no token"))
            })?;
            out.push((key_id.to_string(), token_id.to_string()));
        }
        Ok(out)
    }

    /// Stores a refresh's new share of `key_id` durably beside the current one
    /// (see [`staged_name`]), until [`KeyStore::commit_staged`] or
    /// [`KeyStore::drop_staged`].
    pub fn stage(
        &self,
        key_id: &str,
        setup_hash: &[u8; 32],
        record: &KeyRecord,
    ) -> Result<(), NodeError> {
        let name = staged_name(key_id, setup_hash);
        let sealed = self.seal_record(&name, record)?;
        self.keys.insert(name.as_bytes(), sealed).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }

    /// Makes the staged `record` the key's current one, deletes the old share and
    /// notes which refresh did it, in one transaction: a crash leaves either the
    /// old share current with the new one staged, or the new one current.
    pub fn commit_staged(
        &self,
        key_id: &str,
        setup_hash: &[u8; 32],
        record: &KeyRecord,
        receipts: &[quorate_wire::pb::Signed],
    ) -> Result<(), NodeError> {
        use prost::Message;
        use sled::transaction::{ConflictableTransactionError, Transactional};
        let sealed = self.seal_record(key_id, record)?;
        let staged = staged_name(key_id, setup_hash);
        // The receipts go with the marker: a rerun can finish the refresh on the
        // other nodes from any node that committed, whoever else is missing.
        let receipts = quorate_wire::pb::RefreshStateResponse {
            receipts: receipts.to_vec(),
            ..Default::default()
        }
        .encode_to_vec();
        let committed = [setup_hash.as_slice(), &record.manifest_hash(), &receipts].concat();
        (&self.keys, &self.refreshes)
            .transaction(|(tk, tr)| {
                tk.insert(key_id.as_bytes(), sealed.as_slice())?;
                tk.remove(staged.as_bytes())?;
                tr.insert(
                    format!("committed:{key_id}").as_bytes(),
                    committed.as_slice(),
                )?;
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| storage(format!("cannot commit the refreshed key: {e:?}")))?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }

    /// Deletes a staged share (a refresh rolled back); false if there was none.
    pub fn drop_staged(&self, key_id: &str, setup_hash: &[u8; 32]) -> Result<bool, NodeError> {
        let removed = self
            .keys
            .remove(staged_name(key_id, setup_hash).as_bytes())
            .map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(removed.is_some())
    }

    /// The refresh that made `key_id`'s current record, if a refresh did.
    pub fn committed_refresh(&self, key_id: &str) -> Result<Option<CommittedRefresh>, NodeError> {
        let Some(v) = self
            .refreshes
            .get(format!("committed:{key_id}").as_bytes())
            .map_err(storage)?
        else {
            return Ok(None);
        };
        use prost::Message;
        let damaged = || {
            NodeError::Corrupt(format!(
                "refreshes: the committed refresh of {key_id:?} is damaged"
            ))
        };
        if v.len() < 64 {
            return Err(damaged());
        }
        let (hashes, receipts) = v.split_at(64);
        let (setup, manifest) = hashes.split_at(32);
        let receipts = quorate_wire::pb::RefreshStateResponse::decode(receipts)
            .map_err(|_| damaged())?
            .receipts;
        match (<[u8; 32]>::try_from(setup), <[u8; 32]>::try_from(manifest)) {
            (Ok(setup_hash), Ok(manifest_hash)) => Ok(Some(CommittedRefresh {
                setup_hash,
                manifest_hash,
                receipts,
            })),
            _ => Err(NodeError::Corrupt(format!(
                "refreshes: the committed refresh of {key_id:?} is damaged"
            ))),
        }
    }

    /// Notes, durably, that this node will never join the refresh `setup_hash`.
    pub fn mark_abandoned(&self, setup_hash: &[u8; 32]) -> Result<(), NodeError> {
        self.refreshes
            .insert(
                format!("abandoned:{}", hex::encode(setup_hash)).as_bytes(),
                &[][..],
            )
            .map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }

    /// Whether this node abandoned the refresh `setup_hash`.
    pub fn is_abandoned(&self, setup_hash: &[u8; 32]) -> Result<bool, NodeError> {
        self.refreshes
            .contains_key(format!("abandoned:{}", hex::encode(setup_hash)).as_bytes())
            .map_err(storage)
    }

    /// Deletes a stored key durably.
    pub fn remove(&self, key_id: &str) -> Result<(), NodeError> {
        self.keys.remove(key_id.as_bytes()).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }

    /// Every stored record, decrypted, by name: a key's current record under its key
    /// id, a staged one under [`staged_name`] ([`parse_staged_name`] tells them
    /// apart). A record that does not authenticate is reported as corruption naming
    /// the key; the store is never silently skipped over.
    pub fn load_all(&self) -> Result<Vec<(String, KeyRecord)>, NodeError> {
        let mut out = Vec::new();
        for item in self.keys.iter() {
            let (k, v) = item.map_err(storage)?;
            let key_id = String::from_utf8_lossy(&k).into_owned();
            let record = self.open_record(&key_id, &v)?;
            out.push((key_id, record));
        }
        Ok(out)
    }
}

/// A revocation's key in the `revocations` tree: the key id (which holds no
/// newline), a newline, the token id.
fn revocation_key(key_id: &str, token_id: &str) -> Vec<u8> {
    [key_id.as_bytes(), b"\n", token_id.as_bytes()].concat()
}

fn seal(key: &[u8; 32], context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, NodeError> {
    let mut nonce = [0u8; 24];
    OsRng.fill_bytes(&mut nonce);
    let aad = [b"quorate-sealed/1:".as_slice(), context].concat();
    let ct = cipher(key)
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| storage("encryption failed"))?;
    let mut out = Vec::with_capacity(1 + 24 + ct.len());
    out.push(SEALED_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypts a sealed value; `Err` when it does not authenticate.
fn open_sealed(key: &[u8; 32], context: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, ()> {
    if sealed.len() < 25 || sealed[0] != SEALED_VERSION {
        return Err(());
    }
    let nonce: [u8; 24] = sealed[1..25].try_into().map_err(|_| ())?;
    let aad = [b"quorate-sealed/1:".as_slice(), context].concat();
    cipher(key)
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &sealed[25..],
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| ())
}

fn describe_all(providers: &[KekProvider]) -> String {
    providers
        .iter()
        .map(KekProvider::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

fn failures_message(what: &str, failures: &[(String, String)]) -> String {
    let list = failures
        .iter()
        .map(|(provider, why)| format!("{provider}: {why}"))
        .collect::<Vec<_>>()
        .join("; ");
    format!("{what}: {list}")
}

/// Wraps `dek` under every provider; any failure is an error naming each that failed.
fn wrap_under_all(providers: &[KekProvider], dek: &Dek, what: &str) -> Result<Wraps, NodeError> {
    if providers.is_empty() {
        return Err(NodeError::Config(format!(
            "{what}: no key-encryption key provider is configured"
        )));
    }
    let mut wraps = Vec::new();
    let mut failures = Vec::new();
    for p in providers {
        // A wrap is kept only once it has been seen to open again to the same DEK:
        // a provider that wraps but cannot unwrap (an HSM that picks its own IV, a
        // misconfigured mechanism) would otherwise lock the store at the next start.
        let checked = p.wrap(dek).and_then(|w| {
            let reopened = p.unwrap(&w)?;
            if reopened.0.as_slice() == dek.0.as_slice() {
                Ok(w)
            } else {
                Err("its wrap of the DEK does not unwrap to the same key".to_string())
            }
        });
        match checked {
            Ok(w) => wraps.push((p.id().to_string(), w)),
            Err(why) => failures.push((p.describe(), why)),
        }
    }
    if failures.is_empty() {
        Ok(wraps)
    } else {
        Err(NodeError::KekUnavailable(failures_message(what, &failures)))
    }
}

/// `meta/dek-wraps`: a version byte, then per wrap the id's length (u16 BE), the id,
/// the wrap's length (u32 BE) and the wrap.
fn encode_wraps(wraps: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![WRAPS_VERSION];
    for (id, wrap) in wraps {
        out.extend_from_slice(&(id.len() as u16).to_be_bytes());
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&(wrap.len() as u32).to_be_bytes());
        out.extend_from_slice(wrap);
    }
    out
}

fn decode_wraps(bytes: &[u8]) -> Result<Wraps, NodeError> {
    let bad = || NodeError::Corrupt("meta/dek-wraps does not parse".into());
    let mut rest = match bytes.split_first() {
        Some((&WRAPS_VERSION, rest)) => rest,
        _ => return Err(bad()),
    };
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let head = rest.get(..n)?;
        *rest = rest.get(n..)?;
        Some(head)
    }
    let mut wraps = Vec::new();
    while !rest.is_empty() {
        let len = take(&mut rest, 2).ok_or_else(bad)?;
        let id_len = u16::from_be_bytes([len[0], len[1]]) as usize;
        let id = take(&mut rest, id_len).ok_or_else(bad)?;
        let id = String::from_utf8(id.to_vec()).map_err(|_| bad())?;
        let len = take(&mut rest, 4).ok_or_else(bad)?;
        let wrap_len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        wraps.push((id, take(&mut rest, wrap_len).ok_or_else(bad)?.to_vec()));
    }
    if wraps.is_empty() {
        return Err(bad());
    }
    Ok(wraps)
}

/// Writes the envelope (format, wraps, DEK check) and `records` (already sealed
/// under `dek`) in one sled transaction, drops a format-1 `kek-check`, and flushes.
fn commit_envelope(
    db: &sled::Db,
    meta: &sled::Tree,
    keys: &sled::Tree,
    dek: &Dek,
    wraps: &[(String, Vec<u8>)],
    records: &[(String, Vec<u8>)],
    log_seed: Option<&[u8]>,
) -> Result<(), NodeError> {
    use sled::transaction::{ConflictableTransactionError, Transactional};
    let encoded = encode_wraps(wraps);
    let check = seal(&dek.0, b"dek-check", DEK_CHECK_PLAINTEXT)?;
    (meta, keys)
        .transaction(|(tm, tk)| {
            tm.insert("format", STORE_FORMAT)?;
            tm.insert("dek-wraps", encoded.as_slice())?;
            tm.insert("dek-check", check.as_slice())?;
            tm.remove("kek-check")?;
            for (key_id, sealed) in records {
                tk.insert(key_id.as_bytes(), sealed.as_slice())?;
            }
            if let Some(seed) = log_seed {
                tm.insert(LOG_SEED_KEY, seed)?;
            }
            Ok::<(), ConflictableTransactionError<()>>(())
        })
        .map_err(|e| storage(format!("cannot write the key envelope: {e:?}")))?;
    db.flush().map_err(storage)?;
    Ok(())
}

/// Unwraps the DEK of a format-2 store with every provider that can.
fn unwrap_dek(
    meta: &sled::Tree,
    providers: &[KekProvider],
    report: &mut KekReport,
) -> Result<Dek, NodeError> {
    let wraps = decode_wraps(
        &meta
            .get("dek-wraps")
            .map_err(storage)?
            .ok_or_else(|| NodeError::Corrupt("meta/dek-wraps is missing".into()))?,
    )?;
    let check = meta
        .get("dek-check")
        .map_err(storage)?
        .ok_or_else(|| NodeError::Corrupt("meta/dek-check is missing".into()))?;
    let mut dek = None;
    for p in providers {
        let outcome = match wraps.iter().find(|(id, _)| id == p.id()) {
            None => Err(format!(
                "the store holds no wrap of its DEK under provider {:?} (add one with \
                 `quorate-node kek rotate`)",
                p.id()
            )),
            Some((_, wrap)) => {
                p.unwrap(wrap)
                    .and_then(|d| match open_sealed(&d.0, b"dek-check", &check) {
                        Ok(plain) if plain.as_slice() == DEK_CHECK_PLAINTEXT => Ok(d),
                        _ => Err("unwraps a key that is not this store's DEK".into()),
                    })
            }
        };
        match outcome {
            Ok(d) if dek.is_none() => {
                report.opened_with = p.describe();
                dek = Some(d);
            }
            Ok(_) => {}
            Err(why) => report.unavailable.push((p.describe(), why)),
        }
    }
    report.unconfigured = wraps
        .iter()
        .filter(|(id, _)| !providers.iter().any(|p| p.id() == id))
        .map(|(id, _)| id.clone())
        .collect();
    dek.ok_or_else(|| {
        NodeError::KekUnavailable(failures_message(
            "no key-encryption key provider opens this node's store",
            &report.unavailable,
        ))
    })
}

/// Opens a format-1 store (records sealed under a `file`/`env` KEK itself) and
/// upgrades it in one transaction: a fresh DEK, every record re-sealed under it, the
/// DEK wrapped under each provider that can wrap it (at least the one that opened).
fn upgrade_v1(
    db: &sled::Db,
    meta: &sled::Tree,
    keys: &sled::Tree,
    providers: &[KekProvider],
    report: &mut KekReport,
) -> Result<Dek, NodeError> {
    let check = meta
        .get("kek-check")
        .map_err(storage)?
        .ok_or_else(|| NodeError::Corrupt("meta/kek-check is missing".into()))?;
    let mut legacy = None;
    let mut failures = Vec::new();
    for p in providers {
        match p.legacy_key() {
            None => failures.push((
                p.describe(),
                "this store is of format 1, sealed under a file or env KEK; configure \
                 that KEK to open and upgrade it"
                    .to_string(),
            )),
            Some(Err(why)) => failures.push((p.describe(), why)),
            Some(Ok(kek)) => match open_sealed(kek.expose(), b"kek-check", &check) {
                Ok(plain) if plain.as_slice() == KEK_CHECK_PLAINTEXT => {
                    legacy = Some((p.describe(), kek));
                    break;
                }
                _ => failures.push((
                    p.describe(),
                    "this key does not open the store (wrong KEK, or the store belongs \
                     to another node)"
                        .to_string(),
                )),
            },
        }
    }
    let Some((opened_with, kek)) = legacy else {
        return Err(NodeError::KekUnavailable(failures_message(
            "no key-encryption key provider opens this node's store",
            &failures,
        )));
    };
    let dek = Dek::generate();
    let mut records = Vec::new();
    for item in keys.iter() {
        let (k, v) = item.map_err(storage)?;
        let key_id = String::from_utf8_lossy(&k).into_owned();
        let context = KeyStore::record_context(&key_id);
        let plain = open_sealed(kek.expose(), &context, &v).map_err(|_| {
            NodeError::Corrupt(format!("key record {key_id:?} does not authenticate"))
        })?;
        let record = KeyRecord::decode(&plain)
            .map_err(|_| NodeError::Corrupt(format!("key record {key_id:?} is truncated")))?;
        records.push((
            key_id.clone(),
            KeyStore::seal_record_under(&dek.0, &key_id, &record)?,
        ));
    }
    let mut wraps = Vec::new();
    for p in providers {
        match p.wrap(&dek) {
            Ok(w) => wraps.push((p.id().to_string(), w)),
            Err(why) => report.unavailable.push((p.describe(), why)),
        }
    }
    if wraps.is_empty() {
        return Err(NodeError::KekUnavailable(failures_message(
            "cannot upgrade the store: no provider wraps its new DEK",
            &report.unavailable,
        )));
    }
    // A format-1 store predates the audit log key: there is no seed to carry over.
    commit_envelope(db, meta, keys, &dek, &wraps, &records, None)?;
    report.opened_with = opened_with;
    Ok(dek)
}

/// Deletes the snapshot files sled left half-written in `sled_dir` by a process
/// killed while writing one. sled 0.34 writes a snapshot as `snap.<lsn>.generating`
/// and renames it when complete, but does not skip such files when it opens: the
/// newest name wins, a partial file reads as no snapshot, and recovering the log
/// from its start can then fail ("Read corrupted data", spacejam/sled#1527),
/// leaving the node unable to open its store. A `.generating` file is never a
/// complete snapshot, so deleting it loses nothing, but only while no process
/// holds the store's lock (sled's, on `db`): a running store may be writing one.
/// Best effort: whatever stands in the way is left to sled's open to report.
fn discard_partial_snapshots(sled_dir: &Path) {
    let Ok(lock) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(sled_dir.join("db"))
    else {
        return;
    };
    if lock.try_lock().is_err() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(sled_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::warn!(
                    file = %entry.path().display(),
                    "deleted a half-written store snapshot (a process was killed while writing it)"
                ),
                Err(e) => tracing::warn!(
                    file = %entry.path().display(),
                    "cannot delete a half-written store snapshot: {e}"
                ),
            }
        }
    }
}

/// Opens one tree (`keys`, `meta`) of a stopped node's store directly, for offline
/// inspection and for drills that damage a store on purpose.
pub fn open_offline_tree(data_dir: &Path, tree: &str) -> Result<sled::Tree, NodeError> {
    discard_partial_snapshots(&data_dir.join("sled"));
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

    fn kek(byte: u8) -> Kek {
        Kek::from_hex(&hex::encode([byte; 32])).unwrap()
    }

    /// Reopens a store this process just dropped. sled releases its file lock from
    /// background threads shortly after the last handle is dropped, so an immediate
    /// reopen in the same process can find the lock still held (a restarted node
    /// process never does: the old process is gone).
    fn reopen(dir: &Path, byte: u8) -> Result<KeyStore, NodeError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match KeyStore::open(dir, kek(byte)) {
                Err(NodeError::Storage(m))
                    if m.contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn record() -> KeyRecord {
        KeyRecord {
            manifest: b"manifest".to_vec(),
            key_package: SecretKeyPackage::from_bytes(b"secret share bytes".to_vec()),
        }
    }

    #[test]
    fn records_survive_reopen_and_are_not_stored_in_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = KeyStore::open(dir.path(), kek(1)).unwrap();
            store.insert_new("k1", &record()).unwrap();
        }
        let store = reopen(dir.path(), 1).unwrap();
        let all = store.load_all().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1.key_package.expose_bytes(), b"secret share bytes");
        drop(store);
        for entry in walk(dir.path()) {
            let bytes = std::fs::read(&entry).unwrap();
            assert!(
                !bytes.windows(18).any(|w| w == b"secret share bytes"),
                "plaintext share in {}",
                entry.display()
            );
        }
    }

    /// What a process killed while sled wrote a snapshot leaves (the first half
    /// of a snapshot as `snap.<lsn>.generating`, named past every complete one)
    /// made the next open fail with "Read corrupted data"; it is deleted at the
    /// next open, which finds every record, and left alone while another process
    /// holds the store (it may be writing one).
    #[test]
    fn a_snapshot_half_written_by_a_killed_process_is_discarded_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..2 {
            let store = reopen(dir.path(), 1).unwrap();
            for i in 0..3 {
                store
                    .insert_new(&format!("k{round}-{i}"), &record())
                    .unwrap();
            }
        }
        let sled_dir = dir.path().join("sled");
        let newest = std::fs::read_dir(&sled_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("snap.")
            })
            .max()
            .expect("sled wrote a snapshot");
        let snapshot = std::fs::read(newest).unwrap();
        let partial = sled_dir.join("snap.FFFFFFFFFFFFFFFF.generating");
        std::fs::write(&partial, &snapshot[..snapshot.len() / 2]).unwrap();
        let store = reopen(dir.path(), 1).unwrap();
        assert!(!partial.exists(), "the partial snapshot is still there");
        assert_eq!(store.load_all().unwrap().len(), 6);
        // While the store is open, a file of that name is left alone.
        std::fs::write(&partial, &snapshot[..snapshot.len() / 2]).unwrap();
        discard_partial_snapshots(&sled_dir);
        assert!(partial.exists(), "deleted under a running store");
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn wrong_kek_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        KeyStore::open(dir.path(), kek(1)).unwrap();
        let result = reopen(dir.path(), 2);
        assert!(
            matches!(result, Err(NodeError::KekUnavailable(ref m)) if m.contains("wrong KEK")),
            "{result:?}"
        );
    }

    fn providers(spec: &[(&str, u8)]) -> Vec<KekProvider> {
        spec.iter()
            .map(|(id, byte)| KekProvider::key(*id, kek(*byte)))
            .collect()
    }

    /// Opens with `providers`, retrying while this process's last handle still
    /// holds sled's lock (see [`reopen`]).
    fn reopen_with(
        dir: &Path,
        providers: &[KekProvider],
    ) -> Result<(KeyStore, KekReport), NodeError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match KeyStore::open_with(dir, providers) {
                Err(NodeError::Storage(m))
                    if m.contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    #[test]
    fn any_one_of_two_providers_opens_the_store_and_the_missing_one_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) =
                KeyStore::open_with(dir.path(), &providers(&[("a", 1), ("b", 2)])).unwrap();
            store.insert_new("k1", &record()).unwrap();
        }
        // "b" is now another key: "a" alone opens, and "b" is named as unavailable.
        let (store, report) = reopen_with(dir.path(), &providers(&[("a", 1), ("b", 9)])).unwrap();
        assert_eq!(store.load_all().unwrap().len(), 1);
        assert_eq!(report.unavailable.len(), 1, "{report:?}");
        assert!(report.unavailable[0].0.contains("\"b\""), "{report:?}");
        drop(store);
        let (store, _) = reopen_with(dir.path(), &providers(&[("b", 2)])).unwrap();
        assert_eq!(store.load_all().unwrap().len(), 1);
        drop(store);
        let err = reopen_with(dir.path(), &providers(&[("a", 7), ("c", 2)])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("\"a\"") && msg.contains("\"c\"") && msg.contains("no wrap"),
            "{msg}"
        );
        assert_eq!(err.exit_code(), 64);
    }

    #[test]
    fn a_store_is_not_created_unless_every_provider_wraps_its_dek() {
        let dir = tempfile::tempdir().unwrap();
        let mut keks = providers(&[("a", 1)]);
        keks.push(KekProvider::file("f", dir.path().join("missing.hex")));
        let err = KeyStore::open_with(&dir.path().join("store"), &keks).unwrap_err();
        assert!(err.to_string().contains("missing.hex"), "{err}");
        assert_eq!(err.exit_code(), 64);
    }

    #[test]
    fn a_format_1_store_is_upgraded_in_place_and_keeps_its_records() {
        let dir = tempfile::tempdir().unwrap();
        {
            // A store as the first format wrote it: records sealed under the KEK.
            let db = sled::Config::new()
                .path(dir.path().join("sled"))
                .open()
                .unwrap();
            let meta = db.open_tree("meta").unwrap();
            let keys = db.open_tree("keys").unwrap();
            let old = kek(1);
            meta.insert("format", STORE_FORMAT_V1).unwrap();
            meta.insert(
                "kek-check",
                seal(old.expose(), b"kek-check", KEK_CHECK_PLAINTEXT).unwrap(),
            )
            .unwrap();
            let sealed = seal(
                old.expose(),
                &KeyStore::record_context("k1"),
                &record().encode(),
            )
            .unwrap();
            keys.insert("k1", sealed).unwrap();
            db.flush().unwrap();
        }
        let err = reopen_with(dir.path(), &providers(&[(LEGACY_KEK_ID, 2)])).unwrap_err();
        assert!(err.to_string().contains("wrong KEK"), "{err}");
        let (store, report) =
            reopen_with(dir.path(), &providers(&[(LEGACY_KEK_ID, 1), ("new", 3)])).unwrap();
        assert!(report.upgraded);
        assert_eq!(
            store.load_all().unwrap()[0].1.key_package.expose_bytes(),
            b"secret share bytes"
        );
        drop(store);
        // Upgraded: the new provider alone opens it, and the records moved to the DEK.
        let (store, report) = reopen_with(dir.path(), &providers(&[("new", 3)])).unwrap();
        assert!(!report.upgraded);
        assert_eq!(store.load_all().unwrap().len(), 1);
    }

    #[test]
    fn rewrap_replaces_the_providers_and_after_rekey_only_the_old_kek_opens_an_old_copy() {
        let dir = tempfile::tempdir().unwrap();
        let copy = tempfile::tempdir().unwrap();
        {
            let (store, _) = KeyStore::open_with(dir.path(), &providers(&[("old", 1)])).unwrap();
            store.insert_new("k1", &record()).unwrap();
        }
        // A backup taken while "old" was the only KEK.
        copy_dir(&dir.path().join("sled"), &copy.path().join("sled"));
        {
            let (store, _) = reopen_with(dir.path(), &providers(&[("old", 1)])).unwrap();
            store.rewrap(&providers(&[("old", 1), ("new", 2)])).unwrap();
        }
        let (mut store, _) = reopen_with(dir.path(), &providers(&[("new", 2)])).unwrap();
        store.rekey(&providers(&[("new", 2)])).unwrap();
        assert_eq!(store.load_all().unwrap().len(), 1);
        drop(store);
        let err = reopen_with(dir.path(), &providers(&[("old", 1)])).unwrap_err();
        assert!(err.to_string().contains("no wrap"), "{err}");
        let (store, _) = reopen_with(dir.path(), &providers(&[("new", 2)])).unwrap();
        assert_eq!(
            store.load_all().unwrap()[0].1.key_package.expose_bytes(),
            b"secret share bytes"
        );
        drop(store);
        // The backup opens under "old" alone: destroying "old" shreds it.
        let err = reopen_with(copy.path(), &providers(&[("new", 2)])).unwrap_err();
        assert!(matches!(err, NodeError::KekUnavailable(_)), "{err:?}");
        assert!(reopen_with(copy.path(), &providers(&[("old", 1)])).is_ok());
    }

    #[test]
    fn the_audit_log_seed_is_made_once_and_survives_reopen_and_rekey() {
        let dir = tempfile::tempdir().unwrap();
        let seed = {
            let (store, _) = KeyStore::open_with(dir.path(), &providers(&[("old", 1)])).unwrap();
            let seed = store.audit_log_seed().unwrap();
            assert_eq!(
                *store.audit_log_seed().unwrap(),
                *seed,
                "asked twice, made once"
            );
            seed
        };
        let (mut store, _) = reopen_with(dir.path(), &providers(&[("old", 1)])).unwrap();
        assert_eq!(*store.audit_log_seed().unwrap(), *seed);
        store.rekey(&providers(&[("new", 2)])).unwrap();
        assert_eq!(*store.audit_log_seed().unwrap(), *seed);
        drop(store);
        let (store, _) = reopen_with(dir.path(), &providers(&[("new", 2)])).unwrap();
        assert_eq!(
            *store.audit_log_seed().unwrap(),
            *seed,
            "sealed under the new DEK"
        );
        // Not on disk in the clear.
        drop(store);
        let meta = open_offline_tree(dir.path(), "meta").unwrap();
        let sealed = meta.get(LOG_SEED_KEY).unwrap().unwrap();
        assert!(!sealed.windows(32).any(|w| w == seed.as_slice()));
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.path().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    #[test]
    fn a_store_that_lost_its_format_marker_is_refused_not_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let store = KeyStore::open(dir.path(), kek(1)).unwrap();
            store.insert_new("k1", &record()).unwrap();
            store.meta.remove("format").unwrap();
            store.db.flush().unwrap();
            "k1"
        };
        let result = reopen(dir.path(), 1);
        assert!(
            matches!(result, Err(NodeError::Corrupt(ref m)) if m.contains("no format marker")),
            "{result:?}"
        );
        // Nothing was overwritten: with the marker back, the record opens again.
        let store = sled::open(dir.path().join("sled")).unwrap();
        store
            .open_tree("meta")
            .unwrap()
            .insert("format", STORE_FORMAT)
            .unwrap();
        store.flush().unwrap();
        drop(store);
        let reopened = reopen(dir.path(), 1).unwrap();
        assert_eq!(reopened.load_all().unwrap()[0].0, id);
    }

    #[test]
    fn a_record_sealed_before_epochs_were_bound_opens_and_is_sealed_again_with_its_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path(), kek(1)).unwrap();
        let old = store.seal_record_unbound("k1", &record()).unwrap();
        store.keys.insert("k1", old.as_slice()).unwrap();
        store.insert_new("k2", &record()).unwrap();
        assert_eq!(store.load_all().unwrap().len(), 2);
        assert_eq!(store.upgrade_records().unwrap(), 1, "k1 only");
        let sealed = store.keys.get("k1").unwrap().unwrap();
        assert_eq!(sealed[0], RECORD_SEALED_V2);
        assert_eq!(&sealed[1..33], &record().manifest_hash());
        assert_eq!(
            store.load_all().unwrap()[0].1.key_package.expose_bytes(),
            b"secret share bytes"
        );
        assert_eq!(store.upgrade_records().unwrap(), 0, "nothing left to do");
    }

    #[test]
    fn a_record_naming_another_epoch_or_moved_to_another_key_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path(), kek(1)).unwrap();
        let sealed = store.seal_record("k1", &record()).unwrap();
        let mut other_epoch = sealed.clone();
        other_epoch[1] ^= 1;
        for (key_id, bytes) in [("k1", &other_epoch), ("k2", &sealed)] {
            let err = store.open_record(key_id, bytes).unwrap_err();
            assert!(err.to_string().contains("does not authenticate"), "{err}");
        }
        assert!(store.open_record("k1", &sealed).is_ok());
    }

    #[test]
    fn existing_key_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path(), kek(1)).unwrap();
        store.insert_new("k1", &record()).unwrap();
        assert!(matches!(
            store.insert_new("k1", &record()),
            Err(NodeError::KeyExists(_))
        ));
    }

    #[test]
    fn kek_must_be_64_hex_digits() {
        assert!(Kek::from_hex("abcd").is_err());
        assert!(Kek::from_hex(&"zz".repeat(32)).is_err());
        assert_eq!(format!("{:?}", kek(7)), "Kek(<redacted>)");
    }
}
