//! The public `Signer` service.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quorate_proto::api::SignRequest;
use quorate_proto::identity::{authorize, PeerIdentity, Role};
use quorate_proto::pb;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::config::SigningSettings;
use crate::error::CoordError;
use crate::idempotency::IdempotencyCache;
use crate::keys::KeyDirectory;
use crate::quorum::{QuorumEngine, SignContext, Signed};

/// Request ids remembered for idempotency.
const IDEMPOTENCY_CAPACITY: usize = 100_000;

/// The `Signer` service.
#[derive(Debug)]
pub struct SignerService {
    trust_domain: String,
    settings: SigningSettings,
    keys: Arc<KeyDirectory>,
    engine: QuorumEngine,
    idempotency: IdempotencyCache<Signed>,
}

/// Reads the caller's `grpc-timeout` header (e.g. `1500m`).
fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

impl SignerService {
    /// A service over a key directory and quorum engine.
    pub fn new(
        trust_domain: String,
        settings: SigningSettings,
        keys: Arc<KeyDirectory>,
        engine: QuorumEngine,
    ) -> Self {
        Self {
            trust_domain,
            settings,
            keys,
            engine,
            idempotency: IdempotencyCache::new(IDEMPOTENCY_CAPACITY),
        }
    }

    fn authorize<T>(&self, req: &Request<T>) -> Result<PeerIdentity, Status> {
        authorize(req, &self.trust_domain, &[Role::Client])
    }

    /// When this request must be answered: the configured deadline, or earlier if the
    /// caller's own deadline is shorter, less a margin so that the caller receives our
    /// answer (naming what was missing) rather than its own timeout.
    fn deadline(&self, metadata: &MetadataMap) -> Instant {
        let mut budget = self.settings.deadline();
        if let Some(caller) = grpc_timeout(metadata) {
            let margin = (caller / 10).min(Duration::from_millis(100));
            budget = budget.min(caller.saturating_sub(margin));
        }
        Instant::now() + budget
    }

    async fn sign_once(
        &self,
        req: &SignRequest,
        caller: &PeerIdentity,
        deadline: Instant,
    ) -> Result<Signed, CoordError> {
        let key = self.keys.get(&req.key_id).await?;
        let ctx = SignContext {
            request_id: req.request_id.clone().unwrap_or_default(),
            client_id: caller.spiffe_id(),
        };
        self.engine.sign(&key, &req.message, &ctx, deadline).await
    }

    async fn handle_sign(
        &self,
        req: Request<pb::SignRequest>,
    ) -> Result<pb::SignResponse, CoordError> {
        let caller = self
            .authorize(&req)
            .map_err(|s| CoordError::PermissionDenied(s.message().to_string()))?;
        let deadline = self.deadline(req.metadata());
        let req = SignRequest::try_from(req.into_inner()).map_err(CoordError::InvalidArgument)?;
        let started = Instant::now();
        let work = async {
            match &req.request_id {
                Some(request_id) => {
                    let binding = [req.key_id.as_bytes(), &[0], &req.message].concat();
                    let slot = self
                        .idempotency
                        .slot(request_id, quorate_proto::sha256(&binding))?;
                    slot.get_or_try_init(|| self.sign_once(&req, &caller, deadline))
                        .await
                        .cloned()
                }
                None => self.sign_once(&req, &caller, deadline).await,
            }
        };
        // The engine watches the deadline itself; this bound also covers key
        // resolution and waiting on a concurrent duplicate.
        let signed = match tokio::time::timeout_at(deadline.into(), work).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(CoordError::Unavailable(format!(
                    "no signature for key {:?} within the request deadline ({} ms)",
                    req.key_id,
                    deadline.saturating_duration_since(started).as_millis()
                )))
            }
        };
        let key = self.keys.get(&req.key_id).await?;
        tracing::info!(
            key_id = %req.key_id,
            client = %caller,
            signers = ?signed.signers,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "signed"
        );
        Ok(pb::SignResponse {
            key_id: req.key_id,
            signature: signed.signature,
            ciphersuite: key.manifest.ciphersuite.to_pb() as i32,
            signers: signed.signers,
        })
    }
}

#[tonic::async_trait]
impl pb::signer_server::Signer for SignerService {
    #[tracing::instrument(skip_all, fields(key_id = %req.get_ref().key_id))]
    async fn sign(
        &self,
        req: Request<pb::SignRequest>,
    ) -> Result<Response<pb::SignResponse>, Status> {
        match self.handle_sign(req).await {
            Ok(resp) => Ok(Response::new(resp)),
            Err(e) => {
                tracing::info!("sign refused: {e}");
                Err(e.into())
            }
        }
    }

    async fn get_public_key(
        &self,
        req: Request<pb::GetPublicKeyRequest>,
    ) -> Result<Response<pb::GetPublicKeyResponse>, Status> {
        self.authorize(&req)?;
        let key_id = req.into_inner().key_id;
        quorate_proto::validate_key_id(&key_id).map_err(Status::invalid_argument)?;
        let key = self.keys.get(&key_id).await?;
        let m = &key.manifest;
        Ok(Response::new(pb::GetPublicKeyResponse {
            key_id: m.key_id.clone(),
            ciphersuite: m.ciphersuite.to_pb() as i32,
            public_key: m.public_key.public_key.clone(),
            threshold: u32::from(m.threshold),
            participants: m
                .participants
                .iter()
                .map(|p| pb::Participant {
                    node_id: p.node_id.clone(),
                    identifier: p.identifier.clone(),
                    verifying_share: p.verifying_share.clone(),
                    region: p.region.clone(),
                    jurisdiction: p.jurisdiction.clone(),
                })
                .collect(),
        }))
    }

    async fn list_keys(
        &self,
        req: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        self.authorize(&req)?;
        let keys = self
            .keys
            .all()
            .await
            .iter()
            .map(|k| pb::KeySummary {
                key_id: k.manifest.key_id.clone(),
                ciphersuite: k.manifest.ciphersuite.to_pb() as i32,
                threshold: u32::from(k.manifest.threshold),
                participants: k.manifest.participants.len() as u32,
            })
            .collect();
        Ok(Response::new(pb::ListKeysResponse { keys }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_header_parses_every_unit() {
        let mut md = MetadataMap::new();
        for (v, d) in [
            ("2S", Duration::from_secs(2)),
            ("1500m", Duration::from_millis(1500)),
            ("7u", Duration::from_micros(7)),
            ("1M", Duration::from_secs(60)),
        ] {
            md.insert("grpc-timeout", v.parse().unwrap());
            assert_eq!(grpc_timeout(&md), Some(d));
        }
        md.insert("grpc-timeout", "x".parse().unwrap());
        assert_eq!(grpc_timeout(&md), None);
    }
}
