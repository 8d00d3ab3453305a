//! `escrow split`: a node Feldman-splits its own share among custodians, each part
//! encrypted to its custodian's age recipient; this process writes one `.age` file
//! per custodian and never sees a plaintext part.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use quorate_escrow::validate_custodian_name;
use quorate_keys::manifest::Manifest;
use quorate_wire::pb;
use quorate_wire::pb::ceremony_client::CeremonyClient;

use super::error::EscrowError;
use super::node::{call, channel, node, tls};
use crate::ceremony_file::CeremonyFile;

/// A custodian of an escrow: a name and an age X25519 recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Custodian {
    /// Name (1-64 of `A-Z a-z 0-9 . _ -`), used in the part's file name.
    pub name: String,
    /// age recipient, `age1…`.
    pub recipient: String,
}

impl std::str::FromStr for Custodian {
    type Err = String;

    /// Parses `NAME=age1…`, checking the name and that the recipient is a valid age
    /// X25519 recipient.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, recipient) = s
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=age1..., got {s:?}"))?;
        validate_custodian_name(name)?;
        recipient.parse::<age::x25519::Recipient>().map_err(|e| {
            format!("custodian {name:?}: {recipient:?} is not an age recipient: {e}")
        })?;
        Ok(Self {
            name: name.to_string(),
            recipient: recipient.to_string(),
        })
    }
}

/// What to split.
#[derive(Clone, Debug)]
pub struct SplitRequest {
    /// The key.
    pub key_id: String,
    /// The node whose share to split.
    pub node_id: String,
    /// Parts needed to recover (`k`).
    pub threshold: u16,
    /// The custodians (`m`), one part each.
    pub custodians: Vec<Custodian>,
    /// Where to write the `.age` files (created if missing).
    pub out_dir: PathBuf,
}

/// What a split produced.
#[derive(Clone, Debug)]
pub struct SplitOutcome {
    /// `(custodian, file)` per part, in request order.
    pub files: Vec<(String, PathBuf)>,
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
    let m = req.custodians.len();
    if m < 2 || m > usize::from(quorate_escrow::MAX_CUSTODIANS) {
        return Err(EscrowError::Usage(format!(
            "{m} --custodian given; an escrow needs 2..={}",
            quorate_escrow::MAX_CUSTODIANS
        )));
    }
    if req.threshold < 2 || usize::from(req.threshold) > m {
        return Err(EscrowError::Usage(format!(
            "--threshold {} is not within 2..={m} (the number of custodians)",
            req.threshold
        )));
    }
    let mut names = BTreeSet::new();
    for c in &req.custodians {
        if !names.insert(c.name.as_str()) {
            return Err(EscrowError::Usage(format!(
                "custodian {:?} is named twice",
                c.name
            )));
        }
    }
    let target = node(file, &req.node_id)?;
    let tls = tls(file)?;
    std::fs::create_dir_all(&req.out_dir).map_err(|source| EscrowError::Io {
        what: "output directory",
        path: req.out_dir.clone(),
        source,
    })?;
    let paths: Vec<PathBuf> = req
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
    tracing::info!(key_id = %req.key_id, node = %req.node_id, threshold = req.threshold,
        custodians = m, "escrow: asking the node to split its share");
    let response = call(
        &req.node_id,
        "EscrowSplit",
        client.escrow_split(pb::EscrowSplitRequest {
            key_id: req.key_id.clone(),
            threshold: u32::from(req.threshold),
            custodians: req
                .custodians
                .iter()
                .map(|c| pb::EscrowCustodian {
                    name: c.name.clone(),
                    age_recipient: c.recipient.clone(),
                })
                .collect(),
        }),
    )
    .await
    .map_err(node_err)?;
    if response.verifying_share != me.verifying_share || response.manifest_hash != manifest.hash {
        return Err(node_err(
            "split a share that is not the one its manifest names for it".into(),
        ));
    }
    if response.parts.len() != m
        || response
            .parts
            .iter()
            .zip(&req.custodians)
            .any(|(p, c)| p.custodian != c.name)
    {
        return Err(node_err(
            "answered with parts for other custodians than requested".into(),
        ));
    }
    let mut files = Vec::with_capacity(m);
    for ((part, custodian), path) in response.parts.iter().zip(&req.custodians).zip(paths) {
        write_new(&path, &part.age_file)?;
        files.push((custodian.name.clone(), path));
    }
    Ok(SplitOutcome {
        files,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custodian_argument_needs_a_name_and_an_age_recipient() {
        let recipient = age::x25519::Identity::generate().to_public().to_string();
        let c: Custodian = format!("bank-a={recipient}").parse().unwrap();
        assert_eq!(c.name, "bank-a");
        assert!("bank-a".parse::<Custodian>().is_err());
        assert!("bank-a=age1notarecipient".parse::<Custodian>().is_err());
        assert!(format!("../x={recipient}").parse::<Custodian>().is_err());
    }
}
