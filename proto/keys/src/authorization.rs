//! Administrator authorizations: one administrator's signed consent to one exact
//! governed operation on a key (a refresh, a repair, an escrow split), named by
//! the SHA-256 of that operation's setup (`CeremonySetup`, whose random ceremony
//! id and current manifest hash make it unique).
//!
//! An authorization is JSON: `{"format": "quorate-authorization/1", "payload":
//! "<JSON text>", "administrator": "<hex Ed25519 public key>", "signature":
//! "<hex>"}`. The payload names the key, the operation, the ceremony id, the
//! setup hash and a validity window (Unix seconds); the administrator signs the
//! domain-separated payload bytes as they appear (another context than approval
//! tokens' and revocations', so none verifies as another). Each administrator
//! writes one file, offline; the ceremony tool hands every node all of them, and
//! every node checks that enough distinct administrators of the key's policy
//! authorized exactly the setup it is shown before it acts ([`verify_quorum`]).

use serde::{Deserialize, Serialize};

use crate::approval::ApproverKey;

/// Authorization format this build writes and accepts.
pub const AUTHORIZATION_FORMAT: &str = "quorate-authorization/1";
/// Largest encoded authorization accepted.
pub const MAX_AUTHORIZATION_BYTES: usize = 2048;
/// Most authorizations one request may carry.
pub const MAX_AUTHORIZATIONS: usize = 32;
/// Longest validity window an authorization may have.
pub const MAX_VALIDITY_SECS: u64 = 7 * 24 * 3600;
/// Clock difference between an administrator's machine and a node that is
/// tolerated at the start of the window.
pub const CLOCK_SKEW_SECS: u64 = 300;
const SIGNING_CONTEXT: &[u8] = b"quorate-authorization/1\n";

/// An administrator's key is the same kind of key as a compliance approver's (an
/// Ed25519 key kept in a file, zeroized, never printed); what it may sign differs.
pub type AdministratorKey = ApproverKey;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    format: String,
    payload: String,
    administrator: String,
    signature: String,
}

/// What an administrator authorizes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// The key operated on.
    pub key_id: String,
    /// `refresh`, `repair` or `escrow-split`: the setup's kind, for the reader.
    pub operation: String,
    /// The setup's ceremony id, for the reader.
    pub ceremony_id: String,
    /// SHA-256 of the encoded setup, hex: what is authorized.
    pub setup_hash: String,
    /// Start of validity (Unix seconds).
    pub not_before: u64,
    /// End of validity (Unix seconds, exclusive).
    pub not_after: u64,
}

/// The operation a node is asked to perform, as it sees it: what every
/// authorization must name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<'a> {
    /// The key.
    pub key_id: &'a str,
    /// `refresh`, `repair` or `escrow-split`.
    pub operation: &'a str,
    /// The setup's ceremony id.
    pub ceremony_id: &'a str,
    /// SHA-256 of the setup the node was shown.
    pub setup_hash: &'a [u8; 32],
}

/// Why authorizations were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthorizationError {
    /// Not an authorization.
    #[error("authorization is malformed: {0:?}")]
    Malformed(String),
    /// Signed by a key the policy does not list.
    #[error("authorization is signed by {0}, which is not an administrator of this key")]
    UnknownAdministrator(String),
    /// The signature does not verify.
    #[error("authorization by {0} does not verify")]
    BadSignature(String),
    /// About another key, operation or setup.
    /// (`authorized` quotes only fields `SignedAuthorization::decode` checked.)
    #[error("authorization by {administrator} is for {authorized}, not for {requested}")]
    OtherOperation {
        /// Who signed it.
        administrator: String,
        /// What it authorizes.
        authorized: String,
        /// What the node was asked to do.
        requested: String,
    },
    /// The window is unusable, or over, or not begun.
    #[error("authorization by {administrator} is not valid now: {reason}")]
    NotValidNow {
        /// Who signed it.
        administrator: String,
        /// Why.
        reason: String,
    },
    /// Fewer distinct administrators than the policy needs.
    #[error(
        "{have} of the key's administrators authorized this {operation}; its policy needs {need}"
    )]
    TooFew {
        /// The operation.
        operation: String,
        /// Distinct administrators whose authorizations verified.
        have: usize,
        /// How many the policy needs.
        need: usize,
    },
}

