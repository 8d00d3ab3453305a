//! The node's state: who it is, the key registry (the keys it holds, kept in step
//! with the sealed store), its nonces, audit log, per-client rate limiter, metrics
//! and drill settings.
//!
//! Used by the signing, escrow and ceremony steps and by the gRPC adapters; it uses
//! none of them. Invariants: every key in the registry passed `activate` (a stored
//! key that no longer does stops the node as a damaged store, and so does a stored
//! record older than the key's last activation in the audit log: [`activations`]);
//! a key is added, replaced or removed in memory only after the store and the audit
//! log hold the change durably, under the registry's write lock, so that two
//! installs of one key id cannot both succeed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use quorate_keys::audit::AuditRecord;
use quorate_transport::attest::StatementSigner;
use quorate_transport::key_attestation;
use quorate_transport::metrics::Registry;
use quorate_transport::ratelimit::RateLimiter;
use quorate_transport::runtime::{Drain, DrainSwitch};
use quorate_wire::pb;

use crate::activations;
use crate::audit::AuditLog;
use crate::checkpoints::Checkpoints;
use crate::config::{AuditSettings, DangerSettings};
use crate::error::NodeError;
use crate::identity::NodeIdentity;
use crate::key::{activate, ActiveKey};
use quorate_transport::intent::IntentVerifier;

use crate::metrics::{self, NodeMetrics};
use crate::nonces::NonceStore;
use crate::store::{KeyRecord, KeyStore};
use crate::witness::Witness;

/// A refresh's new share of a key, staged.
#[derive(Debug)]
pub(crate) struct Staged {
    /// The refresh's setup hash.
    pub setup_hash: [u8; 32],
    /// The new share, checked as any key this node loads.
    pub key: Arc<ActiveKey>,
    record: KeyRecord,
}

/// What this node holds and has promised about refreshes, under one lock so that
/// staging a share and abandoning a refresh exclude each other.
#[derive(Debug, Default)]
struct Staging {
    /// New shares, by key id, stored beside the current ones until every
    /// participant has stored its own (then committed) or the refresh is rolled
    /// back. They sign when a request names their manifest
    /// ([`NodeState::signing_shares`]), so both epochs of a refresh stay usable while
    /// its nodes commit one by one.
    by_key: HashMap<String, Arc<Staged>>,
    /// Setups this node ever staged a share of (and so signed a receipt for):
    /// from the store and the audit log. It never abandons them.
    ever_staged: HashSet<[u8; 32]>,
    /// Setups this node abandoned: from the store and the audit log. It never
    /// stages a share of them.
    abandoned: HashSet<[u8; 32]>,
}

/// The share a signing request uses and, while a refresh is staged, the other
/// share of the key held beside it ([`NodeState::signing_shares`]).
#[derive(Debug)]
pub(crate) struct SigningShares {
    /// The share that signs: of the manifest the request names.
    pub share: Arc<ActiveKey>,
    /// The key's other share on this node (the current one beside a staged one,
    /// or the other way round), if a refresh is staged.
    pub beside: Option<Arc<ActiveKey>>,
}

impl SigningShares {
    /// The policies a request must satisfy: while a node holds two shares of a key
    /// it signs with either only what both manifests allow, so a refresh's new
    /// terms restrict as soon as its share is staged and loosen only once it is
    /// committed, and a refresh rolled back never loosened anything.
    pub fn policies(&self) -> impl Iterator<Item = &quorate_keys::policy::Policy> {
        std::iter::once(&self.share.manifest.policy)
            .chain(self.beside.iter().map(|k| &k.manifest.policy))
    }
}

/// Where this node stands in one refresh of a key.
#[derive(Debug)]
pub(crate) enum RefreshState {
    /// No share of it here.
    None,
    /// Its new share is staged beside the current one.
    Staged(Arc<ActiveKey>),
    /// Its new share is current; the receipts it committed with.
    Committed(Arc<ActiveKey>, Vec<pb::Signed>),
}

/// State shared by the node's handlers.
#[derive(Debug)]
pub struct NodeState {
    pub(crate) identity: NodeIdentity,
    /// Signs this node's attestation of every key it loads or installs.
    attestor: StatementSigner,
    store: KeyStore,
    keys: RwLock<HashMap<String, Arc<ActiveKey>>>,
    /// Each key's last activation or retirement on this node, as its audit log
    /// records it: what an install of a key the node does not hold is checked
    /// against ([`activations::check_install`]). Kept under `keys`' write lock.
    epochs: std::sync::Mutex<HashMap<String, activations::Last>>,
    /// Refreshes in progress on this node. Lock order: `keys`, then `staging`.
    staging: RwLock<Staging>,
    /// Approval tokens an approver revoked, (key id, token id): from the store and
    /// the audit log.
    revoked: RwLock<HashSet<(String, String)>>,
    /// Serializes `RevokeApproval`'s durable work (store, flush, audit record), so
    /// that a token is recorded revoked once, without holding `revoked` (which
    /// every signature with a token reads) across a flush and an fsync.
    revoking: std::sync::Mutex<()>,
    pub(crate) nonces: NonceStore,
    pub(crate) audit: AuditLog,
    /// Signs checkpoints of the audit log with the node's log key.
    pub(crate) checkpoints: Checkpoints,
    /// Witnesses the peers' audit logs: the witness key and what it cosigned.
    pub(crate) witness: Witness,
    pub(crate) rate: RateLimiter,
    pub(crate) metrics: NodeMetrics,
    /// Checks the client's signed intent of every round-2 request.
    pub(crate) intents: IntentVerifier,
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    pub(crate) danger: DangerSettings,
    /// Begun on SIGTERM: new round-2 batches and commitments are refused, and
    /// round-2 streams end once their batches in flight are answered.
    drain: DrainSwitch,
}

impl NodeState {
    /// Loads every stored key, checks it still belongs to this node and attests it
    /// with `attestor` (the node's mTLS key).
    pub fn new(
        identity: NodeIdentity,
        attestor: StatementSigner,
        store: KeyStore,
        nonces: NonceStore,
        intents: IntentVerifier,
        registry: Arc<Registry>,
    ) -> Result<Self, NodeError> {
        Self::open(
            identity,
            attestor,
            store,
            nonces,
            intents,
            registry,
            AuditSettings::default(),
        )
    }

