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
    /// A location extension that does not decode, or a region or jurisdiction that
    /// cannot be one.
    #[error("location: {0}")]
    BadLocation(String),
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

/// The OID of the X.509 extension that carries a node's location: `2.25.` and a
/// number drawn at random once for Quorate (the UUID arc, RFC 9834/X.667; the number
/// is 64 bits rather than a full 128-bit UUID because rcgen, which issues the dev
/// certificates, encodes OID arcs as `u64`).
pub const LOCATION_OID: &[u64] = &[2, 25, 7_266_273_993_188_459_820];

/// [`LOCATION_OID`] in dotted form.
pub const LOCATION_OID_STR: &str = "2.25.7266273993188459820";

/// The longest region or jurisdiction a location extension may carry, in bytes.
const MAX_LOCATION_PART: usize = 128;

/// Where a node runs, as its CA attests: the region and jurisdiction in the
/// location extension of its certificate ([`LOCATION_OID`], non-critical). The
/// extension's value is the DER of
///
/// ```text
/// NodeLocation ::= SEQUENCE { region UTF8String, jurisdiction UTF8String }
/// ```
///
/// A node's own configuration states what it expects; the certificate decides.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    /// Cloud or sovereign region, e.g. `eu-central-sov`.
    pub region: String,
    /// Jurisdiction, e.g. `EU`.
    pub jurisdiction: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "region {:?}, jurisdiction {:?}",
            self.region, self.jurisdiction
        )
    }
}

impl Location {
    /// A location, refusing an empty, overlong or control-character part.
    pub fn new(region: &str, jurisdiction: &str) -> Result<Self, IdentityError> {
        for (what, part) in [("region", region), ("jurisdiction", jurisdiction)] {
            if part.trim().is_empty() {
                return Err(IdentityError::BadLocation(format!("{what} is empty")));
            }
            if part.len() > MAX_LOCATION_PART {
                return Err(IdentityError::BadLocation(format!(
                    "{what} is longer than {MAX_LOCATION_PART} bytes"
                )));
            }
            if part.chars().any(char::is_control) {
                return Err(IdentityError::BadLocation(format!(
                    "{what} {part:?} contains a control character"
                )));
            }
        }
        Ok(Self {
            region: region.to_string(),
            jurisdiction: jurisdiction.to_string(),
        })
    }

    /// The extension value: DER `SEQUENCE { UTF8String region, UTF8String jurisdiction }`.
    pub fn to_der(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for part in [&self.region, &self.jurisdiction] {
            body.push(TAG_UTF8_STRING);
            der_length(&mut body, part.len());
            body.extend_from_slice(part.as_bytes());
        }
        let mut out = vec![TAG_SEQUENCE];
        der_length(&mut out, body.len());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes [`Location::to_der`]'s encoding, strictly (DER lengths, nothing after).
    pub fn from_der(der: &[u8]) -> Result<Self, IdentityError> {
        let bad = |why: &str| IdentityError::BadLocation(format!("extension value: {why}"));
        let (body, rest) = der_element(der, TAG_SEQUENCE).ok_or_else(|| bad("not a SEQUENCE"))?;
        if !rest.is_empty() {
            return Err(bad("bytes after the SEQUENCE"));
        }
        let (region, body) =
            der_element(body, TAG_UTF8_STRING).ok_or_else(|| bad("region is not a UTF8String"))?;
        let (jurisdiction, body) = der_element(body, TAG_UTF8_STRING)
            .ok_or_else(|| bad("jurisdiction is not a UTF8String"))?;
        if !body.is_empty() {
            return Err(bad("more than two elements"));
        }
        let region = std::str::from_utf8(region).map_err(|_| bad("region is not UTF-8"))?;
        let jurisdiction =
            std::str::from_utf8(jurisdiction).map_err(|_| bad("jurisdiction is not UTF-8"))?;
        Self::new(region, jurisdiction)
    }

    /// The location attested in an already parsed certificate; `None` when it has no
    /// location extension.
    pub fn from_certificate(
        cert: &x509_parser::certificate::X509Certificate<'_>,
    ) -> Result<Option<Self>, IdentityError> {
        let mut found = None;
        for ext in cert.extensions() {
            if ext.oid.to_id_string() == LOCATION_OID_STR {
                if found.is_some() {
                    return Err(IdentityError::BadLocation(
                        "more than one location extension".into(),
                    ));
                }
                found = Some(Self::from_der(ext.value)?);
            }
        }
        Ok(found)
    }

    /// The location attested in a DER certificate.
    pub fn from_certificate_der(der: &[u8]) -> Result<Option<Self>, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        Self::from_certificate(&cert)
    }

