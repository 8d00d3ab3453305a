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
//!
//! A ceremony checks several statements of each node, all under the same
//! certificate. [`VerifiedCertificates`] remembers, for one ceremony, the
//! certificates whose chain already verified, so each chain is checked once per
//! ceremony instead of once per statement; everything else (validity at the time
//! of use, the signer's identity, the signature) is checked on every statement.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::SignatureScheme;

use crate::identity::{PeerIdentity, Role};
use quorate_wire::pb;

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

/// Certificates whose chain to the CA a [`StatementVerifier`] has checked in one
/// ceremony, keyed by their exact DER, with the identity each certifies and its
/// validity period.
///
/// Only a certificate that passed the full check (chain, usage, validity, a
/// signature that verified under it) is remembered; a different certificate,
/// however similar, is checked in full. Using a remembered certificate still
/// checks that it is within its validity period at that moment, so a certificate
/// that expires during a ceremony is refused as the full check would refuse it.
/// Keep one per ceremony: it holds one entry per participant certificate, and
/// dies with the ceremony's state.
#[derive(Debug, Default)]
pub struct VerifiedCertificates {
    entries: Vec<VerifiedCertificate>,
}

#[derive(Clone, Debug)]
struct VerifiedCertificate {
    der: Vec<u8>,
    identity: PeerIdentity,
    /// Validity period, seconds since the Unix epoch, both ends included (as
    /// webpki checks it).
    not_before: u64,
    not_after: u64,
}

impl VerifiedCertificates {
    /// Number of certificates remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is remembered yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn remember(&mut self, entry: VerifiedCertificate) {
        self.entries.push(entry);
    }

    fn get(&self, der: &[u8]) -> Option<&VerifiedCertificate> {
        self.entries.iter().find(|e| e.der == der)
    }
}

/// The validity period of a certificate, in seconds since the Unix epoch.
fn validity(cert: &x509_parser::certificate::X509Certificate<'_>) -> (u64, u64) {
    let validity = cert.validity();
    // A period starting before 1970 starts, for this check, at 0.
    let secs = |t: i64| u64::try_from(t).unwrap_or(0);
    (
        secs(validity.not_before.timestamp()),
        secs(validity.not_after.timestamp()),
    )
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
        self.verify_cached(signed, kind, node_id, &mut VerifiedCertificates::default())
    }

    /// As [`StatementVerifier::verify`], checking the certificate's chain only if
    /// `certificates` (this ceremony's) does not hold it yet, and remembering it
    /// there once the statement verified.
    pub fn verify_cached(
        &self,
        signed: &pb::Signed,
        kind: &str,
        node_id: &str,
        certificates: &mut VerifiedCertificates,
    ) -> Result<(), AttestError> {
        self.verify_at(signed, kind, node_id, certificates, UnixTime::now())
    }

    fn verify_at(
        &self,
        signed: &pb::Signed,
        kind: &str,
        node_id: &str,
        certificates: &mut VerifiedCertificates,
        now: UnixTime,
    ) -> Result<(), AttestError> {
        let expected = PeerIdentity::new(&self.trust_domain, Role::Node, node_id)
            .map_err(|e| AttestError::Certificate(e.to_string()))?;
        let known = certificates.get(&signed.certificate);
        let (_, fresh) = self.check(signed, kind, known, now, &|found| {
            check_signer(&expected, found)
        })?;
        // Remembered only now: a certificate is trusted for later statements once
        // a statement under it verified in full.
        if let Some(entry) = fresh {
            certificates.remember(entry);
        }
        Ok(())
    }

    /// Verifies that `signed` is a statement of `kind` by some party of `role` in
    /// this trust domain, and returns who: the identity in the certificate, which
    /// the caller then checks against what that party may do. `chains` remembers
    /// certificates whose chain verified, across calls (for signed requests, which
    /// arrive by the thousand under few certificates).
    pub fn identify(
        &self,
        signed: &pb::Signed,
        kind: &str,
        role: Role,
        chains: &ChainCache,
        now: UnixTime,
    ) -> Result<PeerIdentity, AttestError> {
        let digest = chain_cache_key(&signed.certificate);
        let known = chains.get(&digest);
        let (identity, fresh) = self.check(signed, kind, known.as_ref(), now, &|found| {
            if found.role != role || found.trust_domain != self.trust_domain {
                return Err(AttestError::WrongSigner {
                    expected: format!("spiffe://{}/{}/...", self.trust_domain, role.as_str()),
                    found: found.spiffe_id(),
                });
            }
            Ok(())
        })?;
        if let Some(entry) = fresh {
            chains.insert(digest, entry);
        }
        Ok(identity)
    }

    /// The whole check of one statement: the certificate (its chain, usage and
    /// validity, unless `known` vouches for the chain; its validity always), whose
    /// identity `accept` must take, and the signature. Returns the identity, and
    /// the certificate to remember if its chain was checked here.
    fn check(
        &self,
        signed: &pb::Signed,
        kind: &str,
        known: Option<&VerifiedCertificate>,
        now: UnixTime,
        accept: &dyn Fn(&PeerIdentity) -> Result<(), AttestError>,
    ) -> Result<(PeerIdentity, Option<VerifiedCertificate>), AttestError> {
        let der = CertificateDer::from(signed.certificate.as_slice());
        let cert = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| AttestError::Certificate(e.to_string()))?;
        let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        let (identity, fresh) = match known.filter(|k| k.der == signed.certificate) {
            Some(known) => {
                let t = now.as_secs();
                if t < known.not_before || t > known.not_after {
                    return Err(AttestError::Certificate(
                        "the certificate is outside its validity period".into(),
                    ));
                }
                accept(&known.identity)?;
                (known.identity.clone(), None)
            }
            None => {
                let anchors = self
                    .cas
                    .iter()
                    .map(|ca| webpki::anchor_from_trusted_cert(ca).map(|a| a.to_owned()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| AttestError::Setup(format!("CA certificate: {e}")))?;
                cert.verify_for_usage(
                    algorithms.all,
                    &anchors,
                    &[],
                    now,
                    webpki::KeyUsage::client_auth(),
                    None,
                    None,
                )
                .map_err(|e| AttestError::Certificate(e.to_string()))?;
                // One parse for the identity and the validity period.
                let (_, parsed) = x509_parser::parse_x509_certificate(&signed.certificate)
                    .map_err(|e| AttestError::Certificate(e.to_string()))?;
                let found = PeerIdentity::from_certificate(&parsed)
                    .map_err(|e| AttestError::Certificate(e.to_string()))?;
                accept(&found)?;
                let (not_before, not_after) = validity(&parsed);
                let entry = VerifiedCertificate {
                    der: signed.certificate.clone(),
                    identity: found.clone(),
                    not_before,
                    not_after,
                };
                (found, Some(entry))
            }
        };
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
        if !candidates
            .iter()
            .any(|alg| cert.verify_signature(*alg, &msg, &signed.signature).is_ok())
        {
            return Err(AttestError::BadSignature);
        }
        Ok((identity, fresh))
    }
}

