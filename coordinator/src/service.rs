//! The public `Signer` service.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quorate_transport::identity::{authorize, PeerIdentity, Role};
use quorate_wire::api::SignRequest;
use quorate_wire::pb;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::config::SigningSettings;
use crate::error::CoordError;
use crate::idempotency::IdempotencyCache;
use crate::inflight::InFlightLimiter;
use crate::keys::KeyDirectory;
use crate::metric;
use crate::quorum::{QuorumEngine, SignContext, Signed};
use quorate_keys::approval;
use quorate_transport::intent::{IntentRequest, IntentVerifier};
use quorate_transport::metrics::{CounterVec, Histogram, Registry};
use quorate_transport::ratelimit::RateLimiter;

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
    rate: RateLimiter,
    in_flight: InFlightLimiter,
    intents: IntentVerifier,
    metrics: ServiceMetrics,
    client_labels: metric::ClientLabels,
}

/// What the service counts.
#[derive(Debug, Clone)]
struct ServiceMetrics {
    requests: CounterVec<1>,
    errors: CounterVec<2>,
    client_sign_requests: CounterVec<1>,
    sign_latency: Histogram,
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
        intents: IntentVerifier,
        registry: &Registry,
    ) -> Self {
        let metrics = ServiceMetrics {
            requests: registry.counter_vec(metric::REQUESTS, "Requests by RPC.", ["rpc"]),
            errors: registry.counter_vec(
                metric::ERRORS,
                "Failed requests by RPC and gRPC code.",
                ["rpc", "code"],
            ),
            client_sign_requests: registry.counter_vec(
                metric::CLIENT_SIGN_REQUESTS,
                "Sign requests with a verified intent, by client.",
                ["client"],
            ),
            sign_latency: registry.histogram(metric::SIGN_LATENCY, "End-to-end Sign latency."),
        };
        Self {
            trust_domain,
            settings,
            keys,
            engine,
            idempotency: IdempotencyCache::new(IDEMPOTENCY_CAPACITY),
            rate: RateLimiter::new(),
            in_flight: InFlightLimiter::new(settings.max_in_flight_per_client),
            intents,
            metrics,
            client_labels: metric::ClientLabels::default(),
        }
    }

    fn record<T>(&self, rpc: &str, result: &Result<T, Status>) {
        self.metrics.requests.inc([rpc]);
        if let Err(status) = result {
            self.metrics
                .errors
                .inc([rpc, &format!("{:?}", status.code())]);
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
        let asked = Instant::now();
        let key = self.keys.get(&req.key_id).await?;
        let policy = &key.manifest.policy;
        let client_id = caller.spiffe_id();
        // While a refresh runs, the nodes holding both shares enforce both
        // epochs' policies: so does this early check (a client refused here is not
        // sent to nodes that would refuse it).
        if !key.policies().all(|p| p.allows_client(&client_id)) {
            self.engine.count_denial("client_not_allowed");
            return Err(CoordError::NotAllowed(format!(
                "client {client_id} may not use key {:?}",
                req.key_id
            )));
        }
        let rate_limit = quorate_keys::policy::tightest_rate_limit(key.policies());
        if let Err(retry) = self.rate.check(&req.key_id, &client_id, rate_limit) {
            self.engine.count_denial("rate_limited");
            return Err(CoordError::RateLimited(format!(
                "client {client_id} reached {rate_limit} signatures per minute on key {:?}; retry in {} s",
                req.key_id,
                retry.as_secs().max(1)
            )));
        }
        // An approval is checked here so the caller learns at once why it is refused;
        // every node that is asked to join an out-of-policy quorum checks it again.
        let approval_token = match &req.approval_token {
            None => None,
            Some(bytes) => {
                let digest = quorate_wire::sha256(&req.message);
                if let Err(e) = approval::check(bytes, &req.key_id, policy, &client_id, &digest) {
                    self.engine.count_denial("invalid_approval");
                    return Err(CoordError::InvalidApproval(e.to_string()));
                }
                Some(bytes.clone())
            }
        };
        let ctx = SignContext {
            request_id: req.request_id.clone().unwrap_or_default(),
            intent: req.intent.clone(),
            approval_token,
        };
        match self.engine.sign(&key, &req.message, &ctx, deadline).await {
            Err(CoordError::KeyMovedOn(why)) => {
                // A refresh committed since the directory last read the nodes:
                // read them again and sign once more with what they hold now (the
                // nodes check the client and the policy of that manifest
                // themselves).
                tracing::info!(key_id = %req.key_id, "the nodes moved on from the cached manifest; reading them again: {why}");
                let key = self.keys.reread(&req.key_id, asked).await?;
                self.engine.sign(&key, &req.message, &ctx, deadline).await
            }
            result => result,
        }
    }

    async fn handle_sign(
        &self,
        req: Request<pb::SignRequest>,
    ) -> Result<pb::SignResponse, CoordError> {
        let caller = self
            .authorize(&req)
            .map_err(|s| CoordError::NotAllowed(s.message().to_string()))?;
        let deadline = self.deadline(req.metadata());
        let req = SignRequest::try_from(req.into_inner()).map_err(CoordError::InvalidRequest)?;
        // Every node checks the intent itself; checking it here too answers a bad
        // one at once instead of after a round of commitments. The intent must be
        // the caller's own: a client cannot relay another's.
        let verified = self
            .intents
            .verify(
                req.intent.as_ref(),
                &IntentRequest {
                    key_id: &req.key_id,
                    message: &req.message,
                    request_id: req.request_id.as_deref().unwrap_or_default(),
                    approval_token: req.approval_token.as_deref(),
                },
            )
            .map_err(|e| CoordError::Unauthenticated(e.to_string()))?;
        if verified.client != caller {
            return Err(CoordError::Unauthenticated(format!(
                "the sign intent is signed by {}, but the caller is {caller}",
                verified.client
            )));
        }
        let client_id = caller.spiffe_id();
        self.metrics
            .client_sign_requests
            .inc([self.client_labels.label(&client_id)]);
        let _permit = self.in_flight.try_acquire(&client_id).ok_or_else(|| {
            CoordError::TooManyInFlight(format!(
                "client {client_id} already has {} Sign requests in flight; retry when one completes",
                self.in_flight.limit()
            ))
        })?;
        let started = Instant::now();
        let work = async {
            match &req.request_id {
                Some(request_id) => {
                    let binding = [req.key_id.as_bytes(), &[0], &req.message].concat();
                    let slot = self.idempotency.slot(
                        &client_id,
                        request_id,
                        quorate_wire::sha256(&binding),
                    )?;
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
                return Err(CoordError::DeadlineReached(format!(
                    "no signature for key {:?} within the request deadline ({} ms)",
                    req.key_id,
                    deadline.saturating_duration_since(started).as_millis()
                )))
            }
        };
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
            ciphersuite: quorate_wire::pb::Ciphersuite::from(signed.ciphersuite) as i32,
            signers: signed.signers,
        })
    }
}

