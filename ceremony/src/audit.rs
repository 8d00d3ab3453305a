//! Reading and checking a node's audit log, as an auditor (role `auditor`): its
//! hash chain, its signed checkpoint (under the log key the node's certificate
//! attests), against what the auditor saw last time, its history
//! ([`history`]), and against what other nodes witnessed of it ([`witness`]).

use std::time::Duration;

use quorate_keys::audit::{verify_chain, AuditRecord, ChainBreak};
use quorate_keys::checkpoint::{LogVerifier, LOG_KEY_STATEMENT};
use quorate_transport::attest::StatementVerifier;
use quorate_transport::tls::TlsPaths;
use quorate_wire::pb;

pub mod export;
pub mod history;
pub mod reconcile;
pub mod witness;

use history::Observed;

/// Why an audit could not be completed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// TLS material or endpoint problem.
    #[error("{0}")]
    Tls(String),
    /// The node refused or failed the read.
    #[error("reading the audit log of {node}: {status}")]
    Read {
        /// Node id.
        node: String,
        /// What it said.
        status: tonic::Status,
    },
    /// A share record's client intent does not verify, or names another client.
    #[error("{node}: record {seq} ({event} on key {key_id:?}): its client intent {reason}")]
    Intent {
        /// Node id.
        node: String,
        /// The record's sequence number.
        seq: u64,
        /// Its event.
        event: String,
        /// Its key.
        key_id: String,
        /// Why.
        reason: String,
    },
    /// A witness's answer does not verify, or it does not witness the node.
    #[error("witness {witness} of {node}: {reason}")]
    Witness {
        /// The witness's node id.
        witness: String,
        /// The audited node.
        node: String,
        /// Why.
        reason: String,
    },
    /// The node's checkpoint, or its attestation of the log key, does not verify.
    #[error("{node}: the signed checkpoint of its audit log does not verify: {reason}")]
    Checkpoint {
        /// Node id.
        node: String,
        /// Why.
        reason: String,
    },
}

fn client(
    endpoint: &str,
    node_id: &str,
    tls: &TlsPaths,
) -> Result<pb::audit_client::AuditClient<tonic::transport::Channel>, AuditError> {
    let channel = tls
        .load()
        .map_err(|e| AuditError::Tls(e.to_string()))?
        .node_channel(endpoint, node_id, Duration::from_secs(5))
        .map_err(|e| AuditError::Tls(e.to_string()))?;
    Ok(pb::audit_client::AuditClient::new(channel))
}

/// Every audit record of the node at `endpoint` (certified as `node_id`), in order,
/// exactly as the node stores them.
pub async fn fetch(
    endpoint: &str,
    node_id: &str,
    tls: &TlsPaths,
) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
    read_records(&mut client(endpoint, node_id, tls)?, node_id).await
}

async fn read_records(
    client: &mut pb::audit_client::AuditClient<tonic::transport::Channel>,
    node_id: &str,
) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
    let read = |status| AuditError::Read {
        node: node_id.to_string(),
        status,
    };
    let mut stream = client
        .read_audit(pb::ReadAuditRequest { from_seq: 0 })
        .await
        .map_err(read)?
        .into_inner();
    let mut records = Vec::new();
    while let Some(entry) = stream.message().await.map_err(read)? {
        records.push((entry.seq, entry.record));
    }
    Ok(records)
}

