//! An `EscrowSplit` request as a node receives it, checked at the boundary.

use crate::file::validate_custodian_name;
use crate::MAX_CUSTODIANS;

/// A validated `EscrowSplit` request: the boundary conversion of
/// [`pb::EscrowSplitRequest`](quorate_wire::pb::EscrowSplitRequest).
#[derive(Clone, Debug)]
pub struct SplitRequest {
    /// The key whose share to split.
    pub key_id: String,
    /// Parts needed to recover (`k`).
    pub threshold: u16,
    /// `(custodian name, age recipient)`, in the order given.
    pub custodians: Vec<(String, String)>,
}

impl TryFrom<quorate_wire::pb::EscrowSplitRequest> for SplitRequest {
    type Error = String;

    fn try_from(req: quorate_wire::pb::EscrowSplitRequest) -> Result<Self, String> {
        quorate_wire::validate_key_id(&req.key_id)?;
        let m = req.custodians.len();
        if m < 2 || m > usize::from(MAX_CUSTODIANS) {
            return Err(format!(
                "{m} custodian(s); an escrow needs 2..={MAX_CUSTODIANS}"
            ));
        }
        let threshold = u16::try_from(req.threshold)
            .ok()
            .filter(|k| *k >= 2 && usize::from(*k) <= m)
            .ok_or_else(|| {
                format!(
                    "threshold {} is not within 2..={m} (the number of custodians)",
                    req.threshold
                )
            })?;
        let mut custodians: Vec<(String, String)> = Vec::with_capacity(m);
        for c in req.custodians {
            validate_custodian_name(&c.name)?;
            if custodians.iter().any(|(n, _)| *n == c.name) {
                return Err(format!("custodian {:?} is named twice", c.name));
            }
            if !c.age_recipient.starts_with("age1") {
                return Err(format!(
                    "custodian {:?}: recipient must be an age X25519 recipient (age1…)",
                    c.name
                ));
            }
            custodians.push((c.name, c.age_recipient));
        }
        Ok(Self {
            key_id: req.key_id,
            threshold,
            custodians,
        })
    }
}
