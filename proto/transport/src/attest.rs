//! Statements a node signs for its peers, with the private key of its mTLS
//! certificate, so that peers can check them without trusting the ceremony that
//! relays them.
//!
//! A [`pb::Signed`] carries the encoded statement, the signer's certificate (DER),
//! the TLS signature scheme and the signature over `quorate-statement/1 \0 kind \0
//! body`. A verifier checks the certificate chains directly to the trust domain's CA
//! for client authentication, both certificates within their validity periods at the
//! current time (webpki checks the certificate's, this module the CA's), that its
//! SPIFFE id is `spiffe://<trust-domain>/node/<expected node>`, and then the
//! signature under one of the accepted schemes (P-256/SHA-256, Ed25519,
//! P-384/SHA-384, RSA-PSS/SHA-256: docs/intent.md). The kind keeps a signature made
//! for one step from being accepted in another.
//!
//! A ceremony checks several statements of each node, all under the same
//! certificate. [`VerifiedCertificates`] remembers, for one ceremony, the
//! certificates whose chain already verified, so each chain is checked once per
//! ceremony instead of once per statement; everything else (validity at the time
//! of use, the signer's identity, the signature) is checked on every statement.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, SignatureVerificationAlgorithm, UnixTime};
use rustls::SignatureScheme;

use crate::identity::{PeerIdentity, Role};
use quorate_wire::pb;

/// Label that starts every signed message.
const LABEL: &[u8] = b"quorate-statement/1";

/// Schemes a statement may be signed with, in order of preference (the dev PKI
/// issues P-256): what a signer offers and exactly what a verifier accepts, each
/// with the one algorithm [`algorithm`] gives it (docs/intent.md lists them).
const SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ED25519,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
];

/// The one verification algorithm an accepted scheme means (its TLS 1.3 meaning:
/// the ECDSA codes name the curve too), or `None` for a scheme outside
/// [`SCHEMES`]. rustls' own table is wider (RSA PKCS#1, PSS with SHA-384/512,
/// ECDSA codes that also take the other curve); a statement under any of those is
/// refused, so what verifies is what the specification lists.
fn algorithm(scheme: SignatureScheme) -> Option<&'static dyn SignatureVerificationAlgorithm> {
    match scheme {
        SignatureScheme::ECDSA_NISTP256_SHA256 => Some(webpki::ring::ECDSA_P256_SHA256),
        SignatureScheme::ED25519 => Some(webpki::ring::ED25519),
        SignatureScheme::ECDSA_NISTP384_SHA384 => Some(webpki::ring::ECDSA_P384_SHA384),
        SignatureScheme::RSA_PSS_SHA256 => Some(webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY),
        _ => None,
    }
}

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
    /// The statement names a signature scheme outside the accepted set
    /// (docs/intent.md).
    #[error(
        "signature scheme {0:#06x} is not accepted (accepted: 0x0403, 0x0807, 0x0503, 0x0804)"
    )]
    UnsupportedScheme(u32),
}

/// Certificates whose chain to the CA a [`StatementVerifier`] has checked in one
/// ceremony, keyed by their exact DER, with the identity each certifies and the
/// chain's validity window (the later not-before and the earlier not-after of the
/// certificate and its CA).
///
/// Only a certificate that passed the full check (chain, usage, validity, a
/// signature that verified under it) is remembered; a different certificate,
/// however similar, is checked in full. Using a remembered certificate still
/// checks that the moment is within the chain's window, so a certificate or a CA
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
    /// The CA bundle the chain verified under ([`StatementAnchors::bundle`]): after a
    /// reload to another bundle the chain is checked again, so a CA taken out of the
    /// bundle stops vouching for what it issued.
    bundle: [u8; 32],
    identity: PeerIdentity,
    /// Validity period of the chain (the certificate's and its CA's, whichever
    /// starts later and ends sooner), seconds since the Unix epoch, both ends
    /// included (as webpki checks a certificate's).
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

/// A private key and the certificate (DER) it belongs to: what one statement is
/// signed with. Never prints the key.
pub struct SigningPair {
    key: Arc<dyn rustls::sign::SigningKey>,
    certificate: Vec<u8>,
}

impl fmt::Debug for SigningPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningPair")
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl SigningPair {
    /// A key loaded by rustls and its end-entity certificate (DER), which the
    /// caller has checked belong together.
    pub fn new(key: Arc<dyn rustls::sign::SigningKey>, certificate: Vec<u8>) -> Self {
        Self { key, certificate }
    }

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
}

/// Where a signer's key comes from: one fixed pair, or whichever pair reloadable
/// TLS material holds when a statement is signed.
#[derive(Clone)]
enum PairSource {
    Fixed(Arc<SigningPair>),
    Current(Arc<dyn Fn() -> Arc<SigningPair> + Send + Sync>),
}

