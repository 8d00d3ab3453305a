//! `grpc.health.v1` for a server: one serving status, kept in one
//! [`HealthReporter`] ([`reporter`]), answered on the server's mTLS port
//! ([`service`]) and, when configured, on a plaintext health port ([`HealthPort`])
//! for probes that cannot present a client certificate, such as the kubelet's
//! native `grpc` probe.
//!
//! The health port answers `grpc.health.v1.Health/Check` and nothing else: every
//! other method is `UNIMPLEMENTED`, `Watch` and reflection included (the kubelet
//! only checks; a watch would hold a connection open). What anyone who
//! reaches it learns is whether the process is alive and whether it serves (the
//! statuses of [`reporter`]); no certificate, key, key id or peer is named there.
//! It is bounded like the mTLS port and more: a few connections, a few streams per
//! connection, tiny requests, a timeout per call, a short time to make the first
//! call and a short connection life.
//! It runs on an OS thread and a single-threaded tokio runtime of its own, so a
//! flood of probes competes with the server's work only for CPU, never for a place
//! in the queue of the server's own runtime (a node runs a single worker).
//!
//! Invariant: both ports read the same statuses, so the health port turns
//! `NOT_SERVING` exactly when the mTLS health does (a drain, a broken audit log).
//! In a drain it keeps answering, `NOT_SERVING`, until the server's drain is over,
//! and then closes ([`RunningHealthPort::close`]): shutting its runtime down ends
//! every connection it still holds, so nothing of it outlives the close.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::Connected;
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService, WatchStream};
use tonic_health::ServingStatus;

/// The `grpc.health.v1` service name that answers `SERVING` for as long as the
/// process answers at all, drains and broken audit logs included: for a liveness
/// probe, which must restart a process that hangs but not one that drains (it
/// exits by itself) or one that waits for its operator (`NOT_SERVING` until
/// restarted, docs/alerts.md).
pub const LIVENESS_SERVICE: &str = "liveness";

/// The `grpc.health.v1` service name that turns `NOT_SERVING` when the server
/// begins to drain ([`set_draining`]) and for nothing else: for a readiness probe.
/// A node whose audit log broke is `NOT_SERVING` overall (`""`, which the
/// coordinators probe over mTLS, so they stop choosing it) but stays ready: its
/// auditors still read its durable records through its Service, and a cluster drain
/// does not evict it as unhealthy before its operator has checked the disk.
pub const READINESS_SERVICE: &str = "readiness";

/// Most connections the health port holds at once; more wait in the listen backlog.
/// A kubelet opens one per probe and closes it after the answer.
pub const MAX_CONNECTIONS: usize = 32;
/// Most concurrent streams (calls) per connection.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 4;
/// Longest a `Check` may take (it reads a status in memory).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection that has not made a `Check` this long after it was accepted is
/// cut, so a peer that connects and sends nothing (or half a request) gives its
/// slot back at once. A kubelet probe makes its call within milliseconds.
pub const FIRST_CALL_DEADLINE: Duration = Duration::from_secs(2);
/// A connection is told to go away after this long, and cut [`CLOSE_GRACE`] later,
/// so a peer cannot hold one of [`MAX_CONNECTIONS`] for long.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(10);
/// Largest health request accepted: a `HealthCheckRequest` holds one service name.
pub const MAX_REQUEST_BYTES: usize = 1024;
/// Largest HTTP/2 header list accepted.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// Streams a peer may reset before they are accepted, and streams the port may
/// reset for a peer's errors, per connection, before the connection gets GOAWAY
/// (h2's guards against reset floods; a kubelet resets none).
const MAX_RESET_STREAMS: usize = 2 * MAX_STREAMS_PER_CONNECTION as usize;
/// How long the health port's connections may take to close once the server's
/// drain is over (or once they reach [`MAX_CONNECTION_AGE`]), before they are cut.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long [`RunningHealthPort::close`] waits for the port's thread beyond
/// [`CLOSE_GRACE`] before it leaves the thread behind.
const CLOSE_SLACK: Duration = Duration::from_secs(1);

