//! gRPC handlers: `Node` (for the coordinator) and `Ceremony` (key installation and
//! the node's side of key ceremonies, see [`crate::ceremony`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use quorate_proto::api;
use quorate_proto::approval;
use quorate_proto::audit::AuditRecord;
use quorate_proto::escrow::{EscrowPart, SplitRequest, ESCROW_FORMAT};
use quorate_proto::identity::{authorize, PeerIdentity, Role};
use quorate_proto::manifest::Manifest;
use quorate_proto::metrics::Registry;
use quorate_proto::pb;
use quorate_proto::ratelimit::RateLimiter;
use quorate_proto::suite::{
    ParsedKeyPackage, ReceivedSigningPackage, SecretKeyPackage, SecretNonces,
};
use tonic::{Request, Response, Status};

use crate::audit::{AuditLog, PendingRecord};
use crate::ceremony::{CeremonyKeys, Sessions};
use crate::error::NodeError;
use crate::nonces::NonceStore;
use crate::store::{KeyRecord, KeyStore};

pub use quorate_proto::api::MAX_COMMITMENTS_PER_CALL;

/// A key share ready to sign with.
#[derive(Debug)]
pub struct ActiveKey {
    /// The key's validated manifest.
    pub manifest: Manifest,
    /// This node's FROST identifier for the key.
    pub identifier: Vec<u8>,
    /// The key package as stored (ceremonies and escrow work from these bytes).
    pub(crate) key_package: SecretKeyPackage,
    /// The same, decoded once when the key is loaded: the signing path uses it.
    pub(crate) parsed_key_package: ParsedKeyPackage,
}

/// An answer and the audit record that must be on disk before it is sent.
#[derive(Debug)]
pub(crate) struct Recorded<T> {
    pending: PendingRecord,
    answer: Result<T, NodeError>,
}

impl<T> Recorded<T> {
    /// The same record, with `f` applied to a successful answer.
    fn and_then<U>(self, f: impl FnOnce(T) -> Result<U, NodeError>) -> Recorded<U> {
        Recorded {
            pending: self.pending,
            answer: self.answer.and_then(f),
        }
    }
}

/// A round-2 request that passed every check and spent its nonce (its record is
/// inserted): all that is left is computing the share.
pub(crate) struct ShareToSign {
    key: Arc<ActiveKey>,
    received: Box<dyn ReceivedSigningPackage>,
    nonces: SecretNonces,
}

impl std::fmt::Debug for ShareToSign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareToSign")
            .field("key_id", &self.key.manifest.key_id)
            .finish_non_exhaustive()
    }
}

/// Who this node is.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    /// Node id.
    pub node_id: String,
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// Region tag.
    pub region: String,
    /// Jurisdiction tag.
    pub jurisdiction: String,
}

/// State shared by the node's handlers.
#[derive(Debug)]
pub struct NodeState {
    pub(crate) identity: NodeIdentity,
    store: KeyStore,
    keys: RwLock<HashMap<String, Arc<ActiveKey>>>,
    nonces: NonceStore,
    audit: AuditLog,
    rate: RateLimiter,
    metrics: Arc<Registry>,
    pub(crate) ceremony: CeremonyKeys,
    pub(crate) sessions: Sessions,
    danger: crate::config::DangerSettings,
}

/// Metric names (one place, so the docs and tests agree with the code).
pub mod metric {
    /// Requests by RPC.
    pub const REQUESTS: &str = "quorate_node_requests_total";
    /// Failed requests by RPC and gRPC code.
    pub const ERRORS: &str = "quorate_node_errors_total";
    /// Round-2 latency.
    pub const SIGN_LATENCY: &str = "quorate_node_sign_share_seconds";
    /// Outstanding nonces.
    pub const NONCE_POOL: &str = "quorate_node_nonce_pool_size";
    /// Round-2 requests refused by policy, by reason.
    pub const POLICY_DENIALS: &str = "quorate_node_policy_denials_total";
    /// Shares issued for an out-of-policy quorum under an approval token.
    pub const FAILOVERS: &str = "quorate_node_failovers_total";
    /// Keys held.
    pub const KEYS: &str = "quorate_node_keys";
    /// Audit records written.
    pub const AUDIT_RECORDS: &str = "quorate_node_audit_records";
    /// Audit log flushes to disk by duration (group commits: under load fewer than
    /// records, so `_count` grows slower than the records).
    pub const AUDIT_FLUSH_SECONDS: &str = "quorate_node_audit_flush_seconds";
}

impl NodeState {
    /// Loads every stored key and checks it still belongs to this node.
    pub fn new(
        identity: NodeIdentity,
        store: KeyStore,
        nonces: NonceStore,
        metrics: Arc<Registry>,
        ceremony: CeremonyKeys,
    ) -> Result<Self, NodeError> {
        let on_flush = {
            let metrics = metrics.clone();
            Box::new(move |took: Duration| {
                metrics.observe(
                    metric::AUDIT_FLUSH_SECONDS,
                    "Audit log flushes to disk (fdatasync) by duration; concurrent records share one.",
                    &[],
                    took.as_secs_f64(),
                )
            })
        };
        let audit = AuditLog::open(store.dir(), &store.db(), &identity.node_id, on_flush)?;
        let mut keys = HashMap::new();
        for (key_id, record) in store.load_all()? {
            let key = activate(&identity, record)
                .map_err(|e| NodeError::Corrupt(format!("stored key {key_id:?}: {e}")))?;
            keys.insert(key_id, Arc::new(key));
        }
        for (name, help) in [
            (metric::REQUESTS, "Requests by RPC."),
            (metric::ERRORS, "Failed requests by RPC and gRPC code."),
            (
                metric::POLICY_DENIALS,
                "Round-2 requests refused by the key's policy.",
            ),
            (
                metric::FAILOVERS,
                "Shares issued to out-of-policy quorums under an approval token.",
            ),
        ] {
            metrics.declare_counter(name, help);
        }
        Ok(Self {
            identity,
            store,
            keys: RwLock::new(keys),
            nonces,
            audit,
            rate: RateLimiter::new(),
            metrics,
            ceremony,
            sessions: Sessions::default(),
            danger: crate::config::DangerSettings::default(),
        })
    }

