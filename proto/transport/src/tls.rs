//! mTLS configuration for servers and clients.
//!
//! Every Quorate connection is mutually authenticated against one CA. Servers require
//! a client certificate (no certificate means a failed handshake); clients verify the
//! server's certificate against the CA and pin the server's SPIFFE id (role and
//! name), so a certificate of another role or party is refused even when the CA
//! signed it for the right DNS name.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde::Deserialize;
use tonic::transport::{Certificate, Channel, Endpoint, Identity, ServerTlsConfig};
use zeroize::Zeroizing;

use crate::attest::SigningPair;
use crate::identity::{Location, PeerIdentity, Role};

/// Paths of a party's PEM files: the CA bundle, its certificate and its private key.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsPaths {
    /// CA certificate(s) that sign every party.
    pub ca: PathBuf,
    /// This party's certificate.
    pub cert: PathBuf,
    /// This party's private key.
    pub key: PathBuf,
}

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The certificate has no usable identity.
    #[error("certificate {path}: {source}")]
    Identity {
        /// Certificate path.
        path: PathBuf,
        /// Why.
        source: crate::identity::IdentityError,
    },
    /// An endpoint URI that does not parse.
    #[error("invalid endpoint {0:?}: {1}")]
    Endpoint(String, String),
    /// The CA file holds no usable certificate.
    #[error("CA certificate: {0}")]
    Ca(String),
    /// A server identity to pin that cannot be one.
    #[error("server identity: {0}")]
    ServerIdentity(String),
    /// The certificate file or the private key does not parse. (The key's bytes
    /// never appear in the message.)
    #[error("{0}")]
    Pem(String),
    /// The private key is not the key of the certificate: typically a renewal
    /// caught between writing the two files.
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    /// Renewed material that cannot replace the current one (another identity or
    /// location, not valid under the CA now).
    #[error("{0}")]
    Replacement(String),
}

/// Loaded PEM material, shared by every clone: what a party presents and trusts.
///
/// The material can be reloaded from its files ([`TlsMaterial::reload`]): every
/// handshake after a reload presents the new certificate and checks peers against
/// the new CA bundle, on the server side ([`crate::tls_accept`]) and on the
/// channels made here; connections already open keep the session they have. The
/// private key is zeroized on drop and never printed.
#[derive(Clone)]
pub struct TlsMaterial {
    pub(crate) live: Arc<Live>,
}

/// What every clone of a [`TlsMaterial`] shares.
pub(crate) struct Live {
    /// Where the material was read from; `None` for material made from PEM.
    pub(crate) paths: Option<TlsPaths>,
    /// The identity, the same across reloads (a reload that changes it is refused).
    pub(crate) identity: PeerIdentity,
    pub(crate) current: RwLock<Arc<Loaded>>,
}

impl Live {
    pub(crate) fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// One consistent set of certificate, key and CA bundle, parsed and checked.
pub(crate) struct Loaded {
    pub(crate) ca_pem: Vec<u8>,
    pub(crate) cert_pem: Vec<u8>,
    pub(crate) key_pem: Zeroizing<Vec<u8>>,
    pub(crate) identity: PeerIdentity,
    pub(crate) location: Option<Location>,
    pub(crate) certified: Arc<CertifiedKey>,
    pub(crate) signing: Arc<SigningPair>,
    pub(crate) server_verifier: Arc<WebPkiServerVerifier>,
    pub(crate) client_verifier: Arc<dyn ClientCertVerifier>,
    /// The CA bundle as anchors for signed statements (intents, attestations).
    pub(crate) statement_anchors: Arc<crate::attest::StatementAnchors>,
    pub(crate) not_after: i64,
    /// Hex SHA-256 of the end-entity certificate's DER.
    pub(crate) fingerprint: String,
}

impl fmt::Debug for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loaded")
            .field("identity", &self.identity)
            .field("certificate_sha256", &self.fingerprint)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // The provider tonic's own TLS would use: the process default (every binary
    // installs ring at start), else ring.
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

fn roots(ca_pem: &[u8]) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| TlsError::Ca(e.to_string()))?;
        roots.add(cert).map_err(|e| TlsError::Ca(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsError::Ca("no certificate in the CA file".into()));
    }
    Ok(Arc::new(roots))
}

