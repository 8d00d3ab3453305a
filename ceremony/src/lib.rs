//! Key ceremonies of Quorate, run by key custodians with the `quorate-ceremony` CLI.
//!
//! A ceremony is the only process that talks to nodes as role `ceremony`: it creates
//! keys and installs their shares, and records what it did in a [`transcript::Transcript`]
//! (JSON) that holds public facts only. This crate provides:
//!
//! - the shared base of every ceremony: [`error`] (why a ceremony failed, naming the
//!   nodes), [`ceremony_file`] (who takes part and how to reach them), [`transcript`]
//!   (the public record), [`connect`] (mTLS channels to the nodes and the pre-check),
//!   [`policy_file`] (a key's policy as a custodian writes it), [`custodians_file`]
//!   (a key's escrow custodians), `files` (records written new and synced), [`plan`] (a governed operation's setup, which the
//!   key's administrators authorize before it runs);
//! - [`pki`]: a development PKI (one CA per trust domain, SPIFFE role certificates)
//!   for tests, the testnet and evaluations;
//! - [`import`]: trusted-dealer import, which splits an existing (or fresh) key into
//!   FROST shares and installs one on each node, for migrations;
//! - [`keygen`]: distributed key generation, share refresh and share repair, driven
//!   across the nodes, which sign what they send and seal secrets to each other so the
//!   ceremony process relays without being trusted; and `transcript verify`;
//! - [`escrow`]: custodian escrow of one node's share (split on the node, verify by
//!   one custodian, recover into a fresh node);
//! - [`revoke`]: delivering an approver's revocation of an approval token to every
//!   node of the key;
//! - [`cli`]: the `quorate-ceremony` command line (clap types, one file per
//!   command group), which the binary only parses and runs;
//! - [`audit`]: reading a node's hash-chained audit log as an auditor and checking
//!   it. (Approval tokens for out-of-policy quorums are made with
//!   [`quorate_keys::approval`].)
//!
//! Layering: the shared base uses nothing above it; `import`, `keygen`, `escrow`
//! and `revoke`
//! use the base and never each other; [`cli`] uses them all and nothing uses it.
//!
//! Invariants: nodes are reached only over mTLS with the ceremony's own certificate;
//! every node's identity, region and jurisdiction are checked before any secret is
//! dealt; secrets (imported keys, key packages, private keys) are held in zeroizing
//! buffers and never appear in logs, errors, transcripts or `Debug` output.
#![deny(clippy::unwrap_used)]

pub mod audit;
pub mod ceremony_file;
pub mod cli;
pub mod connect;
pub mod custodians_file;
pub mod error;
pub mod escrow;
mod files;
pub mod import;
pub mod keygen;
pub mod pki;
pub mod plan;
pub mod policy_file;
pub mod revoke;
#[cfg(test)]
mod test_support;
pub mod transcript;
