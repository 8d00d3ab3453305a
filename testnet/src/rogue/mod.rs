//! Parties that lie, for the drills and tests that play them against real
//! processes: a node reporting a manifest the network never made ([`manifest`],
//! served by [`node::ForgingNode`]), and a TLS server presenting a certificate that
//! is not the server's ([`impostor::Impostor`]), which reports whether each
//! handshake completed. [`serve`] runs either at a node's address as a process of
//! its own (`quorate-testnet rogue-node`), so a drill can put it in place of a real
//! node on local processes and in a container on the compose network alike.

pub mod impostor;
pub mod manifest;
pub mod node;
pub mod serve;

pub use impostor::{Impostor, Outcome};
pub use manifest::{forged_manifest, forged_reports};
pub use node::ForgingNode;
pub use serve::{
    command_args, serve, wait_listening, ANSWERED, HANDSHAKE_COMPLETED, HANDSHAKE_FAILED,
};
