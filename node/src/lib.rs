//! The Quorate signer node.
//!
//! A node holds FROST key shares for one region. It keeps them in sled, sealed under a
//! key-encryption key ([`store`]); serves FROST round 1 and round 2 to coordinators
//! over mTLS ([`service`], [`sign`]); and keeps nonces in memory only, single-use,
//! expiring and bounded ([`nonces`]).
//!
//! Invariants:
//! - a nonce is removed from the store before its signature share is computed, so no
//!   nonce ever signs twice; nonces are never persisted;
//! - identity comes from the caller's verified certificate; coordinators may call
//!   `Node`, only the ceremony may call `Ceremony`;
//! - nothing is acknowledged before it is flushed to disk; once a flush of the audit
//!   log fails, the node spends no nonce and writes no record until it is restarted
//!   (round 2 and `Commit` are refused with `UNAVAILABLE`, and its gRPC health is
//!   `NOT_SERVING`).
//!
//! Layers, each using only those below it: [`server`] (bind and serve) over
//! [`service`] (one gRPC adapter per service) over the steps ([`sign`], [`escrow`],
//! [`ceremony`]) over the node's state and key registry ([`state`], [`key`],
//! [`identity`], [`metrics`], [`checkpoints`], [`witness`], [`activations`]) over storage ([`store`] with [`kek`] and [`rotation`], [`audit`], [`nonces`]) and
//! [`config`] and [`error`].
#![deny(clippy::unwrap_used)]

pub mod activations;
pub mod audit;
pub mod ceremony;
pub mod checkpoints;
pub mod config;
pub mod error;
pub mod escrow;
pub mod identity;
pub mod install;
pub mod kek;
pub mod key;
pub mod metrics;
pub mod nonces;
pub mod rotation;
pub mod server;
pub mod service;
pub mod sign;
pub mod state;
pub mod store;
pub mod witness;

pub use config::{NodeConfig, NodeConfigFile};
pub use error::NodeError;
pub use server::BoundNode;
