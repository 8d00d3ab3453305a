//! Trusted-dealer import: split an existing (or fresh) signing key into FROST shares
//! and install one share on each node, for migrations from single-key signers.
//!
//! The ceremony process briefly holds the whole key, so this is the one ceremony
//! that trusts its operator's machine; DKG (which never assembles the key) replaces it
//! for new keys. To keep that window small and checkable:
//!
//! 1. every node is reached over mTLS and must answer `Ceremony.GetInfo` with the
//!    node id, region and jurisdiction the ceremony file expects, **before** anything
//!    is dealt;
//! 2. the key is split, the manifest encoded once, and every node gets the same
//!    manifest plus its own key package, concurrently;
//! 3. each node must acknowledge the SHA-256 of the manifest it stored.
//!
//! The secret and the key packages are never logged, printed or written; the
//! [`Transcript`] holds public facts only.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use quorate_proto::identity::{PeerIdentity, Role};
use quorate_proto::manifest::{self, Manifest, ManifestError};
use quorate_proto::pb;
use quorate_proto::pb::ceremony_client::CeremonyClient;
use quorate_proto::suite::{Ciphersuite, CryptoError};
use quorate_proto::tls::{TlsError, TlsMaterial, TlsPaths};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tonic::transport::Channel;
use zeroize::Zeroizing;

/// Format tag of transcripts this build writes and reads.
pub const TRANSCRIPT_FORMAT: &str = "quorate-transcript/1";

/// How long to wait for a node's TCP/TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one RPC to a node may take, connection included.
pub(crate) const RPC_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a ceremony failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CeremonyError {
    /// A file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The ceremony file does not parse or is inconsistent.
    #[error("ceremony file {}: {message}", path.display())]
    Config {
        /// The ceremony file.
        path: PathBuf,
        /// What is wrong, in terms of the file's fields.
        message: String,
    },
    /// The import request is invalid (key id, threshold).
    #[error("invalid request: {0}")]
    Request(String),
    /// The secret key file is malformed. The message never quotes its contents.
    #[error("secret file {}: {message}", path.display())]
    Secret {
        /// The secret file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The ceremony's own TLS material cannot be loaded.
    #[error("ceremony TLS material: {0}")]
    Tls(#[from] TlsError),
    /// Some nodes failed the check before dealing; nothing was dealt or sent.
    #[error(
        "refusing to deal: {} of {total} node(s) failed the pre-check, nothing was sent:{}",
        failures.len(),
        join(failures)
    )]
    PreCheck {
        /// Nodes in the ceremony file.
        total: usize,
        /// The nodes that failed and why.
        failures: Vec<NodeFailure>,
    },
    /// The key could not be split.
    #[error("cannot split the key: {0}")]
    Crypto(#[from] CryptoError),
    /// The manifest this build encoded does not decode; a bug, nothing was sent.
    #[error("internal error, nothing was sent: {0}")]
    Manifest(#[from] ManifestError),
    /// Some nodes did not install their share.
    #[error(
        "import of key {key_id} is incomplete: installed on {} of {total} node(s) [{}] \
         (threshold {threshold}). The key is unusable on the failing nodes (they did not \
         confirm holding their share){}. Failed:{}",
        installed.len(),
        installed.join(", "),
        if installed.len() >= usize::from(*threshold) {
            "; the nodes that installed it can still reach the threshold"
        } else {
            "; fewer than threshold nodes hold it, so it cannot sign"
        },
        join(failed)
    )]
    Install {
        /// The key id.
        key_id: String,
        /// Threshold `t`.
        threshold: u16,
        /// Nodes in the ceremony.
        total: usize,
        /// Nodes that installed the key and acknowledged the manifest.
        installed: Vec<String>,
        /// Nodes that did not, and why.
        failed: Vec<NodeFailure>,
    },
    /// A key ceremony (DKG, refresh, repair) failed at a step and was aborted on
    /// every node; the failures name the party at fault where one is known.
    #[error(
        "{kind} of key {key_id} failed at {step}; the ceremony was aborted on every node and no key changed:{}",
        join(failures)
    )]
    Aborted {
        /// `DKG`, `refresh` or `repair`.
        kind: &'static str,
        /// The key id.
        key_id: String,
        /// Which step.
        step: &'static str,
        /// What failed, by node.
        failures: Vec<NodeFailure>,
    },
    /// The key's nodes disagree about it before a refresh or repair starts.
    #[error("key {key_id}: {message}")]
    KeyState {
        /// The key id.
        key_id: String,
        /// What is wrong.
        message: String,
    },
    /// A transcript could not be written or read.
    #[error("transcript {}: {message}", path.display())]
    Transcript {
        /// The transcript file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The clock cannot be formatted as RFC 3339.
    #[error("cannot format the current time: {0}")]
    Clock(String),
}

