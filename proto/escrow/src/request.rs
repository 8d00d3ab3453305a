//! The boundary conversion of an `EscrowSplit` request.

/// A validated `EscrowSplit` request: the boundary conversion of
/// [`pb::EscrowSplitRequest`](quorate_wire::pb::EscrowSplitRequest).
///
/// It names the key only. The custodians and the threshold are the key manifest's;
/// a request that names either is refused, so no caller can have a node encrypt
/// its share's parts to recipients of the caller's choosing.
#[derive(Clone, Debug)]
pub struct SplitRequest {
    /// The key whose share to split.
    pub key_id: String,
}

impl TryFrom<quorate_wire::pb::EscrowSplitRequest> for SplitRequest {
    type Error = String;

    fn try_from(req: quorate_wire::pb::EscrowSplitRequest) -> Result<Self, String> {
        quorate_wire::validate_key_id(&req.key_id)?;
        if req.threshold != 0 || !req.custodians.is_empty() {
            let named: Vec<String> = req
                .custodians
                .iter()
                .map(|c| format!("{}:{}", c.name, c.age_recipient))
                .collect();
            return Err(format!(
                "the request names escrow custodians [{}] or a threshold ({}); a node escrows \
                 its share only to the custodians and threshold fixed in key {:?}'s manifest, \
                 so the request must name neither",
                named.join(","),
                req.threshold,
                req.key_id
            ));
        }
        Ok(Self { key_id: req.key_id })
    }
}