/// The one serving status of a server: `""` (overall), [`LIVENESS_SERVICE`] and
/// [`READINESS_SERVICE`] `SERVING`. The server sets its own services on it and
/// turns them `NOT_SERVING`; [`service`] and [`HealthPort`] answer from it.
pub async fn reporter() -> HealthReporter {
    let reporter = HealthReporter::new();
    for service in ["", LIVENESS_SERVICE, READINESS_SERVICE] {
        reporter
            .set_service_status(service, ServingStatus::Serving)
            .await;
    }
    reporter
}

/// Reports a server that has begun to drain: `NOT_SERVING` overall and for
/// [`READINESS_SERVICE`] (the server turns its own services `NOT_SERVING` too).
/// [`LIVENESS_SERVICE`] stays `SERVING`: the server exits by itself.
pub async fn set_draining(reporter: &HealthReporter) {
    for service in ["", READINESS_SERVICE] {
        reporter
            .set_service_status(service, ServingStatus::NotServing)
            .await;
    }
}

/// A `grpc.health.v1` service answering from `reporter`'s statuses.
pub fn service(reporter: &HealthReporter) -> HealthServer<HealthService> {
    HealthServer::new(HealthService::from_health_reporter(reporter.clone()))
        .max_decoding_message_size(MAX_REQUEST_BYTES)
}

/// A bound plaintext health port, not yet serving.
#[derive(Debug)]
pub struct HealthPort {
    // A std listener: it joins the port's own runtime when it starts serving.
    listener: std::net::TcpListener,
}

impl HealthPort {
    /// Binds `addr`.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?.into_std()?;
        Ok(Self { listener })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `grpc.health.v1` from `reporter` on an OS thread and a
    /// single-threaded tokio runtime of its own until [`RunningHealthPort::close`]
    /// (or until the handle is dropped). Fails if the thread or its runtime cannot
    /// be started.
    pub fn spawn(self, reporter: &HealthReporter) -> std::io::Result<RunningHealthPort> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (finished, done) = tokio::sync::oneshot::channel::<()>();
        let addr = self.local_addr().ok();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let reporter = reporter.clone();
        let listener = self.listener;
        std::thread::Builder::new()
            .name("quorate-health".into())
            .spawn(move || {
                // Err: the handle was dropped, which also stops the port.
                let stopped = stopped.map(|_| ()).shared();
                runtime.block_on(async {
                    let served = async {
                        let listener = TcpListener::from_std(listener)?;
                        serve(listener, reporter, stopped.clone())
                            .await
                            .map_err(std::io::Error::other)
                    };
                    // Once stopped, connections get CLOSE_GRACE to close by themselves.
                    let cut = async {
                        stopped.clone().await;
                        tokio::time::sleep(CLOSE_GRACE).await;
                    };
                    tokio::select! {
                        served = served => if let Err(e) = served {
                            tracing::error!(?addr, "the health port stopped: {e}");
                        },
                        () = cut => {}
                    }
                });
                // Drops every connection task still running (a peer that did not
                // leave when told): their sockets close here.
                drop(runtime);
                drop(finished);
            })?;
        Ok(RunningHealthPort { stop, done })
    }
}

/// A health port serving on a thread of its own.
#[derive(Debug)]
pub struct RunningHealthPort {
    stop: tokio::sync::oneshot::Sender<()>,
    /// Resolves (closed) once the port's thread has shut its runtime down.
    done: tokio::sync::oneshot::Receiver<()>,
}

impl RunningHealthPort {
    /// Stops accepting (the port closes), tells each connection to go away, gives
    /// them [`CLOSE_GRACE`] to close and then cuts whatever is left by shutting the
    /// port's runtime down. A server calls this once its drain is over, having said
    /// `NOT_SERVING` on it all along. Bounded: if the thread has not finished
    /// [`CLOSE_SLACK`] after that, it is left to finish alone.
    pub async fn close(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(CLOSE_GRACE + CLOSE_SLACK, self.done)
            .await
            .is_err()
        {
            tracing::warn!("the health port's thread did not stop in time");
        }
    }
}

/// `grpc.health.v1` for the plaintext port: `Check` from the server's status, which
/// also marks the connection as having made its first call (no
/// [`FIRST_CALL_DEADLINE`] any more); `Watch` is `UNIMPLEMENTED`.
#[derive(Debug)]
struct CheckOnly(HealthService);

#[tonic::async_trait]
impl Health for CheckOnly {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        if let Some(info) = request.extensions().get::<ProbeConnectInfo>() {
            info.called.store(true, Ordering::Relaxed);
        }
        self.0.check(request).await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented(
            "Watch is not served on the plaintext health port",
        ))
    }
}