impl CeremonyError {
    /// Whether the error is a usage or configuration mistake (the command's
    /// arguments or files), as opposed to a failure while running the ceremony.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Read { .. }
                | Self::Config { .. }
                | Self::Request(_)
                | Self::Secret { .. }
                | Self::Tls(_)
        )
    }
}

/// One node that failed a ceremony step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFailure {
    /// The node id.
    pub node_id: String,
    /// Why.
    pub reason: String,
}

impl fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.node_id, self.reason)
    }
}

/// One failure per line, so that a five-node ceremony's error stays readable.
fn join(failures: &[NodeFailure]) -> String {
    failures.iter().map(|f| format!("\n  - {f}")).collect()
}

/// A node taking part in a ceremony.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CeremonyNode {
    /// Node id: the name in the node's certificate, and its FROST identifier's seed.
    pub id: String,
    /// gRPC endpoint, `https://host:port`.
    pub endpoint: String,
    /// Cloud or sovereign region.
    pub region: String,
    /// Legal jurisdiction (e.g. `EU`).
    pub jurisdiction: String,
}

/// A ceremony file (TOML): who takes part and how to reach them.
///
/// ```toml
/// trust_domain = "quorate.test"
///
/// [tls]              # the ceremony's own certificate (role `ceremony`)
/// ca = "pki/ca.pem"  # relative paths are relative to the ceremony file
/// cert = "pki/ceremony-alice.pem"
/// key = "pki/ceremony-alice-key.pem"
///
/// [[nodes]]
/// id = "node-1"
/// endpoint = "https://127.0.0.1:7101"
/// region = "eu-central-sov"
/// jurisdiction = "EU"
/// ```
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CeremonyFile {
    /// SPIFFE trust domain of every party.
    pub trust_domain: String,
    /// The ceremony's own mTLS material.
    pub tls: TlsPaths,
    /// The share holders, in manifest order.
    pub nodes: Vec<CeremonyNode>,
    /// Where the file was loaded from (for messages); not part of the file.
    #[serde(skip)]
    pub source: PathBuf,
}

impl CeremonyFile {
    /// Reads, parses and validates a ceremony file. Relative TLS paths are taken
    /// relative to the file's directory.
    pub fn load(path: &Path) -> Result<Self, CeremonyError> {
        let text = std::fs::read_to_string(path).map_err(|source| CeremonyError::Read {
            what: "ceremony file",
            path: path.to_path_buf(),
            source,
        })?;
        let file = Self::parse(&text, path)?;
        file.validate()?;
        Ok(file)
    }

    /// Parses a ceremony file's text (without validating it); `path` names the file in
    /// messages and anchors relative TLS paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, CeremonyError> {
        let mut file: Self = toml::from_str(text).map_err(|e| CeremonyError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        for p in [&mut file.tls.ca, &mut file.tls.cert, &mut file.tls.key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        file.source = path.to_path_buf();
        Ok(file)
    }

    /// Checks the file: at least two nodes with unique, valid ids, `https://`
    /// endpoints, non-empty region and jurisdiction, and a TLS certificate of role
    /// `ceremony` in the file's trust domain.
    pub fn validate(&self) -> Result<(), CeremonyError> {
        self.check().map(drop)
    }

    fn config_error(&self, message: impl Into<String>) -> CeremonyError {
        CeremonyError::Config {
            path: self.source.clone(),
            message: message.into(),
        }
    }

    /// [`validate`](Self::validate), returning the loaded TLS material.
    pub(crate) fn check(&self) -> Result<TlsMaterial, CeremonyError> {
        PeerIdentity::new(&self.trust_domain, Role::Ceremony, "check")
            .map_err(|e| self.config_error(format!("trust_domain: {e}")))?;
        if self.nodes.len() < 2 {
            return Err(self.config_error(format!(
                "needs at least 2 [[nodes]], found {}",
                self.nodes.len()
            )));
        }
        if self.nodes.len() > usize::from(u16::MAX) {
            return Err(self.config_error("too many [[nodes]]"));
        }
        let mut seen = HashSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let at = format!("nodes[{i}] ({:?})", node.id);
            PeerIdentity::new(&self.trust_domain, Role::Node, &node.id)
                .map_err(|e| self.config_error(format!("{at}: invalid id: {e}")))?;
            if !seen.insert(node.id.as_str()) {
                return Err(self.config_error(format!("{at}: node id listed twice")));
            }
            if !node.endpoint.starts_with("https://")
                || node.endpoint.parse::<tonic::transport::Uri>().is_err()
            {
                return Err(self.config_error(format!(
                    "{at}: endpoint {:?} is not an https://host:port URL",
                    node.endpoint
                )));
            }
            if node.region.trim().is_empty() {
                return Err(self.config_error(format!("{at}: region is empty")));
            }
            if node.jurisdiction.trim().is_empty() {
                return Err(self.config_error(format!("{at}: jurisdiction is empty")));
            }
        }
        let tls = self.tls.load()?;
        let id = tls.identity();
        if id.role != Role::Ceremony || id.trust_domain != self.trust_domain {
            return Err(self.config_error(format!(
                "tls.cert {} belongs to {id}; the ceremony needs a certificate of role \
                 `ceremony` in trust domain {:?} (quorate-ceremony pki issue --role ceremony)",
                self.tls.cert.display(),
                self.trust_domain
            )));
        }
        Ok(tls)
    }
}