#[tonic::async_trait]
impl pb::signer_server::Signer for SignerService {
    // The span is at debug level: a span with fields costs a formatted allocation
    // per request even when nothing is logged in it, and every event on this path
    // names its key itself.
    #[tracing::instrument(level = "debug", skip_all, fields(key_id = %req.get_ref().key_id))]
    async fn sign(
        &self,
        req: Request<pb::SignRequest>,
    ) -> Result<Response<pb::SignResponse>, Status> {
        let started = Instant::now();
        let key_id = req.get_ref().key_id.clone();
        let result = match self.handle_sign(req).await {
            Ok(resp) => {
                self.metrics
                    .sign_latency
                    .observe(started.elapsed().as_secs_f64());
                Ok(Response::new(resp))
            }
            Err(e) => {
                tracing::info!(key_id = %key_id, "sign refused: {e}");
                Err(Status::from(e))
            }
        };
        self.record("Sign", &result);
        result
    }

    async fn get_public_key(
        &self,
        req: Request<pb::GetPublicKeyRequest>,
    ) -> Result<Response<pb::GetPublicKeyResponse>, Status> {
        let result = self.get_public_key_inner(req).await;
        self.record("GetPublicKey", &result);
        result
    }

    async fn list_keys(
        &self,
        req: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let result = self.list_keys_inner(req).await;
        self.record("ListKeys", &result);
        result
    }
}

impl SignerService {
    async fn get_public_key_inner(
        &self,
        req: Request<pb::GetPublicKeyRequest>,
    ) -> Result<Response<pb::GetPublicKeyResponse>, Status> {
        self.authorize(&req)?;
        let key_id = req.into_inner().key_id;
        quorate_wire::validate_key_id(&key_id).map_err(CoordError::InvalidRequest)?;
        let key = self.keys.get(&key_id).await?;
        let m = &key.manifest;
        Ok(Response::new(pb::GetPublicKeyResponse {
            key_id: m.key_id.clone(),
            ciphersuite: quorate_wire::pb::Ciphersuite::from(m.ciphersuite) as i32,
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
            manifest: m.encoded.clone(),
            attestation: key.attestation.clone(),
        }))
    }

    async fn list_keys_inner(
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
                ciphersuite: quorate_wire::pb::Ciphersuite::from(k.manifest.ciphersuite) as i32,
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