impl Loaded {
    /// Parses and checks one set: the certificate's identity, the key against the
    /// certificate, the CA bundle. `cert_path` names the certificate in errors.
    pub(crate) fn from_pem(
        ca_pem: Vec<u8>,
        cert_pem: Vec<u8>,
        key_pem: Zeroizing<Vec<u8>>,
        cert_path: &Path,
    ) -> Result<Self, TlsError> {
        let identity_err = |source| TlsError::Identity {
            path: cert_path.to_path_buf(),
            source,
        };
        let identity = PeerIdentity::from_certificate_pem(&cert_pem).map_err(identity_err)?;
        let location = Location::from_certificate_pem(&cert_pem).map_err(identity_err)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem(format!("certificate {}: {e}", cert_path.display())))?;
        let leaf = chain
            .first()
            .cloned()
            .ok_or_else(|| TlsError::Pem(format!("no certificate in {}", cert_path.display())))?;
        let not_after = {
            let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| {
                identity_err(crate::identity::IdentityError::BadCertificate(
                    e.to_string(),
                ))
            })?;
            cert.validity().not_after.timestamp()
        };
        // Only the kind of parse failure is reported: never the key's bytes.
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|_| TlsError::Pem("the private key file holds no usable PEM key".into()))?;
        let provider = provider();
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|_| TlsError::Pem("the private key cannot be used for signing".into()))?;
        let certified = CertifiedKey::new(chain, signing_key.clone());
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(_) => return Err(TlsError::KeyMismatch),
        }
        let roots = roots(&ca_pem)?;
        let statement_anchors = Arc::new(
            crate::attest::StatementAnchors::from_pem(&ca_pem)
                .map_err(|e| TlsError::Ca(e.to_string()))?,
        );
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| TlsError::Ca(e.to_string()))?;
        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| TlsError::Ca(e.to_string()))?;
        Ok(Self {
            fingerprint: hex_sha256(leaf.as_ref()),
            signing: Arc::new(SigningPair::new(signing_key, leaf.as_ref().to_vec())),
            ca_pem,
            cert_pem,
            key_pem,
            identity,
            location,
            certified: Arc::new(certified),
            server_verifier,
            client_verifier,
            statement_anchors,
            not_after,
        })
    }
}

