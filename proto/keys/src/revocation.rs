//! Revocations of approval tokens: one approver's signed statement that a token
//! ([`crate::approval`]) must no longer be honoured, before it expires.
//!
//! A revocation is JSON: `{"format": "quorate-revocation/1", "payload": "<JSON
//! text>", "approver": "<hex Ed25519 public key>", "signature": "<hex>"}`. The
//! payload names the token id, the key id and when it was revoked (Unix seconds).
//! The approver signs the domain-separated payload bytes as they appear (another
//! context than tokens', so neither verifies as the other). Any one approver the
//! key's policy lists may revoke (withdrawing a permission needs no quorum);
//! a statement signed by any other key is refused, since a forged revocation would
//! let whoever can reach the nodes deny an approved failover. Every node stores the
//! revocations it accepted and refuses the token from then on.

use serde::{Deserialize, Serialize};

use crate::approval::ApproverKey;

/// Revocation format this build writes and accepts.
pub const REVOCATION_FORMAT: &str = "quorate-revocation/1";
/// Largest encoded revocation accepted.
pub const MAX_REVOCATION_BYTES: usize = 2048;
const SIGNING_CONTEXT: &[u8] = b"quorate-revocation/1\n";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    format: String,
    payload: String,
    approver: String,
    signature: String,
}

/// What a revocation withdraws.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// The revoked token's id.
    pub token_id: String,
    /// The key the token applies to.
    pub key_id: String,
    /// When it was revoked (Unix seconds; informative, for the audit trail).
    pub revoked_at: u64,
}

/// Why a revocation was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevocationError {
    /// Not a revocation.
    #[error("revocation is malformed: {0}")]
    Malformed(String),
    /// Signed by a key the policy does not list.
    #[error("revocation is signed by {0}, which is not an approver of this key")]
    UnknownApprover(String),
    /// The signature does not verify.
    #[error("revocation signature does not verify")]
    BadSignature,
    /// About another key.
    #[error("revocation is for key {revoked:?}, not {key_id:?}")]
    WrongKey {
        /// Key in the revocation.
        revoked: String,
        /// Key it was delivered for.
        key_id: String,
    },
}

/// A verified revocation: what it revokes and who signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRevocation {
    /// The payload.
    pub revocation: Revocation,
    /// The approver who signed it.
    pub approver: [u8; 32],
}

/// Signs a revocation of `token_id` (a token for `key_id`) now.
pub fn sign(key: &ApproverKey, key_id: &str, token_id: &str) -> Vec<u8> {
    sign_revocation(
        key,
        &Revocation {
            token_id: token_id.into(),
            key_id: key_id.into(),
            revoked_at: crate::approval::unix_now(),
        },
    )
}

/// Signs `revocation` as it is.
pub fn sign_revocation(key: &ApproverKey, revocation: &Revocation) -> Vec<u8> {
    let payload = serde_json::to_string(revocation).unwrap_or_default();
    let message = [SIGNING_CONTEXT, payload.as_bytes()].concat();
    let env = Envelope {
        format: REVOCATION_FORMAT.into(),
        payload,
        approver: hex::encode(key.public_key()),
        signature: hex::encode(key.sign_message(&message)),
    };
    serde_json::to_vec(&env).unwrap_or_default()
}

