//! The plaintext health port (`health_listen`) of real node and coordinator
//! processes: without a client certificate it answers `grpc.health.v1/Check` and
//! nothing else (not `Watch`, not reflection, not HTTP/1.1), reports the same
//! status as the mTLS health service (`NOT_SERVING` and unready as soon as a
//! SIGTERM begins the drain, while `liveness` stays `SERVING`), keeps answering new
//! connections through the drain, and closes once the drain is over. This is what
//! the kubelet's native `grpc` probes of deploy/base rely on.

mod common;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use quorate_transport::health::{LIVENESS_SERVICE, READINESS_SERVICE};
use quorate_transport::identity::Role;
use quorate_transport::runtime::DEFAULT_SHUTDOWN_GRACE_MS;
use quorate_wire::pb;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// The servers' default grace, and a margin for the exit and for this test to see it.
const EXIT_BOUND: Duration = Duration::from_millis(DEFAULT_SHUTDOWN_GRACE_MS + 3_000);

/// A plaintext HTTP/2 channel to `addr` (`127.0.0.1:PORT`), as the kubelet dials.
async fn plaintext(addr: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the health port {addr}: {e}"))
}

async fn check(channel: &Channel, service: &str) -> Result<ServingStatus, tonic::Status> {
    let status = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?
        .into_inner()
        .status;
    Ok(ServingStatus::try_from(status).expect("a known serving status"))
}

/// Waits until `service`'s status on `channel` is `wanted`, for at most 5 s.
async fn wait_status(channel: &Channel, service: &str, wanted: ServingStatus) {
    let started = Instant::now();
    loop {
        let seen = check(channel, service).await;
        if matches!(seen, Ok(s) if s == wanted) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{service:?} on the health port is {seen:?}, not {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_unimplemented<T: std::fmt::Debug>(what: &str, result: Result<T, tonic::Status>) {
    match result {
        Err(status) => assert_eq!(
            status.code(),
            tonic::Code::Unimplemented,
            "{what} on the health port: {status:?}"
        ),
        Ok(answer) => panic!("{what} on the health port answered without mTLS: {answer:?}"),
    }
}

/// Every service the node and coordinator serve over mTLS, called on `channel`
/// without a certificate: each must be `UNIMPLEMENTED` there, as must `Watch`
/// (the kubelet only checks) and reflection.
async fn assert_only_health(channel: &Channel) {
    // A Check first: a connection that makes none is cut after 2 s.
    check(channel, LIVENESS_SERVICE).await.unwrap();
    assert_unimplemented(
        "Health.Watch",
        HealthClient::new(channel.clone())
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await,
    );
    assert_unimplemented(
        "ServerReflection.ServerReflectionInfo",
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            channel.clone(),
        )
        .server_reflection_info(futures::stream::iter([
            tonic_reflection::pb::v1::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(
                    tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                        String::new(),
                    ),
                ),
            },
        ]))
        .await,
    );
    assert_unimplemented(
        "Audit.ReadAudit",
        pb::audit_client::AuditClient::new(channel.clone())
            .read_audit(pb::ReadAuditRequest { from_seq: 0 })
            .await,
    );
    assert_unimplemented(
        "Node.ListNodeKeys",
        pb::node_client::NodeClient::new(channel.clone())
            .list_node_keys(pb::ListNodeKeysRequest {})
            .await,
    );
    assert_unimplemented(
        "Node.Commit",
        pb::node_client::NodeClient::new(channel.clone())
            .commit(pb::CommitRequest {
                key_id: "demo-ed25519".into(),
                count: 1,
            })
            .await,
    );
    assert_unimplemented(
        "Ceremony.GetInfo",
        pb::ceremony_client::CeremonyClient::new(channel.clone())
            .get_info(pb::GetInfoRequest {})
            .await,
    );
    assert_unimplemented(
        "Signer.ListKeys",
        pb::signer_client::SignerClient::new(channel.clone())
            .list_keys(pb::ListKeysRequest {})
            .await,
    );
    assert_unimplemented(
        "Signer.GetPublicKey",
        pb::signer_client::SignerClient::new(channel.clone())
            .get_public_key(pb::GetPublicKeyRequest {
                key_id: "demo-ed25519".into(),
            })
            .await,
    );
}

/// A `Watch` of the overall status over mTLS on `channel`, answered `SERVING`
/// first. While it is open the server's drain cannot finish before its grace, so
/// the drain lasts long enough to be looked at.
async fn hold_drain_open(
    channel: &Channel,
) -> tonic::Streaming<tonic_health::pb::HealthCheckResponse> {
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("Watch over mTLS")
        .into_inner();
    let first = watch
        .message()
        .await
        .expect("a first status")
        .expect("open");
    assert_eq!(first.status, ServingStatus::Serving as i32);
    watch
}

/// An HTTP/1.1 request to the health port gets no HTTP response: the port speaks
/// HTTP/2 only, and closes the connection.
async fn assert_no_http1(addr: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the health port {addr} kept an HTTP/1.1 connection open"
    );
    assert!(
        !answer.starts_with(b"HTTP/"),
        "the health port {addr} answered HTTP/1.1: {:?}",
        String::from_utf8_lossy(&answer)
    );
}

