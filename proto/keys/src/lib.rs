//! The rules of a Quorate key, shared by everyone who must agree on them: the
//! [`manifest`] (a key's public description, byte-identical on every participant),
//! the escrow [`custodians`] fixed in it, its sovereignty and access [`policy`]
//! (with its administrators), the administrators' [`authorization`]s of governed
//! operations, compliance [`approval`] tokens for an out-of-policy quorum and their
//! [`revocation`]s, and the [`audit`] record format with its hash chain, the
//! [`merkle`] tree over a node's audit log (RFC 9162) and its signed
//! [`checkpoint`]s (C2SP signed notes) with witnesses'
//! [`cosignature`]s.
//!
//! The coordinator uses these to choose quorums; every node enforces them itself (the
//! coordinator is not trusted to). Nothing here touches a share.
#![deny(clippy::unwrap_used)]

pub mod approval;
pub mod audit;
pub mod authorization;
pub mod checkpoint;
pub mod cosignature;
pub mod custodians;
pub mod manifest;
pub mod merkle;
pub mod policy;
pub mod revocation;