/// Serves only `grpc.health.v1` from `reporter`, in plaintext HTTP/2, on
/// `listener` until `stop` resolves, within the limits above.
async fn serve(
    listener: TcpListener,
    reporter: HealthReporter,
    stop: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .timeout(CALL_TIMEOUT)
        .concurrency_limit_per_connection(MAX_STREAMS_PER_CONNECTION as usize)
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .http2_max_pending_accept_reset_streams(Some(MAX_RESET_STREAMS))
        .http2_max_local_error_reset_streams(Some(MAX_RESET_STREAMS))
        .max_connection_age(MAX_CONNECTION_AGE)
        .max_connection_age_grace(CLOSE_GRACE)
        .add_service(
            HealthServer::new(CheckOnly(HealthService::from_health_reporter(reporter)))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .serve_with_incoming_shutdown(limited_incoming(listener, MAX_CONNECTIONS), stop)
        .await
}

/// Connections accepted from `listener`, at most `max` open at once: each holds a
/// permit until it closes, and no connection is accepted while none is free.
fn limited_incoming(
    listener: TcpListener,
    max: usize,
) -> impl futures::Stream<Item = std::io::Result<LimitedConnection>> {
    let permits = Arc::new(Semaphore::new(max));
    futures::stream::unfold((listener, permits), |(listener, permits)| async move {
        // The semaphore is never closed, so this always gets a permit.
        let permit = permits.clone().acquire_owned().await.ok()?;
        let accepted = match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                Ok(LimitedConnection {
                    stream,
                    _permit: permit,
                    called: Arc::new(AtomicBool::new(false)),
                    first_call_deadline: Some(Box::pin(tokio::time::sleep(FIRST_CALL_DEADLINE))),
                })
            }
            Err(e) => {
                // Out of descriptors, say: do not spin on accept.
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(e)
            }
        };
        Some((accepted, (listener, permits)))
    })
}

/// An accepted connection holding one of the port's permits while it lives, and
/// failing its reads (so hyper drops it) once [`FIRST_CALL_DEADLINE`] has passed
/// without a `Check` on it.
#[derive(Debug)]
struct LimitedConnection {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Set by [`CheckOnly::check`], through the request's [`ProbeConnectInfo`].
    called: Arc<AtomicBool>,
    /// None once a call was made.
    first_call_deadline: Option<Pin<Box<Sleep>>>,
}

/// What tonic puts in each request's extensions for a health port connection.
#[derive(Debug, Clone)]
struct ProbeConnectInfo {
    /// Set once a `Check` was made on the connection.
    called: Arc<AtomicBool>,
}

impl Connected for LimitedConnection {
    type ConnectInfo = ProbeConnectInfo;

    fn connect_info(&self) -> ProbeConnectInfo {
        ProbeConnectInfo {
            called: self.called.clone(),
        }
    }
}