/// Signs `authorization` as it is.
pub fn sign(key: &AdministratorKey, authorization: &Authorization) -> Vec<u8> {
    let payload = serde_json::to_string(authorization).unwrap_or_default();
    let message = [SIGNING_CONTEXT, payload.as_bytes()].concat();
    let env = Envelope {
        format: AUTHORIZATION_FORMAT.into(),
        payload,
        administrator: hex::encode(key.public_key()),
        signature: hex::encode(key.sign_message(&message)),
    };
    serde_json::to_vec(&env).unwrap_or_default()
}

/// A decoded authorization, its signature not yet checked.
#[derive(Clone, Debug)]
pub struct SignedAuthorization {
    payload: String,
    /// Who claims to have signed it.
    pub administrator: [u8; 32],
    signature: [u8; 64],
    /// What it says.
    pub authorization: Authorization,
}

impl SignedAuthorization {
    /// Decodes an authorization (no signature or validity check yet).
    pub fn decode(bytes: &[u8]) -> Result<Self, AuthorizationError> {
        let malformed = |m: String| AuthorizationError::Malformed(m);
        if bytes.len() > MAX_AUTHORIZATION_BYTES {
            return Err(malformed(format!(
                "longer than {MAX_AUTHORIZATION_BYTES} bytes"
            )));
        }
        let env: Envelope = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        if env.format != AUTHORIZATION_FORMAT {
            return Err(malformed(format!(
                "format {:?} (this build reads {AUTHORIZATION_FORMAT})",
                env.format
            )));
        }
        let mut administrator = [0u8; 32];
        hex::decode_to_slice(&env.administrator, &mut administrator)
            .map_err(|_| malformed("administrator is not 32 bytes of hex".into()))?;
        let mut signature = [0u8; 64];
        hex::decode_to_slice(&env.signature, &mut signature)
            .map_err(|_| malformed("signature is not 64 bytes of hex".into()))?;
        let authorization: Authorization =
            serde_json::from_str(&env.payload).map_err(|e| malformed(format!("payload: {e}")))?;
        // What refusals and audit records quote of it: plain characters only.
        let a = &authorization;
        quorate_wire::validate_key_id(&a.key_id).map_err(malformed)?;
        quorate_wire::validate_key_id(&a.ceremony_id)
            .map_err(|e| malformed(e.replace("key_id", "ceremony_id")))?;
        if a.operation.is_empty()
            || a.operation.len() > 32
            || !a
                .operation
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '-')
        {
            return Err(malformed("operation is not a ceremony kind's name".into()));
        }
        if a.setup_hash.len() != 64
            || !a
                .setup_hash
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        {
            return Err(malformed(
                "setup_hash is not 64 lowercase hex digits".into(),
            ));
        }
        Ok(Self {
            payload: env.payload,
            administrator,
            signature,
            authorization,
        })
    }

    /// Checks the signature (strict Ed25519: small-order keys and R refused), that
    /// the signer is one of `administrators`, that it names exactly `operation`, and
    /// its window at Unix time `now`.
    pub fn verify(
        &self,
        operation: &Operation<'_>,
        administrators: &[[u8; 32]],
        now: u64,
    ) -> Result<(), AuthorizationError> {
        let who = hex::encode(self.administrator);
        if !administrators.contains(&self.administrator) {
            return Err(AuthorizationError::UnknownAdministrator(who));
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.administrator)
            .map_err(|_| AuthorizationError::BadSignature(who.clone()))?;
        let message = [SIGNING_CONTEXT, self.payload.as_bytes()].concat();
        key.verify_strict(
            &message,
            &ed25519_dalek::Signature::from_bytes(&self.signature),
        )
        .map_err(|_| AuthorizationError::BadSignature(who.clone()))?;
        let a = &self.authorization;
        let requested_hash = hex::encode(operation.setup_hash);
        if a.key_id != operation.key_id
            || a.operation != operation.operation
            || a.ceremony_id != operation.ceremony_id
            || a.setup_hash != requested_hash
        {
            return Err(AuthorizationError::OtherOperation {
                administrator: who,
                authorized: format!(
                    "{} of key {:?} (ceremony {}, setup {})",
                    a.operation, a.key_id, a.ceremony_id, a.setup_hash
                ),
                requested: format!(
                    "{} of key {:?} (ceremony {}, setup {requested_hash})",
                    operation.operation, operation.key_id, operation.ceremony_id
                ),
            });
        }
        let not_valid = |reason: String| AuthorizationError::NotValidNow {
            administrator: who.clone(),
            reason,
        };
        if a.not_after <= a.not_before || a.not_after - a.not_before > MAX_VALIDITY_SECS {
            return Err(not_valid(format!(
                "its window must be 1..={MAX_VALIDITY_SECS} seconds"
            )));
        }
        if now.saturating_add(CLOCK_SKEW_SECS) < a.not_before {
            return Err(not_valid(format!("it is valid from {}", a.not_before)));
        }
        if now >= a.not_after {
            return Err(not_valid(format!("it expired at {}", a.not_after)));
        }
        Ok(())
    }
}

