//! [`Client`]: signs intents, fails over between coordinators, honours the deadline,
//! and verifies every signature before handing it back.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quorate_frost::Ciphersuite;
use quorate_transport::attest::{StatementSigner, StatementVerifier};
use quorate_transport::intent::{sign_intent, IntentRequest, SignIntent};
use quorate_wire::pb;
use tonic::Code;

use crate::attestation::check_attested;
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
    /// Node ids whose shares make it up.
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
}

/// Codes that say nothing about the request, only about the coordinator or the way
/// to it: another coordinator may well succeed. Everything else (INVALID_ARGUMENT,
/// PERMISSION_DENIED, UNAUTHENTICATED, NOT_FOUND, FAILED_PRECONDITION,
/// ALREADY_EXISTS, RESOURCE_EXHAUSTED — the nodes enforce rate limits, whichever
/// coordinator relays — and the rest) would be answered the same by any of them.
fn is_retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
    )
}

impl Client {
    /// A client for `config`. Connections open lazily, on first use; must be called
    /// within a tokio runtime.
    pub fn new(config: &ClientConfig) -> Result<Self, ClientError> {
        let Connected {
            coordinators,
            signer,
            attestations,
        } = connect(config)?;
        Ok(Self {
            health: Arc::new(Mutex::new(Health::new(coordinators.len()))),
            coordinators: coordinators.into(),
            signer: Arc::new(signer),
            attestations: Arc::new(attestations),
            deadline: config.deadline(),
            intent_validity_secs: config.intent_validity_secs,
            keys: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Runs `call` on coordinators in order of health until one answers, a refusal
    /// any coordinator would repeat comes back, or `deadline` passes. Each attempt
    /// gets an equal share of the time left among the coordinators still to try,
    /// so a coordinator that hangs cannot use up the whole deadline.
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
        let candidates = self
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .candidates(started);
        let mut attempts = Vec::new();
        for (n, &i) in candidates.iter().enumerate() {
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            let share = left / u32::try_from(candidates.len() - n).unwrap_or(u32::MAX);
            let coordinator = self.coordinators[i].clone();
            let endpoint = coordinator.endpoint.clone();
            let outcome = match tokio::time::timeout(share, call(coordinator, share)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                    "no answer within {} ms",
                    share.as_millis()
                ))),
            };
            match outcome {
                Ok(value) => {
                    self.health
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .succeeded(i);
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
                    self.health
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .failed(i, Instant::now());
                    attempts.push(attempt);
                }
            }
        }
        Err(ClientError::Unavailable {
            deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
            attempts,
        })
    }

    /// Every key the coordinators know.
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
    /// the key this returns. Today it takes `GetPublicKey`'s answer as given and
    /// checks only its shape. A coordinator is not trusted, so this is where the
    /// key's attestation (the participants' signed statements over its manifest)
    /// is to be checked before the key is believed.
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
        if let Err(why) = check_attested(&self.attestations, key_id, &response) {
            return Err(ClientError::BadResponse {
                endpoint,
                message: format!("key {key_id:?} is not attested by its participants: {why}"),
            });
        }
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
    /// making another, and any other coordinator's signature is recorded in every
    /// node's audit log under the same request id, signed by this client's intent.
    /// Without an id a retry would be a second request, and the first signature one
    /// the client never saw nor could tell from a signature it did not ask for.
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
            .failover(left, |c, timeout| {
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
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| ClientError::Intent(format!("the clock is before 1970: {e}")))?
            .as_secs();
        let request = IntentRequest {
            key_id,
            message,
            request_id,
            approval_token,
        };
        sign_intent(
            &self.signer,
            &SignIntent::for_request(&request, now, self.intent_validity_secs),
        )
        .map_err(|e| ClientError::Intent(e.to_string()))
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
}