    /// Turns on fault injection (drills only).
    pub fn with_danger(mut self, danger: crate::config::DangerSettings) -> Self {
        if danger.corrupt_signature_shares {
            tracing::warn!("DANGER: this node answers round 2 with corrupt signature shares (drill setting danger.corrupt_signature_shares)");
        }
        self.danger = danger;
        self
    }

    /// Updates the gauges that are read rather than counted.
    pub fn refresh_gauges(&self, registry: &Registry) {
        registry.set(
            metric::NONCE_POOL,
            "Outstanding single-use nonces.",
            &[],
            self.nonces.len() as f64,
        );
        registry.set(metric::KEYS, "Keys held.", &[], self.key_count() as f64);
        registry.set(
            metric::AUDIT_RECORDS,
            "Audit records written.",
            &[],
            self.audit.len() as f64,
        );
    }

    fn record<T>(&self, rpc: &str, result: &Result<T, NodeError>) {
        self.metrics
            .inc(metric::REQUESTS, "Requests by RPC.", &[("rpc", rpc)], 1);
        if let Err(e) = result {
            let code = format!("{:?}", e.code());
            self.metrics.inc(
                metric::ERRORS,
                "Failed requests by RPC and gRPC code.",
                &[("rpc", rpc), ("code", &code)],
                1,
            );
        }
    }

