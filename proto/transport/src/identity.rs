//! Peer identities from mTLS certificates.
//!
//! Every certificate carries one SPIFFE-style URI SAN `spiffe://<trust-domain>/<role>/<name>`.
//! Servers read the caller's identity from the verified peer certificate ([`authorize`])
//! and never from a message field.

use std::fmt;
use std::str::FromStr;

use tonic::{Request, Status};
use x509_parser::extensions::GeneralName;

/// What a certificate holder may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A signer node.
    Node,
    /// A coordinator (calls nodes).
    Coordinator,
    /// A service requesting signatures.
    Client,
    /// The ceremony tool (installs keys on nodes).
    Ceremony,
    /// An auditor (reads audit logs).
    Auditor,
}

impl Role {
    /// The role's path segment in a SPIFFE id.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Coordinator => "coordinator",
            Role::Client => "client",
            Role::Ceremony => "ceremony",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, IdentityError> {
        Ok(match s {
            "node" => Role::Node,
            "coordinator" => Role::Coordinator,
            "client" => Role::Client,
            "ceremony" => Role::Ceremony,
            "auditor" => Role::Auditor,
            other => return Err(IdentityError::UnknownRole(other.to_string())),
        })
    }
}

/// A SPIFFE identity: trust domain, role and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    /// Trust domain (e.g. `quorate.test`).
    pub trust_domain: String,
    /// Role.
    pub role: Role,
    /// Name within the role (e.g. `node-1`).
    pub name: String,
}

/// Why a certificate carries no usable identity.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The certificate does not parse.
    #[error("certificate does not parse: {0}")]
    BadCertificate(String),
    /// No `spiffe://` URI SAN.
    #[error("certificate has no spiffe:// URI SAN")]
    NoSpiffeId,
    /// More than one `spiffe://` URI SAN.
    #[error("certificate has more than one spiffe:// URI SAN")]
    AmbiguousSpiffeId,
    /// A SPIFFE id not of the form `spiffe://domain/role/name`.
    #[error("malformed SPIFFE id {0:?}: expected spiffe://<trust-domain>/<role>/<name>")]
    Malformed(String),
    /// A role Quorate does not know.
    #[error("unknown role {0:?}")]
    UnknownRole(String),
}

impl PeerIdentity {
    /// Builds an identity, checking that each part is a plain path segment.
    pub fn new(trust_domain: &str, role: Role, name: &str) -> Result<Self, IdentityError> {
        let ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        if !ok(trust_domain) || !ok(name) {
            return Err(IdentityError::Malformed(format!(
                "spiffe://{trust_domain}/{role}/{name}"
            )));
        }
        Ok(Self {
            trust_domain: trust_domain.to_string(),
            role,
            name: name.to_string(),
        })
    }

    /// `spiffe://<trust-domain>/<role>/<name>`.
    pub fn spiffe_id(&self) -> String {
        format!("spiffe://{}/{}/{}", self.trust_domain, self.role, self.name)
    }

    /// Parses `spiffe://<trust-domain>/<role>/<name>`.
    pub fn parse_spiffe_id(uri: &str) -> Result<Self, IdentityError> {
        let rest = uri
            .strip_prefix("spiffe://")
            .ok_or_else(|| IdentityError::Malformed(uri.to_string()))?;
        let mut parts = rest.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(domain), Some(role), Some(name), None) => Self::new(domain, role.parse()?, name)
                .map_err(|_| IdentityError::Malformed(uri.to_string())),
            _ => Err(IdentityError::Malformed(uri.to_string())),
        }
    }

    /// Reads the identity of a DER certificate.
    pub fn from_certificate_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        Self::from_certificate(&cert)
    }

    /// The identity of an already parsed certificate: its one SPIFFE URI SAN.
    pub fn from_certificate(
        cert: &x509_parser::certificate::X509Certificate<'_>,
    ) -> Result<Self, IdentityError> {
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        let mut found = None;
        for name in san.iter().flat_map(|san| san.value.general_names.iter()) {
            if let GeneralName::URI(uri) = name {
                if uri.starts_with("spiffe://") {
                    if found.is_some() {
                        return Err(IdentityError::AmbiguousSpiffeId);
                    }
                    found = Some(Self::parse_spiffe_id(uri)?);
                }
            }
        }
        found.ok_or(IdentityError::NoSpiffeId)
    }

    /// Reads the identity of the first certificate in a PEM file's contents.
    pub fn from_certificate_pem(pem: &[u8]) -> Result<Self, IdentityError> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        Self::from_certificate_der(&pem.contents)
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spiffe_id())
    }
}

