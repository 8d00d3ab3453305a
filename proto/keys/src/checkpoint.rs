//! Signed checkpoints of a node's audit log, in the C2SP formats that transparency
//! logs share (c2sp.org/tlog-checkpoint, c2sp.org/signed-note): the checkpoint is
//! the note text
//!
//! ```text
//! <origin>
//! <tree size, decimal>
//! <root hash, standard base64>
//! ```
//!
//! followed by an empty line and one signature line per signer,
//! `— <key name> <base64(key id || Ed25519 signature)>`, the signature over the
//! text (each line with its newline). The key id is the first 4 bytes of
//! `SHA-256(key name || 0x0A || 0x01 || public key)`; the verifier key is written
//! `<name>+<hex key id>+<base64(0x01 || public key)>`.
//!
//! A node's log key is an Ed25519 key of its own, named by the log's origin
//! ([`origin`]); the node attests its verifier key with its certificate, so an
//! auditor trusts a checkpoint because the node's CA-issued identity vouched for the
//! key that signed it. Shared by the node (signing) and auditors (verifying).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

use crate::merkle::Hash;

/// The statement kind under which a node attests its log's verifier key.
pub const LOG_KEY_STATEMENT: &str = "audit-log-key";

/// Signature type byte of Ed25519 in the signed-note format.
/// Most signature lines a note may carry.
const MAX_SIGNATURE_LINES: usize = 100;
const ED25519_TYPE: u8 = 0x01;

/// The origin (and log key name) of node `node_id`'s audit log in `trust_domain`.
pub fn origin(trust_domain: &str, node_id: &str) -> String {
    format!("{trust_domain}/quorate-audit/{node_id}")
}

/// Why a checkpoint or verifier key is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The text is not a checkpoint or signed note as specified.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// The verifier key does not parse.
    #[error("malformed verifier key: {0}")]
    BadKey(String),
    /// No signature by the expected key verifies.
    #[error("the checkpoint carries no valid signature by {0}")]
    NotSigned(String),
}

/// A checkpoint: a log's origin, size and root hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// Records in the tree.
    pub size: u64,
    /// The tree's root hash.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text (three lines, each ending in a newline).
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses the note text of a checkpoint.
    pub fn parse_text(text: &str) -> Result<Self, CheckpointError> {
        let bad = |m: &str| CheckpointError::Malformed(m.to_string());
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("text does not end in a newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root] = lines[..] else {
            return Err(bad("expected exactly origin, size and root hash lines"));
        };
        if origin.is_empty() {
            return Err(bad("empty origin"));
        }
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || size.starts_with("0") && size.len() > 1
        {
            return Err(bad(
                "tree size is not a decimal number without leading zeros",
            ));
        }
        let size = size.parse().map_err(|_| bad("tree size out of range"))?;
        let root: Hash = B64
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| bad("root hash is not 32 bytes of base64"))?;
        Ok(Self {
            origin: origin.to_string(),
            size,
            root,
        })
    }
}

/// A signed-note key id: the first 4 bytes of
/// `SHA-256(key name || 0x0A || signature type || public key)`.
pub(crate) fn note_key_id(name: &str, signature_type: u8, public: &[u8; 32]) -> [u8; 4] {
    let mut buf = Vec::with_capacity(name.len() + 34);
    buf.extend_from_slice(name.as_bytes());
    buf.push(b'\n');
    buf.push(signature_type);
    buf.extend_from_slice(public);
    let h = quorate_wire::sha256(&buf);
    [h[0], h[1], h[2], h[3]]
}

