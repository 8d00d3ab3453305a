//! Domain types of the public `Signer` API and of the node's round RPCs, parsed from
//! protobuf at the boundary. Anything that fails here is the caller's mistake:
//! `INVALID_ARGUMENT`.

use std::collections::BTreeMap;

use crate::pb;

/// Longest `request_id`, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// Most commitments one `Commit` call may ask for.
pub const MAX_COMMITMENTS_PER_CALL: u32 = 64;

/// Most round-2 requests one `SignShares` batch may carry. A node signs a batch's
/// requests one after another, so this bounds how long one batch holds a thread of
/// the node (64 shares are some tens of milliseconds of curve arithmetic).
pub const MAX_SHARES_PER_BATCH: usize = 64;

/// Most `SignShares` batches of one stream a node signs at once; later batches
/// wait, unread, in the stream's flow-control window. A coordinator keeps two in
/// flight per node.
pub const MAX_BATCHES_IN_FLIGHT_PER_STREAM: usize = 4;

/// Metadata key of the `UNAVAILABLE` a node answers while it shuts down: the node
/// is going away and refuses new work, which says nothing about its health (a
/// coordinator stops choosing it until it answers again, without counting a failure).
pub const GOING_AWAY_METADATA: &str = "quorate-going-away";

/// The `UNAVAILABLE` (marked [`GOING_AWAY_METADATA`]) a node answers new work with
/// while it shuts down.
pub fn going_away_status(message: &str) -> tonic::Status {
    let mut status = tonic::Status::unavailable(message);
    status.metadata_mut().insert(
        GOING_AWAY_METADATA,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    status
}

/// A validated `Sign` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignRequest {
    /// Key to sign with.
    pub key_id: String,
    /// Message, 1..=[`crate::limits::MAX_MESSAGE_BYTES`] bytes.
    pub message: Vec<u8>,
    /// Idempotency key, if given.
    pub request_id: Option<String>,
    /// Signed approval for an out-of-policy quorum, if given.
    pub approval_token: Option<Vec<u8>>,
    /// The client's signed intent, checked by whoever acts on the request.
    pub intent: Option<pb::Signed>,
}

impl TryFrom<pb::SignRequest> for SignRequest {
    type Error = String;

    fn try_from(req: pb::SignRequest) -> Result<Self, String> {
        crate::limits::validate_key_id(&req.key_id)?;
        if req.message.is_empty() {
            return Err("message is empty".into());
        }
        if req.message.len() > crate::limits::MAX_MESSAGE_BYTES {
            return Err(format!(
                "message is {} bytes; the limit is {} bytes (sign a digest of larger data)",
                req.message.len(),
                crate::limits::MAX_MESSAGE_BYTES
            ));
        }
        if req.request_id.len() > MAX_REQUEST_ID_BYTES {
            return Err(format!(
                "request_id is longer than {MAX_REQUEST_ID_BYTES} bytes"
            ));
        }
        Ok(Self {
            key_id: req.key_id,
            message: req.message,
            request_id: (!req.request_id.is_empty()).then_some(req.request_id),
            approval_token: (!req.approval_token.is_empty()).then_some(req.approval_token),
            intent: checked_intent(req.intent)?,
        })
    }
}

/// The intent, if its sizes are within the limits ([`crate::limits::check_intent_size`]).
fn checked_intent(intent: Option<pb::Signed>) -> Result<Option<pb::Signed>, String> {
    if let Some(i) = &intent {
        crate::limits::check_intent_size(i)?;
    }
    Ok(intent)
}

/// A validated round-1 `Commit` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitRequest {
    /// Key to commit for.
    pub key_id: String,
    /// Commitments wanted, 1..=[`MAX_COMMITMENTS_PER_CALL`].
    pub count: u32,
}

impl TryFrom<pb::CommitRequest> for CommitRequest {
    type Error = String;

    fn try_from(req: pb::CommitRequest) -> Result<Self, String> {
        if req.count == 0 || req.count > MAX_COMMITMENTS_PER_CALL {
            return Err(format!(
                "count must be within 1..={MAX_COMMITMENTS_PER_CALL}"
            ));
        }
        crate::limits::validate_key_id(&req.key_id)?;
        Ok(Self {
            key_id: req.key_id,
            count: req.count,
        })
    }
}

/// A validated round-2 `SignShare` request. Identifiers and commitments stay bytes
/// here: they are decoded in the key's ciphersuite once the key is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignShareRequest {
    /// Key to sign with.
    pub key_id: String,
    /// The message, 1..=[`crate::limits::MAX_MESSAGE_BYTES`] bytes.
    pub message: Vec<u8>,
    /// The quorum's commitments by FROST identifier (one entry per signer).
    pub commitments: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The client's request id (may be empty).
    pub request_id: String,
    /// The client's signed intent, as the client sent it.
    pub intent: Option<pb::Signed>,
    /// Approval token for an out-of-policy quorum, if given.
    pub approval_token: Option<Vec<u8>>,
    /// SHA-256 of the manifest whose share signs; `None`: the key's current one.
    pub manifest_hash: Option<[u8; 32]>,
}

