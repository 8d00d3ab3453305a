//! Custodian escrow of one node's signing share: `split`, `verify`, `recover`.
//!
//! - **split** asks a node (`Ceremony.EscrowSplit`) to Feldman-split its own signing
//!   share among the `m` custodians in the key's manifest, with its threshold `k`.
//!   The node encrypts each part to its custodian's age X25519 recipient; this
//!   process only relays ciphertexts and writes one `.age` file per custodian. It
//!   never sees a plaintext part, and cannot redirect the parts (the custodians were
//!   chosen when the key was created, or by a refresh its administrators authorized;
//!   `transcript verify --custodians` checks them).
//! - **verify** lets one custodian check their decrypted part alone against the
//!   Feldman commitments it carries (the first of which is the node's verifying share).
//! - **recover** takes `k` or more parts, checks each one and that they belong to the
//!   same split, fetches the key's manifest from the live nodes (at least `t` of its
//!   participants must attest it), checks the parts escrow the share the manifest
//!   names for the node, rebuilds the share, accepts it only if it matches that
//!   verifying share, and installs it on the (fresh) node via `Ceremony.InstallKey`
//!   with the recovery's setup; for a key with administrators, the plan they
//!   authorized ([`plan_recover`]) and their authorizations, which the node checks.
//!
//! Secrets (decrypted parts, the rebuilt share, the key package) stay in zeroizing
//! buffers and never appear in logs, errors or output.
//!
//! One file per job: [`split`](split()), [`part`](read_part) (reading and verifying a
//! custodian's part: `verify`) and [`recover`](recover()); the node calls they share
//! are in `node`, the error in [`EscrowError`].

mod error;
mod node;
mod part;
mod recover;
mod split;

pub use error::EscrowError;
pub use part::{read_part, verify_part, Identities};
pub use recover::{plan_recover, recover, RecoverOutcome, RecoverRequest};
pub use split::{part_file_name, plan_split, split, SplitOutcome, SplitRequest};
