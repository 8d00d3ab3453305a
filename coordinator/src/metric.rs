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
/// Each known key's threshold `t` (signers needed), by key id.
pub const KEY_THRESHOLD: &str = "quorate_coordinator_key_threshold";
/// Each known key's participants that requests would use now, by key id.
pub const KEY_REACHABLE_HOLDERS: &str = "quorate_coordinator_key_reachable_holders";
/// `Sign` requests with a verified intent, by client (bounded: see
/// [`MAX_CLIENT_LABELS`]).
pub const CLIENT_SIGN_REQUESTS: &str = "quorate_coordinator_client_sign_requests_total";
/// When the coordinator's own mTLS certificate expires (its `notAfter`), seconds since
/// the Unix epoch.
pub const CERTIFICATE_NOT_AFTER: &str = "quorate_coordinator_certificate_not_after_seconds";

/// Distinct clients counted under their own label; later ones are counted as
/// [`OTHER_CLIENTS`], so that a CA issuing many client certificates cannot grow the
/// exported series without bound.
pub const MAX_CLIENT_LABELS: usize = 256;
/// The `client` label of requests past [`MAX_CLIENT_LABELS`] distinct clients.
pub const OTHER_CLIENTS: &str = "other";

/// The `client` label of [`CLIENT_SIGN_REQUESTS`]: the client's own SPIFFE id for
/// the first [`MAX_CLIENT_LABELS`] distinct clients seen, [`OTHER_CLIENTS`] after.
#[derive(Debug, Default)]
pub struct ClientLabels(std::sync::Mutex<std::collections::HashSet<String>>);

impl ClientLabels {
    /// The label to count `client` under.
    pub fn label<'a>(&self, client: &'a str) -> &'a str {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(client) {
            return client;
        }
        if seen.len() < MAX_CLIENT_LABELS {
            seen.insert(client.to_string());
            return client;
        }
        OTHER_CLIENTS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_labels_stop_growing_at_the_bound() {
        let labels = ClientLabels::default();
        let names: Vec<String> = (0..MAX_CLIENT_LABELS + 2)
            .map(|i| format!("spiffe://quorate.test/client/c{i}"))
            .collect();
        for name in &names[..MAX_CLIENT_LABELS] {
            assert_eq!(labels.label(name), name);
        }
        assert_eq!(labels.label(&names[MAX_CLIENT_LABELS]), OTHER_CLIENTS);
        assert_eq!(labels.label(&names[MAX_CLIENT_LABELS + 1]), OTHER_CLIENTS);
        // A client labelled before the bound keeps its label.
        assert_eq!(labels.label(&names[0]), names[0]);
    }
}
