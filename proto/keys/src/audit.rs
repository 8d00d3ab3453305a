//! The audit record format and hash-chain verification, shared by nodes (which
//! write the log) and auditors (who check it with `quorate-ceremony audit verify`).
//!
//! Each record is a JSON object stored exactly as written. `hash` is the SHA-256 of
//! the record serialized with `hash` empty; `prev_hash` is the previous record's
//! `hash` (64 zeros for the first), and `seq` counts up from 0 without gaps. Changing,
//! removing or reordering any record breaks the chain at that record. Messages are
//! never recorded, only their SHA-256.

use serde::{Deserialize, Serialize};

/// Record format this build writes and reads.
pub const AUDIT_FORMAT: &str = "quorate-audit/1";
/// `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// [`AUDIT_FORMAT`].
    pub format: String,
    /// Position in the log, from 0.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub time_unix_ms: u64,
    /// The node that wrote it.
    pub node_id: String,
    /// What happened: `sign_share`, `sign_refused`, `key_installed`, ...
    pub event: String,
    /// Key concerned.
    pub key_id: String,
    /// Client SPIFFE id on whose behalf: from the certificate of the client's own
    /// signed intent (records written before intents: as the coordinator asserted).
    pub client_id: String,
    /// Caller's request id.
    pub request_id: String,
    /// SHA-256 of the signed message (hex); empty for non-signing events.
    pub message_sha256: String,
    /// Node ids of the signing quorum.
    pub quorum: Vec<String>,
    /// Id of the approval token that permitted an out-of-policy quorum, if any.
    pub approval_token_id: String,
    /// Caller identity that triggered the event (SPIFFE id).
    pub caller: String,
    /// Free-text detail (refusal reason, manifest hash, ...).
    pub detail: String,
    /// The client's signed intent behind a signing event, hex of its protobuf
    /// encoding (`Signed`: body, certificate, scheme, signature), so an auditor can
    /// prove which client asked for each share (docs/intent.md); for an intent that
    /// did not verify, only `sha256:` and the hex SHA-256 of that encoding. Absent
    /// (and not serialized, so older records hash as they were written) otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub intent: String,
    /// The signing attempt a `sign_share` (or a refusal of one) belongs to: hex of
    /// [`signing_attempt_id`] over the key, message and commitments the node was
    /// sent. Every signer of one signature was sent the same, so an auditor groups
    /// the share records of one signature across nodes by it. Absent (and not
    /// serialized, so older records hash as they were written) otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub attempt: String,
    /// The administrators (hex Ed25519 public keys) whose authorizations a node
    /// verified before a governed operation (`operation_authorized`). Absent (and
    /// not serialized, so older records hash as they were written) otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorized_by: Vec<String>,
    /// `hash` of the previous record.
    pub prev_hash: String,
    /// SHA-256 over this record with `hash` empty (hex).
    pub hash: String,
}

/// How a record's `detail` begins when the record accounts for a spent nonce (a
/// `sign_share`, or a refusal that spent its nonce unused): `commitment_sha256=`
/// and the hex SHA-256 of the node's commitment. An auditor (and the crash drill)
/// checks with it that no commitment was ever used twice.
const SPENT_COMMITMENT: &str = "commitment_sha256=";

/// The `detail` (or its start) naming `commitment` as spent; see
/// [`AuditRecord::spent_commitment`].
pub fn spent_commitment_detail(commitment: &[u8]) -> String {
    format!(
        "{SPENT_COMMITMENT}{}",
        hex::encode(quorate_wire::sha256(commitment))
    )
}

/// Domain separation of [`signing_attempt_id`].
const SIGNING_ATTEMPT_DOMAIN: &[u8] = b"quorate-signing-attempt/1\0";

/// The id of one signing attempt: SHA-256 over a domain tag, the key id, the
/// message's SHA-256 and the quorum's commitments in the byte order of their
/// serialized identifiers, each
/// variable-length field preceded by its length (u32, big-endian). FROST binds every
/// signature share to exactly this package, so shares that aggregate into one
/// signature were all made for the same id, and a retry with another quorum (or
/// fresh commitments) has another.
pub fn signing_attempt_id<'a>(
    key_id: &str,
    message_sha256: &[u8; 32],
    commitments: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> [u8; 32] {
    fn field(buf: &mut Vec<u8>, bytes: &[u8]) {
        // Identifiers, commitments and key ids are far below 4 GiB (wire limits).
        buf.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        buf.extend_from_slice(bytes);
    }
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(SIGNING_ATTEMPT_DOMAIN);
    field(&mut buf, key_id.as_bytes());
    buf.extend_from_slice(message_sha256);
    for (identifier, commitment) in commitments {
        field(&mut buf, identifier);
        field(&mut buf, commitment);
    }
    quorate_wire::sha256(&buf)
}

impl AuditRecord {
    /// The commitment this record accounts for as spent
    /// (`commitment_sha256=<hex>`), if it names one.
    pub fn spent_commitment(&self) -> Option<&str> {
        self.detail
            .split([' ', ';'])
            .next()
            .filter(|c| c.starts_with(SPENT_COMMITMENT))
    }

