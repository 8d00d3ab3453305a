//! The Quorate client: what a service links to ask for signatures, and the `quorate`
//! CLI on top of it.
//!
//! A [`Client`] is built from a [`ClientConfig`] (`client.toml`). For every `Sign`
//! it signs the client's intent with the key of its mTLS certificate
//! (docs/intent.md), tries the coordinators in order of health (one that failed
//! rests at the back, so a dead coordinator costs one timeout, not one per
//! request), retries only what another coordinator could answer differently, always
//! under one request id, within one deadline, and verifies the signature under the
//! key's public key with a library other than the one that made it ([`verify`])
//! before returning it, under a public key that at least the key's threshold of its
//! participants attest ([`attestation`]). The coordinator is not trusted: a key it
//! cannot show attested, or a signature that does not verify, is an error, never a
//! result.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod attestation;
pub mod cli;
mod client;
pub mod config;
mod connect;
pub mod error;
mod health;
pub mod jws;
pub mod key_formats;
pub mod sshsig;
pub mod verify;
pub mod x509;

pub use client::{Client, KeyParticipant, KeySummary, PublicKey, SignOptions, Signature, Verdict};
pub use config::{ClientConfig, ConfigError, CoordinatorEntry};
pub use error::{Attempt, ClientError};
pub use health::REST;
