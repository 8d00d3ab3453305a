//! The coordinator's view of the signer nodes: one reused mTLS channel per node and
//! a health record fed by every call and by a background probe.
//!
//! A node that keeps failing is skipped (so its timeout is not paid by every request)
//! and probed back in: after [`RETRY_AFTER`] it is tried again, and a successful
//! health probe restores it at once. A node that says it is going away (it is
//! shutting down: its health says `NOT_SERVING`, it ended its round-2 stream, or it
//! refused work as [`going_away`]) is not chosen either until its health probe
//! says `SERVING` again, but that is no failure: a rolling restart does not make it
//! look broken. Only the probe brings it back: a draining node (or one whose audit
//! log broke) still answers calls that take up no signing work, such as the key
//! listing, and those say nothing about whether it will sign. A node that says it
//! is going away again within [`GOING_AWAY_AGAIN_WITHIN`] of the probe that brought
//! it back is failing, not restarting: that counts against it, and its probes are
//! not believed for a while ([`Standing::GoingAway`]), so a node that says `SERVING`
//! and refuses all work cannot draw requests to itself every probe interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quorate_transport::tls::TlsMaterial;
use quorate_wire::pb::node_client::NodeClient;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::config::NodeEndpoint;
use crate::error::CoordError;

/// Consecutive failures after which a node is skipped.
pub const FAILURES_BEFORE_SKIP: u32 = 2;
/// How long a skipped node is left alone before requests try it again.
pub const RETRY_AFTER: Duration = Duration::from_secs(3);

/// A node that says it is going away this soon after a health probe found it
/// `SERVING` and brought it back is not restarting (a restart takes longer than
/// that to come round again): the refusal counts as a failure, and the node's
/// probes do not bring it back for [`RETRY_AFTER`], doubling each time it does so
/// again, up to [`CULPRIT_QUARANTINE`].
pub const GOING_AWAY_AGAIN_WITHIN: Duration = Duration::from_secs(10);

/// How long a node that sent an invalid signature share is left out of quorums
/// (unless too few other nodes are available). Health probes do not shorten it: a
/// node that answers probes can still be malicious.
pub const CULPRIT_QUARANTINE: Duration = Duration::from_secs(60);

/// Whether a node's error `status` refuses one request (malformed or stale input, a
/// spent or unknown commitment, the client's intent, the key's policy or a client's
/// rate limit) rather than
/// saying that the node is unreachable, overloaded or broken. Only the latter count
/// against its health: counted as failures, refusals would let one client's requests
/// (past its rate limit, say) make healthy nodes look down to every client.
///
/// A refusal is the node's own answer ([`answered_by_node`]): a status made from a
/// transport error can carry a refusal's code (HTTP/2's `ENHANCE_YOUR_CALM`, which a
/// server sends when it is overwhelmed, arrives as `RESOURCE_EXHAUSTED`), and it is
/// a failure.
pub fn is_refusal(status: &tonic::Status) -> bool {
    use tonic::Code;
    answered_by_node(status)
        && matches!(
            status.code(),
            Code::InvalidArgument
                | Code::NotFound
                | Code::AlreadyExists
                | Code::FailedPrecondition
                | Code::OutOfRange
                | Code::ResourceExhausted
                | Code::Unauthenticated
                | Code::PermissionDenied
        )
}

/// Whether `status` is the node's own answer (its gRPC status), not one tonic made
/// from a transport error (a refused or closed connection, a reset stream): tonic
/// gives the latter that error as its source.
pub fn answered_by_node(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_none()
}

/// Whether `status` is a node's refusal of new work because it is shutting down.
pub fn going_away(status: &tonic::Status) -> bool {
    answered_by_node(status)
        && status.code() == tonic::Code::Unavailable
        && status
            .metadata()
            .contains_key(quorate_wire::api::GOING_AWAY_METADATA)
}

