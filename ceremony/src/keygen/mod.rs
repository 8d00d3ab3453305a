//! Distributed key ceremonies driven across the nodes: DKG, refresh and repair, and
//! `transcript verify`.
//!
//! The ceremony process is only a relay. Each node signs its contributions and
//! confirmations with its mTLS key, and seals secret packages to the recipient
//! node's per-ceremony envelope key; the nodes check each other's signatures
//! themselves. The ceremony checks them too, only to name the party at fault early.
//! Any failure aborts the ceremony on every node (`Abort`), which drops all pending
//! secret state, and reports which node failed and why.
//!
//! DKG: `DkgRound1` (contributions) -> `DkgRound2` (every contribution to every
//! node; sealed round-2 packages back) -> `DkgRound3` (each node's envelopes; signed
//! confirmations back) -> the manifest is built from the setup and the public key
//! package, checked against every confirmation -> `DkgActivate` (manifest and all
//! confirmations to every node; each checks them and only then stores the key).
//! Refresh runs the same rounds with frost's refresh variant among the remaining
//! nodes, whose `DkgActivate` only stages each new share; with every node's receipt,
//! `DkgCommit` makes them current, then `RetireKey` deletes a removed node's share.
//! A rerun of an interrupted refresh asks each node where it stands
//! (`RefreshState`) and finishes it, or rolls it back (`AbandonRefresh`,
//! `RollbackRefresh`): see `refresh`. Refresh, repair and escrow split are planned
//! first ([`crate::plan`]) so that a key's administrators can authorize them.
//! Repair: `RepairStart` (helpers and target) -> `RepairDeltas` -> `RepairSigma` ->
//! `RepairFinish` on the target.
//!
//! One file per ceremony: [`dkg`](run_dkg), [`refresh`](run_refresh),
//! [`repair`](run_repair) and [`verify`](verify_transcript); DKG and refresh share the
//! rounds (`rounds`), and every ceremony the relay steps (`relay`: reaching the
//! peers, running one step on all of them, aborting everywhere on failure).

mod dkg;
mod refresh;
mod relay;
mod repair;
mod rounds;
mod verify;

pub use crate::policy_file::PolicyFile;
pub use dkg::{run_dkg, DkgRequest};
pub use refresh::{plan_refresh, run_refresh, RefreshRequest};
pub use repair::{plan_repair, run_repair, RepairOutcome, RepairRequest};
pub use verify::verify_transcript;