/// Parses a signed-note verifier key `<name>+<hex key id>+<base64(type || key)>`
/// of signature type `signature_type` (described as `kind` in errors): its name,
/// key id and Ed25519 key. A small-order key is refused: under one anyone can make
/// a signature that verifies (and a signer could disown its own).
pub(crate) fn parse_verifier_key(
    vkey: &str,
    signature_type: u8,
    kind: &str,
) -> Result<(String, [u8; 4], VerifyingKey), CheckpointError> {
    let bad = |m: &str| CheckpointError::BadKey(m.to_string());
    // The base64 key may hold '+' itself: only the first two separate.
    let mut parts = vkey.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected <name>+<key id>+<key>"));
    };
    if !valid_name(name) {
        return Err(bad("invalid key name"));
    }
    let not_kind = || {
        bad(&format!(
            "not {kind} (type {signature_type:#04x}, 32 bytes)"
        ))
    };
    let typed = B64.decode(key).map_err(|_| bad("key is not base64"))?;
    let Some((&found, rest)) = typed.split_first() else {
        return Err(not_kind());
    };
    let Ok(public) = <[u8; 32]>::try_from(rest) else {
        return Err(not_kind());
    };
    if found != signature_type {
        return Err(not_kind());
    }
    let key = VerifyingKey::from_bytes(&public).map_err(|_| bad("not an Ed25519 point"))?;
    if key.is_weak() {
        return Err(bad("a small-order Ed25519 key"));
    }
    let expected = note_key_id(name, signature_type, &public);
    if hex::decode(id).ok().as_deref() != Some(&expected[..]) {
        return Err(bad("key id does not match the key"));
    }
    Ok((name.to_string(), expected, key))
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// A named signed-note signing key of one signature type: a log key (type 0x01)
/// or a witness key (0x04, [`crate::cosignature`]).
pub(crate) struct NoteKey {
    pub(crate) name: String,
    signature_type: u8,
    key: SigningKey,
}

impl std::fmt::Debug for NoteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteKey")
            .field("name", &self.name)
            .field("signature_type", &self.signature_type)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl NoteKey {
    /// The key named `name` from its 32-byte seed.
    pub(crate) fn from_seed(
        name: &str,
        signature_type: u8,
        seed: &[u8; 32],
    ) -> Result<Self, CheckpointError> {
        if !valid_name(name) {
            return Err(CheckpointError::BadKey(format!(
                "key name {name:?} is empty or holds a space or '+'"
            )));
        }
        Ok(Self {
            name: name.to_string(),
            signature_type,
            key: SigningKey::from_bytes(seed),
        })
    }

    /// The key id, as its signature lines and verifier key carry it.
    pub(crate) fn key_id(&self) -> [u8; 4] {
        note_key_id(
            &self.name,
            self.signature_type,
            &self.key.verifying_key().to_bytes(),
        )
    }

    /// The verifier key, `<name>+<hex key id>+<base64(type || public key)>`.
    pub(crate) fn verifier_key(&self) -> String {
        let mut typed = vec![self.signature_type];
        typed.extend_from_slice(&self.key.verifying_key().to_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id()),
            B64.encode(typed)
        )
    }

    /// The Ed25519 signature of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// A log's signing key.
#[derive(Debug)]
pub struct LogSigner(NoteKey);

impl LogSigner {
    /// The key named `name` (the log's origin) from its 32-byte seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, CheckpointError> {
        NoteKey::from_seed(name, ED25519_TYPE, seed).map(Self)
    }

    /// The verifier key, `<name>+<hex key id>+<base64(0x01 || public key)>`.
    pub fn verifier_key(&self) -> String {
        self.0.verifier_key()
    }

    /// The signed note of `checkpoint`.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        let text = checkpoint.text();
        let mut blob = self.0.key_id().to_vec();
        blob.extend_from_slice(&self.0.sign(text.as_bytes()));
        format!("{text}\n\u{2014} {} {}\n", self.0.name, B64.encode(blob))
    }
}

