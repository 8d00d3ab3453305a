//! Metric names of the coordinator (`quorate_coordinator_*`), in one place so the
//! service, the quorum engine, round 2 and the metrics endpoint count under the
//! same names. Also reachable as `quorum::metric`.

/// Requests by RPC.
pub const REQUESTS: &str = "quorate_coordinator_requests_total";
/// Failed requests by RPC and gRPC code.
pub const ERRORS: &str = "quorate_coordinator_errors_total";
/// End-to-end `Sign` latency.
pub const SIGN_LATENCY: &str = "quorate_coordinator_sign_seconds";
/// Signing attempts repeated with another quorum.
pub const RETRIES: &str = "quorate_coordinator_quorum_retries_total";
/// Culprits by node.
pub const CULPRITS: &str = "quorate_coordinator_culprits_total";
/// Requests refused by a key's policy, by reason.
pub const POLICY_DENIALS: &str = "quorate_coordinator_policy_denials_total";
/// Signatures made by out-of-policy quorums under an approval token.
pub const FAILOVERS: &str = "quorate_coordinator_failovers_total";
/// Signatures attempted with preprocessed commitments (one round trip).
pub const ONE_ROUND: &str = "quorate_coordinator_one_round_total";
/// Commitments pooled for one-round signing.
pub const POOLED_COMMITMENTS: &str = "quorate_coordinator_pooled_commitments";
/// Whether each node is currently used (1) or skipped (0).
pub const NODE_AVAILABLE: &str = "quorate_coordinator_node_available";
/// `SignShares` batches sent to nodes.
pub const SHARE_CALLS: &str = "quorate_coordinator_share_calls_total";
/// Round-2 requests those batches carried (over `SHARE_CALLS`: shares per batch).
pub const SHARE_REQUESTS: &str = "quorate_coordinator_share_requests_total";
