//! A throwaway certificate authority for tests that need real certificates (this
//! crate's, and other crates' through the cargo feature `test-pki`). Never in a
//! release build: nothing but tests turns the feature on.

#![allow(clippy::unwrap_used)]

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A CA: its certificate (PEM) and what signs with it.
pub struct Ca {
    /// The CA certificate, PEM.
    pub pem: String,
    /// Its key and parameters, to issue certificates with.
    pub issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// A fresh self-signed CA named `name`.
pub fn new_ca(name: &str) -> Ca {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A certificate of `spiffe://quorate.test/<role>/<name>` issued by `ca` (client
/// and server usage, valid from an hour ago for a day), as a statement signer.
pub fn signer(ca: &Ca, role: &str, name: &str) -> crate::attest::StatementSigner {
    let (cert, key) = pem(ca, role, name);
    crate::attest::StatementSigner::from_pem(cert.as_bytes(), key.as_bytes()).unwrap()
}

/// As [`signer`], the certificate and its private key as PEM; the certificate also
/// carries `name` as its DNS name, so that a server can present it.
pub fn pem(ca: &Ca, role: &str, name: &str) -> (String, String) {
    let now = time::OffsetDateTime::now_utc();
    pem_valid(
        ca,
        role,
        name,
        now - time::Duration::hours(1),
        now + time::Duration::days(1),
    )
}

/// As [`pem`], valid from `not_before` to `not_after`.
pub fn pem_valid(
    ca: &Ca,
    role: &str,
    name: &str,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> (String, String) {
    use rcgen::{ExtendedKeyUsagePurpose, SanType};
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = vec![
        SanType::URI(
            format!("spiffe://quorate.test/{role}/{name}")
                .try_into()
                .unwrap(),
        ),
        SanType::DnsName(name.try_into().unwrap()),
    ];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}
