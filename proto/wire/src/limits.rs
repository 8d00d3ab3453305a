//! Size limits every server enforces at the boundary, and the syntax of a key id.
//! The limits are part of the public contract: docs and clients quote them.

/// Largest message `Sign` accepts, in bytes. Larger messages get `INVALID_ARGUMENT`;
/// callers with bigger payloads sign a digest.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Largest gRPC request the coordinator's `Signer` server decodes. A `Sign` request
/// holds at most a [`MAX_MESSAGE_BYTES`] message, a 4 KiB approval token and two
/// 128-byte ids; 256 KiB leaves room for framing without letting a client make the
/// coordinator buffer megabytes per call. Larger requests are refused by the gRPC
/// layer (`OUT_OF_RANGE`) before any handler runs.
pub const MAX_SIGNER_REQUEST_BYTES: usize = 256 * 1024;

/// Largest gRPC request a node's servers decode. The largest requests are
/// `SignShare` (a signing package: the message, up to [`MAX_MESSAGE_BYTES`], plus
/// about 100 bytes of identifier and commitments per signer) and `InstallKey` (a
/// manifest: about 200 bytes per participant). 1 MiB holds either for thousands of
/// participants, far beyond any quorum we run, while bounding what a peer can make a
/// node buffer. Larger requests are refused by the gRPC layer (`OUT_OF_RANGE`).
pub const MAX_NODE_REQUEST_BYTES: usize = 1024 * 1024;

/// HTTP/2 streams a server may reset for errors of the peer's making, per
/// connection, before it sends GOAWAY: h2's guard against floods of streams made to
/// fail (RUSTSEC-2024-0003). hyper's default; tonic 0.14 passes none, which hyper
/// takes as no limit, so every server sets it.
pub const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;

/// HTTP/2 streams a client may reset before the coordinator accepted them, per
/// connection, before it sends GOAWAY (the rapid-reset guard, CVE-2023-44487). h2's
/// default, set explicitly so that no dependency update can drop it. Nodes allow
/// more (their only callers are coordinators, which reset streams by design).
pub const COORDINATOR_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;

/// Longest key id, in bytes.
pub const MAX_KEY_ID_BYTES: usize = 128;

/// Checks a key id: 1..=128 bytes of `[A-Za-z0-9._-]`, so it is safe in file names,
/// logs and URLs.
pub fn validate_key_id(key_id: &str) -> Result<(), String> {
    if key_id.is_empty() {
        return Err("key_id is empty".into());
    }
    if key_id.len() > MAX_KEY_ID_BYTES {
        return Err(format!("key_id is longer than {MAX_KEY_ID_BYTES} bytes"));
    }
    if !key_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("key_id may only hold letters, digits, '.', '_' and '-'".into());
    }
    Ok(())
}

/// Most custodians a key's escrow may name.
pub const MAX_CUSTODIANS: u16 = 64;

/// Longest custodian name, in bytes.
pub const MAX_CUSTODIAN_NAME_BYTES: usize = 64;

/// Checks a custodian name: 1..=64 bytes of `[A-Za-z0-9._-]`, not starting with `.`,
/// so it is safe in file names and logs.
pub fn validate_custodian_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_CUSTODIAN_NAME_BYTES {
        return Err(format!(
            "custodian name {name:?} must be 1..={MAX_CUSTODIAN_NAME_BYTES} bytes"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        || name.starts_with('.')
    {
        return Err(format!(
            "custodian name {name:?} may only hold letters, digits, '.', '_' and '-' \
             (not leading '.')"
        ));
    }
    Ok(())
}

/// Largest body of a client's signed intent, in bytes (an intent is at most 341).
pub const MAX_INTENT_BODY_BYTES: usize = 512;

/// Largest certificate a signed statement may carry, in bytes (DER).
pub const MAX_STATEMENT_CERTIFICATE_BYTES: usize = 16 * 1024;

/// Largest signature of a signed statement, in bytes (RSA-4096 is 512).
pub const MAX_STATEMENT_SIGNATURE_BYTES: usize = 1024;

/// Checks the sizes of a client's signed intent, so that nothing larger is kept,
/// relayed or recorded.
pub fn check_intent_size(intent: &crate::pb::Signed) -> Result<(), String> {
    if intent.body.len() > MAX_INTENT_BODY_BYTES {
        return Err(format!(
            "intent body is longer than {MAX_INTENT_BODY_BYTES} bytes"
        ));
    }
    if intent.certificate.len() > MAX_STATEMENT_CERTIFICATE_BYTES {
        return Err(format!(
            "intent certificate is longer than {MAX_STATEMENT_CERTIFICATE_BYTES} bytes"
        ));
    }
    if intent.signature.len() > MAX_STATEMENT_SIGNATURE_BYTES {
        return Err(format!(
            "intent signature is longer than {MAX_STATEMENT_SIGNATURE_BYTES} bytes"
        ));
    }
    Ok(())
}