    fn deny(&self, reason: &str) {
        self.metrics.inc(
            metric::POLICY_DENIALS,
            "Round-2 requests refused by the key's policy.",
            &[("reason", reason)],
            1,
        );
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Number of keys held.
    pub fn key_count(&self) -> usize {
        self.read_keys().len()
    }

    /// Outstanding nonces.
    pub fn outstanding_nonces(&self) -> usize {
        self.nonces.len()
    }

    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<ActiveKey>>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Pending ceremonies on this node.
    pub fn pending_ceremonies(&self) -> usize {
        self.sessions.len()
    }

    pub(crate) fn key(&self, key_id: &str) -> Result<Arc<ActiveKey>, NodeError> {
        self.read_keys()
            .get(key_id)
            .cloned()
            .ok_or_else(|| NodeError::UnknownKey(key_id.to_string()))
    }

    fn info(&self) -> pb::NodeInfo {
        pb::NodeInfo {
            node_id: self.identity.node_id.clone(),
            region: self.identity.region.clone(),
            jurisdiction: self.identity.jurisdiction.clone(),
        }
    }

    fn commit(&self, req: pb::CommitRequest) -> Result<pb::CommitResponse, NodeError> {
        let req = api::CommitRequest::try_from(req).map_err(NodeError::InvalidArgument)?;
        let key = self.key(&req.key_id)?;
        // A node that can no longer sign (its audit log broke) hands out no
        // commitments either: coordinators would pool them and pick it for quorums,
        // each of which then fails in round 2. `UNAVAILABLE` counts against its
        // health on the coordinator, so it is skipped.
        self.audit.check_writable()?;
        let ops = key.manifest.ciphersuite.ops();
        let mut commitments = Vec::with_capacity(req.count as usize);
        for _ in 0..req.count {
            let (nonces, commitment) = ops
                .commit(&key.parsed_key_package)
                .map_err(|e| NodeError::Corrupt(format!("key {:?}: {e}", req.key_id)))?;
            self.nonces.insert(&req.key_id, &commitment, nonces);
            commitments.push(commitment);
        }
        Ok(pb::CommitResponse { commitments })
    }

    /// Round 2 up to the audit record: every check, the nonce taken and its record
    /// inserted (the record's flush starts now); the share is left to compute
    /// ([`Self::compute_share`]). The caller sends the answer only once the record
    /// is on disk. `Err` means nothing was recorded (malformed requests).
    fn record_share(
        &self,
        req: pb::SignShareRequest,
        caller: &PeerIdentity,
    ) -> Result<Recorded<ShareToSign>, NodeError> {
        let req = api::SignShareRequest::try_from(req).map_err(NodeError::InvalidArgument)?;
        let key = self.key(&req.key_id)?;
        let manifest = &key.manifest;
        let ops = manifest.ciphersuite.ops();
        if req.commitments.len() < usize::from(manifest.threshold) {
            return Err(NodeError::InvalidArgument(format!(
                "the quorum has {} signers; key {:?} needs {}",
                req.commitments.len(),
                manifest.key_id,
                manifest.threshold
            )));
        }
        let mut signers = Vec::with_capacity(req.commitments.len());
        let mut jurisdictions = Vec::with_capacity(req.commitments.len());
        for id in req.commitments.keys() {
            let p = manifest.participant_by_identifier(id).ok_or_else(|| {
                NodeError::InvalidArgument(
                    "the quorum names a signer that holds no share of this key".into(),
                )
            })?;
            signers.push(p.node_id.clone());
            jurisdictions.push(p.jurisdiction.as_str());
        }
        let own = req.commitments.get(&key.identifier).ok_or_else(|| {
            NodeError::InvalidArgument("the quorum holds no commitment of this node".into())
        })?;
        // Every other signer's commitment is decoded and checked before any nonce
        // is spent on the package.
        let received = ops
            .receive_signing_package(&req.message, &req.commitments, &key.identifier)
            .map_err(|e| NodeError::InvalidArgument(e.to_string()))?;
        let message_digest = quorate_proto::sha256(&req.message);
        let message_sha256 = hex::encode(message_digest);
        let refusal = |event_detail: String| AuditRecord {
            event: "sign_refused".into(),
            key_id: req.key_id.clone(),
            client_id: req.client_id.clone(),
            request_id: req.request_id.clone(),
            message_sha256: message_sha256.clone(),
            quorum: signers.clone(),
            caller: caller.spiffe_id(),
            detail: event_detail,
            ..Default::default()
        };

        // The node enforces the key's policy itself: the coordinator is not trusted
        // to have chosen a lawful quorum or an allowed client.
        let policy = &manifest.policy;
        if !policy.allows_client(&req.client_id) {
            self.deny("client_not_allowed");
            let msg = format!(
                "client {:?} may not use key {:?}",
                req.client_id, req.key_id
            );
            return Ok(Recorded {
                pending: self.audit.insert(refusal(msg.clone()))?,
                answer: Err(NodeError::PermissionDenied(msg)),
            });
        }
        let mut approval_token_id = String::new();
        if let Err(violation) = policy.check_quorum(jurisdictions.iter().copied()) {
            let Some(token) = &req.approval_token else {
                self.deny("unlawful_quorum");
                let msg = format!("{violation}, and no approval token was given");
                return Ok(Recorded {
                    pending: self.audit.insert(refusal(msg.clone()))?,
                    answer: Err(NodeError::FailedPrecondition(msg)),
                });
            };
            let verified =
                approval::check(token, &req.key_id, &policy.approvers).map(|a| a.token_id);
            match verified {
                Ok(token_id) => approval_token_id = token_id,
                Err(e) => {
                    self.deny("invalid_approval");
                    let msg = format!("{violation}, and the approval token is refused: {e}");
                    return Ok(Recorded {
                        pending: self.audit.insert(refusal(msg.clone()))?,
                        answer: Err(NodeError::FailedPrecondition(msg)),
                    });
                }
            }
        }
        // A nonce is spent only if its record can be made durable: once a flush or
        // a write of the audit log has failed, the node refuses round 2
        // (UNAVAILABLE, so the coordinator asks another node) and keeps its nonces
        // unspent. (Should the log break between this check and the insert below,
        // the nonce is dropped unused: no share is computed without a record.)
        self.audit.check_writable()?;
        // Taking the nonce out of the store is what makes it single-use: whatever
        // happens next, it cannot be used again.
        let spent_commitment = quorate_proto::audit::spent_commitment_detail(own);
        let nonces = self.nonces.take(&req.key_id, own).ok_or_else(|| {
            NodeError::FailedPrecondition(
                "the commitment for this node was not issued by it, was already used, or expired"
                    .into(),
            )
        })?;
        // The client's rate is charged only for a request that can use its nonce,
        // so a request refused above (or for a stale commitment, which sends the
        // coordinator back to two rounds) does not count against it; and once per
        // message, so that the coordinator's retry with another quorum, after a
        // node of the first failed, costs nothing here. A request refused here has
        // spent its nonce unused (the coordinator never sends a commitment twice,
        // so nothing is lost); its record names the commitment, so that an auditor
        // can account for every one this node issued.
        if let Err(retry) = self.rate.check_message(
            &req.key_id,
            &req.client_id,
            policy.rate_limit_per_minute,
            message_digest,
        ) {
            self.deny("rate_limited");
            let msg = format!(
                "client {:?} reached {} signatures per minute on key {:?}; retry in {} s",
                req.client_id,
                policy.rate_limit_per_minute,
                req.key_id,
                retry.as_secs().max(1)
            );
            // The commitment first, as in a `sign_share` record's detail, so that an
            // auditor reads both the same way.
            let record = AuditRecord {
                approval_token_id: approval_token_id.clone(),
                ..refusal(format!("{spent_commitment} spent unused; {msg}"))
            };
            return Ok(Recorded {
                pending: self.audit.insert(record)?,
                answer: Err(NodeError::ResourceExhausted(msg)),
            });
        }

        // The record of the spent nonce goes in before the share is computed, so
        // its flush runs meanwhile.
        let pending = self.audit.insert(AuditRecord {
            event: "sign_share".into(),
            key_id: req.key_id.clone(),
            client_id: req.client_id.clone(),
            request_id: req.request_id.clone(),
            message_sha256: message_sha256.clone(),
            quorum: signers.clone(),
            approval_token_id: approval_token_id.clone(),
            caller: caller.spiffe_id(),
            // Which nonce was spent: an auditor (and the crash drill) can check that
            // no commitment was ever used twice.
            detail: spent_commitment,
            ..Default::default()
        })?;
        Ok(Recorded {
            pending,
            answer: Ok(ShareToSign {
                key,
                received,
                nonces,
            }),
        })
    }

    /// Round 2 after the record: this node's signature share.
    fn compute_share(&self, share: ShareToSign) -> Result<pb::SignShareResponse, NodeError> {
        let ShareToSign {
            key,
            received,
            nonces,
        } = share;
        let share = received
            .sign(nonces, &key.parsed_key_package)
            // Every input was checked before the nonce was taken (the package
            // decoded with this node's commitment in it, the nonce found under that
            // commitment), so this is the node's fault, not the request's: INTERNAL,
            // which counts against the node's health at the coordinator.
            .map_err(|e| NodeError::Internal(format!("cannot sign: {e}")))?;
        let share = if self.danger.corrupt_signature_shares {
            key.manifest
                .ciphersuite
                .ops()
                .danger_corrupt_share(&share)
                .map_err(|e| NodeError::Internal(e.to_string()))?
        } else {
            share
        };
        Ok(pb::SignShareResponse {
            signature_share: share,
        })
    }

    /// Round 2 for one or more requests ([`Self::record_share`], then
    /// [`Self::compute_share`]): every record first, then every share, so that the
    /// records' flush runs while the shares are computed.
    fn sign_shares(
        &self,
        requests: Vec<pb::SignShareRequest>,
        caller: &PeerIdentity,
    ) -> Vec<Result<Recorded<pb::SignShareResponse>, NodeError>> {
        let recorded: Vec<_> = requests
            .into_iter()
            .map(|r| self.record_share(r, caller))
            .collect();
        recorded
            .into_iter()
            .map(|r| r.map(|r| r.and_then(|share| self.compute_share(share))))
            .collect()
    }

    /// Lets a round-2 answer leave: waits until its audit record is on disk, then
    /// counts it (as a `SignShare`, whichever call carried it) and logs it. `started`
    /// is when the call that carried it arrived.
    async fn issue_share(
        &self,
        recorded: Result<Recorded<pb::SignShareResponse>, NodeError>,
        started: Instant,
    ) -> Result<pb::SignShareResponse, NodeError> {
        let result = match recorded {
            Ok(Recorded { pending, answer }) => self
                .audit
                .durable(pending)
                .await
                .and_then(|record| answer.inspect(|_| self.share_issued(&record))),
            Err(e) => Err(e),
        };
        self.record("SignShare", &result);
        if result.is_ok() {
            self.metrics.observe(
                metric::SIGN_LATENCY,
                "Round-2 latency (policy checks, signing, durable audit record).",
                &[],
                started.elapsed().as_secs_f64(),
            );
        }
        result
    }

    /// Counts and logs a share as it leaves the node, after its record is on disk (so
    /// neither the metric nor the log claims a share the audit log may lack).
    fn share_issued(&self, record: &AuditRecord) {
        if !record.approval_token_id.is_empty() {
            self.metrics.inc(
                metric::FAILOVERS,
                "Shares issued to out-of-policy quorums under an approval token.",
                &[],
                1,
            );
        }
        // Debug, not info: every share is in the audit log already, durably and in
        // this node's region; a log line per share is for troubleshooting.
        tracing::debug!(
            key_id = %record.key_id,
            request_id = %record.request_id,
            client = %record.client_id,
            message_sha256 = %record.message_sha256,
            signers = ?record.quorum,
            approval_token = %record.approval_token_id,
            seq = record.seq,
            "signature share issued"
        );
    }

    /// Splits this node's share of a key among custodians. The plaintext parts exist
    /// only in zeroizing buffers here and leave the node only age-encrypted, each to
    /// its custodian's recipient.
    fn escrow_split(
        &self,
        req: pb::EscrowSplitRequest,
        caller: &PeerIdentity,
    ) -> Result<pb::EscrowSplitResponse, NodeError> {
        let req = SplitRequest::try_from(req).map_err(NodeError::InvalidArgument)?;
        let mut recipients = Vec::with_capacity(req.custodians.len());
        for (name, recipient) in &req.custodians {
            let parsed = recipient.parse::<age::x25519::Recipient>().map_err(|e| {
                NodeError::InvalidArgument(format!(
                    "custodian {name:?}: not an age X25519 recipient: {e}"
                ))
            })?;
            recipients.push(parsed);
        }
        let key = self.key(&req.key_id)?;
        let manifest = &key.manifest;
        let ops = manifest.ciphersuite.ops();
        let parts = u16::try_from(req.custodians.len())
            .map_err(|_| NodeError::InvalidArgument("too many custodians".into()))?;
        let split = ops
            .escrow_split(&key.key_package, req.threshold, parts)
            .map_err(|e| NodeError::Corrupt(format!("key {:?}: {e}", req.key_id)))?;
        let commitments: Vec<String> = split.commitments.iter().map(hex::encode).collect();
        let mut out = Vec::with_capacity(split.parts.len());
        for (((name, _), recipient), part) in
            req.custodians.iter().zip(&recipients).zip(&split.parts)
        {
            let file = EscrowPart {
                format: ESCROW_FORMAT.to_string(),
                key_id: manifest.key_id.clone(),
                node_id: self.identity.node_id.clone(),
                ciphersuite: manifest.ciphersuite.name().to_string(),
                custodian: name.clone(),
                threshold: req.threshold,
                parts,
                identifier: part.identifier,
                value: hex::encode(part.value.expose_bytes()),
                verifying_share: hex::encode(&split.verifying_share),
                commitments: commitments.clone(),
                group_public_key: hex::encode(&manifest.public_key.public_key),
                manifest_hash: hex::encode(manifest.hash),
            };
            let plaintext = file.to_json();
            drop(file);
            let age_file = age::encrypt(recipient, plaintext.as_bytes()).map_err(|e| {
                NodeError::InvalidArgument(format!("cannot encrypt to custodian {name:?}: {e}"))
            })?;
            out.push(pb::EscrowPartCiphertext {
                custodian: name.clone(),
                identifier: u32::from(part.identifier),
                age_file,
            });
        }
        self.audit.append(AuditRecord {
            event: "escrow_split".into(),
            key_id: req.key_id.clone(),
            caller: caller.spiffe_id(),
            detail: format!(
                "threshold={} custodians={}",
                req.threshold,
                req.custodians
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            ..Default::default()
        })?;
        tracing::info!(
            key_id = %req.key_id,
            threshold = req.threshold,
            custodians = ?req.custodians.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            "signing share split among escrow custodians"
        );
        Ok(pb::EscrowSplitResponse {
            parts: out,
            verifying_share: split.verifying_share.clone(),
            commitments: split.commitments.clone(),
            manifest_hash: manifest.hash.to_vec(),
        })
    }

    fn install_key(
        &self,
        req: pb::InstallKeyRequest,
        caller: &PeerIdentity,
    ) -> Result<pb::InstallKeyResponse, NodeError> {
        self.install_record(
            KeyRecord {
                manifest: req.manifest,
                key_package: SecretKeyPackage::from_bytes(req.key_package),
            },
            "key_installed",
            &caller.spiffe_id(),
        )
    }

    /// Validates and durably stores a new key; `event` names the ceremony step in
    /// the audit log.
    pub(crate) fn install_record(
        &self,
        record: KeyRecord,
        event: &str,
        caller: &str,
    ) -> Result<pb::InstallKeyResponse, NodeError> {
        let key = activate(&self.identity, record.clone()).map_err(NodeError::InvalidArgument)?;
        let key_id = key.manifest.key_id.clone();
        let hash = key.manifest.hash;
        // Hold the write lock across the durable insert so two installs of one key id
        // cannot both succeed.
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if keys.contains_key(&key_id) {
            return Err(NodeError::KeyExists(key_id));
        }
        self.store.insert_new(&key_id, &record)?;
        self.audit.append(AuditRecord {
            event: event.into(),
            key_id: key_id.clone(),
            caller: caller.into(),
            detail: format!("manifest_sha256={}", hex::encode(hash)),
            ..Default::default()
        })?;
        keys.insert(key_id.clone(), Arc::new(key));
        tracing::info!(key_id = %key_id, manifest_sha256 = %hex::encode(hash), "key installed");
        Ok(pb::InstallKeyResponse {
            manifest_hash: hash.to_vec(),
        })
    }

    /// Replaces a key (after a refresh) whose current manifest hash is
    /// `expected_manifest_hash`. The old share is gone from memory and disk once this
    /// returns: signing packages built for it find no matching share.
    pub(crate) fn replace_record(
        &self,
        record: KeyRecord,
        expected_manifest_hash: &[u8],
        caller: &str,
    ) -> Result<pb::InstallKeyResponse, NodeError> {
        let key = activate(&self.identity, record.clone()).map_err(NodeError::InvalidArgument)?;
        let key_id = key.manifest.key_id.clone();
        let hash = key.manifest.hash;
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        match keys.get(&key_id) {
            Some(old) if old.manifest.hash.as_slice() == expected_manifest_hash => {}
            _ => {
                return Err(NodeError::FailedPrecondition(format!(
                    "key {key_id} changed on this node during the ceremony"
                )))
            }
        }
        self.store.replace(&key_id, &record)?;
        self.audit.append(AuditRecord {
            event: "key_refreshed".into(),
            key_id: key_id.clone(),
            caller: caller.into(),
            detail: format!("manifest_sha256={}", hex::encode(hash)),
            ..Default::default()
        })?;
        keys.insert(key_id.clone(), Arc::new(key));
        tracing::info!(key_id = %key_id, manifest_sha256 = %hex::encode(hash), "key refreshed");
        Ok(pb::InstallKeyResponse {
            manifest_hash: hash.to_vec(),
        })
    }

    /// Deletes a key durably.
    pub(crate) fn remove_key(&self, key_id: &str, caller: &str) -> Result<(), NodeError> {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        self.store.remove(key_id)?;
        self.audit.append(AuditRecord {
            event: "key_retired".into(),
            key_id: key_id.into(),
            caller: caller.into(),
            ..Default::default()
        })?;
        keys.remove(key_id);
        Ok(())
    }
}

/// Validates a key record against this node: the manifest names this node with its
/// region and jurisdiction, and the key package is this node's share of that key.
pub(crate) fn activate(identity: &NodeIdentity, record: KeyRecord) -> Result<ActiveKey, String> {
    let manifest = Manifest::decode(&record.manifest).map_err(|e| e.to_string())?;
    let me = manifest.participant(&identity.node_id).ok_or_else(|| {
        format!(
            "key {:?} does not name this node ({}) as a participant",
            manifest.key_id, identity.node_id
        )
    })?;
    if me.region != identity.region || me.jurisdiction != identity.jurisdiction {
        return Err(format!(
            "key {:?} places {} in {}/{}, but this node is in {}/{}",
            manifest.key_id,
            identity.node_id,
            me.region,
            me.jurisdiction,
            identity.region,
            identity.jurisdiction
        ));
    }
    let ops = manifest.ciphersuite.ops();
    let parsed_key_package = ops
        .parse_key_package(&record.key_package)
        .map_err(|e| e.to_string())?;
    let info = parsed_key_package.info();
    if info.identifier != me.identifier
        || info.verifying_share != me.verifying_share
        || info.verifying_key != manifest.public_key.verifying_key
        || info.min_signers != manifest.threshold
    {
        return Err(format!(
            "key package is not {}'s share of key {:?}",
            identity.node_id, manifest.key_id
        ));
    }
    Ok(ActiveKey {
        identifier: me.identifier.clone(),
        manifest,
        key_package: record.key_package,
        parsed_key_package,
    })
}

/// Runs a handler's body on tokio's blocking pool: a batch of commitments or an
/// escrow split is milliseconds of curve arithmetic that would otherwise stall the
/// node's other connections.
async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(format!("handler task failed: {e}")))
}

