//! Observes the certificate a node presents, for the transcript.
//!
//! tonic's client does not expose the server's certificate, so the ceremony makes
//! one extra mTLS handshake of its own (same CA, same client certificate, same
//! expected server name) and records the leaf it was shown. The handshake verifies
//! the certificate exactly as the gRPC connection does, so the fingerprint is that of
//! a certificate the CA issued for the node's name.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use quorate_proto::tls::TlsPaths;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use zeroize::Zeroizing;

/// The DER of the leaf certificate the server at `endpoint` (`https://host:port`)
/// presents in a verified mTLS handshake as `server_name`.
pub(crate) fn server_certificate(
    paths: &TlsPaths,
    endpoint: &str,
    server_name: &str,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let ca_pem = read(&paths.ca)?;
    let cert_pem = read(&paths.cert)?;
    let key_pem = Zeroizing::new(read(&paths.key)?);

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca_pem) {
        let cert = cert.map_err(|e| format!("CA file: {e}"))?;
        roots.add(cert).map_err(|e| format!("CA file: {e}"))?;
    }
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate file: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| format!("key file: {e}"))?;
    // An explicit provider: the process default may not be installed (and `builder()`
    // would panic without one).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec()];

    let uri: tonic::transport::Uri = endpoint
        .parse()
        .map_err(|e| format!("invalid endpoint: {e}"))?;
    let host = uri.host().ok_or("endpoint has no host")?;
    let port = uri.port_u16().unwrap_or(443);
    let addr = (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))?;
    let mut sock = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(timeout))
        .and_then(|()| sock.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;

    let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .map_err(|e| format!("TLS handshake: {e}"))?;
    }
    let leaf = conn
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|der| der.as_ref().to_vec())
        .ok_or("server presented no certificate")?;
    conn.send_close_notify();
    // Best effort: the server may already have closed.
    let _ = conn.write_tls(&mut sock);
    let _ = sock.flush();
    Ok(leaf)
}
