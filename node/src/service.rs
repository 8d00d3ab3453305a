//! gRPC handlers: `Node` (for the coordinator) and `Ceremony` (key installation and
//! the node's side of key ceremonies, see [`crate::ceremony`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use quorate_proto::identity::{authorize, Role};
use quorate_proto::manifest::Manifest;
use quorate_proto::pb;
use quorate_proto::suite::SecretKeyPackage;
use tonic::{Request, Response, Status};

use crate::ceremony::{CeremonyKeys, Sessions};
use crate::error::NodeError;
use crate::nonces::NonceStore;
use crate::store::{KeyRecord, KeyStore};

/// Most commitments one `Commit` call may ask for.
pub const MAX_COMMITMENTS_PER_CALL: u32 = 64;

/// A key share ready to sign with.
#[derive(Debug)]
pub struct ActiveKey {
    /// The key's validated manifest.
    pub manifest: Manifest,
    /// This node's FROST identifier for the key.
    pub identifier: Vec<u8>,
    pub(crate) key_package: SecretKeyPackage,
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
    pub(crate) ceremony: CeremonyKeys,
    pub(crate) sessions: Sessions,
}

impl NodeState {
    /// Loads every stored key and checks it still belongs to this node.
    pub fn new(
        identity: NodeIdentity,
        store: KeyStore,
        nonces: NonceStore,
        ceremony: CeremonyKeys,
    ) -> Result<Self, NodeError> {
        let mut keys = HashMap::new();
        for (key_id, record) in store.load_all()? {
            let key = activate(&identity, record)
                .map_err(|e| NodeError::Corrupt(format!("stored key {key_id:?}: {e}")))?;
            keys.insert(key_id, Arc::new(key));
        }
        Ok(Self {
            identity,
            store,
            keys: RwLock::new(keys),
            nonces,
            ceremony,
            sessions: Sessions::default(),
        })
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
        if req.count == 0 || req.count > MAX_COMMITMENTS_PER_CALL {
            return Err(NodeError::InvalidArgument(format!(
                "count must be within 1..={MAX_COMMITMENTS_PER_CALL}"
            )));
        }
        let key = self.key(&req.key_id)?;
        let ops = key.manifest.ciphersuite.ops();
        let mut commitments = Vec::with_capacity(req.count as usize);
        for _ in 0..req.count {
            let (nonces, commitment) = ops
                .commit(&key.key_package)
                .map_err(|e| NodeError::Corrupt(format!("key {:?}: {e}", req.key_id)))?;
            self.nonces.insert(&req.key_id, &commitment, nonces);
            commitments.push(commitment);
        }
        Ok(pb::CommitResponse { commitments })
    }

    fn sign_share(&self, req: pb::SignShareRequest) -> Result<pb::SignShareResponse, NodeError> {
        let key = self.key(&req.key_id)?;
        let manifest = &key.manifest;
        let ops = manifest.ciphersuite.ops();
        let package = ops
            .signing_package_info(&req.signing_package)
            .map_err(|e| NodeError::InvalidArgument(e.to_string()))?;
        if package.message.is_empty() || package.message.len() > quorate_proto::MAX_MESSAGE_BYTES {
            return Err(NodeError::InvalidArgument(format!(
                "message must be 1..={} bytes",
                quorate_proto::MAX_MESSAGE_BYTES
            )));
        }
        if package.commitments.len() < usize::from(manifest.threshold) {
            return Err(NodeError::InvalidArgument(format!(
                "signing package has {} signers; key {:?} needs {}",
                package.commitments.len(),
                manifest.key_id,
                manifest.threshold
            )));
        }
        let mut signers = Vec::with_capacity(package.commitments.len());
        for id in package.commitments.keys() {
            let p = manifest.participant_by_identifier(id).ok_or_else(|| {
                NodeError::InvalidArgument(
                    "signing package names a signer that holds no share of this key".into(),
                )
            })?;
            signers.push(p.node_id.as_str());
        }
        let own = package.commitments.get(&key.identifier).ok_or_else(|| {
            NodeError::InvalidArgument("signing package holds no commitment of this node".into())
        })?;
        // Taking the nonce out of the store is what makes it single-use: whatever
        // happens next, it cannot be used again.
        let nonces = self.nonces.take(&req.key_id, own).ok_or_else(|| {
            NodeError::FailedPrecondition(
                "the commitment for this node was not issued by it, was already used, or expired"
                    .into(),
            )
        })?;
        let share = ops
            .sign(&req.signing_package, &nonces, &key.key_package)
            .map_err(|e| NodeError::InvalidArgument(format!("cannot sign: {e}")))?;
        tracing::info!(
            key_id = %req.key_id,
            request_id = %req.request_id,
            client = %req.client_id,
            message_sha256 = %hex::encode(quorate_proto::sha256(&package.message)),
            signers = ?signers,
            "signature share issued"
        );
        Ok(pb::SignShareResponse {
            signature_share: share,
        })
    }

