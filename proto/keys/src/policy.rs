//! A key's sovereignty and access policy ([`pb::KeyPolicy`]), validated at the
//! boundary. The same checks run on the coordinator (to choose quorums) and on every
//! node (which enforces them itself: the coordinator is not trusted to).

use std::fmt;

use quorate_wire::pb;

/// Who may use a key and which quorums are lawful.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    allowed_clients: Vec<ClientPattern>,
    /// Jurisdictions that count as home.
    pub home_jurisdictions: Vec<String>,
    /// Least number of home-jurisdiction signers in any quorum.
    pub min_home_signers: u16,
    /// Ed25519 public keys of the approvers of out-of-policy quorums.
    pub approvers: Vec<[u8; 32]>,
    /// How many distinct approvers must sign one token (at least 1).
    pub approvals_required: usize,
    /// Most signatures per client per minute; 0 = unlimited (how the coordinator and
    /// the nodes count them: [`crate::ratelimit`]).
    pub rate_limit_per_minute: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ClientPattern {
    Exact(String),
    Prefix(String),
}

/// Why a quorum is not lawful under a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumViolation {
    /// Home signers the quorum has.
    pub home_signers: usize,
    /// Home signers the policy needs.
    pub needed: u16,
    /// The home jurisdictions.
    pub home: Vec<String>,
}

impl fmt::Display for QuorumViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the policy needs at least {} signers in {} but the quorum has {}",
            self.needed,
            self.home.join("/"),
            self.home_signers
        )
    }
}

impl Policy {
    /// Parses and validates a protobuf policy; `None` is the unrestricted policy.
    /// `threshold` is the key's `t`, which bounds `min_home_signers`.
    pub fn from_pb(policy: Option<&pb::KeyPolicy>, threshold: u16) -> Result<Self, String> {
        let Some(p) = policy else {
            return Ok(Self::default());
        };
        let mut allowed_clients = Vec::with_capacity(p.allowed_clients.len());
        for c in &p.allowed_clients {
            if !c.starts_with("spiffe://") {
                return Err(format!(
                    "allowed client {c:?} is not a spiffe:// id or prefix"
                ));
            }
            allowed_clients.push(if let Some(prefix) = c.strip_suffix('*') {
                ClientPattern::Prefix(prefix.to_string())
            } else if c.ends_with('/') {
                ClientPattern::Prefix(c.clone())
            } else {
                ClientPattern::Exact(c.clone())
            });
        }
        let min_home_signers = u16::try_from(p.min_home_signers)
            .ok()
            .filter(|m| *m <= threshold)
            .ok_or_else(|| {
                format!(
                    "min_home_signers {} exceeds the threshold {threshold}",
                    p.min_home_signers
                )
            })?;
        if min_home_signers > 0 && p.home_jurisdictions.is_empty() {
            return Err("min_home_signers is set but home_jurisdictions is empty".into());
        }
        if p.home_jurisdictions.iter().any(|j| j.trim().is_empty()) {
            return Err("home_jurisdictions holds an empty name".into());
        }
        let mut approvers = Vec::with_capacity(p.approver_keys.len());
        for k in &p.approver_keys {
            let key: [u8; 32] = k
                .as_slice()
                .try_into()
                .map_err(|_| format!("approver key is {} bytes, not 32", k.len()))?;
            let point = ed25519_dalek::VerifyingKey::from_bytes(&key)
                .map_err(|_| format!("approver key {} is not an Ed25519 key", hex::encode(key)))?;
            if point.is_weak() {
                return Err(format!(
                    "approver key {} is a small-order Ed25519 key, under which anyone \
                     can forge a signature",
                    hex::encode(key)
                ));
            }
            approvers.push(key);
        }
        let approvals_required = usize::try_from(p.approvals_required.max(1)).unwrap_or(usize::MAX);
        let distinct: std::collections::BTreeSet<_> = approvers.iter().collect();
        if !approvers.is_empty() && approvals_required > distinct.len() {
            return Err(format!(
                "approvals_required {} exceeds the {} approver keys listed",
                p.approvals_required,
                distinct.len()
            ));
        }
        Ok(Self {
            allowed_clients,
            home_jurisdictions: p.home_jurisdictions.clone(),
            min_home_signers,
            approvers,
            approvals_required,
            rate_limit_per_minute: p.rate_limit_per_minute,
        })
    }