/// Where a node stands for the next request, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Standing {
    /// Used as usual.
    Available,
    /// Said it is shutting down: tried only when too few nodes are available,
    /// until a health probe sent after that finds it `SERVING` (other calls it
    /// answers do not bring it back). If it said so again within
    /// [`GOING_AWAY_AGAIN_WITHIN`] of the probe that last brought it back, its
    /// probes are ignored for a while.
    GoingAway,
    /// Failed [`FAILURES_BEFORE_SKIP`] times in a row: tried last, until a probe or
    /// a call succeeds or [`RETRY_AFTER`] has passed.
    Skipped,
    /// Sent an invalid signature share: left out for [`CULPRIT_QUARANTINE`].
    Quarantined,
}

#[derive(Debug, Default)]
struct Health {
    quarantined_until: Option<Instant>,
    consecutive_failures: u32,
    last_failure: Option<Instant>,
    /// When the node last said it is shutting down (or will not serve), unless a
    /// health probe sent after that found it `SERVING`.
    going_away_since: Option<Instant>,
    /// When a health probe last brought the node back from going away.
    back_since: Option<Instant>,
    /// Times in a row the node said it is going away within
    /// [`GOING_AWAY_AGAIN_WITHIN`] of coming back.
    going_away_again: u32,
    /// Until when health probes that find the node `SERVING` are not believed.
    probes_ignored_until: Option<Instant>,
    /// Round-trip times of successful calls.
    latency: LatencyWindow,
}

/// Seconds of round trips [`LatencyWindow`] takes its minimum over.
const LATENCY_WINDOW_SECS: usize = 5;

/// A node's distance: the least round trip of its successful calls in the last
/// [`LATENCY_WINDOW_SECS`] seconds (the latest one if none is that recent). Loss and
/// queueing only ever add to a round trip, so the least of a few seconds' samples
/// is the path's own delay: one lost packet (a retransmission holds up every call
/// on the connection for 200 ms or more) does not rank a near node behind a far one
/// for the next several calls, as a smoothed mean would, while a node that really
/// became slower ranks so within the window.
#[derive(Debug, Default)]
struct LatencyWindow {
    /// Per second slot (`second % LATENCY_WINDOW_SECS`): which second since
    /// [`LatencyWindow::origin`] it holds and its least sample, in microseconds.
    slots: [Option<(u64, u64)>; LATENCY_WINDOW_SECS],
    latest_us: Option<u64>,
    origin: Option<Instant>,
}

impl LatencyWindow {
    fn second(&mut self, now: Instant) -> u64 {
        now.duration_since(*self.origin.get_or_insert(now))
            .as_secs()
    }

    fn record(&mut self, now: Instant, sample_us: u64) {
        let second = self.second(now);
        let slot = &mut self.slots[(second % LATENCY_WINDOW_SECS as u64) as usize];
        *slot = Some(match *slot {
            Some((s, least)) if s == second => (s, least.min(sample_us)),
            _ => (second, sample_us),
        });
        self.latest_us = Some(sample_us);
    }

    /// The least round trip of the window, if any call succeeded yet.
    fn least_us(&mut self, now: Instant) -> Option<u64> {
        let second = self.second(now);
        let oldest = second.saturating_sub(LATENCY_WINDOW_SECS as u64 - 1);
        self.slots
            .iter()
            .flatten()
            .filter(|(s, _)| *s >= oldest && *s <= second)
            .map(|(_, least)| *least)
            .min()
            .or(self.latest_us)
    }
}

impl Health {
    fn standing(&self) -> Standing {
        if self.quarantined_until.is_some_and(|t| Instant::now() < t) {
            Standing::Quarantined
        } else if self.consecutive_failures >= FAILURES_BEFORE_SKIP
            && self.last_failure.is_some_and(|t| t.elapsed() < RETRY_AFTER)
        {
            Standing::Skipped
        } else if self.going_away_since.is_some() {
            Standing::GoingAway
        } else {
            Standing::Available
        }
    }
}

/// One signer node.
#[derive(Debug)]
pub struct NodeHandle {
    /// Node id.
    pub id: String,
    /// Endpoint URI.
    pub endpoint: String,
    channel: Channel,
    health: Mutex<Health>,
}

