//! Service plumbing shared by Quorate's servers and clients: SPIFFE peer
//! [`identity`] from mTLS certificates, [`tls`] configuration (reloaded live by [`tls_reload`], served by [`tls_accept`]), statements signed with a
//! certificate's private key and checked against the CA ([`attest`]), among them the
//! sign [`intent`]s clients sign for every request and a node's statement that it
//! holds a key ([`key_attestation`]), Prometheus
//! [`metrics`], per-client [`ratelimit`]s, [`config`] loading, process [`runtime`]
//! (logging, signals, drains) and `grpc.health.v1` ([`health`]: one status for the
//! mTLS port and an optional plaintext health port).
//!
//! Identity always comes from the authenticated certificate, never from a message
//! field. Nothing here touches a share.
#![deny(clippy::unwrap_used)]

pub mod attest;
pub mod config;
pub mod health;
pub mod identity;
pub mod intent;
pub mod key_attestation;
pub mod metrics;
pub mod ratelimit;
pub mod runtime;
#[cfg(any(test, feature = "test-pki"))]
pub mod test_ca;
pub mod tls;
pub mod tls_accept;
pub mod tls_reload;

/// Installs the process-wide rustls crypto provider (ring). Call at the start of
/// `main` and of every test that builds TLS configs; repeated calls are harmless.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
