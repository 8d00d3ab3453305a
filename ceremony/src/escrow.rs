//! Custodian escrow of one node's signing share: `split`, `verify`, `recover`.
//!
//! - **split** asks a node (`Ceremony.EscrowSplit`) to Feldman-split its own signing
//!   share among `m` custodians with threshold `k`. The node encrypts each part to its
//!   custodian's age X25519 recipient; this process only relays ciphertexts and writes
//!   one `.age` file per custodian. It never sees a plaintext part.
//! - **verify** lets one custodian check their decrypted part alone against the
//!   Feldman commitments it carries (the first of which is the node's verifying share).
//! - **recover** takes `k` or more parts, checks each one and that they belong to the
//!   same split, fetches the key's manifest from the live nodes (at least `t` of them
//!   must report byte-identical manifests), checks the parts escrow the share the
//!   manifest names for the node, rebuilds the share, accepts it only if it matches
//!   that verifying share, and installs it on the (fresh) node via
//!   `Ceremony.InstallKey`.
//!
//! Secrets (decrypted parts, the rebuilt share, the key package) stay in zeroizing
//! buffers and never appear in logs, errors or output.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::join_all;
use quorate_proto::escrow::{validate_custodian_name, EscrowFileError, EscrowPart, ShamirPart};
use quorate_proto::manifest::Manifest;
use quorate_proto::pb;
use quorate_proto::pb::ceremony_client::CeremonyClient;
use quorate_proto::suite::Ciphersuite;
use quorate_proto::tls::TlsMaterial;
use tonic::transport::Channel;
use zeroize::Zeroizing;

use crate::import::{describe_status, CeremonyError, CeremonyFile, CeremonyNode};

/// How long to wait for a node's TCP/TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one RPC to a node may take, connection included.
const RPC_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest part file read (a part is about 1 KiB).
const MAX_PART_FILE_BYTES: u64 = 64 * 1024;
/// How an age file in the binary format begins.
const AGE_MAGIC: &[u8] = b"age-encryption.org/";

/// Why an escrow command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EscrowError {
    /// The command's arguments are wrong.
    #[error("{0}")]
    Usage(String),
    /// The ceremony file or its TLS material.
    #[error(transparent)]
    Ceremony(#[from] CeremonyError),
    /// A file could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An age identity file that cannot be used.
    #[error("identity file {}: {message}", path.display())]
    Identity {
        /// The identity file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A part file that cannot be decrypted with the given identities.
    #[error("cannot decrypt {}: {message}", path.display())]
    Decrypt {
        /// The part file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A part that is malformed or does not verify.
    #[error("{}: {source}", path.display())]
    Part {
        /// The part file.
        path: PathBuf,
        /// Why.
        source: EscrowFileError,
    },
    /// The parts do not form a usable set (too few, duplicates, different splits,
    /// other key or node). Nothing was installed.
    #[error("refusing to recover, nothing was installed: {0}")]
    Parts(String),
    /// No trustworthy manifest of the key could be fetched. Nothing was installed.
    #[error("refusing to recover, nothing was installed: {0}")]
    Manifest(String),
    /// The rebuilt share is not the node's share of the key. Nothing was installed.
    #[error("refusing to recover, nothing was installed: {0}")]
    Mismatch(String),
    /// A node refused or failed a step.
    #[error("node {node_id}: {reason}")]
    Node {
        /// The node.
        node_id: String,
        /// What happened.
        reason: String,
    },
}

impl EscrowError {
    /// Whether the error is a usage or configuration mistake (exit 64).
    pub fn is_usage(&self) -> bool {
        match self {
            Self::Usage(_) | Self::Identity { .. } => true,
            Self::Io { what, .. } => !what.starts_with("writing"),
            Self::Ceremony(e) => e.is_usage(),
            _ => false,
        }
    }
}

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

fn node<'a>(file: &'a CeremonyFile, node_id: &str) -> Result<&'a CeremonyNode, EscrowError> {
    file.nodes.iter().find(|n| n.id == node_id).ok_or_else(|| {
        EscrowError::Usage(format!(
            "node {node_id:?} is not in the ceremony file {}",
            file.source.display()
        ))
    })
}

fn tls(file: &CeremonyFile) -> Result<TlsMaterial, EscrowError> {
    file.validate()?;
    Ok(file.tls.load().map_err(CeremonyError::from)?)
}

fn channel(tls: &TlsMaterial, node: &CeremonyNode) -> Result<Channel, EscrowError> {
    tls.channel(&node.endpoint, &node.id, CONNECT_TIMEOUT)
        .map_err(|e| EscrowError::Node {
            node_id: node.id.clone(),
            reason: e.to_string(),
        })
}

async fn call<T>(
    node_id: &str,
    what: &str,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(RPC_TIMEOUT, fut).await {
        Err(_) => Err(format!("{what} timed out after {RPC_TIMEOUT:?}")),
        Ok(Err(status)) => Err(format!("{what}: {}", describe_status(&status))),
        Ok(Ok(response)) => {
            tracing::debug!(node = %node_id, what, "node answered");
            Ok(response.into_inner())
        }
    }
}