    /// The location attested in the first certificate of a PEM file's contents.
    pub fn from_certificate_pem(pem: &[u8]) -> Result<Option<Self>, IdentityError> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        Self::from_certificate_der(&pem.contents)
    }
}

const TAG_SEQUENCE: u8 = 0x30;
const TAG_UTF8_STRING: u8 = 0x0c;

/// Appends a DER length (short form below 128, else long form, minimal).
fn der_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Splits one DER element with tag `tag` off `input`: its contents and what follows.
/// Only minimal lengths of up to two bytes are accepted (a location is short).
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = match len0 {
        0..=0x7f => (usize::from(len0), rest),
        0x81 => {
            let (&l, rest) = rest.split_first()?;
            if l < 0x80 {
                return None;
            }
            (usize::from(l), rest)
        }
        0x82 => {
            let (l, rest) = rest.split_at_checked(2)?;
            let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
            if len < 0x100 {
                return None;
            }
            (len, rest)
        }
        _ => return None,
    };
    rest.split_at_checked(len)
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

    /// A self-signed certificate carrying a location extension with `value`.
    fn certificate_with_location(values: &[Vec<u8>]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.custom_extensions = values
            .iter()
            .map(|v| rcgen::CustomExtension::from_oid_content(LOCATION_OID, v.clone()))
            .collect();
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn location_extension_round_trips_through_a_certificate() {
        let eu = Location::new("eu-central-sov", "EU").unwrap();
        let der = certificate_with_location(&[eu.to_der()]);
        assert_eq!(Location::from_certificate_der(&der).unwrap(), Some(eu));
        // Long values take the long DER length form.
        let long = Location::new(&"r".repeat(128), &"j".repeat(100)).unwrap();
        let der = certificate_with_location(&[long.to_der()]);
        assert_eq!(Location::from_certificate_der(&der).unwrap(), Some(long));
    }

    #[test]
    fn location_extension_has_the_documented_encoding() {
        let der = Location::new("eu", "EU").unwrap().to_der();
        assert_eq!(der, b"\x30\x08\x0c\x02eu\x0c\x02EU");
        assert_eq!(
            LOCATION_OID
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join("."),
            LOCATION_OID_STR
        );
    }

    #[test]
    fn a_certificate_without_a_location_extension_has_none() {
        let der = certificate(&["spiffe://quorate.test/node/node-1".into()]);
        assert_eq!(Location::from_certificate_der(&der).unwrap(), None);
    }

    #[test]
    fn malformed_location_extensions_are_refused() {
        let good = Location::new("eu", "EU").unwrap().to_der();
        let mut trailing = good.clone();
        trailing.push(0);
        for bad in [
            Vec::new(),
            b"\x04\x08\x0c\x02eu\x0c\x02EU".to_vec(), // OCTET STRING, not SEQUENCE
            b"\x30\x04\x0c\x02eu".to_vec(),           // one element
            b"\x30\x0c\x0c\x02eu\x0c\x02EU\x0c\x02xx".to_vec(), // three
            b"\x30\x08\x13\x02eu\x0c\x02EU".to_vec(), // PrintableString
            b"\x30\x08\x0c\x02eu\x0c\x09EU".to_vec(), // length past the end
            b"\x30\x81\x08\x0c\x02eu\x0c\x02EU".to_vec(), // non-minimal length
            b"\x30\x08\x0c\x02eu\x0c\x02\xff\xfe".to_vec(), // not UTF-8
            b"\x30\x06\x0c\x00\x0c\x02EU".to_vec(),   // empty region
            trailing,
        ] {
            assert!(Location::from_der(&bad).is_err(), "{bad:02x?}");
        }
        let twice = certificate_with_location(&[good.clone(), good]);
        assert!(Location::from_certificate_der(&twice).is_err());
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