impl NodeHandle {
    /// A client for the node's `Node` service over the shared channel.
    pub fn client(&self) -> NodeClient<Channel> {
        NodeClient::new(self.channel.clone())
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a successful call that is not a signing round (a batch of
    /// commitments, a key listing): the node is up, but how long the call took says
    /// nothing about how fast it answers a signing round, which orders quorums.
    /// A node going away stays so: a draining node still lists its keys.
    pub fn record_answered(&self) {
        self.health().consecutive_failures = 0;
    }

    /// Records a successful call that took `elapsed`. A node going away stays so:
    /// a draining node still answers the round-2 batches it took before.
    pub fn record_success(&self, elapsed: Duration) {
        let mut h = self.health();
        h.consecutive_failures = 0;
        let sample_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        h.latency.record(Instant::now(), sample_us);
    }

    /// Records a health probe sent at `asked` that found the node `SERVING` after
    /// `elapsed`: the one answer that brings back a node going away (restarted, or
    /// never gone), unless it said it is going away after the probe was sent.
    ///
    /// Ignored while the node is held off for saying it is going away again right
    /// after a probe brought it back ([`GOING_AWAY_AGAIN_WITHIN`]).
    fn record_serving(&self, asked: Instant, elapsed: Duration) {
        if self
            .health()
            .probes_ignored_until
            .is_some_and(|until| Instant::now() < until)
        {
            return;
        }
        self.record_success(elapsed);
        let mut h = self.health();
        if h.going_away_since.is_some_and(|since| since <= asked) {
            tracing::info!(node = %self.id, "node is serving again");
            h.going_away_since = None;
            h.back_since = Some(Instant::now());
        }
    }

    /// Records a call the node answered with an error `status`: a refusal of the
    /// request itself ([`is_refusal`]) comes from a node that is serving and leaves
    /// its health as it was; a node shutting down ([`going_away`]) is going away;
    /// any other error is a failure.
    pub fn record_status(&self, status: &tonic::Status) {
        if going_away(status) {
            self.record_going_away();
        } else if !is_refusal(status) {
            self.record_failure();
        }
    }

    /// Records that the node said it is shutting down: it is not chosen while
    /// others are available, until a health probe sent after this finds it
    /// `SERVING` (restarted). Said within [`GOING_AWAY_AGAIN_WITHIN`] of the probe
    /// that brought it back, it is a failure, and the node's probes are ignored
    /// for [`RETRY_AFTER`], doubling each time in a row, up to
    /// [`CULPRIT_QUARANTINE`].
    pub fn record_going_away(&self) {
        let now = Instant::now();
        let mut h = self.health();
        let back = h.back_since.take();
        let again = back.is_some_and(|back| now.duration_since(back) < GOING_AWAY_AGAIN_WITHIN);
        if again {
            h.going_away_again = h.going_away_again.saturating_add(1);
            let hold = RETRY_AFTER
                .saturating_mul(1u32 << (h.going_away_again - 1).min(16))
                .min(CULPRIT_QUARANTINE);
            tracing::warn!(
                node = %self.id,
                hold_s = hold.as_secs(),
                "node says it is going away again right after its probe said SERVING; \
                 counted as a failure, its probes ignored for a while"
            );
            h.consecutive_failures = h.consecutive_failures.saturating_add(1);
            h.last_failure = Some(now);
            h.probes_ignored_until = Some(now + hold);
        } else if back.is_some() || h.going_away_since.is_none() {
            // It served for a while first: an ordinary restart.
            h.going_away_again = 0;
        }
        if h.going_away_since.is_none() && !again {
            tracing::info!(node = %self.id, "node is going away (shutting down)");
        }
        h.going_away_since = Some(now);
    }

    /// Records a failed call.
    pub fn record_failure(&self) {
        let mut h = self.health();
        h.consecutive_failures = h.consecutive_failures.saturating_add(1);
        h.last_failure = Some(Instant::now());
    }

    /// Records that the node sent an invalid signature share.
    pub fn record_culprit(&self) {
        let mut h = self.health();
        h.quarantined_until = Some(Instant::now() + CULPRIT_QUARANTINE);
        h.consecutive_failures = h.consecutive_failures.saturating_add(1);
        h.last_failure = Some(Instant::now());
    }

    /// Whether requests should use this node now.
    pub fn is_available(&self) -> bool {
        self.standing() == Standing::Available
    }

    /// Where the node stands for the next request.
    pub fn standing(&self) -> Standing {
        self.health().standing()
    }

    /// Ordering key: available nodes first, then skipped ones (failing, maybe
    /// back), then quarantined culprits, known to send bad shares; lower latency first
    /// within each.
    pub fn preference(&self) -> (Standing, u64) {
        let mut h = self.health();
        let latency_us = h.latency.least_us(Instant::now()).unwrap_or(0);
        (h.standing(), latency_us)
    }

    async fn probe(&self, timeout: Duration) {
        let mut client = HealthClient::new(self.channel.clone());
        let request = || {
            let mut req = tonic::Request::new(HealthCheckRequest {
                service: String::new(),
            });
            req.set_timeout(timeout);
            req
        };
        // The first call on a channel also pays for its TCP and TLS handshakes, a
        // round trip or two more (tens of milliseconds across regions, several in
        // a debug build): a latency seeded with it would rank the node as far for
        // many probes. Before the first measurement, one call opens the channel
        // untimed.
        if self.health().latency.latest_us.is_none() {
            let _ = tokio::time::timeout(timeout, client.check(request())).await;
        }
        let started = Instant::now();
        match tokio::time::timeout(timeout, client.check(request())).await {
            Ok(Ok(resp)) if resp.get_ref().status == ServingStatus::Serving as i32 => {
                self.record_serving(started, started.elapsed())
            }
            // The node answers, and says it will not serve: shutting down (or its
            // audit log broke, which also stops it signing until restarted).
            Ok(Ok(resp)) if resp.get_ref().status == ServingStatus::NotServing as i32 => {
                self.record_going_away()
            }
            _ => self.record_failure(),
        }
    }
}

/// All configured nodes.
#[derive(Debug)]
pub struct NodePool {
    nodes: HashMap<String, Arc<NodeHandle>>,
    order: Vec<String>,
}

impl NodePool {
    /// Builds lazily connecting channels to every node.
    pub fn new(
        endpoints: &[NodeEndpoint],
        tls: &TlsMaterial,
        connect_timeout: Duration,
    ) -> Result<Self, CoordError> {
        let mut nodes = HashMap::new();
        let mut order = Vec::new();
        for e in endpoints {
            let channel = tls
                .node_channel(&e.endpoint, &e.id, connect_timeout)
                .map_err(|err| CoordError::Config(err.to_string()))?;
            nodes.insert(
                e.id.clone(),
                Arc::new(NodeHandle {
                    id: e.id.clone(),
                    endpoint: e.endpoint.clone(),
                    channel,
                    health: Mutex::new(Health::default()),
                }),
            );
            order.push(e.id.clone());
        }
        Ok(Self { nodes, order })
    }

    /// The node named `id`, if configured.
    pub fn get(&self, id: &str) -> Option<&Arc<NodeHandle>> {
        self.nodes.get(id)
    }

    /// Every node, in configuration order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<NodeHandle>> {
        self.order.iter().filter_map(|id| self.nodes.get(id))
    }

    /// Number of configured nodes.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no node is configured.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Probes every node's health every `interval`, forever.
    pub async fn probe_forever(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            futures::future::join_all(self.all().map(|n| n.probe(interval))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node behind a channel that is never used.
    fn node() -> NodeHandle {
        NodeHandle {
            id: "node-1".into(),
            endpoint: "http://127.0.0.1:9".into(),
            channel: Channel::from_static("http://127.0.0.1:9").connect_lazy(),
            health: Mutex::new(Health::default()),
        }
    }

    #[tokio::test]
    async fn refusals_leave_health_alone_and_failures_skip_the_node() {
        let node = node();
        for _ in 0..5 {
            node.record_status(&tonic::Status::resource_exhausted("client over its rate"));
            node.record_status(&tonic::Status::failed_precondition("commitment spent"));
            node.record_status(&tonic::Status::invalid_argument("bad package"));
        }
        assert!(node.is_available());
        for _ in 0..FAILURES_BEFORE_SKIP {
            node.record_status(&tonic::Status::unavailable("connection refused"));
        }
        assert!(!node.is_available());
        node.record_answered();
        assert!(node.is_available());
    }

    /// Regression: a node's refusal of a client's intent (one that expired between
    /// the coordinator's check and the node's, say) counted as a node failure, so
    /// one client could make healthy nodes look down to every client.
    #[tokio::test]
    async fn a_refused_client_intent_leaves_the_node_healthy() {
        let node = node();
        for _ in 0..FAILURES_BEFORE_SKIP + 3 {
            node.record_status(&tonic::Status::unauthenticated("the sign intent expired"));
        }
        assert!(node.is_available());
    }

    #[tokio::test]
    async fn an_http2_enhance_your_calm_counts_against_health_despite_its_code() {
        // What tonic makes of a stream or connection the node's HTTP/2 layer closed
        // with ENHANCE_YOUR_CALM: the code a rate refusal has, with the h2 error as
        // its cause.
        let calm_down =
            || tonic::Status::from_error(Box::new(h2::Error::from(h2::Reason::ENHANCE_YOUR_CALM)));
        assert_eq!(calm_down().code(), tonic::Code::ResourceExhausted);
        let node = node();
        for _ in 0..FAILURES_BEFORE_SKIP {
            node.record_status(&calm_down());
        }
        assert!(!node.is_available());
    }

    #[tokio::test]
    async fn a_node_going_away_again_right_after_its_probe_said_serving_fails_and_is_held_off() {
        let node = node();
        let refuse = || node.record_status(&quorate_wire::api::going_away_status("draining"));
        refuse();
        node.record_serving(Instant::now(), Duration::from_micros(300));
        assert_eq!(node.standing(), Standing::Available);
        // Refused again within seconds of saying SERVING: a failure, and the next
        // SERVING probe does not bring it back.
        refuse();
        refuse();
        assert_eq!(node.health().consecutive_failures, 1);
        node.record_serving(Instant::now(), Duration::from_micros(300));
        assert_eq!(node.standing(), Standing::GoingAway);
        // Once the hold is over, a probe brings it back; doing it again holds it
        // off twice as long.
        node.health().probes_ignored_until = Some(Instant::now());
        node.record_serving(Instant::now(), Duration::from_micros(300));
        assert_eq!(node.standing(), Standing::Available);
        refuse();
        assert_eq!(node.health().going_away_again, 2);
        let held = node.health().probes_ignored_until.unwrap() - Instant::now();
        assert!(held > RETRY_AFTER, "{held:?}");
        // A node that served for a while before going away is restarting: no failure.
        let restarting = self::node();
        restarting.record_going_away();
        restarting.record_serving(Instant::now(), Duration::from_micros(300));
        restarting.health().back_since = Some(Instant::now() - GOING_AWAY_AGAIN_WITHIN);
        restarting.record_going_away();
        assert_eq!(restarting.health().consecutive_failures, 0);
        restarting.record_serving(Instant::now(), Duration::from_micros(300));
        assert_eq!(restarting.standing(), Standing::Available);
    }

    #[tokio::test]
    async fn a_node_going_away_is_not_chosen_until_its_probe_says_serving_and_is_not_counted_as_failing(
    ) {
        let node = node();
        let shutting_down = quorate_wire::api::going_away_status("the node is shutting down");
        for _ in 0..FAILURES_BEFORE_SKIP + 3 {
            node.record_status(&shutting_down);
        }
        assert_eq!(node.standing(), Standing::GoingAway);
        assert_eq!(node.health().consecutive_failures, 0);
        // Ranked after available nodes, before failing ones.
        let failing = self::node();
        for _ in 0..FAILURES_BEFORE_SKIP {
            failing.record_failure();
        }
        assert!(self::node().preference() < node.preference());
        assert!(node.preference() < failing.preference());
        // Calls it still answers (a key listing, a round-2 batch it took before it
        // began to drain) do not bring it back; a probe finding it SERVING does.
        node.record_answered();
        node.record_success(Duration::from_micros(300));
        assert_eq!(node.standing(), Standing::GoingAway);
        node.record_serving(Instant::now(), Duration::from_micros(300));
        assert_eq!(node.standing(), Standing::Available);
    }

    /// A probe answered SERVING just before the node began to drain must not undo
    /// the going-away the node said after it.
    #[tokio::test]
    async fn a_serving_answer_to_a_probe_sent_before_the_node_went_away_leaves_it_going_away() {
        let node = node();
        let probe_sent = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        node.record_going_away();
        node.record_serving(probe_sent, Duration::from_micros(300));
        assert_eq!(node.standing(), Standing::GoingAway);
    }

    #[tokio::test]
    async fn a_plain_unavailable_from_a_node_is_a_failure_not_a_going_away() {
        let node = node();
        for _ in 0..FAILURES_BEFORE_SKIP {
            node.record_status(&tonic::Status::unavailable("overloaded"));
        }
        assert_eq!(node.standing(), Standing::Skipped);
    }

    #[tokio::test]
    async fn only_signing_rounds_set_the_latency_that_orders_quorums() {
        let node = node();
        node.record_success(Duration::from_micros(500));
        node.record_answered();
        assert_eq!(node.preference(), (Standing::Available, 500));
    }

    #[test]
    fn a_slow_round_trip_does_not_hide_a_fast_one_of_the_last_seconds() {
        let mut window = LatencyWindow::default();
        let t0 = Instant::now();
        assert_eq!(window.least_us(t0), None);
        window.record(t0, 17_000);
        // A retransmission: one call 230 ms, the next ones queued behind it.
        window.record(t0 + Duration::from_millis(300), 230_000);
        window.record(t0 + Duration::from_millis(1_300), 120_000);
        assert_eq!(
            window.least_us(t0 + Duration::from_millis(1_400)),
            Some(17_000)
        );
        // A node that became slow ranks so once its fast samples leave the window.
        let later = t0 + Duration::from_secs(LATENCY_WINDOW_SECS as u64);
        window.record(later, 90_000);
        assert_eq!(window.least_us(later), Some(90_000));
        // With nothing recent, the latest sample stands.
        let idle = later + Duration::from_secs(60);
        assert_eq!(window.least_us(idle), Some(90_000));
    }

    /// A node refusing a client its key's policy does not allow (as every node
    /// holding a staged refresh that drops the client does) answers for that
    /// request only: however often one client is refused, the node stays available
    /// to every other client.
    #[tokio::test]
    async fn a_node_refusing_a_client_by_policy_stays_available() {
        let node = node();
        for _ in 0..=FAILURES_BEFORE_SKIP {
            node.record_status(&tonic::Status::permission_denied(
                "client spiffe://quorate.test/client/payments may not use key demo",
            ));
        }
        assert!(node.is_available());
    }

    #[tokio::test]
    async fn a_quarantined_culprit_ranks_after_nodes_that_are_merely_failing() {
        let (culprit, failing) = (node(), node());
        culprit.record_success(Duration::from_micros(100));
        culprit.record_culprit();
        failing.record_success(Duration::from_micros(900));
        for _ in 0..FAILURES_BEFORE_SKIP {
            failing.record_failure();
        }
        assert!(!culprit.is_available() && !failing.is_available());
        assert!(failing.preference() < culprit.preference());
        assert!(node().preference() < failing.preference());
    }
}