/// What to import.
pub struct ImportRequest {
    /// Key id (`[A-Za-z0-9._-]`, at most 128 bytes).
    pub key_id: String,
    /// Ciphersuite of the key.
    pub ciphersuite: Ciphersuite,
    /// Signers needed, `2..=n`.
    pub threshold: u16,
    /// The signing key in the ciphersuite's FROST scalar encoding; `None` deals a
    /// fresh random key.
    pub secret: Option<Zeroizing<Vec<u8>>>,
    /// The key's policy, stored with it on every node; `None` for an unrestricted key.
    pub policy: Option<quorate_proto::pb::KeyPolicy>,
}

impl fmt::Debug for ImportRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportRequest")
            .field("key_id", &self.key_id)
            .field("ciphersuite", &self.ciphersuite)
            .field("threshold", &self.threshold)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("policy", &self.policy)
            .finish()
    }
}

/// A share holder as recorded in a transcript.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TranscriptParticipant {
    /// Node id.
    pub node_id: String,
    /// The endpoint the ceremony reached it at.
    pub endpoint: String,
    /// Region.
    pub region: String,
    /// Jurisdiction.
    pub jurisdiction: String,
    /// FROST identifier, hex.
    pub identifier: String,
    /// Verifying share, hex (FROST encoding).
    pub verifying_share: String,
    /// Hex SHA-256 of the DER of the TLS certificate the node presented (verified
    /// against the CA for the node's name). Absent when it could not be observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_fingerprint: Option<String>,
}

/// The public record of a ceremony (JSON). Holds no secret.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Transcript {
    /// Always [`TRANSCRIPT_FORMAT`].
    pub format: String,
    /// Which ceremony: `import`.
    pub kind: String,
    /// Key id.
    pub key_id: String,
    /// Ciphersuite name (`ED25519`, `SECP256K1`, `SECP256K1_TR`).
    pub ciphersuite: String,
    /// Threshold `t`.
    pub threshold: u16,
    /// Share holders, in manifest order.
    pub participants: Vec<TranscriptParticipant>,
    /// Group public key, hex, in the public API encoding.
    pub public_key: String,
    /// frost PublicKeyPackage, hex.
    pub public_key_package: String,
    /// The encoded KeyManifest every node stored, hex.
    pub manifest: String,
    /// SHA-256 of the manifest, hex; every node acknowledged it.
    pub manifest_hash: String,
    /// When the ceremony started (RFC 3339, UTC).
    pub started_at: String,
    /// When every node had acknowledged (RFC 3339, UTC).
    pub finished_at: String,
    /// DKG, refresh: the ceremony id every node signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceremony_id: Option<String>,
    /// DKG, refresh: SHA-256 of the ceremony setup, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_hash: Option<String>,
    /// DKG, refresh: the round-1 transcript hash every node confirmed, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round1_transcript_hash: Option<String>,
    /// The key's policy as stored in the manifest (JSON of its fields), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<serde_json::Value>,
    /// DKG, refresh: every participant's signed confirmation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confirmations: Vec<TranscriptConfirmation>,
}

/// A participant's signed confirmation, as recorded in a transcript: anyone holding
/// the CA certificate can re-check it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TranscriptConfirmation {
    /// Node id.
    pub node_id: String,
    /// The encoded `Confirmation`, hex.
    pub body: String,
    /// The node's certificate (DER), hex.
    pub certificate: String,
    /// TLS signature scheme.
    pub scheme: u32,
    /// Signature, hex.
    pub signature: String,
}

