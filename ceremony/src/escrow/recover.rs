//! `escrow recover`: checks `k` or more parts, fetches the key's manifest from the
//! live nodes (at least `t` agreeing), rebuilds the share, accepts it only if it
//! matches the node's verifying share, and installs it on the (fresh) node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::future::join_all;
use quorate_escrow::{EscrowFileError, EscrowPart, ShamirPart};
use quorate_frost::Ciphersuite;
use quorate_keys::manifest::Manifest;
use quorate_transport::tls::TlsMaterial;
use quorate_wire::pb;
use quorate_wire::pb::ceremony_client::CeremonyClient;

use super::error::EscrowError;
use super::node::{call, channel, node, tls};
use crate::ceremony_file::CeremonyFile;

/// What to recover.
#[derive(Debug)]
pub struct RecoverRequest {
    /// The key.
    pub key_id: String,
    /// The node to restore (same id as the node whose share was split).
    pub node_id: String,
    /// The parts, with the files they came from (for messages).
    pub parts: Vec<(PathBuf, EscrowPart)>,
}

/// What a recovery did.
#[derive(Clone, Debug)]
pub struct RecoverOutcome {
    /// SHA-256 of the installed manifest, hex; the node acknowledged it.
    pub manifest_hash: String,
    /// Parts combined.
    pub parts_used: usize,
    /// Nodes whose identical manifests were trusted.
    pub manifest_from: Vec<String>,
}

/// Checks that the parts form one usable set for `key_id`/`node_id`; returns the
/// ciphersuite, the verifying share they escrow, and the Shamir parts.
fn check_parts(
    req: &RecoverRequest,
) -> Result<(Ciphersuite, Vec<u8>, Vec<ShamirPart>), EscrowError> {
    let (first_path, first) = req
        .parts
        .first()
        .ok_or_else(|| EscrowError::Usage("no --part given".into()))?;
    let mut seen: BTreeMap<u16, &Path> = BTreeMap::new();
    let mut shamir = Vec::with_capacity(req.parts.len());
    for (path, part) in &req.parts {
        part.verify().map_err(|source| EscrowError::Part {
            path: path.clone(),
            source,
        })?;
        if part.key_id != req.key_id || part.node_id != req.node_id {
            return Err(EscrowError::Parts(format!(
                "{} escrows node {}'s share of key {}, not node {}'s share of key {}",
                path.display(),
                part.node_id,
                part.key_id,
                req.node_id,
                req.key_id
            )));
        }
        if (
            &part.ciphersuite,
            part.threshold,
            part.parts,
            &part.commitments,
            &part.verifying_share,
        ) != (
            &first.ciphersuite,
            first.threshold,
            first.parts,
            &first.commitments,
            &first.verifying_share,
        ) {
            return Err(EscrowError::Parts(format!(
                "{} and {} come from different escrow splits (their commitments differ)",
                first_path.display(),
                path.display()
            )));
        }
        if let Some(other) = seen.insert(part.identifier, path) {
            return Err(EscrowError::Parts(format!(
                "{} and {} are the same part (identifier {})",
                other.display(),
                path.display(),
                part.identifier
            )));
        }
        shamir.push(part.shamir_part().map_err(|source| EscrowError::Part {
            path: path.clone(),
            source,
        })?);
    }
    if shamir.len() < usize::from(first.threshold) {
        return Err(EscrowError::Parts(format!(
            "too few parts: {} given, but the escrow of node {}'s share of key {} needs {} \
             of its {} parts",
            shamir.len(),
            req.node_id,
            req.key_id,
            first.threshold,
            first.parts
        )));
    }
    let suite = first.suite().map_err(|source| EscrowError::Part {
        path: first_path.clone(),
        source,
    })?;
    let verifying_share = hex::decode(&first.verifying_share).map_err(|_| EscrowError::Part {
        path: first_path.clone(),
        source: EscrowFileError::Invalid("verifying_share is not hex".into()),
    })?;
    Ok((suite, verifying_share, shamir))
}