    /// [`NodeState::new`] with the config's `[audit]` settings: a store holding
    /// keys beside an audit log that cannot establish their epochs (missing, empty,
    /// or with a broken hash chain) stops the node (exit 65) unless
    /// `accept_unverified_log` is set, which is recorded.
    pub fn open(
        identity: NodeIdentity,
        attestor: StatementSigner,
        store: KeyStore,
        nonces: NonceStore,
        intents: IntentVerifier,
        registry: Arc<Registry>,
        settings: AuditSettings,
    ) -> Result<Self, NodeError> {
        let on_flush = metrics::audit_flush_observer(&registry);
        let audit = AuditLog::open(store.dir(), &store.db(), &identity.node_id, on_flush)?;
        let origin = quorate_keys::checkpoint::origin(&identity.trust_domain, &identity.node_id);
        let seed = store.audit_log_seed()?;
        let log_key = quorate_keys::checkpoint::LogSigner::from_seed(&origin, &seed)
            .map_err(|e| NodeError::Config(format!("audit log key: {e}")))?;
        let witness = Witness::open(
            &quorate_keys::cosignature::witness_name(&identity.trust_domain, &identity.node_id),
            &crate::witness::witness_seed(&seed),
            &store.db(),
            store.dir(),
        )?;
        drop(seed);
        let checkpoints = Checkpoints::new(origin, log_key);
        // Every stored record is checked against the last activation of its key in
        // the audit log: a record older than that (an old copy of the store written
        // back) stops the node like any other damaged record.
        let from_log = activations::read(&audit)?;
        let (staged_records, stored): (Vec<_>, Vec<_>) = store
            .load_all()?
            .into_iter()
            .partition(|(name, _)| crate::store::parse_staged_name(name).is_some());
        let unverified = from_log.unverified();
        let mut last = from_log.last;
        if unverified.is_some() {
            // What an untrusted log says establishes nothing: not the epochs of
            // stored keys (checked below), nor what later installs are held to.
            last.clear();
        }
        if let (Some(reason), false) = (unverified, stored.is_empty()) {
            let names: Vec<&str> = stored.iter().map(|(id, _)| id.as_str()).collect();
            if !settings.accept_unverified_log {
                return Err(NodeError::Corrupt(format!(
                    "{reason}, so the epoch of stored key(s) {} cannot be established: the \
                     node does not load share records it cannot check against their last \
                     activation (an old copy of the store may have been restored). Restore \
                     the node's audit log, or, once the store is known to be current, start \
                     once with [audit] accept_unverified_log = true, which is recorded \
                     (docs/security.md)",
                    names.join(", ")
                )));
            }
            // Recorded before the keys' own records, so the log says why it starts
            // over (as its first record, when it is new).
            audit.append(AuditRecord {
                event: "audit_log_unverified_accepted".into(),
                caller: identity.node_id.clone(),
                detail: format!(
                    "{reason}; stored keys loaded unchecked: {}",
                    names.join(" ")
                ),
                ..Default::default()
            })?;
            tracing::warn!(%reason, "audit.accept_unverified_log: stored keys loaded without the rollback check");
        }
        let mut keys = HashMap::new();
        let mut to_record = Vec::new();
        for (key_id, record) in stored {
            let key = activate(&identity, &attestor, record)
                .map_err(|e| NodeError::Corrupt(format!("stored key {key_id:?}: {e}")))?;
            let verdict = activations::check_record(
                &key_id,
                &key.manifest.hash,
                key.manifest.generation,
                last.get(&key_id),
            )?;
            if verdict == activations::Verdict::Record {
                to_record.push((key_id.clone(), key.manifest.hash, key.manifest.generation));
            }
            keys.insert(key_id, Arc::new(key));
        }
        for (key_id, hash, generation) in to_record {
            let recorded = audit.append(AuditRecord {
                event: "key_loaded".into(),
                key_id: key_id.clone(),
                caller: identity.node_id.clone(),
                detail: activations::detail(&hash, generation),
                ..Default::default()
            })?;
            last.insert(
                key_id.clone(),
                activations::Last::Active {
                    manifest_hash: hash,
                    generation: Some(generation),
                    seq: recorded.seq,
                },
            );
            tracing::info!(key_id = %key_id, manifest_sha256 = %hex::encode(hash), generation, "key's epoch recorded in the audit log");
        }
        // Only now, with every record checked, are records sealed before epochs
        // were bound sealed again with theirs.
        let upgraded = store.upgrade_records()?;
        if upgraded > 0 {
            tracing::info!(
                records = upgraded,
                "key records sealed again, bound to their epochs"
            );
        }
        // Staged shares are newer than anything activated: they are checked as this
        // node's shares, not against the log (their activation is their commit).
        let mut staging = Staging {
            ever_staged: from_log.staged_setups.clone(),
            abandoned: from_log.abandoned_setups.clone(),
            ..Staging::default()
        };
        for (name, record) in staged_records {
            let Some((key_id, setup_hash)) = crate::store::parse_staged_name(&name) else {
                continue;
            };
            if staging.by_key.contains_key(key_id) {
                return Err(NodeError::Corrupt(format!(
                    "two refreshes of key {key_id:?} are staged in the store; at most one can be"
                )));
            }
            if staging.abandoned.contains(&setup_hash) || store.is_abandoned(&setup_hash)? {
                return Err(NodeError::Corrupt(format!(
                    "a share of refresh {} of key {key_id:?} is staged, but this node abandoned \
                     that refresh (an old copy of the store?)",
                    hex::encode(setup_hash)
                )));
            }
            let key = activate(&identity, &attestor, record.clone())
                .map_err(|e| NodeError::Corrupt(format!("staged share {name:?}: {e}")))?;
            tracing::info!(key_id = %key_id, setup_hash = %hex::encode(setup_hash), "a refresh's new share is staged, not yet committed");
            staging.ever_staged.insert(setup_hash);
            staging.by_key.insert(
                key_id.to_string(),
                Arc::new(Staged {
                    setup_hash,
                    key: Arc::new(key),
                    record,
                }),
            );
        }
        let mut revoked: HashSet<(String, String)> = store.revocations()?.into_iter().collect();
        revoked.extend(from_log.revoked);
        Ok(Self {
            identity,
            attestor,
            store,
            keys: RwLock::new(keys),
            epochs: std::sync::Mutex::new(last),
            staging: RwLock::new(staging),
            revoked: RwLock::new(revoked),
            revoking: std::sync::Mutex::new(()),
            nonces,
            audit,
            checkpoints,
            witness,
            rate: RateLimiter::new(),
            metrics: NodeMetrics::new(&registry),
            intents,
            danger: DangerSettings::default(),
            drain: quorate_transport::runtime::drain().0,
        })
    }

    /// The latest signed checkpoint of the audit log (signing a new one if the
    /// durable log has grown since), and its tree size.
    pub fn audit_checkpoint(&self) -> (u64, String) {
        self.checkpoints.latest(&self.audit)
    }

