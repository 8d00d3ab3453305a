//! Sign intents: what a client signs, itself, when it asks for a signature, so that
//! every node can check what the client asked for without trusting the coordinator
//! that relays the request.
//!
//! An intent names the key, the SHA-256 of the message, the request id, the SHA-256
//! of the approval token (if any) and a short validity window. The client signs it
//! with the private key of its mTLS certificate as a statement of kind
//! [`INTENT_KIND`] ([`crate::attest`]): the signed bytes are
//! `"quorate-statement/1" 0x00 "sign-intent" 0x00 body`, and the certificate travels
//! with the signature. The byte-exact format, the accepted signature schemes and the
//! validity rules are specified in docs/intent.md, with test vectors that
//! `tests/intent_vectors.rs` checks.
//!
//! A verifier ([`IntentVerifier`]) checks the certificate (chain to the trust
//! domain's CA, client-auth usage, validity, role `client`), the signature, the
//! validity window (with [`CLOCK_SKEW_SECS`] of slack either way) and that the
//! intent is for exactly this request. The client identity that counts (for policy,
//! rate limits and the audit log) is the one in the intent's certificate; a
//! coordinator's word for it counts for nothing.

use rustls::pki_types::UnixTime;

use quorate_wire::pb;

use crate::attest::{AttestError, ChainCache, StatementSigner, StatementVerifier};
use crate::identity::{PeerIdentity, Role};

/// Statement kind of a sign intent.
pub const INTENT_KIND: &str = "sign-intent";

/// Format version, the body's first byte.
pub const INTENT_VERSION: u8 = 1;

/// Longest validity window an intent may have (`not_after - not_before`), seconds.
/// An intent is good for one request and its retries, not a standing permission.
pub const MAX_VALIDITY_SECS: u64 = 300;

/// Validity window a client gives its intents unless told otherwise, seconds.
pub const DEFAULT_VALIDITY_SECS: u64 = 60;

/// Slack for clocks that disagree, applied to both ends of the window, seconds.
pub const CLOCK_SKEW_SECS: u64 = 30;

/// Longest key id or request id an intent may carry, in bytes.
const MAX_FIELD_BYTES: usize = 128;

/// What a client asks for, as it signs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignIntent {
    /// Key to sign with.
    pub key_id: String,
    /// SHA-256 of the message.
    pub message_sha256: [u8; 32],
    /// The request id (empty for none).
    pub request_id: String,
    /// SHA-256 of the approval token, all zeros when the request carries none.
    pub approval_token_sha256: [u8; 32],
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: u64,
    /// End of validity (included), seconds since the Unix epoch.
    pub not_after: u64,
}

/// The request an intent must match: what the signing request itself carries.
#[derive(Clone, Copy, Debug)]
pub struct IntentRequest<'a> {
    /// Key id of the request.
    pub key_id: &'a str,
    /// The message to sign.
    pub message: &'a [u8],
    /// The request id (empty for none).
    pub request_id: &'a str,
    /// The approval token, if the request carries one.
    pub approval_token: Option<&'a [u8]>,
}

