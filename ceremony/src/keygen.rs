//! Distributed key ceremonies driven across the nodes: DKG, refresh and repair, and
//! `transcript verify`.
//!
//! The ceremony process is only a relay. Each node signs its contributions and
//! confirmations with its mTLS key, and seals secret packages to the recipient
//! node's per-ceremony envelope key; the nodes check each other's signatures
//! themselves. The ceremony checks them too, only to name the party at fault early.
//! Any failure aborts the ceremony on every node (`Abort`), which drops all pending
//! secret state, and reports which node failed and why.
//!
//! DKG: `DkgRound1` (contributions) -> `DkgRound2` (every contribution to every
//! node; sealed round-2 packages back) -> `DkgRound3` (each node's envelopes; signed
//! confirmations back) -> the manifest is built from the setup and the public key
//! package, checked against every confirmation -> `DkgActivate` (manifest and all
//! confirmations to every node; each checks them and only then stores the key).
//! Refresh runs the same rounds with frost's refresh variant among the remaining
//! nodes, then `RetireKey` on a removed node.
//! Repair: `RepairStart` (helpers and target) -> `RepairDeltas` -> `RepairSigma` ->
//! `RepairFinish` on the target.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use futures::future::join_all;
use prost::Message;
use quorate_proto::attest::{StatementVerifier, VerifiedCertificates};
use quorate_proto::ceremony::{
    self, build_manifest, verify_confirmations, verify_contributions, Setup, SETUP_VERSION,
};
use quorate_proto::manifest::Manifest;
use quorate_proto::pb;
use quorate_proto::pb::ceremony_client::CeremonyClient;
use quorate_proto::suite::Ciphersuite;
use rand_core::{OsRng, RngCore};
use serde::Deserialize;
use tonic::transport::Channel;

use crate::import::{
    describe_status, now_rfc3339, precheck, CeremonyError, CeremonyFile, NodeFailure, Reached,
    Transcript, TranscriptConfirmation, TranscriptParticipant, RPC_TIMEOUT, TRANSCRIPT_FORMAT,
};

/// A key policy file (TOML or JSON), mapping to the manifest's `KeyPolicy`.
///
/// ```toml
/// allowed_clients = ["spiffe://quorate.test/client/payments"]
/// home_jurisdictions = ["EU"]
/// min_home_signers = 2
/// approver_keys = ["<64 hex digits: an Ed25519 public key>"]
/// rate_limit_per_minute = 600
/// ```
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
}