    /// The node's statement, under its current certificate, that its audit log key
    /// is its own.
    pub fn audit_log_key_attestation(&self) -> Result<pb::Signed, NodeError> {
        self.checkpoints.attestation(&self.attestor)
    }

    /// The node's statement, under its current certificate, that its witness key is
    /// its own.
    pub fn witness_key_attestation(&self) -> Result<pb::Signed, NodeError> {
        self.witness.attestation(&self.attestor)
    }

    /// Names the peers this node witnesses (served by `GetWitnessed`).
    pub fn with_witnessed(mut self, peers: Vec<String>) -> Self {
        self.witness.set_peers(peers);
        self
    }

    /// Turns on fault injection (drills only).
    pub fn with_danger(mut self, danger: DangerSettings) -> Self {
        if cfg!(feature = "fault-injection") && danger.corrupt_signature_shares {
            tracing::warn!("DANGER: this node answers round 2 with corrupt signature shares (drill setting danger.corrupt_signature_shares)");
        }
        self.danger = danger;
        self
    }

    /// Signs every key's attestation again with the node's current certificate
    /// (called after the certificate was renewed). A key that cannot be attested
    /// keeps its previous attestation, which stays valid until the previous
    /// certificate expires; the failure is logged.
    pub fn reattest_keys(&self) {
        let keys: Vec<Arc<ActiveKey>> = self.read_keys().values().cloned().collect();
        for key in keys {
            if let Err(e) = key.attest(&self.identity, &self.attestor) {
                tracing::error!(key_id = %key.manifest.key_id, "{e}");
            }
        }
        tracing::info!(
            keys = self.key_count(),
            "key attestations signed again with the renewed certificate"
        );
    }

    /// Updates the gauges that are read rather than counted.
    pub fn refresh_gauges(&self, registry: &Registry) {
        metrics::set_gauges(
            registry,
            metrics::GaugeReadings {
                nonces: self.nonces.len(),
                keys: self.key_count(),
                audit_records: self.audit.len(),
                audit_broken: self.audit.check_writable().is_err(),
            },
        );
    }

    /// Begins the node's shutdown drain (see [`crate::server`]).
    pub fn begin_drain(&self) {
        self.drain.begin();
    }

    /// Whether the node is shutting down, and a future that resolves once it is.
    pub fn drain(&self) -> Drain {
        self.drain.drain()
    }

    /// The node's audit log.
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

    /// The key `key_id`, or [`NodeError::UnknownKey`].
    pub(crate) fn key(&self, key_id: &str) -> Result<Arc<ActiveKey>, NodeError> {
        self.read_keys()
            .get(key_id)
            .cloned()
            .ok_or_else(|| NodeError::UnknownKey(key_id.to_string()))
    }

    /// Every key held, as `ListNodeKeys` lists them.
    pub(crate) fn node_keys(&self) -> Vec<pb::NodeKey> {
        self.read_keys().values().map(|k| k.node_key()).collect()
    }

    /// Every share a refresh staged here, as `ListNodeKeys` lists them: each with
    /// this node's statement of kind "staged-key-attestation", signed now (shares
    /// are staged only while a refresh runs), which coordinators count to sign
    /// with it and clients never accept as the key's.
    pub(crate) fn staged_node_keys(&self) -> Vec<pb::NodeKey> {
        let staging = self.staging.read().unwrap_or_else(|p| p.into_inner());
        staging
            .by_key
            .values()
            .filter_map(|st| {
                let m = &st.key.manifest;
                match key_attestation::sign_staged(
                    &self.attestor,
                    &self.identity.node_id,
                    &m.key_id,
                    &m.hash,
                ) {
                    Ok(attestation) => Some(pb::NodeKey {
                        manifest: m.encoded.clone(),
                        attestation: Some(attestation),
                    }),
                    Err(e) => {
                        tracing::warn!(key_id = %m.key_id, "cannot attest the staged share; not listed: {e}");
                        None
                    }
                }
            })
            .collect()
    }

    /// The shares of `key_id` a request under the manifest hashing to
    /// `manifest_hash` works with: the one to sign with (the current share, or one a
    /// refresh staged here: both epochs of a refresh sign until every node has
    /// committed; `None` asks for the current one), and the other share held
    /// beside it, if a refresh is staged, whose policy binds the request too
    /// ([`SigningShares::policies`]). Read under the keys' lock and then the
    /// staging lock, the order a commit takes them in, so a commit is seen whole.
    pub(crate) fn signing_shares(
        &self,
        key_id: &str,
        manifest_hash: Option<&[u8; 32]>,
    ) -> Result<SigningShares, NodeError> {
        let keys = self.read_keys();
        let current = keys
            .get(key_id)
            .cloned()
            .ok_or_else(|| NodeError::UnknownKey(key_id.to_string()))?;
        let staging = self.staging.read().unwrap_or_else(|p| p.into_inner());
        let staged = staging.by_key.get(key_id).map(|st| Arc::clone(&st.key));
        drop(staging);
        drop(keys);
        match (manifest_hash, staged) {
            (None, staged) => Ok(SigningShares {
                share: current,
                beside: staged,
            }),
            (Some(hash), staged) if &current.manifest.hash == hash => Ok(SigningShares {
                share: current,
                beside: staged,
            }),
            (Some(hash), Some(staged)) if &staged.manifest.hash == hash => Ok(SigningShares {
                share: staged,
                beside: Some(current),
            }),
            (Some(hash), _) => Err(NodeError::ManifestNotHeld {
                key_id: key_id.to_string(),
                manifest_sha256: hex::encode(hash),
            }),
        }
    }

    /// Validates and durably stores a new key; `event` names the ceremony step in
    /// the audit log.
    pub(crate) fn install_record(
        &self,
        record: KeyRecord,
        event: &str,
        caller: &str,
    ) -> Result<pb::InstallKeyResponse, NodeError> {
        let key = self.activated(&record)?;
        self.install_activated(key, record, event, caller)
    }

    /// `record` as a key of this node: its manifest decoded and checked, its share
    /// this node's share of it, attested.
    fn activated(&self, record: &KeyRecord) -> Result<ActiveKey, NodeError> {
        activate(&self.identity, &self.attestor, record.clone())
            .map_err(NodeError::KeyNotForThisNode)
    }

    /// Whether `manifest` may be installed beside `keys` given this node's install
    /// history `epochs`: a key it does not hold, at an epoch its audit log does not
    /// refuse ([`activations::check_install`]).
    fn admissible(
        keys: &HashMap<String, Arc<ActiveKey>>,
        epochs: &HashMap<String, activations::Last>,
        manifest: &quorate_keys::manifest::Manifest,
    ) -> Result<(), NodeError> {
        if keys.contains_key(&manifest.key_id) {
            return Err(NodeError::KeyExists(manifest.key_id.clone()));
        }
        activations::check_install(
            &manifest.key_id,
            &manifest.hash,
            manifest.generation,
            epochs.get(&manifest.key_id),
        )
    }