/// Certificates whose chain to the CA verified, remembered across statements for
/// [`StatementVerifier::identify`] (clients' intents on a node or coordinator, nodes'
/// key attestations on a coordinator or client): at most [`ChainCache::CAPACITY`]
/// (or the capacity it was made with), the oldest forgotten first, so certificates
/// rotated away cannot grow it. Keyed by the SHA-256 of the exact DER, so another certificate,
/// however similar, is checked in full; a remembered one is still checked for its
/// validity period on every use.
#[derive(Debug)]
pub struct ChainCache {
    entries: std::sync::Mutex<ChainCacheEntries>,
    capacity: usize,
}

impl Default for ChainCache {
    fn default() -> Self {
        Self::with_capacity(Self::CAPACITY)
    }
}

#[derive(Debug, Default)]
struct ChainCacheEntries {
    by_digest: std::collections::HashMap<[u8; 32], VerifiedCertificate>,
    order: std::collections::VecDeque<[u8; 32]>,
}

impl ChainCache {
    /// Most certificates remembered: one per client certificate in use, with room
    /// for renewals.
    pub const CAPACITY: usize = 4096;

    /// A cache of at most `capacity` certificates (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: std::sync::Mutex::default(),
            capacity: capacity.max(1),
        }
    }

    fn get(&self, digest: &[u8; 32]) -> Option<VerifiedCertificate> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.by_digest.get(digest).cloned()
    }

    fn insert(&self, digest: [u8; 32], entry: VerifiedCertificate) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.by_digest.insert(digest, entry).is_none() {
            entries.order.push_back(digest);
        }
        while entries.order.len() > self.capacity {
            if let Some(oldest) = entries.order.pop_front() {
                entries.by_digest.remove(&oldest);
            }
        }
    }

    /// Number of certificates remembered.
    pub fn len(&self) -> usize {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.by_digest.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn chain_cache_key(der: &[u8]) -> [u8; 32] {
    quorate_wire::sha256(der)
}

fn check_signer(expected: &PeerIdentity, found: &PeerIdentity) -> Result<(), AttestError> {
    if found == expected {
        Ok(())
    } else {
        Err(AttestError::WrongSigner {
            expected: expected.spiffe_id(),
            found: found.spiffe_id(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rcgen::{
        CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType,
    };
    use time::{Duration, OffsetDateTime};

    use super::*;
    use crate::test_ca::{new_ca, Ca};

    const DOMAIN: &str = "quorate.test";

    /// A node certificate from `ca`, valid from `not_before` for `lifetime`.
    fn node_signer(
        ca: &Ca,
        node: &str,
        not_before: OffsetDateTime,
        lifetime: Duration,
    ) -> StatementSigner {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, node);
        params.subject_alt_names = vec![SanType::URI(
            format!("spiffe://{DOMAIN}/node/{node}").try_into().unwrap(),
        )];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = not_before;
        params.not_after = not_before + lifetime;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        StatementSigner::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap()
    }

    fn valid_now(ca: &Ca, node: &str) -> StatementSigner {
        node_signer(
            ca,
            node,
            OffsetDateTime::now_utc() - Duration::minutes(5),
            Duration::days(1),
        )
    }

    fn verifier(ca: &Ca) -> StatementVerifier {
        StatementVerifier::from_pem(ca.pem.as_bytes(), DOMAIN).unwrap()
    }

    #[test]
    fn each_certificate_chain_is_remembered_once_per_ceremony() {
        let ca = new_ca("CA");
        let verifier = verifier(&ca);
        let node1 = valid_now(&ca, "node-1");
        let node2 = valid_now(&ca, "node-2");
        let mut certificates = VerifiedCertificates::default();
        for (signer, id) in [(&node1, "node-1"), (&node2, "node-2"), (&node1, "node-1")] {
            let signed = signer.sign("kind", b"statement".to_vec()).unwrap();
            verifier
                .verify_cached(&signed, "kind", id, &mut certificates)
                .unwrap();
        }
        assert_eq!(certificates.len(), 2);
    }

    #[test]
    fn a_chain_cache_forgets_the_oldest_certificate_and_still_verifies_it_in_full() {
        let ca = new_ca("CA");
        let verifier = verifier(&ca);
        let chains = ChainCache::with_capacity(2);
        for id in ["node-1", "node-2", "node-3", "node-1"] {
            let signed = valid_now(&ca, id).sign("kind", b"s".to_vec()).unwrap();
            let found = verifier
                .identify(&signed, "kind", Role::Node, &chains, UnixTime::now())
                .unwrap();
            assert_eq!(found.name, id);
            assert!(chains.len() <= 2);
        }
        assert_eq!(chains.len(), 2);
    }

    #[test]
    fn statement_whose_certificate_is_not_from_the_ca_is_refused_after_a_valid_one_was_cached() {
        let ca = new_ca("CA");
        let verifier = verifier(&ca);
        let mut certificates = VerifiedCertificates::default();
        let genuine = valid_now(&ca, "node-1")
            .sign("kind", b"a".to_vec())
            .unwrap();
        verifier
            .verify_cached(&genuine, "kind", "node-1", &mut certificates)
            .unwrap();
        // Same name, same SPIFFE id, another CA: checked in full, and refused.
        let forger = new_ca("another CA");
        let forged = valid_now(&forger, "node-1")
            .sign("kind", b"b".to_vec())
            .unwrap();
        let err = verifier
            .verify_cached(&forged, "kind", "node-1", &mut certificates)
            .unwrap_err();
        assert!(matches!(err, AttestError::Certificate(_)), "{err}");
        assert_eq!(
            certificates.len(),
            1,
            "a refused certificate is not remembered"
        );
    }

    #[test]
    fn cached_certificate_still_needs_a_good_signature_the_right_kind_and_signer() {
        let ca = new_ca("CA");
        let verifier = verifier(&ca);
        let mut certificates = VerifiedCertificates::default();
        let node1 = valid_now(&ca, "node-1");
        let signed = node1.sign("kind", b"statement".to_vec()).unwrap();
        verifier
            .verify_cached(&signed, "kind", "node-1", &mut certificates)
            .unwrap();

        let mut tampered = signed.clone();
        tampered.body = b"another statement".to_vec();
        let err = verifier
            .verify_cached(&tampered, "kind", "node-1", &mut certificates)
            .unwrap_err();
        assert!(matches!(err, AttestError::BadSignature), "{err}");

        let err = verifier
            .verify_cached(&signed, "other-kind", "node-1", &mut certificates)
            .unwrap_err();
        assert!(matches!(err, AttestError::BadSignature), "{err}");

        let err = verifier
            .verify_cached(&signed, "kind", "node-2", &mut certificates)
            .unwrap_err();
        assert!(matches!(err, AttestError::WrongSigner { .. }), "{err}");
    }

    #[test]
    fn cached_certificate_is_refused_once_it_has_expired() {
        let ca = new_ca("CA");
        let verifier = verifier(&ca);
        let start = OffsetDateTime::now_utc() - Duration::minutes(5);
        let node1 = node_signer(&ca, "node-1", start, Duration::minutes(10));
        let signed = node1.sign("kind", b"statement".to_vec()).unwrap();
        let mut certificates = VerifiedCertificates::default();
        verifier
            .verify_cached(&signed, "kind", "node-1", &mut certificates)
            .unwrap();
        assert_eq!(certificates.len(), 1);
        let later = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            (start + Duration::minutes(11)).unix_timestamp() as u64,
        ));
        let err = verifier
            .verify_at(&signed, "kind", "node-1", &mut certificates, later)
            .unwrap_err();
        assert!(matches!(err, AttestError::Certificate(_)), "{err}");
        // The full check agrees.
        let err = verifier
            .verify_at(
                &signed,
                "kind",
                "node-1",
                &mut VerifiedCertificates::default(),
                later,
            )
            .unwrap_err();
        assert!(matches!(err, AttestError::Certificate(_)), "{err}");
    }
}