/// Hex SHA-256 of `bytes` (a certificate's fingerprint).
pub fn hex_sha256(bytes: &[u8]) -> String {
    quorate_wire::sha256(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("identity", &self.live.identity)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

pub(crate) fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// The contents of the three files as read: CA bundle, certificate, private key.
pub(crate) type PemFiles = (Vec<u8>, Vec<u8>, Zeroizing<Vec<u8>>);

impl TlsPaths {
    /// Reads the three files as one set, without checking it.
    pub(crate) fn read_all(&self) -> Result<PemFiles, TlsError> {
        // The certificate first: when nothing is there, the error names it.
        let cert = read("certificate", &self.cert)?;
        Ok((
            read("CA certificate", &self.ca)?,
            cert,
            Zeroizing::new(read("private key", &self.key)?),
        ))
    }

    /// Reads the three files, the certificate's identity, and checks that the key
    /// belongs to the certificate. The material can later be reloaded from the same
    /// paths ([`TlsMaterial::reload`]).
    pub fn load(&self) -> Result<TlsMaterial, TlsError> {
        let (ca, cert, key) = self.read_all()?;
        let loaded = Loaded::from_pem(ca, cert, key, &self.cert)?;
        Ok(TlsMaterial::new(Some(self.clone()), loaded))
    }
}

impl TlsMaterial {
    fn new(paths: Option<TlsPaths>, loaded: Loaded) -> Self {
        Self {
            live: Arc::new(Live {
                paths,
                identity: loaded.identity.clone(),
                current: RwLock::new(Arc::new(loaded)),
            }),
        }
    }

    /// Material from PEM in memory (CA bundle, certificate, private key); it has
    /// no files to be reloaded from.
    pub fn from_pem(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let loaded = Loaded::from_pem(
            ca_pem.to_vec(),
            cert_pem.to_vec(),
            Zeroizing::new(key_pem.to_vec()),
            Path::new("<memory>"),
        )?;
        Ok(Self::new(None, loaded))
    }

    /// The files this material is (re)loaded from, if any.
    pub fn paths(&self) -> Option<&TlsPaths> {
        self.live.paths.as_ref()
    }

    /// The identity in this party's own certificate (the same across reloads).
    pub fn identity(&self) -> &PeerIdentity {
        &self.live.identity
    }

    /// The location (region and jurisdiction) the CA attests in this party's own
    /// certificate; `None` when it carries none (every role but `node`). The same
    /// across reloads: a renewal that changes it is refused.
    pub fn location(&self) -> Result<Option<Location>, crate::identity::IdentityError> {
        Ok(self.live.current().location.clone())
    }

    /// When this party's current certificate expires (its `notAfter`), in seconds
    /// since the Unix epoch: exported as a gauge so that monitoring warns before the
    /// certificate, and with it every new connection, stops working. Follows reloads.
    pub fn certificate_not_after(&self) -> Result<i64, crate::identity::IdentityError> {
        Ok(self.live.current().not_after)
    }

    /// Hex SHA-256 of this party's current certificate (DER).
    pub fn certificate_fingerprint(&self) -> String {
        self.live.current().fingerprint.clone()
    }

    /// A signer of statements (ceremony statements, key attestations, sign
    /// intents) with this party's key: each statement is signed with the
    /// certificate and key current when it is signed, so it follows reloads.
    pub fn statement_signer(
        &self,
    ) -> Result<crate::attest::StatementSigner, crate::attest::AttestError> {
        let live = self.live.clone();
        Ok(crate::attest::StatementSigner::following(move || {
            live.current().signing.clone()
        }))
    }

    /// A verifier of statements (intents, key attestations) under this party's CA
    /// bundle: each statement is checked under the bundle current when it is
    /// checked, so it follows reloads as the TLS handshakes do.
    pub fn statement_verifier(
        &self,
    ) -> Result<crate::attest::StatementVerifier, crate::attest::AttestError> {
        let live = self.live.clone();
        Ok(crate::attest::StatementVerifier::following(
            &self.live.identity.trust_domain,
            move || live.current().statement_anchors.clone(),
        ))
    }

    /// Server side with tonic's own TLS: present the current certificate, require a
    /// client certificate from the CA. This configuration is fixed once made: the
    /// node and coordinator serve through [`crate::tls_accept`] instead, which
    /// follows reloads.
    pub fn server_config(&self) -> ServerTlsConfig {
        let current = self.live.current();
        ServerTlsConfig::new()
            .identity(Identity::from_pem(
                &current.cert_pem,
                current.key_pem.as_slice(),
            ))
            .client_ca_root(Certificate::from_pem(&current.ca_pem))
            .client_auth_optional(false)
    }

    /// The identity of a server in this party's trust domain: what a client of it
    /// pins (`node/node-2`, `coordinator/coordinator`).
    pub fn server_identity(&self, role: Role, name: &str) -> Result<PeerIdentity, TlsError> {
        PeerIdentity::new(&self.live.identity.trust_domain, role, name)
            .map_err(|e| TlsError::ServerIdentity(e.to_string()))
    }

    /// A lazily connecting channel to `uri` (`https://host:port`) that accepts only
    /// the server `server`: after rustls' WebPKI check of the chain to the CA and of
    /// the DNS name `server.name`, the certificate's SPIFFE id must be exactly
    /// `server`'s (so a `client/node-2` certificate is not the server `node-2`).
    /// The pin is the SPIFFE id, not a key or certificate, so a server's renewed
    /// certificate passes it. Every new connection presents this party's current
    /// certificate and checks the server against the current CA bundle.
    /// Connections are reused across calls. HTTP/2 pings every second find a
    /// connection whose peer vanished (a partition drops packets silently) within
    /// about two seconds, so calls after the peer is back open a fresh connection
    /// instead of waiting on the dead one.
    pub fn channel(
        &self,
        uri: &str,
        server: &PeerIdentity,
        connect_timeout: Duration,
    ) -> Result<Channel, TlsError> {
        let verifier = PinnedVerifier::new(Trust::Live(self.live.clone()), server.clone(), None);
        self.connect(uri, server, verifier, connect_timeout)
    }

    /// [`TlsMaterial::channel`] to the node `node_id` of this party's trust domain
    /// (`spiffe://<td>/node/<node_id>`).
    pub fn node_channel(
        &self,
        uri: &str,
        node_id: &str,
        connect_timeout: Duration,
    ) -> Result<Channel, TlsError> {
        self.channel(
            uri,
            &self.server_identity(Role::Node, node_id)?,
            connect_timeout,
        )
    }

    /// [`TlsMaterial::channel`] to the coordinator `name` of this party's trust
    /// domain (`spiffe://<td>/coordinator/<name>`).
    pub fn coordinator_channel(
        &self,
        uri: &str,
        name: &str,
        connect_timeout: Duration,
    ) -> Result<Channel, TlsError> {
        self.channel(
            uri,
            &self.server_identity(Role::Coordinator, name)?,
            connect_timeout,
        )
    }

    /// As [`TlsMaterial::channel`], and records the certificate the server presents,
    /// so that a ceremony can name in its transcript the certificate of the very
    /// connection it ran over (tonic does not expose the peer's certificate to a
    /// client). The server certificate is checked exactly as by `channel`; only a
    /// certificate that passed is recorded. The first one is pinned: should the
    /// channel reconnect and the server present another certificate, that handshake
    /// fails, so every call on the channel went to the holder of the recorded
    /// certificate.
    pub fn observed_channel(
        &self,
        uri: &str,
        server: &PeerIdentity,
        connect_timeout: Duration,
    ) -> Result<(Channel, ServerCertificate), TlsError> {
        let seen = ServerCertificate::default();
        let verifier = PinnedVerifier::new(
            Trust::Live(self.live.clone()),
            server.clone(),
            Some(seen.clone()),
        );
        Ok((self.connect(uri, server, verifier, connect_timeout)?, seen))
    }

    fn connect(
        &self,
        uri: &str,
        server: &PeerIdentity,
        verifier: PinnedVerifier,
        connect_timeout: Duration,
    ) -> Result<Channel, TlsError> {
        // tonic applies a TLS config only to an https:// URI and speaks plaintext
        // HTTP/2 to any other, skipping the CA, the pin and the client
        // certificate: a pinned channel is https or nothing.
        let Some(rest) = uri.strip_prefix("https://") else {
            return Err(TlsError::Endpoint(
                uri.to_string(),
                "not an https://host:port URL: every Quorate connection is mTLS, and \
                 a plaintext endpoint would skip the server's certificate check"
                    .into(),
            ));
        };
        let server_name = ServerName::try_from(server.name.clone())
            .map_err(|e| TlsError::ServerIdentity(e.to_string()))?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Endpoint(uri.to_string(), e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(CurrentClientCert(self.live.clone())));
        config.alpn_protocols = vec![b"h2".to_vec()];
        // No session resumption: a resumed session skips the certificates, and the
        // server would go on seeing the certificate of the first handshake (found
        // when a coordinator reconnected to a node after a renewal and the node
        // logged its old, soon expired certificate). Connections are long-lived,
        // so a full handshake each time costs nothing that matters.
        config.resumption = rustls::client::Resumption::disabled();
        // The TLS is this connector's, not tonic's (tonic's takes one fixed client
        // certificate): tonic sees a plain connection, so the endpoint says http://
        // while every byte goes through the handshake below.
        let endpoint = endpoint(&format!("http://{rest}"))?;
        let connector = TlsConnector {
            config: Arc::new(config),
            server_name,
            connect_timeout,
        };
        Ok(tune(endpoint).connect_with_connector_lazy(connector))
    }
}

/// Opens a TCP connection to the URI's host and port (within `connect_timeout`,
/// which bounds the TCP connect only, as tonic's own connector does: the handshake
/// is bounded by the call's deadline) and runs the TLS handshake with the party's
/// current certificate, requiring HTTP/2 by ALPN.
#[derive(Clone)]
struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
    connect_timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<tonic::codegen::http::Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: tonic::codegen::http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri.host().ok_or("endpoint has no host")?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(443);
            let tcp = tokio::time::timeout(
                this.connect_timeout,
                tokio::net::TcpStream::connect((host, port)),
            )
            .await
            .map_err(|_| format!("connecting to {host}:{port} timed out"))??;
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(this.config)
                .connect(this.server_name, tcp)
                .await?;
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err("the server did not negotiate HTTP/2".into());
            }
            Ok(TokioIo::new(tls))
        })
    }
}

