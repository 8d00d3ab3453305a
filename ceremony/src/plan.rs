//! Plans of governed operations, and administrators' authorizations of them.
//!
//! A refresh, repair or escrow split of a key with administrators runs in three
//! steps: the operator writes the operation's **plan** (its setup: ceremony id,
//! key, current manifest hash, nodes; `--write-plan`), each administrator reads
//! the plan and signs an **authorization** of its setup hash on their own machine
//! (`quorate-ceremony authorize`, one file each), and the operator runs the plan
//! with those files (`--plan`, `--authorization`). Every node checks the
//! authorizations itself; the tool checks them first only to fail before any node
//! is asked.
//!
//! A plan file is JSON: `{"format": "quorate-plan/1", "operation", "key_id",
//! "ceremony_id", "setup_hash", "setup": "<hex of the CeremonySetup protobuf>"}`.
//! What an administrator is shown comes from the setup bytes, which are what the
//! nodes check, never from the readable fields beside them (those must match the
//! setup, or the plan is refused).

use std::path::Path;

use prost::Message;
use quorate_ceremony_protocol::setup::{Kind, Setup};
use quorate_keys::authorization::{self, AdministratorKey, Authorization, Operation};
use quorate_keys::manifest::Manifest;
use quorate_wire::pb;
use serde::{Deserialize, Serialize};

use crate::error::CeremonyError;

/// Plan format this build writes and reads.
pub const PLAN_FORMAT: &str = "quorate-plan/1";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    format: String,
    operation: String,
    key_id: String,
    ceremony_id: String,
    setup_hash: String,
    setup: String,
}

/// A governed operation fixed before it runs: the setup administrators authorize.
#[derive(Clone, Debug)]
pub struct Plan {
    setup: Setup,
}

impl Plan {
    /// The plan of `setup`.
    pub fn new(setup: Setup) -> Self {
        Self { setup }
    }

    /// The setup the nodes will be shown.
    pub fn setup(&self) -> &Setup {
        &self.setup
    }