    /// Durably stores `key` (activated from `record`, [`NodeState::check_installable`]),
    /// checking again under the lock that it may be installed.
    pub(crate) fn install_activated(
        &self,
        key: ActiveKey,
        record: KeyRecord,
        event: &str,
        caller: &str,
    ) -> Result<pb::InstallKeyResponse, NodeError> {
        let key_id = key.manifest.key_id.clone();
        let hash = key.manifest.hash;
        let generation = key.manifest.generation;
        // Hold the write lock across the durable insert so two installs of one key id
        // cannot both succeed.
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let mut epochs = self.epochs.lock().unwrap_or_else(|p| p.into_inner());
        Self::admissible(&keys, &epochs, &key.manifest)?;
        self.store.insert_new(&key_id, &record)?;
        let recorded = self.audit.append(AuditRecord {
            event: event.into(),
            key_id: key_id.clone(),
            caller: caller.into(),
            detail: activations::detail(&hash, generation),
            ..Default::default()
        })?;
        epochs.insert(
            key_id.clone(),
            activations::Last::Active {
                manifest_hash: hash,
                generation: Some(generation),
                seq: recorded.seq,
            },
        );
        keys.insert(key_id.clone(), Arc::new(key));
        tracing::info!(key_id = %key_id, manifest_sha256 = %hex::encode(hash), "key installed");
        Ok(pb::InstallKeyResponse {
            manifest_hash: hash.to_vec(),
            receipt: None,
        })
    }

    /// Checks, before a DKG, that this node's audit log records nothing of
    /// `key_id`: a new key's manifest would be refused at activation
    /// ([`activations::check_install`]) under an id this node retired or holds an
    /// epoch of.
    pub(crate) fn check_key_id_unused(&self, key_id: &str) -> Result<(), NodeError> {
        let epochs = self.epochs.lock().unwrap_or_else(|p| p.into_inner());
        let (what, seq) = match epochs.get(key_id) {
            None => return Ok(()),
            Some(activations::Last::Active { seq, .. }) => ("an activation of that key", seq),
            Some(activations::Last::Retired { seq }) => ("that key's share retired", seq),
        };
        Err(NodeError::KeyVersionMismatch(format!(
            "key id {key_id:?} is taken on {}: its audit log records {what} (record {seq}); a \
             new key needs a new id",
            self.identity.node_id
        )))
    }

    /// Checks that `record` could be installed now, before a governed install
    /// records its authorization (so that none is recorded for what cannot be
    /// installed anyway): a share of its manifest for this node, of a key it does
    /// not hold, at an epoch its audit log does not refuse. Returns the key to
    /// install ([`NodeState::install_activated`] checks again under its lock).
    pub(crate) fn check_installable(&self, record: &KeyRecord) -> Result<ActiveKey, NodeError> {
        let key = self.activated(record)?;
        Self::admissible(
            &self.read_keys(),
            &self.epochs.lock().unwrap_or_else(|p| p.into_inner()),
            &key.manifest,
        )?;
        Ok(key)
    }

    /// Stages a refresh's new share of a key whose current manifest hash is
    /// `prior_manifest_hash`, at exactly its next generation: durable beside the
    /// current share, which keeps signing until [`NodeState::commit_refresh`].
    pub(crate) fn stage_refresh(
        &self,
        record: KeyRecord,
        setup_hash: [u8; 32],
        prior_manifest_hash: &[u8],
        caller: &str,
    ) -> Result<pb::InstallKeyResponse, NodeError> {
        let key = activate(&self.identity, &self.attestor, record.clone())
            .map_err(NodeError::KeyNotForThisNode)?;
        let key_id = key.manifest.key_id.clone();
        let hash = key.manifest.hash;
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        match keys.get(&key_id) {
            Some(old) if old.manifest.hash.as_slice() == prior_manifest_hash => {
                key.manifest
                    .check_successor(&old.manifest)
                    .map_err(|e| NodeError::CeremonyRejected(e.to_string()))?;
            }
            _ => {
                return Err(NodeError::KeyVersionMismatch(format!(
                    "key {key_id} changed on this node during the ceremony"
                )))
            }
        }
        let mut staging = self.staging.write().unwrap_or_else(|p| p.into_inner());
        if staging.abandoned.contains(&setup_hash) {
            return Err(NodeError::CeremonyMismatch(format!(
                "{} abandoned this refresh of key {key_id}; it stores no share of it",
                self.identity.node_id
            )));
        }
        if let Some(held) = staging.by_key.get(&key_id) {
            // Staging the same share again answers the same; anything else would
            // make the receipt this node signed for the staged share a lie.
            if held.setup_hash == setup_hash && held.key.manifest.hash == hash {
                return Ok(pb::InstallKeyResponse {
                    manifest_hash: hash.to_vec(),
                    receipt: None,
                });
            }
            return Err(NodeError::KeyVersionMismatch(format!(
                "key {key_id} has a refresh staged on {} (setup {}); finish or roll it back first",
                self.identity.node_id,
                hex::encode(held.setup_hash)
            )));
        }
        self.store.stage(&key_id, &setup_hash, &record)?;
        let audited = self.audit.append(AuditRecord {
            event: activations::STAGED.into(),
            key_id: key_id.clone(),
            caller: caller.into(),
            detail: format!(
                "manifest={} generation={} setup={}",
                hex::encode(hash),
                key.manifest.generation,
                hex::encode(setup_hash)
            ),
            ..Default::default()
        });
        if let Err(e) = audited {
            // Not staged unless recorded: the log is what keeps this node from
            // abandoning a refresh it signed a receipt for.
            self.store.drop_staged(&key_id, &setup_hash)?;
            return Err(e);
        }
        staging.ever_staged.insert(setup_hash);
        staging.by_key.insert(
            key_id.clone(),
            Arc::new(Staged {
                setup_hash,
                key: Arc::new(key),
                record,
            }),
        );
        tracing::info!(key_id = %key_id, manifest_sha256 = %hex::encode(hash), "refreshed share staged");
        Ok(pb::InstallKeyResponse {
            manifest_hash: hash.to_vec(),
            receipt: None,
        })
    }