impl PolicyFile {
    /// Reads a policy file: JSON if it ends in `.json`, TOML otherwise.
    pub fn load(path: &Path) -> Result<pb::KeyPolicy, CeremonyError> {
        let text = std::fs::read_to_string(path).map_err(|source| CeremonyError::Read {
            what: "policy file",
            path: path.to_path_buf(),
            source,
        })?;
        let config = |message: String| CeremonyError::Config {
            path: path.to_path_buf(),
            message,
        };
        let file: Self = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| config(e.to_string()))?
        } else {
            toml::from_str(&text).map_err(|e| config(e.to_string()))?
        };
        file.to_pb().map_err(config)
    }

    /// The protobuf policy, checking the approver keys.
    pub fn to_pb(&self) -> Result<pb::KeyPolicy, String> {
        let approver_keys = self
            .approver_keys
            .iter()
            .map(|k| match hex::decode(k) {
                Ok(bytes) if bytes.len() == 32 => Ok(bytes),
                _ => Err(format!(
                    "approver key {k:?} is not 64 hex digits (an Ed25519 public key)"
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(pb::KeyPolicy {
            allowed_clients: self.allowed_clients.clone(),
            home_jurisdictions: self.home_jurisdictions.clone(),
            min_home_signers: self.min_home_signers,
            approver_keys,
            rate_limit_per_minute: self.rate_limit_per_minute,
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
        }
    }
}

/// What a DKG creates.
#[derive(Clone, Debug)]
pub struct DkgRequest {
    /// Key id.
    pub key_id: String,
    /// Ciphersuite.
    pub ciphersuite: Ciphersuite,
    /// Threshold `t`, `2..=n`.
    pub threshold: u16,
    /// The key's policy; `None` for an unrestricted key.
    pub policy: Option<pb::KeyPolicy>,
}

/// A fresh random ceremony id.
fn ceremony_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    OsRng.fill_bytes(&mut bytes);
    format!("{prefix}-{}", hex::encode(bytes))
}

/// A node in a running ceremony.
#[derive(Clone)]
struct Peer {
    id: String,
    endpoint: String,
    region: String,
    jurisdiction: String,
    channel: Channel,
    fingerprint: Option<String>,
}

impl Peer {
    fn client(&self) -> CeremonyClient<Channel> {
        CeremonyClient::new(self.channel.clone())
    }
}

async fn rpc<T, Fut>(call: Fut) -> Result<T, String>
where
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    match tokio::time::timeout(RPC_TIMEOUT, call).await {
        Err(_) => Err(format!("timed out after {RPC_TIMEOUT:?}")),
        Ok(Err(status)) => Err(describe_status(&status)),
        Ok(Ok(response)) => Ok(response.into_inner()),
    }
}

/// Runs one step on `peers` concurrently; all results or every failure.
async fn step<T, F, Fut>(peers: &[Peer], f: F) -> Result<Vec<T>, Vec<NodeFailure>>
where
    F: Fn(Peer) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let results = join_all(peers.iter().cloned().map(&f)).await;
    let mut ok = Vec::new();
    let mut failures = Vec::new();
    for (peer, result) in peers.iter().zip(results) {
        match result {
            Ok(v) => ok.push(v),
            Err(reason) => failures.push(NodeFailure {
                node_id: peer.id.clone(),
                reason,
            }),
        }
    }
    if failures.is_empty() {
        Ok(ok)
    } else {
        Err(failures)
    }
}

/// A running ceremony: aborts itself on every node when it fails.
struct Run<'a> {
    kind: &'static str,
    key_id: String,
    ceremony_id: String,
    peers: &'a [Peer],
}

impl Run<'_> {
    async fn abort(&self, step: &'static str, failures: Vec<NodeFailure>) -> CeremonyError {
        let reason = failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        tracing::error!(ceremony_id = %self.ceremony_id, step, %reason, "ceremony failed; aborting on every node");
        let request = pb::AbortRequest {
            ceremony_id: self.ceremony_id.clone(),
            reason: format!("{step}: {reason}"),
        };
        let _ = step_abort(self.peers, request).await;
        CeremonyError::Aborted {
            kind: self.kind,
            key_id: self.key_id.clone(),
            step,
            failures,
        }
    }
}

async fn step_abort(
    peers: &[Peer],
    request: pb::AbortRequest,
) -> Result<Vec<pb::AbortResponse>, Vec<NodeFailure>> {
    step(peers, |p| {
        let request = request.clone();
        async move { rpc(p.client().abort(request)).await }
    })
    .await
}

fn single(party: &str, reason: impl Into<String>) -> Vec<NodeFailure> {
    vec![NodeFailure {
        node_id: party.to_string(),
        reason: reason.into(),
    }]
}

fn check_failure(e: ceremony::CeremonyCheckError) -> Vec<NodeFailure> {
    match e {
        ceremony::CeremonyCheckError::Party { party, reason } => single(&party, reason),
        other => single("ceremony", other.to_string()),
    }
}

async fn reach(file: &CeremonyFile) -> Result<(Vec<Peer>, StatementVerifier), CeremonyError> {
    let tls = Arc::new(file.check()?);
    let verifier = tls
        .statement_verifier()
        .map_err(|e| CeremonyError::Config {
            path: file.source.clone(),
            message: format!("tls.ca: {e}"),
        })?;
    let reached: Vec<Reached> = precheck(file, &tls).await?;
    let peers = file
        .nodes
        .iter()
        .zip(reached)
        .map(|(n, r)| Peer {
            id: n.id.clone(),
            endpoint: n.endpoint.clone(),
            region: n.region.clone(),
            jurisdiction: n.jurisdiction.clone(),
            channel: r.channel,
            fingerprint: r.fingerprint,
        })
        .collect();
    Ok((peers, verifier))
}

