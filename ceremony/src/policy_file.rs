//! Key policy files: the TOML a custodian writes to fix a key's policy at its
//! ceremony.
//!
//! ```toml
//! allowed_clients = ["spiffe://quorate.test/client/payments"]  # exact, or prefix ending in / or *
//! home_jurisdictions = ["EU"]
//! min_home_signers = 2
//! approver_keys = ["<64 hex digits from `quorate-ceremony approver keygen`>"]
//! rate_limit_per_minute = 600   # per client; 0 or absent: unlimited
//! ```

use std::path::Path;

use quorate_proto::pb;
use quorate_proto::policy::Policy;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    allowed_clients: Vec<String>,
    #[serde(default)]
    home_jurisdictions: Vec<String>,
    #[serde(default)]
    min_home_signers: u32,
    #[serde(default)]
    approver_keys: Vec<String>,
    #[serde(default)]
    rate_limit_per_minute: u32,
}

/// Reads a policy file and checks it against the key's threshold.
pub fn load(path: &Path, threshold: u16) -> Result<pb::KeyPolicy, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read policy file {}: {e}", path.display()))?;
    parse(&text, threshold).map_err(|e| format!("policy file {}: {e}", path.display()))
}

/// Parses policy TOML and checks it against the key's threshold.
pub fn parse(text: &str, threshold: u16) -> Result<pb::KeyPolicy, String> {
    let file: PolicyFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let approver_keys = file
        .approver_keys
        .iter()
        .map(|k| hex::decode(k.trim()).map_err(|_| format!("approver key {k:?} is not hex")))
        .collect::<Result<Vec<_>, _>>()?;
    let policy = pb::KeyPolicy {
        allowed_clients: file.allowed_clients,
        home_jurisdictions: file.home_jurisdictions,
        min_home_signers: file.min_home_signers,
        approver_keys,
        rate_limit_per_minute: file.rate_limit_per_minute,
    };
    Policy::from_pb(Some(&policy), threshold)?;
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_residency_policy_parses() {
        let p = parse(
            "home_jurisdictions = [\"EU\"]\nmin_home_signers = 2\napprover_keys = [\"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\"]",
            3,
        )
        .unwrap();
        assert_eq!(p.min_home_signers, 2);
        assert_eq!(p.approver_keys[0].len(), 32);
    }

    #[test]
    fn inconsistent_or_unknown_fields_are_refused() {
        assert!(parse("min_home_signers = 2", 3)
            .unwrap_err()
            .contains("home_jurisdictions"));
        assert!(parse("home_jurisdictions = [\"EU\"]\nmin_home_signers = 4", 3).is_err());
        assert!(parse("home = [\"EU\"]", 3).is_err());
        assert!(parse("approver_keys = [\"zz\"]", 3).is_err());
    }
}