/// Decodes `bytes` and checks that it revokes a token of `key_id` and is signed
/// (strict Ed25519: small-order keys and R refused) by one of `approvers`.
pub fn verify(
    bytes: &[u8],
    key_id: &str,
    approvers: &[[u8; 32]],
) -> Result<VerifiedRevocation, RevocationError> {
    let malformed = |m: String| RevocationError::Malformed(m);
    if bytes.len() > MAX_REVOCATION_BYTES {
        return Err(malformed(format!(
            "longer than {MAX_REVOCATION_BYTES} bytes"
        )));
    }
    let env: Envelope = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    if env.format != REVOCATION_FORMAT {
        return Err(malformed(format!(
            "format {:?} (this build reads {REVOCATION_FORMAT})",
            env.format
        )));
    }
    let mut approver = [0u8; 32];
    hex::decode_to_slice(&env.approver, &mut approver)
        .map_err(|_| malformed("approver is not 32 bytes of hex".into()))?;
    let mut signature = [0u8; 64];
    hex::decode_to_slice(&env.signature, &mut signature)
        .map_err(|_| malformed("signature is not 64 bytes of hex".into()))?;
    let revocation: Revocation =
        serde_json::from_str(&env.payload).map_err(|e| malformed(format!("payload: {e}")))?;
    crate::approval::validate_token_id(&revocation.token_id).map_err(malformed)?;
    if !approvers.contains(&approver) {
        return Err(RevocationError::UnknownApprover(hex::encode(approver)));
    }
    let key = ed25519_dalek::VerifyingKey::from_bytes(&approver)
        .map_err(|_| RevocationError::BadSignature)?;
    let message = [SIGNING_CONTEXT, env.payload.as_bytes()].concat();
    key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&signature))
        .map_err(|_| RevocationError::BadSignature)?;
    if revocation.key_id != key_id {
        return Err(RevocationError::WrongKey {
            revoked: revocation.key_id,
            key_id: key_id.to_string(),
        });
    }
    Ok(VerifiedRevocation {
        revocation,
        approver,
    })
}

/// What a revocation says, read before it is verified (to find the key's policy
/// to verify it against, and to name it in messages): not to be acted on.
pub fn read_unverified(bytes: &[u8]) -> Result<Revocation, RevocationError> {
    let malformed = |m: String| RevocationError::Malformed(m);
    if bytes.len() > MAX_REVOCATION_BYTES {
        return Err(malformed(format!(
            "longer than {MAX_REVOCATION_BYTES} bytes"
        )));
    }
    let env: Envelope = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    let revocation: Revocation =
        serde_json::from_str(&env.payload).map_err(|e| malformed(format!("payload: {e}")))?;
    Ok(revocation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_verifies_only_under_a_listed_approver_and_for_its_key() {
        let approver = ApproverKey::generate();
        let other = ApproverKey::generate();
        let bytes = sign(&approver, "k", "t-1");
        let v = verify(&bytes, "k", &[other.public_key(), approver.public_key()]).unwrap();
        assert_eq!(v.revocation.token_id, "t-1");
        assert_eq!(v.approver, approver.public_key());
        assert_eq!(read_unverified(&bytes).unwrap().key_id, "k");
        assert!(matches!(
            verify(&bytes, "k", &[other.public_key()]),
            Err(RevocationError::UnknownApprover(_))
        ));
        assert!(matches!(
            verify(&bytes, "k2", &[approver.public_key()]),
            Err(RevocationError::WrongKey { .. })
        ));
        // The payload is signed: another token id does not verify.
        let edited = String::from_utf8(bytes)
            .unwrap()
            .replace("t-1", "t-2")
            .into_bytes();
        assert_eq!(
            verify(&edited, "k", &[approver.public_key()]),
            Err(RevocationError::BadSignature)
        );
    }

    #[test]
    fn a_revocation_names_only_a_token_id_a_token_may_have() {
        let approver = ApproverKey::generate();
        let long = "x".repeat(crate::approval::MAX_TOKEN_ID_LEN);
        let bytes = sign(&approver, "k", &long);
        assert!(verify(&bytes, "k", &[approver.public_key()]).is_ok());
        for bad in [String::new(), format!("{long}x"), "t 1".into()] {
            let bytes = sign(&approver, "k", &bad);
            assert!(
                matches!(
                    verify(&bytes, "k", &[approver.public_key()]),
                    Err(RevocationError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_token_signature_is_not_a_revocation() {
        // Same approver, same payload bytes signed as a token: another context.
        let approver = ApproverKey::generate();
        let bytes = sign(&approver, "k", "t-1");
        let mut env: Envelope = serde_json::from_slice(&bytes).unwrap();
        let as_token = [b"quorate-approval/1\n".as_slice(), env.payload.as_bytes()].concat();
        env.signature = hex::encode(approver.sign_message(&as_token));
        let forged = serde_json::to_vec(&env).unwrap();
        assert_eq!(
            verify(&forged, "k", &[approver.public_key()]),
            Err(RevocationError::BadSignature)
        );
    }
}