/// The `Node` service.
#[derive(Debug, Clone)]
pub struct NodeService(pub Arc<NodeState>);

/// The `Ceremony` service.
#[derive(Debug, Clone)]
pub struct CeremonyService(pub Arc<NodeState>);

/// The `Audit` service.
#[derive(Debug, Clone)]
pub struct AuditService(pub Arc<NodeState>);

impl NodeService {
    fn authorize<T>(&self, req: &Request<T>) -> Result<PeerIdentity, Status> {
        authorize(req, &self.0.identity.trust_domain, &[Role::Coordinator])
    }
}

#[tonic::async_trait]
impl pb::node_server::Node for NodeService {
    async fn get_info(
        &self,
        req: Request<pb::GetInfoRequest>,
    ) -> Result<Response<pb::NodeInfo>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(self.0.info()))
    }

    async fn list_node_keys(
        &self,
        req: Request<pb::ListNodeKeysRequest>,
    ) -> Result<Response<pb::ListNodeKeysResponse>, Status> {
        self.authorize(&req)?;
        let keys = self
            .0
            .read_keys()
            .values()
            .map(|k| pb::NodeKey {
                manifest: k.manifest.encoded.clone(),
            })
            .collect();
        Ok(Response::new(pb::ListNodeKeysResponse { keys }))
    }

    // Signing-path spans are at debug level (see the coordinator's `sign`): the
    // audit log and the metrics record every call.
    #[tracing::instrument(level = "debug", skip_all, fields(key_id = %req.get_ref().key_id))]
    async fn commit(
        &self,
        req: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        self.authorize(&req)?;
        let state = Arc::clone(&self.0);
        let result = run_blocking(move || state.commit(req.into_inner())).await?;
        self.0.record("Commit", &result);
        Ok(Response::new(result?))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key_id = %req.get_ref().key_id))]
    async fn sign_share(
        &self,
        req: Request<pb::SignShareRequest>,
    ) -> Result<Response<pb::SignShareResponse>, Status> {
        let caller = self.authorize(&req)?;
        let started = Instant::now();
        // The signing itself runs here (a fraction of a millisecond); the wait for
        // the audit record's group-committed flush is asynchronous.
        let Some(recorded) = self.0.sign_shares(vec![req.into_inner()], &caller).pop() else {
            return Err(Status::internal("a round 2 of one request gave no result"));
        };
        Ok(Response::new(self.0.issue_share(recorded, started).await?))
    }

    type SignSharesStream =
        std::pin::Pin<Box<dyn Stream<Item = Result<pb::SignSharesResponse, Status>> + Send>>;

    async fn sign_shares(
        &self,
        req: Request<tonic::Streaming<pb::SignSharesRequest>>,
    ) -> Result<Response<Self::SignSharesStream>, Status> {
        let caller = self.authorize(&req)?;
        let service = self.clone();
        // A few batches are signed at once (so one batch's wait for its flush does
        // not hold up the next) and answered in the order they came: the
        // coordinator matches answers to batches by that order. An error ends the
        // stream.
        let answers = req
            .into_inner()
            .map(move |batch| {
                let service = service.clone();
                let caller = caller.clone();
                async move { service.sign_batch(batch?.requests, caller).await }
            })
            .buffered(api::MAX_BATCHES_IN_FLIGHT_PER_STREAM);
        Ok(Response::new(Box::pin(answers)))
    }
}

