//! Custodian escrow of one node's signing share: Feldman verifiable secret sharing
//! (vsss-rs) of the share's scalar, and the escrow part file format.
//!
//! A node splits **its own** signing share `s` into `m` parts with threshold `k`:
//! `f(x) = s + a_1 x + … + a_{k-1} x^{k-1}`, part `i` is `(i, f(i))`, and the Feldman
//! commitments are `G·s, G·a_1, …, G·a_{k-1}`. The first commitment is the node's
//! verifying share, so one custodian can check a part alone against public values,
//! and a recovered share is accepted only when `G·s` equals the verifying share the
//! key's manifest names (vsss-rs' `combine` of too few parts returns a wrong scalar
//! without error; that check is what catches it).
//!
//! vsss-rs 5 works over the same curve types as frost 3 (k256 0.13,
//! curve25519-dalek 4), but values cross between them as bytes in the ciphersuite's
//! FROST encoding, which is also what the part files hold. Scalars and points are
//! parsed strictly: a byte string is accepted only if it re-encodes to itself.
//!
//! This is the only crate that links vsss-rs. Nodes and the ceremony tool use it; the
//! coordinator never depends on it: it never handles a share.
#![deny(clippy::unwrap_used)]

/// Format tag of escrow part files this build writes and reads.
pub const ESCROW_FORMAT: &str = "quorate-escrow/1";

/// Most custodians one split may name, and the longest custodian name: the limits
/// of a key's escrow in its manifest.
pub use quorate_wire::{validate_custodian_name, MAX_CUSTODIANS, MAX_CUSTODIAN_NAME_BYTES};

pub mod feldman;
pub mod file;
pub mod request;

pub use feldman::{combine, split, verify, EscrowSplit, ShamirPart};
pub use file::{EscrowFileError, EscrowPart};
pub use request::SplitRequest;

#[cfg(test)]
mod tests;
