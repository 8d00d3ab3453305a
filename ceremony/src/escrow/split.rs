//! `escrow split`: a node Feldman-splits its own share among the custodians fixed in
//! the key's manifest, each part encrypted to its custodian's age recipient; this
//! process writes one `.age` file per custodian and never sees a plaintext part.

use std::path::{Path, PathBuf};

use quorate_ceremony_protocol::setup::{Kind, Setup, SETUP_VERSION};
use quorate_keys::manifest::Manifest;
use quorate_wire::pb;
use quorate_wire::pb::ceremony_client::CeremonyClient;

use super::error::EscrowError;
use super::node::{call, channel, node, tls};
use crate::ceremony_file::CeremonyFile;
use crate::plan::Plan;

/// What to split: one node's share of one key. The custodians and the threshold
/// are the key manifest's; nobody running a split chooses them.
#[derive(Clone, Debug)]
pub struct SplitRequest {
    /// The key.
    pub key_id: String,
    /// The node whose share to split.
    pub node_id: String,
    /// Where to write the `.age` files (created if missing).
    pub out_dir: PathBuf,
    /// For a key with administrators: the split's plan ([`plan_split`]) naming
    /// this node, and the administrators' authorizations of it.
    pub plan: Option<Plan>,
    /// The administrators' authorizations of `plan`.
    pub authorizations: Vec<Vec<u8>>,
}

/// Plans an escrow split of the shares of `nodes` (a key with administrators needs
/// their authorizations of it): fetches the key's manifest from each of them, which
/// must agree, and fixes the setup (a fresh ceremony id, the manifest's hash, the
/// nodes).
pub async fn plan_split(
    file: &CeremonyFile,
    key_id: &str,
    nodes: &[String],
) -> Result<Plan, EscrowError> {
    quorate_wire::validate_key_id(key_id).map_err(EscrowError::Usage)?;
    if nodes.is_empty() {
        return Err(EscrowError::Usage("name at least one --node".into()));
    }
    let tls = tls(file)?;
    let mut agreed: Option<Manifest> = None;
    for node_id in nodes {
        let target = node(file, node_id)?;
        let mut client = CeremonyClient::new(channel(&tls, target)?);
        let stored = call(
            node_id,
            "GetManifest",
            client.get_manifest(pb::GetManifestRequest {
                key_id: key_id.to_string(),
            }),
        )
        .await
        .map_err(|reason| EscrowError::Node {
            node_id: node_id.clone(),
            reason,
        })?;
        let manifest = Manifest::decode(&stored.manifest).map_err(|e| EscrowError::Node {
            node_id: node_id.clone(),
            reason: format!("holds an unreadable manifest: {e}"),
        })?;
        match &agreed {
            Some(m) if m.hash != manifest.hash => {
                return Err(EscrowError::Node {
                    node_id: node_id.clone(),
                    reason: format!(
                        "holds manifest {} of key {key_id}, another node holds {}",
                        hex::encode(manifest.hash),
                        hex::encode(m.hash)
                    ),
                })
            }
            _ => agreed = Some(manifest),
        }
    }
    let manifest = agreed.ok_or_else(|| EscrowError::Usage("no node named".into()))?;
    let participants = nodes
        .iter()
        .map(|id| {
            let p = manifest.participant(id).ok_or_else(|| EscrowError::Node {
                node_id: id.clone(),
                reason: format!("is not a participant of key {key_id}"),
            })?;
            Ok(pb::ManifestParticipant {
                node_id: p.node_id.clone(),
                region: p.region.clone(),
                jurisdiction: p.jurisdiction.clone(),
            })
        })
        .collect::<Result<Vec<_>, EscrowError>>()?;
    let setup = pb::CeremonySetup {
        version: SETUP_VERSION,
        ceremony_id: crate::plan::ceremony_id("escrow-split"),
        kind: pb::CeremonyKind::EscrowSplit as i32,
        key_id: key_id.to_string(),
        ciphersuite: pb::Ciphersuite::from(manifest.ciphersuite) as i32,
        threshold: u32::from(manifest.threshold),
        participants,
        manifest_hash: manifest.hash.to_vec(),
        ..Default::default()
    };
    let setup = Setup::from_pb(setup).map_err(|e| EscrowError::Usage(e.to_string()))?;
    Plan::new(setup, manifest).map_err(EscrowError::Usage)
}

/// What a split produced.
#[derive(Clone, Debug)]
pub struct SplitOutcome {
    /// `(custodian, file)` per part, in the manifest's order.
    pub files: Vec<(String, PathBuf)>,
    /// `(custodian, age recipient)` per part, as the key's manifest fixes them.
    pub custodians: Vec<(String, String)>,
    /// Parts needed to recover (`k`).
    pub threshold: u16,
    /// The node's verifying share, hex.
    pub verifying_share: String,
    /// SHA-256 of the key's manifest, hex.
    pub manifest_hash: String,
}

