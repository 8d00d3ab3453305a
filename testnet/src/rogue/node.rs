//! [`ForgingNode`]: a `Node` service that answers `ListNodeKeys` with whatever
//! reports it was given and refuses to sign, served over mTLS with a real node's
//! certificate by a node that turned.

use std::sync::Arc;

use quorate_wire::pb;
use quorate_wire::pb::node_server::Node;
use tonic::{Request, Response, Status};

/// Called with the number of reports each time `ListNodeKeys` is answered.
pub type OnAnswer = Arc<dyn Fn(usize) + Send + Sync>;

/// A node that reports `keys` and refuses to sign.
#[derive(Clone)]
pub struct ForgingNode {
    keys: Vec<pb::NodeKey>,
    on_answer: OnAnswer,
}

impl std::fmt::Debug for ForgingNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForgingNode")
            .field("reports", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl ForgingNode {
    /// Reports `keys`; `on_answer` hears of every answer.
    pub fn new(keys: Vec<pb::NodeKey>, on_answer: OnAnswer) -> Self {
        Self { keys, on_answer }
    }
}

#[tonic::async_trait]
impl Node for ForgingNode {
    async fn get_info(
        &self,
        _: Request<pb::GetInfoRequest>,
    ) -> Result<Response<pb::NodeInfo>, Status> {
        Err(Status::unimplemented("forging node"))
    }

    async fn list_node_keys(
        &self,
        _: Request<pb::ListNodeKeysRequest>,
    ) -> Result<Response<pb::ListNodeKeysResponse>, Status> {
        (self.on_answer)(self.keys.len());
        Ok(Response::new(pb::ListNodeKeysResponse {
            keys: self.keys.clone(),
            staged: Vec::new(),
        }))
    }

    async fn commit(
        &self,
        _: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        Err(Status::unavailable("forging node"))
    }

    async fn sign_share(
        &self,
        _: Request<pb::SignShareRequest>,
    ) -> Result<Response<pb::SignShareResponse>, Status> {
        Err(Status::unavailable("forging node"))
    }

    type SignSharesStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<pb::SignSharesResponse, Status>> + Send>,
    >;

    async fn sign_shares(
        &self,
        _: Request<tonic::Streaming<pb::SignSharesRequest>>,
    ) -> Result<Response<Self::SignSharesStream>, Status> {
        Err(Status::unavailable("forging node"))
    }
}
