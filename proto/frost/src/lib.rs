//! The FROST ciphersuite layer of Quorate: one code path over FROST(Ed25519, SHA-512),
//! FROST(secp256k1, SHA-256) and FROST(secp256k1, SHA-256) with BIP340 (Taproot)
//! output, over frost-core.
//!
//! Callers hold bytes in the ciphersuite's frost serialization and never name a curve
//! type: [`Ciphersuite::ops`] gives the [`SuiteOps`] of a ciphersuite, whose methods
//! are the protocol steps, each defined in the module named after it the way
//! frost-core names them: [`round1`], [`round2`], [`verify`], and under [`keys`] the
//! [`keys::dealer`], [`keys::dkg`], [`keys::refresh`] and [`keys::repair`] steps.
//! [`generic`] holds `Frost<C>`, which implements every step once, generically;
//! [`suite`] puts a ciphersuite's steps behind one `&'static dyn SuiteOps`.
//!
//! This crate knows nothing of the network (no tonic, no protobuf) or of escrow; it is
//! the bottom of the dependency graph, used by nodes, the coordinator (aggregation and
//! verification) and the ceremony tool alike. Secret values ([`secret`]) zeroize on
//! drop and print `<redacted>`.
//!
//! Feature `fault-injection` adds [`danger`]: corrupt signature shares for the
//! malicious-signer drill. Release images never enable it.
#![deny(clippy::unwrap_used)]

pub mod ciphersuite;
#[cfg(feature = "fault-injection")]
pub mod danger;
pub mod error;
pub mod generic;
pub mod keys;
pub mod local;
pub mod packages;
pub mod round1;
pub mod round2;
pub mod secret;
pub mod suite;
pub mod verify;

pub use ciphersuite::Ciphersuite;
pub use error::CryptoError;
pub use generic::{Frost, PublicEncoding};
pub use keys::{Dealer, DealtKey, Dkg, DkgMode, Refresh, Repair};
pub use local::{LocalQuorum, PackageDelivery};
pub use packages::{
    KeyPackageInfo, KeyPackages, ParsedKeyPackage, ParsedPublicKeyPackage, PublicKeyInfo,
};
pub use round1::{ParsedCommitments, Round1};
pub use round2::{ParsedSigningPackage, ReceivedSigningPackage, Round2};
pub use secret::{SecretBytes, SecretKeyPackage, SecretNonces, SecretScalar};
pub use suite::{ops, SuiteOps};
pub use verify::Verify;

#[cfg(test)]
mod tests;
