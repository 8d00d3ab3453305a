//! Approval tokens: a compliance approver's signed, expiring permission to sign one
//! key with an out-of-policy quorum (for example outside the home jurisdiction during
//! an outage).
//!
//! A token is JSON: `{"format": "quorate-approval/1", "payload": "<JSON text>",
//! "approver": "<hex Ed25519 public key>", "signature": "<hex>"}`, and when a policy
//! needs more than one approver, `"cosignatures": [{"approver": ..., "signature":
//! ...}]` by the others. Each approver signs the domain-separated payload bytes
//! exactly as they appear in `payload`, so nothing is re-serialized before
//! verification. The payload names the token id, the key id,
//! the single scope [`SCOPE_OUT_OF_POLICY_QUORUM`], a validity window (Unix seconds)
//! and the reason. The coordinator and every node verify tokens independently.

use std::fmt;

use ed25519_dalek::Signer;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Token format this build writes and accepts.
pub const TOKEN_FORMAT: &str = "quorate-approval/1";
/// The one scope a token can grant.
pub const SCOPE_OUT_OF_POLICY_QUORUM: &str = "out-of-policy-quorum";
/// Longest validity window a token may have.
pub const MAX_VALIDITY_SECS: u64 = 7 * 24 * 3600;
/// Largest encoded token accepted.
pub const MAX_TOKEN_BYTES: usize = 4096;
const SIGNING_CONTEXT: &[u8] = b"quorate-approval/1\n";
/// Longest token id: one a revocation can name and an audit record carry.
pub const MAX_TOKEN_ID_LEN: usize = 128;