    /// Makes the share staged by the refresh `setup_hash` (of manifest
    /// `manifest_hash`) current and deletes the old one: the caller has checked
    /// that every participant stored its own. Nothing to do if it is current
    /// already.
    pub(crate) fn commit_refresh(
        &self,
        key_id: &str,
        setup_hash: &[u8; 32],
        manifest_hash: &[u8; 32],
        receipts: &[pb::Signed],
        caller: &str,
    ) -> Result<(), NodeError> {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let current = keys.get(key_id).cloned();
        if current
            .as_ref()
            .is_some_and(|k| &k.manifest.hash == manifest_hash)
        {
            return Ok(());
        }
        let mut staging = self.staging.write().unwrap_or_else(|p| p.into_inner());
        let st = staging
            .by_key
            .get(key_id)
            .filter(|s| &s.setup_hash == setup_hash && &s.key.manifest.hash == manifest_hash)
            .cloned()
            .ok_or_else(|| {
                NodeError::CeremonyMismatch(format!(
                    "no share of this refresh of key {key_id} is staged on this node"
                ))
            })?;
        let old = current.ok_or_else(|| NodeError::UnknownKey(key_id.into()))?;
        st.key
            .manifest
            .check_successor(&old.manifest)
            .map_err(|e| NodeError::CeremonyRejected(e.to_string()))?;
        self.store
            .commit_staged(key_id, setup_hash, &st.record, receipts)?;
        let recorded = self.audit.append(AuditRecord {
            event: "key_refreshed".into(),
            key_id: key_id.into(),
            caller: caller.into(),
            detail: activations::detail(manifest_hash, st.key.manifest.generation),
            ..Default::default()
        })?;
        self.epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                key_id.to_string(),
                activations::Last::Active {
                    manifest_hash: *manifest_hash,
                    generation: Some(st.key.manifest.generation),
                    seq: recorded.seq,
                },
            );
        keys.insert(key_id.to_string(), Arc::clone(&st.key));
        staging.by_key.remove(key_id);
        tracing::info!(key_id = %key_id, manifest_sha256 = %hex::encode(manifest_hash), "refresh committed: the new share is current, the old one deleted");
        Ok(())
    }

    /// Drops the share the refresh `setup_hash` staged (a rolled-back refresh);
    /// false if there was none. The current share is untouched.
    pub(crate) fn rollback_refresh(
        &self,
        key_id: &str,
        setup_hash: &[u8; 32],
        caller: &str,
    ) -> Result<bool, NodeError> {
        let mut staging = self.staging.write().unwrap_or_else(|p| p.into_inner());
        if staging
            .by_key
            .get(key_id)
            .is_none_or(|s| &s.setup_hash != setup_hash)
        {
            return Ok(false);
        }
        self.store.drop_staged(key_id, setup_hash)?;
        self.audit.append(AuditRecord {
            event: "key_refresh_rolled_back".into(),
            key_id: key_id.into(),
            caller: caller.into(),
            detail: format!("setup={}", hex::encode(setup_hash)),
            ..Default::default()
        })?;
        staging.by_key.remove(key_id);
        tracing::warn!(key_id = %key_id, setup_hash = %hex::encode(setup_hash), "refresh rolled back: staged share dropped");
        Ok(true)
    }

    /// Where this node stands in the refresh `setup_hash` of `key_id`.
    pub(crate) fn refresh_state(
        &self,
        key_id: &str,
        setup_hash: &[u8; 32],
    ) -> Result<RefreshState, NodeError> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let staging = self.staging.read().unwrap_or_else(|p| p.into_inner());
        if let Some(st) = staging
            .by_key
            .get(key_id)
            .filter(|s| &s.setup_hash == setup_hash)
        {
            return Ok(RefreshState::Staged(Arc::clone(&st.key)));
        }
        if let (Some(committed), Some(current)) =
            (self.store.committed_refresh(key_id)?, keys.get(key_id))
        {
            if &committed.setup_hash == setup_hash
                && current.manifest.hash == committed.manifest_hash
            {
                return Ok(RefreshState::Committed(
                    Arc::clone(current),
                    committed.receipts,
                ));
            }
        }
        Ok(RefreshState::None)
    }

    /// Why a refresh `setup_hash` of `key_id` may not start on this node, if it
    /// may not: a share of it is staged or committed here already (resume it, do
    /// not run it again), this node abandoned it, or another refresh is staged.
    pub(crate) fn refresh_may_start(
        &self,
        key_id: &str,
        setup_hash: &[u8; 32],
    ) -> Result<(), NodeError> {
        if !matches!(self.refresh_state(key_id, setup_hash)?, RefreshState::None) {
            return Err(NodeError::KeyVersionMismatch(format!(
                "{} holds its share of this refresh of key {key_id} already; run the same \
                 plan again to finish it, not its rounds",
                self.identity.node_id
            )));
        }
        let staging = self.staging.read().unwrap_or_else(|p| p.into_inner());
        if staging.abandoned.contains(setup_hash) {
            return Err(NodeError::CeremonyMismatch(format!(
                "{} abandoned this refresh (it was rolled back); plan another",
                self.identity.node_id
            )));
        }
        if let Some(held) = staging.by_key.get(key_id) {
            return Err(NodeError::KeyVersionMismatch(format!(
                "key {key_id} has another refresh staged on {} (setup {}); finish or roll it back first",
                self.identity.node_id,
                hex::encode(held.setup_hash)
            )));
        }
        Ok(())
    }

    /// Whether a refresh of `key_id` is staged here (escrow and repair wait for it
    /// to be committed or rolled back: they would act on a share about to go).
    pub(crate) fn refresh_staged(&self, key_id: &str) -> bool {
        self.staging
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_key
            .contains_key(key_id)
    }

    /// Promises, durably (store and audit log), that this node will never store a
    /// share of the refresh `setup_hash` of `key_id` (whose current manifest it must
    /// be about): refused if it ever staged one (it signed a receipt) or the key
    /// moved on. Under the staging lock, so no share of it is staged meanwhile.
    pub(crate) fn abandon_refresh(
        &self,
        key_id: &str,
        setup_hash: &[u8; 32],
        manifest_hash: &[u8],
        caller: &str,
    ) -> Result<(), NodeError> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let mut staging = self.staging.write().unwrap_or_else(|p| p.into_inner());
        let current = keys
            .get(key_id)
            .ok_or_else(|| NodeError::UnknownKey(key_id.into()))?;
        if current.manifest.hash.as_slice() != manifest_hash {
            return Err(NodeError::KeyVersionMismatch(format!(
                "key {key_id} on {} is no longer the one this refresh is about",
                self.identity.node_id
            )));
        }
        if staging.ever_staged.contains(setup_hash)
            || staging
                .by_key
                .get(key_id)
                .is_some_and(|s| &s.setup_hash == setup_hash)
        {
            return Err(NodeError::KeyVersionMismatch(format!(
                "{} stored its share of this refresh (and signed a receipt for it); it can be \
                 committed, not abandoned",
                self.identity.node_id
            )));
        }
        if staging.abandoned.contains(setup_hash) {
            return Ok(());
        }
        self.store.mark_abandoned(setup_hash)?;
        self.audit.append(AuditRecord {
            event: activations::ABANDONED.into(),
            key_id: key_id.into(),
            caller: caller.into(),
            detail: format!("setup={}", hex::encode(setup_hash)),
            ..Default::default()
        })?;
        staging.abandoned.insert(*setup_hash);
        Ok(())
    }

    /// Whether an approver revoked approval token `token_id` of `key_id`.
    pub(crate) fn is_revoked(&self, key_id: &str, token_id: &str) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(key_id.to_string(), token_id.to_string()))
    }

    /// `RevokeApproval`: verifies `revocation` against the policy of the key it
    /// names (one approver the policy lists must have signed it, strict Ed25519),
    /// stores it durably and records it; from then on the token is refused. A
    /// revocation that does not verify is refused (`PERMISSION_DENIED`) and
    /// recorded: it would let whoever reaches the node deny an approved failover.
    pub(crate) fn revoke_approval(
        &self,
        revocation: &[u8],
        caller: &str,
    ) -> Result<pb::RevokeApprovalResponse, NodeError> {
        use quorate_keys::revocation::{self, RevocationError};
        let key_id = revocation::read_unverified(revocation)
            .map_err(|e| NodeError::MalformedRequest(e.to_string()))?
            .key_id;
        quorate_wire::validate_key_id(&key_id).map_err(NodeError::MalformedRequest)?;
        // While a refresh is staged, an approver of either manifest may revoke:
        // either one's signatures count toward tokens here until the refresh is
        // committed or rolled back.
        let held = self.signing_shares(&key_id, None)?;
        let approvers: Vec<[u8; 32]> = held
            .policies()
            .flat_map(|p| p.approvers.iter().copied())
            .collect();
        let verified = match revocation::verify(revocation, &key_id, &approvers) {
            Ok(v) => v,
            Err(e @ RevocationError::Malformed(_)) => {
                return Err(NodeError::MalformedRequest(e.to_string()))
            }
            Err(e) => {
                let refused = NodeError::RevocationRefused(e.to_string());
                self.audit.append(AuditRecord {
                    event: "revocation_refused".into(),
                    key_id,
                    caller: caller.into(),
                    detail: bounded(refused.to_string(), MAX_REFUSAL_DETAIL),
                    ..Default::default()
                })?;
                return Err(refused);
            }
        };
        let token_id = verified.revocation.token_id;
        let _revoking = self.revoking.lock().unwrap_or_else(|p| p.into_inner());
        let newly_stored = self.store.revoke_approval(&key_id, &token_id, revocation)?;
        let entry = (key_id.clone(), token_id.clone());
        if !newly_stored && self.is_revoked(&key_id, &token_id) {
            return Ok(pb::RevokeApprovalResponse {
                newly_revoked: false,
            });
        }
        self.audit.append(AuditRecord {
            event: activations::REVOKED.into(),
            key_id: key_id.clone(),
            approval_token_id: token_id.clone(),
            caller: caller.into(),
            detail: format!(
                "approver={} revoked_at={}",
                hex::encode(verified.approver),
                verified.revocation.revoked_at
            ),
            ..Default::default()
        })?;
        self.revoked
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(entry);
        tracing::info!(key_id = %key_id, approval_token = %token_id, "approval token revoked");
        Ok(pb::RevokeApprovalResponse {
            newly_revoked: true,
        })
    }

    /// Deletes a key durably, if its manifest is still `expected_manifest_hash`
    /// (checked under the lock: a refresh that changed the key meanwhile is not
    /// what was authorized to be deleted).
    pub(crate) fn remove_key(
        &self,
        key_id: &str,
        expected_manifest_hash: &[u8],
        caller: &str,
    ) -> Result<(), NodeError> {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        match keys.get(key_id) {
            Some(key) if key.manifest.hash.as_slice() == expected_manifest_hash => {}
            Some(_) => {
                return Err(NodeError::KeyVersionMismatch(format!(
                    "key {key_id} changed on this node; nothing retired"
                )))
            }
            None => return Err(NodeError::UnknownKey(key_id.into())),
        }
        // A share of a refresh staged here goes with the key.
        let mut staging = self.staging.write().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = staging.by_key.remove(key_id) {
            self.store.drop_staged(key_id, &held.setup_hash)?;
        }
        drop(staging);
        self.store.remove(key_id)?;
        let recorded = self.audit.append(AuditRecord {
            event: "key_retired".into(),
            key_id: key_id.into(),
            caller: caller.into(),
            ..Default::default()
        })?;
        self.epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                key_id.into(),
                activations::Last::Retired { seq: recorded.seq },
            );
        keys.remove(key_id);
        Ok(())
    }

    /// The sealed store (tests reopen the audit log on its database).
    #[cfg(test)]
    pub(crate) fn store(&self) -> &KeyStore {
        &self.store
    }
}

