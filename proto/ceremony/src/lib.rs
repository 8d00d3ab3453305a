//! What nodes exchange in key ceremonies (DKG, refresh, repair), used by nodes and the
//! ceremony tool only: the ceremony [`setup`] and the checks both sides run on it, and
//! the end-to-end encrypted [`envelope`]s between nodes that the relaying ceremony
//! tool cannot read. Statements are signed with each node's certificate key
//! ([`quorate_transport::attest`]).
//!
//! The coordinator never depends on this crate: it takes no part in ceremonies.
#![deny(clippy::unwrap_used)]

pub mod envelope;
pub mod setup;
