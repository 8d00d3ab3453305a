//! Checking a node's log against what other nodes witnessed of it
//! (`audit verify --witness ID=URL`): each witness serves (`Audit.GetWitnessed`)
//! the latest checkpoint of the node it cosigned and any evidence of an
//! inconsistency it holds. The auditor verifies the witness key's attestation by
//! the witness's own certificate, the cosignature under it and the node's
//! signature under the node's attested log key, and requires the node's current
//! checkpoint to extend the witnessed one (the node's RFC 9162 consistency proof).
//!
//! A witness holding evidence against the node, or a witnessed checkpoint the
//! node's log does not extend, is a [`Finding`] of kind
//! [`FindingKind::Witnessed`]; a witness that cannot be read or whose answer does
//! not verify is an [`AuditError`] (the audit could not be completed).

use quorate_keys::checkpoint::{Checkpoint, LogVerifier, LOG_KEY_STATEMENT};
use quorate_keys::cosignature::{witness_name, WitnessVerifier, WITNESS_KEY_STATEMENT};
use quorate_keys::merkle::verify_consistency;
use quorate_transport::tls::TlsPaths;
use quorate_wire::pb;

use super::history::{Finding, FindingKind, Observed};
use super::{client, AuditError};

/// A witness to ask: its node id and endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessEndpoint {
    /// The witness's node id (its certificate's name, which the connection is
    /// pinned to).
    pub node_id: String,
    /// `https://host:port`.
    pub endpoint: String,
}

impl std::str::FromStr for WitnessEndpoint {
    type Err = String;

    /// `ID=https://host:port`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (node_id, endpoint) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not ID=https://host:port"))?;
        if node_id.is_empty() || !endpoint.starts_with("https://") {
            return Err(format!(
                "{s:?} is not ID=https://host:port (the witness is read over mTLS, pinned \
                 to its node certificate)"
            ));
        }
        Ok(Self {
            node_id: node_id.to_string(),
            endpoint: endpoint.to_string(),
        })
    }
}

/// Checks node `node_id`'s log (as `observed`, read from `endpoint`) against every
/// witness in `witnesses`. Returns one line per witness saying what was checked,
/// or the first finding.
pub async fn check(
    node_id: &str,
    endpoint: &str,
    observed: &Observed,
    witnesses: &[WitnessEndpoint],
    tls: &TlsPaths,
) -> Result<Result<Vec<String>, Finding>, AuditError> {
    let material = tls.load().map_err(|e| AuditError::Tls(e.to_string()))?;
    let trust_domain = material.identity().trust_domain.clone();
    let statements = material
        .statement_verifier()
        .map_err(|e| AuditError::Tls(e.to_string()))?;
    let log_key = LogVerifier::parse(&observed.log_key).map_err(|e| AuditError::Checkpoint {
        node: node_id.to_string(),
        reason: e.to_string(),
    })?;
    let mut node = client(endpoint, node_id, tls)?;
    let mut lines = Vec::with_capacity(witnesses.len());
    for w in witnesses {
        let witness = &w.node_id;
        let bad = |reason: String| AuditError::Witness {
            witness: witness.clone(),
            node: node_id.to_string(),
            reason,
        };
        let finding = |message: String| Finding {
            node: node_id.to_string(),
            kind: FindingKind::Witnessed,
            message,
        };
        let served = client(&w.endpoint, witness, tls)?
            .get_witnessed(pb::GetWitnessedRequest {})
            .await
            .map_err(|status| AuditError::Read {
                node: witness.clone(),
                status,
            })?
            .into_inner();
        let attestation = served
            .witness_key
            .ok_or_else(|| bad("no attestation of its witness key".into()))?;
        statements
            .verify(&attestation, WITNESS_KEY_STATEMENT, witness)
            .map_err(|e| bad(format!("its witness key's attestation: {e}")))?;
        let vkey = String::from_utf8(attestation.body)
            .map_err(|_| bad("the attested witness key is not text".into()))?;
        let cosigner = WitnessVerifier::parse(&vkey).map_err(|e| bad(e.to_string()))?;
        let expected = witness_name(&trust_domain, witness);
        if cosigner.name() != expected {
            return Err(bad(format!(
                "its witness key is named {:?}, not {expected:?}",
                cosigner.name()
            )));
        }
        let log = served
            .logs
            .into_iter()
            .find(|l| l.node_id == node_id)
            .ok_or_else(|| bad("it does not witness this node".into()))?;
        if !log.evidence.is_empty() {
            let evidence: serde_json::Value = serde_json::from_slice(&log.evidence)
                .map_err(|e| bad(format!("its evidence is not JSON: {e}")))?;
            return Ok(Err(finding(format!(
                "witness {witness} holds evidence that its audit log is not the one it \
                 cosigned: {}",
                evidence["reason"].as_str().unwrap_or("(no reason given)")
            ))));
        }
        if log.cosigned.is_empty() {
            lines.push(format!(
                "witness {witness}: has not cosigned a checkpoint of {node_id} yet"
            ));
            continue;
        }
        let note =
            String::from_utf8(log.cosigned).map_err(|_| bad("its note is not text".into()))?;
        let time = cosigner
            .verify(&note)
            .map_err(|e| bad(format!("its cosignature: {e}")))?;
        let witnessed = match log_key.verify(&note) {
            Ok(checkpoint) => checkpoint,
            Err(_) => {
                // Signed by the node under another key it attested: the node's log
                // key changed since the witness cosigned.
                let other = log
                    .log_key
                    .ok_or_else(|| bad("no attestation of the log key it cosigned".into()))?;
                statements
                    .verify(&other, LOG_KEY_STATEMENT, node_id)
                    .map_err(|e| bad(format!("the log key it cosigned: {e}")))?;
                let other = String::from_utf8(other.body)
                    .ok()
                    .and_then(|k| LogVerifier::parse(&k).ok())
                    .ok_or_else(|| bad("the log key it cosigned does not parse".into()))?;
                let checkpoint = other
                    .verify(&note)
                    .map_err(|e| bad(format!("the checkpoint it cosigned: {e}")))?;
                return Ok(Err(finding(format!(
                    "witness {witness} cosigned its checkpoint of {} records signed by \
                     another log key than the one it signs with now",
                    checkpoint.size
                ))));
            }
        };
        // The node may have grown since its checkpoint was read: judge against its
        // latest one then.
        let mut current = observed.checkpoint.clone();
        if witnessed.size > current.size {
            current = latest(&mut node, node_id, &log_key).await?;
        }
        if let Some(message) = extends(&mut node, node_id, &current, &witnessed).await? {
            return Ok(Err(finding(format!(
                "witness {witness} cosigned its checkpoint of {} records at {time} (Unix \
                 seconds), and {message}",
                witnessed.size
            ))));
        }
        lines.push(format!(
            "witness {witness}: cosigned checkpoint of {} records extended",
            witnessed.size
        ));
    }
    Ok(Ok(lines))
}