/// Most bytes of a refusal's reason kept in its audit record (a refused
/// revocation, a refused governed operation): the reason quotes what the caller
/// sent.
pub(crate) const MAX_REFUSAL_DETAIL: usize = 512;

/// `text` cut to at most `max` bytes, on a character boundary, marked when cut.
pub(crate) fn bounded(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use prost::Message;
    use quorate_frost::{Ciphersuite, SecretKeyPackage};
    use quorate_keys::manifest::{self, Manifest};
    use quorate_transport::attest::StatementVerifier;
    use quorate_transport::test_ca;

    use super::*;

    const TRUST_DOMAIN: &str = "quorate.test";

    /// `node-1` holding its share of the 2-of-2 key `k1` at generation 0; returns
    /// the node, its key package and the generation-0 manifest.
    /// `node-1` opened on the store in `dir`.
    fn open_state(
        dir: &std::path::Path,
        kek: &str,
        settings: AuditSettings,
    ) -> Result<NodeState, NodeError> {
        let ca = test_ca::new_ca("test CA");
        NodeState::open(
            NodeIdentity {
                node_id: "node-1".into(),
                trust_domain: TRUST_DOMAIN.into(),
                region: "r".into(),
                jurisdiction: "EU".into(),
            },
            test_ca::signer(&ca, "node", "node-1"),
            KeyStore::open(dir, crate::store::Kek::from_hex(kek).unwrap()).unwrap(),
            NonceStore::new(10, Duration::from_secs(60)),
            IntentVerifier::new(
                StatementVerifier::from_pem(ca.pem.as_bytes(), TRUST_DOMAIN).unwrap(),
            ),
            Registry::new(),
            settings,
        )
    }

    fn node_with_key(dir: &std::path::Path, kek: &str) -> (NodeState, SecretKeyPackage, Manifest) {
        let names = vec!["node-1".to_string(), "node-2".to_string()];
        let dealt = Ciphersuite::Ed25519.ops().split(None, &names, 2).unwrap();
        let encoded = manifest::encode(
            "k1",
            Ciphersuite::Ed25519,
            2,
            dealt.public_key_package,
            names
                .iter()
                .map(|n| pb::ManifestParticipant {
                    node_id: n.clone(),
                    region: "r".into(),
                    jurisdiction: "EU".into(),
                })
                .collect(),
            "2026-01-01T00:00:00Z".into(),
            None,
        );
        let state = open_state(dir, kek, AuditSettings::default()).unwrap();
        let own = dealt.key_packages.into_iter().next().unwrap().1;
        state
            .install_record(
                KeyRecord {
                    manifest: encoded.clone(),
                    key_package: own.clone(),
                },
                "key_installed",
                "test",
            )
            .unwrap();
        (state, own, Manifest::decode(&encoded).unwrap())
    }

    /// `m` re-encoded at `generation`, with another creation time so that even
    /// generation 0 gives other bytes.
    fn at_generation(m: &Manifest, generation: u64) -> Vec<u8> {
        let mut pb = pb::KeyManifest::decode(m.encoded.as_slice()).unwrap();
        pb.generation = generation;
        pb.created_at = "2026-02-02T00:00:00Z".into();
        pb.encode_to_vec()
    }

    #[test]
    fn no_install_or_dkg_takes_back_a_key_this_node_retired_and_a_recovery_is_an_activation() {
        let dir = tempfile::tempdir().unwrap();
        let kek = crate::store::Kek::generate_hex();
        let (state, own, m0) = node_with_key(dir.path(), &kek);
        let record = || KeyRecord {
            manifest: m0.encoded.clone(),
            key_package: own.clone(),
        };
        state.remove_key("k1", &m0.hash, "test").unwrap();
        // A DKG of a new key under that id is refused before its first round.
        let err = state.check_key_id_unused("k1").unwrap_err();
        assert!(err.to_string().contains("retired"), "{err}");
        state.check_key_id_unused("k2").unwrap();
        // Installed again, the record would stop the node at its next start.
        for _ in 0..2 {
            let err = state
                .install_record(record(), "key_installed", "test")
                .unwrap_err();
            assert!(matches!(err, NodeError::KeyVersionMismatch(_)), "{err}");
            assert!(err.to_string().contains("retired"), "{err}");
        }
        // The same after a restart, from the log.
        drop(state);
        let state = open_state(dir.path(), &kek, AuditSettings::default()).unwrap();
        let err = state
            .install_record(record(), "key_recovered", "test")
            .unwrap_err();
        assert!(matches!(err, NodeError::KeyVersionMismatch(_)), "{err}");

        // A recovered share's epoch is recorded like any other activation.
        let dir = tempfile::tempdir().unwrap();
        let state = open_state(dir.path(), &kek, AuditSettings::default()).unwrap();
        let m1 = at_generation(&m0, 1);
        state
            .install_record(
                KeyRecord {
                    manifest: m1.clone(),
                    key_package: own.clone(),
                },
                "key_recovered",
                "test",
            )
            .unwrap();
        let from_log = activations::read(&state.audit).unwrap();
        assert_eq!(
            from_log.last.get("k1"),
            Some(&activations::Last::Active {
                manifest_hash: quorate_wire::sha256(&m1),
                generation: Some(1),
                seq: 0,
            })
        );
    }

    #[test]
    fn a_refusal_detail_is_cut_to_its_bound_on_a_character_boundary() {
        assert_eq!(bounded("short".into(), 10), "short");
        let long = "é".repeat(MAX_REFUSAL_DETAIL);
        let cut = bounded(long, MAX_REFUSAL_DETAIL);
        assert!(cut.len() <= MAX_REFUSAL_DETAIL + 3, "{}", cut.len());
        assert!(cut.ends_with("..."));
    }

    /// The lines of `node-1`'s audit log in `dir`, edited by `edit`.
    fn edit_log(dir: &std::path::Path, edit: impl FnOnce(&mut Vec<String>)) {
        let path = crate::audit::log_path(dir);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        edit(&mut lines);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn an_activation_edited_in_place_stops_the_node_naming_the_chain_break() {
        let kek = crate::store::Kek::generate_hex();
        let edits: [fn(&mut String); 3] = [
            |l| *l = l.replace("manifest_sha256=", "manifest_sha256=00"),
            |l| *l = l.replace("\"key_installed\"", "\"key_installer\""),
            |l| l.truncate(l.len() / 2),
        ];
        for edit in edits {
            let dir = tempfile::tempdir().unwrap();
            let (state, _, _) = node_with_key(dir.path(), &kek);
            // A later record, so that the edited one is not the log's tail.
            state
                .audit
                .append(AuditRecord {
                    event: "sign_share".into(),
                    key_id: "k1".into(),
                    ..Default::default()
                })
                .unwrap();
            drop(state);
            edit_log(dir.path(), |lines| {
                let at = lines
                    .iter()
                    .position(|l| l.contains("key_installed"))
                    .unwrap();
                edit(&mut lines[at]);
            });
            let err = open_state(dir.path(), &kek, AuditSettings::default()).unwrap_err();
            assert_eq!(err.exit_code(), 65, "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains("audit chain broken at record")
                    && msg.contains("k1")
                    && msg.contains("accept_unverified_log"),
                "{msg}"
            );
        }
    }

    #[test]
    fn a_missing_log_stops_a_node_with_keys_unless_accepted_which_is_recorded_first() {
        let kek = crate::store::Kek::generate_hex();
        let dir = tempfile::tempdir().unwrap();
        drop(node_with_key(dir.path(), &kek));
        std::fs::remove_file(crate::audit::log_path(dir.path())).unwrap();
        let err = open_state(dir.path(), &kek, AuditSettings::default()).unwrap_err();
        assert_eq!(err.exit_code(), 65, "{err}");
        assert!(err.to_string().contains("missing or empty"), "{err}");
        let state = open_state(
            dir.path(),
            &kek,
            AuditSettings {
                accept_unverified_log: true,
            },
        )
        .unwrap();
        let first: AuditRecord =
            serde_json::from_slice(&state.audit.read_from(0).unwrap().next().unwrap().unwrap().1)
                .unwrap();
        assert_eq!(first.event, "audit_log_unverified_accepted");
        assert!(first.detail.contains("k1"), "{}", first.detail);
        drop(state);
        // The new log records the key's activation: the next start checks again.
        open_state(dir.path(), &kek, AuditSettings::default()).unwrap();
    }

    #[test]
    fn both_epochs_of_a_staged_refresh_sign_by_manifest_and_the_staged_one_is_listed_apart() {
        use prost::Message;
        let dir = tempfile::tempdir().unwrap();
        let kek = crate::store::Kek::generate_hex();
        let (state, own, m0) = node_with_key(dir.path(), &kek);
        let staged = state
            .stage_refresh(
                KeyRecord {
                    manifest: at_generation(&m0, 1),
                    key_package: own,
                },
                [7u8; 32],
                &m0.hash,
                "test",
            )
            .unwrap();
        let m1: [u8; 32] = staged.manifest_hash.as_slice().try_into().unwrap();
        let signs_with = |hash: Option<&[u8; 32]>| {
            state
                .signing_shares("k1", hash)
                .map(|s| s.share.manifest.hash)
        };
        assert_eq!(signs_with(None).unwrap(), m0.hash);
        assert_eq!(signs_with(Some(&m0.hash)).unwrap(), m0.hash);
        assert_eq!(signs_with(Some(&m1)).unwrap(), m1);
        assert!(matches!(
            signs_with(Some(&[9; 32])),
            Err(NodeError::ManifestNotHeld { .. })
        ));
        assert!(matches!(
            state.signing_shares("k2", Some(&m1)),
            Err(NodeError::UnknownKey(_))
        ));
        // Each share is held beside the other: both policies bind a request.
        for hash in [&m0.hash, &m1] {
            let shares = state.signing_shares("k1", Some(hash)).unwrap();
            assert_eq!(shares.policies().count(), 2);
        }
        // Listed: the current share as the key's, the staged one apart.
        let listed = |keys: Vec<pb::NodeKey>| -> Vec<Vec<u8>> {
            keys.iter()
                .map(|k| {
                    let body = &k.attestation.as_ref().unwrap().body;
                    pb::KeyAttestation::decode(body.as_slice())
                        .unwrap()
                        .manifest_hash
                })
                .collect()
        };
        assert_eq!(listed(state.node_keys()), [m0.hash.to_vec()]);
        assert_eq!(listed(state.staged_node_keys()), [m1.to_vec()]);
        // Committed: the old share is gone, and signs no more.
        state
            .commit_refresh("k1", &[7u8; 32], &m1, &[], "test")
            .unwrap();
        assert_eq!(signs_with(Some(&m1)).unwrap(), m1);
        assert!(matches!(
            signs_with(Some(&m0.hash)),
            Err(NodeError::ManifestNotHeld { .. })
        ));
        assert!(state.staged_node_keys().is_empty());
        assert_eq!(
            state.signing_shares("k1", None).unwrap().policies().count(),
            1
        );
    }

    #[test]
    fn a_refreshed_share_is_staged_at_exactly_the_next_generation_and_current_only_once_committed()
    {
        let dir = tempfile::tempdir().unwrap();
        let kek = crate::store::Kek::generate_hex();
        let (state, own, m0) = node_with_key(dir.path(), &kek);
        let setup = [7u8; 32];
        let record = |manifest: Vec<u8>| KeyRecord {
            manifest,
            key_package: own.clone(),
        };
        for (generation, what) in [(0, "same generation"), (2, "skipped generation")] {
            let err = state
                .stage_refresh(
                    record(at_generation(&m0, generation)),
                    setup,
                    &m0.hash,
                    "test",
                )
                .unwrap_err();
            assert!(
                matches!(&err, NodeError::CeremonyRejected(m) if m.contains("generation")),
                "{what}: {err}"
            );
        }
        let staged = state
            .stage_refresh(record(at_generation(&m0, 1)), setup, &m0.hash, "test")
            .unwrap();
        let m1_hash: [u8; 32] = staged.manifest_hash.as_slice().try_into().unwrap();
        // Staged, not current: the old share still signs.
        assert_eq!(state.key("k1").unwrap().manifest.hash, m0.hash);
        assert!(matches!(
            state.refresh_state("k1", &setup).unwrap(),
            RefreshState::Staged(_)
        ));
        // Another refresh cannot start or stage over it, nor the same one run again.
        assert!(state.refresh_may_start("k1", &[8u8; 32]).is_err());
        assert!(state.refresh_may_start("k1", &setup).is_err());
        // It signed a receipt for it: it never abandons it.
        assert!(state
            .abandon_refresh("k1", &setup, &m0.hash, "test")
            .is_err());
        // Durable: a restarted node still holds it staged, and commits it.
        drop(state);
        let state = open_state(dir.path(), &kek, AuditSettings::default()).unwrap();
        assert_eq!(state.key("k1").unwrap().manifest.hash, m0.hash);
        assert!(state
            .commit_refresh("k1", &[8u8; 32], &m1_hash, &[], "test")
            .is_err());
        state
            .commit_refresh("k1", &setup, &m1_hash, &[], "test")
            .unwrap();
        assert_eq!(state.key("k1").unwrap().manifest.hash, m1_hash);
        assert!(matches!(
            state.refresh_state("k1", &setup).unwrap(),
            RefreshState::Committed(..)
        ));
        // Committing again changes nothing; the old manifest back (a rollback) and
        // the current one (a replay) are refused.
        state
            .commit_refresh("k1", &setup, &m1_hash, &[], "test")
            .unwrap();
        let m1 = state.key("k1").unwrap().manifest.clone();
        for (manifest, what) in [
            (m0.encoded.clone(), "rollback"),
            (m1.encoded.clone(), "replay"),
        ] {
            let err = state
                .stage_refresh(record(manifest), [9u8; 32], &m1.hash, "test")
                .unwrap_err();
            assert!(
                matches!(err, NodeError::CeremonyRejected(_)),
                "{what}: {err}"
            );
        }
        // A staged share rolled back is gone; the current one stays.
        let m2 = at_generation(&m1, 2);
        state
            .stage_refresh(record(m2), [9u8; 32], &m1.hash, "test")
            .unwrap();
        assert!(state.rollback_refresh("k1", &[9u8; 32], "test").unwrap());
        assert!(!state.rollback_refresh("k1", &[9u8; 32], "test").unwrap());
        assert!(matches!(
            state.refresh_state("k1", &[9u8; 32]).unwrap(),
            RefreshState::None
        ));
        assert_eq!(state.key("k1").unwrap().manifest.generation, 1);
    }
}