    /// Whether the client with SPIFFE id `client` may use the key.
    pub fn allows_client(&self, client: &str) -> bool {
        self.allowed_clients.is_empty()
            || self.allowed_clients.iter().any(|p| match p {
                ClientPattern::Exact(id) => id == client,
                ClientPattern::Prefix(prefix) => client.starts_with(prefix.as_str()),
            })
    }

    /// Whether `jurisdiction` counts as home.
    pub fn is_home(&self, jurisdiction: &str) -> bool {
        self.home_jurisdictions.iter().any(|j| j == jurisdiction)
    }

    /// Whether the policy constrains quorums at all.
    pub fn constrains_quorums(&self) -> bool {
        self.min_home_signers > 0
    }

    /// Checks a quorum given its signers' jurisdictions.
    pub fn check_quorum<'a>(
        &self,
        jurisdictions: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), QuorumViolation> {
        let home_signers = jurisdictions
            .into_iter()
            .filter(|j| self.is_home(j))
            .count();
        if home_signers >= usize::from(self.min_home_signers) {
            Ok(())
        } else {
            Err(QuorumViolation {
                home_signers,
                needed: self.min_home_signers,
                home: self.home_jurisdictions.clone(),
            })
        }
    }

    /// The summary `testnet.json` shows: `{"home_jurisdiction": "EU",
    /// "min_home_signers": 2}`, or `None` for a key without residency limits.
    pub fn residency_summary(&self) -> Option<(String, u16)> {
        self.constrains_quorums()
            .then(|| (self.home_jurisdictions.join(","), self.min_home_signers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eu(min: u32) -> pb::KeyPolicy {
        pb::KeyPolicy {
            allowed_clients: vec![
                "spiffe://q/client/payments".into(),
                "spiffe://q/client/batch-*".into(),
                "spiffe://q/client/ops/".into(),
            ],
            home_jurisdictions: vec!["EU".into()],
            min_home_signers: min,
            approver_keys: vec![],
            rate_limit_per_minute: 0,
            approvals_required: 1,
        }
    }

    #[test]
    fn clients_match_exactly_or_by_prefix() {
        let p = Policy::from_pb(Some(&eu(2)), 3).unwrap();
        assert!(p.allows_client("spiffe://q/client/payments"));
        assert!(!p.allows_client("spiffe://q/client/payments2"));
        assert!(p.allows_client("spiffe://q/client/batch-7"));
        assert!(p.allows_client("spiffe://q/client/ops/a"));
        assert!(!p.allows_client("spiffe://q/client/other"));
        assert!(Policy::default().allows_client("spiffe://q/client/anyone"));
    }

    #[test]
    fn quorum_needs_min_home_signers() {
        let p = Policy::from_pb(Some(&eu(2)), 3).unwrap();
        assert!(p.check_quorum(["EU", "EU", "US"]).is_ok());
        let v = p.check_quorum(["EU", "SG", "US"]).unwrap_err();
        assert_eq!(v.home_signers, 1);
        assert!(v.to_string().contains("at least 2 signers in EU"));
        assert!(Policy::default().check_quorum(["US"]).is_ok());
    }

    #[test]
    fn inconsistent_policies_are_refused() {
        assert!(Policy::from_pb(Some(&eu(4)), 3).is_err());
        let mut p = eu(1);
        p.home_jurisdictions.clear();
        assert!(Policy::from_pb(Some(&p), 3).is_err());
        let mut p = eu(1);
        p.approver_keys = vec![vec![1; 31]];
        assert!(Policy::from_pb(Some(&p), 3).is_err());
        // The identity point: small order, anyone can sign under it.
        let mut identity = vec![0u8; 32];
        identity[0] = 1;
        let mut p = eu(1);
        p.approver_keys = vec![identity];
        let err = Policy::from_pb(Some(&p), 3).unwrap_err();
        assert!(err.contains("small-order"), "{err}");
        let mut p = eu(1);
        p.allowed_clients = vec!["payments".into()];
        assert!(Policy::from_pb(Some(&p), 3).is_err());
    }
}