impl Transcript {
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        // A struct of strings and integers always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses a transcript, refusing unknown formats.
    pub fn from_json(text: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Header {
            format: String,
        }
        let header: Header = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if header.format != TRANSCRIPT_FORMAT {
            return Err(format!(
                "unsupported transcript format {:?} (this build reads {TRANSCRIPT_FORMAT})",
                header.format
            ));
        }
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// Writes the transcript to `path`, which must not exist: a transcript is a
    /// record and is never silently replaced.
    pub fn write(&self, path: &Path) -> Result<(), CeremonyError> {
        use std::io::Write;
        let err = |e: std::io::Error| CeremonyError::Transcript {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(err)?;
        let mut json = self.to_json();
        json.push('\n');
        file.write_all(json.as_bytes()).map_err(err)?;
        file.sync_all().map_err(err)
    }

    /// Reads a transcript written by [`write`](Self::write).
    pub fn read(path: &Path) -> Result<Self, CeremonyError> {
        let text = std::fs::read_to_string(path).map_err(|source| CeremonyError::Read {
            what: "transcript",
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text).map_err(|message| CeremonyError::Transcript {
            path: path.to_path_buf(),
            message,
        })
    }
}

/// Reads a signing key for import: a file holding the 32-byte scalar as hex
/// (surrounding whitespace ignored), in the ciphersuite's FROST encoding (Ed25519:
/// little-endian; secp256k1: big-endian). Whether the scalar is canonical for the
/// ciphersuite is checked when the key is split.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, CeremonyError> {
    let text = std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|source| CeremonyError::Read {
            what: "secret file",
            path: path.to_path_buf(),
            source,
        })?;
    parse_secret_hex(&text).map_err(|message| CeremonyError::Secret {
        path: path.to_path_buf(),
        message,
    })
}

/// Never quotes the input: an error message must not leak part of a key.
fn parse_secret_hex(text: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let hex_text = text.trim();
    if hex_text.len() != 64 {
        return Err(format!(
            "expected 64 hex digits (a 32-byte scalar), found {} characters",
            hex_text.chars().count()
        ));
    }
    let mut secret = Zeroizing::new(vec![0u8; 32]);
    hex::decode_to_slice(hex_text, secret.as_mut_slice())
        .map_err(|_| "expected 64 hex digits (a 32-byte scalar); found a non-hex character")?;
    Ok(secret)
}

pub(crate) fn now_rfc3339() -> Result<String, CeremonyError> {
    let now = OffsetDateTime::now_utc();
    // Whole seconds: the timestamp goes into the manifest, where precision is noise.
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&Rfc3339)
        .map_err(|e| CeremonyError::Clock(e.to_string()))
}

/// A node that passed the pre-check.
pub(crate) struct Reached {
    pub(crate) channel: Channel,
    pub(crate) fingerprint: Option<String>,
}

/// Runs a trusted-dealer import (see the module docs) and returns its transcript.
pub async fn import_key(
    file: &CeremonyFile,
    req: ImportRequest,
) -> Result<Transcript, CeremonyError> {
    let started_at = now_rfc3339()?;
    quorate_proto::validate_key_id(&req.key_id).map_err(CeremonyError::Request)?;
    let n = file.nodes.len();
    if req.threshold < 2 || usize::from(req.threshold) > n {
        return Err(CeremonyError::Request(format!(
            "threshold {} is not within 2..={n} (the ceremony file lists {n} nodes)",
            req.threshold
        )));
    }
    let tls = Arc::new(file.check()?);
    tracing::info!(
        key_id = %req.key_id,
        ciphersuite = %req.ciphersuite,
        threshold = req.threshold,
        nodes = n,
        "import: checking nodes"
    );

    let reached = precheck(file, &tls).await?;

    let ImportRequest {
        key_id,
        ciphersuite,
        threshold,
        secret,
        policy,
    } = req;
    let ops = ciphersuite.ops();
    let names: Vec<String> = file.nodes.iter().map(|node| node.id.clone()).collect();
    let dealt = ops.split(secret.as_ref().map(|s| s.as_slice()), &names, threshold)?;
    drop(secret);

    let participants = file
        .nodes
        .iter()
        .map(|node| pb::ManifestParticipant {
            node_id: node.id.clone(),
            region: node.region.clone(),
            jurisdiction: node.jurisdiction.clone(),
        })
        .collect();
    let encoded = manifest::encode(
        &key_id,
        ciphersuite,
        threshold,
        dealt.public_key_package.clone(),
        participants,
        now_rfc3339()?,
        policy,
    );
    // Decoding what we built runs the same checks every node will run.
    let manifest = Manifest::decode(&encoded)?;
    tracing::info!(
        key_id = %key_id,
        manifest_hash = %hex::encode(manifest.hash),
        public_key = %hex::encode(&manifest.public_key.public_key),
        "import: key split, installing shares"
    );

    let installs = file
        .nodes
        .iter()
        .zip(&reached)
        .zip(&dealt.key_packages)
        .map(|((node, reached), (name, key_package))| {
            debug_assert_eq!(&node.id, name);
            let request = pb::InstallKeyRequest {
                manifest: manifest.encoded.clone(),
                key_package: key_package.expose_bytes().to_vec(),
            };
            let mut client = CeremonyClient::new(reached.channel.clone());
            let expected = manifest.hash;
            async move {
                let outcome =
                    match tokio::time::timeout(RPC_TIMEOUT, client.install_key(request)).await {
                        Err(_) => Err(format!("InstallKey timed out after {RPC_TIMEOUT:?}")),
                        Ok(Err(status)) => Err(describe_status(&status)),
                        Ok(Ok(response)) => {
                            let got = response.into_inner().manifest_hash;
                            if got == expected {
                                Ok(())
                            } else {
                                Err(format!(
                                    "acknowledged manifest hash {}, expected {}",
                                    hex::encode(&got),
                                    hex::encode(expected)
                                ))
                            }
                        }
                    };
                (node.id.clone(), outcome)
            }
        });
    let outcomes = join_all(installs).await;
    drop(dealt);

    let mut installed = Vec::new();
    let mut failed = Vec::new();
    for (node_id, outcome) in outcomes {
        match outcome {
            Ok(()) => {
                tracing::info!(node = %node_id, "import: share installed");
                installed.push(node_id);
            }
            Err(reason) => {
                tracing::error!(node = %node_id, %reason, "import: install failed");
                failed.push(NodeFailure { node_id, reason });
            }
        }
    }
    if !failed.is_empty() {
        return Err(CeremonyError::Install {
            key_id,
            threshold,
            total: n,
            installed,
            failed,
        });
    }

    let participants = file
        .nodes
        .iter()
        .zip(&reached)
        .map(|(node, reached)| {
            let p = manifest.participant(&node.id).ok_or_else(|| {
                ManifestError::Invalid(format!("{} missing from the manifest", node.id))
            })?;
            Ok(TranscriptParticipant {
                node_id: node.id.clone(),
                endpoint: node.endpoint.clone(),
                region: node.region.clone(),
                jurisdiction: node.jurisdiction.clone(),
                identifier: hex::encode(&p.identifier),
                verifying_share: hex::encode(&p.verifying_share),
                certificate_fingerprint: reached.fingerprint.clone(),
            })
        })
        .collect::<Result<Vec<_>, ManifestError>>()?;
    Ok(Transcript {
        format: TRANSCRIPT_FORMAT.to_string(),
        kind: "import".to_string(),
        key_id,
        ciphersuite: ciphersuite.name().to_string(),
        threshold,
        participants,
        public_key: hex::encode(&manifest.public_key.public_key),
        public_key_package: hex::encode(&manifest.public_key_package),
        manifest: hex::encode(&manifest.encoded),
        manifest_hash: hex::encode(manifest.hash),
        started_at,
        finished_at: now_rfc3339()?,
        ceremony_id: None,
        setup_hash: None,
        round1_transcript_hash: None,
        policy: None,
        confirmations: Vec::new(),
    })
}

