//! Plans of governed operations, and administrators' authorizations of them.
//!
//! A refresh, repair, escrow split or escrow recovery of a key with administrators
//! runs in three
//! steps: the operator writes the operation's **plan** (its setup: ceremony id,
//! key, current manifest hash, nodes; `--write-plan`), each administrator reads
//! the plan and signs an **authorization** of its setup hash on their own machine
//! (`quorate-ceremony authorize`, one file each), and the operator runs the plan
//! with those files (`--plan`, `--authorization`). Every node checks the
//! authorizations itself; the tool checks them first only to fail before any node
//! is asked.
//!
//! A plan file is JSON: `{"format": "quorate-plan/1", "operation", "key_id",
//! "ceremony_id", "setup_hash", "setup": "<hex of the CeremonySetup protobuf>",
//! "manifest": "<hex of the key's current KeyManifest>"}`. What an administrator is
//! shown comes from the setup bytes, which are what the nodes check, and from the
//! manifest whose SHA-256 the setup names (so the nodes a refresh removes, the
//! policy and custodians it replaces, and the custodians a split encrypts to are
//! shown as they are), never from the readable fields beside them (those must
//! match, or the plan is refused).

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
    manifest: String,
}

/// A governed operation fixed before it runs: the setup administrators authorize,
/// and the manifest of the key as the setup finds it.
#[derive(Clone, Debug)]
pub struct Plan {
    setup: Setup,
    manifest: Manifest,
}

impl Plan {
    /// The plan of `setup` on the key whose current manifest is `manifest`.
    pub fn new(setup: Setup, manifest: Manifest) -> Result<Self, String> {
        if manifest.hash.as_slice() != setup.pb.manifest_hash.as_slice()
            || manifest.key_id != setup.pb.key_id
        {
            return Err(format!(
                "the setup is about manifest {} of key {:?}, not manifest {} of key {:?}",
                hex::encode(&setup.pb.manifest_hash),
                setup.pb.key_id,
                hex::encode(manifest.hash),
                manifest.key_id
            ));
        }
        Ok(Self { setup, manifest })
    }

