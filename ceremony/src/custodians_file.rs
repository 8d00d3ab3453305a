//! The escrow custodians file (TOML or JSON) a key's creators write for `dkg` and
//! `import`, mapped to the manifest's `KeyEscrow`; transcripts record the custodians
//! in this form.

use std::path::Path;

use quorate_keys::custodians::KeyEscrow;
use quorate_wire::pb;
use serde::{Deserialize, Serialize};

use crate::error::CeremonyError;

/// A key's escrow custodians and threshold, fixed in its manifest.
///
/// ```toml
/// threshold = 3                  # parts that rebuild a node's share (k)
///
/// [[custodians]]
/// name = "bank-a"                # 1-64 of A-Z a-z 0-9 . _ -
/// recipient = "age1..."          # the custodian's age X25519 recipient
/// # ... one [[custodians]] entry per custodian (2..=64)
/// ```
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CustodiansFile {
    /// Parts needed to recover a node's share (`k`), `2..=` the number of custodians.
    pub threshold: u32,
    /// The custodians, one part each, in this order.
    pub custodians: Vec<CustodianEntry>,
}

/// One custodian of a [`CustodiansFile`].
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CustodianEntry {
    /// Name, used in part file names.
    pub name: String,
    /// age X25519 recipient, `age1…` (what `age-keygen` prints).
    pub recipient: String,
}

impl CustodiansFile {
    /// Reads a custodians file (JSON if it ends in `.json`, TOML otherwise) and checks
    /// it as every node will: names, recipients and threshold.
    pub fn load(path: &Path) -> Result<pb::KeyEscrow, CeremonyError> {
        let file: Self = crate::policy_file::read_toml_or_json(path, "custodians file")?;
        file.to_pb().map_err(|message| CeremonyError::Config {
            path: path.to_path_buf(),
            message,
        })
    }

    /// The protobuf escrow, checked as a manifest's.
    pub fn to_pb(&self) -> Result<pb::KeyEscrow, String> {
        let escrow = pb::KeyEscrow {
            threshold: self.threshold,
            custodians: self
                .custodians
                .iter()
                .map(|c| pb::EscrowCustodian {
                    name: c.name.clone(),
                    age_recipient: c.recipient.clone(),
                })
                .collect(),
        };
        KeyEscrow::from_pb(&escrow)?;
        Ok(escrow)
    }

    /// The file form of a manifest's escrow (for transcripts).
    pub fn from_pb(escrow: &pb::KeyEscrow) -> Self {
        Self {
            threshold: escrow.threshold,
            custodians: escrow
                .custodians
                .iter()
                .map(|c| CustodianEntry {
                    name: c.name.clone(),
                    recipient: c.age_recipient.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_custodians_file_loads_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            age::x25519::Identity::generate().to_public().to_string(),
            age::x25519::Identity::generate().to_public().to_string(),
        );
        let path = write(
            dir.path(),
            "custodians.toml",
            &format!(
                "threshold = 2\n[[custodians]]\nname = \"bank-a\"\nrecipient = \"{a}\"\n\
                 [[custodians]]\nname = \"notary-d\"\nrecipient = \"{b}\"\n"
            ),
        );
        let escrow = CustodiansFile::load(&path).unwrap();
        assert_eq!(escrow.threshold, 2);
        assert_eq!(escrow.custodians[1].age_recipient, b);
        assert_eq!(
            CustodiansFile::from_pb(&escrow).to_pb().unwrap(),
            escrow,
            "file form and protobuf round-trip"
        );
    }

    #[test]
    fn bad_custodians_files_are_configuration_errors() {
        let dir = tempfile::tempdir().unwrap();
        let a = age::x25519::Identity::generate().to_public().to_string();
        for (i, text) in [
            format!("threshold = 2\n[[custodians]]\nname = \"bank-a\"\nrecipient = \"{a}\"\n"),
            format!(
                "threshold = 2\n[[custodians]]\nname = \"bank-a\"\nrecipient = \"{a}\"\n\
                 [[custodians]]\nname = \"b\"\nrecipient = \"age1notarecipient\"\n"
            ),
            "threshold = 2\nextra = 1\n".to_string(),
        ]
        .iter()
        .enumerate()
        {
            let path = write(dir.path(), &format!("c{i}.toml"), text);
            let err = CustodiansFile::load(&path).unwrap_err();
            assert!(matches!(err, CeremonyError::Config { .. }), "{err}");
        }
    }
}
