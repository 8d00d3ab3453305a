//! The `Audit` gRPC service, for auditors: `ReadAudit` streams this node's audit
//! log from a given record on.
//!
//! An adapter only: the log is [`crate::audit`]. Invariants: only callers whose
//! certificate says `auditor` are served; only records whose flush has completed
//! are served; the file is read on a blocking thread, with backpressure.

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
}
