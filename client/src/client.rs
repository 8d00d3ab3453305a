//! [`Client`]: signs intents, fails over between coordinators, honours the deadline,
//! and verifies every signature before handing it back.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quorate_frost::Ciphersuite;
use quorate_transport::attest::{StatementSigner, StatementVerifier};
use quorate_transport::intent::{sign_intent_now, IntentRequest};
use quorate_wire::pb;
use tonic::Code;

use crate::attestation::{check_attested, Generations};
use crate::config::ClientConfig;
use crate::connect::{connect, Connected, Coordinator};
use crate::error::{Attempt, ClientError};
use crate::health::Health;
use crate::verify::{verify, VerifyError};

/// Options of one `sign` call.
#[derive(Clone, Debug, Default)]
pub struct SignOptions {
    /// Idempotency key; one is generated when `None` (see [`Client::sign`]).
    pub request_id: Option<String>,
    /// A signed approval permitting an out-of-policy quorum.
    pub approval_token: Option<Vec<u8>>,
    /// The deadline of this call, every retry included (default: the config's).
    pub deadline: Option<Duration>,
}

/// A participant of a key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyParticipant {
    /// Node id.
    pub node_id: String,
    /// Region tag.
    pub region: String,
    /// Jurisdiction tag.
    pub jurisdiction: String,
    /// Verifying share, FROST encoding.
    #[serde(with = "hex_bytes")]
    pub verifying_share: Vec<u8>,
}

/// A key's public description, checked before use.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PublicKey {
    /// Key id.
    pub key_id: String,
    /// Ciphersuite.
    #[serde(serialize_with = "suite_name")]
    pub ciphersuite: Ciphersuite,
    /// Group public key in the ciphersuite's public API encoding.
    #[serde(with = "hex_bytes")]
    pub public_key: Vec<u8>,
    /// Signers needed.
    pub threshold: u32,
    /// The nodes holding shares.
    pub participants: Vec<KeyParticipant>,
    /// Its manifest's generation: 0 when the key was created, one more per refresh.
    pub generation: u64,
}

/// A key as `ListKeys` describes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeySummary {
    /// Key id.
    pub key_id: String,
    /// Ciphersuite.
    #[serde(serialize_with = "suite_name")]
    pub ciphersuite: Ciphersuite,
    /// Signers needed.
    pub threshold: u32,
    /// Number of participants.
    pub participants: u32,
}

/// A signature that verified under the key's public key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Signature {
    /// Key id.
    pub key_id: String,
    /// Ciphersuite.
    #[serde(serialize_with = "suite_name")]
    pub ciphersuite: Ciphersuite,
    /// The signature, in the ciphersuite's public API encoding.
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
    /// Node ids whose shares make it up, as the coordinator reports them: an
    /// aggregate signature does not show who signed, so this is the coordinator's
    /// word; the signers' audit logs are the record.
    pub signers: Vec<String>,
    /// The public key it verified under.
    #[serde(with = "hex_bytes")]
    pub public_key: Vec<u8>,
    /// The request id it was asked for under.
    pub request_id: String,
    /// The coordinator that answered.
    pub coordinator: String,
}

/// The outcome of checking a signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It verifies.
    Valid,
    /// It does not, and why.
    Invalid(VerifyError),
}

/// A client of the `Signer` API over one or more coordinators.
#[derive(Clone, Debug)]
pub struct Client {
    coordinators: Arc<[Coordinator]>,
    health: Arc<Mutex<Health>>,
    signer: Arc<StatementSigner>,
    /// Checks key attestations under the client's CA.
    attestations: Arc<StatementVerifier>,
    deadline: Duration,
    intent_validity_secs: u64,
    keys: Arc<Mutex<HashMap<String, PublicKey>>>,
    /// The highest manifest generation accepted per key: an older one is refused.
    generations: Arc<Mutex<Generations>>,
    /// The coordinator each `Sign` request id in flight or in doubt went to.
    pins: Arc<Mutex<Pins>>,
    /// Reloads the client's certificate, key and CA bundle when their files
    /// change, until the last clone of the client is dropped.
    _tls_watch: Arc<TlsWatch>,
}

/// The task that keeps a client's TLS material in step with its files; stopped
/// with the client.
#[derive(Debug)]
struct TlsWatch(Option<tokio::task::JoinHandle<()>>);

impl Drop for TlsWatch {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Most request ids pinned at once; past it, expired pins are dropped first, then
/// the one closest to expiring.
const PINS_CAPACITY: usize = 4096;

/// Which coordinator each `Sign` request id went to, so that no other coordinator is
/// ever sent it while the first may still be signing it: pinned before the request
/// leaves, dropped on a definite answer (a signature, or a refusal any coordinator
/// would repeat) or when nothing was sent after all. A pin outlives every intent
/// sent under its id (validity plus the allowed clock skew): past that, no
/// coordinator can have the request signed, so the id is free again.
#[derive(Debug, Default)]
struct Pins {
    by_id: HashMap<String, Pin>,
}

#[derive(Clone, Copy, Debug)]
struct Pin {
    coordinator: usize,
    expires: Instant,
}

impl Pins {
    fn get(&self, request_id: &str, now: Instant) -> Option<usize> {
        self.by_id
            .get(request_id)
            .filter(|pin| pin.expires > now)
            .map(|pin| pin.coordinator)
    }

    fn pin(&mut self, request_id: &str, coordinator: usize, now: Instant, lifetime: Duration) {
        if !self.by_id.contains_key(request_id) && self.by_id.len() >= PINS_CAPACITY {
            self.by_id.retain(|_, pin| pin.expires > now);
            if self.by_id.len() >= PINS_CAPACITY {
                let soonest = self
                    .by_id
                    .iter()
                    .min_by_key(|(_, pin)| pin.expires)
                    .map(|(id, _)| id.clone());
                if let Some(id) = soonest {
                    self.by_id.remove(&id);
                }
            }
        }
        self.by_id.insert(
            request_id.to_string(),
            Pin {
                coordinator,
                expires: now + lifetime,
            },
        );
    }