fn manifest_participants(peers: &[Peer]) -> Vec<pb::ManifestParticipant> {
    peers
        .iter()
        .map(|p| pb::ManifestParticipant {
            node_id: p.id.clone(),
            region: p.region.clone(),
            jurisdiction: p.jurisdiction.clone(),
        })
        .collect()
}

/// Runs a DKG (see the module docs) and returns its transcript.
pub async fn run_dkg(file: &CeremonyFile, req: DkgRequest) -> Result<Transcript, CeremonyError> {
    let started_at = now_rfc3339()?;
    quorate_proto::validate_key_id(&req.key_id).map_err(CeremonyError::Request)?;
    let n = file.nodes.len();
    if req.threshold < 2 || usize::from(req.threshold) > n {
        return Err(CeremonyError::Request(format!(
            "threshold {} is not within 2..={n} (the ceremony file lists {n} nodes)",
            req.threshold
        )));
    }
    let (peers, verifier) = reach(file).await?;
    let setup = pb::CeremonySetup {
        version: SETUP_VERSION,
        ceremony_id: ceremony_id("dkg"),
        kind: pb::CeremonyKind::Dkg as i32,
        key_id: req.key_id.clone(),
        ciphersuite: req.ciphersuite.to_pb() as i32,
        threshold: u32::from(req.threshold),
        participants: manifest_participants(&peers),
        policy: req.policy.clone(),
        created_at: now_rfc3339()?,
        manifest_hash: Vec::new(),
        repair_target: String::new(),
    };
    let setup = Setup::from_pb(setup).map_err(|e| CeremonyError::Request(e.to_string()))?;
    run_keygen("DKG", setup, &peers, &peers, &verifier, None, started_at).await
}

/// What a refresh changes.
#[derive(Clone, Debug)]
pub struct RefreshRequest {
    /// Key id.
    pub key_id: String,
    /// A node to drop from the key (its share is deleted).
    pub remove_node: Option<String>,
}

/// Every node's manifest of `key_id`; fails unless all of `peers` report the same.
async fn agreed_manifest(peers: &[Peer], key_id: &str) -> Result<Manifest, CeremonyError> {
    let manifests = step(peers, |p| {
        let key_id = key_id.to_string();
        async move {
            let nk = rpc(p.client().get_manifest(pb::GetManifestRequest { key_id })).await?;
            Manifest::decode(&nk.manifest).map_err(|e| e.to_string())
        }
    })
    .await
    .map_err(|failures| CeremonyError::KeyState {
        key_id: key_id.to_string(),
        message: format!(
            "cannot read the key's manifest from every node:{}",
            failures
                .iter()
                .map(|f| format!("\n  - {f}"))
                .collect::<String>()
        ),
    })?;
    let first = manifests
        .first()
        .ok_or_else(|| CeremonyError::Request("no nodes".into()))?
        .clone();
    for (peer, m) in peers.iter().zip(&manifests) {
        if m.hash != first.hash {
            return Err(CeremonyError::KeyState {
                key_id: key_id.to_string(),
                message: format!(
                    "{} holds manifest {}, {} holds {}; the nodes disagree about the key",
                    peer.id,
                    hex::encode(m.hash),
                    peers[0].id,
                    hex::encode(first.hash)
                ),
            });
        }
    }
    Ok(first)
}