    /// The key's manifest as the plan found it.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
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
            manifest: hex::encode(&self.manifest.encoded),
        };
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// Writes the plan to a new file.
    pub fn write(&self, path: &Path) -> Result<(), CeremonyError> {
        if path.exists() {
            return Err(CeremonyError::Request(format!(
                "plan {} already exists; choose a new file",
                path.display()
            )));
        }
        crate::files::write_new(path, self.to_json().as_bytes()).map_err(|source| {
            CeremonyError::Write {
                what: "plan",
                path: path.to_path_buf(),
                source,
            }
        })
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
        if !matches!(
            setup.kind,
            Kind::Refresh | Kind::Repair | Kind::EscrowSplit | Kind::EscrowRecover
        ) {
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
        let manifest = hex::decode(&file.manifest)
            .map_err(|_| bad("manifest is not hex".into()))
            .and_then(|b| Manifest::decode(&b).map_err(|e| bad(format!("manifest: {e}"))))?;
        Self::new(setup, manifest).map_err(bad)
    }

    /// What the operation does, read from the setup itself and the manifest it
    /// names: what an administrator is asked to authorize.
    pub fn describe(&self) -> Vec<String> {
        let (s, m) = (&self.setup, &self.manifest);
        let ids = |ids: &[&str]| {
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            }
        };
        let setup_ids: Vec<&str> =
            s.pb.participants
                .iter()
                .map(|p| p.node_id.as_str())
                .collect();
        let holders = m.participant_ids();
        let custodians = |e: &quorate_keys::custodians::KeyEscrow| {
            format!(
                "{} of [{}]",
                e.threshold,
                e.custodians
                    .iter()
                    .map(|c| format!("{} {}", c.name, c.recipient))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let policy = |p: &pb::KeyPolicy| {
            serde_json::to_string(&crate::policy_file::PolicyFile::from_pb(p)).unwrap_or_default()
        };
        let now_policy = || {
            pb::KeyManifest::decode(m.encoded.as_slice())
                .ok()
                .and_then(|k| k.policy)
                .unwrap_or_default()
        };
        let mut lines = vec![
            format!("operation:   {}", s.kind.name()),
            format!("key:         {}", s.pb.key_id),
            format!("ceremony id: {}", s.ceremony_id()),
            format!("setup hash:  {}", hex::encode(s.hash)),
            format!(
                "key now:     manifest {} generation {}, {}-of-{} held by {}",
                hex::encode(m.hash),
                m.generation,
                m.threshold,
                holders.len(),
                ids(&holders)
            ),
        ];
        match s.kind {
            Kind::Refresh => {
                let removed: Vec<&str> = holders
                    .iter()
                    .copied()
                    .filter(|h| !setup_ids.contains(h))
                    .collect();
                lines.push(format!("new shares for: {}", ids(&setup_ids)));
                lines.push(format!("removes, deleting their shares: {}", ids(&removed)));
                if let Some(p) = &s.pb.policy {
                    lines.push(format!("policy now:   {}", policy(&now_policy())));
                    lines.push(format!("policy after: {}", policy(p)));
                }
                if let Some(e) = &s.pb.escrow {
                    lines.push(format!(
                        "custodians now:   {}",
                        m.escrow.as_ref().map_or("none".into(), custodians)
                    ));
                    let after = quorate_keys::custodians::KeyEscrow::from_pb(e)
                        .map(|e| custodians(&e))
                        .unwrap_or_else(|e| format!("invalid: {e}"));
                    lines.push(format!("custodians after: {after}"));
                }
            }
            Kind::Repair => {
                lines.push(format!("rebuilds the share of: {}", s.pb.repair_target));
                lines.push(format!("helpers:     {}", ids(&setup_ids)));
            }
            Kind::EscrowRecover => {
                // The manifest installed is the plan's, as the key's nodes attested
                // it when the plan was written; the node installs no other.
                lines.push(format!(
                    "installs on {}, from its custodians' escrow parts, its share of this manifest",
                    s.pb.repair_target
                ));
                lines.push(format!("with its policy: {}", policy(&now_policy())));
                lines.push(format!(
                    "and custodians:  {}",
                    m.escrow.as_ref().map_or("none".into(), custodians)
                ));
            }
            Kind::EscrowSplit => {
                lines.push(format!("splits the shares of: {}", ids(&setup_ids)));
                lines.push(format!(
                    "to custodians: {}",
                    m.escrow
                        .as_ref()
                        .map_or("none (the split will be refused)".into(), custodians)
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

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_ceremony_protocol::setup::SETUP_VERSION;

    fn plan() -> Plan {
        let names: Vec<String> = (1..=3).map(|i| format!("node-{i}")).collect();
        let participants: Vec<pb::ManifestParticipant> = names
            .iter()
            .map(|n| pb::ManifestParticipant {
                node_id: n.clone(),
                region: "r".into(),
                jurisdiction: "EU".into(),
            })
            .collect();
        let dealt = quorate_frost::Ciphersuite::Ed25519
            .ops()
            .split(None, &names, 2)
            .expect("dealt");
        let manifest = Manifest::decode(&quorate_keys::manifest::encode(
            "payments-eu",
            quorate_frost::Ciphersuite::Ed25519,
            2,
            dealt.public_key_package,
            participants.clone(),
            "2026-01-01T00:00:00Z".into(),
            None,
        ))
        .expect("manifest");
        let setup = Setup::from_pb(pb::CeremonySetup {
            version: SETUP_VERSION,
            ceremony_id: ceremony_id("refresh"),
            kind: pb::CeremonyKind::Refresh as i32,
            key_id: "payments-eu".into(),
            ciphersuite: pb::Ciphersuite::Ed25519 as i32,
            threshold: 2,
            participants: participants[..2].to_vec(),
            manifest_hash: manifest.hash.to_vec(),
            ..Default::default()
        })
        .expect("setup");
        Plan::new(setup, manifest).expect("plan")
    }

    #[test]
    fn a_plan_reads_back_as_written_and_an_edited_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plan.json");
        let written = plan();
        written.write(&path).expect("written");
        let read = Plan::load(&path).expect("read");
        assert_eq!(read.setup().hash, written.setup().hash);
        // What it removes is read from the manifest the setup names.
        let described = read.describe();
        assert!(
            described.contains(&"removes, deleting their shares: node-3".to_string()),
            "{described:?}"
        );
        // Never replaced.
        assert!(written.write(&path).is_err());
        // A readable field that is not the setup's: refused, whatever it says.
        let text = std::fs::read_to_string(&path).expect("plan");
        let edited = dir.path().join("edited.json");
        std::fs::write(&edited, text.replace("\"payments-eu\"", "\"other-key\"")).expect("edited");
        let err = Plan::load(&edited).expect_err("an edited plan");
        assert!(err.to_string().contains("was edited"), "{err}");
        // Another manifest than the one the setup names: refused.
        let mut other: serde_json::Value = serde_json::from_str(&text).expect("json");
        other["manifest"] =
            plan().to_json().parse::<serde_json::Value>().expect("json")["manifest"].clone();
        std::fs::write(&edited, other.to_string()).expect("edited");
        let err = Plan::load(&edited).expect_err("another manifest");
        assert!(err.to_string().contains("not manifest"), "{err}");
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
