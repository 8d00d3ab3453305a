//! The nodes that refused a request's client for its rate limit in round 2, and
//! when they, not missing nodes, are the answer to a request that ran out of
//! nodes (`RESOURCE_EXHAUSTED`). Used by the quorum engine.

use std::collections::HashSet;

use crate::error::CoordError;

/// The nodes that refused a request's client for its rate limit in round 2.
///
/// A refusal does not end the request: each node counts the client's signatures
/// itself, another quorum may still be willing, and one node must not be able to
/// stop signing. But when the request runs out of nodes because of them, the
/// client is told so (`RESOURCE_EXHAUSTED`, with the time to retry), not
/// `UNAVAILABLE`, which clients retry at once.
#[derive(Debug, Default)]
pub(crate) struct RateRefusals {
    pub(crate) nodes: HashSet<String>,
    /// The last refusal: its node and message (which says when to retry).
    last: Option<(String, String)>,
}

impl RateRefusals {
    pub(crate) fn record(&mut self, node: &str, status: &tonic::Status) {
        self.nodes.insert(node.to_string());
        self.last = Some((node.to_string(), status.message().to_string()));
    }

    /// How many of the refusing nodes are in the home jurisdictions of the key
    /// `manifest` describes.
    pub(crate) fn home_nodes(&self, manifest: &quorate_keys::manifest::Manifest) -> usize {
        self.nodes
            .iter()
            .filter(|n| {
                manifest
                    .participant(n)
                    .is_some_and(|p| manifest.policy.is_home(&p.jurisdiction))
            })
            .count()
    }

    /// The answer to a request for `key_id` that ran out of nodes (`out` of
    /// `participants`, `t` needed), if these refusals are why: with the refusing
    /// nodes back, at least `t` would be left. `detail` says more ("; request
    /// deadline reached").
    pub(crate) fn answer(
        &self,
        key_id: &str,
        out: &HashSet<String>,
        participants: usize,
        t: usize,
        detail: &str,
    ) -> Option<CoordError> {
        let (node, message) = self.last.as_ref()?;
        let out_otherwise = out.iter().filter(|n| !self.nodes.contains(*n)).count();
        (participants.saturating_sub(out_otherwise) >= t).then(|| {
            CoordError::RateLimited(format!(
                "no quorum for key {key_id:?} within the client's rate limit{detail}: node \
                 {node} refused: {message}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_refusals_answer_only_when_they_are_what_the_quorum_lacks() {
        let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
        let refused = tonic::Status::resource_exhausted("over the limit; retry in 12 s");
        let mut refusals = RateRefusals::default();
        // None yet: a request short of nodes is UNAVAILABLE as ever.
        assert!(refusals
            .answer("k", &set(&["a", "b", "c"]), 5, 3, "")
            .is_none());

        refusals.record("a", &refused);
        // 3-of-5, `a` over the rate and two nodes down: with `a` the quorum was there.
        let answer = refusals
            .answer("k", &set(&["a", "d", "e"]), 5, 3, "")
            .unwrap();
        assert_eq!(answer.code(), tonic::Code::ResourceExhausted);
        assert!(answer.to_string().contains("node a refused"), "{answer}");
        assert!(answer.to_string().contains("retry in 12 s"), "{answer}");
        // Three nodes down: no quorum even with `a`, so the nodes' absence is the answer.
        assert!(refusals
            .answer("k", &set(&["a", "c", "d", "e"]), 5, 3, "")
            .is_none());
    }
}