impl AsyncRead for LimitedConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        // hyper always has a read pending on a live connection, so the deadline's
        // timer wakes it here even when the peer sends nothing.
        if let Some(deadline) = &mut this.first_call_deadline {
            if this.called.load(Ordering::Relaxed) {
                this.first_call_deadline = None;
            } else if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no health check within the first-call deadline",
                )));
            }
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    async fn check(
        channel: &tonic::transport::Channel,
        service: &str,
    ) -> Result<i32, tonic::Status> {
        HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .map(|r| r.into_inner().status)
    }

    /// A health port on a free loopback port, serving `reporter`'s status.
    async fn serve(reporter: &HealthReporter) -> (RunningHealthPort, std::net::SocketAddr) {
        let port = HealthPort::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = port.local_addr().unwrap();
        (port.spawn(reporter).unwrap(), addr)
    }

    /// A plaintext gRPC channel to the port at `addr`.
    async fn connect(addr: std::net::SocketAddr) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_port_answers_the_servers_status_as_it_changes_and_closes_when_told() {
        let reporter = reporter().await;
        let (running, addr) = serve(&reporter).await;
        let channel = connect(addr).await;
        assert_eq!(check(&channel, "").await.unwrap(), 1, "SERVING");
        assert_eq!(check(&channel, LIVENESS_SERVICE).await.unwrap(), 1);
        assert_eq!(
            check(&channel, "no.such.Service").await.unwrap_err().code(),
            tonic::Code::NotFound
        );
        // Nothing but health: any other service's method is UNIMPLEMENTED.
        let listed = quorate_wire::pb::signer_client::SignerClient::new(channel.clone())
            .list_keys(quorate_wire::pb::ListKeysRequest {})
            .await
            .unwrap_err();
        assert_eq!(listed.code(), tonic::Code::Unimplemented, "{listed:?}");
        // Nor Watch: the kubelet only checks, and a watch would hold a connection.
        let watched = HealthClient::new(channel.clone())
            .watch(HealthCheckRequest { service: "".into() })
            .await
            .unwrap_err();
        assert_eq!(watched.code(), tonic::Code::Unimplemented, "{watched:?}");

        assert_eq!(check(&channel, READINESS_SERVICE).await.unwrap(), 1);

        // Not serving, but not draining (a node's audit log broke): still ready.
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        assert_eq!(check(&channel, "").await.unwrap(), 2, "NOT_SERVING");
        assert_eq!(check(&channel, READINESS_SERVICE).await.unwrap(), 1);
        // A drain: the server's own reporter turns NOT_SERVING, and so does the port.
        set_draining(&reporter).await;
        assert_eq!(check(&channel, "").await.unwrap(), 2, "NOT_SERVING");
        assert_eq!(check(&channel, READINESS_SERVICE).await.unwrap(), 2);
        assert_eq!(check(&channel, LIVENESS_SERVICE).await.unwrap(), 1);

        running.close().await;
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "the port is closed"
        );
    }

    /// Regression: close stopped the accept loop, but each connection ran on a
    /// task of its own that outlived it (a `Watch`, a call that never ends, an idle
    /// peer: up to a minute, in whatever process embeds the server).
    #[tokio::test]
    async fn close_cuts_a_connection_whose_call_never_ends() {
        let reporter = reporter().await;
        let (running, addr) = serve(&reporter).await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
        let connection = tokio::spawn(connection);
        // A Check whose request body never comes: the call waits for it.
        let request = tonic::codegen::http::Request::post(format!(
            "http://{addr}/grpc.health.v1.Health/Check"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
        let (_response, _body) = client.send_request(request, false).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;

        let started = std::time::Instant::now();
        running.close().await;
        let ended = tokio::time::timeout(Duration::from_secs(1), connection).await;
        assert!(
            ended.is_ok(),
            "the connection was still open {:?} after close began",
            started.elapsed()
        );
        assert!(started.elapsed() < CLOSE_GRACE + CLOSE_SLACK + Duration::from_secs(1));
    }

    /// Regression: a peer that connected and sent nothing (or half of the HTTP/2
    /// preface) held one of the port's connections until the connection's maximum
    /// age, 61 s.
    #[tokio::test]
    async fn a_connection_without_a_check_is_cut_after_the_first_call_deadline() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let reporter = reporter().await;
        let (_running, addr) = serve(&reporter).await;
        let silent = TcpStream::connect(addr).await.unwrap();
        let mut half = TcpStream::connect(addr).await.unwrap();
        half.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        for (name, mut stream) in [("silent", silent), ("half a preface", half)] {
            let mut buf = [0u8; 256];
            let ended = tokio::time::timeout(FIRST_CALL_DEADLINE + Duration::from_secs(2), async {
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {} // the server's SETTINGS
                    }
                }
            })
            .await;
            assert!(ended.is_ok(), "the {name} connection is still open");
        }
    }

    #[tokio::test]
    async fn a_request_over_the_size_cap_is_refused() {
        let reporter = reporter().await;
        let (_running, addr) = serve(&reporter).await;
        let channel = connect(addr).await;
        let status = check(&channel, &"x".repeat(MAX_REQUEST_BYTES + 1))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_until_one_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = limited_incoming(listener, 1);
        tokio::pin!(incoming);
        use futures::StreamExt;
        let _a = TcpStream::connect(addr).await.unwrap();
        let first = incoming.next().await.unwrap().unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(200), incoming.next()).await;
        assert!(waiting.is_err(), "a second connection was taken at the cap");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), incoming.next())
            .await
            .expect("taken once the first closed");
        assert!(second.unwrap().is_ok());
    }
}
