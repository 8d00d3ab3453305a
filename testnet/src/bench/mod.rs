//! `quorate-testnet bench`: signing load against a local network, compared with the
//! in-process FROST signing limit measured in the same run on the same cores.
//!
//! The whole network (nodes, coordinator, load generator) shares this machine's
//! cores, so the ceiling for end-to-end throughput is the rate at which the same
//! FROST work runs in one process without any network: `limit_sps`. `ratio` =
//! `throughput_sps / limit_sps` says how much of that ceiling the network keeps.
//!
//! [`run`] measures ([`baseline`] the limits, [`load`] the signing clients,
//! [`procfs`] and [`node_metrics`] what the processes spent); [`report`] prints a
//! [`SuiteResult`] per ciphersuite. [`wan`] measures latency across inter-region
//! links instead (`bench --wan PROFILE`).

pub mod baseline;
pub mod load;
pub mod node_metrics;
pub mod procfs;
pub mod report;
pub mod result;
pub mod run;
pub mod wan;

pub use baseline::in_process_limit;
pub use report::{json_line, table};
pub use result::SuiteResult;
pub use run::{is_release_dir, run, BenchOptions};
