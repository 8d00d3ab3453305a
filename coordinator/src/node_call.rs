//! Calling one node in a signing request: one retry after a transport failure,
//! the node's health record updated, and why a node dropped out of the request
//! ([`NodeFailure`]). Used by round 1 and round 2.

use std::time::{Duration, Instant};

use tokio::time::timeout_at;

use crate::nodes::{answered_by_node, NodeHandle};

/// Why a node dropped out of this request.
#[derive(Clone, Debug)]
pub(crate) enum NodeFailure {
    Timeout,
    /// The call failed as a whole: the connection, the stream, or the node's
    /// answer to the call (which may stand for a whole batch of requests).
    Status(tonic::Status),
    /// The node answered this one request of a round-2 batch with an error.
    Refused(tonic::Status),
}

impl NodeFailure {
    /// The node's status, if it gave one.
    pub(crate) fn status(&self) -> Option<&tonic::Status> {
        match self {
            NodeFailure::Timeout => None,
            NodeFailure::Status(s) | NodeFailure::Refused(s) => Some(s),
        }
    }
}

impl std::fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status() {
            None => f.write_str("timed out"),
            Some(s) => write!(f, "{:?}: {}", s.code(), s.message()),
        }
    }
}

/// Whether `status` is a transport failure (tonic's `UNAVAILABLE` with an I/O
/// cause), not an answer of the node.
pub(crate) fn failed_in_transport(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable && !answered_by_node(status)
}

/// Calls a node once, and once more if the first attempt failed in the transport
/// before reaching the node (a reused connection to a node that restarted fails its
/// first call; the second attempt reconnects). Retrying is safe for both rounds: a
/// commitment that never reached the node was never made, and a round-2 request that
/// did reach it has consumed its nonce, so a repeat is refused.
pub(crate) async fn call<T, Fut>(
    node: &NodeHandle,
    deadline: Instant,
    node_timeout: Duration,
    make: impl Fn() -> Fut,
) -> Result<T, NodeFailure>
where
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let started = Instant::now();
    let until = deadline.min(started + node_timeout);
    let mut transport_retry = true;
    loop {
        match timeout_at(until.into(), make()).await {
            Ok(Ok(resp)) => {
                node.record_success(started.elapsed());
                return Ok(resp.into_inner());
            }
            Ok(Err(status)) => {
                if failed_in_transport(&status) && transport_retry {
                    transport_retry = false;
                    continue;
                }
                node.record_status(&status);
                return Err(NodeFailure::Status(status));
            }
            Err(_) => {
                node.record_failure();
                return Err(NodeFailure::Timeout);
            }
        }
    }
}