/// Fetches node `node_id`'s latest signed checkpoint and verifies it: the log
/// key's attestation against the CA (a statement of the node's own certificate),
/// the checkpoint's signature under that key and its origin. Then every record
/// (served after the checkpoint, so at least the records it covers), and, if
/// `saved_size` is at most the new size, the node's consistency proof from it.
pub async fn fetch_observed(
    endpoint: &str,
    node_id: &str,
    tls: &TlsPaths,
    saved_size: Option<u64>,
) -> Result<Observed, AuditError> {
    let material = tls.load().map_err(|e| AuditError::Tls(e.to_string()))?;
    let trust_domain = material.identity().trust_domain.clone();
    let statements = material
        .statement_verifier()
        .map_err(|e| AuditError::Tls(e.to_string()))?;
    let mut client = client(endpoint, node_id, tls)?;
    let read = |status| AuditError::Read {
        node: node_id.to_string(),
        status,
    };
    let bad = |reason: String| AuditError::Checkpoint {
        node: node_id.to_string(),
        reason,
    };
    let served = client
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await
        .map_err(read)?
        .into_inner();
    let attestation = served
        .log_key
        .ok_or_else(|| bad("no attestation of the log key".into()))?;
    statements
        .verify(&attestation, LOG_KEY_STATEMENT, node_id)
        .map_err(|e| bad(format!("the log key's attestation: {e}")))?;
    let location = x509_parser::parse_x509_certificate(&attestation.certificate)
        .ok()
        .and_then(|(_, cert)| quorate_transport::identity::Location::from_certificate(&cert).ok())
        .flatten();
    let log_key = String::from_utf8(attestation.body)
        .map_err(|_| bad("the attested log key is not text".into()))?;
    let verifier = LogVerifier::parse(&log_key).map_err(|e| bad(e.to_string()))?;
    let expected_origin = quorate_keys::checkpoint::origin(&trust_domain, node_id);
    if verifier.name() != expected_origin {
        return Err(bad(format!(
            "the log key is named {:?}, not {expected_origin:?}",
            verifier.name()
        )));
    }
    let note =
        String::from_utf8(served.note).map_err(|_| bad("the checkpoint is not text".into()))?;
    let checkpoint = verifier.verify(&note).map_err(|e| bad(e.to_string()))?;
    let records = read_records(&mut client, node_id).await?;
    let consistency = match saved_size {
        Some(m) if m <= checkpoint.size => Some(
            client
                .get_consistency_proof(pb::ConsistencyProofRequest {
                    first: m,
                    second: checkpoint.size,
                })
                .await
                .map_err(|s| s.message().to_string())
                .and_then(|p| {
                    p.into_inner()
                        .hashes
                        .into_iter()
                        .map(|h| {
                            <[u8; 32]>::try_from(h.as_slice())
                                .map_err(|_| "a proof hash is not 32 bytes".to_string())
                        })
                        .collect::<Result<Vec<_>, _>>()
                }),
        ),
        _ => None,
    };
    Ok(Observed {
        log_key,
        location,
        note,
        checkpoint,
        records,
        consistency,
    })
}

/// The outcome of checking a log.
#[derive(Debug)]
pub struct AuditReport {
    /// Records checked.
    pub records: u64,
    /// Hash of the last record (the chain head), if the chain is intact.
    pub head: Result<String, ChainBreak>,
}

/// Checks a log fetched with [`fetch`].
pub fn check(records: &[(u64, Vec<u8>)]) -> AuditReport {
    match verify_chain(records.iter().cloned()) {
        Ok((count, head)) => AuditReport {
            records: count,
            head: Ok(head),
        },
        Err(brk) => AuditReport {
            records: records.len() as u64,
            head: Err(brk),
        },
    }
}

/// Checks the client intent every share record keeps, as a node checked it when it
/// spent the nonce: signed by a client of the CA in `ca_pem` whose certificate was
/// valid at the record's time, for the record's key, message digest and request
/// id, valid then, and by the client the record names. Returns how many share
/// records were checked; the first that fails is the error.
pub fn check_intents(
    node_id: &str,
    records: &[(u64, Vec<u8>)],
    ca_pem: &[u8],
    trust_domain: &str,
) -> Result<u64, AuditError> {
    let statements = StatementVerifier::from_pem(ca_pem, trust_domain)
        .map_err(|e| AuditError::Tls(e.to_string()))?;
    let intents = quorate_transport::intent::IntentVerifier::new(statements);
    let mut checked = 0;
    for (seq, bytes) in records {
        let Ok(record) = serde_json::from_slice::<AuditRecord>(bytes) else {
            continue; // the chain check names records that do not parse
        };
        if record.event != "sign_share" {
            continue;
        }
        let fail = |reason: String| AuditError::Intent {
            node: node_id.to_string(),
            seq: *seq,
            event: record.event.clone(),
            key_id: record.key_id.clone(),
            reason,
        };
        let encoded =
            hex::decode(&record.intent).map_err(|_| fail("is missing or not hex".into()))?;
        let signed = <pb::Signed as prost::Message>::decode(encoded.as_slice())
            .map_err(|e| fail(format!("does not decode: {e}")))?;
        let mut digest = [0u8; 32];
        hex::decode_to_slice(&record.message_sha256, &mut digest).map_err(|_| {
            fail("cannot be matched: the record's message digest is not hex".into())
        })?;
        let verified = intents
            .verify_recorded(
                &signed,
                &record.key_id,
                &digest,
                &record.request_id,
                record.time_unix_ms / 1000,
            )
            .map_err(|e| fail(format!("does not verify: {e}")))?;
        if verified.client.spiffe_id() != record.client_id {
            return Err(fail(format!(
                "is {}'s, but the record names {}",
                verified.client.spiffe_id(),
                record.client_id
            )));
        }
        checked += 1;
    }
    Ok(checked)
}

/// Decodes the records that parse (for display and for tests).
pub fn decode(records: &[(u64, Vec<u8>)]) -> Vec<AuditRecord> {
    records
        .iter()
        .filter_map(|(_, bytes)| serde_json::from_slice(bytes).ok())
        .collect()
}
