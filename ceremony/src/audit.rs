//! Reading and checking a node's audit log, as an auditor (role `auditor`).

use std::time::Duration;

use quorate_keys::audit::{verify_chain, AuditRecord, ChainBreak};
use quorate_transport::tls::TlsPaths;
use quorate_wire::pb;

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
}

/// Every audit record of the node at `endpoint` (certified as `node_id`), in order,
/// exactly as the node stores them.
pub async fn fetch(
    endpoint: &str,
    node_id: &str,
    tls: &TlsPaths,
) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
    let channel = tls
        .load()
        .map_err(|e| AuditError::Tls(e.to_string()))?
        .node_channel(endpoint, node_id, Duration::from_secs(5))
        .map_err(|e| AuditError::Tls(e.to_string()))?;
    let read = |status| AuditError::Read {
        node: node_id.to_string(),
        status,
    };
    let mut stream = pb::audit_client::AuditClient::new(channel)
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

/// Decodes the records that parse (for display and for tests).
pub fn decode(records: &[(u64, Vec<u8>)]) -> Vec<AuditRecord> {
    records
        .iter()
        .filter_map(|(_, bytes)| serde_json::from_slice(bytes).ok())
        .collect()
}
