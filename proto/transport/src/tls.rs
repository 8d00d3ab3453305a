//! mTLS configuration for servers and clients.
//!
//! Every Quorate connection is mutually authenticated against one CA. Servers require
//! a client certificate (no certificate means a failed handshake); clients verify the
//! server's certificate against the CA and pin the server's SPIFFE id (role and
//! name), so a certificate of another role or party is refused even when the CA
//! signed it for the right DNS name.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde::Deserialize;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig,
};
use zeroize::Zeroizing;

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
}

/// Loaded PEM material. The private key is zeroized on drop and never printed.
#[derive(Clone)]
pub struct TlsMaterial {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Zeroizing<Vec<u8>>,
    identity: PeerIdentity,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("identity", &self.identity)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

impl TlsPaths {
    /// Reads the three files and the certificate's identity.
    pub fn load(&self) -> Result<TlsMaterial, TlsError> {
        let cert_pem = read("certificate", &self.cert)?;
        let identity =
            PeerIdentity::from_certificate_pem(&cert_pem).map_err(|source| TlsError::Identity {
                path: self.cert.clone(),
                source,
            })?;
        Ok(TlsMaterial {
            ca_pem: read("CA certificate", &self.ca)?,
            cert_pem,
            key_pem: Zeroizing::new(read("private key", &self.key)?),
            identity,
        })
    }
}

impl TlsMaterial {
    /// The identity in this party's own certificate.
    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }

    /// The location (region and jurisdiction) the CA attests in this party's own
    /// certificate; `None` when it carries none (every role but `node`).
    pub fn location(&self) -> Result<Option<Location>, crate::identity::IdentityError> {
        Location::from_certificate_pem(&self.cert_pem)
    }

    /// When this party's own certificate expires (its `notAfter`), in seconds since
    /// the Unix epoch: exported as a gauge so that monitoring warns before the
    /// certificate, and with it every connection, stops working.
    pub fn certificate_not_after(&self) -> Result<i64, crate::identity::IdentityError> {
        let bad = |e: String| crate::identity::IdentityError::BadCertificate(e);
        let (_, pem) =
            x509_parser::pem::parse_x509_pem(&self.cert_pem).map_err(|e| bad(e.to_string()))?;
        let cert = pem.parse_x509().map_err(|e| bad(e.to_string()))?;
        Ok(cert.validity().not_after.timestamp())
    }

    /// A signer of ceremony statements with this party's certificate and key.
    pub fn statement_signer(
        &self,
    ) -> Result<crate::attest::StatementSigner, crate::attest::AttestError> {
        crate::attest::StatementSigner::from_pem(&self.cert_pem, &self.key_pem)
    }

    /// A verifier of node statements under this party's CA.
    pub fn statement_verifier(
        &self,
    ) -> Result<crate::attest::StatementVerifier, crate::attest::AttestError> {
        crate::attest::StatementVerifier::from_pem(&self.ca_pem, &self.identity.trust_domain)
    }

    fn tonic_identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, self.key_pem.as_slice())
    }

    /// Server side: present our certificate, require a client certificate from the CA.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.tonic_identity())
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .client_auth_optional(false)
    }

    /// The identity of a server in this party's trust domain: what a client of it
    /// pins (`node/node-2`, `coordinator/coordinator`).
    pub fn server_identity(&self, role: Role, name: &str) -> Result<PeerIdentity, TlsError> {
        PeerIdentity::new(&self.identity.trust_domain, role, name)
            .map_err(|e| TlsError::ServerIdentity(e.to_string()))
    }

    /// A lazily connecting channel to `uri` (`https://host:port`) that accepts only
    /// the server `server`: after rustls' WebPKI check of the chain to the CA and of
    /// the DNS name `server.name`, the certificate's SPIFFE id must be exactly
    /// `server`'s (so a `client/node-2` certificate is not the server `node-2`).
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
        let verifier = PinnedVerifier::new(&self.ca_pem, server.clone(), None)?;
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
        let verifier = PinnedVerifier::new(&self.ca_pem, server.clone(), Some(seen.clone()))?;
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
        if !uri.starts_with("https://") {
            return Err(TlsError::Endpoint(
                uri.to_string(),
                "not an https://host:port URL: every Quorate connection is mTLS, and \
                 a plaintext endpoint would skip the server's certificate check"
                    .into(),
            ));
        }
        // No CA on this config: the verifier carries it (tonic refuses both).
        let config = ClientTlsConfig::new()
            .identity(self.tonic_identity())
            .domain_name(server.name.clone());
        let endpoint = endpoint(uri)?
            .tls_config_with_verifier(config, Arc::new(verifier))
            .map_err(|e| TlsError::Endpoint(uri.to_string(), e.to_string()))?;
        Ok(tune(endpoint, connect_timeout).connect_lazy())
    }
}

fn endpoint(uri: &str) -> Result<Endpoint, TlsError> {
    Endpoint::from_shared(uri.to_string())
        .map_err(|e| TlsError::Endpoint(uri.to_string(), e.to_string()))
}

fn tune(endpoint: Endpoint, connect_timeout: Duration) -> Endpoint {
    endpoint
        .connect_timeout(connect_timeout)
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

/// rustls' WebPKI server verifier, then the server's SPIFFE id pinned to the one
/// expected, and (for an observed channel) the accepted certificate recorded and
/// pinned. It adds refusals, never an acceptance.
#[derive(Debug)]
struct PinnedVerifier {
    inner: Arc<WebPkiServerVerifier>,
    expected: PeerIdentity,
    seen: Option<ServerCertificate>,
}

impl PinnedVerifier {
    /// A verifier trusting the CA certificates in `ca_pem`, accepting only `expected`,
    /// recording in `seen` if given.
    fn new(
        ca_pem: &[u8],
        expected: PeerIdentity,
        seen: Option<ServerCertificate>,
    ) -> Result<Self, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| TlsError::Ca(e.to_string()))?;
            roots.add(cert).map_err(|e| TlsError::Ca(e.to_string()))?;
        }
        // The provider tonic's own verifier would use: the process default (every
        // binary installs ring at start), else ring.
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsError::Ca(e.to_string()))?;
        Ok(Self {
            inner,
            expected,
            seen,
        })
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
        let verified = self.inner.verify_server_cert(
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
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner.root_hint_subjects()
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

    fn check(verifier: &PinnedVerifier, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(verifier.expected.name.clone()).unwrap();
        verifier
            .verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    fn observing(ca: &Ca, expected: PeerIdentity) -> (PinnedVerifier, ServerCertificate) {
        let seen = ServerCertificate::default();
        let verifier =
            PinnedVerifier::new(ca.pem.as_bytes(), expected, Some(seen.clone())).unwrap();
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
        let tls = TlsMaterial {
            ca_pem: ca.pem.clone().into_bytes(),
            identity: PeerIdentity::from_certificate_pem(cert_pem.as_bytes()).unwrap(),
            cert_pem: cert_pem.into_bytes(),
            key_pem: Zeroizing::new(key_pem.into_bytes()),
        };
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
        let tls = TlsMaterial {
            ca_pem: ca.pem.clone().into_bytes(),
            identity: PeerIdentity::from_certificate_pem(cert_pem.as_bytes()).unwrap(),
            cert_pem: cert_pem.into_bytes(),
            key_pem: Zeroizing::new(key_pem.into_bytes()),
        };
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
        let verifier = PinnedVerifier::new(ca.pem.as_bytes(), expected.clone(), None).unwrap();
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