/// The file a custodian's part is written to.
pub fn part_file_name(key_id: &str, node_id: &str, custodian: &str) -> String {
    format!("{key_id}.{node_id}.{custodian}.age")
}

/// Runs `escrow split` (see the module docs).
pub async fn split(file: &CeremonyFile, req: SplitRequest) -> Result<SplitOutcome, EscrowError> {
    quorate_wire::validate_key_id(&req.key_id).map_err(EscrowError::Usage)?;
    let target = node(file, &req.node_id)?;
    let tls = tls(file)?;
    let mut client = CeremonyClient::new(channel(&tls, target)?);
    let node_err = |reason: String| EscrowError::Node {
        node_id: req.node_id.clone(),
        reason,
    };
    let stored = call(
        &req.node_id,
        "GetManifest",
        client.get_manifest(pb::GetManifestRequest {
            key_id: req.key_id.clone(),
        }),
    )
    .await
    .map_err(node_err)?;
    let manifest = Manifest::decode(&stored.manifest)
        .map_err(|e| node_err(format!("holds an unreadable manifest: {e}")))?;
    let me = manifest
        .participant(&req.node_id)
        .ok_or_else(|| node_err(format!("is not a participant of key {}", req.key_id)))?
        .clone();
    let escrow = manifest
        .escrow
        .clone()
        .ok_or_else(|| EscrowError::NoCustodians(req.key_id.clone()))?;
    let setup = match &req.plan {
        Some(plan) => {
            let s = plan.setup();
            if s.kind != Kind::EscrowSplit || s.pb.key_id != req.key_id || !s.involves(&req.node_id)
            {
                return Err(EscrowError::Usage(format!(
                    "the plan is a {} of key {} for [{}], not an escrow split of {}'s share of key {}",
                    s.kind.name(),
                    s.pb.key_id,
                    s.participant_ids().join(", "),
                    req.node_id,
                    req.key_id
                )));
            }
            if s.pb.manifest_hash.as_slice() != manifest.hash.as_slice() {
                return Err(node_err(format!(
                    "holds manifest {}, but the plan is for {}: the key changed since the plan was written; plan again",
                    hex::encode(manifest.hash),
                    hex::encode(&s.pb.manifest_hash)
                )));
            }
            plan.check_authorizations(&manifest, &req.authorizations)?;
            Some(s.pb.clone())
        }
        None if manifest.policy.is_governed() => {
            return Err(EscrowError::Usage(format!(
                "key {} has administrators: write the split's plan (--write-plan), have \
                 administrators authorize it (`quorate-ceremony authorize`), and run it with \
                 --plan and --authorization",
                req.key_id
            )))
        }
        None => None,
    };
    std::fs::create_dir_all(&req.out_dir).map_err(|source| EscrowError::Io {
        what: "output directory",
        path: req.out_dir.clone(),
        source,
    })?;
    let paths: Vec<PathBuf> = escrow
        .custodians
        .iter()
        .map(|c| {
            req.out_dir
                .join(part_file_name(&req.key_id, &req.node_id, &c.name))
        })
        .collect();
    if let Some(existing) = paths.iter().find(|p| p.exists()) {
        return Err(EscrowError::Usage(format!(
            "{} already exists; escrow files are never replaced (choose another --out)",
            existing.display()
        )));
    }

    tracing::info!(key_id = %req.key_id, node = %req.node_id, threshold = escrow.threshold,
        custodians = escrow.custodians.len(), "escrow: asking the node to split its share");
    let response = call(
        &req.node_id,
        "EscrowSplit",
        client.escrow_split(pb::EscrowSplitRequest {
            key_id: req.key_id.clone(),
            setup,
            authorizations: req.authorizations.clone(),
            ..Default::default()
        }),
    )
    .await
    .map_err(node_err)?;
    if response.verifying_share != me.verifying_share || response.manifest_hash != manifest.hash {
        return Err(node_err(
            "split a share that is not the one its manifest names for it".into(),
        ));
    }
    if response.parts.len() != escrow.custodians.len()
        || response
            .parts
            .iter()
            .zip(&escrow.custodians)
            .any(|(p, c)| p.custodian != c.name)
    {
        return Err(node_err(
            "answered with parts for other custodians than its manifest names".into(),
        ));
    }
    let mut files = Vec::with_capacity(paths.len());
    for ((part, custodian), path) in response.parts.iter().zip(&escrow.custodians).zip(paths) {
        write_new(&path, &part.age_file)?;
        files.push((custodian.name.clone(), path));
    }
    Ok(SplitOutcome {
        files,
        custodians: escrow
            .custodians
            .iter()
            .map(|c| (c.name.clone(), c.recipient.clone()))
            .collect(),
        threshold: escrow.threshold,
        verifying_share: hex::encode(&me.verifying_share),
        manifest_hash: hex::encode(manifest.hash),
    })
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), EscrowError> {
    crate::files::write_new(path, bytes).map_err(|source| EscrowError::Io {
        what: "writing part file",
        path: path.to_path_buf(),
        source,
    })
}
