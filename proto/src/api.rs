//! Domain types of the public `Signer` API, parsed from protobuf at the boundary.
//! Anything that fails here is the caller's mistake: `INVALID_ARGUMENT`.

use crate::pb;

/// Longest `request_id`, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// A validated `Sign` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignRequest {
    /// Key to sign with.
    pub key_id: String,
    /// Message, 1..=[`crate::MAX_MESSAGE_BYTES`] bytes.
    pub message: Vec<u8>,
    /// Idempotency key, if given.
    pub request_id: Option<String>,
    /// Signed approval for an out-of-policy quorum, if given.
    pub approval_token: Option<Vec<u8>>,
}

impl TryFrom<pb::SignRequest> for SignRequest {
    type Error = String;

    fn try_from(req: pb::SignRequest) -> Result<Self, String> {
        crate::validate_key_id(&req.key_id)?;
        if req.message.is_empty() {
            return Err("message is empty".into());
        }
        if req.message.len() > crate::MAX_MESSAGE_BYTES {
            return Err(format!(
                "message is {} bytes; the limit is {} bytes (sign a digest of larger data)",
                req.message.len(),
                crate::MAX_MESSAGE_BYTES
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
        assert!(SignRequest::try_from(req("k", vec![0; crate::MAX_MESSAGE_BYTES])).is_ok());
        assert!(SignRequest::try_from(req("k", vec![])).is_err());
        assert!(SignRequest::try_from(req("k", vec![0; crate::MAX_MESSAGE_BYTES + 1])).is_err());
        assert!(SignRequest::try_from(req("", vec![1])).is_err());
        assert!(SignRequest::try_from(req("a/b", vec![1])).is_err());
    }
}
