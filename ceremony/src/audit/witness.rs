//! Checking a node's log against what other nodes witnessed of it
//! (`audit verify --witness ID=URL`): each witness serves (`Audit.GetWitnessed`)
//! the latest checkpoint of the node it cosigned and any evidence of an
//! inconsistency it holds. The auditor verifies the witness key's attestation by
//! the witness's own certificate, the cosignature under it and the node's
//! signature under the node's attested log key, and requires the node's current
//! checkpoint to extend the witnessed one (the node's RFC 9162 consistency proof).
//!
//! A witnessed checkpoint the node's log does not extend is a [`Finding`] of kind
//! [`FindingKind::Witnessed`], and so is a witness's evidence against the node,
//! but only through a checkpoint in it that the node signed and its log does not
//! extend: a witness's word alone is no proof. A witness that cannot be read, whose
//! answer does not verify, or whose evidence proves nothing is an [`AuditError`]
//! (the audit could not be completed) naming the witness.

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
        // A witness's evidence is its word, and one node's word must not make
        // another look doctored: it is a finding only through what it holds that
        // the node signed, a checkpoint under the node's log key that the node's
        // log does not extend. Evidence that proves nothing of the kind (another
        // log key's checkpoint is judged below, from the witness's cosigned state
        // and its attestation) is the witness's fault, not the node's.
        let mut unproven = None;
        if !log.evidence.is_empty() {
            let evidence: serde_json::Value = serde_json::from_slice(&log.evidence)
                .map_err(|e| bad(format!("its evidence is not JSON: {e}")))?;
            let reason = evidence["reason"]
                .as_str()
                .unwrap_or("(no reason given)")
                .to_string();
            for held in ["cosigned", "served"] {
                let Some(checkpoint) = evidence[held]
                    .as_str()
                    .and_then(|note| log_key.verify(note).ok())
                else {
                    continue;
                };
                let current =
                    current_for(&mut node, node_id, &log_key, observed, &checkpoint).await?;
                if let Some(message) = extends(&mut node, node_id, &current, &checkpoint).await? {
                    return Ok(Err(finding(format!(
                        "witness {witness} holds evidence that its audit log is not the one it \
                         cosigned: {reason}; it holds the node's signed checkpoint of {} \
                         records, and {message}",
                        checkpoint.size
                    ))));
                }
            }
            unproven = Some(bad(format!(
                "it holds evidence against {node_id} ({reason}) that does not verify: no \
                 checkpoint in it signed by {node_id}'s log key is left unextended by \
                 {node_id}'s log"
            )));
        }
        if log.cosigned.is_empty() {
            if let Some(unproven) = unproven {
                return Err(unproven);
            }
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
        let current = current_for(&mut node, node_id, &log_key, observed, &witnessed).await?;
        if let Some(message) = extends(&mut node, node_id, &current, &witnessed).await? {
            return Ok(Err(finding(format!(
                "witness {witness} cosigned its checkpoint of {} records at {time} (Unix \
                 seconds), and {message}",
                witnessed.size
            ))));
        }
        if let Some(unproven) = unproven {
            return Err(unproven);
        }
        lines.push(format!(
            "witness {witness}: cosigned checkpoint of {} records extended",
            witnessed.size
        ));
    }
    Ok(Ok(lines))
}

/// The node's checkpoint to judge `witnessed` against: the one read with its log,
/// or, if `witnessed` is larger (the node grew since it was read), its latest.
async fn current_for(
    node: &mut pb::audit_client::AuditClient<tonic::transport::Channel>,
    node_id: &str,
    log_key: &LogVerifier,
    observed: &Observed,
    witnessed: &Checkpoint,
) -> Result<Checkpoint, AuditError> {
    if witnessed.size > observed.checkpoint.size {
        latest(node, node_id, log_key).await
    } else {
        Ok(observed.checkpoint.clone())
    }
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
