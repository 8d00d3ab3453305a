//! Round 2, batched per node over one long-lived stream: the round-2 requests for a
//! node that queue up while its earlier batches are in flight go to it together, as
//! one `SignShares` batch, on the node's stream.
//!
//! At most [`BATCHES_IN_FLIGHT`] batches per node are outstanding. A request that finds
//! a free slot is sent at once (so a lone request waits for nothing); one that does
//! not goes with the next batch, together with everything else that queued
//! meanwhile, up to [`MAX_SHARES_PER_BATCH`] requests and [`MAX_BATCH_BYTES`]. Under
//! load a node thus answers many shares per exchange, and the exchange and its
//! thread wake-ups are paid once for all of them. Each request keeps its own answer:
//! the node checks, records and signs every request as a `SignShare` of it.
//!
//! The stream ([`ShareStream`]) spares each batch a call of its own: no HTTP/2 stream
//! to open and close, no headers or trailers, no task per call on the node, one
//! message each way. Answers come back in the order the batches went out. A stream
//! that ends (the node restarted, the connection broke) fails the batches still
//! waiting on it, and the next batch opens a new one; a node that shuts down
//! answers the batches it took and then ends the stream itself, which marks it as
//! going away rather than failed; a batch that times out ends
//! its stream too, since a node that late is not trusted with the next batch's wait.
//!
//! Batches are sent from tasks of their own, so a request that gives up (its
//! deadline passed, its client went away) does not cancel the others' batch. One
//! that gives up before its batch is sent is left out of it: its nonce is never
//! spent.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prost::Message;
use quorate_transport::metrics::{Counter, Registry};
use quorate_wire::api::MAX_SHARES_PER_BATCH;
use quorate_wire::pb;
use quorate_wire::MAX_NODE_REQUEST_BYTES;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout_at;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::metric;
use crate::node_call::{failed_in_transport, NodeFailure};
use crate::nodes::{NodeHandle, NodePool};

/// Outstanding `SignShares` batches per node. Two keep a node busy: it signs one
/// batch's shares while the other batch's requests and answers are on the wire.
pub const BATCHES_IN_FLIGHT: usize = 2;

/// Most encoded request bytes in one batch: half of what a node decodes, so framing
/// never pushes a batch over its limit.
pub const MAX_BATCH_BYTES: usize = MAX_NODE_REQUEST_BYTES / 2;

type Reply = oneshot::Sender<Result<Vec<u8>, NodeFailure>>;

/// A round-2 request waiting for its batch.
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
    batches_in_flight: usize,
}

/// One node's round-2 queue.
#[derive(Debug)]
struct NodeQueue {
    node: Arc<NodeHandle>,
    queue: Mutex<Queue>,
    /// `SignShares` batches sent, and the requests they carried.
    share_calls: Counter,
    share_requests: Counter,
    /// The node's current round-2 stream, once one is open.
    stream: Mutex<Option<Arc<ShareStream>>>,
}

/// How a batch's stream failed it.
#[derive(Clone, Debug)]
enum StreamEnd {
    /// The stream could not be opened: the node never saw the batch.
    NotOpened(tonic::Status),
    /// The stream ended with the batch unanswered.
    Ended(tonic::Status),
    /// The node ended the stream (OK) with the batch unanswered: it is shutting
    /// down, and answered every batch it took before it stopped reading; this one
    /// it never saw.
    GoingAway,
}

type BatchReply = oneshot::Sender<Result<pb::SignSharesResponse, StreamEnd>>;

/// The batches sent on a stream and not yet answered, oldest first, or how the
/// stream ended.
#[derive(Debug)]
enum Waiting {
    Open(VecDeque<BatchReply>),
    Ended,
}

/// One node's `SignShares` stream. Dropping it closes the stream and fails the
/// batches still waiting on it.
#[derive(Debug)]
struct ShareStream {
    /// Batches to send. Unbounded, as at most [`BATCHES_IN_FLIGHT`] batches per node
    /// are outstanding.
    batches: mpsc::UnboundedSender<pb::SignSharesRequest>,
    waiting: Arc<Mutex<Waiting>>,
    /// The task that opens the stream and hands out its answers.
    reader: tokio::task::AbortHandle,
}