/// The client certificate of every handshake: the party's current one.
struct CurrentClientCert(Arc<Live>);

impl fmt::Debug for CurrentClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CurrentClientCert")
            .field(&self.0.identity)
            .finish()
    }
}

impl ResolvesClientCert for CurrentClientCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The server certificate of every handshake: the party's current one.
pub(crate) struct CurrentServerCert(pub(crate) Arc<Live>);

impl fmt::Debug for CurrentServerCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CurrentServerCert")
            .field(&self.0.identity)
            .finish()
    }
}

impl ResolvesServerCert for CurrentServerCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified.clone())
    }
}

/// Checks every client certificate against the party's current CA bundle
/// (rustls' WebPKI client verifier, rebuilt with each reload).
pub(crate) struct CurrentClientVerifier(pub(crate) Arc<Live>);

impl fmt::Debug for CurrentClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentClientVerifier").finish()
    }
}

impl ClientCertVerifier for CurrentClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints would have to outlive a reload; Quorate's clients send the one
        // certificate they have without them.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .current()
            .client_verifier
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .client_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .client_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().client_verifier.supported_verify_schemes()
    }
}

fn endpoint(uri: &str) -> Result<Endpoint, TlsError> {
    Endpoint::from_shared(uri.to_string())
        .map_err(|e| TlsError::Endpoint(uri.to_string(), e.to_string()))
}

