//! Witness cosignatures of checkpoints, in the C2SP format
//! (c2sp.org/tlog-cosignature): a witness that checked a log's checkpoint
//! consistent with the last one it saw adds a signature line to the checkpoint's
//! signed note,
//!
//! ```text
//! — <witness name> base64(key id || timestamp || Ed25519 signature)
//! ```
//!
//! where the timestamp is 8 bytes big-endian (Unix seconds) and the signature is
//! over `cosignature/v1\ntime <timestamp>\n` followed by the checkpoint's note
//! text. The key id is the first 4 bytes of
//! `SHA-256(name || 0x0A || 0x04 || public key)` (signature type 0x04); the
//! verifier key is written `<name>+<hex key id>+<base64(0x04 || public key)>`.
//!
//! Every node witnesses its peers with an Ed25519 witness key of its own, named
//! [`witness_name`] and attested by its certificate under
//! [`WITNESS_KEY_STATEMENT`], so an auditor trusts a cosignature because the
//! witness's CA-issued identity vouched for the key that made it. Shared by the
//! node (cosigning) and auditors (verifying).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;

use crate::checkpoint::{parse_verifier_key, CheckpointError, NoteKey};

/// The statement kind under which a node attests its witness verifier key.
pub const WITNESS_KEY_STATEMENT: &str = "audit-witness-key";

/// Signature type byte of a timestamped Ed25519 cosignature (c2sp.org/tlog-cosignature).
const COSIGNATURE_TYPE: u8 = 0x04;
/// key id (4) || timestamp (8) || signature (64).
const BLOB_LEN: usize = 76;

/// The witness key name of node `node_id` in `trust_domain`.
pub fn witness_name(trust_domain: &str, node_id: &str) -> String {
    format!("{trust_domain}/quorate-witness/{node_id}")
}

/// The message a cosignature signs: the header and the checkpoint's note text.
fn signed_message(time: u64, text: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {time}\n{text}").into_bytes()
}

/// Splits a signed note into its text (ending in a newline) and its signature
/// lines.
pub fn split_note(note: &str) -> Result<(&str, Vec<&str>), CheckpointError> {
    let bad = |m: &str| CheckpointError::Malformed(m.to_string());
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| bad("no blank line before the signatures"))?;
    let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
    let signatures = signatures
        .strip_suffix('\n')
        .ok_or_else(|| bad("signatures do not end in a newline"))?;
    Ok((text, signatures.split('\n').collect()))
}

/// A witness's cosigning key.
#[derive(Debug)]
pub struct WitnessSigner(NoteKey);

impl WitnessSigner {
    /// The key named `name` from its 32-byte seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, CheckpointError> {
        NoteKey::from_seed(name, COSIGNATURE_TYPE, seed).map(Self)
    }

    /// The verifier key, `<name>+<hex key id>+<base64(0x04 || public key)>`.
    pub fn verifier_key(&self) -> String {
        self.0.verifier_key()
    }

    /// The cosignature line (ending in a newline) over the note text `text`, made
    /// at `time` (Unix seconds).
    pub fn cosign_text(&self, text: &str, time: u64) -> String {
        let mut blob = Vec::with_capacity(BLOB_LEN);
        blob.extend_from_slice(&self.0.key_id());
        blob.extend_from_slice(&time.to_be_bytes());
        blob.extend_from_slice(&self.0.sign(&signed_message(time, text)));
        format!("\u{2014} {} {}\n", self.0.name, B64.encode(blob))
    }

    /// `note` (a signed note, already verified by the caller) with this witness's
    /// cosignature made at `time` added as its last signature line.
    pub fn cosign(&self, note: &str, time: u64) -> Result<String, CheckpointError> {
        let (text, _) = split_note(note)?;
        Ok(format!("{note}{}", self.cosign_text(text, time)))
    }
}

