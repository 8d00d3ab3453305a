//! Round 2, batched per node: the round-2 requests for a node that queue up while its
//! earlier calls are in flight go to it together, as one `SignShares` call.
//!
//! At most [`CALLS_IN_FLIGHT`] calls per node are outstanding. A request that finds a
//! free slot is sent at once (so a lone request waits for nothing); one that does not
//! goes with the next call, together with everything else that queued meanwhile, up
//! to [`MAX_SHARES_PER_CALL`] requests and [`MAX_CALL_BYTES`]. Under load a node thus
//! answers many shares per exchange, and the RPC and its thread wake-ups are paid
//! once for all of them. Each request keeps its own answer: the node
//! checks, records and signs every request as a `SignShare` of it.
//!
//! Calls run in tasks of their own, so a request that gives up (its deadline passed,
//! its client went away) does not cancel the others' call. One that gives up before
//! its call is sent is left out of it: its nonce is never spent.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prost::Message;
use quorate_proto::api::MAX_SHARES_PER_CALL;
use quorate_proto::metrics::Registry;
use quorate_proto::pb;
use quorate_proto::MAX_NODE_REQUEST_BYTES;
use tokio::sync::oneshot;
use tokio::time::timeout_at;

use crate::nodes::{NodeHandle, NodePool};
use crate::quorum::{call, metric, NodeFailure};

/// Outstanding `SignShares` calls per node. Two keep a node busy: it signs one call's
/// shares while the other call's requests and answers are on the wire.
pub const CALLS_IN_FLIGHT: usize = 2;

/// Most encoded request bytes in one call: half of what a node decodes, so framing
/// never pushes a call over its limit.
pub const MAX_CALL_BYTES: usize = MAX_NODE_REQUEST_BYTES / 2;

type Reply = oneshot::Sender<Result<Vec<u8>, NodeFailure>>;

/// A round-2 request waiting for its call.
#[derive(Debug)]
struct Queued {
    request: pb::SignShareRequest,
    /// When its caller stops waiting.
    until: Instant,
    reply: Reply,
}

#[derive(Debug, Default)]
struct Queue {
    waiting: VecDeque<Queued>,
    calls_in_flight: usize,
}

/// One node's round-2 queue.
#[derive(Debug)]
struct NodeQueue {
    node: Arc<NodeHandle>,
    queue: Mutex<Queue>,
    metrics: Arc<Registry>,
}

/// Round-2 queues of every node in a pool.
#[derive(Debug)]
pub struct Round2 {
    queues: HashMap<String, Arc<NodeQueue>>,
}

impl Round2 {
    /// Queues for every node of `pool`.
    pub fn new(pool: &NodePool, metrics: Arc<Registry>) -> Self {
        metrics.declare_counter(metric::SHARE_CALLS, SHARE_CALLS_HELP);
        metrics.declare_counter(metric::SHARE_REQUESTS, SHARE_REQUESTS_HELP);
        let queues = pool
            .all()
            .map(|node| {
                let queue = NodeQueue {
                    node: node.clone(),
                    queue: Mutex::new(Queue::default()),
                    metrics: metrics.clone(),
                };
                (node.id.clone(), Arc::new(queue))
            })
            .collect();
        Self { queues }
    }

    /// `node`'s signature share for `request`, or why there is none. Gives up at
    /// `until`.
    pub(crate) async fn sign_share(
        &self,
        node: &NodeHandle,
        request: pb::SignShareRequest,
        until: Instant,
    ) -> Result<Vec<u8>, NodeFailure> {
        let Some(queue) = self.queues.get(&node.id) else {
            return Err(NodeFailure::Status(tonic::Status::internal(format!(
                "no round-2 queue for node {:?}",
                node.id
            ))));
        };
        let (reply, answer) = oneshot::channel();
        let start_call = {
            let mut q = queue.lock();
            q.waiting.push_back(Queued {
                request,
                until,
                reply,
            });
            let free = q.calls_in_flight < CALLS_IN_FLIGHT;
            if free {
                q.calls_in_flight += 1;
            }
            free
        };
        if start_call {
            tokio::spawn(queue.clone().run_calls());
        }
        match timeout_at(until.into(), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(NodeFailure::Status(tonic::Status::internal(
                "the round-2 call was dropped",
            ))),
            Err(_) => Err(NodeFailure::Timeout),
        }
    }
}