fn tune(endpoint: Endpoint) -> Endpoint {
    endpoint
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(1))
        .keep_alive_while_idle(true)
}

/// The certificate (DER) a server presented on an [`TlsMaterial::observed_channel`],
/// once a handshake on it has completed.
#[derive(Clone, Debug, Default)]
pub struct ServerCertificate(Arc<Mutex<Option<Vec<u8>>>>);

impl ServerCertificate {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Vec<u8>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The verified end-entity certificate of the channel's connections; `None`
    /// until one has been made.
    pub fn get(&self) -> Option<Vec<u8>> {
        self.slot().clone()
    }
}

/// The CA bundle a [`PinnedVerifier`] checks chains against: fixed, or whatever
/// the party's reloadable material holds at each handshake.
enum Trust {
    Live(Arc<Live>),
    #[cfg(test)]
    Fixed(Arc<WebPkiServerVerifier>),
}

impl Trust {
    fn verifier(&self) -> Arc<WebPkiServerVerifier> {
        match self {
            Trust::Live(live) => live.current().server_verifier.clone(),
            #[cfg(test)]
            Trust::Fixed(verifier) => verifier.clone(),
        }
    }
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Trust")
    }
}

/// rustls' WebPKI server verifier, then the server's SPIFFE id pinned to the one
/// expected, and (for an observed channel) the accepted certificate recorded and
/// pinned. It adds refusals, never an acceptance.
#[derive(Debug)]
struct PinnedVerifier {
    trust: Trust,
    expected: PeerIdentity,
    seen: Option<ServerCertificate>,
}

