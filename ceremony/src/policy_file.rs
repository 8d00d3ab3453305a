//! The key policy file (TOML or JSON) a custodian writes for `import` and `dkg`,
//! mapped to the manifest's `KeyPolicy`; transcripts record a policy in this form.

use std::path::Path;

use quorate_wire::pb;
use serde::Deserialize;

use crate::error::CeremonyError;

/// A key policy file (TOML or JSON), mapping to the manifest's `KeyPolicy`.
///
/// ```toml
/// allowed_clients = ["spiffe://quorate.test/client/payments"]
/// home_jurisdictions = ["EU"]
/// min_home_signers = 2
/// approver_keys = ["<64 hex digits: an Ed25519 public key>"]
/// approvals_required = 1
/// rate_limit_per_minute = 600
/// administrator_keys = ["<hex>", "<hex>", "<hex>"]
/// administrators_required = 2
/// ```
///
/// A new key needs `administrator_keys` (from `quorate-ceremony admin keygen`) or,
/// explicitly, `unsafe_no_administrators = true`.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Client SPIFFE ids (or prefixes ending in `/` or `*`) allowed to use the key.
    #[serde(default)]
    pub allowed_clients: Vec<String>,
    /// Jurisdictions counted as home.
    #[serde(default)]
    pub home_jurisdictions: Vec<String>,
    /// Least number of home-jurisdiction signers in a quorum.
    #[serde(default)]
    pub min_home_signers: u32,
    /// Approver Ed25519 public keys, hex.
    #[serde(default)]
    pub approver_keys: Vec<String>,
    /// Most signatures per client per minute (0: unlimited).
    #[serde(default)]
    pub rate_limit_per_minute: u32,
    /// How many of the approvers must sign one approval token (default 1).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub approvals_required: u32,
    /// Administrator Ed25519 public keys, hex: every refresh, repair, node removal,
    /// escrow split, policy or custodian change of the key needs their
    /// authorizations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub administrator_keys: Vec<String>,
    /// How many of the administrators must authorize one operation (default 1).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub administrators_required: u32,
    /// The explicit choice of a key without administrators: whoever holds the
    /// ceremony certificate may then refresh, repair and escrow it alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unsafe_no_administrators: bool,
}

/// Reads `path` (`what`, for errors) as JSON if it ends in `.json`, TOML otherwise.
pub(crate) fn read_toml_or_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
) -> Result<T, CeremonyError> {
    let text = std::fs::read_to_string(path).map_err(|source| CeremonyError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    } else {
        toml::from_str(&text).map_err(|e| e.to_string())
    };
    parsed.map_err(|message| CeremonyError::Config {
        path: path.to_path_buf(),
        message,
    })
}

impl PolicyFile {
    /// Reads a policy file: JSON if it ends in `.json`, TOML otherwise.
    pub fn load(path: &Path) -> Result<pb::KeyPolicy, CeremonyError> {
        let file: Self = read_toml_or_json(path, "policy file")?;
        file.to_pb().map_err(|message| CeremonyError::Config {
            path: path.to_path_buf(),
            message,
        })
    }

    /// The protobuf policy, checking the approver keys.
    pub fn to_pb(&self) -> Result<pb::KeyPolicy, String> {
        let keys = |keys: &[String], who: &str| {
            keys.iter()
                .map(|k| match hex::decode(k) {
                    Ok(bytes) if bytes.len() == 32 => Ok(bytes),
                    _ => Err(format!(
                        "{who} key {k:?} is not 64 hex digits (an Ed25519 public key)"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let approver_keys = keys(&self.approver_keys, "approver")?;
        let administrator_keys = keys(&self.administrator_keys, "administrator")?;
        Ok(pb::KeyPolicy {
            allowed_clients: self.allowed_clients.clone(),
            home_jurisdictions: self.home_jurisdictions.clone(),
            min_home_signers: self.min_home_signers,
            approver_keys,
            rate_limit_per_minute: self.rate_limit_per_minute,
            approvals_required: self.approvals_required,
            administrator_keys,
            administrators_required: self.administrators_required,
            unsafe_no_administrators: self.unsafe_no_administrators,
        })
    }

    /// The policy file form of a protobuf policy (for transcripts).
    pub fn from_pb(policy: &pb::KeyPolicy) -> Self {
        Self {
            allowed_clients: policy.allowed_clients.clone(),
            home_jurisdictions: policy.home_jurisdictions.clone(),
            min_home_signers: policy.min_home_signers,
            approver_keys: policy.approver_keys.iter().map(hex::encode).collect(),
            rate_limit_per_minute: policy.rate_limit_per_minute,
            approvals_required: policy.approvals_required,
            administrator_keys: policy.administrator_keys.iter().map(hex::encode).collect(),
            administrators_required: policy.administrators_required,
            unsafe_no_administrators: policy.unsafe_no_administrators,
        }
    }
}

/// Serde's test for the default (0: one approver), left out of transcripts so that
/// those of policies without the field read as before.
fn is_zero(n: &u32) -> bool {
    *n == 0
}