/// Checks a token id: 1..=[`MAX_TOKEN_ID_LEN`] characters of `[A-Za-z0-9._:-]`, so
/// that every token can be revoked by id and its id reads plainly in audit logs.
/// `approve` refuses another id, nodes refuse a token with one and a revocation
/// names one.
pub fn validate_token_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_TOKEN_ID_LEN {
        return Err(format!(
            "token id must be 1..={MAX_TOKEN_ID_LEN} characters, not {}",
            id.len()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(format!(
            "token id may hold only A-Z a-z 0-9 . _ : - (not {c:?})"
        ));
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    format: String,
    payload: String,
    approver: String,
    signature: String,
    /// Further approvers' signatures over the same payload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    cosignatures: Vec<Cosignature>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cosignature {
    approver: String,
    signature: String,
}

/// Most signatures one token carries (the policy's approvers, bounded).
const MAX_SIGNATURES: usize = 16;

/// What an approver permits.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// Unique id, recorded in audit logs.
    pub token_id: String,
    /// The only key the token applies to.
    pub key_id: String,
    /// Must be [`SCOPE_OUT_OF_POLICY_QUORUM`].
    pub scope: String,
    /// Valid from (Unix seconds).
    pub not_before: u64,
    /// Valid until (Unix seconds, exclusive).
    pub not_after: u64,
    /// Why (free text for the audit trail).
    pub reason: String,
    /// If set, only this client (its SPIFFE id, exactly) may sign under the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// If set, the token permits only the message with this SHA-256 (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_sha256: Option<String>,
}

impl Approval {
    /// Whether the token lets `client` sign the message with SHA-256 `message_sha256`:
    /// always, unless it is bound to another client or another message.
    pub fn permits(&self, client: &str, message_sha256: &[u8; 32]) -> Result<(), ApprovalError> {
        if let Some(bound) = &self.client {
            if bound != client {
                return Err(ApprovalError::WrongClient {
                    bound: bound.clone(),
                    client: client.to_string(),
                });
            }
        }
        if let Some(bound) = &self.message_sha256 {
            if !bound.eq_ignore_ascii_case(&hex::encode(message_sha256)) {
                return Err(ApprovalError::WrongMessage(bound.clone()));
            }
        }
        Ok(())
    }
}

/// A decoded token whose signature has not been checked yet.
#[derive(Clone, Debug)]
pub struct ApprovalToken {
    payload: String,
    /// Each approver's public key and signature, the first one's first.
    signatures: Vec<([u8; 32], [u8; 64])>,
    /// The decoded payload.
    pub approval: Approval,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApprovalError {
    /// Not a token.
    #[error("approval token is malformed: {0}")]
    Malformed(String),
    /// Signed by a key the policy does not list.
    #[error("approval token is signed by {0}, which is not an approver of this key")]
    UnknownApprover(String),
    /// The signature does not verify.
    #[error("approval token signature does not verify")]
    BadSignature,
    /// Issued for another key.
    #[error("approval token is for key {token_key:?}, not {key_id:?}")]
    WrongKey {
        /// Key in the token.
        token_key: String,
        /// Key requested.
        key_id: String,
    },
    /// Another scope.
    #[error("approval token scope {0:?} is not {SCOPE_OUT_OF_POLICY_QUORUM:?}")]
    WrongScope(String),
    /// Not valid yet.
    #[error("approval token is not valid before {0} (Unix time)")]
    NotYetValid(u64),
    /// Expired.
    #[error("approval token expired at {0} (Unix time)")]
    Expired(u64),
    /// Bound to another client.
    #[error("approval token is bound to client {bound}, not {client}")]
    WrongClient {
        /// The client the token names.
        bound: String,
        /// The client that used it.
        client: String,
    },
    /// Bound to another message.
    #[error("approval token is bound to the message with SHA-256 {0}, not this one")]
    WrongMessage(String),
    /// Fewer distinct approvers signed than the policy needs.
    #[error("approval token is signed by {have} approver(s); the key's policy needs {need}")]
    TooFewApprovals {
        /// Distinct listed approvers whose signatures verify.
        have: usize,
        /// Approvers the policy requires.
        need: usize,
    },
    /// A token id that is empty, too long or holds other characters (it could not
    /// be revoked).
    #[error("approval token id is not valid: {0}")]
    BadTokenId(String),
    /// Validity window too long or empty.
    #[error("approval token validity window must be 1..={MAX_VALIDITY_SECS} seconds")]
    BadWindow,
}

impl ApprovalToken {
    /// Decodes a token (no signature or validity check yet).
    pub fn decode(bytes: &[u8]) -> Result<Self, ApprovalError> {
        let malformed = |m: String| ApprovalError::Malformed(m);
        if bytes.len() > MAX_TOKEN_BYTES {
            return Err(malformed(format!("longer than {MAX_TOKEN_BYTES} bytes")));
        }
        let env: Envelope = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        if env.format != TOKEN_FORMAT {
            return Err(malformed(format!(
                "format {:?} (this build reads {TOKEN_FORMAT})",
                env.format
            )));
        }
        if env.cosignatures.len() >= MAX_SIGNATURES {
            return Err(malformed(format!("more than {MAX_SIGNATURES} signatures")));
        }
        let decode = |approver_hex: &str, signature_hex: &str| {
            let mut approver = [0u8; 32];
            hex::decode_to_slice(approver_hex, &mut approver)
                .map_err(|_| malformed("approver is not 32 bytes of hex".into()))?;
            let mut signature = [0u8; 64];
            hex::decode_to_slice(signature_hex, &mut signature)
                .map_err(|_| malformed("signature is not 64 bytes of hex".into()))?;
            Ok::<_, ApprovalError>((approver, signature))
        };
        let mut signatures = vec![decode(&env.approver, &env.signature)?];
        for c in &env.cosignatures {
            signatures.push(decode(&c.approver, &c.signature)?);
        }
        let approval: Approval =
            serde_json::from_str(&env.payload).map_err(|e| malformed(format!("payload: {e}")))?;
        Ok(Self {
            payload: env.payload,
            signatures,
            approval,
        })
    }

    /// Checks the token for `key_id` at Unix time `now` against the approvers a key's
    /// policy lists, of whom `required` (at least one) distinct ones must have signed.
    /// Every signature it carries must be a listed approver's and verify.
    pub fn verify(
        &self,
        key_id: &str,
        approvers: &[[u8; 32]],
        required: usize,
        now: u64,
    ) -> Result<&Approval, ApprovalError> {
        let message = [SIGNING_CONTEXT, self.payload.as_bytes()].concat();
        let mut signed_by: Vec<[u8; 32]> = Vec::with_capacity(self.signatures.len());
        for (approver, signature) in &self.signatures {
            if !approvers.contains(approver) {
                return Err(ApprovalError::UnknownApprover(hex::encode(approver)));
            }
            let key = ed25519_dalek::VerifyingKey::from_bytes(approver)
                .map_err(|_| ApprovalError::BadSignature)?;
            // Strict (RFC 8032 with small-order keys and R refused): under a
            // small-order key the lax check accepts a signature anyone can make.
            key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(signature))
                .map_err(|_| ApprovalError::BadSignature)?;
            if !signed_by.contains(approver) {
                signed_by.push(*approver);
            }
        }
        let need = required.max(1);
        if signed_by.len() < need {
            return Err(ApprovalError::TooFewApprovals {
                have: signed_by.len(),
                need,
            });
        }
        let a = &self.approval;
        validate_token_id(&a.token_id).map_err(ApprovalError::BadTokenId)?;
        if a.key_id != key_id {
            return Err(ApprovalError::WrongKey {
                token_key: a.key_id.clone(),
                key_id: key_id.to_string(),
            });
        }
        if a.scope != SCOPE_OUT_OF_POLICY_QUORUM {
            return Err(ApprovalError::WrongScope(a.scope.clone()));
        }
        if a.not_after <= a.not_before || a.not_after - a.not_before > MAX_VALIDITY_SECS {
            return Err(ApprovalError::BadWindow);
        }
        if now < a.not_before {
            return Err(ApprovalError::NotYetValid(a.not_before));
        }
        if now >= a.not_after {
            return Err(ApprovalError::Expired(a.not_after));
        }
        Ok(a)
    }
}

/// Decodes `bytes` and checks the token for `key_id` now, against the key's
/// `policy` (its approvers, how many must sign), for `client` signing the message
/// with SHA-256 `message_sha256`: the one check the coordinator and every node run.
pub fn check(
    bytes: &[u8],
    key_id: &str,
    policy: &crate::policy::Policy,
    client: &str,
    message_sha256: &[u8; 32],
) -> Result<Approval, ApprovalError> {
    let token = ApprovalToken::decode(bytes)?;
    let approval = token.verify(
        key_id,
        &policy.approvers,
        policy.approvals_required,
        unix_now(),
    )?;
    approval.permits(client, message_sha256)?;
    Ok(approval.clone())
}

/// An approver's Ed25519 signing key. Zeroized on drop, never printed.
pub struct ApproverKey(ed25519_dalek::SigningKey);

impl fmt::Debug for ApproverKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApproverKey(public {})", hex::encode(self.public_key()))
    }
}

