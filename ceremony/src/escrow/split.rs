//! `escrow split`: a node Feldman-splits its own share among the custodians fixed in
//! the key's manifest, each part encrypted to its custodian's age recipient; this
//! process writes one `.age` file per custodian and never sees a plaintext part.

use std::path::{Path, PathBuf};

use quorate_keys::manifest::Manifest;
use quorate_wire::pb;
use quorate_wire::pb::ceremony_client::CeremonyClient;

use super::error::EscrowError;
use super::node::{call, channel, node, tls};
use crate::ceremony_file::CeremonyFile;

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
    use std::io::Write;
    let err = |source| EscrowError::Io {
        what: "writing part file",
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