async fn latest(
    node: &mut pb::audit_client::AuditClient<tonic::transport::Channel>,
    node_id: &str,
    log_key: &LogVerifier,
) -> Result<Checkpoint, AuditError> {
    let served = node
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await
        .map_err(|status| AuditError::Read {
            node: node_id.to_string(),
            status,
        })?
        .into_inner();
    let bad = |reason: String| AuditError::Checkpoint {
        node: node_id.to_string(),
        reason,
    };
    let note = String::from_utf8(served.note).map_err(|_| bad("not text".into()))?;
    log_key.verify(&note).map_err(|e| bad(e.to_string()))
}

/// `None` if `current` extends `witnessed` (by the node's consistency proof), else
/// why not.
async fn extends(
    node: &mut pb::audit_client::AuditClient<tonic::transport::Channel>,
    node_id: &str,
    current: &Checkpoint,
    witnessed: &Checkpoint,
) -> Result<Option<String>, AuditError> {
    if witnessed.size > current.size {
        return Ok(Some(format!(
            "its log now has only {} records: records were removed",
            current.size
        )));
    }
    if witnessed.size == current.size {
        return Ok((witnessed.root != current.root).then(|| {
            "its log of that size now has another root: records were changed".to_string()
        }));
    }
    let proof = match node
        .get_consistency_proof(pb::ConsistencyProofRequest {
            first: witnessed.size,
            second: current.size,
        })
        .await
    {
        Ok(p) => p.into_inner().hashes,
        // The node's own answer about the tree sizes (it has no tree of the
        // witnessed size); anything else is a failed read, not a finding.
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::OutOfRange | tonic::Code::InvalidArgument
            ) =>
        {
            return Ok(Some(format!(
                "it refuses a consistency proof to its checkpoint of {} records: {}",
                current.size,
                status.message()
            )))
        }
        Err(status) => {
            return Err(AuditError::Read {
                node: node_id.to_string(),
                status,
            })
        }
    };
    let proof: Option<Vec<[u8; 32]>> = proof
        .iter()
        .map(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
        .collect();
    let consistent = proof.is_some_and(|p| {
        verify_consistency(
            witnessed.size,
            current.size,
            &witnessed.root,
            &current.root,
            &p,
        )
    });
    Ok((!consistent).then(|| {
        format!(
            "its checkpoint of {} records does not extend it: records were changed",
            current.size
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_witness_is_an_id_and_an_https_endpoint() {
        let w: WitnessEndpoint = "node-4=https://127.0.0.1:7104".parse().unwrap();
        assert_eq!(w.node_id, "node-4");
        assert_eq!(w.endpoint, "https://127.0.0.1:7104");
        for bad in ["node-4", "=https://h:1", "node-4=http://h:1", "https://h:1"] {
            assert!(bad.parse::<WitnessEndpoint>().is_err(), "{bad}");
        }
    }
}