/// Signs statements with a party's mTLS key. Never prints the key.
///
/// A signer that follows reloadable TLS material ([`StatementSigner::following`])
/// signs each statement with the key and certificate current at that moment, read
/// together: a statement never carries one certificate and a signature of another
/// key. Statements signed before a renewal keep verifying as long as the
/// certificate they carry is valid.
#[derive(Clone)]
pub struct StatementSigner {
    source: PairSource,
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
        Ok(Self {
            source: PairSource::Fixed(Arc::new(SigningPair::from_pem(cert_pem, key_pem)?)),
        })
    }

    /// A signer that asks `current` for the pair to sign each statement with.
    pub fn following(current: impl Fn() -> Arc<SigningPair> + Send + Sync + 'static) -> Self {
        Self {
            source: PairSource::Current(Arc::new(current)),
        }
    }

    fn pair(&self) -> Arc<SigningPair> {
        match &self.source {
            PairSource::Fixed(pair) => pair.clone(),
            PairSource::Current(current) => current(),
        }
    }

    /// The certificate (DER) the next statement will carry.
    pub fn certificate(&self) -> Vec<u8> {
        self.pair().certificate.clone()
    }

    /// Signs `body` as a statement of `kind`.
    pub fn sign(&self, kind: &str, body: Vec<u8>) -> Result<pb::Signed, AttestError> {
        let pair = self.pair();
        let signer = pair
            .key
            .choose_scheme(SCHEMES)
            .ok_or_else(|| AttestError::Setup("the key supports no usable scheme".into()))?;
        let signature = signer
            .sign(&message(kind, &body))
            .map_err(|e| AttestError::Setup(e.to_string()))?;
        Ok(pb::Signed {
            body,
            certificate: pair.certificate.clone(),
            scheme: u32::from(u16::from(signer.scheme())),
            signature,
        })
    }
}

/// A CA bundle as statement trust anchors: each CA certificate, beside it its
/// validity period (webpki does not check an anchor's; a chain is valid only while
/// both its certificates are), and the bundle's digest.
pub struct StatementAnchors {
    anchors: Vec<rustls::pki_types::TrustAnchor<'static>>,
    validity: Vec<(u64, u64)>,
    /// SHA-256 of the bundle's PEM: which bundle a remembered chain verified under.
    bundle: [u8; 32],
}

impl fmt::Debug for StatementAnchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatementAnchors")
            .field("cas", &self.anchors.len())
            .finish_non_exhaustive()
    }
}

impl StatementAnchors {
    /// The CA certificates in `ca_pem`.
    pub fn from_pem(ca_pem: &[u8]) -> Result<Self, AttestError> {
        let cas = CertificateDer::pem_slice_iter(ca_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AttestError::Setup(format!("CA file: {e}")))?;
        if cas.is_empty() {
            return Err(AttestError::Setup("no certificate in the CA file".into()));
        }
        let mut anchors = Vec::with_capacity(cas.len());
        let mut validity_periods = Vec::with_capacity(cas.len());
        for ca in &cas {
            let anchor = webpki::anchor_from_trusted_cert(ca)
                .map_err(|e| AttestError::Setup(format!("CA certificate: {e}")))?;
            let (_, parsed) = x509_parser::parse_x509_certificate(ca)
                .map_err(|e| AttestError::Setup(format!("CA certificate: {e}")))?;
            anchors.push(anchor.to_owned());
            validity_periods.push(validity(&parsed));
        }
        Ok(Self {
            anchors,
            validity: validity_periods,
            bundle: quorate_wire::sha256(ca_pem),
        })
    }
}

/// Where a verifier's anchors come from: fixed, or the party's TLS material as
/// reloaded.
#[derive(Clone)]
enum AnchorSource {
    Fixed(Arc<StatementAnchors>),
    Current(Arc<dyn Fn() -> Arc<StatementAnchors> + Send + Sync>),
}

/// Checks statements signed by nodes of one trust domain.
///
/// A verifier that follows reloadable TLS material ([`StatementVerifier::following`])
/// checks each statement under the CA bundle current at that moment, so a CA
/// rotation reaches intents and attestations as it reaches TLS handshakes.
#[derive(Clone)]
pub struct StatementVerifier {
    trust_domain: String,
    anchors: AnchorSource,
}

impl fmt::Debug for StatementVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatementVerifier")
            .field("trust_domain", &self.trust_domain)
            .field("cas", &self.anchors().anchors.len())
            .finish()
    }
}