impl ApproverKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, seed.as_mut_slice());
        Self(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// Parses the 32-byte seed as hex.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), seed.as_mut_slice())
            .map_err(|_| "approver key must be 64 hex digits".to_string())?;
        Ok(Self(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// The seed as hex, for writing the key file.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.to_bytes()))
    }

    /// The public key policies list.
    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Signs `message` (already domain-separated by the caller).
    pub(crate) fn sign_message(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// Signs `approval` into an encoded token.
    pub fn sign(&self, approval: &Approval) -> Vec<u8> {
        let payload = serde_json::to_string(approval).unwrap_or_default();
        let message = [SIGNING_CONTEXT, payload.as_bytes()].concat();
        let signature = self.0.sign(&message);
        let env = Envelope {
            format: TOKEN_FORMAT.into(),
            payload,
            approver: hex::encode(self.public_key()),
            signature: hex::encode(signature.to_bytes()),
            cosignatures: Vec::new(),
        };
        serde_json::to_vec(&env).unwrap_or_default()
    }
}

/// Adds `key`'s signature over the token's payload to `token` (a token another
/// approver made), for a policy that needs several approvers. The payload is not
/// re-serialized: every approver signs the same bytes.
pub fn cosign(token: &[u8], key: &ApproverKey) -> Result<Vec<u8>, ApprovalError> {
    let malformed = |m: String| ApprovalError::Malformed(m);
    ApprovalToken::decode(token)?;
    let mut env: Envelope = serde_json::from_slice(token).map_err(|e| malformed(e.to_string()))?;
    let public = hex::encode(key.public_key());
    if env.approver == public || env.cosignatures.iter().any(|c| c.approver == public) {
        return Err(malformed(
            "this approver has signed the token already".into(),
        ));
    }
    let message = [SIGNING_CONTEXT, env.payload.as_bytes()].concat();
    env.cosignatures.push(Cosignature {
        approver: public,
        signature: hex::encode(key.0.sign(&message).to_bytes()),
    });
    let bytes = serde_json::to_vec(&env).map_err(|e| malformed(e.to_string()))?;
    // What is written must decode again (signature count, size).
    ApprovalToken::decode(&bytes)?;
    Ok(bytes)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(key_id: &str, from: u64, to: u64) -> Approval {
        Approval {
            token_id: "t-1".into(),
            key_id: key_id.into(),
            scope: SCOPE_OUT_OF_POLICY_QUORUM.into(),
            not_before: from,
            not_after: to,
            reason: "EU outage".into(),
            client: None,
            message_sha256: None,
        }
    }

    #[test]
    fn a_bound_token_permits_only_its_client_and_message() {
        let digest = [7u8; 32];
        let mut a = approval("k", 100, 200);
        assert!(a.permits("spiffe://td/client/any", &[0; 32]).is_ok());
        a.client = Some("spiffe://td/client/payments".into());
        a.message_sha256 = Some(hex::encode(digest));
        assert!(a.permits("spiffe://td/client/payments", &digest).is_ok());
        assert!(matches!(
            a.permits("spiffe://td/client/other", &digest),
            Err(ApprovalError::WrongClient { .. })
        ));
        assert!(matches!(
            a.permits("spiffe://td/client/payments", &[8; 32]),
            Err(ApprovalError::WrongMessage(_))
        ));
        // The binding is signed: a token whose binding is edited out does not verify.
        let approver = ApproverKey::generate();
        let token = String::from_utf8(approver.sign(&a)).unwrap();
        assert!(token.contains("payments"));
        let unbound = token.replace(",\\\"client\\\":\\\"spiffe://td/client/payments\\\"", "");
        assert_ne!(unbound, token, "the binding was cut out");
        let t = ApprovalToken::decode(unbound.as_bytes()).unwrap();
        assert_eq!(
            t.verify("k", &[approver.public_key()], 1, 150),
            Err(ApprovalError::BadSignature)
        );
        // A token of an older build, without the fields, still decodes unbound.
        let old = r#"{"token_id":"t","key_id":"k","scope":"out-of-policy-quorum","not_before":1,"not_after":2,"reason":"r"}"#;
        let parsed: Approval = serde_json::from_str(old).unwrap();
        assert_eq!((parsed.client, parsed.message_sha256), (None, None));
    }

    #[test]
    fn a_token_whose_id_no_revocation_could_name_is_refused() {
        let approver = ApproverKey::generate();
        let approvers = [approver.public_key()];
        for bad in [
            String::new(),
            "x".repeat(MAX_TOKEN_ID_LEN + 1),
            "appr 1".into(),
            "appr/1".into(),
            "appr-é".into(),
        ] {
            assert!(validate_token_id(&bad).is_err(), "{bad:?}");
            let token = approver.sign(&Approval {
                token_id: bad.clone(),
                ..approval("k", 100, 200)
            });
            let t = ApprovalToken::decode(&token).unwrap();
            assert!(
                matches!(
                    t.verify("k", &approvers, 1, 150),
                    Err(ApprovalError::BadTokenId(_))
                ),
                "{bad:?}"
            );
        }
        for good in ["t-1", "appr-5f0c2a9e41d7b386", "a.b_c:d-E9"] {
            assert!(validate_token_id(good).is_ok(), "{good:?}");
        }
        assert!(validate_token_id(&"x".repeat(MAX_TOKEN_ID_LEN)).is_ok());
    }

    #[test]
    fn a_valid_token_verifies_and_every_bad_variant_is_refused() {
        let approver = ApproverKey::generate();
        let other = ApproverKey::generate();
        let approvers = [approver.public_key()];
        let good = approver.sign(&approval("k", 100, 200));
        let t = ApprovalToken::decode(&good).unwrap();
        assert_eq!(t.verify("k", &approvers, 1, 150).unwrap().token_id, "t-1");
        assert_eq!(
            t.verify("k", &approvers, 1, 99),
            Err(ApprovalError::NotYetValid(100))
        );
        assert_eq!(
            t.verify("k", &approvers, 1, 200),
            Err(ApprovalError::Expired(200))
        );
        assert!(matches!(
            t.verify("k2", &approvers, 1, 150),
            Err(ApprovalError::WrongKey { .. })
        ));
        assert!(matches!(
            t.verify("k", &[other.public_key()], 1, 150),
            Err(ApprovalError::UnknownApprover(_))
        ));
        // Another approver's token for a policy that does not list them.
        let foreign = ApprovalToken::decode(&other.sign(&approval("k", 100, 200))).unwrap();
        assert!(matches!(
            foreign.verify("k", &approvers, 1, 150),
            Err(ApprovalError::UnknownApprover(_))
        ));
        // A payload edited after signing.
        let forged = String::from_utf8(good.clone())
            .unwrap()
            .replace("EU outage", "EU outagE");
        let forged = ApprovalToken::decode(forged.as_bytes()).unwrap();
        assert_eq!(
            forged.verify("k", &approvers, 1, 150),
            Err(ApprovalError::BadSignature)
        );
        // Wrong scope, signed properly.
        let mut a = approval("k", 100, 200);
        a.scope = "everything".into();
        let t = ApprovalToken::decode(&approver.sign(&a)).unwrap();
        assert!(matches!(
            t.verify("k", &approvers, 1, 150),
            Err(ApprovalError::WrongScope(_))
        ));
        // Too long a window.
        let t = ApprovalToken::decode(&approver.sign(&approval("k", 0, MAX_VALIDITY_SECS + 1)))
            .unwrap();
        assert_eq!(
            t.verify("k", &approvers, 1, 1),
            Err(ApprovalError::BadWindow)
        );
        // Garbage.
        assert!(matches!(
            ApprovalToken::decode(b"{}"),
            Err(ApprovalError::Malformed(_))
        ));
        assert!(matches!(
            ApprovalToken::decode(b"\xff"),
            Err(ApprovalError::Malformed(_))
        ));
    }

    /// The identity point as a public key, R the identity and s = 0: the lax
    /// equation [s]B = R + [k]A holds for every message, so anyone can "sign" under
    /// this key. Strict verification refuses it (and policies refuse the key).
    #[test]
    fn a_token_under_a_small_order_key_is_refused() {
        let identity = {
            let mut point = [0u8; 32];
            point[0] = 1;
            point
        };
        let payload = serde_json::to_string(&approval("k", 100, 200)).unwrap();
        let signature = [identity.as_slice(), &[0u8; 32]].concat();
        let forged = serde_json::to_vec(&Envelope {
            format: TOKEN_FORMAT.into(),
            payload: payload.clone(),
            approver: hex::encode(identity),
            signature: hex::encode(&signature),
            cosignatures: Vec::new(),
        })
        .unwrap();
        // The lax check would take it: this is the forgery, not a malformed token.
        let key = ed25519_dalek::VerifyingKey::from_bytes(&identity).unwrap();
        let message = [SIGNING_CONTEXT, payload.as_bytes()].concat();
        let sig = ed25519_dalek::Signature::from_slice(&signature).unwrap();
        assert!(ed25519_dalek::Verifier::verify(&key, &message, &sig).is_ok());
        let t = ApprovalToken::decode(&forged).unwrap();
        assert_eq!(
            t.verify("k", &[identity], 1, 150),
            Err(ApprovalError::BadSignature)
        );
    }

    #[test]
    fn a_policy_needing_two_approvers_takes_a_token_only_once_two_distinct_ones_signed() {
        let (first, second, stranger) = (
            ApproverKey::generate(),
            ApproverKey::generate(),
            ApproverKey::generate(),
        );
        let approvers = [first.public_key(), second.public_key()];
        let one = first.sign(&approval("k", 100, 200));
        let t = ApprovalToken::decode(&one).unwrap();
        assert_eq!(
            t.verify("k", &approvers, 2, 150),
            Err(ApprovalError::TooFewApprovals { have: 1, need: 2 })
        );
        assert!(t.verify("k", &approvers, 1, 150).is_ok());
        let two = cosign(&one, &second).unwrap();
        let t = ApprovalToken::decode(&two).unwrap();
        assert_eq!(t.verify("k", &approvers, 2, 150).unwrap().token_id, "t-1");
        // The same approver twice counts once, and is refused at cosigning.
        assert!(cosign(&two, &second).is_err());
        // An unlisted cosigner makes the whole token unacceptable.
        let three = cosign(&two, &stranger).unwrap();
        assert!(matches!(
            ApprovalToken::decode(&three)
                .unwrap()
                .verify("k", &approvers, 2, 150),
            Err(ApprovalError::UnknownApprover(_))
        ));
        // A cosignature over another payload does not verify.
        let other = cosign(&first.sign(&approval("k", 100, 201)), &second).unwrap();
        let other: serde_json::Value = serde_json::from_slice(&other).unwrap();
        let mut spliced: serde_json::Value = serde_json::from_slice(&two).unwrap();
        spliced["cosignatures"] = other["cosignatures"].clone();
        let t = ApprovalToken::decode(&serde_json::to_vec(&spliced).unwrap()).unwrap();
        assert_eq!(
            t.verify("k", &approvers, 2, 150),
            Err(ApprovalError::BadSignature)
        );
    }

    #[test]
    fn approver_key_round_trips_and_redacts() {
        let k = ApproverKey::generate();
        let back = ApproverKey::from_hex(&k.to_hex()).unwrap();
        assert_eq!(k.public_key(), back.public_key());
        assert!(!format!("{k:?}").contains(k.to_hex().as_str()));
    }
}