/// Checks `authorizations` for `operation` at Unix time `now`: every one must be
/// well formed, signed by one of `administrators`, about exactly this operation,
/// and valid now (a single bad one refuses the request: it is a forgery or a
/// mistake, and either is worth stopping for), and at least `required` (at least
/// one) distinct administrators must have signed. Returns who authorized, in the
/// order given.
pub fn verify_quorum(
    authorizations: &[Vec<u8>],
    operation: &Operation<'_>,
    administrators: &[[u8; 32]],
    required: usize,
    now: u64,
) -> Result<Vec<[u8; 32]>, AuthorizationError> {
    if authorizations.len() > MAX_AUTHORIZATIONS {
        return Err(AuthorizationError::Malformed(format!(
            "{} authorizations; at most {MAX_AUTHORIZATIONS} are read",
            authorizations.len()
        )));
    }
    let mut signed_by: Vec<[u8; 32]> = Vec::with_capacity(authorizations.len());
    for bytes in authorizations {
        let signed = SignedAuthorization::decode(bytes)?;
        signed.verify(operation, administrators, now)?;
        if !signed_by.contains(&signed.administrator) {
            signed_by.push(signed.administrator);
        }
    }
    let need = required.max(1);
    if signed_by.len() < need {
        return Err(AuthorizationError::TooFew {
            operation: operation.operation.to_string(),
            have: signed_by.len(),
            need,
        });
    }
    Ok(signed_by)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: [u8; 32] = [7; 32];
    const NOW: u64 = 1_800_000_000;

    fn operation() -> Operation<'static> {
        Operation {
            key_id: "k",
            operation: "refresh",
            ceremony_id: "refresh-1",
            setup_hash: &HASH,
        }
    }

    fn authorization() -> Authorization {
        Authorization {
            key_id: "k".into(),
            operation: "refresh".into(),
            ceremony_id: "refresh-1".into(),
            setup_hash: hex::encode(HASH),
            not_before: NOW - 10,
            not_after: NOW + 3600,
        }
    }

    #[test]
    fn a_quorum_of_distinct_listed_administrators_authorizes_exactly_its_setup() {
        let (a, b, c) = (
            AdministratorKey::generate(),
            AdministratorKey::generate(),
            AdministratorKey::generate(),
        );
        let admins = [a.public_key(), b.public_key(), c.public_key()];
        let by_a = sign(&a, &authorization());
        let by_b = sign(&b, &authorization());
        let who = verify_quorum(&[by_a.clone(), by_b], &operation(), &admins, 2, NOW).unwrap();
        assert_eq!(who, vec![a.public_key(), b.public_key()]);
        // One administrator twice is one administrator.
        assert_eq!(
            verify_quorum(&[by_a.clone(), by_a.clone()], &operation(), &admins, 2, NOW),
            Err(AuthorizationError::TooFew {
                operation: "refresh".into(),
                have: 1,
                need: 2
            })
        );
        // Another setup (another ceremony, or the same id with other contents).
        let other_hash = [8; 32];
        let other = Operation {
            setup_hash: &other_hash,
            ..operation()
        };
        assert!(matches!(
            verify_quorum(std::slice::from_ref(&by_a), &other, &admins, 1, NOW),
            Err(AuthorizationError::OtherOperation { .. })
        ));
        // Not listed.
        assert!(matches!(
            verify_quorum(&[by_a], &operation(), &admins[1..], 1, NOW),
            Err(AuthorizationError::UnknownAdministrator(_))
        ));
    }

    #[test]
    fn an_edited_payload_or_another_context_does_not_verify() {
        let a = AdministratorKey::generate();
        let admins = [a.public_key()];
        let bytes = sign(&a, &authorization());
        let edited = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("refresh-1", "refresh-2")
            .into_bytes();
        let other_op = Operation {
            ceremony_id: "refresh-2",
            ..operation()
        };
        assert!(matches!(
            verify_quorum(&[edited], &other_op, &admins, 1, NOW),
            Err(AuthorizationError::BadSignature(_))
        ));
        // The same payload signed as an approval token is no authorization.
        let mut env: Envelope = serde_json::from_slice(&bytes).unwrap();
        let as_token = [b"quorate-approval/1\n".as_slice(), env.payload.as_bytes()].concat();
        env.signature = hex::encode(a.sign_message(&as_token));
        let forged = serde_json::to_vec(&env).unwrap();
        assert!(matches!(
            verify_quorum(&[forged], &operation(), &admins, 1, NOW),
            Err(AuthorizationError::BadSignature(_))
        ));
    }

    #[test]
    fn a_small_order_administrator_key_forges_nothing() {
        // The identity point: under the lax check, (R = identity, s = 0) verifies
        // any message. verify_strict refuses it.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let payload = serde_json::to_string(&authorization()).unwrap();
        let mut signature = [0u8; 64];
        signature[0] = 1;
        let forged = serde_json::to_vec(&Envelope {
            format: AUTHORIZATION_FORMAT.into(),
            payload,
            administrator: hex::encode(weak),
            signature: hex::encode(signature),
        })
        .unwrap();
        assert!(matches!(
            verify_quorum(&[forged], &operation(), &[weak], 1, NOW),
            Err(AuthorizationError::BadSignature(_))
        ));
    }

    #[test]
    fn the_window_is_checked() {
        let a = AdministratorKey::generate();
        let admins = [a.public_key()];
        let check =
            |auth: Authorization| verify_quorum(&[sign(&a, &auth)], &operation(), &admins, 1, NOW);
        let expired = Authorization {
            not_before: NOW - 7200,
            not_after: NOW,
            ..authorization()
        };
        assert!(matches!(
            check(expired),
            Err(AuthorizationError::NotValidNow { .. })
        ));
        let future = Authorization {
            not_before: NOW + CLOCK_SKEW_SECS + 1,
            not_after: NOW + 7200,
            ..authorization()
        };
        assert!(matches!(
            check(future),
            Err(AuthorizationError::NotValidNow { .. })
        ));
        let skewed = Authorization {
            not_before: NOW + CLOCK_SKEW_SECS,
            not_after: NOW + 7200,
            ..authorization()
        };
        assert!(check(skewed).is_ok());
        let too_long = Authorization {
            not_after: NOW - 10 + MAX_VALIDITY_SECS + 1,
            ..authorization()
        };
        assert!(matches!(
            check(too_long),
            Err(AuthorizationError::NotValidNow { .. })
        ));
    }

    #[test]
    fn fields_a_refusal_would_quote_are_plain() {
        let a = AdministratorKey::generate();
        for bad in [
            Authorization {
                ceremony_id: "refresh-1\n2026-12-07 INFO forged".into(),
                ..authorization()
            },
            Authorization {
                setup_hash: "AB".repeat(32),
                ..authorization()
            },
            Authorization {
                operation: "refresh\u{1b}[8m".into(),
                ..authorization()
            },
        ] {
            assert!(
                matches!(
                    SignedAuthorization::decode(&sign(&a, &bad)),
                    Err(AuthorizationError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn no_authorization_is_too_few() {
        assert_eq!(
            verify_quorum(&[], &operation(), &[[1; 32]], 1, NOW),
            Err(AuthorizationError::TooFew {
                operation: "refresh".into(),
                have: 0,
                need: 1
            })
        );
    }
}