/// What a readiness and a liveness probe find on a new connection to `addr` (the
/// kubelet dials one per probe) while the server drains: not ready, not serving,
/// alive.
async fn assert_draining(addr: &str, own_service: &str) {
    let fresh = plaintext(addr).await;
    for service in ["", own_service, READINESS_SERVICE] {
        assert_eq!(
            check(&fresh, service).await.unwrap(),
            ServingStatus::NotServing,
            "{service:?} on a new connection during the drain"
        );
    }
    assert_eq!(
        check(&fresh, LIVENESS_SERVICE).await.unwrap(),
        ServingStatus::Serving
    );
}

/// While a drain is held open: the mTLS Watch hears NOT_SERVING, and the health
/// port says NOT_SERVING for the server and for `own_service`, SERVING for liveness
/// (so a liveness probe does not kill a draining server), serves only health, is
/// still open to new connections, and speaks no HTTP/1.1.
async fn assert_drain_seen(
    watch: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
    health: &Channel,
    health_addr: &str,
    own_service: &str,
) {
    let over_mtls = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("the mTLS Watch hears of the drain")
        .expect("the stream is open")
        .expect("a status");
    assert_eq!(over_mtls.status, ServingStatus::NotServing as i32);
    wait_status(health, "", ServingStatus::NotServing).await;
    assert_eq!(
        check(health, own_service).await.unwrap(),
        ServingStatus::NotServing
    );
    assert_eq!(
        check(health, LIVENESS_SERVICE).await.unwrap(),
        ServingStatus::Serving
    );
    assert_only_health(health).await;
    assert_draining(health_addr, own_service).await;
    assert_no_http1(health_addr).await;
}

async fn assert_closed(addr: &str) {
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the health port {addr} still accepts connections after the process exited"
    );
}

#[tokio::test]
async fn a_nodes_health_port_serves_only_health_and_turns_not_serving_when_it_drains() {
    let mut net = common::start_default().await;
    let node = net.node("node-1").unwrap();
    let health_addr = node.health.clone();
    let health = plaintext(&health_addr).await;
    assert_eq!(check(&health, "").await.unwrap(), ServingStatus::Serving);
    assert_eq!(
        check(&health, "quorate.v1.Node").await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(
        check(&health, LIVENESS_SERVICE).await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(
        check(&health, READINESS_SERVICE).await.unwrap(),
        ServingStatus::Serving
    );
    assert_only_health(&health).await;
    assert_no_http1(&health_addr).await;

    let mtls = net
        .tls_paths(Role::Ceremony, "testnet")
        .load()
        .unwrap()
        .node_channel(&node.endpoint, "node-1", Duration::from_secs(2))
        .unwrap();
    let mut watch = hold_drain_open(&mtls).await;
    node.process.signal(Signal::SIGTERM).unwrap();

    // Both ports say NOT_SERVING, from the one status; liveness stays SERVING so a
    // liveness probe does not kill a node that is draining.
    assert_drain_seen(&mut watch, &health, &health_addr, "quorate.v1.Node").await;
    assert!(
        node.process.is_running(),
        "node-1 exited before the drain was looked at"
    );

    let exit = net.terminate_node("node-1", EXIT_BOUND).await.unwrap();
    assert!(
        exit.clean_within(EXIT_BOUND),
        "node-1 after SIGTERM: {exit}"
    );
    assert_closed(&health_addr).await;
}

#[tokio::test]
async fn a_coordinators_health_port_serves_only_health_and_turns_not_serving_when_it_drains() {
    let mut net = common::start_default().await;
    let health_addr = net.coordinator_health.clone();
    let health = plaintext(&health_addr).await;
    assert_eq!(check(&health, "").await.unwrap(), ServingStatus::Serving);
    assert_eq!(
        check(&health, "quorate.v1.Signer").await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(
        check(&health, LIVENESS_SERVICE).await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(
        check(&health, READINESS_SERVICE).await.unwrap(),
        ServingStatus::Serving
    );
    assert_only_health(&health).await;
    assert_no_http1(&health_addr).await;

    let (name, endpoint) = net.coordinator_access(0).unwrap();
    let mtls = net
        .tls_paths(Role::Client, "demo-client")
        .load()
        .unwrap()
        .coordinator_channel(&endpoint, &name, Duration::from_secs(2))
        .unwrap();
    let mut watch = hold_drain_open(&mtls).await;
    net.coordinator.signal(Signal::SIGTERM).unwrap();

    assert_drain_seen(&mut watch, &health, &health_addr, "quorate.v1.Signer").await;
    assert!(
        net.coordinator.is_running(),
        "the coordinator exited before the drain was looked at"
    );

    let exit = net.terminate_coordinator(0, EXIT_BOUND).await.unwrap();
    assert!(
        exit.clean_within(EXIT_BOUND),
        "the coordinator after SIGTERM: {exit}"
    );
    assert_closed(&health_addr).await;
}
