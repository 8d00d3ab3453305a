//! The server side of mTLS for the node and the coordinator: the connections a
//! server accepts, each after a TLS handshake that presents the party's current
//! certificate and checks the client's against the current CA bundle.
//!
//! tonic's own acceptor is built once from one certificate, so a renewed
//! certificate would need a restart; here the handshake reads the material that
//! [`TlsMaterial::reload`] last swapped in, and connections already open keep
//! theirs. tonic serves the accepted streams and reads the client certificate of
//! each from it as before (`Request::peer_certs`).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::identity::PeerIdentity;
use crate::tls::{hex_sha256, CurrentClientVerifier, CurrentServerCert, TlsError, TlsMaterial};

/// Longest a client may take over its TLS handshake before the connection is
/// dropped: a peer that opens connections and stalls cannot pile them up.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepted connections waiting for the server to take them.
const BACKLOG: usize = 64;

impl TlsMaterial {
    /// The mTLS connections a server accepts on `listener` (with `TCP_NODELAY`,
    /// see [`crate::tls::incoming`]), for tonic's `serve_with_incoming*`. Each
    /// handshake presents this party's current certificate and requires a client
    /// certificate that chains to the current CA bundle; a failed handshake is
    /// logged (at debug: scanners and probes fail them all day) and dropped.
    /// Handshakes run concurrently. Accepting stops once the stream is dropped
    /// (tonic drops it when a graceful shutdown begins), closing the port.
    pub fn incoming_tls(
        &self,
        listener: TcpListener,
    ) -> Result<ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>>, TlsError> {
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Pem(format!("TLS setup: {e}")))?
            .with_client_cert_verifier(Arc::new(CurrentClientVerifier(self.live.clone())))
            .with_cert_resolver(Arc::new(CurrentServerCert(self.live.clone())));
        config.alpn_protocols = vec![b"h2".to_vec()];
        // Every connection authenticates with the certificates current at its
        // handshake: no resumed session may carry a client certificate that was
        // replaced or has expired since (and none ours offers one, see tls.rs).
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (tx, rx) = tokio::sync::mpsc::channel(BACKLOG);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = tx.closed() => return,
                    accepted = listener.accept() => accepted,
                };
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than
                        // spin, and keep serving what is open.
                        tracing::warn!("accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            log_peer(&tls, peer);
                            let _ = tx.send(Ok(tls)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}

/// Logs who connected with which certificate: after a renewal, this is where an
/// operator sees each peer move to its new certificate (a fingerprint is public).
fn log_peer(tls: &TlsStream<TcpStream>, peer: std::net::SocketAddr) {
    let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
        return;
    };
    let identity = PeerIdentity::from_certificate_der(leaf.as_ref())
        .map(|id| id.to_string())
        .unwrap_or_else(|e| format!("<{e}>"));
    tracing::info!(
        %peer,
        peer_identity = %identity,
        peer_certificate_sha256 = %hex_sha256(leaf.as_ref()),
        "mTLS connection accepted"
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use tonic::transport::Server;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    use super::*;
    use crate::identity::Role;
    use crate::test_ca::{new_ca, pem, Ca};
    use crate::tls::TlsPaths;

    fn write(dir: &std::path::Path, ca: &Ca, role: &str, name: &str) -> TlsPaths {
        let (cert, key) = pem(ca, role, name);
        let paths = TlsPaths {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{role}-{name}.pem")),
            key: dir.join(format!("{role}-{name}-key.pem")),
        };
        std::fs::write(&paths.ca, &ca.pem).unwrap();
        std::fs::write(&paths.key, key).unwrap();
        std::fs::write(&paths.cert, cert).unwrap();
        paths
    }

    async fn check(channel: tonic::transport::Channel) {
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn new_handshakes_use_the_reloaded_certificates_and_open_connections_stay() {
        crate::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca("CA");
        let server_paths = write(dir.path(), &ca, "node", "node-1");
        let client_paths = write(dir.path(), &ca, "coordinator", "coordinator");
        let server = server_paths.load().unwrap();
        let client = client_paths.load().unwrap();

        // The server records the client certificate of every request.
        let callers: Arc<Mutex<Vec<String>>> = Arc::default();
        let record = {
            let callers = callers.clone();
            move |req: tonic::Request<()>| {
                let leaf = req.peer_certs().unwrap()[0].clone();
                callers.lock().unwrap().push(hex_sha256(leaf.as_ref()));
                Ok(req)
            }
        };
        let health = tonic_health::server::HealthService::from_health_reporter(
            tonic_health::server::HealthReporter::new(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("https://{}", listener.local_addr().unwrap());
        let incoming = server.incoming_tls(listener).unwrap();
        tokio::spawn(
            Server::builder()
                .add_service(
                    tonic_health::pb::health_server::HealthServer::with_interceptor(health, record),
                )
                .serve_with_incoming(incoming),
        );
        let node = client.server_identity(Role::Node, "node-1").unwrap();
        let timeout = Duration::from_secs(2);
        let (old_channel, seen) = client.observed_channel(&uri, &node, timeout).unwrap();
        check(old_channel.clone()).await;
        assert_eq!(
            hex_sha256(&seen.get().unwrap()),
            server.certificate_fingerprint()
        );
        assert_eq!(
            callers.lock().unwrap().last().unwrap(),
            &client.certificate_fingerprint()
        );

        // Both renew.
        let (old_server, old_client) = (
            server.certificate_fingerprint(),
            client.certificate_fingerprint(),
        );
        write(dir.path(), &ca, "node", "node-1");
        write(dir.path(), &ca, "coordinator", "coordinator");
        assert!(matches!(
            server.reload().unwrap(),
            crate::tls_reload::Reload::Replaced { .. }
        ));
        assert!(matches!(
            client.reload().unwrap(),
            crate::tls_reload::Reload::Replaced { .. }
        ));
        assert_ne!(server.certificate_fingerprint(), old_server);

        // The open connection carries on with the certificates of its handshake.
        check(old_channel).await;
        assert_eq!(callers.lock().unwrap().last().unwrap(), &old_client);

        // A new connection: the server presents its new certificate, the client
        // its new one, and the pin on the server's SPIFFE id holds.
        let (channel, seen) = client.observed_channel(&uri, &node, timeout).unwrap();
        check(channel).await;
        assert_eq!(
            hex_sha256(&seen.get().unwrap()),
            server.certificate_fingerprint()
        );
        assert_eq!(
            callers.lock().unwrap().last().unwrap(),
            &client.certificate_fingerprint()
        );

        // A client of another CA still fails the handshake.
        let stranger = write(dir.path(), &new_ca("other CA"), "coordinator", "x")
            .load()
            .unwrap();
        let channel = stranger.node_channel(&uri, "node-1", timeout).unwrap();
        assert!(HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .is_err());
    }
}