impl PinnedVerifier {
    /// A verifier trusting `trust`'s CA certificates, accepting only `expected`,
    /// recording in `seen` if given.
    fn new(trust: Trust, expected: PeerIdentity, seen: Option<ServerCertificate>) -> Self {
        Self {
            trust,
            expected,
            seen,
        }
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.trust.verifier().verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let expected = &self.expected;
        match PeerIdentity::from_certificate_der(end_entity.as_ref()) {
            Ok(found) if &found == expected => {}
            Ok(found) => {
                return Err(rustls::Error::General(format!(
                    "server certificate is {found}, expected {expected}"
                )))
            }
            Err(e) => {
                return Err(rustls::Error::General(format!(
                    "server certificate has no usable identity ({e}), expected {expected}"
                )))
            }
        }
        if let Some(seen) = &self.seen {
            let mut slot = seen.slot();
            match slot.as_deref() {
                None => *slot = Some(end_entity.as_ref().to_vec()),
                Some(first) if first == end_entity.as_ref() => {}
                Some(_) => return Err(rustls::Error::General(
                    "the server presented another certificate than on this channel's first connection"
                        .into(),
                )),
            }
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.trust
            .verifier()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.trust
            .verifier()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.trust.verifier().supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        None
    }
}

/// The connections a server accepts on `listener`, with `TCP_NODELAY` set. Every
/// RPC is a small request and a small response: with Nagle's algorithm a response
/// written in two pieces waits for the peer's delayed ACK, up to 40 ms on Linux
/// (seen as a 45 ms p99 at one request in flight).
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rcgen::{
        CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType,
    };

    use super::*;
    use crate::test_ca::{new_ca, Ca};

    const DOMAIN: &str = "quorate.test";

    fn id(role: Role, name: &str) -> PeerIdentity {
        PeerIdentity::new(DOMAIN, role, name).unwrap()
    }