    fn settle(&mut self, request_id: &str) {
        self.by_id.remove(request_id);
    }
}

/// Codes that say nothing about the request, only about the coordinator or the way
/// to it: a retry may well succeed. Everything else (INVALID_ARGUMENT,
/// PERMISSION_DENIED, UNAUTHENTICATED, NOT_FOUND, FAILED_PRECONDITION,
/// ALREADY_EXISTS, RESOURCE_EXHAUSTED — the nodes enforce rate limits, whichever
/// coordinator relays — and the rest) would be answered the same by any of them.
/// A read is retried on another coordinator; a `Sign` only if the first one never
/// took it up ([`never_sent`]), else on the same coordinator.
fn is_retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
    )
}

/// Whether a failed call proves the request never reached the coordinator: tonic
/// could not open the connection (TCP refused or unreachable, connect timeout, TLS
/// handshake failed: a [`tonic::ConnectError`]); hyper dropped the request from its
/// queue unsent because the connection closed or was not ready (a canceled
/// [`hyper::Error`]: it hands the unsent request back, which is what happens to a
/// call racing a coordinator's graceful shutdown); or the server refused the stream
/// (h2 `REFUSED_STREAM`, which RFC 9113 section 8.7 guarantees was not processed).
/// Any other failure (a timeout, a reset or broken connection, the coordinator's
/// own answer) may come after the coordinator took the request up, and it may
/// still sign it.
fn never_sent(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        if cause.is::<tonic::ConnectError>() {
            return true;
        }
        if cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
        {
            return true;
        }
        if cause
            .downcast_ref::<h2::Error>()
            .is_some_and(|e| e.reason() == Some(h2::Reason::REFUSED_STREAM))
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// No coordinator gave an answer within `deadline`, or (for a `Sign`) the one that
/// took it answered UNAVAILABLE itself: it could not sign it now (too few nodes
/// reachable, or a duplicate still being signed there timed out waiting). Such an
/// answer reaches the caller at once, as a coordinator's own refusal should,
/// instead of after retries until the deadline; the request id stays pinned to
/// that coordinator (it may still be signing it), so a retry under it goes there.
fn unavailable(deadline: Duration, attempts: Vec<Attempt>) -> ClientError {
    ClientError::Unavailable {
        deadline_ms: millis(deadline),
        attempts,
    }
}

/// Whether the coordinator itself answered UNAVAILABLE (a gRPC status it sent),
/// rather than the transport failing on the way (tonic then gives the cause as the
/// status's source: a connect, h2 or I/O error).
fn coordinator_unavailable(status: &tonic::Status) -> bool {
    status.code() == Code::Unavailable && std::error::Error::source(status).is_none()
}

/// The first pause before a `Sign` is retried on the coordinator that may have
/// taken it up; it doubles up to [`STAY_PAUSE_MAX`].
const STAY_PAUSE: Duration = Duration::from_millis(50);
const STAY_PAUSE_MAX: Duration = Duration::from_millis(500);

impl Client {
    /// A client for `config`. Connections open lazily, on first use; must be called
    /// within a tokio runtime.
    pub fn new(config: &ClientConfig) -> Result<Self, ClientError> {
        let Connected {
            coordinators,
            tls,
            signer,
            attestations,
        } = connect(config)?;
        // A renewed client certificate (cert-manager, SPIRE, `quorate-ceremony pki
        // renew`) is used for the next connection and the next intent, without a
        // restart. A library leaves the process's signals alone: files are polled.
        let tls_watch = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            runtime.spawn(quorate_transport::tls_reload::watch(
                tls,
                None,
                false,
                || {},
            ))
        });
        Ok(Self {
            _tls_watch: Arc::new(TlsWatch(tls_watch)),
            health: Arc::new(Mutex::new(Health::new(coordinators.len()))),
            coordinators: coordinators.into(),
            signer: Arc::new(signer),
            attestations: Arc::new(attestations),
            deadline: config.deadline(),
            intent_validity_secs: config.intent_validity_secs,
            keys: Arc::new(Mutex::new(HashMap::new())),
            generations: Arc::new(Mutex::new(Generations::default())),
            pins: Arc::new(Mutex::new(Pins::default())),
        })
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the read `call` on coordinators in order of health until one answers, a
    /// refusal any coordinator would repeat comes back, or `deadline` passes. Each
    /// attempt gets an equal share of the time left among the coordinators still to
    /// try, so a coordinator that hangs cannot use up the whole deadline. For reads
    /// only: asking two coordinators the same question is harmless, which is not
    /// true of a `Sign` ([`Client::sign_failover`]).
    async fn failover<T, F, Fut>(
        &self,
        deadline: Duration,
        call: F,
    ) -> Result<(T, String), ClientError>
    where
        F: Fn(Coordinator, Duration) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let started = Instant::now();
        let candidates = self.health().candidates(started);
        let mut attempts = Vec::new();
        for (n, &i) in candidates.iter().enumerate() {
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            let share = left / u32::try_from(candidates.len() - n).unwrap_or(u32::MAX);
            let coordinator = self.coordinators[i].clone();
            let endpoint = coordinator.endpoint.clone();
            match attempt_once(&call, coordinator, share).await {
                Ok(value) => {
                    self.health().succeeded(i, Instant::now());
                    return Ok((value, endpoint));
                }
                Err(status) => {
                    let attempt = Attempt {
                        endpoint,
                        code: status.code(),
                        message: status.message().to_string(),
                    };
                    if !is_retryable(status.code()) {
                        return Err(ClientError::Refused(attempt));
                    }
                    self.health().failed(i, Instant::now());
                    attempts.push(attempt);
                }
            }
        }
        Err(unavailable(deadline, attempts))
    }

    /// Runs the `Sign` `call` for `request_id` under the rule that at most one
    /// coordinator ever takes a request up (two could each make a signature for
    /// it): coordinators in order of health, each with its share of the time as in
    /// [`Client::failover`], but the next one is tried only if the request provably
    /// never reached this one ([`never_sent`]; a connection that has not answered
    /// recently is opened first with a health check, whose failure proves it too).
    /// After any other failure the request belongs to that coordinator: it is
    /// retried there, under the same request id (idempotent there: it returns the
    /// signature it made, or waits for the attempt still signing), until `deadline`;
    /// then [`ClientError::InDoubt`]. The id is pinned to the coordinator before
    /// the request leaves (see [`Pins`]), so a request id in flight or in doubt,
    /// from this call, a concurrent one or one the caller gave up on, goes to that
    /// coordinator only.
    async fn sign_failover<T, F, Fut>(
        &self,
        deadline: Duration,
        request_id: &str,
        call: F,
    ) -> Result<(T, String), ClientError>
    where
        F: Fn(Coordinator, Duration) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let started = Instant::now();
        let mut attempts = Vec::new();
        let owner = self.pins().get(request_id, started);
        if let Some(i) = owner {
            return self
                .stay_with(i, request_id, started, deadline, attempts, &call)
                .await;
        }
        let candidates = self.health().candidates(started);
        for (n, &i) in candidates.iter().enumerate() {
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            let share = left / u32::try_from(candidates.len() - n).unwrap_or(u32::MAX);
            let coordinator = self.coordinators[i].clone();
            let endpoint = coordinator.endpoint.clone();
            let attempt = |status: &tonic::Status, before: &str| Attempt {
                endpoint: endpoint.clone(),
                code: status.code(),
                message: format!("{before}{}", status.message()),
            };
            if !self.health().is_warm(i, Instant::now()) {
                if let Err(status) = probe(&coordinator, share).await {
                    // Nothing of the request was sent: another may take it.
                    self.health().failed(i, Instant::now());
                    attempts.push(attempt(&status, "health check before sending: "));
                    continue;
                }
            }
            let timeout = share.min(deadline.saturating_sub(started.elapsed()));
            self.pin(request_id, i);
            match attempt_once(&call, coordinator, timeout).await {
                Ok(value) => {
                    self.pins().settle(request_id);
                    self.health().succeeded(i, Instant::now());
                    return Ok((value, endpoint));
                }
                Err(status) if !is_retryable(status.code()) => {
                    self.pins().settle(request_id);
                    return Err(ClientError::Refused(attempt(&status, "")));
                }
                Err(status) if never_sent(&status) => {
                    self.health().failed(i, Instant::now());
                    attempts.push(attempt(&status, "not sent: "));
                }
                Err(status) if coordinator_unavailable(&status) => {
                    self.health().failed(i, Instant::now());
                    attempts.push(attempt(&status, ""));
                    return Err(unavailable(deadline, attempts));
                }
                Err(status) => {
                    self.health().failed(i, Instant::now());
                    attempts.push(attempt(&status, ""));
                    return self
                        .stay_with(i, request_id, started, deadline, attempts, &call)
                        .await;
                }
            }
        }
        // Nothing was sent to any coordinator.
        self.pins().settle(request_id);
        Err(unavailable(deadline, attempts))
    }

    fn pins(&self) -> std::sync::MutexGuard<'_, Pins> {
        self.pins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pins `request_id` to coordinator `i` until every intent sent under it has
    /// expired: called before each send, so the intent sent now is covered.
    fn pin(&self, request_id: &str, i: usize) {
        let lifetime = Duration::from_secs(
            self.intent_validity_secs
                .saturating_add(quorate_transport::intent::CLOCK_SKEW_SECS),
        );
        self.pins().pin(request_id, i, Instant::now(), lifetime);
    }

    /// Retries `call` on coordinator `i`, which may have taken `request_id` up,
    /// until it answers, refuses, or `deadline` (from `started`) passes.
    async fn stay_with<T, F, Fut>(
        &self,
        i: usize,
        request_id: &str,
        started: Instant,
        deadline: Duration,
        mut attempts: Vec<Attempt>,
        call: &F,
    ) -> Result<(T, String), ClientError>
    where
        F: Fn(Coordinator, Duration) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let endpoint = self.coordinators[i].endpoint.clone();
        let mut pause = if attempts.is_empty() {
            Duration::ZERO
        } else {
            STAY_PAUSE
        };
        loop {
            let left = deadline.saturating_sub(started.elapsed());
            if left <= pause {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).clamp(STAY_PAUSE, STAY_PAUSE_MAX);
            let left = deadline.saturating_sub(started.elapsed());
            self.pin(request_id, i);
            match attempt_once(call, self.coordinators[i].clone(), left).await {
                Ok(value) => {
                    self.health().succeeded(i, Instant::now());
                    self.pins().settle(request_id);
                    return Ok((value, endpoint));
                }
                Err(status) => {
                    let attempt = Attempt {
                        endpoint: endpoint.clone(),
                        code: status.code(),
                        message: status.message().to_string(),
                    };
                    if !is_retryable(status.code()) {
                        self.pins().settle(request_id);
                        return Err(ClientError::Refused(attempt));
                    }
                    // New requests go to the other coordinators first meanwhile.
                    self.health().failed(i, Instant::now());
                    let answered_unavailable = coordinator_unavailable(&status);
                    attempts.push(attempt);
                    if answered_unavailable {
                        return Err(unavailable(deadline, attempts));
                    }
                }
            }
        }
        // The pin stays: the coordinator may still be signing the request.
        Err(ClientError::InDoubt {
            endpoint,
            request_id: request_id.to_string(),
            deadline_ms: millis(deadline),
            attempts,
        })
    }

    /// Every key the coordinators know, as a coordinator reports it: nothing here
    /// is attested. [`Client::public_key`] checks a key's attestation before it is
    /// used.
    pub async fn list_keys(&self) -> Result<Vec<KeySummary>, ClientError> {
        let (response, endpoint) = self
            .failover(self.deadline, |c, timeout| async move {
                let mut grpc = c.grpc;
                let mut request = tonic::Request::new(pb::ListKeysRequest {});
                request.set_timeout(timeout);
                grpc.list_keys(request)
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await?;
        response
            .keys
            .into_iter()
            .map(|k| {
                Ok(KeySummary {
                    ciphersuite: suite(k.ciphersuite, &endpoint)?,
                    key_id: k.key_id,
                    threshold: k.threshold,
                    participants: k.participants,
                })
            })
            .collect()
    }

    /// The key's public key, as far as the client can check it.
    pub async fn public_key(&self, key_id: &str) -> Result<PublicKey, ClientError> {
        let key = self.verified_public_key(key_id).await?;
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key_id.to_string(), key.clone());
        Ok(key)
    }

    /// The one place a public key is accepted: every signature is verified under
    /// the key this returns. A coordinator is not trusted, so the answer counts
    /// only if at least the key's threshold of its participants attest its
    /// manifest ([`check_attested`]), and only if that manifest's generation is not
    /// below one this client accepted before for the key ([`Generations`]): an
    /// attested manifest from before a refresh, replayed, is refused as a rollback.
    async fn verified_public_key(&self, key_id: &str) -> Result<PublicKey, ClientError> {
        let (response, endpoint) = self
            .failover(self.deadline, |c, timeout| {
                let key_id = key_id.to_string();
                async move {
                    let mut grpc = c.grpc;
                    let mut request = tonic::Request::new(pb::GetPublicKeyRequest { key_id });
                    request.set_timeout(timeout);
                    grpc.get_public_key(request)
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await?;
        // The coordinator is not trusted to name a key's public key: only one its
        // participants attest is.
        let manifest = match check_attested(&self.attestations, key_id, &response) {
            Ok(m) => m,
            Err(why) => {
                return Err(ClientError::BadResponse {
                    endpoint,
                    message: format!("key {key_id:?} is not attested by its participants: {why}"),
                })
            }
        };
        let ciphersuite = suite(response.ciphersuite, &endpoint)?;
        let expected_len = match ciphersuite {
            Ciphersuite::Ed25519 | Ciphersuite::Secp256k1Tr => 32,
            Ciphersuite::Secp256k1 => 33,
        };
        if response.public_key.len() != expected_len {
            return Err(ClientError::BadResponse {
                endpoint,
                message: format!(
                    "{ciphersuite} public key of {} bytes, expected {expected_len}",
                    response.public_key.len()
                ),
            });
        }
        // Last, so that only an answer accepted in every other respect moves the
        // remembered generation.
        if let Err(highest) = self
            .generations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .accept(key_id, manifest.generation)
        {
            return Err(ClientError::BadResponse {
                endpoint,
                message: format!(
                    "rollback: key {key_id:?} manifest generation {} (SHA-256 {}) is older than generation {highest}, which this client already accepted; an old manifest replayed with its old attestations is refused",
                    manifest.generation,
                    hex::encode(manifest.hash)
                ),
            });
        }
        Ok(PublicKey {
            key_id: response.key_id,
            ciphersuite,
            public_key: response.public_key,
            threshold: response.threshold,
            participants: response
                .participants
                .into_iter()
                .map(|p| KeyParticipant {
                    node_id: p.node_id,
                    region: p.region,
                    jurisdiction: p.jurisdiction,
                    verifying_share: p.verifying_share,
                })
                .collect(),
            generation: manifest.generation,
        })
    }

    /// The key's public key from the cache, or fetched. A key's public key does not
    /// change (a refresh keeps it), so it is fetched once per client.
    async fn cached_public_key(&self, key_id: &str) -> Result<PublicKey, ClientError> {
        let cached = self
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key_id)
            .cloned();
        match cached {
            Some(key) => Ok(key),
            None => self.public_key(key_id).await,
        }
    }

    /// A signature of `message` under `key_id`, verified under the key's public key
    /// before it is returned.
    ///
    /// Every request carries a request id, generated when the caller gave none, and
    /// the intent signed for it names that id. A request whose answer was lost (a
    /// timeout, a broken connection) may still have been signed; retrying it under
    /// the same id, the same coordinator returns the signature it made instead of
    /// making another. Without an id a retry would be a second request, and the
    /// first signature one the client never saw nor could tell from a signature it
    /// did not ask for.
    ///
    /// At most one coordinator takes a request up. The client moves on to the next
    /// coordinator only when the request provably never reached this one: the
    /// connection could not be opened (refused, unreachable, TLS failed), which a
    /// health check finds out before a `Sign` is sent on a connection that has not
    /// answered in the last few seconds, or HTTP/2 never sent it (a call racing the
    /// coordinator's graceful shutdown). After any other failure — no answer in
    /// time, a connection broken after sending, the coordinator's UNKNOWN or
    /// CANCELLED — that coordinator may still be signing, and another one's
    /// signature would be a second signature for one request: the request is
    /// retried on the same coordinator under the same id until the deadline, and
    /// then fails with [`ClientError::InDoubt`], naming the coordinator. The
    /// coordinator's own UNAVAILABLE (too few nodes reachable, or a duplicate still
    /// signing there timed out waiting) is returned at once as
    /// [`ClientError::Unavailable`]. The id is pinned to the coordinator before the
    /// request leaves, until every intent sent under it has expired: a later or
    /// concurrent `sign` with the same `request_id` from this `Client`, even after
    /// the caller gave up on the first, goes to that coordinator only. (Pins live in
    /// this `Client`'s memory: another process, or a restarted one, does not see
    /// them; a coordinator that restarted has forgotten its requests; one that is
    /// compromised can replay the intent anyway, within its validity.)
    pub async fn sign(
        &self,
        key_id: &str,
        message: &[u8],
        options: SignOptions,
    ) -> Result<Signature, ClientError> {
        let started = Instant::now();
        let deadline = options.deadline.unwrap_or(self.deadline);
        if message.is_empty() {
            return Err(ClientError::InvalidInput("the message is empty".into()));
        }
        let request_id = match options.request_id {
            Some(id) => id,
            None => new_request_id()?,
        };
        let approval_token = options.approval_token;
        let intent = self.intent(key_id, message, &request_id, approval_token.as_deref())?;
        let key = tokio::time::timeout(deadline, self.cached_public_key(key_id))
            .await
            .map_err(|_| ClientError::Unavailable {
                deadline_ms: millis(deadline),
                attempts: Vec::new(),
            })??;
        let request = pb::SignRequest {
            key_id: key_id.to_string(),
            message: message.to_vec(),
            request_id: request_id.clone(),
            approval_token: approval_token.unwrap_or_default(),
            intent: Some(intent),
        };
        let left = deadline.saturating_sub(started.elapsed());
        let (response, endpoint) = self
            .sign_failover(left, &request_id, |c, timeout| {
                let mut request = tonic::Request::new(request.clone());
                request.set_timeout(timeout);
                async move {
                    let mut grpc = c.grpc;
                    grpc.sign(request).await.map(tonic::Response::into_inner)
                }
            })
            .await?;
        let ciphersuite = suite(response.ciphersuite, &endpoint)?;
        if ciphersuite != key.ciphersuite {
            return Err(ClientError::BadResponse {
                endpoint,
                message: format!("a {ciphersuite} signature for a {} key", key.ciphersuite),
            });
        }
        if response.key_id != key_id {
            return Err(ClientError::BadResponse {
                endpoint,
                message: format!("asked for key {key_id:?}, got {:?}", response.key_id),
            });
        }
        check_signature(&key, message, &response.signature, &endpoint)?;
        Ok(Signature {
            key_id: response.key_id,
            ciphersuite,
            signature: response.signature,
            signers: response.signers,
            public_key: key.public_key,
            request_id,
            coordinator: endpoint,
        })
    }

    /// Checks `signature` on `message` under `key_id`'s public key.
    pub async fn verify(
        &self,
        key_id: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(PublicKey, Verdict), ClientError> {
        let key = self.public_key(key_id).await?;
        let verdict = match verify(key.ciphersuite, &key.public_key, message, signature) {
            Ok(()) => Verdict::Valid,
            Err(e) => Verdict::Invalid(e),
        };
        Ok((key, verdict))
    }

    fn intent(
        &self,
        key_id: &str,
        message: &[u8],
        request_id: &str,
        approval_token: Option<&[u8]>,
    ) -> Result<pb::Signed, ClientError> {
        let request = IntentRequest {
            key_id,
            message,
            request_id,
            approval_token,
        };
        sign_intent_now(&self.signer, &request, self.intent_validity_secs)
            .map_err(|e| ClientError::Intent(e.to_string()))
    }
}

/// One attempt of `call` on `coordinator`, bounded by `timeout` on this side too
/// (its own deadline goes to the coordinator as the gRPC timeout).
async fn attempt_once<T, F, Fut>(
    call: &F,
    coordinator: Coordinator,
    timeout: Duration,
) -> Result<T, tonic::Status>
where
    F: Fn(Coordinator, Duration) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    match tokio::time::timeout(timeout, call(coordinator, timeout)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "no answer within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// A `grpc.health.v1` check of `coordinator` on its channel, within `timeout`: its
/// answer means the connection is open, so a `Sign` sent next goes on it; its
/// failure means nothing but the check was sent.
async fn probe(coordinator: &Coordinator, timeout: Duration) -> Result<(), tonic::Status> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let mut health = HealthClient::new(coordinator.channel.clone());
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(timeout);
    let answer = tokio::time::timeout(timeout, health.check(request))
        .await
        .map_err(|_| {
            tonic::Status::deadline_exceeded(format!("no answer within {} ms", timeout.as_millis()))
        })??;
    if answer.get_ref().status() == ServingStatus::Serving {
        Ok(())
    } else {
        Err(tonic::Status::unavailable(format!(
            "the coordinator reports {:?}",
            answer.get_ref().status()
        )))
    }
}

/// Refuses a signature that does not verify under `key`.
pub(crate) fn check_signature(
    key: &PublicKey,
    message: &[u8],
    signature: &[u8],
    endpoint: &str,
) -> Result<(), ClientError> {
    verify(key.ciphersuite, &key.public_key, message, signature).map_err(|source| {
        ClientError::InvalidSignature {
            endpoint: endpoint.to_string(),
            key_id: key.key_id.clone(),
            source,
        }
    })
}

/// 128 random bits: unique per request without coordination between clients.
fn new_request_id() -> Result<String, ClientError> {
    use rand_core::RngCore;
    let mut bytes = [0u8; 16];
    rand_core::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| ClientError::Intent(format!("no randomness for a request id: {e}")))?;
    Ok(format!("qc-{}", hex::encode(bytes)))
}

fn suite(value: i32, endpoint: &str) -> Result<Ciphersuite, ClientError> {
    quorate_wire::ciphersuite_from_pb(value).map_err(|e| ClientError::BadResponse {
        endpoint: endpoint.to_string(),
        message: e.to_string(),
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn suite_name<S: serde::Serializer>(suite: &Ciphersuite, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(suite.name())
}

mod hex_bytes {
    pub(super) fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_frost::{LocalQuorum, PackageDelivery};

    fn signed(suite: Ciphersuite, message: &[u8]) -> (PublicKey, Vec<u8>) {
        let names: Vec<String> = (1..=3).map(|i| format!("n{i}")).collect();
        let dealt = suite.ops().split(None, &names, 2).expect("split");
        let quorum = LocalQuorum::new(suite, &dealt, &[0, 1]).expect("quorum");
        let sig = quorum
            .sign(message, PackageDelivery::PerSigner)
            .expect("sign");
        let key = PublicKey {
            key_id: "k".into(),
            ciphersuite: suite,
            public_key: quorum.public_key().to_vec(),
            threshold: 2,
            participants: Vec::new(),
            generation: 0,
        };
        (key, sig)
    }

    #[test]
    fn a_signature_under_another_public_key_is_refused() {
        for suite in Ciphersuite::ALL {
            let (key, sig) = signed(suite, b"pay 10 EUR");
            check_signature(&key, b"pay 10 EUR", &sig, "https://c").expect("own key verifies");
            let (other, _) = signed(suite, b"pay 10 EUR");
            let err = check_signature(&other, b"pay 10 EUR", &sig, "https://c")
                .expect_err("another key's signature is refused");
            assert!(
                matches!(err, ClientError::InvalidSignature { .. }),
                "{suite}: {err}"
            );
            assert!(err.to_string().contains("does not verify"), "{err}");
        }
    }

    #[test]
    fn only_transport_failures_are_retried() {
        for code in [
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::NotFound,
            Code::FailedPrecondition,
            Code::AlreadyExists,
            Code::ResourceExhausted,
        ] {
            assert!(!is_retryable(code), "{code:?}");
        }
        assert!(is_retryable(Code::Unavailable));
        assert!(is_retryable(Code::DeadlineExceeded));
    }

    #[test]
    fn generated_request_ids_differ() {
        assert_ne!(new_request_id().expect("id"), new_request_id().expect("id"));
    }

    /// In-process coordinators over mTLS, with certificates from a test CA, that
    /// answer `Sign` as told and record the request ids they were sent, and answer
    /// `GetPublicKey` with whatever answer they hold.
    mod fake {
        #![allow(clippy::unwrap_used)]

        use std::net::SocketAddr;
        use std::path::Path;
        use std::sync::{Arc, Mutex};

        use quorate_transport::test_ca::{self, Ca};
        use quorate_wire::pb;
        use tonic::transport::server::TcpIncoming;
        use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
        use tonic::{Request, Response, Status};

        #[derive(Clone, Copy, Debug)]
        pub(super) enum Answer {
            /// Takes the request up and never answers.
            Hang,
            /// UNKNOWN, as a lost answer may read.
            Unknown,
            /// Its own UNAVAILABLE (no quorum, or a duplicate still signing).
            Unavailable,
            /// PERMISSION_DENIED: a refusal the client returns as is.
            Refuse,
        }

        #[derive(Clone)]
        pub(super) struct Coordinator {
            answer: Answer,
            pub(super) seen: Arc<Mutex<Vec<String>>>,
            /// The `GetPublicKey` answer (none: UNIMPLEMENTED).
            pub(super) public_key: Arc<Mutex<Option<pb::GetPublicKeyResponse>>>,
        }

        #[tonic::async_trait]
        impl pb::signer_server::Signer for Coordinator {
            async fn sign(
                &self,
                request: Request<pb::SignRequest>,
            ) -> Result<Response<pb::SignResponse>, Status> {
                self.seen
                    .lock()
                    .unwrap()
                    .push(request.get_ref().request_id.clone());
                match self.answer {
                    Answer::Hang => std::future::pending().await,
                    Answer::Unknown => Err(Status::unknown("answer lost")),
                    Answer::Unavailable => Err(Status::unavailable("1 of 3 nodes answered")),
                    Answer::Refuse => Err(Status::permission_denied("refused")),
                }
            }

            async fn get_public_key(
                &self,
                _request: Request<pb::GetPublicKeyRequest>,
            ) -> Result<Response<pb::GetPublicKeyResponse>, Status> {
                self.public_key
                    .lock()
                    .unwrap()
                    .clone()
                    .map(Response::new)
                    .ok_or_else(|| Status::unimplemented("fake"))
            }

            async fn list_keys(
                &self,
                _request: Request<pb::ListKeysRequest>,
            ) -> Result<Response<pb::ListKeysResponse>, Status> {
                Err(Status::unimplemented("fake"))
            }
        }

        /// Serves `coordinator/<name>` answering `answer`; its endpoint.
        pub(super) fn start(ca: &Ca, name: &str, answer: Answer) -> (String, Coordinator) {
            let (cert, key) = test_ca::pem(ca, "coordinator", name);
            let tls = ServerTlsConfig::new()
                .identity(Identity::from_pem(cert, key))
                .client_ca_root(Certificate::from_pem(&ca.pem));
            let fake = Coordinator {
                answer,
                seen: Arc::default(),
                public_key: Arc::default(),
            };
            let incoming = TcpIncoming::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap()).unwrap();
            let addr = incoming.local_addr().unwrap();
            let (_, health) = tonic_health::server::health_reporter();
            tokio::spawn(
                Server::builder()
                    .tls_config(tls)
                    .unwrap()
                    .add_service(health)
                    .add_service(pb::signer_server::SignerServer::new(fake.clone()))
                    .serve_with_incoming(incoming),
            );
            (format!("https://{addr}"), fake)
        }

        /// A client config for `coordinators` (endpoint, certificate name), in order.
        pub(super) fn config(
            ca: &Ca,
            dir: &Path,
            coordinators: &[(&str, &str)],
            deadline_ms: u64,
        ) -> crate::config::ClientConfig {
            let (cert, key) = test_ca::pem(ca, "client", "payments");
            for (file, pem) in [
                ("ca.pem", &ca.pem),
                ("client.pem", &cert),
                ("client-key.pem", &key),
            ] {
                std::fs::write(dir.join(file), pem).unwrap();
            }
            crate::config::ClientConfig {
                coordinators: coordinators
                    .iter()
                    .map(|(endpoint, name)| crate::config::CoordinatorEntry::Named {
                        endpoint: endpoint.to_string(),
                        server_name: Some(name.to_string()),
                    })
                    .collect(),
                ca: dir.join("ca.pem"),
                cert: dir.join("client.pem"),
                key: dir.join("client-key.pem"),
                trust_domain: None,
                deadline_ms,
                intent_validity_secs: 60,
            }
        }
    }

    async fn sign_as(
        client: &Client,
        request_id: &str,
        deadline: Duration,
    ) -> Result<(pb::SignResponse, String), ClientError> {
        let request = pb::SignRequest {
            key_id: "k".into(),
            message: b"pay 10 EUR".to_vec(),
            request_id: request_id.into(),
            ..Default::default()
        };
        client
            .sign_failover(deadline, request_id, |c, timeout| {
                let mut request = tonic::Request::new(request.clone());
                request.set_timeout(timeout);
                async move {
                    let mut grpc = c.grpc;
                    grpc.sign(request).await.map(tonic::Response::into_inner)
                }
            })
            .await
    }

    /// Two fake coordinators, the first answering `answer`, the second refusing
    /// every `Sign`, and a client that tries them in that order.
    struct Pair {
        client: Client,
        first: String,
        taken: fake::Coordinator,
        second: String,
        other: fake::Coordinator,
        _dir: tempfile::TempDir,
    }

    fn pair(answer: fake::Answer, deadline_ms: u64) -> Pair {
        quorate_transport::install_crypto_provider();
        let ca = quorate_transport::test_ca::new_ca("CA");
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, taken) = fake::start(&ca, "first", answer);
        let (second, other) = fake::start(&ca, "second", fake::Answer::Refuse);
        let config = fake::config(
            &ca,
            dir.path(),
            &[(&first, "first"), (&second, "second")],
            deadline_ms,
        );
        Pair {
            client: Client::new(&config).expect("client"),
            first,
            taken,
            second,
            other,
            _dir: dir,
        }
    }

    impl Pair {
        /// The second coordinator was never sent a request the first may be signing.
        fn assert_second_never_asked(&self) {
            assert!(
                self.other.seen.lock().expect("seen").is_empty(),
                "a second coordinator was sent a request the first may be signing"
            );
        }

        /// A new request id goes to the second coordinator (which refuses it).
        async fn assert_new_id_goes_to_second(&self) {
            let err = sign_as(&self.client, "rid-2", Duration::from_millis(5000))
                .await
                .expect_err("refused");
            assert!(
                matches!(err, ClientError::Refused(ref a) if a.endpoint == self.second),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn a_sign_a_coordinator_may_have_taken_up_is_retried_there_and_never_sent_to_another() {
        use fake::Answer;
        for answer in [Answer::Hang, Answer::Unknown] {
            let pair = pair(answer, 1200);
            let (client, first, taken) = (&pair.client, &pair.first, &pair.taken);
            let deadline = Duration::from_millis(1200);
            let err = sign_as(client, "rid-1", deadline)
                .await
                .expect_err("no signature");
            match &err {
                ClientError::InDoubt {
                    endpoint,
                    request_id,
                    ..
                } => {
                    assert_eq!(endpoint, first, "{answer:?}");
                    assert_eq!(request_id, "rid-1");
                }
                other => panic!("{answer:?}: {other}"),
            }
            let seen = taken.seen.lock().expect("seen").clone();
            assert!(
                seen.len() >= 2,
                "{answer:?}: retried on the same coordinator: {seen:?}"
            );
            assert!(seen.iter().all(|id| id == "rid-1"), "{seen:?}");
            // The caller's own retry under that id goes to the same coordinator,
            // though the failed one now rests behind the other.
            let err = sign_as(client, "rid-1", deadline)
                .await
                .expect_err("still no signature");
            assert!(
                matches!(err, ClientError::InDoubt { .. }),
                "{answer:?}: {err}"
            );
            pair.assert_second_never_asked();
            // A new request id goes to the coordinator that did not fail.
            pair.assert_new_id_goes_to_second().await;
        }
    }

    #[tokio::test]
    async fn a_coordinators_own_unavailable_reaches_the_caller_at_once_and_the_id_stays_there() {
        let pair = pair(fake::Answer::Unavailable, 5000);
        let (client, first, taken) = (&pair.client, &pair.first, &pair.taken);
        let deadline = Duration::from_millis(5000);
        let started = Instant::now();
        let err = sign_as(client, "rid-1", deadline)
            .await
            .expect_err("no signature");
        // Too few nodes for a quorum is answered fast (drill kill-3-nodes): no
        // retries until the deadline.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(
            matches!(&err, ClientError::Unavailable { attempts, .. }
                if attempts.len() == 1 && attempts[0].endpoint == *first),
            "{err}"
        );
        assert_eq!(err.code(), Some(Code::Unavailable));
        assert_eq!(taken.seen.lock().expect("seen").len(), 1);
        // The caller's retry under that id goes to the same coordinator only: it
        // may be signing the request (a duplicate that timed out waiting).
        let err = sign_as(client, "rid-1", deadline)
            .await
            .expect_err("still no signature");
        assert_eq!(err.code(), Some(Code::Unavailable), "{err}");
        assert_eq!(taken.seen.lock().expect("seen").len(), 2);
        pair.assert_second_never_asked();
        // A new request id goes to the other coordinator first.
        pair.assert_new_id_goes_to_second().await;
    }

    #[test]
    fn a_pin_lasts_its_lifetime_and_a_full_set_drops_expired_pins_first() {
        let now = Instant::now();
        let mut pins = Pins::default();
        pins.pin("a", 1, now, Duration::from_secs(90));
        assert_eq!(pins.get("a", now), Some(1));
        assert_eq!(pins.get("a", now + Duration::from_secs(89)), Some(1));
        assert_eq!(pins.get("a", now + Duration::from_secs(90)), None);
        pins.settle("a");
        assert_eq!(pins.get("a", now), None);
        for n in 0..PINS_CAPACITY {
            let lifetime = Duration::from_secs(if n == 7 { 1 } else { 90 });
            pins.pin(&format!("id-{n}"), 0, now, lifetime);
        }
        // Full: the expired pin goes, every live one stays.
        pins.pin(
            "new",
            1,
            now + Duration::from_secs(2),
            Duration::from_secs(90),
        );
        assert_eq!(pins.by_id.len(), PINS_CAPACITY);
        assert_eq!(pins.get("id-7", now), None);
        assert_eq!(pins.get("id-8", now), Some(0));
        assert_eq!(pins.get("new", now + Duration::from_secs(2)), Some(1));
    }

    #[tokio::test]
    async fn a_sign_the_caller_gave_up_on_is_retried_only_where_it_went() {
        let pair = pair(fake::Answer::Hang, 5000);
        let (client, first, taken) = (&pair.client, &pair.first, &pair.taken);
        // The caller's own timeout drops the call while the first coordinator
        // holds the request: nothing in the client answered for it.
        let gave_up = tokio::time::timeout(
            Duration::from_millis(600),
            sign_as(client, "rid-1", Duration::from_millis(5000)),
        )
        .await;
        assert!(gave_up.is_err(), "the call should still be waiting");
        assert_eq!(taken.seen.lock().expect("seen").len(), 1);
        // Its retry under the same id goes to the same coordinator only.
        let err = sign_as(client, "rid-1", Duration::from_millis(800))
            .await
            .expect_err("no signature");
        assert!(
            matches!(&err, ClientError::InDoubt { endpoint, .. } if endpoint == first),
            "{err}"
        );
        pair.assert_second_never_asked();
        // Another id is free to go elsewhere.
        pair.assert_new_id_goes_to_second().await;
    }

    #[tokio::test]
    async fn a_sign_that_never_left_goes_to_the_next_coordinator() {
        use fake::Answer;
        quorate_transport::install_crypto_provider();
        let ca = quorate_transport::test_ca::new_ca("CA");
        let dir = tempfile::tempdir().expect("tempdir");
        // Nothing listens: the connection is refused.
        let refused = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("https://{}", l.local_addr().expect("addr"))
        };
        // Accepts TCP and never answers the TLS handshake: the health check
        // before sending finds it out.
        let hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let hole_endpoint = format!("https://{}", hole.local_addr().expect("addr"));
        let (second, taker) = fake::start(&ca, "second", Answer::Refuse);
        let config = fake::config(
            &ca,
            dir.path(),
            &[
                (&refused, "first"),
                (&hole_endpoint, "hole"),
                (&second, "second"),
            ],
            3000,
        );
        let client = Client::new(&config).expect("client");
        let err = sign_as(&client, "rid-3", Duration::from_millis(3000))
            .await
            .expect_err("refused by the fake");
        assert!(
            matches!(err, ClientError::Refused(ref a) if a.endpoint == second),
            "{err}"
        );
        assert_eq!(*taker.seen.lock().expect("seen"), vec!["rid-3".to_string()]);
        drop(hole);
    }

    /// Key `k`'s `GetPublicKey` answer for `manifest`, attested by every
    /// participant with its certificate from `ca`: what an honest coordinator
    /// served at the time.
    fn attested_answer(
        ca: &quorate_transport::test_ca::Ca,
        manifest: &quorate_keys::manifest::Manifest,
    ) -> pb::GetPublicKeyResponse {
        use quorate_transport::{key_attestation, test_ca};
        pb::GetPublicKeyResponse {
            key_id: manifest.key_id.clone(),
            ciphersuite: pb::Ciphersuite::from(manifest.ciphersuite) as i32,
            public_key: manifest.public_key.public_key.clone(),
            threshold: u32::from(manifest.threshold),
            participants: manifest
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
            manifest: manifest.encoded.clone(),
            attestation: manifest
                .participants
                .iter()
                .map(|p| {
                    key_attestation::sign(
                        &test_ca::signer(ca, "node", &p.node_id),
                        &p.node_id,
                        &manifest.key_id,
                        &manifest.hash,
                    )
                    .expect("attestation")
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn a_replayed_pre_refresh_manifest_is_refused_as_a_rollback() {
        use quorate_keys::manifest::{self, Manifest};
        quorate_transport::install_crypto_provider();
        let ca = quorate_transport::test_ca::new_ca("CA");
        let dir = tempfile::tempdir().expect("tempdir");
        let (endpoint, fake) = fake::start(&ca, "first", fake::Answer::Refuse);
        let config = fake::config(&ca, dir.path(), &[(&endpoint, "first")], 3000);
        // Generation 0 with node-1..3, then a refresh that removed node-3.
        let ops = Ciphersuite::Ed25519.ops();
        let participants = |names: &[String]| {
            names
                .iter()
                .map(|n| pb::ManifestParticipant {
                    node_id: n.clone(),
                    region: "r".into(),
                    jurisdiction: "EU".into(),
                })
                .collect::<Vec<_>>()
        };
        let three: Vec<String> = (1..=3).map(|i| format!("node-{i}")).collect();
        let dealt = ops.split(None, &three, 2).expect("split");
        let old = Manifest::decode(&manifest::encode(
            "k",
            Ciphersuite::Ed25519,
            2,
            dealt.public_key_package,
            participants(&three),
            "2026-01-01T00:00:00Z".into(),
            None,
        ))
        .expect("old manifest");
        let two = &three[..2];
        let refreshed = ops.split(None, two, 2).expect("split");
        let new = Manifest::decode(
            &manifest::encode_successor(
                &old,
                refreshed.public_key_package,
                participants(two),
                manifest::TermChanges::default(),
            )
            .expect("successor"),
        )
        .expect("new manifest");
        let serve =
            |m: &Manifest| *fake.public_key.lock().expect("lock") = Some(attested_answer(&ca, m));

        let client = Client::new(&config).expect("client");
        serve(&new);
        let key = client.public_key("k").await.expect("the current manifest");
        assert_eq!(key.generation, 1);
        assert_eq!(key.participants.len(), 2);
        // The coordinator replays the old answer, every attestation genuine.
        serve(&old);
        let err = client.public_key("k").await.expect_err("rollback refused");
        match &err {
            ClientError::BadResponse { message, .. } => {
                assert!(message.contains("rollback"), "{message}");
                assert!(message.contains("generation 0"), "{message}");
                assert!(message.contains("generation 1"), "{message}");
            }
            other => panic!("{other}"),
        }
        // What was accepted stays: the current manifest is still accepted, and
        // the cached key is the refreshed one.
        serve(&new);
        assert_eq!(client.public_key("k").await.expect("current").generation, 1);
        // A client that never saw generation 1 has nothing to hold it to.
        let fresh = Client::new(&config).expect("client");
        serve(&old);
        assert_eq!(fresh.public_key("k").await.expect("old").generation, 0);
    }
}
