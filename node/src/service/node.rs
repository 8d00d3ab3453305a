//! The `Node` gRPC service, for coordinators: `GetInfo`, `ListNodeKeys`, `Commit`
//! (round 1), `SignShare` and `SignShares` (round 2).
//!
//! An adapter only: it checks the caller's role, hands the request to
//! [`crate::sign`], counts the call and turns the answer into a response. Invariant:
//! only callers whose certificate says `coordinator` are served.

use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt};
use quorate_transport::identity::{authorize, PeerIdentity, Role};
use quorate_wire::api;
use quorate_wire::pb;
use tonic::{Request, Response, Status};

use super::blocking::run_blocking;
use crate::error::NodeError;
use crate::sign::{round1, round2};
use crate::state::NodeState;

/// The `Node` service.
#[derive(Debug, Clone)]
pub struct NodeService(pub Arc<NodeState>);

impl NodeService {
    /// New signing work is refused once the node drains: the coordinator asks
    /// another node, and this one's nonces would die with it anyway.
    fn refuse_while_draining(&self) -> Result<(), Status> {
        if self.0.drain().is_draining() {
            return Err(api::going_away_status("the node is shutting down"));
        }
        Ok(())
    }

    fn authorize<T>(&self, req: &Request<T>) -> Result<PeerIdentity, Status> {
        authorize(req, &self.0.identity.trust_domain, &[Role::Coordinator])
    }
}

#[tonic::async_trait]
impl pb::node_server::Node for NodeService {
    async fn get_info(
        &self,
        req: Request<pb::GetInfoRequest>,
    ) -> Result<Response<pb::NodeInfo>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(self.0.identity.info()))
    }

    async fn list_node_keys(
        &self,
        req: Request<pb::ListNodeKeysRequest>,
    ) -> Result<Response<pb::ListNodeKeysResponse>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(pb::ListNodeKeysResponse {
            keys: self.0.node_keys(),
            staged: self.0.staged_node_keys(),
        }))
    }

    // Signing-path spans are at debug level (see the coordinator's `sign`): the
    // audit log and the metrics record every call.
    #[tracing::instrument(level = "debug", skip_all, fields(key_id = %req.get_ref().key_id))]
    async fn commit(
        &self,
        req: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        self.authorize(&req)?;
        self.refuse_while_draining()?;
        let state = Arc::clone(&self.0);
        let result = run_blocking(move || round1::commit(&state, req.into_inner())).await?;
        self.0.metrics.request("Commit", &result);
        Ok(Response::new(result?))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key_id = %req.get_ref().key_id))]
    async fn sign_share(
        &self,
        req: Request<pb::SignShareRequest>,
    ) -> Result<Response<pb::SignShareResponse>, Status> {
        let caller = self.authorize(&req)?;
        self.refuse_while_draining()?;
        let started = Instant::now();
        // The signing itself runs here (a fraction of a millisecond); the wait for
        // the audit record's group-committed flush is asynchronous.
        let Some(recorded) = round2::sign_shares(&self.0, vec![req.into_inner()], &caller).pop()
        else {
            return Err(Status::internal("a round 2 of one request gave no result"));
        };
        Ok(Response::new(
            round2::issue_share(&self.0, recorded, started).await?,
        ))
    }

    type SignSharesStream =
        std::pin::Pin<Box<dyn Stream<Item = Result<pb::SignSharesResponse, Status>> + Send>>;

    async fn sign_shares(
        &self,
        req: Request<tonic::Streaming<pb::SignSharesRequest>>,
    ) -> Result<Response<Self::SignSharesStream>, Status> {
        let caller = self.authorize(&req)?;
        self.refuse_while_draining()?;
        let service = self.clone();
        // A few batches are signed at once (so one batch's wait for its flush does
        // not hold up the next) and answered in the order they came: the
        // coordinator matches answers to batches by that order. An error ends the
        // stream. Once the node drains, no further batch is taken: those taken are
        // signed, recorded and answered, and then the stream ends (OK), which tells
        // the coordinator that the node is going away and that the batches it sent
        // after them were never seen. Without that end the coordinator's stream,
        // open for as long as the connection, would hold the node's shutdown up.
        let answers = req
            .into_inner()
            .take_until(self.0.drain().begun())
            .map(move |batch| {
                let service = service.clone();
                let caller = caller.clone();
                async move { service.sign_batch(batch?.requests, caller).await }
            })
            .buffered(api::MAX_BATCHES_IN_FLIGHT_PER_STREAM);
        Ok(Response::new(Box::pin(answers)))
    }
}

impl NodeService {
    /// One `SignShares` batch: every request as a `SignShare` of it would be, in
    /// order.
    #[tracing::instrument(level = "debug", skip_all, fields(requests = requests.len()))]
    async fn sign_batch(
        &self,
        requests: Vec<pb::SignShareRequest>,
        caller: PeerIdentity,
    ) -> Result<pb::SignSharesResponse, Status> {
        let started = Instant::now();
        if requests.is_empty() || requests.len() > api::MAX_SHARES_PER_BATCH {
            let refused = || NodeError::BadBatchSize {
                len: requests.len(),
                max: api::MAX_SHARES_PER_BATCH,
            };
            self.0.metrics.request::<()>("SignShares", &Err(refused()));
            return Err(refused().into());
        }
        // One request is signed here, as `SignShare` does: a hand-off to another
        // thread would cost about as much as the share. Several are milliseconds of
        // curve arithmetic, signed on the blocking pool so that the node's other
        // connections are not stalled. Every request's record goes in before the
        // first share is computed, so one flush, running meanwhile, covers the batch.
        let recorded = if requests.len() == 1 {
            round2::sign_shares(&self.0, requests, &caller)
        } else {
            let state = Arc::clone(&self.0);
            run_blocking(move || round2::sign_shares(&state, requests, &caller)).await?
        };
        let mut results = Vec::with_capacity(recorded.len());
        for recorded in recorded {
            let result = match round2::issue_share(&self.0, recorded, started).await {
                Ok(share) => pb::sign_share_result::Result::SignatureShare(share.signature_share),
                Err(e) => pb::sign_share_result::Result::Error(pb::SignShareError {
                    code: e.code() as i32,
                    message: e.to_string(),
                }),
            };
            results.push(pb::SignShareResult {
                result: Some(result),
            });
        }
        Ok(pb::SignSharesResponse { results })
    }
}
