//! The scrape endpoint: `GET /metrics` over plain HTTP/1.1, served by hyper; and
//! [`scrape`], its client, for the bench and tests.
//!
//! Limits, so that a scraper (or anything else that reaches the port) cannot hold the
//! process's resources: one request per connection (the connection closes after the
//! answer, as Prometheus expects of a simple exporter), the request head within
//! [`HEADER_READ_TIMEOUT`] and 8 KiB, the whole exchange within
//! [`CONNECTION_TIMEOUT`], and at most [`MAX_CONNECTIONS`] at once (more are closed
//! unanswered). Each connection runs on its own task and a scrape holds the
//! registry lock only while rendering, so scrapes never wait for signing nor
//! signing for scrapes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::registry::{self, Registry};

/// How long a client may take to send its request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may last, request and answer included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// The largest request head read (hyper's smallest allowed buffer).
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Runs before each scrape to update the gauges that are read rather than counted.
pub type Refresh = Arc<dyn Fn(&Registry) + Send + Sync>;

/// Serves `GET /metrics` on `listener` until the task is dropped: 200 with the
/// exposition text, 405 for another method on `/metrics`, 404 for any other path.
/// `refresh` runs before each scrape.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, refresh: Refresh) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, typically: wait instead of spinning.
                tracing::warn!("metrics endpoint cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("metrics endpoint busy: connection closed unanswered");
            continue;
        };
        let registry = registry.clone();
        let refresh = refresh.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                std::future::ready(Ok::<_, Infallible>(answer(&req, &registry, &refresh)))
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!("metrics connection ended: {e}"),
                Err(_) => tracing::debug!("metrics connection timed out"),
            }
        });
    }
}

fn answer(
    req: &Request<Incoming>,
    registry: &Registry,
    refresh: &Refresh,
) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return status(StatusCode::NOT_FOUND);
    }
    if req.method() != Method::GET {
        let mut response = status(StatusCode::METHOD_NOT_ALLOWED);
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    refresh(registry);
    let mut response = Response::new(Full::new(Bytes::from(registry.render())));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(registry::CONTENT_TYPE),
    );
    response
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}

/// Reads `GET /metrics` from the endpoint at `addr` ([`serve`]): the exposition
/// text. For the bench and tests, which read the processes they start.
pub async fn scrape(addr: &str) -> std::io::Result<String> {
    let (status, body) = get(addr, Method::GET, "/metrics").await?;
    if status != StatusCode::OK {
        return Err(std::io::Error::other(format!(
            "{addr} did not serve metrics: {status}"
        )));
    }
    String::from_utf8(body.to_vec()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{addr} served metrics that are not UTF-8: {e}"),
        )
    })
}

/// One HTTP/1.1 request to `addr`: the answer's status and body.
async fn get(addr: &str, method: Method, path: &str) -> std::io::Result<(StatusCode, Bytes)> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    // The connection is driven beside the request; the server closes it after its
    // answer, which ends this task.
    let driver = tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, addr)
        .body(Empty::<Bytes>::new())
        .map_err(std::io::Error::other)?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(std::io::Error::other)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        Ok((status, body))
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::super::sample;
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(
        registry: Arc<Registry>,
        refresh: Refresh,
    ) -> (String, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        (addr, tokio::spawn(serve(listener, registry, refresh)))
    }

    #[tokio::test]
    async fn scrape_reads_what_serve_renders_after_refreshing_the_gauges() {
        let registry = Registry::new();
        registry
            .counter_vec("q_requests_total", "Requests.", ["rpc"])
            .inc_by(["Sign"], 2);
        registry
            .histogram("q_latency_seconds", "Latency.")
            .observe(0.003);
        let refreshed = Arc::new(AtomicI64::new(0));
        let refresh: Refresh = {
            let refreshed = refreshed.clone();
            Arc::new(move |r: &Registry| {
                let n = refreshed.fetch_add(1, Ordering::Relaxed) + 1;
                r.gauge("q_scrapes", "Scrapes.").set(n);
            })
        };
        let (addr, server) = start(registry, refresh).await;
        let text = scrape(&addr).await.unwrap();
        assert!(!text.starts_with("HTTP/"), "the head is stripped: {text}");
        assert_eq!(sample(&text, "q_requests_total{rpc=\"Sign\"}"), Some(2.0));
        assert_eq!(sample(&text, "q_latency_seconds_sum"), Some(0.003));
        assert_eq!(sample(&text, "q_latency_seconds_count"), Some(1.0));
        assert_eq!(sample(&text, "q_scrapes"), Some(1.0));
        // A name that is only the start of another series is not that series.
        assert_eq!(sample(&text, "q_latency_seconds"), None);
        assert_eq!(sample(&text, "q_missing"), None);
        let again = scrape(&addr).await.unwrap();
        assert_eq!(sample(&again, "q_scrapes"), Some(2.0));
        server.abort();
        let _ = server.await;
        assert!(
            scrape(&addr).await.is_err(),
            "nothing serves {addr} any more"
        );
    }

    #[tokio::test]
    async fn answers_the_text_format_content_type_404_and_405() {
        let (addr, server) = start(Registry::new(), Arc::new(|_: &Registry| ())).await;
        // The raw answer, as Prometheus sees it: a content type its text parser
        // reads, and the connection closed after the answer.
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"GET /metrics?x=1 HTTP/1.1\r\nHost: metrics\r\n\r\n")
            .await
            .unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
        assert!(
            raw.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            "{raw}"
        );
        for (method, path, want) in [
            (Method::GET, "/", StatusCode::NOT_FOUND),
            (Method::GET, "/metricsx", StatusCode::NOT_FOUND),
            (Method::GET, "/debug/pprof", StatusCode::NOT_FOUND),
            (Method::POST, "/metrics", StatusCode::METHOD_NOT_ALLOWED),
            (Method::DELETE, "/metrics", StatusCode::METHOD_NOT_ALLOWED),
        ] {
            let (status, body) = get(&addr, method.clone(), path).await.unwrap();
            assert_eq!(status, want, "{method} {path}");
            assert!(body.is_empty(), "{method} {path}: {body:?}");
        }
        assert!(scrape(&addr).await.is_ok());
        server.abort();
    }

    #[tokio::test]
    async fn a_client_that_sends_no_request_is_cut_off_and_holds_up_no_scrape() {
        let (addr, server) = start(Registry::new(), Arc::new(|_: &Registry| ())).await;
        let mut idle = TcpStream::connect(&addr).await.unwrap();
        let mut garbage = TcpStream::connect(&addr).await.unwrap();
        garbage
            .write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
            .await
            .unwrap();
        // Others are served meanwhile.
        tokio::time::timeout(Duration::from_secs(2), scrape(&addr))
            .await
            .expect("a scrape beside a stalled connection is answered promptly")
            .unwrap();
        // Bad input gets an error answer (or a close), never a hang.
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(2), garbage.read_to_end(&mut answer))
            .await
            .expect("a malformed request is answered at once")
            .ok();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
            "{answer}"
        );
        // The silent one is closed once the head is overdue.
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(HEADER_READ_TIMEOUT * 2, idle.read(&mut buf))
            .await
            .expect("the server closes a connection that sends no request head");
        assert!(
            matches!(read, Ok(0) | Err(_))
                || String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"),
            "{read:?}"
        );
        server.abort();
    }
}
