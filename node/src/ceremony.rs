//! The node's side of key ceremonies: DKG, refresh and repair sessions.
//!
//! Secret state (frost round-1/round-2 secret packages, the per-ceremony X25519
//! envelope key, a computed but not yet activated key package, repair deltas) lives
//! only here, in memory, keyed by ceremony id. Each step takes its session out of
//! the table, so a step consumes the previous step's state; the session goes back
//! only if the step succeeded. Any failure, an `Abort`, or expiry drops it. Nothing
//! here is logged beyond ids and hashes.
//!
//! Trust: the ceremony tool relays messages but is not trusted with them. Every
//! contribution and confirmation a node accepts is signed by its named peer's mTLS
//! key ([`quorate_transport::attest`]); secret packages travel in envelopes only the
//! recipient can open ([`quorate_ceremony_protocol::envelope`]). A key becomes active only when
//! every participant has confirmed the same round-1 transcript, group key and
//! manifest.
//!
//! Layout: [`sessions`] holds the secret state, [`participant`] this node's
//! ceremony keys and the checks every step shares, [`governance`] the
//! administrators' authorizations, and one module per ceremony holds its steps
//! ([`dkg`], also a refresh's rounds up to its staged share; [`refresh`]: commit,
//! state, abandonment, rollback, retirement; [`repair`]). The
//! `Ceremony` gRPC adapter calls the steps; nothing here calls back into it.

pub mod dkg;
pub mod governance;
pub mod participant;
pub mod refresh;
pub mod repair;
pub mod sessions;

pub use participant::{CeremonyKeys, Participant};
pub use sessions::{Sessions, MAX_SESSIONS, SESSION_TTL};
