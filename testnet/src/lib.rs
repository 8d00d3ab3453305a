//! The Quorate testnet: a whole signer network on one machine.
//!
//! [`network::LocalNetwork`] runs real `quorate-node` and `quorate-coordinator`
//! processes on loopback with a fresh PKI and keys installed by ceremony, and writes
//! `testnet.json` ([`spec::TestnetJson`]). [`client::SignerClient`] signs through the
//! public API for tests that need one coordinator's raw answers; everything else asks
//! through the client library (`quorate_client`), which checks each signature with an
//! independent verifier ([`verify`], re-exported from it).
//! The integration tests in `tests/` drive the same network the CLI starts.
//!
//! [`drill`] runs the quorum drills against that network or against the
//! docker-compose testnet, which [`compose`] lays out, sets up from inside its
//! containers, and drives with docker commands. [`bench`] load-tests a local
//! network. [`cmd`] is the command line, one file per subcommand.
//!
//! [`wan`] puts each process of a local network in its own network namespace behind
//! a link emulator with the delays, jitter and loss of real inter-region links.
//!
//! [`rogue`] plays the parties that lie (a node reporting a forged manifest, a
//! server presenting another party's certificate) for drills and tests.
//!
//! Layers, lowest first (a module uses only those before it): [`spec`],
//! [`toml_text`], [`approver`], [`administrators`], [`custodians`], [`wan`]; [`client`], [`probe`], [`rogue`]; [`network`],
//! [`compose`]; [`bench`], [`drill`]; [`cmd`].
#![deny(clippy::unwrap_used)]

pub mod administrators;
pub mod approver;
pub mod bench;
pub mod client;
pub mod cmd;
pub mod compose;
pub mod custodians;
pub mod drill;
pub mod network;
pub mod probe;
pub mod rogue;
pub mod spec;
pub mod toml_text;
pub mod wan;
pub use quorate_client::verify;