impl SignShareRequest {
    /// The protobuf request.
    pub fn to_pb(&self) -> pb::SignShareRequest {
        pb::SignShareRequest {
            key_id: self.key_id.clone(),
            message: self.message.clone(),
            commitments: signer_commitments(&self.commitments),
            request_id: self.request_id.clone(),
            intent: self.intent.clone(),
            approval_token: self.approval_token.clone().unwrap_or_default(),
            manifest_hash: self.manifest_hash.map(Vec::from).unwrap_or_default(),
        }
    }
}

/// The protobuf form of a quorum's commitments (identifier -> commitments).
pub fn signer_commitments(commitments: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<pb::SignerCommitments> {
    commitments
        .iter()
        .map(|(identifier, commitments)| pb::SignerCommitments {
            identifier: identifier.clone(),
            commitments: commitments.clone(),
        })
        .collect()
}

impl TryFrom<pb::SignShareRequest> for SignShareRequest {
    type Error = String;

    fn try_from(req: pb::SignShareRequest) -> Result<Self, String> {
        crate::limits::validate_key_id(&req.key_id)?;
        if req.message.is_empty() || req.message.len() > crate::limits::MAX_MESSAGE_BYTES {
            return Err(format!(
                "message must be 1..={} bytes",
                crate::limits::MAX_MESSAGE_BYTES
            ));
        }
        if req.commitments.is_empty() {
            return Err("no commitments: the quorum is empty".into());
        }
        let mut commitments = BTreeMap::new();
        for c in req.commitments {
            if c.identifier.is_empty() || c.commitments.is_empty() {
                return Err("a signer's identifier or commitments are empty".into());
            }
            if commitments.insert(c.identifier, c.commitments).is_some() {
                return Err("a signer is listed twice in the quorum".into());
            }
        }
        if req.request_id.len() > MAX_REQUEST_ID_BYTES {
            return Err(format!(
                "request_id is longer than {MAX_REQUEST_ID_BYTES} bytes"
            ));
        }
        let manifest_hash = match req.manifest_hash.len() {
            0 => None,
            _ => Some(
                <[u8; 32]>::try_from(req.manifest_hash.as_slice()).map_err(|_| {
                    format!(
                        "manifest_hash must be empty or a SHA-256 (32 bytes), not {} bytes",
                        req.manifest_hash.len()
                    )
                })?,
            ),
        };
        Ok(Self {
            key_id: req.key_id,
            message: req.message,
            commitments,
            request_id: req.request_id,
            intent: checked_intent(req.intent)?,
            approval_token: (!req.approval_token.is_empty()).then_some(req.approval_token),
            manifest_hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key_id: &str, message: Vec<u8>) -> pb::SignRequest {
        pb::SignRequest {
            key_id: key_id.into(),
            message,
            ..Default::default()
        }
    }

    #[test]
    fn limits_are_enforced_at_the_boundary() {
        assert!(SignRequest::try_from(req("k", vec![1])).is_ok());
        assert!(SignRequest::try_from(req("k", vec![0; crate::limits::MAX_MESSAGE_BYTES])).is_ok());
        assert!(SignRequest::try_from(req("k", vec![])).is_err());
        assert!(
            SignRequest::try_from(req("k", vec![0; crate::limits::MAX_MESSAGE_BYTES + 1])).is_err()
        );
        assert!(SignRequest::try_from(req("", vec![1])).is_err());
        assert!(SignRequest::try_from(req("a/b", vec![1])).is_err());
    }

    fn share(key_id: &str) -> pb::SignShareRequest {
        pb::SignShareRequest {
            key_id: key_id.into(),
            message: vec![1],
            commitments: vec![pb::SignerCommitments {
                identifier: vec![1],
                commitments: vec![2],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn node_round_requests_refuse_malformed_key_ids() {
        for key_id in ["", "a/b", &"k".repeat(crate::limits::MAX_KEY_ID_BYTES + 1)] {
            let commit = pb::CommitRequest {
                key_id: key_id.into(),
                count: 1,
            };
            assert!(CommitRequest::try_from(commit).is_err(), "{key_id:?}");
            assert!(
                SignShareRequest::try_from(share(key_id)).is_err(),
                "{key_id:?}"
            );
        }
        let ok = SignShareRequest::try_from(share("k")).unwrap();
        assert_eq!(ok.approval_token, None);
        assert_eq!(SignShareRequest::try_from(ok.to_pb()).unwrap(), ok);
    }

    #[test]
    fn round2_requests_refuse_an_empty_message_or_quorum_and_duplicate_signers() {
        let mut empty_message = share("k");
        empty_message.message.clear();
        let mut long_message = share("k");
        long_message.message = vec![0; crate::limits::MAX_MESSAGE_BYTES + 1];
        let mut no_quorum = share("k");
        no_quorum.commitments.clear();
        let mut twice = share("k");
        twice.commitments.push(twice.commitments[0].clone());
        let mut empty_commitment = share("k");
        empty_commitment.commitments[0].commitments.clear();
        for (what, req) in [
            ("empty message", empty_message),
            ("oversized message", long_message),
            ("empty quorum", no_quorum),
            ("signer listed twice", twice),
            ("empty commitment", empty_commitment),
        ] {
            assert!(SignShareRequest::try_from(req).is_err(), "{what}");
        }
    }
}
