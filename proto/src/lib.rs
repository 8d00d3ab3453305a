//! Shared protocol layer of Quorate.
//!
//! - [`pb`]: the generated gRPC schema (package `quorate.v1`): the public `Signer`
//!   service, the internal `Node` and `Ceremony` services.
//! - [`suite`]: one code path over the three FROST ciphersuites; callers hold bytes in
//!   the ciphersuite's FROST encoding and never name a curve type.
//! - [`manifest`]: a key's public description, validated once at the boundary.
//! - [`escrow`]: Feldman splitting of one node's signing share among custodians, and
//!   the escrow part file format.
//! - [`identity`] and [`tls`]: mTLS setup and SPIFFE peer identities. Identity always
//!   comes from the authenticated certificate, never from a message field.
//! - [`ceremony`], [`attest`] and [`envelope`]: what nodes exchange in key ceremonies
//!   (DKG, refresh, repair): statements signed with the node's mTLS key, and
//!   end-to-end encrypted envelopes the relaying ceremony cannot read.
//!
//! Secret material (key packages, nonces) is held in [`zeroize::Zeroizing`] buffers
//! and never printed.
#![deny(clippy::unwrap_used)]

pub mod api;
pub mod approval;
pub mod attest;
pub mod audit;
pub mod ceremony;
pub mod config;
pub mod envelope;
pub mod escrow;
pub mod identity;
pub mod manifest;
pub mod metrics;
pub mod policy;
pub mod ratelimit;
pub mod runtime;
pub mod suite;
#[cfg(test)]
mod test_ca;
pub mod tls;

/// Generated protobuf and gRPC code for package `quorate.v1`.
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod pb {
    tonic::include_proto!("quorate.v1");

    /// Encoded `FileDescriptorSet` of the schema, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("quorate_descriptor");
}

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

/// Installs the process-wide rustls crypto provider (ring). Call at the start of
/// `main` and of every test that builds TLS configs; repeated calls are harmless.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}