    fn compute_hash(&self) -> String {
        let mut unsealed = self.clone();
        unsealed.hash.clear();
        let bytes = serde_json::to_vec(&unsealed).unwrap_or_default();
        hex::encode(quorate_wire::sha256(&bytes))
    }

    /// Fills `format`, `seq`, `prev_hash` and `hash`, chaining after `prev_hash`.
    pub fn seal(mut self, seq: u64, prev_hash: &str) -> Self {
        self.format = AUDIT_FORMAT.into();
        self.seq = seq;
        self.prev_hash = prev_hash.to_string();
        self.hash = self.compute_hash();
        self
    }

    /// Encodes as stored.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Where and why a chain is broken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at record {seq}: {reason}")]
pub struct ChainBreak {
    /// The first record that does not check out (or the missing one).
    pub seq: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// Checks records handed over in order as `(seq, stored bytes)`, starting from
/// record 0. Returns the number of records and the last hash.
pub fn verify_chain(
    records: impl IntoIterator<Item = (u64, Vec<u8>)>,
) -> Result<(u64, String), ChainBreak> {
    let mut expected_seq = 0u64;
    let mut prev = GENESIS_HASH.to_string();
    for (seq, bytes) in records {
        let brk = |reason: String| ChainBreak {
            seq: expected_seq,
            reason,
        };
        if seq != expected_seq {
            return Err(brk(format!("record missing (next stored record is {seq})")));
        }
        let record: AuditRecord =
            serde_json::from_slice(&bytes).map_err(|e| brk(format!("does not parse: {e}")))?;
        if record.format != AUDIT_FORMAT {
            return Err(brk(format!("unknown format {:?}", record.format)));
        }
        if record.seq != seq {
            return Err(brk(format!(
                "stored under {seq} but says seq {}",
                record.seq
            )));
        }
        if record.prev_hash != prev {
            return Err(brk("prev_hash does not match the previous record".into()));
        }
        if record.compute_hash() != record.hash {
            return Err(brk(
                "content does not match its hash (record altered)".into()
            ));
        }
        prev = record.hash;
        expected_seq += 1;
    }
    Ok((expected_seq, prev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_commitment_is_read_back_from_shares_and_refusals_alike() {
        let spent = spent_commitment_detail(b"commitment");
        let share = AuditRecord {
            detail: spent.clone(),
            ..Default::default()
        };
        let refusal = AuditRecord {
            detail: format!("{spent} spent unused; over the rate"),
            ..Default::default()
        };
        assert_eq!(share.spent_commitment(), Some(spent.as_str()));
        assert_eq!(refusal.spent_commitment(), Some(spent.as_str()));
        let other = AuditRecord {
            detail: "manifest_sha256=00".into(),
            ..Default::default()
        };
        assert_eq!(other.spent_commitment(), None);
    }

    #[test]
    fn a_signing_attempt_id_changes_with_every_part_of_the_package() {
        let digest = [7u8; 32];
        let commitments = [(&b"id-1"[..], &b"c1"[..]), (&b"id-2"[..], &b"c2"[..])];
        let id = signing_attempt_id("k", &digest, commitments);
        assert_eq!(id, signing_attempt_id("k", &digest, commitments));
        assert_ne!(id, signing_attempt_id("k2", &digest, commitments));
        assert_ne!(id, signing_attempt_id("k", &[8u8; 32], commitments));
        assert_ne!(
            id,
            signing_attempt_id("k", &digest, [(&b"id-1"[..], &b"c1"[..])])
        );
        // Lengths are framed: moving a byte from one field to the next is another id.
        assert_ne!(
            id,
            signing_attempt_id(
                "k",
                &digest,
                [(&b"id-1c"[..], &b"1"[..]), (&b"id-2"[..], &b"c2"[..])]
            )
        );
    }

    #[test]
    fn a_record_without_an_attempt_hashes_as_before_the_field_existed() {
        let record = AuditRecord::default().seal(0, GENESIS_HASH);
        assert!(!String::from_utf8(record.encode())
            .unwrap()
            .contains("attempt"));
    }

    fn chain(n: u64) -> Vec<(u64, Vec<u8>)> {
        let mut prev = GENESIS_HASH.to_string();
        (0..n)
            .map(|i| {
                let r = AuditRecord {
                    event: "sign_share".into(),
                    key_id: "k".into(),
                    ..Default::default()
                }
                .seal(i, &prev);
                prev = r.hash.clone();
                (i, r.encode())
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify_chain(chain(5)).unwrap().0, 5);
    }

    #[test]
    fn any_single_bit_flip_is_detected() {
        let good = chain(3);
        for byte in 0..good[1].1.len() {
            for bit in 0..8 {
                let mut records = good.clone();
                records[1].1[byte] ^= 1 << bit;
                let err = verify_chain(records).expect_err("flip must be detected");
                assert!(err.seq <= 2, "{err}");
            }
        }
    }

    #[test]
    fn missing_and_reordered_records_are_detected() {
        let mut records = chain(4);
        records.remove(2);
        assert_eq!(verify_chain(records).unwrap_err().seq, 2);
        let mut records = chain(4);
        records.swap(1, 2);
        assert_eq!(verify_chain(records).unwrap_err().seq, 1);
    }
}