impl NodeService {
    /// One `SignShares` batch: every request as a `SignShare` of it would be, in
    /// order.
    #[tracing::instrument(level = "debug", skip_all, fields(requests = requests.len()))]
    async fn sign_batch(
        &self,
        requests: Vec<pb::SignShareRequest>,
        caller: PeerIdentity,
    ) -> Result<pb::SignSharesResponse, Status> {
        let started = Instant::now();
        if requests.is_empty() || requests.len() > api::MAX_SHARES_PER_BATCH {
            let refusal = format!(
                "a SignShares batch carries 1..={} requests, not {}",
                api::MAX_SHARES_PER_BATCH,
                requests.len()
            );
            let refused = NodeError::InvalidArgument(refusal.clone());
            self.0.record::<()>("SignShares", &Err(refused));
            return Err(NodeError::InvalidArgument(refusal).into());
        }
        // One request is signed here, as `SignShare` does: a hand-off to another
        // thread would cost about as much as the share. Several are milliseconds of
        // curve arithmetic, signed on the blocking pool so that the node's other
        // connections are not stalled. Every request's record goes in before the
        // first share is computed, so one flush, running meanwhile, covers the batch.
        let recorded = if requests.len() == 1 {
            self.0.sign_shares(requests, &caller)
        } else {
            let state = Arc::clone(&self.0);
            run_blocking(move || state.sign_shares(requests, &caller)).await?
        };
        let mut results = Vec::with_capacity(recorded.len());
        for recorded in recorded {
            let result = match self.0.issue_share(recorded, started).await {
                Ok(share) => pb::sign_share_result::Result::SignatureShare(share.signature_share),
                Err(e) => pb::sign_share_result::Result::Error(pb::SignShareError {
                    code: e.code() as i32,
                    message: e.to_string(),
                }),
            };
            results.push(pb::SignShareResult {
                result: Some(result),
            });
        }
        Ok(pb::SignSharesResponse { results })
    }
}

