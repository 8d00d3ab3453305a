//! Quorum drills: failures inflicted on a running network (processes or the
//! docker-compose testnet) under a steady background load of signing requests,
//! each signature checked by an independent verifier, and a report of what the
//! clients saw.
//!
//! The framework: [`target`] is what a drill may do to a network
//! ([`DrillTarget`], implemented by [`LocalTarget`] and [`ComposeTarget`]), [`load`]
//! the background load, [`verdict`] how a drill judges it, [`ctx`] what a drill is
//! given, [`runner`] runs drills in turn and [`report`] prints the table. The drills
//! themselves are in files by theme, listed in [`registry`]. A drill starts the
//! load, breaks and mends the network through its target, and returns a
//! [`Verdict`] asserting its expectation on the requests it measured. Drills leave
//! the network as they found it (and [`DrillTarget::restore`] runs between drills
//! regardless), so each can run alone. Every loop here is bounded in count and in
//! time.

pub mod compose_target;
pub mod ctx;
pub mod load;
pub mod local_target;
pub mod registry;
pub mod report;
pub mod runner;
pub mod target;
pub mod verdict;

mod coordinator_failures;
mod malicious;
mod node_failures;
mod restarts;
mod sovereignty;
mod storage;

pub use compose_target::ComposeTarget;
pub use ctx::DrillCtx;
pub use local_target::LocalTarget;
pub use registry::{registry, Drill};
pub use report::{render_report, ReportRow};
pub use runner::run_drills;
pub use target::{DrillTarget, Party, Rogue};
pub use verdict::{Stats, Verdict};