/// Reaches every node and checks who it says it is; fails naming every node that
/// did not answer as expected. Returns one entry per node, in file order.
pub(crate) async fn precheck(
    file: &CeremonyFile,
    tls: &Arc<TlsMaterial>,
) -> Result<Vec<Reached>, CeremonyError> {
    let checks = file.nodes.iter().map(|node| {
        let tls = Arc::clone(tls);
        async move {
            // The server name is the node id: a node's certificate is issued for it,
            // so a node answering at the wrong endpoint fails the handshake. The
            // channel records the certificate the node presents on it, for the
            // transcript: the certificate of the connection the ceremony runs over,
            // at no extra handshake.
            let (channel, server_certificate) = tls
                .observed_channel(&node.endpoint, &node.id, CONNECT_TIMEOUT)
                .map_err(|e| e.to_string())?;
            let mut client = CeremonyClient::new(channel.clone());
            let info =
                match tokio::time::timeout(RPC_TIMEOUT, client.get_info(pb::GetInfoRequest {}))
                    .await
                {
                    Err(_) => return Err(format!("GetInfo timed out after {RPC_TIMEOUT:?}")),
                    Ok(Err(status)) => return Err(describe_status(&status)),
                    Ok(Ok(response)) => response.into_inner(),
                };
            let mut mismatches = Vec::new();
            for (field, got, want) in [
                ("node_id", &info.node_id, &node.id),
                ("region", &info.region, &node.region),
                ("jurisdiction", &info.jurisdiction, &node.jurisdiction),
            ] {
                if got != want {
                    mismatches.push(format!("{field} {got:?} (ceremony file says {want:?})"));
                }
            }
            if !mismatches.is_empty() {
                return Err(format!("node answers with {}", mismatches.join(", ")));
            }
            // GetInfo completed a verified handshake, so the certificate is known;
            // if it ever were not, the transcript says nothing rather than guess.
            let fingerprint = server_certificate
                .get()
                .map(|der| crate::pki::fingerprint_der(&der));
            if fingerprint.is_none() {
                tracing::warn!(
                    node = %node.id,
                    "the node's certificate was not observed; the transcript omits its fingerprint"
                );
            }
            tracing::info!(
                node = %node.id,
                region = %info.region,
                jurisdiction = %info.jurisdiction,
                "node checked"
            );
            Ok(Reached {
                channel,
                fingerprint,
            })
        }
    });
    let results = join_all(checks).await;
    let mut reached = Vec::with_capacity(results.len());
    let mut failures = Vec::new();
    for (node, result) in file.nodes.iter().zip(results) {
        match result {
            Ok(r) => reached.push(r),
            Err(reason) => failures.push(NodeFailure {
                node_id: node.id.clone(),
                reason: format!("{}: {reason}", node.endpoint),
            }),
        }
    }
    if failures.is_empty() {
        Ok(reached)
    } else {
        Err(CeremonyError::PreCheck {
            total: file.nodes.len(),
            failures,
        })
    }
}