/// Certificates seen recently and their identities. A connection's certificate is
/// the same on every request, and parsing it (X.509 DER) is a noticeable part of a
/// small RPC's cost; the identity is a function of the certificate's bytes, so a
/// cache keyed by them is exact. Bounded: cleared when full.
static IDENTITIES: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<Vec<u8>, PeerIdentity>>,
> = std::sync::LazyLock::new(Default::default);

/// Most certificates [`IDENTITIES`] holds.
const MAX_CACHED_IDENTITIES: usize = 1024;

/// [`PeerIdentity::from_certificate_der`], remembered for certificates that have one.
fn identity_of(der: &[u8]) -> Result<PeerIdentity, IdentityError> {
    let lock = || IDENTITIES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(found) = lock().get(der) {
        return Ok(found.clone());
    }
    let identity = PeerIdentity::from_certificate_der(der)?;
    let mut cache = lock();
    if cache.len() >= MAX_CACHED_IDENTITIES {
        cache.clear();
    }
    cache.insert(der.to_vec(), identity.clone());
    Ok(identity)
}

/// The verified identity of the caller of `request`, if its role is one of `allowed`
/// and it belongs to `trust_domain`; `PERMISSION_DENIED` otherwise (and
/// `UNAUTHENTICATED` when there is no peer certificate at all, which an mTLS server
/// never lets through).
pub fn authorize<T>(
    request: &Request<T>,
    trust_domain: &str,
    allowed: &[Role],
) -> Result<PeerIdentity, Status> {
    let certs = request
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    let peer = identity_of(leaf.as_ref())
        .map_err(|e| Status::permission_denied(format!("caller identity: {e}")))?;
    if peer.trust_domain != trust_domain {
        return Err(Status::permission_denied(format!(
            "caller {peer} is not in trust domain {trust_domain}"
        )));
    }
    if !allowed.contains(&peer.role) {
        let allowed: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
        return Err(Status::permission_denied(format!(
            "caller {peer} has role {}; this call needs role {}",
            peer.role,
            allowed.join(" or ")
        )));
    }
    Ok(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_id_round_trips() {
        let id = PeerIdentity::new("quorate.test", Role::Node, "node-1").unwrap();
        assert_eq!(id.spiffe_id(), "spiffe://quorate.test/node/node-1");
        assert_eq!(PeerIdentity::parse_spiffe_id(&id.spiffe_id()).unwrap(), id);
    }

    /// A self-signed certificate carrying `uris` as URI SANs (DER).
    fn certificate(uris: &[String]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = uris
            .iter()
            .map(|u| rcgen::SanType::URI(u.clone().try_into().unwrap()))
            .collect();
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn cached_identities_are_those_of_the_certificate_bytes() {
        let a = certificate(&["spiffe://quorate.test/node/node-1".into()]);
        let b = certificate(&["spiffe://quorate.test/client/svc".into()]);
        for _ in 0..2 {
            assert_eq!(identity_of(&a).unwrap().name, "node-1");
            assert_eq!(identity_of(&b).unwrap().role, Role::Client);
        }
        // A certificate without an identity is refused every time, never cached.
        let none = certificate(&[]);
        for _ in 0..2 {
            assert!(matches!(identity_of(&none), Err(IdentityError::NoSpiffeId)));
        }
        // The cache stays bounded and keeps answering correctly past its size.
        for i in 0..=MAX_CACHED_IDENTITIES {
            let der = certificate(&[format!("spiffe://quorate.test/client/c{i}")]);
            assert_eq!(identity_of(&der).unwrap().name, format!("c{i}"));
        }
        let len = IDENTITIES.lock().unwrap().len();
        assert!(len <= MAX_CACHED_IDENTITIES);
        assert_eq!(identity_of(&a).unwrap().name, "node-1");
    }

    #[test]
    fn malformed_spiffe_ids_are_refused() {
        for bad in [
            "https://quorate.test/node/node-1",
            "spiffe://quorate.test/node",
            "spiffe://quorate.test/node/node-1/extra",
            "spiffe://quorate.test/wizard/node-1",
            "spiffe:///node/node-1",
            "spiffe://quorate.test/node/",
        ] {
            assert!(PeerIdentity::parse_spiffe_id(bad).is_err(), "{bad}");
        }
    }
}