/// Fetches the key's manifest from every node and returns the one that at least
/// `threshold` nodes report byte for byte, with those nodes' ids.
async fn agreed_manifest(
    file: &CeremonyFile,
    tls: &TlsMaterial,
    key_id: &str,
) -> Result<(Manifest, Vec<String>), EscrowError> {
    let fetches = file.nodes.iter().map(|node| async move {
        let result = async {
            let mut client = CeremonyClient::new(channel(tls, node).map_err(|e| e.to_string())?);
            let stored = call(
                &node.id,
                "GetManifest",
                client.get_manifest(pb::GetManifestRequest {
                    key_id: key_id.to_string(),
                }),
            )
            .await?;
            Manifest::decode(&stored.manifest).map_err(|e| e.to_string())
        }
        .await;
        (node.id.clone(), result)
    });
    let mut groups: BTreeMap<[u8; 32], (Manifest, Vec<String>)> = BTreeMap::new();
    let mut failures = Vec::new();
    for (node_id, result) in join_all(fetches).await {
        match result {
            Ok(m) if m.key_id == key_id => groups
                .entry(m.hash)
                .or_insert_with(|| (m, Vec::new()))
                .1
                .push(node_id),
            Ok(_) => failures.push(format!("{node_id}: answered with another key's manifest")),
            Err(reason) => failures.push(format!("{node_id}: {reason}")),
        }
    }
    let best = groups
        .into_values()
        .filter(|(m, nodes)| nodes.len() >= usize::from(m.threshold))
        .max_by_key(|(_, nodes)| nodes.len());
    best.ok_or_else(|| {
        EscrowError::Manifest(format!(
            "no manifest of key {key_id} is reported identically by at least its threshold \
             of nodes; answers:{}",
            failures
                .iter()
                .map(|f| format!("\n  - {f}"))
                .collect::<String>()
        ))
    })
}

/// Runs `escrow recover` (see the module docs).
pub async fn recover(
    file: &CeremonyFile,
    req: RecoverRequest,
) -> Result<RecoverOutcome, EscrowError> {
    quorate_wire::validate_key_id(&req.key_id).map_err(EscrowError::Usage)?;
    let target = node(file, &req.node_id)?;
    let tls = tls(file)?;
    let (suite, verifying_share, parts) = check_parts(&req)?;

    let (manifest, manifest_from) = agreed_manifest(file, &tls, &req.key_id).await?;
    if manifest.ciphersuite != suite {
        return Err(EscrowError::Mismatch(format!(
            "the parts are {suite} but key {} is {}",
            req.key_id, manifest.ciphersuite
        )));
    }
    let me = manifest.participant(&req.node_id).ok_or_else(|| {
        EscrowError::Mismatch(format!(
            "node {} is not a participant of key {} (per the manifest of {})",
            req.node_id,
            req.key_id,
            manifest_from.join(", ")
        ))
    })?;
    if me.verifying_share != verifying_share {
        return Err(EscrowError::Mismatch(format!(
            "the parts escrow verifying share {}, but the key's manifest names {} for node {} \
             (were the parts made before the key's shares were refreshed?)",
            hex::encode(&verifying_share),
            hex::encode(&me.verifying_share),
            req.node_id
        )));
    }
    let ops = suite.ops();
    let share = quorate_escrow::combine(suite, &parts, &me.verifying_share)
        .map_err(|e| EscrowError::Mismatch(e.to_string()))?;
    drop(parts);
    let key_package = ops
        .key_package_from_signing_share(
            &me.identifier,
            &share,
            &manifest.public_key_package,
            manifest.threshold,
        )
        .map_err(|e| EscrowError::Mismatch(e.to_string()))?;
    drop(share);
    tracing::info!(key_id = %req.key_id, node = %req.node_id,
        "escrow: share rebuilt and matches the manifest; installing");

    let node_err = |reason: String| EscrowError::Node {
        node_id: req.node_id.clone(),
        reason,
    };
    let mut client = CeremonyClient::new(channel(&tls, target)?);
    let info = call(
        &req.node_id,
        "GetInfo",
        client.get_info(pb::GetInfoRequest {}),
    )
    .await
    .map_err(node_err)?;
    if (&info.node_id, &info.region, &info.jurisdiction)
        != (&target.id, &target.region, &target.jurisdiction)
    {
        return Err(node_err(format!(
            "answers as {}/{}/{}, but the ceremony file says {}/{}/{}; nothing was installed",
            info.node_id,
            info.region,
            info.jurisdiction,
            target.id,
            target.region,
            target.jurisdiction
        )));
    }
    let ack = call(
        &req.node_id,
        "InstallKey",
        client.install_key(pb::InstallKeyRequest {
            manifest: manifest.encoded.clone(),
            key_package: key_package.expose_bytes().to_vec(),
        }),
    )
    .await
    .map_err(node_err)?;
    drop(key_package);
    if ack.manifest_hash != manifest.hash {
        return Err(node_err(format!(
            "acknowledged manifest hash {}, expected {}",
            hex::encode(&ack.manifest_hash),
            hex::encode(manifest.hash)
        )));
    }
    Ok(RecoverOutcome {
        manifest_hash: hex::encode(manifest.hash),
        parts_used: req.parts.len(),
        manifest_from,
    })
}