impl CeremonyService {
    fn authorize<T>(&self, req: &Request<T>) -> Result<PeerIdentity, Status> {
        authorize(req, &self.0.identity.trust_domain, &[Role::Ceremony])
    }
}

#[tonic::async_trait]
impl pb::ceremony_server::Ceremony for CeremonyService {
    async fn get_info(
        &self,
        req: Request<pb::GetInfoRequest>,
    ) -> Result<Response<pb::NodeInfo>, Status> {
        authorize(&req, &self.0.identity.trust_domain, &[Role::Ceremony])?;
        Ok(Response::new(self.0.info()))
    }

    async fn get_manifest(
        &self,
        req: Request<pb::GetManifestRequest>,
    ) -> Result<Response<pb::NodeKey>, Status> {
        authorize(&req, &self.0.identity.trust_domain, &[Role::Ceremony])?;
        let key_id = &req.get_ref().key_id;
        quorate_proto::validate_key_id(key_id).map_err(NodeError::InvalidArgument)?;
        let key = self.0.key(key_id)?;
        Ok(Response::new(pb::NodeKey {
            manifest: key.manifest.encoded.clone(),
        }))
    }

    #[tracing::instrument(skip_all, fields(key_id = %req.get_ref().key_id))]
    async fn escrow_split(
        &self,
        req: Request<pb::EscrowSplitRequest>,
    ) -> Result<Response<pb::EscrowSplitResponse>, Status> {
        let caller = authorize(&req, &self.0.identity.trust_domain, &[Role::Ceremony])?;
        tracing::info!(caller = %caller, "escrow split requested");
        // Splitting and encrypting are CPU work; keep them off the async workers.
        let state = Arc::clone(&self.0);
        let req = req.into_inner();
        let result = run_blocking(move || state.escrow_split(req, &caller)).await?;
        self.0.record("EscrowSplit", &result);
        Ok(Response::new(result?))
    }

    async fn install_key(
        &self,
        req: Request<pb::InstallKeyRequest>,
    ) -> Result<Response<pb::InstallKeyResponse>, Status> {
        let caller = authorize(&req, &self.0.identity.trust_domain, &[Role::Ceremony])?;
        tracing::info!(caller = %caller, "key installation requested");
        let result = self.0.install_key(req.into_inner(), &caller);
        self.0.record("InstallKey", &result);
        Ok(Response::new(result?))
    }