    /// A fresh server certificate for DNS name `name` carrying `spiffe` as its
    /// SPIFFE id, if any (DER).
    fn server_cert(ca: &Ca, name: &str, spiffe: Option<&PeerIdentity>) -> CertificateDer<'static> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = vec![SanType::DnsName(name.try_into().unwrap())];
        if let Some(spiffe) = spiffe {
            params
                .subject_alt_names
                .push(SanType::URI(spiffe.spiffe_id().try_into().unwrap()));
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &ca.issuer).unwrap().der().clone()
    }

    fn node_cert(ca: &Ca, name: &str) -> CertificateDer<'static> {
        server_cert(ca, name, Some(&id(Role::Node, name)))
    }

    fn fixed(ca: &Ca) -> Trust {
        let verifier = WebPkiServerVerifier::builder_with_provider(
            roots(ca.pem.as_bytes()).unwrap(),
            provider(),
        )
        .build()
        .unwrap();
        Trust::Fixed(verifier)
    }

    fn check(verifier: &PinnedVerifier, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(verifier.expected.name.clone()).unwrap();
        verifier
            .verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    fn observing(ca: &Ca, expected: PeerIdentity) -> (PinnedVerifier, ServerCertificate) {
        let seen = ServerCertificate::default();
        let verifier = PinnedVerifier::new(fixed(ca), expected, Some(seen.clone()));
        (verifier, seen)
    }

    #[test]
    fn observed_channel_records_the_verified_certificate_and_refuses_another_on_reconnect() {
        let ca = new_ca("CA");
        let (verifier, seen) = observing(&ca, id(Role::Node, "node-1"));
        assert_eq!(seen.get(), None);
        let first = node_cert(&ca, "node-1");
        check(&verifier, &first).unwrap();
        assert_eq!(seen.get().as_deref(), Some(first.as_ref()));
        // A reconnect to the same server: accepted.
        check(&verifier, &first).unwrap();
        // Another certificate, equally valid for the name: refused, record kept.
        let second = node_cert(&ca, "node-1");
        assert!(check(&verifier, &second).is_err());
        assert_eq!(seen.get().as_deref(), Some(first.as_ref()));
    }

    #[test]
    fn observed_channel_records_nothing_the_ca_or_the_name_does_not_vouch_for() {
        let ca = new_ca("CA");
        let (verifier, seen) = observing(&ca, id(Role::Node, "node-1"));
        let foreign = node_cert(&new_ca("another CA"), "node-1");
        assert!(check(&verifier, &foreign).is_err());
        let other_name = node_cert(&ca, "node-2");
        assert!(check(&verifier, &other_name).is_err());
        let client = server_cert(&ca, "node-1", Some(&id(Role::Client, "node-1")));
        assert!(check(&verifier, &client).is_err());
        assert_eq!(seen.get(), None);
    }

    #[tokio::test]
    async fn a_pinned_channel_refuses_a_plaintext_endpoint() {
        let ca = new_ca("CA");
        let (cert_pem, key_pem) = crate::test_ca::pem(&ca, "auditor", "a");
        let tls = TlsMaterial::from_pem(ca.pem.as_bytes(), cert_pem.as_bytes(), key_pem.as_bytes())
            .unwrap();
        let timeout = Duration::from_secs(1);
        for uri in [
            "http://127.0.0.1:7101",
            "127.0.0.1:7101",
            "HTTP://node-1:7101",
        ] {
            let err = tls.node_channel(uri, "node-1", timeout).unwrap_err();
            assert!(err.to_string().contains("https://"), "{uri}: {err}");
            let err = tls
                .observed_channel(uri, &id(Role::Node, "node-1"), timeout)
                .unwrap_err();
            assert!(err.to_string().contains("https://"), "{uri}: {err}");
        }
        tls.node_channel("https://127.0.0.1:7101", "node-1", timeout)
            .unwrap();
    }

    #[test]
    fn certificate_not_after_is_the_own_certificates_expiry() {
        let ca = new_ca("CA");
        let (cert_pem, key_pem) = crate::test_ca::pem(&ca, "auditor", "a");
        let tls = TlsMaterial::from_pem(ca.pem.as_bytes(), cert_pem.as_bytes(), key_pem.as_bytes())
            .unwrap();
        // The test CA issues certificates valid for one day from now.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let not_after = tls.certificate_not_after().unwrap();
        assert!(
            (now + 86_400 - 120..=now + 86_400 + 120).contains(&not_after),
            "not_after {not_after}, now {now}"
        );
    }

    #[test]
    fn pinned_verifier_accepts_only_the_expected_spiffe_id() {
        let ca = new_ca("CA");
        let expected = id(Role::Node, "node-2");
        let verifier = PinnedVerifier::new(fixed(&ca), expected.clone(), None);
        check(&verifier, &node_cert(&ca, "node-2")).unwrap();
        // Each is certified by the CA for the DNS name node-2, but is not node/node-2.
        for (wrong, found) in [
            (
                Some(id(Role::Client, "node-2")),
                "spiffe://quorate.test/client/node-2",
            ),
            (
                Some(id(Role::Coordinator, "node-2")),
                "spiffe://quorate.test/coordinator/node-2",
            ),
            (
                Some(id(Role::Node, "node-1")),
                "spiffe://quorate.test/node/node-1",
            ),
            (
                Some(PeerIdentity::new("other.test", Role::Node, "node-2").unwrap()),
                "spiffe://other.test/node/node-2",
            ),
        ] {
            let cert = server_cert(&ca, "node-2", wrong.as_ref());
            let err = check(&verifier, &cert).unwrap_err().to_string();
            assert!(
                err.contains(found) && err.contains("expected spiffe://quorate.test/node/node-2"),
                "{err}"
            );
        }
        let none = server_cert(&ca, "node-2", None);
        let err = check(&verifier, &none).unwrap_err().to_string();
        assert!(err.contains("no spiffe:// URI SAN"), "{err}");
    }
}