const SHARE_CALLS_HELP: &str = "SignShares calls sent to nodes.";
const SHARE_REQUESTS_HELP: &str = "Round-2 requests carried by SignShares calls.";

impl NodeQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends calls while requests are waiting, then gives its slot back.
    async fn run_calls(self: Arc<Self>) {
        while let Some(batch) = self.next_call() {
            self.send(batch).await;
        }
    }

    /// The requests for the next call, oldest first; `None` (and the slot given
    /// back) when none is waiting. Requests whose callers stopped waiting are dropped
    /// here, unsent.
    fn next_call(&self) -> Option<Vec<Queued>> {
        let now = Instant::now();
        let mut q = self.lock();
        let mut batch = Vec::new();
        let mut bytes = 0;
        while batch.len() < MAX_SHARES_PER_CALL {
            let Some(next) = q.waiting.front() else {
                break;
            };
            if next.reply.is_closed() || next.until <= now {
                q.waiting.pop_front();
                continue;
            }
            let len = next.request.encoded_len();
            if !batch.is_empty() && bytes + len > MAX_CALL_BYTES {
                break;
            }
            bytes += len;
            batch.extend(q.waiting.pop_front());
        }
        if batch.is_empty() {
            q.calls_in_flight -= 1;
            return None;
        }
        Some(batch)
    }

    /// One `SignShares` call; every request's caller gets its own result.
    async fn send(&self, batch: Vec<Queued>) {
        let node = &self.node;
        self.metrics
            .inc(metric::SHARE_CALLS, SHARE_CALLS_HELP, &[], 1);
        self.metrics.inc(
            metric::SHARE_REQUESTS,
            SHARE_REQUESTS_HELP,
            &[],
            batch.len() as u64,
        );
        // The call waits as long as its most patient caller.
        let until = batch
            .iter()
            .map(|q| q.until)
            .max()
            .unwrap_or_else(Instant::now);
        let mut replies = Vec::with_capacity(batch.len());
        let mut requests = Vec::with_capacity(batch.len());
        for q in batch {
            replies.push(q.reply);
            requests.push(q.request);
        }
        let call_request = pb::SignSharesRequest { requests };
        let timeout = until.saturating_duration_since(Instant::now());
        let result = call(node, until, timeout, || {
            let mut client = node.client();
            let mut req = tonic::Request::new(call_request.clone());
            req.set_timeout(timeout);
            async move { client.sign_shares(req).await }
        })
        .await;
        let results = result.and_then(|response| {
            if response.results.len() == replies.len() {
                return Ok(response.results);
            }
            node.record_failure();
            Err(NodeFailure::Status(tonic::Status::internal(format!(
                "the node answered {} results for {} requests",
                response.results.len(),
                replies.len()
            ))))
        });
        let results = match results {
            Ok(results) => results,
            Err(failure) => {
                for reply in replies {
                    let _ = reply.send(Err(failure.clone()));
                }
                return;
            }
        };
        for (reply, result) in replies.into_iter().zip(results) {
            let answer = match result.result {
                Some(pb::sign_share_result::Result::SignatureShare(share)) => Ok(share),
                Some(pb::sign_share_result::Result::Error(e)) => {
                    // As a failed `SignShare` call would be.
                    node.record_failure();
                    Err(NodeFailure::Status(tonic::Status::new(
                        tonic::Code::from(e.code),
                        e.message,
                    )))
                }
                None => {
                    node.record_failure();
                    Err(NodeFailure::Status(tonic::Status::internal(
                        "the node answered a request with neither a share nor an error",
                    )))
                }
            };
            // A caller that stopped waiting no longer listens.
            let _ = reply.send(answer);
        }
    }
}