    /// The plan as its file holds it.
    pub fn to_json(&self) -> String {
        let file = PlanFile {
            format: PLAN_FORMAT.into(),
            operation: self.setup.kind.name().into(),
            key_id: self.setup.pb.key_id.clone(),
            ceremony_id: self.setup.ceremony_id().into(),
            setup_hash: hex::encode(self.setup.hash),
            setup: hex::encode(self.setup.pb.encode_to_vec()),
        };
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// Writes the plan to a new file.
    pub fn write(&self, path: &Path) -> Result<(), CeremonyError> {
        write_new(path, self.to_json().as_bytes(), "plan")
    }

    /// Reads a plan file, checking that its readable fields are its setup's.
    pub fn load(path: &Path) -> Result<Self, CeremonyError> {
        let bad = |message: String| CeremonyError::Config {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|source| CeremonyError::Read {
            what: "plan",
            path: path.to_path_buf(),
            source,
        })?;
        let file: PlanFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if file.format != PLAN_FORMAT {
            return Err(bad(format!(
                "format {:?} (this build reads {PLAN_FORMAT})",
                file.format
            )));
        }
        let bytes = hex::decode(&file.setup).map_err(|_| bad("setup is not hex".into()))?;
        let setup = pb::CeremonySetup::decode(bytes.as_slice())
            .map_err(|e| bad(format!("setup does not decode: {e}")))?;
        let setup = Setup::from_pb(setup).map_err(|e| bad(e.to_string()))?;
        if !matches!(setup.kind, Kind::Refresh | Kind::Repair | Kind::EscrowSplit) {
            return Err(bad(format!(
                "a {} is not a governed operation",
                setup.kind.name()
            )));
        }
        if file.operation != setup.kind.name()
            || file.key_id != setup.pb.key_id
            || file.ceremony_id != setup.ceremony_id()
            || file.setup_hash != hex::encode(setup.hash)
        {
            return Err(bad(
                "its readable fields (operation, key_id, ceremony_id, setup_hash) are not \
                 its setup's: the file was edited"
                    .into(),
            ));
        }
        Ok(Self { setup })
    }

    /// What the operation does, read from the setup itself: what an administrator
    /// is asked to authorize.
    pub fn describe(&self) -> Vec<String> {
        let s = &self.setup;
        let nodes = |ps: &[pb::ManifestParticipant]| {
            ps.iter()
                .map(|p| format!("{} ({}/{})", p.node_id, p.region, p.jurisdiction))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut lines = vec![
            format!("operation:   {}", s.kind.name()),
            format!("key:         {}", s.pb.key_id),
            format!("ceremony id: {}", s.ceremony_id()),
            format!("setup hash:  {}", hex::encode(s.hash)),
            format!(
                "of manifest: {} (the key as it is now)",
                hex::encode(&s.pb.manifest_hash)
            ),
        ];
        match s.kind {
            Kind::Refresh => {
                lines.push(format!(
                    "new shares for: {} (threshold {}; a current holder not listed is removed and deletes its share)",
                    nodes(&s.pb.participants),
                    s.threshold
                ));
                if let Some(p) = &s.pb.policy {
                    lines.push(format!(
                        "new policy:  {}",
                        serde_json::to_string(&crate::policy_file::PolicyFile::from_pb(p))
                            .unwrap_or_default()
                    ));
                }
                if let Some(e) = &s.pb.escrow {
                    lines.push(format!(
                        "new escrow custodians: {} of [{}]",
                        e.threshold,
                        e.custodians
                            .iter()
                            .map(|c| format!("{} {}", c.name, c.age_recipient))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            Kind::Repair => {
                lines.push(format!("rebuilds the share of: {}", s.pb.repair_target));
                lines.push(format!("helpers:     {}", nodes(&s.pb.participants)));
            }
            Kind::EscrowSplit => {
                lines.push(format!(
                    "splits the shares of: {} (to the key's escrow custodians, as its manifest fixes them)",
                    nodes(&s.pb.participants)
                ));
            }
            Kind::Dkg => {}
        }
        lines
    }

    /// `key`'s authorization of this plan, valid from now for `valid_for_secs`.
    pub fn authorize(&self, key: &AdministratorKey, valid_for_secs: u64) -> Vec<u8> {
        let now = quorate_keys::approval::unix_now();
        authorization::sign(
            key,
            &Authorization {
                key_id: self.setup.pb.key_id.clone(),
                operation: self.setup.kind.name().into(),
                ceremony_id: self.setup.ceremony_id().into(),
                setup_hash: hex::encode(self.setup.hash),
                not_before: now,
                not_after: now.saturating_add(valid_for_secs),
            },
        )
    }

    /// Checks `authorizations` against `manifest`'s administrators as every node
    /// will, so that an operation that would be refused fails before any node is
    /// asked. A key without administrators needs none.
    pub fn check_authorizations(
        &self,
        manifest: &Manifest,
        authorizations: &[Vec<u8>],
    ) -> Result<(), CeremonyError> {
        let policy = &manifest.policy;
        if !policy.is_governed() {
            return Ok(());
        }
        let s = &self.setup;
        authorization::verify_quorum(
            authorizations,
            &Operation {
                key_id: &s.pb.key_id,
                operation: s.kind.name(),
                ceremony_id: s.ceremony_id(),
                setup_hash: &s.hash,
            },
            &policy.administrators,
            policy.administrators_required,
            quorate_keys::approval::unix_now(),
        )
        .map(|_| ())
        .map_err(|e| {
            CeremonyError::Request(format!(
                "key {} has administrators; {e} (write the plan with --write-plan, have \
                 administrators sign it with `quorate-ceremony authorize`, and pass each file \
                 with --authorization)",
                s.pb.key_id
            ))
        })
    }
}

/// A fresh random ceremony id (`PREFIX-` and 24 hex digits): what makes every
/// setup, and so every authorization, unique.
pub fn ceremony_id(prefix: &str) -> String {
    use rand_core::RngCore;
    let mut bytes = [0u8; 12];
    rand_core::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}-{}", hex::encode(bytes))
}

/// Reads authorization files (as `quorate-ceremony authorize` wrote them).
pub fn read_authorizations(paths: &[std::path::PathBuf]) -> Result<Vec<Vec<u8>>, CeremonyError> {
    paths
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).map_err(|source| CeremonyError::Read {
                what: "authorization",
                path: p.clone(),
                source,
            })?;
            authorization::SignedAuthorization::decode(&bytes).map_err(|e| {
                CeremonyError::Config {
                    path: p.clone(),
                    message: e.to_string(),
                }
            })?;
            Ok(bytes)
        })
        .collect()
}

/// Writes `bytes` to `path`, which must not exist: a plan or an authorization is
/// never replaced by another one under the same name.
pub(crate) fn write_new(
    path: &Path,
    bytes: &[u8],
    what: &'static str,
) -> Result<(), CeremonyError> {
    use std::io::Write;
    if path.exists() {
        return Err(CeremonyError::Request(format!(
            "{what} {} already exists; choose a new file",
            path.display()
        )));
    }
    let err = |source: std::io::Error| CeremonyError::Write {
        what,
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_ceremony_protocol::setup::SETUP_VERSION;

    fn plan() -> Plan {
        Plan::new(
            Setup::from_pb(pb::CeremonySetup {
                version: SETUP_VERSION,
                ceremony_id: ceremony_id("refresh"),
                kind: pb::CeremonyKind::Refresh as i32,
                key_id: "payments-eu".into(),
                ciphersuite: pb::Ciphersuite::Ed25519 as i32,
                threshold: 2,
                participants: (1..=3)
                    .map(|i| pb::ManifestParticipant {
                        node_id: format!("node-{i}"),
                        region: "r".into(),
                        jurisdiction: "EU".into(),
                    })
                    .collect(),
                manifest_hash: vec![7; 32],
                ..Default::default()
            })
            .expect("setup"),
        )
    }

    #[test]
    fn a_plan_reads_back_as_written_and_an_edited_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plan.json");
        let written = plan();
        written.write(&path).expect("written");
        let read = Plan::load(&path).expect("read");
        assert_eq!(read.setup().hash, written.setup().hash);
        assert!(read.describe().iter().any(|l| l.contains("node-3 (r/EU)")));
        // Never replaced.
        assert!(written.write(&path).is_err());
        // A readable field that is not the setup's: refused, whatever it says.
        let text = std::fs::read_to_string(&path).expect("plan");
        let edited = dir.path().join("edited.json");
        std::fs::write(&edited, text.replace("\"payments-eu\"", "\"other-key\"")).expect("edited");
        let err = Plan::load(&edited).expect_err("an edited plan");
        assert!(err.to_string().contains("was edited"), "{err}");
    }

    #[test]
    fn an_authorization_of_a_plan_satisfies_only_that_plan() {
        let key = AdministratorKey::generate();
        let (this, other) = (plan(), plan());
        let bytes = this.authorize(&key, 600);
        let check = |p: &Plan| {
            let s = p.setup();
            authorization::verify_quorum(
                std::slice::from_ref(&bytes),
                &Operation {
                    key_id: &s.pb.key_id,
                    operation: s.kind.name(),
                    ceremony_id: s.ceremony_id(),
                    setup_hash: &s.hash,
                },
                &[key.public_key()],
                1,
                quorate_keys::approval::unix_now(),
            )
        };
        assert!(check(&this).is_ok());
        assert!(check(&other).is_err());
    }
}