    #[tracing::instrument(skip_all, fields(ceremony_id))]
    async fn dkg_round1(
        &self,
        req: Request<pb::DkgRound1Request>,
    ) -> Result<Response<pb::Signed>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(self.0.dkg_round1(req.into_inner())?))
    }

    #[tracing::instrument(skip_all, fields(ceremony_id = %req.get_ref().ceremony_id))]
    async fn dkg_round2(
        &self,
        req: Request<pb::DkgRound2Request>,
    ) -> Result<Response<pb::DkgRound2Response>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(self.0.dkg_round2(req.into_inner())?))
    }

    #[tracing::instrument(skip_all, fields(ceremony_id = %req.get_ref().ceremony_id))]
    async fn dkg_round3(
        &self,
        req: Request<pb::DkgRound3Request>,
    ) -> Result<Response<pb::Signed>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(self.0.dkg_round3(req.into_inner())?))
    }

    #[tracing::instrument(skip_all, fields(ceremony_id = %req.get_ref().ceremony_id))]
    async fn dkg_activate(
        &self,
        req: Request<pb::DkgActivateRequest>,
    ) -> Result<Response<pb::InstallKeyResponse>, Status> {
        let caller = self.authorize(&req)?;
        Ok(Response::new(
            self.0.dkg_activate(req.into_inner(), &caller.spiffe_id())?,
        ))
    }

    async fn abort(
        &self,
        req: Request<pb::AbortRequest>,
    ) -> Result<Response<pb::AbortResponse>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(self.0.abort(req.get_ref())))
    }

    #[tracing::instrument(skip_all, fields(ceremony_id = %req.get_ref().ceremony_id))]
    async fn retire_key(
        &self,
        req: Request<pb::RetireKeyRequest>,
    ) -> Result<Response<pb::RetireKeyResponse>, Status> {
        let caller = self.authorize(&req)?;
        Ok(Response::new(
            self.0.retire_key(req.into_inner(), &caller.spiffe_id())?,
        ))
    }

    async fn repair_start(
        &self,
        req: Request<pb::RepairStartRequest>,
    ) -> Result<Response<pb::Signed>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(self.0.repair_start(req.into_inner())?))
    }

    #[tracing::instrument(skip_all, fields(ceremony_id = %req.get_ref().ceremony_id))]
    async fn repair_deltas(
        &self,
        req: Request<pb::RepairDeltasRequest>,
    ) -> Result<Response<pb::RepairDeltasResponse>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(self.0.repair_deltas(req.into_inner())?))
    }

    #[tracing::instrument(skip_all, fields(ceremony_id = %req.get_ref().ceremony_id))]
    async fn repair_sigma(
        &self,
        req: Request<pb::RepairSigmaRequest>,
    ) -> Result<Response<pb::Envelope>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(self.0.repair_sigma(req.into_inner())?))
    }

    #[tracing::instrument(skip_all, fields(ceremony_id = %req.get_ref().ceremony_id))]
    async fn repair_finish(
        &self,
        req: Request<pb::RepairFinishRequest>,
    ) -> Result<Response<pb::InstallKeyResponse>, Status> {
        let caller = self.authorize(&req)?;
        Ok(Response::new(
            self.0
                .repair_finish(req.into_inner(), &caller.spiffe_id())?,
        ))
    }
}

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditService {
    type ReadAuditStream = tokio_stream::wrappers::ReceiverStream<Result<pb::AuditEntry, Status>>;

    async fn read_audit(
        &self,
        req: Request<pb::ReadAuditRequest>,
    ) -> Result<Response<Self::ReadAuditStream>, Status> {
        let caller = authorize(&req, &self.0.identity.trust_domain, &[Role::Auditor])?;
        tracing::info!(caller = %caller, from_seq = req.get_ref().from_seq, "audit log read");
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let from = req.into_inner().from_seq;
        let records = self.0.audit.read_from(from)?;
        // File reads block; stream from a blocking thread with backpressure.
        tokio::task::spawn_blocking(move || {
            for item in records {
                let entry = item
                    .map(|(seq, record)| pb::AuditEntry { seq, record })
                    .map_err(Status::from);
                if tx.blocking_send(entry).is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use quorate_proto::attest::{StatementSigner, StatementVerifier};
    use quorate_proto::identity::Role;
    use quorate_proto::suite::Ciphersuite;

    use super::*;
    use crate::store::Kek;

    const TRUST_DOMAIN: &str = "quorate.test";
    /// A throwaway Ed25519 key for the node's statement signer, for tests only (no
    /// test here signs a ceremony statement).
    const TEST_KEY_PEM: &[u8] = b"-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIMr3AIcF2vOVkgCYTvohppExB+wR+UX98dA71Q5lauRO
-----END PRIVATE KEY-----
";
    /// Stands in for the certificates: loading them only decodes the PEM, and no
    /// test here verifies a statement.
    const TEST_CERT_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----
MAA=
-----END CERTIFICATE-----
";

    /// `node-1`, holding its share of the 2-of-2 Ed25519 key `k1` (under `policy`),
    /// and `node-2`'s share of it (to commit as the other signer).
    fn node_with_key(
        dir: &std::path::Path,
        policy: Option<pb::KeyPolicy>,
    ) -> (NodeState, ParsedKeyPackage) {
        let names = vec!["node-1".to_string(), "node-2".to_string()];
        let ops = Ciphersuite::Ed25519.ops();
        let dealt = ops.split(None, &names, 2).unwrap();
        let manifest = quorate_proto::manifest::encode(
            "k1",
            Ciphersuite::Ed25519,
            2,
            dealt.public_key_package.clone(),
            names
                .iter()
                .map(|n| pb::ManifestParticipant {
                    node_id: n.clone(),
                    region: "r".into(),
                    jurisdiction: "EU".into(),
                })
                .collect(),
            "2026-01-01T00:00:00Z".into(),
            policy,
        );
        let identity = NodeIdentity {
            node_id: "node-1".into(),
            trust_domain: TRUST_DOMAIN.into(),
            region: "r".into(),
            jurisdiction: "EU".into(),
        };
        let kek = Kek::from_hex(&Kek::generate_hex()).unwrap();
        let state = NodeState::new(
            identity,
            KeyStore::open(dir, kek).unwrap(),
            NonceStore::new(10, Duration::from_secs(60)),
            Registry::new(),
            CeremonyKeys {
                signer: StatementSigner::from_pem(TEST_CERT_PEM, TEST_KEY_PEM).unwrap(),
                verifier: StatementVerifier::from_pem(TEST_CERT_PEM, TRUST_DOMAIN).unwrap(),
            },
        )
        .unwrap();
        let mut key_packages = dealt.key_packages.into_iter().map(|(_, kp)| kp);
        let (own, other) = (key_packages.next().unwrap(), key_packages.next().unwrap());
        state
            .install_record(
                KeyRecord {
                    manifest,
                    key_package: own,
                },
                "key_installed",
                "test",
            )
            .unwrap();
        (state, ops.parse_key_package(&other).unwrap())
    }

    /// A round-2 request of `node-1` (commitment `own`) and `node-2`.
    fn sign_request(
        state: &NodeState,
        own: Vec<u8>,
        other: &ParsedKeyPackage,
    ) -> pb::SignShareRequest {
        let key = state.key("k1").unwrap();
        let other_id = key
            .manifest
            .participant("node-2")
            .unwrap()
            .identifier
            .clone();
        let (_, other_commitment) = key.manifest.ciphersuite.ops().commit(other).unwrap();
        api::SignShareRequest {
            key_id: "k1".into(),
            message: b"pay 10 to bob".to_vec(),
            commitments: BTreeMap::from([
                (key.identifier.clone(), own),
                (other_id, other_commitment),
            ]),
            request_id: String::new(),
            client_id: String::new(),
            approval_token: None,
        }
        .to_pb()
    }

    #[test]
    fn a_node_whose_audit_log_failed_spends_and_issues_no_nonce() {
        let dir = tempfile::tempdir().unwrap();
        let (mut state, other) = node_with_key(dir.path(), None);
        let caller = PeerIdentity::new(TRUST_DOMAIN, Role::Coordinator, "coordinator-1").unwrap();
        let mut commitments = commitments(&state, 2);
        assert_eq!(state.outstanding_nonces(), 2);

        // While the log works, a request like the one below spends its nonce.
        let first = sign_request(&state, commitments.remove(0), &other);
        let recorded = state.record_share(first, &caller).unwrap();
        assert!(recorded.answer.is_ok());
        assert_eq!(state.outstanding_nonces(), 1);

        // The disk goes bad: a flush of the log fails.
        state.audit = AuditLog::open_with_sync(
            dir.path(),
            &state.store.db(),
            "node-1",
            Box::new(|_| {}),
            |_: &std::fs::File| Err(std::io::Error::other("EIO")),
        )
        .unwrap();
        state
            .audit
            .append(AuditRecord::default())
            .expect_err("the flush fails");
        let records = state.audit.len();

        let second = sign_request(&state, commitments.remove(0), &other);
        let err = state.record_share(second, &caller).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
        assert_eq!(state.outstanding_nonces(), 1, "the nonce was spent");
        assert_eq!(state.audit.len(), records, "a record was written");
        // Nor does it hand out commitments it could not sign with.
        let err = state
            .commit(pb::CommitRequest {
                key_id: "k1".into(),
                count: 1,
            })
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
        assert_eq!(state.outstanding_nonces(), 1, "a nonce was issued");
    }

    /// Fresh commitments of `node-1` for `k1`.
    fn commitments(state: &NodeState, count: u32) -> Vec<Vec<u8>> {
        state
            .commit(pb::CommitRequest {
                key_id: "k1".into(),
                count,
            })
            .unwrap()
            .commitments
    }

    #[test]
    fn only_requests_that_can_be_signed_count_against_a_clients_rate() {
        let dir = tempfile::tempdir().unwrap();
        let policy = pb::KeyPolicy {
            rate_limit_per_minute: 1,
            ..Default::default()
        };
        let (state, other) = node_with_key(dir.path(), Some(policy));
        let caller = PeerIdentity::new(TRUST_DOMAIN, Role::Coordinator, "coordinator-1").unwrap();

        // Refused twice for a commitment the node does not hold (as after a
        // restart, when the coordinator falls back to two rounds): the one
        // signature this client may make this minute is still there.
        let ops = Ciphersuite::Ed25519.ops();
        for _ in 0..2 {
            let (_, not_issued) = ops.commit(&other).unwrap();
            let request = sign_request(&state, not_issued, &other);
            let err = state.record_share(request, &caller).unwrap_err();
            assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
        }
        let mut commitments = commitments(&state, 3);
        let request = sign_request(&state, commitments.remove(0), &other);
        assert!(state.record_share(request, &caller).unwrap().answer.is_ok());
        // The same message again with a fresh commitment, as in the coordinator's
        // retry with another quorum after a signer failed: the same signature for
        // the client, not charged again.
        let request = sign_request(&state, commitments.remove(0), &other);
        assert!(state.record_share(request, &caller).unwrap().answer.is_ok());

        // Another message is over the limit. Its nonce is spent all the same, so
        // its commitment cannot be replayed once the minute is over.
        let over = commitments.remove(0);
        let mut request = sign_request(&state, over.clone(), &other);
        request.message = b"pay 20 to bob".to_vec();
        let Recorded { pending, answer } = state.record_share(request, &caller).unwrap();
        let err = answer.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
        assert_eq!(state.outstanding_nonces(), 0);
        // Its record accounts for the commitment spent unused.
        let record = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(state.audit.durable(pending))
            .unwrap();
        assert_eq!(record.event, "sign_refused");
        let spent = hex::encode(quorate_proto::sha256(&over));
        assert!(
            record
                .detail
                .contains(&format!("commitment_sha256={spent}")),
            "{}",
            record.detail
        );
    }
}