impl ShareStream {
    /// Opens a stream to `node` in the background; batches sent before it is open
    /// wait for it.
    fn open(node: &Arc<NodeHandle>) -> Arc<Self> {
        let (batches, outgoing) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(Waiting::Open(VecDeque::new())));
        let reader = tokio::spawn(Self::read(
            node.clone(),
            UnboundedReceiverStream::new(outgoing),
            waiting.clone(),
        ))
        .abort_handle();
        Arc::new(Self {
            batches,
            waiting,
            reader,
        })
    }

    /// Opens the stream, gives each answer to the oldest waiting batch, and fails
    /// every waiting batch once the stream ends.
    async fn read(
        node: Arc<NodeHandle>,
        outgoing: UnboundedReceiverStream<pb::SignSharesRequest>,
        waiting: Arc<Mutex<Waiting>>,
    ) {
        let end = match node.client().sign_shares(outgoing).await {
            Err(status) => StreamEnd::NotOpened(status),
            Ok(response) => {
                let mut answers = response.into_inner();
                loop {
                    match answers.message().await {
                        Ok(Some(answer)) => {
                            let next = match &mut *lock(&waiting) {
                                Waiting::Open(queue) => queue.pop_front(),
                                Waiting::Ended => None,
                            };
                            let Some(reply) = next else {
                                break StreamEnd::Ended(tonic::Status::internal(
                                    "the node answered a batch it was not sent",
                                ));
                            };
                            // A batch whose callers all gave up no longer listens.
                            let _ = reply.send(Ok(answer));
                        }
                        Ok(None) => {
                            node.record_going_away();
                            break StreamEnd::GoingAway;
                        }
                        Err(status) => break StreamEnd::Ended(status),
                    }
                }
            }
        };
        fail_waiting(&waiting, end);
    }

    /// Sends `batch`; its answer comes to `reply`. Gives both back if the stream
    /// has ended.
    fn send(
        &self,
        batch: pb::SignSharesRequest,
        reply: BatchReply,
    ) -> Result<(), (pb::SignSharesRequest, BatchReply)> {
        let mut waiting = lock(&self.waiting);
        let Waiting::Open(queue) = &mut *waiting else {
            return Err((batch, reply));
        };
        // Queued and sent under one lock, so the queue's order is the stream's.
        match self.batches.send(batch) {
            Ok(()) => {
                queue.push_back(reply);
                Ok(())
            }
            Err(mpsc::error::SendError(batch)) => {
                *waiting = Waiting::Ended;
                Err((batch, reply))
            }
        }
    }
}

impl Drop for ShareStream {
    fn drop(&mut self) {
        self.reader.abort();
        fail_waiting(
            &self.waiting,
            StreamEnd::Ended(tonic::Status::unavailable(
                "the round-2 stream to the node was closed",
            )),
        );
    }
}