/// Runs a refresh: new shares for the same group key among the key's nodes (the
/// ceremony file's nodes, less `remove_node`), then retires the removed node's share.
pub async fn run_refresh(
    file: &CeremonyFile,
    req: RefreshRequest,
) -> Result<Transcript, CeremonyError> {
    let started_at = now_rfc3339()?;
    quorate_proto::validate_key_id(&req.key_id).map_err(CeremonyError::Request)?;
    if let Some(r) = &req.remove_node {
        if !file.nodes.iter().any(|n| &n.id == r) {
            return Err(CeremonyError::Request(format!(
                "--remove-node {r}: the ceremony file lists no such node"
            )));
        }
    }
    let (peers, verifier) = reach(file).await?;
    let manifest = agreed_manifest(&peers, &req.key_id).await?;
    let remaining: Vec<Peer> = peers
        .iter()
        .filter(|p| Some(&p.id) != req.remove_node.as_ref())
        .cloned()
        .collect();
    let mut names: Vec<&str> = manifest
        .participants
        .iter()
        .map(|p| p.node_id.as_str())
        .collect();
    let mut listed: Vec<&str> = peers.iter().map(|p| p.id.as_str()).collect();
    names.sort_unstable();
    listed.sort_unstable();
    if names != listed {
        return Err(CeremonyError::Request(format!(
            "the ceremony file must list exactly the key's nodes [{}]; it lists [{}]",
            names.join(", "),
            listed.join(", ")
        )));
    }
    if remaining.len() < usize::from(manifest.threshold) {
        return Err(CeremonyError::Request(format!(
            "removing a node would leave {} nodes, fewer than the threshold {}",
            remaining.len(),
            manifest.threshold
        )));
    }
    let setup = pb::CeremonySetup {
        version: SETUP_VERSION,
        ceremony_id: ceremony_id("refresh"),
        kind: pb::CeremonyKind::Refresh as i32,
        key_id: req.key_id.clone(),
        ciphersuite: manifest.ciphersuite.to_pb() as i32,
        threshold: u32::from(manifest.threshold),
        participants: manifest_participants(&remaining),
        policy: None,
        created_at: String::new(),
        manifest_hash: manifest.hash.to_vec(),
        repair_target: String::new(),
    };
    let setup = Setup::from_pb(setup).map_err(|e| CeremonyError::Request(e.to_string()))?;
    let removed: Vec<Peer> = peers
        .iter()
        .filter(|p| Some(&p.id) == req.remove_node.as_ref())
        .cloned()
        .collect();
    run_keygen(
        "refresh",
        setup,
        &remaining,
        &removed,
        &verifier,
        Some(&manifest),
        started_at,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn run_keygen(
    kind: &'static str,
    setup: Setup,
    peers: &[Peer],
    retire: &[Peer],
    verifier: &StatementVerifier,
    previous: Option<&Manifest>,
    started_at: String,
) -> Result<Transcript, CeremonyError> {
    let ids = setup.participant_ids();
    let run = Run {
        kind,
        key_id: setup.pb.key_id.clone(),
        ceremony_id: setup.ceremony_id().to_string(),
        peers,
    };
    let retire: Vec<Peer> = retire
        .iter()
        .filter(|p| !ids.contains(&p.id))
        .cloned()
        .collect();
    tracing::info!(ceremony_id = %run.ceremony_id, key_id = %run.key_id, nodes = peers.len(), "{kind}: round 1");
    // Each node's contribution and confirmation carry the same certificate.
    let mut certificates = VerifiedCertificates::default();

    // Round 1: contributions.
    let contributions = match step(peers, |p| {
        let request = pb::DkgRound1Request {
            setup: Some(setup.pb.clone()),
        };
        async move { rpc(p.client().dkg_round1(request)).await }
    })
    .await
    {
        Ok(c) => c,
        Err(f) => return Err(run.abort("round 1", f).await),
    };
    if let Err(e) = verify_contributions(verifier, &mut certificates, &setup, &ids, &contributions)
    {
        return Err(run.abort("round 1", check_failure(e)).await);
    }

    // Round 2: every contribution to every node; sealed packages back.
    let round2 = match step(peers, |p| {
        let request = pb::DkgRound2Request {
            ceremony_id: run.ceremony_id.clone(),
            contributions: contributions.clone(),
        };
        async move { rpc(p.client().dkg_round2(request)).await }
    })
    .await
    {
        Ok(r) => r,
        Err(f) => return Err(run.abort("round 2", f).await),
    };
    let mut inbox: BTreeMap<String, Vec<pb::Envelope>> = BTreeMap::new();
    for envelope in round2.into_iter().flat_map(|r| r.envelopes) {
        inbox
            .entry(envelope.recipient.clone())
            .or_default()
            .push(envelope);
    }

    // Round 3: each node's envelopes; signed confirmations back.
    let confirmations = match step(peers, |p| {
        let request = pb::DkgRound3Request {
            ceremony_id: run.ceremony_id.clone(),
            envelopes: inbox.get(&p.id).cloned().unwrap_or_default(),
        };
        async move { rpc(p.client().dkg_round3(request)).await }
    })
    .await
    {
        Ok(c) => c,
        Err(f) => return Err(run.abort("round 3", f).await),
    };

    // The manifest, from the setup and the first node's public key package; every
    // confirmation must name its hash.
    let first = match confirmations
        .first()
        .map(|s| pb::Confirmation::decode(s.body.as_slice()))
    {
        Some(Ok(c)) => c,
        _ => {
            return Err(run
                .abort(
                    "confirmation",
                    single(&ids[0], "confirmation does not decode"),
                )
                .await)
        }
    };
    let manifest = match build_manifest(&setup, previous, first.public_key_package.clone()) {
        Ok(m) => m,
        Err(e) => return Err(run.abort("confirmation", check_failure(e)).await),
    };
    let expected = pb::Confirmation {
        setup_hash: setup.hash.to_vec(),
        node_id: "the ceremony".into(),
        round1_transcript_hash: first.round1_transcript_hash.clone(),
        group_public_key: manifest.public_key.public_key.clone(),
        manifest_hash: manifest.hash.to_vec(),
        public_key_package: Vec::new(),
    };
    if let Err(e) =
        verify_confirmations(verifier, &mut certificates, &ids, &expected, &confirmations)
    {
        return Err(run.abort("confirmation", check_failure(e)).await);
    }
    if let Some(prev) = previous {
        if prev.public_key.verifying_key != manifest.public_key.verifying_key {
            return Err(run
                .abort(
                    "confirmation",
                    single("ceremony", "the refresh changed the group key"),
                )
                .await);
        }
    }

    // Activation: every node checks every confirmation itself.
    let acks = step(peers, |p| {
        let request = pb::DkgActivateRequest {
            ceremony_id: run.ceremony_id.clone(),
            manifest: manifest.encoded.clone(),
            confirmations: confirmations.clone(),
        };
        let expected = manifest.hash;
        async move {
            let ack = rpc(p.client().dkg_activate(request)).await?;
            if ack.manifest_hash != expected {
                return Err(format!(
                    "acknowledged manifest hash {}, expected {}",
                    hex::encode(&ack.manifest_hash),
                    hex::encode(expected)
                ));
            }
            Ok(())
        }
    })
    .await;
    if let Err(failures) = acks {
        // Nodes that activated keep the key; those that did not drop their state.
        let _ = step_abort(
            peers,
            pb::AbortRequest {
                ceremony_id: run.ceremony_id.clone(),
                reason: "activation failed on another node".into(),
            },
        )
        .await;
        return Err(CeremonyError::Aborted {
            kind,
            key_id: run.key_id.clone(),
            step: "activation (nodes not listed here did activate)",
            failures,
        });
    }

    // A refresh that dropped a node: that node deletes its old share.
    for p in &retire {
        let request = pb::RetireKeyRequest {
            ceremony_id: run.ceremony_id.clone(),
            setup: Some(setup.pb.clone()),
            manifest: manifest.encoded.clone(),
            confirmations: confirmations.clone(),
        };
        match rpc(p.client().retire_key(request)).await {
            Ok(_) => tracing::info!(node = %p.id, "refresh: removed node retired its share"),
            Err(e) => {
                return Err(CeremonyError::KeyState {
                    key_id: run.key_id.clone(),
                    message: format!(
                        "the refresh succeeded without {}, but {} did not delete its old share ({e}); its share is useless without the other nodes' old shares, which are gone, but delete the node's store",
                        p.id, p.id
                    ),
                })
            }
        }
    }

    transcript(
        kind,
        &setup,
        peers,
        &manifest,
        &first,
        &confirmations,
        started_at,
    )
}

fn transcript(
    kind: &'static str,
    setup: &Setup,
    peers: &[Peer],
    manifest: &Manifest,
    first: &pb::Confirmation,
    confirmations: &[pb::Signed],
    started_at: String,
) -> Result<Transcript, CeremonyError> {
    let participants = peers
        .iter()
        .map(|p| {
            let m = manifest.participant(&p.id).ok_or_else(|| {
                CeremonyError::Request(format!("{} missing from the manifest", p.id))
            })?;
            Ok(TranscriptParticipant {
                node_id: p.id.clone(),
                endpoint: p.endpoint.clone(),
                region: p.region.clone(),
                jurisdiction: p.jurisdiction.clone(),
                identifier: hex::encode(&m.identifier),
                verifying_share: hex::encode(&m.verifying_share),
                certificate_fingerprint: p.fingerprint.clone(),
            })
        })
        .collect::<Result<Vec<_>, CeremonyError>>()?;
    let policy = pb::KeyManifest::decode(manifest.encoded.as_slice())
        .ok()
        .and_then(|m| m.policy)
        .map(|p| serde_json::to_value(PolicyFile::from_pb(&p)).unwrap_or_default());
    let confirmations = confirmations
        .iter()
        .map(|s| TranscriptConfirmation {
            node_id: pb::Confirmation::decode(s.body.as_slice())
                .map(|c| c.node_id)
                .unwrap_or_default(),
            body: hex::encode(&s.body),
            certificate: hex::encode(&s.certificate),
            scheme: s.scheme,
            signature: hex::encode(&s.signature),
        })
        .collect();
    Ok(Transcript {
        format: TRANSCRIPT_FORMAT.to_string(),
        kind: kind.to_ascii_lowercase(),
        key_id: manifest.key_id.clone(),
        ciphersuite: manifest.ciphersuite.name().to_string(),
        threshold: manifest.threshold,
        participants,
        public_key: hex::encode(&manifest.public_key.public_key),
        public_key_package: hex::encode(&manifest.public_key_package),
        manifest: hex::encode(&manifest.encoded),
        manifest_hash: hex::encode(manifest.hash),
        started_at,
        finished_at: now_rfc3339()?,
        ceremony_id: Some(setup.ceremony_id().to_string()),
        setup_hash: Some(hex::encode(setup.hash)),
        round1_transcript_hash: Some(hex::encode(&first.round1_transcript_hash)),
        policy,
        confirmations,
    })
}

/// What a repair rebuilds.
#[derive(Clone, Debug)]
pub struct RepairRequest {
    /// Key id.
    pub key_id: String,
    /// The node whose share is rebuilt.
    pub node: String,
}

/// What a repair did.
#[derive(Clone, Debug)]
pub struct RepairOutcome {
    /// The helpers.
    pub helpers: Vec<String>,
    /// SHA-256 of the manifest the target stored.
    pub manifest_hash: String,
    /// The target's verifying share (hex), as in the manifest.
    pub verifying_share: String,
}

/// Runs a repair: the first `t` reachable holders of the key help rebuild `node`'s
/// share; every delta and sigma travels sealed to its recipient node.
pub async fn run_repair(
    file: &CeremonyFile,
    req: RepairRequest,
) -> Result<RepairOutcome, CeremonyError> {
    quorate_proto::validate_key_id(&req.key_id).map_err(CeremonyError::Request)?;
    let (peers, verifier) = reach(file).await?;
    let target = peers
        .iter()
        .find(|p| p.id == req.node)
        .cloned()
        .ok_or_else(|| {
            CeremonyError::Request(format!(
                "--node {}: the ceremony file lists no such node",
                req.node
            ))
        })?;
    // Helpers are the listed nodes that hold the key (a node dropped by an earlier
    // refresh, or down, answers without it); those holding it must agree on it.
    let others: Vec<Peer> = peers.iter().filter(|p| p.id != req.node).cloned().collect();
    let mut holders = Vec::new();
    for p in &others {
        let request = pb::GetManifestRequest {
            key_id: req.key_id.clone(),
        };
        match rpc(p.client().get_manifest(request)).await {
            Ok(_) => holders.push(p.clone()),
            Err(e) => {
                tracing::warn!(node = %p.id, error = %e, "repair: node does not offer the key; not a helper")
            }
        }
    }
    let manifest = agreed_manifest(&holders, &req.key_id).await?;
    let others = holders;
    let me = manifest.participant(&target.id).ok_or_else(|| {
        CeremonyError::Request(format!(
            "{} holds no share of key {}",
            target.id, req.key_id
        ))
    })?;
    let helpers: Vec<Peer> = others
        .iter()
        .filter(|p| manifest.participant(&p.id).is_some())
        .take(usize::from(manifest.threshold))
        .cloned()
        .collect();
    if helpers.len() < usize::from(manifest.threshold) {
        return Err(CeremonyError::Request(format!(
            "a repair needs {} helpers holding the key; the ceremony file lists {}",
            manifest.threshold,
            helpers.len()
        )));
    }
    let setup = pb::CeremonySetup {
        version: SETUP_VERSION,
        ceremony_id: ceremony_id("repair"),
        kind: pb::CeremonyKind::Repair as i32,
        key_id: req.key_id.clone(),
        ciphersuite: manifest.ciphersuite.to_pb() as i32,
        threshold: u32::from(manifest.threshold),
        participants: manifest_participants(&helpers),
        policy: None,
        created_at: String::new(),
        manifest_hash: manifest.hash.to_vec(),
        repair_target: target.id.clone(),
    };
    let setup = Setup::from_pb(setup).map_err(|e| CeremonyError::Request(e.to_string()))?;
    let mut all = helpers.clone();
    all.push(target.clone());
    let run = Run {
        kind: "repair",
        key_id: req.key_id.clone(),
        ceremony_id: setup.ceremony_id().to_string(),
        peers: &all,
    };
    let contributions = match step(&all, |p| {
        let request = pb::RepairStartRequest {
            setup: Some(setup.pb.clone()),
        };
        async move { rpc(p.client().repair_start(request)).await }
    })
    .await
    {
        Ok(c) => c,
        Err(f) => return Err(run.abort("start", f).await),
    };
    let all_ids: Vec<String> = all.iter().map(|p| p.id.clone()).collect();
    if let Err(e) = verify_contributions(
        &verifier,
        &mut VerifiedCertificates::default(),
        &setup,
        &all_ids,
        &contributions,
    ) {
        return Err(run.abort("start", check_failure(e)).await);
    }
    let deltas = match step(&helpers, |p| {
        let request = pb::RepairDeltasRequest {
            ceremony_id: run.ceremony_id.clone(),
            contributions: contributions.clone(),
        };
        async move { rpc(p.client().repair_deltas(request)).await }
    })
    .await
    {
        Ok(d) => d,
        Err(f) => return Err(run.abort("deltas", f).await),
    };
    let mut inbox: BTreeMap<String, Vec<pb::Envelope>> = BTreeMap::new();
    for envelope in deltas.into_iter().flat_map(|r| r.envelopes) {
        inbox
            .entry(envelope.recipient.clone())
            .or_default()
            .push(envelope);
    }
    let sigmas = match step(&helpers, |p| {
        let request = pb::RepairSigmaRequest {
            ceremony_id: run.ceremony_id.clone(),
            envelopes: inbox.get(&p.id).cloned().unwrap_or_default(),
        };
        async move { rpc(p.client().repair_sigma(request)).await }
    })
    .await
    {
        Ok(s) => s,
        Err(f) => return Err(run.abort("sigmas", f).await),
    };
    // Only the target needs the helpers' contributions (their envelope keys and the
    // setup they signed).
    let helper_contributions: Vec<pb::Signed> = contributions[..helpers.len()].to_vec();
    let request = pb::RepairFinishRequest {
        ceremony_id: run.ceremony_id.clone(),
        manifest: manifest.encoded.clone(),
        contributions: helper_contributions,
        envelopes: sigmas,
    };
    match rpc(target.client().repair_finish(request)).await {
        Ok(ack) if ack.manifest_hash == manifest.hash => {}
        Ok(ack) => {
            return Err(run
                .abort(
                    "finish",
                    single(
                        &target.id,
                        format!(
                            "acknowledged manifest hash {}",
                            hex::encode(ack.manifest_hash)
                        ),
                    ),
                )
                .await)
        }
        Err(e) => return Err(run.abort("finish", single(&target.id, e)).await),
    }
    Ok(RepairOutcome {
        helpers: helpers.iter().map(|p| p.id.clone()).collect(),
        manifest_hash: hex::encode(manifest.hash),
        verifying_share: hex::encode(&me.verifying_share),
    })
}

/// Re-checks a transcript against the live nodes: every participant must hold the
/// transcript's manifest, with its group key, verifying shares and participants,
/// and the recorded confirmations must verify under the CA. Returns every mismatch
/// (empty: the transcript matches).
pub async fn verify_transcript(
    file: &CeremonyFile,
    transcript: &Transcript,
) -> Result<Vec<String>, CeremonyError> {
    let tls = Arc::new(file.check()?);
    let verifier = tls
        .statement_verifier()
        .map_err(|e| CeremonyError::Config {
            path: file.source.clone(),
            message: format!("tls.ca: {e}"),
        })?;
    let mut problems = Vec::new();
    let manifest_bytes = hex::decode(&transcript.manifest).unwrap_or_default();
    if hex::encode(quorate_proto::sha256(&manifest_bytes)) != transcript.manifest_hash {
        problems.push("transcript: manifest_hash is not the SHA-256 of its manifest".to_string());
    }
    match Manifest::decode(&manifest_bytes) {
        Err(e) => problems.push(format!("transcript: manifest does not decode: {e}")),
        Ok(m) => {
            if hex::encode(&m.public_key.public_key) != transcript.public_key {
                problems.push("transcript: public_key differs from its manifest's".into());
            }
        }
    }
    for c in &transcript.confirmations {
        let signed = pb::Signed {
            body: hex::decode(&c.body).unwrap_or_default(),
            certificate: hex::decode(&c.certificate).unwrap_or_default(),
            scheme: c.scheme,
            signature: hex::decode(&c.signature).unwrap_or_default(),
        };
        if let Err(e) = verifier.verify(&signed, ceremony::CONFIRMATION, &c.node_id) {
            problems.push(format!(
                "{}: recorded confirmation does not verify: {e}",
                c.node_id
            ));
            continue;
        }
        match pb::Confirmation::decode(signed.body.as_slice()) {
            Ok(body) if hex::encode(&body.manifest_hash) == transcript.manifest_hash => {}
            _ => problems.push(format!(
                "{}: recorded confirmation is for another manifest",
                c.node_id
            )),
        }
    }
    let want_ids: Vec<&str> = transcript
        .participants
        .iter()
        .map(|p| p.node_id.as_str())
        .collect();
    for p in &transcript.participants {
        let Some(node) = file.nodes.iter().find(|n| n.id == p.node_id) else {
            problems.push(format!(
                "{}: not in the ceremony file; cannot reach it",
                p.node_id
            ));
            continue;
        };
        let channel = match tls.channel(&node.endpoint, &node.id, std::time::Duration::from_secs(5))
        {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("{}: {e}", p.node_id));
                continue;
            }
        };
        let live = match rpc(
            CeremonyClient::new(channel).get_manifest(pb::GetManifestRequest {
                key_id: transcript.key_id.clone(),
            }),
        )
        .await
        {
            Ok(nk) => nk.manifest,
            Err(e) => {
                problems.push(format!(
                    "{}: cannot read key {}: {e}",
                    p.node_id, transcript.key_id
                ));
                continue;
            }
        };
        let hash = hex::encode(quorate_proto::sha256(&live));
        if hash != transcript.manifest_hash {
            problems.push(format!(
                "{}: holds manifest {hash}, transcript records {}",
                p.node_id, transcript.manifest_hash
            ));
        }
        let Ok(m) = Manifest::decode(&live) else {
            problems.push(format!("{}: its manifest does not decode", p.node_id));
            continue;
        };
        if hex::encode(&m.public_key.public_key) != transcript.public_key {
            problems.push(format!(
                "{}: group key {}, transcript records {}",
                p.node_id,
                hex::encode(&m.public_key.public_key),
                transcript.public_key
            ));
        }
        let ids: Vec<&str> = m.participants.iter().map(|q| q.node_id.as_str()).collect();
        if ids != want_ids {
            problems.push(format!(
                "{}: participants [{}], transcript records [{}]",
                p.node_id,
                ids.join(", "),
                want_ids.join(", ")
            ));
        }
        for q in &transcript.participants {
            match m.participant(&q.node_id) {
                Some(mp) if hex::encode(&mp.verifying_share) == q.verifying_share => {}
                Some(mp) => problems.push(format!(
                    "{}: verifying share of {} is {}, transcript records {}",
                    p.node_id,
                    q.node_id,
                    hex::encode(&mp.verifying_share),
                    q.verifying_share
                )),
                None => {}
            }
        }
    }
    Ok(problems)
}
