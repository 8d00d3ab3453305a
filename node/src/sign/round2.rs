//! FROST round 2 on this node: the request checked against the key and its policy,
//! the nonce taken, the audit record written, the share computed; and the wait for
//! the record's flush before the share may leave.
//!
//! Used by the `Node` gRPC adapter (`SignShare`, `SignShares`). Invariants: the
//! node acts only on the client's own signed intent for exactly this request, and
//! takes the client from it; it enforces the key's policy itself (allowed clients,
//! lawful quorum or a valid approval token, the client's rate), since the
//! coordinator is not trusted to; a
//! nonce is spent only while the audit log can be made durable, by taking it out of
//! the store, so it can never sign twice; no share leaves before its record is on
//! disk; every refusal after the policy checks is recorded too.

use std::sync::Arc;
use std::time::Instant;

use quorate_frost::{ReceivedSigningPackage, SecretNonces};
use quorate_keys::approval;
use quorate_keys::audit::AuditRecord;
use quorate_transport::identity::PeerIdentity;
use quorate_transport::intent::IntentRequest;
use quorate_wire::api;
use quorate_wire::pb;

use crate::audit::PendingRecord;
use crate::error::NodeError;
use crate::key::ActiveKey;
use crate::state::NodeState;

/// An answer and the audit record that must be on disk before it is sent.
#[derive(Debug)]
pub(crate) struct Recorded<T> {
    pub(crate) pending: PendingRecord,
    pub(crate) answer: Result<T, NodeError>,
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

/// The client's intent of a round-2 request, as the node checked it.
type CheckedIntent =
    Result<quorate_transport::intent::VerifiedIntent, quorate_transport::intent::IntentError>;

/// What every record of a round-2 request names: the client is whoever signed the
/// intent, never what the coordinator says.
struct RequestContext {
    message_digest: [u8; 32],
    message_sha256: String,
    attempt: String,
    client_id: String,
    intent_hex: String,
}

impl RequestContext {
    /// The request's context and its intent, checked.
    fn of(state: &NodeState, req: &api::SignShareRequest) -> (Self, CheckedIntent) {
        let message_digest = quorate_wire::sha256(&req.message);
        let attempt = hex::encode(quorate_keys::audit::signing_attempt_id(
            &req.key_id,
            &message_digest,
            req.commitments
                .iter()
                .map(|(id, c)| (id.as_slice(), c.as_slice())),
        ));
        let encoded_intent = req
            .intent
            .as_ref()
            .map(prost::Message::encode_to_vec)
            .unwrap_or_default();
        // A request without the client's own valid intent for exactly this key,
        // message, request id and token is refused, and recorded, before any nonce
        // is touched.
        let verified = state.intents.verify(
            req.intent.as_ref(),
            &IntentRequest {
                key_id: &req.key_id,
                message: &req.message,
                request_id: &req.request_id,
                approval_token: req.approval_token.as_deref(),
            },
        );
        let client_id = match &verified {
            Ok(v) => v.client.spiffe_id(),
            Err(_) => String::new(),
        };
        // A record holds a verified intent whole, so an auditor can check it; of an
        // intent that did not verify, only its SHA-256: whoever sent it must not be
        // able to fill the node's disk with it.
        let intent_hex = match (&verified, encoded_intent.is_empty()) {
            (_, true) => String::new(),
            (Ok(_), false) => hex_of_intent(&encoded_intent),
            (Err(_), false) => format!(
                "sha256:{}",
                hex::encode(quorate_wire::sha256(&encoded_intent))
            ),
        };
        let context = Self {
            message_sha256: hex::encode(message_digest),
            message_digest,
            attempt,
            client_id,
            intent_hex,
        };
        (context, verified)
    }