/// Runs `escrow split` (see the module docs).
pub async fn split(file: &CeremonyFile, req: SplitRequest) -> Result<SplitOutcome, EscrowError> {
    quorate_proto::validate_key_id(&req.key_id).map_err(EscrowError::Usage)?;
    let m = req.custodians.len();
    if m < 2 || m > usize::from(quorate_proto::escrow::MAX_CUSTODIANS) {
        return Err(EscrowError::Usage(format!(
            "{m} --custodian given; an escrow needs 2..={}",
            quorate_proto::escrow::MAX_CUSTODIANS
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

/// age identities (from identity files such as `age-keygen` writes), redacted in
/// `Debug`.
pub struct Identities(Vec<Box<dyn age::Identity>>);

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identities({} <redacted>)", self.0.len())
    }
}

impl Identities {
    /// Loads identity files (`AGE-SECRET-KEY-1…` lines; `#` comments allowed).
    pub fn load(paths: &[PathBuf]) -> Result<Self, EscrowError> {
        let mut all = Vec::new();
        for path in paths {
            let err = |message: String| EscrowError::Identity {
                path: path.clone(),
                message,
            };
            let file = age::IdentityFile::from_file(path.display().to_string())
                .map_err(|e| err(e.to_string()))?;
            let ids = file.into_identities().map_err(|e| err(e.to_string()))?;
            if ids.is_empty() {
                return Err(err("holds no identity".into()));
            }
            all.extend(ids);
        }
        Ok(Self(all))
    }

    /// No identities.
    pub fn none() -> Self {
        Self(Vec::new())
    }
}

/// Reads a part: a decrypted JSON file, or an age file decrypted with `identities`.
/// Checks the format only; call [`EscrowPart::verify`] for the Feldman check.
pub fn read_part(path: &Path, identities: &Identities) -> Result<EscrowPart, EscrowError> {
    let io = |source| EscrowError::Io {
        what: "part file",
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_PART_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_PART_FILE_BYTES {
        return Err(EscrowError::Usage(format!(
            "{} is larger than {MAX_PART_FILE_BYTES} bytes; not an escrow part",
            path.display()
        )));
    }
    let plaintext = if bytes.starts_with(AGE_MAGIC) {
        if identities.0.is_empty() {
            return Err(EscrowError::Usage(format!(
                "{} is age-encrypted; give the custodian's --identity file",
                path.display()
            )));
        }
        decrypt(path, &bytes, identities)?
    } else {
        bytes
    };
    let text = std::str::from_utf8(&plaintext).map_err(|_| EscrowError::Part {
        path: path.to_path_buf(),
        source: EscrowFileError::Decode("not UTF-8 text".into()),
    })?;
    EscrowPart::from_json(text).map_err(|source| EscrowError::Part {
        path: path.to_path_buf(),
        source,
    })
}

fn decrypt(
    path: &Path,
    ciphertext: &[u8],
    identities: &Identities,
) -> Result<Zeroizing<Vec<u8>>, EscrowError> {
    let err = |message: String| EscrowError::Decrypt {
        path: path.to_path_buf(),
        message,
    };
    let decryptor = age::Decryptor::new(ciphertext).map_err(|e| err(e.to_string()))?;
    let mut reader = decryptor
        .decrypt(
            identities
                .0
                .iter()
                .map(|i| i.as_ref() as &dyn age::Identity),
        )
        .map_err(|e| err(e.to_string()))?;
    let mut plaintext = Zeroizing::new(Vec::new());
    reader
        .read_to_end(&mut plaintext)
        .map_err(|e| err(e.to_string()))?;
    Ok(plaintext)
}

/// Reads and fully verifies one part (what a single custodian can check alone).
pub fn verify_part(path: &Path, identities: &Identities) -> Result<EscrowPart, EscrowError> {
    let part = read_part(path, identities)?;
    part.verify().map_err(|source| EscrowError::Part {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(part)
}

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
    quorate_proto::validate_key_id(&req.key_id).map_err(EscrowError::Usage)?;
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
    let share = ops
        .escrow_combine(&parts, &me.verifying_share)
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

    #[test]
    fn identities_are_redacted_in_debug() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id.txt");
        let id = age::x25519::Identity::generate();
        use age::secrecy::ExposeSecret;
        std::fs::write(
            &path,
            format!("# test\n{}\n", id.to_string().expose_secret()),
        )
        .unwrap();
        let ids = Identities::load(&[path]).unwrap();
        assert_eq!(format!("{ids:?}"), "Identities(1 <redacted>)");
    }

    #[test]
    fn encrypted_part_without_identity_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.age");
        let recipient = age::x25519::Identity::generate().to_public();
        std::fs::write(&path, age::encrypt(&recipient, b"{}").unwrap()).unwrap();
        let err = read_part(&path, &Identities::none()).unwrap_err();
        assert!(err.is_usage(), "{err}");
        assert!(err.to_string().contains("--identity"), "{err}");
    }
}