impl StatementVerifier {
    /// Trusts the CA certificates in `ca_pem` for `trust_domain`.
    pub fn from_pem(ca_pem: &[u8], trust_domain: &str) -> Result<Self, AttestError> {
        Ok(Self {
            trust_domain: trust_domain.to_string(),
            anchors: AnchorSource::Fixed(Arc::new(StatementAnchors::from_pem(ca_pem)?)),
        })
    }

    /// Trusts, for each statement, the anchors `current` gives at that moment.
    pub fn following(
        trust_domain: &str,
        current: impl Fn() -> Arc<StatementAnchors> + Send + Sync + 'static,
    ) -> Self {
        Self {
            trust_domain: trust_domain.to_string(),
            anchors: AnchorSource::Current(Arc::new(current)),
        }
    }

    fn anchors(&self) -> Arc<StatementAnchors> {
        match &self.anchors {
            AnchorSource::Fixed(anchors) => anchors.clone(),
            AnchorSource::Current(current) => current(),
        }
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
        let (identity, fresh) = self.check(signed, kind, known.as_deref(), now, &|found| {
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
        let anchors = self.anchors();
        let (identity, fresh) =
            match known.filter(|k| k.der == signed.certificate && k.bundle == anchors.bundle) {
                Some(known) => {
                    let t = now.as_secs();
                    if t < known.not_before || t > known.not_after {
                        return Err(AttestError::Certificate(
                            "the certificate or its CA certificate is outside its validity period"
                                .into(),
                        ));
                    }
                    accept(&known.identity)?;
                    (known.identity.clone(), None)
                }
                None => {
                    // Built only for a full check: a remembered chain needs none of it.
                    let algorithms =
                        rustls::crypto::ring::default_provider().signature_verification_algorithms;
                    let path = cert
                        .verify_for_usage(
                            algorithms.all,
                            &anchors.anchors,
                            &[],
                            now,
                            webpki::KeyUsage::client_auth(),
                            None,
                            None,
                        )
                        .map_err(|e| AttestError::Certificate(e.to_string()))?;
                    // The CA that issued it: the chain holds only while both are valid.
                    let (ca_not_before, ca_not_after) = anchors
                        .anchors
                        .iter()
                        .position(|a| std::ptr::eq(a, path.anchor()))
                        .and_then(|i| anchors.validity.get(i).copied())
                        .ok_or_else(|| {
                            AttestError::Certificate("the chain ends at an unknown CA".into())
                        })?;
                    // One parse for the identity and the validity period.
                    let (_, parsed) = x509_parser::parse_x509_certificate(&signed.certificate)
                        .map_err(|e| AttestError::Certificate(e.to_string()))?;
                    let found = PeerIdentity::from_certificate(&parsed)
                        .map_err(|e| AttestError::Certificate(e.to_string()))?;
                    accept(&found)?;
                    // The chain's validity window: the latest not-before and the
                    // earliest not-after of the certificate and its CA. The full check
                    // refuses outside it, and a remembered chain is held to it.
                    let (leaf_not_before, leaf_not_after) = validity(&parsed);
                    let not_before = leaf_not_before.max(ca_not_before);
                    let not_after = leaf_not_after.min(ca_not_after);
                    let t = now.as_secs();
                    if t < not_before || t > not_after {
                        return Err(AttestError::Certificate(
                            "the CA certificate is outside its validity period".into(),
                        ));
                    }
                    let entry = VerifiedCertificate {
                        der: signed.certificate.clone(),
                        bundle: anchors.bundle,
                        identity: found.clone(),
                        not_before,
                        not_after,
                    };
                    (found, Some(entry))
                }
            };
        let alg = u16::try_from(signed.scheme)
            .ok()
            .and_then(|code| algorithm(SignatureScheme::from(code)))
            .ok_or(AttestError::UnsupportedScheme(signed.scheme))?;
        cert.verify_signature(alg, &message(kind, &signed.body), &signed.signature)
            .map_err(|_| AttestError::BadSignature)?;
        Ok((identity, fresh))
    }
}

/// Certificates whose chain to the CA verified, remembered across statements for
/// [`StatementVerifier::identify`] (clients' intents on a node or coordinator, nodes'
/// key attestations on a coordinator or client): at most [`ChainCache::CAPACITY`]
/// (or the capacity it was made with), the oldest forgotten first, so certificates
/// rotated away cannot grow it. Keyed by the SHA-256 of the exact DER, so another certificate,
/// however similar, is checked in full; a remembered one is still checked on every
/// use against its chain's validity window (the certificate's and its CA's), so
/// it is refused once either has expired, as the full check would refuse it.
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
    by_digest: std::collections::HashMap<[u8; 32], std::sync::Arc<VerifiedCertificate>>,
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

    /// Shared, not copied: every intent on the signing path looks its chain up here.
    fn get(&self, digest: &[u8; 32]) -> Option<std::sync::Arc<VerifiedCertificate>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.by_digest.get(digest).cloned()
    }