/// Why an intent was refused. Every variant means the request is not
/// authenticated as the client's (`UNAUTHENTICATED`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntentError {
    /// The request carries no intent.
    #[error("the request carries no sign intent: a client signs what it asks for")]
    Missing,
    /// The body does not decode.
    #[error("malformed sign intent: {0}")]
    Malformed(String),
    /// The intent is for another request.
    #[error("the sign intent is for another {field}: it does not match the request")]
    Mismatch {
        /// Which field differs: key, message, request id or approval token.
        field: &'static str,
    },
    /// Its window has not begun (beyond the clock skew allowed).
    #[error("the sign intent is not valid before {not_before} (now {now})")]
    NotYetValid {
        /// Start of the window.
        not_before: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// Its window is over (beyond the clock skew allowed).
    #[error("the sign intent expired at {not_after} (now {now})")]
    Expired {
        /// End of the window.
        not_after: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// The window is longer than [`MAX_VALIDITY_SECS`] or ends before it begins.
    #[error("the sign intent's validity window {not_before}..={not_after} is not 0..={MAX_VALIDITY_SECS} s long")]
    BadWindow {
        /// Start of the window.
        not_before: u64,
        /// End of the window.
        not_after: u64,
    },
    /// The certificate or the signature does not hold, or the signer is no client.
    #[error("the sign intent's signature is not a client's of this trust domain: {0}")]
    Signer(#[from] AttestError),
}

fn put_field(out: &mut Vec<u8>, field: &str) {
    // Both fields are at most 128 bytes (checked when built and when decoded).
    let len = u16::try_from(field.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field.as_bytes());
}

/// Reads the body front to back, refusing anything short or left over.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], IntentError> {
        if self.0.len() < n {
            return Err(IntentError::Malformed(format!("truncated in {what}")));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn digest(&mut self, what: &str) -> Result<[u8; 32], IntentError> {
        let mut out = [0; 32];
        out.copy_from_slice(self.take(32, what)?);
        Ok(out)
    }

    fn u64(&mut self, what: &str) -> Result<u64, IntentError> {
        let mut out = [0; 8];
        out.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_be_bytes(out))
    }

    fn field(&mut self, what: &str) -> Result<String, IntentError> {
        let mut len = [0; 2];
        len.copy_from_slice(self.take(2, what)?);
        let len = usize::from(u16::from_be_bytes(len));
        if len > MAX_FIELD_BYTES {
            return Err(IntentError::Malformed(format!(
                "{what} is longer than {MAX_FIELD_BYTES} bytes"
            )));
        }
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| IntentError::Malformed(format!("{what} is not UTF-8")))
    }
}

fn digest_of_token(token: Option<&[u8]>) -> [u8; 32] {
    token.map(quorate_wire::sha256).unwrap_or([0; 32])
}

impl SignIntent {
    /// The intent for `request`, valid from `now` for `validity_secs`.
    pub fn for_request(request: &IntentRequest<'_>, now: u64, validity_secs: u64) -> Self {
        Self {
            key_id: request.key_id.to_string(),
            message_sha256: quorate_wire::sha256(request.message),
            request_id: request.request_id.to_string(),
            approval_token_sha256: digest_of_token(request.approval_token),
            not_before: now,
            not_after: now.saturating_add(validity_secs.min(MAX_VALIDITY_SECS)),
        }
    }