    fn install_key(&self, req: pb::InstallKeyRequest) -> Result<pb::InstallKeyResponse, NodeError> {
        self.install_record(KeyRecord {
            manifest: req.manifest,
            key_package: SecretKeyPackage::from_bytes(req.key_package),
        })
    }

    /// Validates and durably stores a new key.
    pub(crate) fn install_record(
        &self,
        record: KeyRecord,
    ) -> Result<pb::InstallKeyResponse, NodeError> {
        let key = activate(&self.identity, record.clone_public_and_secret())
            .map_err(NodeError::InvalidArgument)?;
        let key_id = key.manifest.key_id.clone();
        let hash = key.manifest.hash;
        // Hold the write lock across the durable insert so two installs of one key id
        // cannot both succeed.
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if keys.contains_key(&key_id) {
            return Err(NodeError::KeyExists(key_id));
        }
        self.store.insert_new(&key_id, &record)?;
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
    ) -> Result<pb::InstallKeyResponse, NodeError> {
        let key = activate(&self.identity, record.clone_public_and_secret())
            .map_err(NodeError::InvalidArgument)?;
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
        keys.insert(key_id.clone(), Arc::new(key));
        tracing::info!(key_id = %key_id, manifest_sha256 = %hex::encode(hash), "key refreshed");
        Ok(pb::InstallKeyResponse {
            manifest_hash: hash.to_vec(),
        })
    }

    /// Deletes a key durably.
    pub(crate) fn remove_key(&self, key_id: &str) -> Result<(), NodeError> {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        self.store.remove(key_id)?;
        keys.remove(key_id);
        Ok(())
    }
}

impl KeyRecord {
    fn clone_public_and_secret(&self) -> KeyRecord {
        KeyRecord {
            manifest: self.manifest.clone(),
            key_package: self.key_package.clone(),
        }
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
    let info = ops
        .key_package_info(&record.key_package)
        .map_err(|e| e.to_string())?;
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
    })
}

/// The `Node` service.
#[derive(Debug, Clone)]
pub struct NodeService(pub Arc<NodeState>);

/// The `Ceremony` service.
#[derive(Debug, Clone)]
pub struct CeremonyService(pub Arc<NodeState>);

impl NodeService {
    fn authorize<T>(&self, req: &Request<T>) -> Result<(), Status> {
        authorize(req, &self.0.identity.trust_domain, &[Role::Coordinator]).map(|_| ())
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

    #[tracing::instrument(skip_all, fields(key_id = %req.get_ref().key_id))]
    async fn commit(
        &self,
        req: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(self.0.commit(req.into_inner())?))
    }

    #[tracing::instrument(skip_all, fields(key_id = %req.get_ref().key_id))]
    async fn sign_share(
        &self,
        req: Request<pb::SignShareRequest>,
    ) -> Result<Response<pb::SignShareResponse>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(self.0.sign_share(req.into_inner())?))
    }
}

impl CeremonyService {
    fn authorize<T>(&self, req: &Request<T>) -> Result<(), Status> {
        authorize(req, &self.0.identity.trust_domain, &[Role::Ceremony]).map(|_| ())
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
        let key = self.0.key(&req.get_ref().key_id)?;
        Ok(Response::new(pb::NodeKey {
            manifest: key.manifest.encoded.clone(),
        }))
    }

    async fn install_key(
        &self,
        req: Request<pb::InstallKeyRequest>,
    ) -> Result<Response<pb::InstallKeyResponse>, Status> {
        let caller = authorize(&req, &self.0.identity.trust_domain, &[Role::Ceremony])?;
        tracing::info!(caller = %caller, "key installation requested");
        Ok(Response::new(self.0.install_key(req.into_inner())?))
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
        self.authorize(&req)?;
        Ok(Response::new(self.0.dkg_activate(req.into_inner())?))
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
        self.authorize(&req)?;
        Ok(Response::new(self.0.retire_key(req.into_inner())?))
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
        self.authorize(&req)?;
        Ok(Response::new(self.0.repair_finish(req.into_inner())?))
    }
}