/// A status as a user reads it, with the transport cause when there is one
/// (tonic's own message is often just "transport error").
pub(crate) fn describe_status(status: &tonic::Status) -> String {
    use std::error::Error as _;
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source = status.source();
    while let Some(cause) = source {
        // hyper and tonic wrap errors in layers that repeat each other's words.
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki;

    const DOMAIN: &str = "quorate.test";

    /// A PKI with a ceremony certificate, and a ceremony file text using it.
    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let pki_dir = dir.path().join("pki");
        pki::create_ca(&pki_dir, DOMAIN).unwrap();
        pki::issue(&pki_dir, DOMAIN, Role::Ceremony, "alice", &[]).unwrap();
        pki::issue(&pki_dir, DOMAIN, Role::Node, "node-1", &[]).unwrap();
        let path = dir.path().join("ceremony.toml");
        (dir, path)
    }

    fn nodes_toml(ids: &[&str]) -> String {
        ids.iter()
            .enumerate()
            .map(|(i, id)| {
                format!(
                    "[[nodes]]\nid = \"{id}\"\nendpoint = \"https://127.0.0.1:{}\"\n\
                     region = \"r{i}\"\njurisdiction = \"EU\"\n\n",
                    7100 + i
                )
            })
            .collect()
    }

    fn file_text(cert: &str, nodes: &str) -> String {
        format!(
            "trust_domain = \"{DOMAIN}\"\n\n[tls]\nca = \"pki/ca.pem\"\n\
             cert = \"pki/{cert}.pem\"\nkey = \"pki/{cert}-key.pem\"\n\n{nodes}"
        )
    }

    fn load(path: &Path, text: &str) -> Result<CeremonyFile, CeremonyError> {
        std::fs::write(path, text).unwrap();
        CeremonyFile::load(path)
    }

    fn config_message(result: Result<CeremonyFile, CeremonyError>) -> String {
        match result {
            Err(e @ CeremonyError::Config { .. }) => {
                assert!(e.is_usage());
                e.to_string()
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn valid_ceremony_file_loads_with_paths_relative_to_the_file() {
        let (dir, path) = setup();
        let file = load(
            &path,
            &file_text(
                "ceremony-alice",
                &nodes_toml(&["node-1", "node-2", "node-3"]),
            ),
        )
        .unwrap();
        assert_eq!(file.nodes.len(), 3);
        assert_eq!(file.nodes[1].id, "node-2");
        assert_eq!(file.tls.ca, dir.path().join("pki/ca.pem"));
    }

    #[test]
    fn ceremony_file_with_one_node_is_refused() {
        let (_dir, path) = setup();
        let msg = config_message(load(
            &path,
            &file_text("ceremony-alice", &nodes_toml(&["node-1"])),
        ));
        assert!(msg.contains("at least 2"), "{msg}");
    }

    #[test]
    fn ceremony_file_with_duplicate_node_ids_is_refused() {
        let (_dir, path) = setup();
        let msg = config_message(load(
            &path,
            &file_text(
                "ceremony-alice",
                &nodes_toml(&["node-1", "node-2", "node-1"]),
            ),
        ));
        assert!(msg.contains("listed twice"), "{msg}");
    }

    #[test]
    fn ceremony_file_with_empty_region_or_jurisdiction_is_refused() {
        let (_dir, path) = setup();
        let nodes = nodes_toml(&["node-1", "node-2"]);
        let msg = config_message(load(
            &path,
            &file_text(
                "ceremony-alice",
                &nodes.replace("region = \"r1\"", "region = \" \""),
            ),
        ));
        assert!(
            msg.contains("nodes[1]") && msg.contains("region is empty"),
            "{msg}"
        );
        let msg = config_message(load(
            &path,
            &file_text(
                "ceremony-alice",
                &nodes.replacen("jurisdiction = \"EU\"", "jurisdiction = \"\"", 1),
            ),
        ));
        assert!(msg.contains("jurisdiction is empty"), "{msg}");
    }

    #[test]
    fn ceremony_file_with_plain_http_endpoint_is_refused() {
        let (_dir, path) = setup();
        let nodes = nodes_toml(&["node-1", "node-2"]).replace("https://", "http://");
        let msg = config_message(load(&path, &file_text("ceremony-alice", &nodes)));
        assert!(msg.contains("https://"), "{msg}");
    }

    #[test]
    fn ceremony_file_with_unknown_field_is_refused() {
        let (_dir, path) = setup();
        let text = file_text("ceremony-alice", &nodes_toml(&["node-1", "node-2"]))
            .replace("region = \"r0\"", "region = \"r0\"\nzone = \"a\"");
        let msg = config_message(load(&path, &text));
        assert!(msg.contains("zone"), "{msg}");
    }

    #[test]
    fn ceremony_file_with_a_node_certificate_is_refused() {
        let (_dir, path) = setup();
        let msg = config_message(load(
            &path,
            &file_text("node-node-1", &nodes_toml(&["node-1", "node-2"])),
        ));
        assert!(msg.contains("role `ceremony`"), "{msg}");
    }

    #[test]
    fn ceremony_file_in_another_trust_domain_is_refused() {
        let (_dir, path) = setup();
        let text = file_text("ceremony-alice", &nodes_toml(&["node-1", "node-2"])).replace(
            "trust_domain = \"quorate.test\"",
            "trust_domain = \"other.test\"",
        );
        let msg = config_message(load(&path, &text));
        assert!(msg.contains("trust domain \"other.test\""), "{msg}");
    }

    #[test]
    fn missing_ceremony_file_is_a_usage_error() {
        let err = CeremonyFile::load(Path::new("/nonexistent/ceremony.toml")).unwrap_err();
        assert!(
            matches!(err, CeremonyError::Read { .. }) && err.is_usage(),
            "{err}"
        );
    }

    #[tokio::test]
    async fn import_refuses_bad_threshold_and_key_id_before_contacting_nodes() {
        let (_dir, path) = setup();
        let file = load(
            &path,
            &file_text(
                "ceremony-alice",
                &nodes_toml(&["node-1", "node-2", "node-3"]),
            ),
        )
        .unwrap();
        for (key_id, threshold) in [("k", 1), ("k", 4), ("bad key", 2), ("", 2)] {
            let req = ImportRequest {
                key_id: key_id.into(),
                ciphersuite: Ciphersuite::Ed25519,
                threshold,
                secret: None,
                policy: None,
            };
            let err = import_key(&file, req).await.unwrap_err();
            assert!(
                matches!(err, CeremonyError::Request(_)),
                "{key_id:?}/{threshold}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn import_deals_nothing_when_a_node_is_unreachable() {
        quorate_proto::install_crypto_provider();
        let (_dir, path) = setup();
        // Port 1 on loopback refuses connections.
        let nodes = nodes_toml(&["node-1", "node-2"])
            .replace("127.0.0.1:7100", "127.0.0.1:1")
            .replace("127.0.0.1:7101", "127.0.0.1:1");
        let file = load(&path, &file_text("ceremony-alice", &nodes)).unwrap();
        let req = ImportRequest {
            key_id: "k1".into(),
            ciphersuite: Ciphersuite::Ed25519,
            threshold: 2,
            secret: None,
            policy: None,
        };
        let err = import_key(&file, req).await.unwrap_err();
        match &err {
            CeremonyError::PreCheck { total, failures } => {
                assert_eq!(*total, 2);
                let ids: Vec<&str> = failures.iter().map(|f| f.node_id.as_str()).collect();
                assert_eq!(ids, ["node-1", "node-2"]);
            }
            other => panic!("expected a pre-check failure, got {other}"),
        }
        assert!(err.to_string().contains("nothing was sent"), "{err}");
    }

    #[test]
    fn partial_install_error_names_both_sides() {
        let err = CeremonyError::Install {
            key_id: "k1".into(),
            threshold: 2,
            total: 3,
            installed: vec!["node-1".into()],
            failed: vec![
                NodeFailure {
                    node_id: "node-2".into(),
                    reason: "Unavailable: down".into(),
                },
                NodeFailure {
                    node_id: "node-3".into(),
                    reason: "PermissionDenied: no".into(),
                },
            ],
        };
        let msg = err.to_string();
        assert!(
            msg.contains("installed on 1 of 3 node(s) [node-1]"),
            "{msg}"
        );
        assert!(
            msg.contains("\n  - node-2 (Unavailable: down)\n  - node-3"),
            "{msg}"
        );
        assert!(msg.contains("unusable on the failing nodes"), "{msg}");
        assert!(msg.contains("cannot sign"), "{msg}");
        assert!(!err.is_usage());
    }

    fn sample_transcript() -> Transcript {
        Transcript {
            format: TRANSCRIPT_FORMAT.into(),
            kind: "import".into(),
            key_id: "k1".into(),
            ciphersuite: "ED25519".into(),
            threshold: 2,
            participants: vec![
                TranscriptParticipant {
                    node_id: "node-1".into(),
                    endpoint: "https://127.0.0.1:7100".into(),
                    region: "eu".into(),
                    jurisdiction: "EU".into(),
                    identifier: "01".into(),
                    verifying_share: "02".into(),
                    certificate_fingerprint: Some("ab".into()),
                },
                TranscriptParticipant {
                    node_id: "node-2".into(),
                    endpoint: "https://127.0.0.1:7101".into(),
                    region: "us".into(),
                    jurisdiction: "US".into(),
                    identifier: "03".into(),
                    verifying_share: "04".into(),
                    certificate_fingerprint: None,
                },
            ],
            public_key: "aa".into(),
            public_key_package: "bb".into(),
            manifest: "cc".into(),
            manifest_hash: "dd".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            finished_at: "2026-01-01T00:00:01Z".into(),
            ceremony_id: None,
            setup_hash: None,
            round1_transcript_hash: None,
            policy: None,
            confirmations: Vec::new(),
        }
    }

    #[test]
    fn transcript_json_has_the_documented_shape() {
        let json: serde_json::Value = serde_json::from_str(&sample_transcript().to_json()).unwrap();
        assert_eq!(json["format"], "quorate-transcript/1");
        assert_eq!(json["kind"], "import");
        assert_eq!(json["ciphersuite"], "ED25519");
        assert_eq!(json["threshold"], 2);
        let p = &json["participants"];
        assert_eq!(p[0]["node_id"], "node-1");
        assert_eq!(p[0]["certificate_fingerprint"], "ab");
        // An unobserved fingerprint is absent, not empty or invented.
        assert!(p[1].get("certificate_fingerprint").is_none());
        for key in [
            "key_id",
            "public_key",
            "public_key_package",
            "manifest",
            "manifest_hash",
            "started_at",
            "finished_at",
        ] {
            assert!(json[key].is_string(), "{key}");
        }
    }

    #[test]
    fn transcript_round_trips_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        let t = sample_transcript();
        t.write(&path).unwrap();
        assert_eq!(Transcript::read(&path).unwrap(), t);
        assert!(matches!(
            t.write(&path),
            Err(CeremonyError::Transcript { .. })
        ));
    }

    #[test]
    fn transcript_of_unknown_format_is_refused() {
        let json = sample_transcript()
            .to_json()
            .replace("quorate-transcript/1", "quorate-transcript/2");
        let err = Transcript::from_json(&json).unwrap_err();
        assert!(err.contains("unsupported transcript format"), "{err}");
    }

    #[test]
    fn secret_file_accepts_hex_with_surrounding_whitespace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.hex");
        let hex_key = "01".repeat(32);
        std::fs::write(&path, format!("  {hex_key}\n\n")).unwrap();
        assert_eq!(read_secret_file(&path).unwrap().as_slice(), &[1u8; 32]);
    }

    #[test]
    fn malformed_secret_file_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.hex");
        for bad in [
            "c0ffee".repeat(10),
            "c0ffee".repeat(11),
            format!("{}zz", "c0ffee".repeat(10)),
            "0x".to_string() + &"c0ffee".repeat(10) + "ab",
            String::new(),
        ] {
            std::fs::write(&path, &bad).unwrap();
            let err = read_secret_file(&path).unwrap_err();
            assert!(matches!(err, CeremonyError::Secret { .. }), "{err}");
            assert!(!err.to_string().contains("c0ffee"), "{err}");
        }
    }

    #[test]
    fn imported_secret_determines_the_group_key_for_each_ciphersuite() {
        // The secret file's encoding is the one `split` takes: dealing the scalar 1
        // yields the group key 1*G, the generator.
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        for (suite, scalar_one, generator) in [
            (
                Ciphersuite::Ed25519,
                format!("01{}", "00".repeat(31)),
                "5866666666666666666666666666666666666666666666666666666666666666",
            ),
            (
                Ciphersuite::Secp256k1,
                format!("{}01", "00".repeat(31)),
                "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
            ),
        ] {
            let secret = parse_secret_hex(&scalar_one).unwrap();
            let dealt = suite.ops().split(Some(&secret), &names, 2).unwrap();
            let info = suite
                .ops()
                .public_key_info(&dealt.public_key_package)
                .unwrap();
            assert_eq!(hex::encode(info.public_key), generator, "{suite}");
        }
    }

    #[test]
    fn import_request_debug_redacts_the_secret() {
        let req = ImportRequest {
            key_id: "k".into(),
            ciphersuite: Ciphersuite::Ed25519,
            threshold: 2,
            secret: Some(Zeroizing::new(vec![0xAB; 32])),
            policy: None,
        };
        let text = format!("{req:?}");
        assert!(
            text.contains("<redacted>") && !text.contains("171"),
            "{text}"
        );
    }
}
