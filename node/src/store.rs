//! The node's durable key store: sled on disk, every record sealed with
//! XChaCha20-Poly1305 under a key-encryption key (KEK) that never touches the disk
//! next to the data.
//!
//! Layout: tree `meta` holds `format` and a sealed `kek-check` value that tells a
//! wrong KEK apart from corruption at startup; tree `keys` maps key id -> sealed
//! [`KeyRecord`]. Every write is flushed before it is acknowledged.

use std::fmt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use quorate_frost::SecretKeyPackage;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::error::{storage, NodeError};

/// Version byte leading every sealed value.
const SEALED_VERSION: u8 = 1;
/// Store layout version, in `meta/format`.
const STORE_FORMAT: &[u8] = b"quorate-node-store/1";
const KEK_CHECK_PLAINTEXT: &[u8] = b"quorate kek check";

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

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_slice().into())
    }
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
    keys: sled::Tree,
    kek: Kek,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore").finish_non_exhaustive()
    }
}

/// sled's page cache bound. The store holds keys only (a few pages), but sled's
/// default cache (1 GiB) would let a node's RSS grow with whatever it once read.
const SLED_CACHE_BYTES: u64 = 8 * 1024 * 1024;

impl KeyStore {
    /// Opens (or creates) the store in `dir`. A store sealed under another KEK is
    /// refused with [`NodeError::WrongKek`].
    pub fn open(dir: &Path, kek: Kek) -> Result<Self, NodeError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| storage(format!("cannot create {}: {e}", dir.display())))?;
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
        let store = Self {
            dir: dir.to_path_buf(),
            db,
            keys,
            kek,
        };
        match meta.get("format").map_err(storage)? {
            None => {
                meta.insert("format", STORE_FORMAT).map_err(storage)?;
                meta.insert("kek-check", store.seal(b"kek-check", KEK_CHECK_PLAINTEXT)?)
                    .map_err(storage)?;
                store.db.flush().map_err(storage)?;
            }
            Some(format) if format.as_ref() == STORE_FORMAT => {
                let check = meta
                    .get("kek-check")
                    .map_err(storage)?
                    .ok_or_else(|| NodeError::Corrupt("meta/kek-check is missing".into()))?;
                match store.open_sealed(b"kek-check", &check) {
                    Ok(p) if p.as_slice() == KEK_CHECK_PLAINTEXT => {}
                    _ => return Err(NodeError::WrongKek),
                }
            }
            Some(other) => {
                return Err(NodeError::Corrupt(format!(
                    "unsupported store format {:?}",
                    String::from_utf8_lossy(&other)
                )))
            }
        }
        Ok(store)
    }

    fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, NodeError> {
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let aad = [b"quorate-sealed/1:".as_slice(), context].concat();
        let ct = self
            .kek
            .cipher()
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

    /// Decrypts a sealed value; `None` when it does not authenticate.
    fn open_sealed(&self, context: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, ()> {
        if sealed.len() < 25 || sealed[0] != SEALED_VERSION {
            return Err(());
        }
        let nonce: [u8; 24] = sealed[1..25].try_into().map_err(|_| ())?;
        let aad = [b"quorate-sealed/1:".as_slice(), context].concat();
        self.kek
            .cipher()
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

    fn record_context(key_id: &str) -> Vec<u8> {
        [b"key:".as_slice(), key_id.as_bytes()].concat()
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

    /// Seals `record` as stored under `key_id`: bound to the key id, so a sealed
    /// record moved under another id does not open.
    pub fn seal_record(&self, key_id: &str, record: &KeyRecord) -> Result<Vec<u8>, NodeError> {
        self.seal(&Self::record_context(key_id), &record.encode())
    }

    /// Opens a sealed record as read from the `keys` tree. Anything that does not
    /// authenticate under this store's KEK and `key_id`, or does not parse, is
    /// [`NodeError::Corrupt`] naming the key.
    pub fn open_record(&self, key_id: &str, sealed: &[u8]) -> Result<KeyRecord, NodeError> {
        let plain = self
            .open_sealed(&Self::record_context(key_id), sealed)
            .map_err(|_| {
                NodeError::Corrupt(format!("key record {key_id:?} does not authenticate"))
            })?;
        KeyRecord::decode(&plain)
            .map_err(|_| NodeError::Corrupt(format!("key record {key_id:?} is truncated")))
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
        let sealed = self.seal(&Self::record_context(key_id), &record.encode())?;
        self.keys
            .insert(key_id.as_bytes(), sealed)
            .map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }

    /// Deletes a stored key durably.
    pub fn remove(&self, key_id: &str) -> Result<(), NodeError> {
        self.keys.remove(key_id.as_bytes()).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }

    /// Every stored key, decrypted. A record that does not authenticate is reported
    /// as corruption naming the key; the store is never silently skipped over.
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
        assert!(matches!(result, Err(NodeError::WrongKek)), "{result:?}");
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