    /// The `sign_refused` record of this request, naming the signers `quorum` and
    /// why (`detail`).
    fn refusal(
        &self,
        req: &api::SignShareRequest,
        quorum: Vec<String>,
        caller: &PeerIdentity,
        detail: String,
    ) -> AuditRecord {
        AuditRecord {
            event: "sign_refused".into(),
            key_id: req.key_id.clone(),
            client_id: self.client_id.clone(),
            intent: self.intent_hex.clone(),
            request_id: req.request_id.clone(),
            message_sha256: self.message_sha256.clone(),
            quorum,
            attempt: self.attempt.clone(),
            caller: caller.spiffe_id(),
            detail,
            ..Default::default()
        }
    }
}

/// A request for a share of a manifest this node does not hold (the coordinator's
/// directory is behind a refresh, or a node listed a share it lacks): refused
/// (`NOT_FOUND`) and recorded as `sign_refused`, so that an auditor reconciling
/// the attempt finds why no share came from this node.
fn refuse_unheld(
    state: &NodeState,
    req: &api::SignShareRequest,
    caller: &PeerIdentity,
    unheld: NodeError,
) -> Result<Recorded<ShareToSign>, NodeError> {
    let (context, _) = RequestContext::of(state, req);
    // The signers as the node's current manifest names them.
    let current = state.key(&req.key_id)?;
    let quorum = req
        .commitments
        .keys()
        .filter_map(|id| current.manifest.participant_by_identifier(id))
        .map(|p| p.node_id.clone())
        .collect();
    Ok(Recorded {
        pending: state
            .audit
            .insert(context.refusal(req, quorum, caller, unheld.to_string()))?,
        answer: Err(unheld),
    })
}

/// Round 2 up to the audit record: every check, the nonce taken and its record
/// inserted (the record's flush starts now); the share is left to compute
/// ([`compute_share`]). The caller sends the answer only once the record
/// is on disk. `Err` means nothing was recorded (malformed requests).
pub(crate) fn record_share(
    state: &NodeState,
    req: pb::SignShareRequest,
    caller: &PeerIdentity,
) -> Result<Recorded<ShareToSign>, NodeError> {
    let req = api::SignShareRequest::try_from(req).map_err(NodeError::MalformedRequest)?;
    // The epoch the coordinator chose the quorum in: the current share, or a
    // refresh's staged one; while both are held, both policies bind the request.
    let shares = match state.signing_shares(&req.key_id, req.manifest_hash.as_ref()) {
        Ok(shares) => shares,
        Err(unheld @ NodeError::ManifestNotHeld { .. }) => {
            return refuse_unheld(state, &req, caller, unheld)
        }
        Err(e) => return Err(e),
    };
    let key = Arc::clone(&shares.share);
    let manifest = &key.manifest;
    let ops = manifest.ciphersuite.ops();
    if req.commitments.len() < usize::from(manifest.threshold) {
        return Err(NodeError::QuorumTooSmall {
            signers: req.commitments.len(),
            key_id: manifest.key_id.clone(),
            threshold: manifest.threshold,
        });
    }
    let mut signers = Vec::with_capacity(req.commitments.len());
    let mut jurisdictions = Vec::with_capacity(req.commitments.len());
    for id in req.commitments.keys() {
        let p = manifest
            .participant_by_identifier(id)
            .ok_or(NodeError::SignerWithoutShare)?;
        signers.push(p.node_id.clone());
        jurisdictions.push(p.jurisdiction.as_str());
    }
    let own = req
        .commitments
        .get(&key.identifier)
        .ok_or(NodeError::NoOwnCommitment)?;
    // Every other signer's commitment is decoded and checked before any nonce
    // is spent on the package.
    let received = ops
        .receive_signing_package(&req.message, &req.commitments, &key.identifier)
        .map_err(|e| NodeError::BadSigningPackage(e.to_string()))?;
    let (context, verified) = RequestContext::of(state, &req);
    let client_id = &context.client_id;
    let message_digest = context.message_digest;
    let refusal = |detail: String| context.refusal(&req, signers.clone(), caller, detail);
    // A refusal before the nonce is recorded, counted by its reason, and answered.
    let refuse = |reason: &str, refused: NodeError| -> Result<Recorded<ShareToSign>, NodeError> {
        state.metrics.policy_denial(reason);
        Ok(Recorded {
            pending: state.audit.insert(refusal(refused.to_string()))?,
            answer: Err(refused),
        })
    };

    if let Err(e) = verified {
        return refuse("intent_refused", NodeError::IntentRefused(e));
    }

    // The node enforces the key's policy itself: the coordinator is not trusted
    // to have chosen a lawful quorum or an allowed client. While a refresh is
    // staged, the request must satisfy both manifests' policies.
    if !shares
        .policies()
        .all(|policy| policy.allows_client(client_id))
    {
        return refuse(
            "client_not_allowed",
            NodeError::ClientNotAllowed {
                client_id: client_id.clone(),
                key_id: req.key_id.clone(),
            },
        );
    }
    let mut approval_token_id = String::new();
    for policy in shares.policies() {
        let Err(violation) = policy.check_quorum(jurisdictions.iter().copied()) else {
            continue;
        };
        let Some(token) = &req.approval_token else {
            return refuse(
                "unlawful_quorum",
                NodeError::UnlawfulQuorum {
                    violation: violation.to_string(),
                },
            );
        };
        let verified = approval::check(token, &req.key_id, policy, client_id, &message_digest)
            .map(|a| a.token_id);
        match verified {
            // A revoked token is refused like any other, and its record names it.
            Ok(token_id) if state.is_revoked(&req.key_id, &token_id) => {
                state.metrics.policy_denial("approval_revoked");
                let refused = NodeError::ApprovalRefused {
                    violation: violation.to_string(),
                    reason: format!("approval token {token_id:?} was revoked by an approver"),
                };
                let record = AuditRecord {
                    approval_token_id: token_id,
                    ..refusal(refused.to_string())
                };
                return Ok(Recorded {
                    pending: state.audit.insert(record)?,
                    answer: Err(refused),
                });
            }
            Ok(token_id) => approval_token_id = token_id,
            Err(e) => {
                return refuse(
                    "invalid_approval",
                    NodeError::ApprovalRefused {
                        violation: violation.to_string(),
                        reason: e.to_string(),
                    },
                );
            }
        }
    }
    // A nonce is spent only if its record can be made durable: once a flush or
    // a write of the audit log has failed, the node refuses round 2
    // (UNAVAILABLE, so the coordinator asks another node) and keeps its nonces
    // unspent. (Should the log break between this check and the insert below,
    // the nonce is dropped unused: no share is computed without a record.)
    state.audit.check_writable()?;
    // Taking the nonce out of the store is what makes it single-use: whatever
    // happens next, it cannot be used again.
    let spent_commitment = quorate_keys::audit::spent_commitment_detail(own);
    let nonces = state
        .nonces
        .take(&req.key_id, own)
        .ok_or(NodeError::CommitmentNotIssued)?;
    // The client's rate is charged only for a request that can use its nonce,
    // so a request refused above (or for a stale commitment, which sends the
    // coordinator back to two rounds) does not count against it; and once per
    // message, so that the coordinator's retry with another quorum, after a
    // node of the first failed, costs nothing here. A request refused here has
    // spent its nonce unused (the coordinator never sends a commitment twice,
    // so nothing is lost); its record names the commitment, so that an auditor
    // can account for every one this node issued.
    let rate_limit = quorate_keys::policy::tightest_rate_limit(shares.policies());
    if let Err(retry) = state
        .rate
        .check_message(&req.key_id, client_id, rate_limit, message_digest)
    {
        state.metrics.policy_denial("rate_limited");
        let refused = NodeError::RateLimited {
            client_id: client_id.clone(),
            limit: rate_limit,
            key_id: req.key_id.clone(),
            retry_secs: retry.as_secs().max(1),
        };
        // The commitment first, as in a `sign_share` record's detail, so that an
        // auditor reads both the same way.
        let record = AuditRecord {
            approval_token_id: approval_token_id.clone(),
            ..refusal(format!("{spent_commitment} spent unused; {refused}"))
        };
        return Ok(Recorded {
            pending: state.audit.insert(record)?,
            answer: Err(refused),
        });
    }

    // The record of the spent nonce goes in before the share is computed, so
    // its flush runs meanwhile. It takes the request's fields (the intent alone is
    // kilobytes): nothing after it needs them.
    let RequestContext {
        client_id,
        intent_hex,
        message_sha256,
        attempt,
        ..
    } = context;
    let pending = state.audit.insert(AuditRecord {
        event: "sign_share".into(),
        key_id: req.key_id,
        client_id,
        intent: intent_hex,
        request_id: req.request_id,
        message_sha256,
        quorum: signers,
        attempt,
        approval_token_id,
        caller: caller.spiffe_id(),
        // Which nonce was spent (an auditor, and the crash drill, can check that
        // no commitment was ever used twice) and with which manifest's share.
        detail: format!(
            "{spent_commitment}; manifest_sha256={}",
            hex::encode(manifest.hash)
        ),
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
pub(crate) fn compute_share(
    state: &NodeState,
    share: ShareToSign,
) -> Result<pb::SignShareResponse, NodeError> {
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
    let share = injected_fault(state, &key, share)?;
    Ok(pb::SignShareResponse {
        signature_share: share,
    })
}

/// Lower-case hex of an encoded intent, as `hex::encode` gives it: the intent is a
/// kilobyte or more on every share, and `hex::encode` collects its string through
/// a `char` iterator, several times slower than pushing ASCII digits into a string
/// of the final size.
fn hex_of_intent(encoded: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(encoded.len() * 2);
    for byte in encoded {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
#[test]
fn hex_of_intent_is_hex_encode() {
    let bytes: Vec<u8> = (0..=255).collect();
    assert_eq!(hex_of_intent(&bytes), hex::encode(&bytes));
    assert_eq!(hex_of_intent(&[]), "");
}

/// Round 2 for one or more requests ([`record_share`], then
/// [`compute_share`]): every record first, then every share, so that the
/// records' flush runs while the shares are computed.
pub(crate) fn sign_shares(
    state: &NodeState,
    requests: Vec<pb::SignShareRequest>,
    caller: &PeerIdentity,
) -> Vec<Result<Recorded<pb::SignShareResponse>, NodeError>> {
    let recorded: Vec<_> = requests
        .into_iter()
        .map(|r| record_share(state, r, caller))
        .collect();
    recorded
        .into_iter()
        .map(|r| r.map(|r| r.and_then(|share| compute_share(state, share))))
        .collect()
}

/// Lets a round-2 answer leave: waits until its audit record is on disk, then
/// counts it (as a `SignShare`, whichever call carried it) and logs it. `started`
/// is when the call that carried it arrived.
pub(crate) async fn issue_share(
    state: &NodeState,
    recorded: Result<Recorded<pb::SignShareResponse>, NodeError>,
    started: Instant,
) -> Result<pb::SignShareResponse, NodeError> {
    let result = match recorded {
        Ok(Recorded { pending, answer }) => state
            .audit
            .durable(pending)
            .await
            .and_then(|record| answer.inspect(|_| share_issued(state, &record))),
        Err(e) => Err(e),
    };
    state.metrics.request("SignShare", &result);
    if result.is_ok() {
        state.metrics.sign_latency(started.elapsed());
    }
    result
}

/// Counts and logs a share as it leaves the node, after its record is on disk (so
/// neither the metric nor the log claims a share the audit log may lack).
fn share_issued(state: &NodeState, record: &AuditRecord) {
    if !record.approval_token_id.is_empty() {
        state.metrics.failover();
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

/// The share as the drill config (`[danger]`) says to send it: corrupt for the
/// malicious-signer drill, as computed otherwise.
#[cfg(feature = "fault-injection")]
fn injected_fault(
    state: &NodeState,
    key: &ActiveKey,
    share: Vec<u8>,
) -> Result<Vec<u8>, NodeError> {
    if !state.danger.corrupt_signature_shares {
        return Ok(share);
    }
    quorate_frost::danger::corrupt_share(key.manifest.ciphersuite, &share)
        .map_err(|e| NodeError::Internal(e.to_string()))
}

/// Builds without the cargo feature `fault-injection` (release images) send every
/// share as computed; their config cannot ask otherwise.
#[cfg(not(feature = "fault-injection"))]
fn injected_fault(_: &NodeState, _: &ActiveKey, share: Vec<u8>) -> Result<Vec<u8>, NodeError> {
    Ok(share)
}