/// A log's verifier key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl LogVerifier {
    /// Parses a verifier key as [`LogSigner::verifier_key`] writes it.
    pub fn parse(vkey: &str) -> Result<Self, CheckpointError> {
        let (name, id, key) = parse_verifier_key(vkey, ED25519_TYPE, "an Ed25519 key")?;
        Ok(Self { name, id, key })
    }

    /// The key's name (a log key is named by its log's origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Verifies the signed note `note` and returns its checkpoint, which must name
    /// this key's name as origin. Signature lines of other keys are ignored.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let text = self.verify_note(note)?;
        let checkpoint = Checkpoint::parse_text(text)?;
        if checkpoint.origin != self.name {
            return Err(CheckpointError::Malformed(
                "origin is not the log key's name".into(),
            ));
        }
        Ok(checkpoint)
    }

    /// Verifies that `note` is a signed note with a valid signature by this key,
    /// and returns its text.
    pub fn verify_note<'a>(&self, note: &'a str) -> Result<&'a str, CheckpointError> {
        let bad = |m: &str| CheckpointError::Malformed(m.to_string());
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| bad("no blank line before the signatures"))?;
        let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
        let signatures = signatures
            .strip_suffix('\n')
            .ok_or_else(|| bad("signatures do not end in a newline"))?;
        let mut verified = false;
        // As Go's note package: a note with more signature lines is refused
        // rather than paid for in signature checks.
        if signatures.split('\n').count() > MAX_SIGNATURE_LINES {
            return Err(bad("more than 100 signature lines"));
        }
        for line in signatures.split('\n') {
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or_else(|| bad("a signature line does not start with an em dash"))?;
            let (name, blob) = rest
                .split_once(' ')
                .ok_or_else(|| bad("a signature line has no signature"))?;
            let blob = B64
                .decode(blob)
                .map_err(|_| bad("a signature is not base64"))?;
            if name != self.name || blob.len() != 68 || blob[..4] != self.id {
                continue;
            }
            let Ok(signature) = <[u8; 64]>::try_from(&blob[4..]) else {
                continue;
            };
            let signature = ed25519_dalek::Signature::from_bytes(&signature);
            if self.key.verify_strict(text.as_bytes(), &signature).is_ok() {
                verified = true;
            }
        }
        if !verified {
            return Err(CheckpointError::NotSigned(self.name.clone()));
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> LogSigner {
        LogSigner::from_seed("quorate.test/quorate-audit/node-1", &[7u8; 32]).expect("valid name")
    }

    #[test]
    fn a_signed_checkpoint_verifies_under_its_verifier_key_and_round_trips() {
        let signer = signer();
        let checkpoint = Checkpoint {
            origin: "quorate.test/quorate-audit/node-1".into(),
            size: 42,
            root: [9u8; 32],
        };
        let note = signer.sign(&checkpoint);
        let verifier = LogVerifier::parse(&signer.verifier_key()).expect("parses");
        assert_eq!(verifier.verify(&note).expect("verifies"), checkpoint);
        assert!(note.starts_with("quorate.test/quorate-audit/node-1\n42\nCQkJ"));
    }

    #[test]
    fn a_changed_size_or_root_or_a_foreign_key_does_not_verify() {
        let signer = signer();
        let checkpoint = Checkpoint {
            origin: "quorate.test/quorate-audit/node-1".into(),
            size: 42,
            root: [9u8; 32],
        };
        let note = signer.sign(&checkpoint);
        let verifier = LogVerifier::parse(&signer.verifier_key()).expect("parses");
        let grown = note.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(
            verifier.verify(&grown),
            Err(CheckpointError::NotSigned(verifier.name().into()))
        );
        let other = LogSigner::from_seed("quorate.test/quorate-audit/node-1", &[8u8; 32])
            .expect("valid name");
        assert!(matches!(
            verifier.verify(&other.sign(&checkpoint)),
            Err(CheckpointError::NotSigned(_))
        ));
    }

    /// The Go checksum database's published verifier key and a checkpoint it
    /// signed: made by another implementation (golang.org/x/mod/sumdb/note), so
    /// this verifies our key ids, note parsing and signature check against it.
    #[test]
    fn a_checkpoint_signed_by_the_go_checksum_database_verifies() {
        let vkey = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
        let note = "go.sum database tree\n65664258\nWVVNVD2qx+fTq31zkj6UAqxT5X6HvGphGM+o8Thnbsg=\n\n\
            \u{2014} sum.golang.org Az3grligJmgX7KGyGPKybykNTh3VgsbLvUuvOwrM5zLVlulmFp2wdvbxOw74/gcNxURShXEpb7RXcs3+BYflYN+w0gQ=\n";
        let verifier = LogVerifier::parse(vkey).expect("the key id matches");
        let text = verifier.verify_note(note).expect("Go's signature verifies");
        let checkpoint = Checkpoint::parse_text(text).expect("a checkpoint");
        assert_eq!(checkpoint.origin, "go.sum database tree");
        assert_eq!(checkpoint.size, 65664258);
        assert!(verifier
            .verify_note(&note.replace("65664258", "65664259"))
            .is_err());
        assert!(LogVerifier::parse(&vkey.replace("+033de0ae+", "+033de0af+")).is_err());
    }

    /// Verifier keys a malicious node might attest: an empty, short or long key
    /// part, another type, a small-order key: each refused, none panics. A note
    /// with more than 100 signature lines is refused before any is checked.
    #[test]
    fn malformed_or_weak_verifier_keys_and_signature_floods_are_refused() {
        let name = "quorate.test/quorate-audit/node-1";
        let vkey = |typed: &[u8]| {
            let id = if typed.len() == 33 {
                let public: [u8; 32] = typed[1..].try_into().expect("32 bytes");
                hex::encode(note_key_id(name, ED25519_TYPE, &public))
            } else {
                "00000000".into()
            };
            format!("{name}+{id}+{}", B64.encode(typed))
        };
        let mut identity = [0u8; 33];
        identity[0] = ED25519_TYPE;
        identity[1] = 1;
        for typed in [
            &[][..],
            &[ED25519_TYPE][..],
            &[ED25519_TYPE; 34][..],
            &[2u8; 33][..],
            &identity[..],
        ] {
            assert!(
                matches!(
                    LogVerifier::parse(&vkey(typed)),
                    Err(CheckpointError::BadKey(_))
                ),
                "{typed:?}"
            );
        }
        let signer = signer();
        let verifier = LogVerifier::parse(&signer.verifier_key()).expect("parses");
        let note = signer.sign(&Checkpoint {
            origin: name.into(),
            size: 1,
            root: [3u8; 32],
        });
        let line = note.lines().last().expect("a signature line").to_string();
        let flood = format!("{note}{}", format!("{line}\n").repeat(100));
        assert!(matches!(
            verifier.verify(&flood),
            Err(CheckpointError::Malformed(_))
        ));
    }

    /// The key id is computed as c2sp.org/signed-note specifies, from first
    /// principles here: SHA-256(name || 0x0A || 0x01 || public key)[..4].
    #[test]
    fn the_key_id_in_the_verifier_key_and_signature_follows_the_signed_note_spec() {
        let signer = signer();
        let vkey = signer.verifier_key();
        let parts: Vec<&str> = vkey.splitn(3, '+').collect();
        let public = B64.decode(parts[2]).expect("base64");
        let mut preimage = b"quorate.test/quorate-audit/node-1\n".to_vec();
        preimage.extend_from_slice(&public);
        use sha2::Digest as _;
        let id = &sha2::Sha256::digest(&preimage)[..4];
        assert_eq!(parts[1], hex::encode(id));
        let note = signer.sign(&Checkpoint {
            origin: parts[0].into(),
            size: 0,
            root: crate::merkle::empty_root(),
        });
        let sig_line = note.lines().last().expect("a signature line");
        let blob = B64
            .decode(sig_line.rsplit(' ').next().expect("blob"))
            .expect("base64");
        assert_eq!(&blob[..4], id);
    }
}