    /// The body as signed (docs/intent.md): version, key id, message digest,
    /// request id, approval-token digest, not-before, not-after; lengths and
    /// integers big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 2 + self.key_id.len() + 32 + 2 + 32 + 16 + 32);
        out.push(INTENT_VERSION);
        put_field(&mut out, &self.key_id);
        out.extend_from_slice(&self.message_sha256);
        put_field(&mut out, &self.request_id);
        out.extend_from_slice(&self.approval_token_sha256);
        out.extend_from_slice(&self.not_before.to_be_bytes());
        out.extend_from_slice(&self.not_after.to_be_bytes());
        out
    }

    /// Decodes a body; unknown versions, short bodies and trailing bytes are refused.
    pub fn decode(body: &[u8]) -> Result<Self, IntentError> {
        let mut r = Reader(body);
        let version = r.take(1, "version")?[0];
        if version != INTENT_VERSION {
            return Err(IntentError::Malformed(format!(
                "unknown version {version} (this build reads {INTENT_VERSION})"
            )));
        }
        let intent = Self {
            key_id: r.field("key id")?,
            message_sha256: r.digest("message digest")?,
            request_id: r.field("request id")?,
            approval_token_sha256: r.digest("approval token digest")?,
            not_before: r.u64("not-before")?,
            not_after: r.u64("not-after")?,
        };
        // docs/intent.md: the key id is 1..=128 bytes (a request always names a key).
        if intent.key_id.is_empty() {
            return Err(IntentError::Malformed(
                "the key id is empty (1..=128 bytes)".into(),
            ));
        }
        if !r.0.is_empty() {
            return Err(IntentError::Malformed(format!(
                "{} bytes after the end",
                r.0.len()
            )));
        }
        Ok(intent)
    }

    /// Whether this intent is for exactly `request`.
    pub fn check_request(&self, request: &IntentRequest<'_>) -> Result<(), IntentError> {
        self.check_recorded(
            request.key_id,
            &quorate_wire::sha256(request.message),
            request.request_id,
        )?;
        if self.approval_token_sha256 != digest_of_token(request.approval_token) {
            return Err(IntentError::Mismatch {
                field: "approval token",
            });
        }
        Ok(())
    }

    /// Whether this intent is for the key, message digest and request id an audit
    /// record names (a record keeps the message's digest, not the message).
    pub fn check_recorded(
        &self,
        key_id: &str,
        message_sha256: &[u8; 32],
        request_id: &str,
    ) -> Result<(), IntentError> {
        let mismatch = |field| Err(IntentError::Mismatch { field });
        if self.key_id != key_id {
            return mismatch("key");
        }
        if &self.message_sha256 != message_sha256 {
            return mismatch("message");
        }
        if self.request_id != request_id {
            return mismatch("request id");
        }
        Ok(())
    }

    /// Whether the window is well formed and holds `now` (seconds since the Unix
    /// epoch), with [`CLOCK_SKEW_SECS`] of slack at both ends.
    pub fn check_time(&self, now: u64) -> Result<(), IntentError> {
        if self.not_after < self.not_before || self.not_after - self.not_before > MAX_VALIDITY_SECS
        {
            return Err(IntentError::BadWindow {
                not_before: self.not_before,
                not_after: self.not_after,
            });
        }
        if now.saturating_add(CLOCK_SKEW_SECS) < self.not_before {
            return Err(IntentError::NotYetValid {
                not_before: self.not_before,
                now,
            });
        }
        if now > self.not_after.saturating_add(CLOCK_SKEW_SECS) {
            return Err(IntentError::Expired {
                not_after: self.not_after,
                now,
            });
        }
        Ok(())
    }
}

/// Signs intents with a client's mTLS key.
pub fn sign_intent(
    signer: &StatementSigner,
    intent: &SignIntent,
) -> Result<pb::Signed, AttestError> {
    signer.sign(INTENT_KIND, intent.encode())
}

/// Signs the intent for `request`, valid from now for `validity_secs` (at most
/// [`MAX_VALIDITY_SECS`]): what a client sends with each `Sign`.
pub fn sign_intent_now(
    signer: &StatementSigner,
    request: &IntentRequest<'_>,
    validity_secs: u64,
) -> Result<pb::Signed, AttestError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| AttestError::Setup(format!("the clock is before 1970: {e}")))?
        .as_secs();
    sign_intent(
        signer,
        &SignIntent::for_request(request, now, validity_secs),
    )
}

/// An intent that verified: the client who signed it and what it asked for.
#[derive(Clone, Debug)]
pub struct VerifiedIntent {
    /// The client, from the intent's certificate.
    pub client: PeerIdentity,
    /// What it signed.
    pub intent: SignIntent,
}

/// Checks sign intents against one trust domain's CA, remembering verified
/// certificate chains (the signature is checked on every intent).
#[derive(Debug)]
pub struct IntentVerifier {
    statements: StatementVerifier,
    chains: ChainCache,
}

impl IntentVerifier {
    /// Verifies intents signed by clients that chain to `statements`' CA.
    pub fn new(statements: StatementVerifier) -> Self {
        Self {
            statements,
            chains: ChainCache::default(),
        }
    }

    /// Verifies `intent` for `request` at the current time.
    pub fn verify(
        &self,
        intent: Option<&pb::Signed>,
        request: &IntentRequest<'_>,
    ) -> Result<VerifiedIntent, IntentError> {
        self.verify_at(intent, request, UnixTime::now())
    }

