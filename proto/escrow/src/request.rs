//! The boundary conversion of an `EscrowSplit` request.

/// How many of the custodians a refused request named its refusal repeats.
const NAMED_IN_REFUSAL: usize = 8;

/// A caller's string as a refusal repeats it (and the audit log records it): at most
/// 100 bytes of it, cut at a character boundary, without control characters or
/// bidirectional overrides (which could fake or hide lines in a log reader).
fn bounded(s: &str) -> String {
    const MAX_BYTES: usize = 100;
    let shown = |c: &char| {
        !c.is_control() && !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    let mut out = String::new();
    for c in s.chars().filter(shown) {
        if out.len() + c.len_utf8() > MAX_BYTES {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
}

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
            // The message is audited: it names what was asked for, bounded, so a
            // refused request cannot make the audit log hold a megabyte.
            let mut named: Vec<String> = req
                .custodians
                .iter()
                .take(NAMED_IN_REFUSAL)
                .map(|c| format!("{}:{}", bounded(&c.name), bounded(&c.age_recipient)))
                .collect();
            if req.custodians.len() > NAMED_IN_REFUSAL {
                named.push(format!(
                    "and {} more",
                    req.custodians.len() - NAMED_IN_REFUSAL
                ));
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_wire::pb;

    #[test]
    fn a_request_names_the_key_only() {
        let ok = SplitRequest::try_from(pb::EscrowSplitRequest {
            key_id: "k1".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(ok.key_id, "k1");
        let threshold_only = pb::EscrowSplitRequest {
            key_id: "k1".into(),
            threshold: 2,
            ..Default::default()
        };
        assert!(SplitRequest::try_from(threshold_only).is_err());
    }

    #[test]
    fn a_refusal_names_what_was_asked_for_within_bounds() {
        let custodians = (0..1000)
            .map(|i| pb::EscrowCustodian {
                name: format!("c{i}-{}", "x".repeat(5000)),
                age_recipient: format!("age1attacker{i}"),
            })
            .collect();
        let err = SplitRequest::try_from(pb::EscrowSplitRequest {
            key_id: "k1".into(),
            threshold: 2,
            custodians,
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.contains("c0-x") && err.contains("age1attacker0"),
            "{err}"
        );
        assert!(err.contains("and 992 more"), "{err}");
        assert!(err.len() < 2 * 1024, "{} bytes", err.len());
    }

    #[test]
    fn a_refusal_is_bounded_in_bytes_and_repeats_no_control_characters() {
        // Four-byte characters: 100 of them would be 400 bytes per string.
        let custodians = (0..8)
            .map(|i| pb::EscrowCustodian {
                name: format!("c{i}\n\u{1b}[2K\r\u{202e}{}", "\u{1d54f}".repeat(5000)),
                age_recipient: format!("age1\u{0}{}", "\u{1d54f}".repeat(5000)),
            })
            .collect();
        let err = SplitRequest::try_from(pb::EscrowSplitRequest {
            key_id: "k1".into(),
            threshold: 2,
            custodians,
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.len() < 2 * 1024, "{} bytes", err.len());
        assert!(
            !err.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{err:?}"
        );
        assert!(err.contains("c0[2K"), "{err}");
    }
}