/// A witness's verifier key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl WitnessVerifier {
    /// Parses a verifier key as [`WitnessSigner::verifier_key`] writes it.
    pub fn parse(vkey: &str) -> Result<Self, CheckpointError> {
        let (name, id, key) = parse_verifier_key(vkey, COSIGNATURE_TYPE, "a cosignature key")?;
        Ok(Self { name, id, key })
    }

    /// The witness's key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Verifies that `note` carries a cosignature by this witness; returns the
    /// latest time among its valid cosignatures (Unix seconds). Other signature
    /// lines are ignored (the caller checks the log's own signature).
    pub fn verify(&self, note: &str) -> Result<u64, CheckpointError> {
        let bad = |m: &str| CheckpointError::Malformed(m.to_string());
        let (text, lines) = split_note(note)?;
        if lines.len() > 100 {
            return Err(bad("more than 100 signature lines"));
        }
        let mut latest = None;
        for line in lines {
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or_else(|| bad("a signature line does not start with an em dash"))?;
            let (name, blob) = rest
                .split_once(' ')
                .ok_or_else(|| bad("a signature line has no signature"))?;
            let blob = B64
                .decode(blob)
                .map_err(|_| bad("a signature is not base64"))?;
            if name != self.name || blob.len() != BLOB_LEN || blob[..4] != self.id {
                continue;
            }
            let mut time = [0u8; 8];
            time.copy_from_slice(&blob[4..12]);
            let time = u64::from_be_bytes(time);
            let Ok(signature) = <[u8; 64]>::try_from(&blob[12..]) else {
                continue;
            };
            let signature = ed25519_dalek::Signature::from_bytes(&signature);
            if self
                .key
                .verify_strict(&signed_message(time, text), &signature)
                .is_ok()
            {
                latest = latest.max(Some(time));
            }
        }
        latest.ok_or_else(|| CheckpointError::NotSigned(self.name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Checkpoint, LogSigner, LogVerifier};

    const LOG: &str = "quorate.test/quorate-audit/node-1";
    const WITNESS: &str = "quorate.test/quorate-witness/node-2";

    fn signed_note() -> String {
        LogSigner::from_seed(LOG, &[7u8; 32])
            .expect("valid name")
            .sign(&Checkpoint {
                origin: LOG.into(),
                size: 42,
                root: [9u8; 32],
            })
    }

    #[test]
    fn a_cosigned_note_verifies_under_the_witness_and_still_under_the_log_key() {
        let witness = WitnessSigner::from_seed(WITNESS, &[3u8; 32]).expect("valid name");
        let note = signed_note();
        let cosigned = witness.cosign(&note, 1_700_000_000).expect("a signed note");
        let verifier = WitnessVerifier::parse(&witness.verifier_key()).expect("parses");
        assert_eq!(verifier.verify(&cosigned), Ok(1_700_000_000));
        let log = LogVerifier::parse(
            &LogSigner::from_seed(LOG, &[7u8; 32])
                .expect("valid name")
                .verifier_key(),
        )
        .expect("parses");
        assert_eq!(log.verify(&cosigned).expect("verifies").size, 42);
        assert!(matches!(
            verifier.verify(&note),
            Err(CheckpointError::NotSigned(_))
        ));
    }

    #[test]
    fn an_altered_text_or_timestamp_or_another_witness_does_not_verify() {
        let witness = WitnessSigner::from_seed(WITNESS, &[3u8; 32]).expect("valid name");
        let verifier = WitnessVerifier::parse(&witness.verifier_key()).expect("parses");
        let cosigned = witness.cosign(&signed_note(), 1_700_000_000).expect("note");
        let altered = cosigned.replacen("\n42\n", "\n43\n", 1);
        assert!(matches!(
            verifier.verify(&altered),
            Err(CheckpointError::NotSigned(_))
        ));
        // The same signature under another timestamp.
        let line = cosigned.lines().last().expect("a line");
        let mut blob = B64
            .decode(line.rsplit(' ').next().expect("blob"))
            .expect("base64");
        blob[11] ^= 1;
        let retimed = cosigned.replace(line, &format!("\u{2014} {WITNESS} {}", B64.encode(blob)));
        assert!(matches!(
            verifier.verify(&retimed),
            Err(CheckpointError::NotSigned(_))
        ));
        let other = WitnessSigner::from_seed(WITNESS, &[4u8; 32]).expect("valid name");
        assert!(matches!(
            verifier.verify(&other.cosign(&signed_note(), 1).expect("note")),
            Err(CheckpointError::NotSigned(_))
        ));
        assert!(WitnessVerifier::parse(&witness.verifier_key().replacen('+', "+0", 1)).is_err());
    }

    /// The line and key id built from first principles as c2sp.org/tlog-cosignature
    /// specifies, with ed25519-dalek (deterministic signatures: a known answer).
    #[test]
    fn the_cosignature_line_follows_the_tlog_cosignature_spec() {
        use ed25519_dalek::Signer as _;
        use sha2::Digest as _;
        let seed = [3u8; 32];
        let witness = WitnessSigner::from_seed(WITNESS, &seed).expect("valid name");
        let note = signed_note();
        let text = note.split("\n\n").next().expect("text").to_string() + "\n";
        let time: u64 = 1_234_567_890;
        let line = witness.cosign_text(&text, time);

        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = key.verifying_key().to_bytes();
        let mut preimage = format!("{WITNESS}\n").into_bytes();
        preimage.push(0x04);
        preimage.extend_from_slice(&public);
        let id = &sha2::Sha256::digest(&preimage)[..4];
        let message = format!("cosignature/v1\ntime 1234567890\n{text}");
        let mut blob = id.to_vec();
        blob.extend_from_slice(&[0, 0, 0, 0, 0x49, 0x96, 0x02, 0xd2]);
        blob.extend_from_slice(&key.sign(message.as_bytes()).to_bytes());
        assert_eq!(line, format!("\u{2014} {WITNESS} {}\n", B64.encode(&blob)));
        let vkey = witness.verifier_key();
        assert!(vkey.starts_with(&format!("{WITNESS}+{}+", hex::encode(id))));
        assert!(vkey.ends_with(&B64.encode([&[0x04u8][..], &public].concat())));
    }
}