    /// Verifies `intent` for `request` at `now`. The cheap checks (the request,
    /// the window) come before the certificate and the signature.
    pub fn verify_at(
        &self,
        intent: Option<&pb::Signed>,
        request: &IntentRequest<'_>,
        now: UnixTime,
    ) -> Result<VerifiedIntent, IntentError> {
        let signed = intent.ok_or(IntentError::Missing)?;
        self.verify_with(signed, now, |decoded| decoded.check_request(request))
    }

    /// Verifies the intent an audit record kept for a share it records: signed by
    /// a client of this CA whose certificate was valid at the record's time, for
    /// the record's key, message digest and request id, and valid then. Returns the
    /// client, which the record must name.
    pub fn verify_recorded(
        &self,
        signed: &pb::Signed,
        key_id: &str,
        message_sha256: &[u8; 32],
        request_id: &str,
        at_unix_secs: u64,
    ) -> Result<VerifiedIntent, IntentError> {
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(at_unix_secs));
        self.verify_with(signed, at, |decoded| {
            decoded.check_recorded(key_id, message_sha256, request_id)
        })
    }

    /// Decodes `signed`, runs `matches` on it, checks its window at `now`, then the
    /// certificate and the signature: the cheap checks before the expensive ones.
    fn verify_with(
        &self,
        signed: &pb::Signed,
        now: UnixTime,
        matches: impl FnOnce(&SignIntent) -> Result<(), IntentError>,
    ) -> Result<VerifiedIntent, IntentError> {
        let decoded = SignIntent::decode(&signed.body)?;
        matches(&decoded)?;
        decoded.check_time(now.as_secs())?;
        let client =
            self.statements
                .identify(signed, INTENT_KIND, Role::Client, &self.chains, now)?;
        Ok(VerifiedIntent {
            client,
            intent: decoded,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn intent() -> SignIntent {
        SignIntent {
            key_id: "demo-ed25519".into(),
            message_sha256: [7; 32],
            request_id: "r-1".into(),
            approval_token_sha256: [0; 32],
            not_before: 1_000,
            not_after: 1_060,
        }
    }

    #[test]
    fn an_intent_round_trips_and_any_trailing_or_missing_byte_is_refused() {
        let body = intent().encode();
        assert_eq!(SignIntent::decode(&body).unwrap(), intent());
        let mut longer = body.clone();
        longer.push(0);
        assert!(matches!(
            SignIntent::decode(&longer),
            Err(IntentError::Malformed(_))
        ));
        for cut in 0..body.len() {
            assert!(SignIntent::decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut v2 = body;
        v2[0] = 2;
        assert!(matches!(
            SignIntent::decode(&v2),
            Err(IntentError::Malformed(_))
        ));
    }

    #[test]
    fn a_body_with_an_empty_key_id_is_refused() {
        let empty = SignIntent {
            key_id: String::new(),
            ..intent()
        };
        let err = SignIntent::decode(&empty.encode()).unwrap_err();
        assert!(matches!(err, IntentError::Malformed(_)), "{err}");
        assert!(err.to_string().contains("key id is empty"), "{err}");
        // One byte is the shortest key id there is.
        let one = SignIntent {
            key_id: "k".into(),
            ..intent()
        };
        assert_eq!(SignIntent::decode(&one.encode()).unwrap(), one);
    }

    #[test]
    fn the_window_holds_with_skew_and_is_refused_outside_it_or_when_too_long() {
        let i = intent();
        assert!(i.check_time(1_000 - CLOCK_SKEW_SECS).is_ok());
        assert!(i.check_time(1_060 + CLOCK_SKEW_SECS).is_ok());
        assert!(matches!(
            i.check_time(1_000 - CLOCK_SKEW_SECS - 1),
            Err(IntentError::NotYetValid { .. })
        ));
        assert!(matches!(
            i.check_time(1_061 + CLOCK_SKEW_SECS),
            Err(IntentError::Expired { .. })
        ));
        let long = SignIntent {
            not_after: 1_000 + MAX_VALIDITY_SECS + 1,
            ..intent()
        };
        assert!(matches!(
            long.check_time(1_010),
            Err(IntentError::BadWindow { .. })
        ));
        let backwards = SignIntent {
            not_after: 999,
            ..intent()
        };
        assert!(matches!(
            backwards.check_time(1_000),
            Err(IntentError::BadWindow { .. })
        ));
    }

    #[test]
    fn an_intent_matches_only_its_own_request() {
        let message = b"pay 10 EUR";
        let token = b"token";
        let request = IntentRequest {
            key_id: "k",
            message,
            request_id: "r",
            approval_token: Some(token),
        };
        let i = SignIntent::for_request(&request, 1_000, 60);
        assert!(i.check_request(&request).is_ok());
        for (other, field) in [
            (
                IntentRequest {
                    key_id: "k2",
                    ..request
                },
                "key",
            ),
            (
                IntentRequest {
                    message: b"pay 99 EUR",
                    ..request
                },
                "message",
            ),
            (
                IntentRequest {
                    request_id: "r2",
                    ..request
                },
                "request id",
            ),
            (
                IntentRequest {
                    approval_token: None,
                    ..request
                },
                "approval token",
            ),
            (
                IntentRequest {
                    approval_token: Some(b"other"),
                    ..request
                },
                "approval token",
            ),
        ] {
            match i.check_request(&other) {
                Err(IntentError::Mismatch { field: f }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    fn verifier(ca: &crate::test_ca::Ca) -> IntentVerifier {
        IntentVerifier::new(StatementVerifier::from_pem(ca.pem.as_bytes(), "quorate.test").unwrap())
    }

    #[test]
    fn a_clients_signed_intent_verifies_and_names_the_client_and_others_are_refused() {
        let ca = crate::test_ca::new_ca("CA");
        let verifier = verifier(&ca);
        let message = b"pay 10 EUR";
        let request = IntentRequest {
            key_id: "k",
            message,
            request_id: "",
            approval_token: None,
        };
        let now = UnixTime::now();
        let fresh = SignIntent::for_request(&request, now.as_secs(), 60);
        let client = crate::test_ca::signer(&ca, "client", "payments");
        let signed = sign_intent(&client, &fresh).unwrap();
        let verified = verifier.verify(Some(&signed), &request).unwrap();
        assert_eq!(
            verified.client.spiffe_id(),
            "spiffe://quorate.test/client/payments"
        );
        // Again: the chain is remembered, the signature checked anew.
        assert!(verifier.verify(Some(&signed), &request).is_ok());
        assert_eq!(verifier.chains.len(), 1);
        let mut forged = signed.clone();
        forged.body = SignIntent {
            request_id: "r".into(),
            ..fresh.clone()
        }
        .encode();
        let forged_request = IntentRequest {
            request_id: "r",
            ..request
        };
        assert!(matches!(
            verifier.verify(Some(&forged), &forged_request),
            Err(IntentError::Signer(AttestError::BadSignature))
        ));
        // A node's (or coordinator's) certificate is no client's.
        let node = crate::test_ca::signer(&ca, "node", "node-1");
        assert!(matches!(
            verifier.verify(Some(&sign_intent(&node, &fresh).unwrap()), &request),
            Err(IntentError::Signer(AttestError::WrongSigner { .. }))
        ));
        // A client of another CA.
        let other = crate::test_ca::new_ca("other CA");
        let stranger = crate::test_ca::signer(&other, "client", "payments");
        assert!(matches!(
            verifier.verify(Some(&sign_intent(&stranger, &fresh).unwrap()), &request),
            Err(IntentError::Signer(AttestError::Certificate(_)))
        ));
        assert!(matches!(
            verifier.verify(None, &request),
            Err(IntentError::Missing)
        ));
    }
}
