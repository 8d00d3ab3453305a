//! The `Audit` gRPC service, for auditors: `ReadAudit` streams this node's audit
//! log from a given record on; `GetCheckpoint` gives its latest signed checkpoint
//! with the attestation of the log key; `GetInclusionProof` and
//! `GetConsistencyProof` the RFC 9162 proofs over its Merkle tree;
//! `GetWitnessed` what this node, as a witness, cosigned of its peers' logs.
//!
//! An adapter only: the log is [`crate::audit`], the checkpoints
//! [`crate::checkpoints`], the witness [`crate::witness`]. Invariants: only callers
//! whose certificate says `auditor` are served, except that `GetCheckpoint` and
//! `GetConsistencyProof` also serve role `node` (peers witnessing this log: they
//! get checkpoints and proofs, never records); only records whose flush has completed are served, and
//! proofs only for trees of such records; the file is read on a blocking thread,
//! with backpressure.

use std::sync::Arc;

use quorate_transport::identity::{authorize, Role};
use quorate_wire::pb;
use tonic::{Request, Response, Status};

use crate::state::NodeState;

/// The `Audit` service.
#[derive(Debug, Clone)]
pub struct AuditService(pub Arc<NodeState>);

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditService {
    type ReadAuditStream = tokio_stream::wrappers::ReceiverStream<Result<pb::AuditEntry, Status>>;

    async fn read_audit(
        &self,
        req: Request<pb::ReadAuditRequest>,
    ) -> Result<Response<Self::ReadAuditStream>, Status> {
        let caller = authorize(&req, &self.0.identity.trust_domain, &[Role::Auditor])?;
        tracing::info!(caller = %caller, from_seq = req.get_ref().from_seq, "audit log read");
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let from = req.into_inner().from_seq;
        let records = self.0.audit.read_from(from)?;
        // File reads block; stream from a blocking thread with backpressure.
        tokio::task::spawn_blocking(move || {
            for item in records {
                let entry = item
                    .map(|(seq, record)| pb::AuditEntry { seq, record })
                    .map_err(Status::from);
                if tx.blocking_send(entry).is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    #[tracing::instrument(skip_all)]
    async fn get_checkpoint(
        &self,
        req: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::AuditCheckpoint>, Status> {
        authorize(
            &req,
            &self.0.identity.trust_domain,
            &[Role::Auditor, Role::Node],
        )?;
        let (_, note) = self.0.audit_checkpoint();
        Ok(Response::new(pb::AuditCheckpoint {
            note: note.into_bytes(),
            log_key: Some(self.0.audit_log_key_attestation()?),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_inclusion_proof(
        &self,
        req: Request<pb::InclusionProofRequest>,
    ) -> Result<Response<pb::AuditProof>, Status> {
        authorize(&req, &self.0.identity.trust_domain, &[Role::Auditor])?;
        let r = req.into_inner();
        let proof = self.0.audit.inclusion_proof(r.index, r.tree_size)?;
        Ok(Response::new(proof_message(proof)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_consistency_proof(
        &self,
        req: Request<pb::ConsistencyProofRequest>,
    ) -> Result<Response<pb::AuditProof>, Status> {
        authorize(
            &req,
            &self.0.identity.trust_domain,
            &[Role::Auditor, Role::Node],
        )?;
        let r = req.into_inner();
        let proof = self.0.audit.consistency_proof(r.first, r.second)?;
        Ok(Response::new(proof_message(proof)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_witnessed(
        &self,
        req: Request<pb::GetWitnessedRequest>,
    ) -> Result<Response<pb::Witnessed>, Status> {
        authorize(&req, &self.0.identity.trust_domain, &[Role::Auditor])?;
        let state = self.0.clone();
        let logs = tokio::task::spawn_blocking(move || state.witness.view())
            .await
            .map_err(|e| Status::internal(format!("witness view: {e}")))??;
        Ok(Response::new(pb::Witnessed {
            witness_key: Some(self.0.witness_key_attestation()?),
            logs,
        }))
    }
}

fn proof_message(proof: Vec<quorate_keys::merkle::Hash>) -> pb::AuditProof {
    pb::AuditProof {
        hashes: proof.into_iter().map(|h| h.to_vec()).collect(),
    }
}