    fn insert(&self, digest: [u8; 32], entry: VerifiedCertificate) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries
            .by_digest
            .insert(digest, std::sync::Arc::new(entry))
            .is_none()
        {
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

    /// A CA valid from `not_before` for `lifetime`.
    fn ca_valid(not_before: OffsetDateTime, lifetime: Duration) -> Ca {
        use rcgen::{BasicConstraints, IsCa, Issuer};
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "short-lived CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        params.not_before = not_before;
        params.not_after = not_before + lifetime;
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn at(t: OffsetDateTime) -> UnixTime {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(t.unix_timestamp()).unwrap(),
        ))
    }

    #[test]
    fn a_remembered_chain_is_refused_once_its_ca_has_expired_though_the_certificate_has_not() {
        let now = OffsetDateTime::now_utc();
        // The CA ends in 10 minutes; the node's certificate outlives it by a day.
        let ca = ca_valid(now - Duration::hours(1), Duration::minutes(70));
        let verifier = verifier(&ca);
        let node1 = node_signer(&ca, "node-1", now - Duration::minutes(5), Duration::days(1));
        let signed = node1.sign("kind", b"statement".to_vec()).unwrap();
        let chains = ChainCache::default();
        verifier
            .identify(&signed, "kind", Role::Node, &chains, at(now))
            .unwrap();
        assert_eq!(chains.len(), 1, "the chain is remembered");
        let later = at(now + Duration::minutes(11));
        let err = verifier
            .identify(&signed, "kind", Role::Node, &chains, later)
            .unwrap_err();
        assert!(matches!(err, AttestError::Certificate(_)), "{err}");
        // The full check agrees, for a ceremony's cache too.
        let err = verifier
            .identify(&signed, "kind", Role::Node, &ChainCache::default(), later)
            .unwrap_err();
        assert!(matches!(err, AttestError::Certificate(_)), "{err}");
        assert!(err.to_string().contains("CA certificate"), "{err}");
        let mut certificates = VerifiedCertificates::default();
        verifier
            .verify_at(&signed, "kind", "node-1", &mut certificates, at(now))
            .unwrap();
        let err = verifier
            .verify_at(&signed, "kind", "node-1", &mut certificates, later)
            .unwrap_err();
        assert!(matches!(err, AttestError::Certificate(_)), "{err}");
    }

    /// A statement by an RSA node certificate, signed under `scheme` whatever
    /// [`StatementSigner`] would choose.
    fn rsa_statement(ca: &Ca, scheme: SignatureScheme) -> pb::Signed {
        const RSA_KEY: &str = include_str!("../testdata/rsa-2048-test-key.pem");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "node-1");
        params.subject_alt_names = vec![SanType::URI(
            format!("spiffe://{DOMAIN}/node/node-1").try_into().unwrap(),
        )];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(1);
        let key = KeyPair::from_pem(RSA_KEY).unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        let private = PrivateKeyDer::from_pem_slice(RSA_KEY.as_bytes()).unwrap();
        let signing = rustls::crypto::ring::sign::any_supported_type(&private).unwrap();
        let signer = signing.choose_scheme(&[scheme]).unwrap();
        let body = b"statement".to_vec();
        pb::Signed {
            signature: signer.sign(&message("kind", &body)).unwrap(),
            body,
            certificate: cert.der().to_vec(),
            scheme: u32::from(u16::from(scheme)),
        }
    }

    #[test]
    fn only_the_schemes_the_specification_lists_are_accepted() {
        let ca = new_ca("CA");
        let verifier = verifier(&ca);
        // Listed (docs/intent.md): RSASSA-PSS with SHA-256.
        verifier
            .verify(
                &rsa_statement(&ca, SignatureScheme::RSA_PSS_SHA256),
                "kind",
                "node-1",
            )
            .unwrap();
        // Valid signatures under schemes rustls would verify but the
        // specification does not list.
        for scheme in [
            SignatureScheme::RSA_PKCS1_SHA256,
            SignatureScheme::RSA_PKCS1_SHA384,
            SignatureScheme::RSA_PSS_SHA384,
            SignatureScheme::RSA_PSS_SHA512,
        ] {
            let err = verifier
                .verify(&rsa_statement(&ca, scheme), "kind", "node-1")
                .unwrap_err();
            assert!(
                matches!(err, AttestError::UnsupportedScheme(code) if code == u32::from(u16::from(scheme))),
                "{scheme:?}: {err}"
            );
        }
    }

    #[test]
    fn every_scheme_a_signer_offers_is_one_a_verifier_accepts() {
        for scheme in SCHEMES {
            assert!(algorithm(*scheme).is_some(), "{scheme:?}");
        }
    }
}