/// Marks a stream ended and fails every batch waiting on it with `end`.
fn fail_waiting(waiting: &Mutex<Waiting>, end: StreamEnd) {
    let queue = match std::mem::replace(&mut *lock(waiting), Waiting::Ended) {
        Waiting::Open(queue) => queue,
        Waiting::Ended => return,
    };
    for reply in queue {
        let _ = reply.send(Err(end.clone()));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Round-2 queues of every node in a pool.
#[derive(Debug)]
pub struct Round2 {
    queues: HashMap<String, Arc<NodeQueue>>,
}

impl Round2 {
    /// Queues for every node of `pool`.
    pub fn new(pool: &NodePool, registry: &Registry) -> Self {
        let share_calls = registry.counter(metric::SHARE_CALLS, SHARE_CALLS_HELP);
        let share_requests = registry.counter(metric::SHARE_REQUESTS, SHARE_REQUESTS_HELP);
        let queues = pool
            .all()
            .map(|node| {
                let queue = NodeQueue {
                    node: node.clone(),
                    queue: Mutex::new(Queue::default()),
                    share_calls: share_calls.clone(),
                    share_requests: share_requests.clone(),
                    stream: Mutex::new(None),
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
        let start_batch = {
            let mut q = queue.lock();
            q.waiting.push_back(Queued {
                request,
                until,
                reply,
            });
            let free = q.batches_in_flight < BATCHES_IN_FLIGHT;
            if free {
                q.batches_in_flight += 1;
            }
            free
        };
        if start_batch {
            tokio::spawn(queue.clone().run_batches());
        }
        match timeout_at(until.into(), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(NodeFailure::Status(tonic::Status::internal(
                "the round-2 batch was dropped",
            ))),
            Err(_) => Err(NodeFailure::Timeout),
        }
    }
}

const SHARE_CALLS_HELP: &str = "SignShares batches sent to nodes.";
const SHARE_REQUESTS_HELP: &str = "Round-2 requests carried by SignShares batches.";

impl NodeQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        lock(&self.queue)
    }

    /// Sends `batch` on the node's stream, opening one if there is none or the last
    /// one ended; returns the stream and where the answer will come.
    fn send_on_stream(
        &self,
        mut batch: pb::SignSharesRequest,
    ) -> (
        Arc<ShareStream>,
        oneshot::Receiver<Result<pb::SignSharesResponse, StreamEnd>>,
    ) {
        let (mut reply, answer) = oneshot::channel();
        let mut current = lock(&self.stream);
        loop {
            let stream = current
                .get_or_insert_with(|| ShareStream::open(&self.node))
                .clone();
            match stream.send(batch, reply) {
                Ok(()) => return (stream, answer),
                Err(back) => {
                    (batch, reply) = back;
                    *current = None;
                }
            }
        }
    }

    /// Closes `stream` if it is still the node's current one.
    fn close_stream(&self, stream: &Arc<ShareStream>) {
        let mut current = lock(&self.stream);
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, stream)) {
            *current = None;
        }
    }

    /// Sends batches while requests are waiting, then gives its slot back.
    async fn run_batches(self: Arc<Self>) {
        while let Some(batch) = self.next_batch() {
            self.send(batch).await;
        }
    }

    /// The requests for the next batch, oldest first; `None` (and the slot given
    /// back) when none is waiting. Requests whose callers stopped waiting are dropped
    /// here, unsent.
    fn next_batch(&self) -> Option<Vec<Queued>> {
        let now = Instant::now();
        let mut q = self.lock();
        let mut batch = Vec::new();
        let mut bytes = 0;
        while batch.len() < MAX_SHARES_PER_BATCH {
            let Some(next) = q.waiting.front() else {
                break;
            };
            if next.reply.is_closed() || next.until <= now {
                q.waiting.pop_front();
                continue;
            }
            let len = next.request.encoded_len();
            if !batch.is_empty() && bytes + len > MAX_BATCH_BYTES {
                break;
            }
            bytes += len;
            batch.extend(q.waiting.pop_front());
        }
        if batch.is_empty() {
            q.batches_in_flight -= 1;
            return None;
        }
        Some(batch)
    }

    /// Sends `batch` and waits for its answer until `until`; once more if the
    /// stream could not be opened in the transport (a reused connection to a node
    /// that restarted fails its first attempt that way, and the node never saw
    /// the batch). Records the node's success or failure, as any call to it does.
    async fn exchange(
        &self,
        batch: pb::SignSharesRequest,
        until: Instant,
    ) -> Result<pb::SignSharesResponse, NodeFailure> {
        let started = Instant::now();
        let mut transport_retry = true;
        loop {
            let (stream, answer) = self.send_on_stream(batch.clone());
            let status = match timeout_at(until.into(), answer).await {
                Ok(Ok(Ok(answer))) => {
                    self.node.record_success(started.elapsed());
                    return Ok(answer);
                }
                Ok(Ok(Err(StreamEnd::NotOpened(status)))) => {
                    if failed_in_transport(&status) && transport_retry {
                        transport_retry = false;
                        continue;
                    }
                    status
                }
                Ok(Ok(Err(StreamEnd::Ended(status)))) => status,
                Ok(Ok(Err(StreamEnd::GoingAway))) => {
                    // Not a failure of the node; the request goes to another quorum.
                    return Err(NodeFailure::Status(tonic::Status::unavailable(
                        "the node is shutting down and did not take the batch",
                    )));
                }
                Ok(Err(_)) => tonic::Status::unavailable("the round-2 stream dropped a batch"),
                Err(_) => {
                    self.close_stream(&stream);
                    self.node.record_failure();
                    return Err(NodeFailure::Timeout);
                }
            };
            self.node.record_status(&status);
            return Err(NodeFailure::Status(status));
        }
    }

    /// One `SignShares` batch; every request's caller gets its own result.
    async fn send(&self, batch: Vec<Queued>) {
        let node = &self.node;
        self.share_calls.inc();
        self.share_requests.inc_by(batch.len() as u64);
        // The batch waits as long as its most patient caller.
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
        let result = self
            .exchange(pb::SignSharesRequest { requests }, until)
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
                    let status = tonic::Status::new(tonic::Code::from(e.code), e.message);
                    node.record_status(&status);
                    Err(NodeFailure::Refused(status))
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
