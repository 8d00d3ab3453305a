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
    /// Ed25519 public keys of the key's administrators, whose authorizations
    /// ([`crate::authorization`]) every governed operation needs. Empty: the key is
    /// not governed (see [`Policy::unsafe_no_administrators`]).
    pub administrators: Vec<[u8; 32]>,
    /// How many distinct administrators must authorize one operation (at least 1).
    pub administrators_required: usize,
    /// The creator chose, explicitly, a key without administrators.
    pub unsafe_no_administrators: bool,
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

/// The tightest rate limit of `policies` (per client per minute; 0: none), for a
/// request several policies bind at once (both epochs of a staged refresh).
pub fn tightest_rate_limit<'a>(policies: impl IntoIterator<Item = &'a Policy>) -> u32 {
    policies
        .into_iter()
        .map(|p| p.rate_limit_per_minute)
        .filter(|&limit| limit > 0)
        .min()
        .unwrap_or(0)
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
        let approvers = strong_ed25519_keys(&p.approver_keys, "approver")?;
        let approvals_required = usize::try_from(p.approvals_required.max(1)).unwrap_or(usize::MAX);
        check_quorum_size(
            &approvers,
            approvals_required,
            "approvals_required",
            "approver",
        )?;
        let administrators = strong_ed25519_keys(&p.administrator_keys, "administrator")?;
        // Unlike approvals_required, never defaulted: a policy listing three
        // administrators that forgot the field must not mean one of three.
        if !administrators.is_empty() && p.administrators_required == 0 {
            return Err(format!(
                "administrators_required must be set (1 to {}) when administrators are listed",
                administrators.len()
            ));
        }
        let administrators_required =
            usize::try_from(p.administrators_required.max(1)).unwrap_or(usize::MAX);
        check_quorum_size(
            &administrators,
            administrators_required,
            "administrators_required",
            "administrator",
        )?;
        if p.unsafe_no_administrators && !administrators.is_empty() {
            return Err(
                "unsafe_no_administrators is set but the policy lists administrators".into(),
            );
        }
        Ok(Self {
            allowed_clients,
            home_jurisdictions: p.home_jurisdictions.clone(),
            min_home_signers,
            approvers,
            approvals_required,
            rate_limit_per_minute: p.rate_limit_per_minute,
            administrators,
            administrators_required,
            unsafe_no_administrators: p.unsafe_no_administrators,
        })
    }

    /// Whether operations on the key need administrators' authorizations.
    pub fn is_governed(&self) -> bool {
        !self.administrators.is_empty()
    }

    /// The rule for a new key (checked by every node at a DKG, and by the ceremony
    /// tool at a DKG and an import): it lists administrators, or its creator opted
    /// out explicitly. Keys made before administrators existed load as ungoverned.
    pub fn check_new_key(&self) -> Result<(), String> {
        if self.is_governed() || self.unsafe_no_administrators {
            Ok(())
        } else {
            Err(
                "a new key's policy must list administrators (administrator_keys, \
                 administrators_required) or opt out with unsafe_no_administrators, \
                 which lets whoever holds the ceremony certificate refresh, repair and \
                 escrow the key alone"
                    .into(),
            )
        }
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

/// Parses Ed25519 public keys of `who` (approvers, administrators), refusing any
/// that is not 32 bytes, not a point, or of small order (under which anyone can
/// forge a signature the lax check accepts).
fn strong_ed25519_keys(keys: &[Vec<u8>], who: &str) -> Result<Vec<[u8; 32]>, String> {
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let key: [u8; 32] = k
            .as_slice()
            .try_into()
            .map_err(|_| format!("{who} key is {} bytes, not 32", k.len()))?;
        let point = ed25519_dalek::VerifyingKey::from_bytes(&key)
            .map_err(|_| format!("{who} key {} is not an Ed25519 key", hex::encode(key)))?;
        if point.is_weak() {
            return Err(format!(
                "{who} key {} is a small-order Ed25519 key, under which anyone \
                 can forge a signature",
                hex::encode(key)
            ));
        }
        out.push(key);
    }
    Ok(out)
}

/// Checks that `required` distinct keys can sign when any are listed.
fn check_quorum_size(
    keys: &[[u8; 32]],
    required: usize,
    field: &str,
    who: &str,
) -> Result<(), String> {
    let distinct: std::collections::BTreeSet<_> = keys.iter().collect();
    if !keys.is_empty() && required > distinct.len() {
        return Err(format!(
            "{field} {required} exceeds the {} {who} keys listed",
            distinct.len()
        ));
    }
    Ok(())
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
            ..Default::default()
        }
    }

    #[test]
    fn the_tightest_rate_limit_ignores_unlimited_policies() {
        let limit = |rate_limit_per_minute| Policy {
            rate_limit_per_minute,
            ..Policy::default()
        };
        assert_eq!(tightest_rate_limit(&[limit(0), limit(60), limit(10)]), 10);
        assert_eq!(tightest_rate_limit(&[limit(0), limit(0)]), 0);
        assert_eq!(tightest_rate_limit(&[limit(5)]), 5);
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

    #[test]
    fn administrators_are_strong_keys_enough_for_their_quorum_and_never_opted_out_of_too() {
        let key = |_| {
            crate::approval::ApproverKey::generate()
                .public_key()
                .to_vec()
        };
        let mut p = eu(1);
        p.administrator_keys = (0..3).map(key).collect();
        p.administrators_required = 2;
        let governed = Policy::from_pb(Some(&p), 3).unwrap();
        assert!(governed.is_governed());
        assert_eq!(governed.administrators_required, 2);
        assert!(governed.check_new_key().is_ok());
        // More than listed.
        p.administrators_required = 4;
        assert!(Policy::from_pb(Some(&p), 3)
            .unwrap_err()
            .contains("administrators_required"));
        // A small-order administrator key.
        let mut identity = vec![0u8; 32];
        identity[0] = 1;
        let mut weak = eu(1);
        weak.administrator_keys = vec![identity];
        let err = Policy::from_pb(Some(&weak), 3).unwrap_err();
        assert!(
            err.contains("administrator key") && err.contains("small-order"),
            "{err}"
        );
        // Administrators and the opt-out at once.
        let mut both = eu(1);
        both.administrator_keys = vec![key(0)];
        both.administrators_required = 1;
        both.unsafe_no_administrators = true;
        assert!(Policy::from_pb(Some(&both), 3)
            .unwrap_err()
            .contains("unsafe_no_administrators is set"));
        // The number is never defaulted.
        let mut unset = eu(1);
        unset.administrator_keys = vec![key(0)];
        assert!(Policy::from_pb(Some(&unset), 3)
            .unwrap_err()
            .contains("administrators_required must be set"));
        // A new key needs one or the other.
        let neither = Policy::from_pb(Some(&eu(1)), 3).unwrap();
        assert!(!neither.is_governed());
        assert!(neither
            .check_new_key()
            .unwrap_err()
            .contains("unsafe_no_administrators"));
        let mut opted_out = eu(1);
        opted_out.unsafe_no_administrators = true;
        let opted_out = Policy::from_pb(Some(&opted_out), 3).unwrap();
        assert!(!opted_out.is_governed());
        assert!(opted_out.check_new_key().is_ok());
    }
}
