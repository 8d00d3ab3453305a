//! Statements a node signs for its peers, with the private key of its mTLS
//! certificate, so that peers can check them without trusting the ceremony that
//! relays them.
//!
//! A [`pb::Signed`] carries the encoded statement, the signer's certificate (DER),
//! the TLS signature scheme and the signature over `quorate-statement/1 \0 kind \0
//! body`. A verifier checks the certificate chains to the trust domain's CA for
//! client authentication (at the current time), that its SPIFFE id is
//! `spiffe://<trust-domain>/node/<expected node>`, and then the signature. The kind
//! keeps a signature made for one step from being accepted in another.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::SignatureScheme;

use crate::identity::{PeerIdentity, Role};
use crate::pb;

/// Label that starts every signed message.
const LABEL: &[u8] = b"quorate-statement/1";

/// Schemes a node may sign with, in order of preference (the dev PKI issues P-256).
const SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ED25519,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
];

/// Why a statement could not be signed or does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The node's own key or certificate cannot be used for signing.
    #[error("cannot sign statements: {0}")]
    Setup(String),
    /// The certificate does not chain to the CA, has expired, or does not parse.
    #[error("certificate is not valid under the trust domain's CA: {0}")]
    Certificate(String),
    /// A valid certificate, but of another party.
    #[error("statement is signed by {found}, expected {expected}")]
    WrongSigner {
        /// SPIFFE id expected.
        expected: String,
        /// SPIFFE id found.
        found: String,
    },
    /// The signature does not verify under the certificate's key.
    #[error("signature does not verify")]
    BadSignature,
}

fn message(kind: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(LABEL.len() + kind.len() + body.len() + 2);
    out.extend_from_slice(LABEL);
    out.push(0);
    out.extend_from_slice(kind.as_bytes());
    out.push(0);
    out.extend_from_slice(body);
    out
}

/// Signs statements with a node's mTLS key. Never prints the key.
pub struct StatementSigner {
    key: Arc<dyn rustls::sign::SigningKey>,
    certificate: Vec<u8>,
}

impl fmt::Debug for StatementSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatementSigner")
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl StatementSigner {
    /// From PEM: the certificate (first in the file) and its private key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, AttestError> {
        let certificate = CertificateDer::pem_slice_iter(cert_pem)
            .next()
            .ok_or_else(|| AttestError::Setup("no certificate in the PEM file".into()))?
            .map_err(|e| AttestError::Setup(format!("certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| AttestError::Setup(format!("private key: {e}")))?;
        let key = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| AttestError::Setup(format!("private key: {e}")))?;
        Ok(Self {
            key,
            certificate: certificate.as_ref().to_vec(),
        })
    }

    /// Signs `body` as a statement of `kind`.
    pub fn sign(&self, kind: &str, body: Vec<u8>) -> Result<pb::Signed, AttestError> {
        let signer = self
            .key
            .choose_scheme(SCHEMES)
            .ok_or_else(|| AttestError::Setup("the key supports no usable scheme".into()))?;
        let signature = signer
            .sign(&message(kind, &body))
            .map_err(|e| AttestError::Setup(e.to_string()))?;
        Ok(pb::Signed {
            body,
            certificate: self.certificate.clone(),
            scheme: u32::from(u16::from(signer.scheme())),
            signature,
        })
    }
}

/// Checks statements signed by nodes of one trust domain.
#[derive(Clone)]
pub struct StatementVerifier {
    trust_domain: String,
    cas: Vec<CertificateDer<'static>>,
}

impl fmt::Debug for StatementVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatementVerifier")
            .field("trust_domain", &self.trust_domain)
            .field("cas", &self.cas.len())
            .finish()
    }
}

impl StatementVerifier {
    /// Trusts the CA certificates in `ca_pem` for `trust_domain`.
    pub fn from_pem(ca_pem: &[u8], trust_domain: &str) -> Result<Self, AttestError> {
        let cas = CertificateDer::pem_slice_iter(ca_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AttestError::Setup(format!("CA file: {e}")))?;
        if cas.is_empty() {
            return Err(AttestError::Setup("no certificate in the CA file".into()));
        }
        Ok(Self {
            trust_domain: trust_domain.to_string(),
            cas,
        })
    }

    /// Verifies that `signed` is a statement of `kind` by node `node_id`.
    pub fn verify(
        &self,
        signed: &pb::Signed,
        kind: &str,
        node_id: &str,
    ) -> Result<(), AttestError> {
        let der = CertificateDer::from(signed.certificate.as_slice());
        let cert = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| AttestError::Certificate(e.to_string()))?;
        let anchors = self
            .cas
            .iter()
            .map(|ca| webpki::anchor_from_trusted_cert(ca).map(|a| a.to_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AttestError::Setup(format!("CA certificate: {e}")))?;
        let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        cert.verify_for_usage(
            algorithms.all,
            &anchors,
            &[],
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| AttestError::Certificate(e.to_string()))?;
        let expected = PeerIdentity::new(&self.trust_domain, Role::Node, node_id)
            .map_err(|e| AttestError::Certificate(e.to_string()))?;
        let found = PeerIdentity::from_certificate_der(&signed.certificate)
            .map_err(|e| AttestError::Certificate(e.to_string()))?;
        if found != expected {
            return Err(AttestError::WrongSigner {
                expected: expected.spiffe_id(),
                found: found.spiffe_id(),
            });
        }
        let scheme = u16::try_from(signed.scheme)
            .map(SignatureScheme::from)
            .map_err(|_| AttestError::BadSignature)?;
        let candidates = algorithms
            .mapping
            .iter()
            .find(|(s, _)| *s == scheme)
            .map(|(_, algs)| *algs)
            .ok_or(AttestError::BadSignature)?;
        let msg = message(kind, &signed.body);
        if candidates
            .iter()
            .any(|alg| cert.verify_signature(*alg, &msg, &signed.signature).is_ok())
        {
            Ok(())
        } else {
            Err(AttestError::BadSignature)
        }
    }
}
