//! Development PKI: one CA per trust domain and SPIFFE role certificates signed by it.
//!
//! Every Quorate connection is mTLS against one CA; a party's role and name come from
//! the URI SAN `spiffe://<trust-domain>/<role>/<name>` of its certificate. This module
//! makes such a CA and such certificates for tests, the testnet and evaluation setups.
//! Production deployments bring their own PKI with the same SAN layout.
//!
//! Files in the PKI directory:
//! - `ca.pem`, `ca-key.pem`: the CA (written once; never overwritten),
//! - `<role>-<name>.pem`, `<role>-<name>-key.pem`: a party's certificate and key
//!   (re-issuing replaces them).
//!
//! Private keys are written with mode 0600 and never printed.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use quorate_transport::identity::{IdentityError, Location, PeerIdentity, Role, LOCATION_OID};
use quorate_transport::tls::TlsPaths;
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

/// File name of the CA certificate in a PKI directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key in a PKI directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// How long a dev CA is valid: ten years (with leap days).
const CA_VALIDITY: Duration = Duration::days(3653);
/// How long a role certificate is valid unless told otherwise: two years.
pub const LEAF_VALIDITY: Duration = Duration::days(731);
/// Certificates start one day in the past so that small clock skew between the
/// machines of a testnet does not make a fresh certificate "not yet valid".
const BACKDATE: Duration = Duration::days(1);

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// The trust domain, role or name cannot form a SPIFFE id.
    #[error("invalid identity: {0}")]
    Identity(#[from] IdentityError),
    /// `create_ca` found an existing CA; overwriting it would orphan every
    /// certificate it signed.
    #[error(
        "a CA already exists in {}: refusing to overwrite it (remove {CA_CERT_FILE} and \
         {CA_KEY_FILE} first if you really want a new CA)",
        dir.display()
    )]
    CaExists {
        /// The PKI directory.
        dir: PathBuf,
    },
    /// `issue` found no CA in the directory.
    #[error(
        "no CA in {}: cannot read {}: {source} (create one with `quorate-ceremony pki init`)",
        dir.display(),
        path.display()
    )]
    CaMissing {
        /// The PKI directory.
        dir: PathBuf,
        /// The file that could not be read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CA in the directory belongs to another trust domain.
    #[error("the CA in {} is for trust domain {found:?}, not {expected:?}", dir.display())]
    WrongTrustDomain {
        /// The PKI directory.
        dir: PathBuf,
        /// The trust domain asked for.
        expected: String,
        /// The trust domain named in the CA certificate.
        found: String,
    },
    /// A node certificate without a location, or a location for another role.
    #[error("{0}")]
    Location(String),
    /// An extra DNS name that cannot go into a certificate.
    #[error("invalid DNS name {0:?}")]
    InvalidDnsName(String),
    /// A file could not be read or written.
    #[error("{} {}: {source}", if *.writing { "cannot write" } else { "cannot read" }, path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Whether it was being written.
        writing: bool,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not a PEM certificate.
    #[error("not a PEM certificate: {0}")]
    BadPem(String),
    /// A validity that is not a positive duration.
    #[error("invalid validity {0:?}: expected a positive number with a unit s, m, h or d (e.g. 2m, 12h, 90d)")]
    Validity(String),
    /// rcgen refused to build or sign a certificate.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

impl PkiError {
    /// Whether the error is the caller's mistake (bad arguments, wrong or missing
    /// directory) rather than a failure while doing the work.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Identity(_)
                | Self::CaExists { .. }
                | Self::CaMissing { .. }
                | Self::WrongTrustDomain { .. }
                | Self::InvalidDnsName(_)
                | Self::Location(_)
                | Self::Validity(_)
        )
    }
}

/// Where a CA's files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaPaths {
    /// The CA certificate (`ca.pem`).
    pub cert: PathBuf,
    /// The CA private key (`ca-key.pem`, mode 0600).
    pub key: PathBuf,
}

/// Where an issued certificate's files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCert {
    /// The certificate (`<role>-<name>.pem`).
    pub cert: PathBuf,
    /// Its private key (`<role>-<name>-key.pem`, mode 0600).
    pub key: PathBuf,
    /// The CA certificate that signed it.
    pub ca: PathBuf,
}

impl IssuedCert {
    /// The paths as a party's TLS configuration.
    pub fn tls_paths(&self) -> TlsPaths {
        TlsPaths {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

fn ca_common_name(trust_domain: &str) -> String {
    format!("Quorate dev CA ({trust_domain})")
}

/// Creates a CA for `trust_domain` in `dir` (created if missing): `dir/ca.pem` and
/// `dir/ca-key.pem`. Refuses to overwrite an existing CA.
pub fn create_ca(dir: &Path, trust_domain: &str) -> Result<CaPaths, PkiError> {
    // Validates the trust domain the same way every SPIFFE id is validated.
    PeerIdentity::new(trust_domain, Role::Ceremony, "ca")?;
    let paths = CaPaths {
        cert: dir.join(CA_CERT_FILE),
        key: dir.join(CA_KEY_FILE),
    };
    if paths.cert.exists() || paths.key.exists() {
        return Err(PkiError::CaExists {
            dir: dir.to_path_buf(),
        });
    }
    fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_path_buf(),
        writing: true,
        source,
    })?;

    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, ca_common_name(trust_domain));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;

    let key_pem = Zeroizing::new(key.serialize_pem());
    // Key first and both exclusively: a concurrent `init` loses instead of mixing files.
    write_new(&paths.key, key_pem.as_bytes(), true)?;
    write_new(&paths.cert, cert.pem().as_bytes(), false)?;
    Ok(paths)
}

/// Issues a certificate for `spiffe://<trust_domain>/<role>/<name>`, signed by the CA
/// in `dir`, and writes `dir/<role>-<name>.pem` and `dir/<role>-<name>-key.pem`
/// (replacing an earlier certificate of the same party).
///
/// Subject alternative names: the SPIFFE URI, DNS `name`, DNS `localhost`, IP
/// 127.0.0.1, and each of `extra_dns` (as an IP address when it parses as one).
/// Every certificate is good for client authentication (every party connects to
/// someone, and nodes sign ceremony statements checked for client-auth usage); only
/// the server roles, `node` and `coordinator`, also get server authentication, so a
/// client's certificate cannot pass for a server.
///
/// A node's certificate carries its `location` (region and jurisdiction) in the
/// location extension ([`LOCATION_OID`]); it is required for role `node` and refused
/// for every other role.
pub fn issue(
    dir: &Path,
    trust_domain: &str,
    role: Role,
    name: &str,
    location: Option<&Location>,
    extra_dns: &[String],
) -> Result<IssuedCert, PkiError> {
    issue_valid(
        dir,
        trust_domain,
        role,
        name,
        location,
        extra_dns,
        LEAF_VALIDITY,
    )
}

/// As [`issue`], valid until `valid_for` from now (short-lived certificates, as
/// SPIFFE/SPIRE or cert-manager issue them, that running parties reload).
pub fn issue_valid(
    dir: &Path,
    trust_domain: &str,
    role: Role,
    name: &str,
    location: Option<&Location>,
    extra_dns: &[String],
    valid_for: Duration,
) -> Result<IssuedCert, PkiError> {
    if !valid_for.is_positive() {
        return Err(PkiError::Validity(valid_for.to_string()));
    }
    let identity = PeerIdentity::new(trust_domain, role, name)?;
    match (role, location) {
        (Role::Node, None) => {
            return Err(PkiError::Location(format!(
                "a node certificate needs the node's region and jurisdiction \
                 (--region and --jurisdiction); none given for {identity}"
            )))
        }
        (Role::Node, Some(_)) | (_, None) => {}
        (_, Some(_)) => {
            return Err(PkiError::Location(format!(
                "only node certificates carry a region and jurisdiction, not {identity}"
            )))
        }
    }
    let ca_cert_path = dir.join(CA_CERT_FILE);
    let ca_key_path = dir.join(CA_KEY_FILE);
    let read_ca = |path: &Path| {
        fs::read_to_string(path)
            .map(Zeroizing::new)
            .map_err(|source| PkiError::CaMissing {
                dir: dir.to_path_buf(),
                path: path.to_path_buf(),
                source,
            })
    };
    let ca_cert_pem = read_ca(&ca_cert_path)?;
    let ca_key_pem = read_ca(&ca_key_path)?;
    check_ca_trust_domain(dir, ca_cert_pem.as_bytes(), trust_domain)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key)?;

    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = subject_alt_names(&identity, extra_dns)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = if is_server_role(role) {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    if let Some(location) = location {
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            LOCATION_OID,
            location.to_der(),
        )];
    }
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = now + valid_for;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    let issued = IssuedCert {
        cert: dir.join(format!("{role}-{name}.pem")),
        key: dir.join(format!("{role}-{name}-key.pem")),
        ca: ca_cert_path,
    };
    let key_pem = Zeroizing::new(key.serialize_pem());
    // Each file is replaced whole (a new file renamed over the old), the key first:
    // a party that reads between the two renames finds a new key beside the old
    // certificate, refuses the pair as mismatched and reads again (tls_reload).
    write_replacing(&issued.key, key_pem.as_bytes(), true)?;
    write_replacing(&issued.cert, cert.pem().as_bytes(), false)?;
    Ok(issued)
}

/// The first PEM block of the certificate file at `path`.
fn read_certificate_pem(path: &Path) -> Result<x509_parser::pem::Pem, PkiError> {
    let bytes = fs::read(path).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        writing: false,
        source,
    })?;
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(&bytes).map_err(|e| PkiError::BadPem(e.to_string()))?;
    Ok(pem)
}

/// Renews the certificate of `<role>/<name>` in `dir`: a new key and a new
/// certificate for the same identity (trust domain, SPIFFE id, location and DNS
/// names, read from the current certificate), valid for `valid_for` from now,
/// replacing the files as [`issue`] does. Running parties pick it up by themselves.
pub fn renew(
    dir: &Path,
    role: Role,
    name: &str,
    valid_for: Duration,
) -> Result<IssuedCert, PkiError> {
    let path = dir.join(format!("{role}-{name}.pem"));
    let pem = read_certificate_pem(&path)?;
    let cert = pem
        .parse_x509()
        .map_err(|e| PkiError::BadPem(e.to_string()))?;
    // What is carried over (identity, region, jurisdiction, names) is believed only
    // from a certificate this CA issued: a file swapped in from elsewhere must not
    // get a fresh certificate from this CA for what it claims.
    let ca_path = dir.join(CA_CERT_FILE);
    let ca_pem = read_certificate_pem(&ca_path)?;
    let ca_cert = ca_pem
        .parse_x509()
        .map_err(|e| PkiError::BadPem(e.to_string()))?;
    if cert.verify_signature(Some(ca_cert.public_key())).is_err() {
        return Err(PkiError::BadPem(format!(
            "{} was not issued by the CA in {}; refusing to renew what it claims",
            path.display(),
            ca_path.display()
        )));
    }
    let identity = PeerIdentity::from_certificate(&cert)?;
    if identity.role != role || identity.name != name {
        return Err(PkiError::BadPem(format!(
            "{} is the certificate of {identity}, not of {role}/{name}",
            path.display()
        )));
    }
    let location = Location::from_certificate(&cert)?;
    let standard = subject_alt_names(&identity, &[])?;
    let mut extra_dns = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for general in &san.value.general_names {
            let (entry, text) = match general {
                x509_parser::extensions::GeneralName::DNSName(dns) => (
                    SanType::DnsName(
                        Ia5String::try_from(dns.to_string())
                            .map_err(|_| PkiError::InvalidDnsName(dns.to_string()))?,
                    ),
                    dns.to_string(),
                ),
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap_or_default()),
                        16 => IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap_or_default()),
                        _ => continue,
                    };
                    (SanType::IpAddress(ip), ip.to_string())
                }
                _ => continue,
            };
            if !standard.contains(&entry) {
                extra_dns.push(text);
            }
        }
    }
    issue_valid(
        dir,
        &identity.trust_domain,
        role,
        name,
        location.as_ref(),
        &extra_dns,
        valid_for,
    )
}

/// Parses a validity such as `90s`, `2m`, `12h` or `730d`.
pub fn parse_validity(text: &str) -> Result<Duration, PkiError> {
    let bad = || PkiError::Validity(text.to_string());
    let text = text.trim();
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = text.split_at_checked(split).ok_or_else(bad)?;
    let number: i64 = number.parse().map_err(|_| bad())?;
    let validity = match unit {
        "s" => Duration::seconds(number),
        "m" => Duration::minutes(number),
        "h" => Duration::hours(number),
        "d" => Duration::days(number),
        _ => return Err(bad()),
    };
    if number <= 0 || number > 36_500 * 86_400 {
        return Err(bad());
    }
    Ok(validity)
}

/// Whether parties of `role` serve connections (and so get the serverAuth usage).
pub fn is_server_role(role: Role) -> bool {
    matches!(role, Role::Node | Role::Coordinator)
}

/// Hex SHA-256 of the DER of the first certificate in `pem`: the certificate
/// fingerprint recorded in transcripts.
pub fn fingerprint_pem(pem: &[u8]) -> Result<String, PkiError> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|e| PkiError::BadPem(e.to_string()))?;
    if pem.label != "CERTIFICATE" {
        return Err(PkiError::BadPem(format!(
            "expected a CERTIFICATE block, found {:?}",
            pem.label
        )));
    }
    Ok(fingerprint_der(&pem.contents))
}

/// Hex SHA-256 of a DER certificate.
pub fn fingerprint_der(der: &[u8]) -> String {
    hex::encode(quorate_wire::sha256(der))
}

fn subject_alt_names(
    identity: &PeerIdentity,
    extra_dns: &[String],
) -> Result<Vec<SanType>, PkiError> {
    let ia5 = |s: &str| {
        Ia5String::try_from(s.to_string()).map_err(|_| PkiError::InvalidDnsName(s.to_string()))
    };
    let mut sans = vec![
        SanType::URI(ia5(&identity.spiffe_id())?),
        SanType::DnsName(ia5(&identity.name)?),
        SanType::DnsName(ia5("localhost")?),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    ];
    for extra in extra_dns {
        let extra = extra.trim();
        let san = match extra.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => {
                let valid = !extra.is_empty()
                    && extra.len() <= 253
                    && extra
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'*'));
                if !valid {
                    return Err(PkiError::InvalidDnsName(extra.to_string()));
                }
                SanType::DnsName(ia5(extra)?)
            }
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

/// Refuses to sign for `trust_domain` with a CA made for another one: certificates
/// of two domains under one CA would authenticate each other's parties.
fn check_ca_trust_domain(dir: &Path, ca_pem: &[u8], trust_domain: &str) -> Result<(), PkiError> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(ca_pem).map_err(|e| PkiError::BadPem(e.to_string()))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| PkiError::BadPem(e.to_string()))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default();
    // CAs not made by `create_ca` carry other names; they are the operator's business.
    if let Some(found) = cn
        .strip_prefix("Quorate dev CA (")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        if found != trust_domain {
            return Err(PkiError::WrongTrustDomain {
                dir: dir.to_path_buf(),
                expected: trust_domain.to_string(),
                found: found.to_string(),
            });
        }
    }
    Ok(())
}

fn open_options(private: bool) -> fs::OpenOptions {
    let mut options = fs::OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    options
}

/// Writes a file that must not exist yet.
fn write_new(path: &Path, contents: &[u8], private: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        writing: true,
        source,
    };
    let mut file = open_options(private)
        .create_new(true)
        .open(path)
        .map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Replaces a file by renaming a fresh one over it, so that a private key file is
/// never briefly readable with the old file's permissions and never half written.
fn write_replacing(path: &Path, contents: &[u8], private: bool) -> Result<(), PkiError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // A leftover from an interrupted run; create_new below must not follow it.
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, contents, private)?;
    fs::rename(&tmp, path).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        writing: true,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: &str = "quorate.test";

    fn eu() -> Location {
        Location::new("eu-central-sov", "EU").unwrap()
    }

    /// The location a certificate of `role` must carry.
    fn location_for(role: Role) -> Option<Location> {
        (role == Role::Node).then(eu)
    }

    fn parse_pem(path: &Path) -> Vec<u8> {
        let pem = fs::read(path).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        pem.contents
    }

    #[test]
    fn issued_certificate_carries_the_requested_spiffe_identity() {
        let dir = tempfile::tempdir().unwrap();
        create_ca(dir.path(), DOMAIN).unwrap();
        for (role, name) in [(Role::Node, "node-1"), (Role::Ceremony, "alice")] {
            let issued = issue(
                dir.path(),
                DOMAIN,
                role,
                name,
                location_for(role).as_ref(),
                &[],
            )
            .unwrap();
            let id = PeerIdentity::from_certificate_pem(&fs::read(&issued.cert).unwrap()).unwrap();
            assert_eq!(id, PeerIdentity::new(DOMAIN, role, name).unwrap());
            assert_eq!(issued.cert, dir.path().join(format!("{role}-{name}.pem")));
            assert_eq!(
                issued.key,
                dir.path().join(format!("{role}-{name}-key.pem"))
            );
            assert_eq!(issued.tls_paths().ca, dir.path().join("ca.pem"));
        }
    }

    #[test]
    fn leaf_is_signed_by_the_ca_and_has_the_promised_extensions() {
        let dir = tempfile::tempdir().unwrap();
        create_ca(dir.path(), DOMAIN).unwrap();
        let extra = vec!["node-1.example".to_string(), "10.1.2.3".to_string()];
        let issued = issue(
            dir.path(),
            DOMAIN,
            Role::Node,
            "node-1",
            Some(&eu()),
            &extra,
        )
        .unwrap();
        let ca_der = parse_pem(&issued.ca);
        let leaf_der = parse_pem(&issued.cert);
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();

        leaf.verify_signature(Some(ca.public_key())).unwrap();
        assert!(ca.is_ca());
        assert!(!leaf.is_ca());
        assert_eq!(leaf.issuer(), ca.subject());
        let ku = leaf.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && !ku.key_cert_sign());
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let ext = leaf
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == quorate_transport::identity::LOCATION_OID_STR)
            .unwrap();
        assert!(!ext.critical);
        assert_eq!(Location::from_certificate(&leaf).unwrap(), Some(eu()));

        let sans: Vec<String> = leaf
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        for want in [
            "URI(spiffe://quorate.test/node/node-1)",
            "DNSName(node-1)",
            "DNSName(localhost)",
            "DNSName(node-1.example)",
            "IPAddress(7f:00:00:01)", // x509-parser prints IPs as hex bytes
            "IPAddress(0a:01:02:03)",
        ] {
            assert!(
                sans.iter().any(|s| s == want),
                "{want} missing from {sans:?}"
            );
        }
    }

    #[test]
    fn only_server_roles_get_server_auth_and_every_role_client_auth() {
        let dir = tempfile::tempdir().unwrap();
        create_ca(dir.path(), DOMAIN).unwrap();
        for (role, server) in [
            (Role::Node, true),
            (Role::Coordinator, true),
            (Role::Client, false),
            (Role::Ceremony, false),
            (Role::Auditor, false),
        ] {
            let issued = issue(
                dir.path(),
                DOMAIN,
                role,
                "x",
                location_for(role).as_ref(),
                &[],
            )
            .unwrap();
            let der = parse_pem(&issued.cert);
            let (_, leaf) = x509_parser::parse_x509_certificate(&der).unwrap();
            let eku = leaf.extended_key_usage().unwrap().unwrap().value;
            assert_eq!(eku.server_auth, server, "{role}");
            assert!(eku.client_auth, "{role}");
            assert_eq!(
                Location::from_certificate(&leaf).unwrap(),
                location_for(role),
                "{role}"
            );
        }
    }

    #[test]
    fn a_node_certificate_needs_a_location_and_no_other_role_takes_one() {
        let dir = tempfile::tempdir().unwrap();
        create_ca(dir.path(), DOMAIN).unwrap();
        let err = issue(dir.path(), DOMAIN, Role::Node, "node-1", None, &[]).unwrap_err();
        assert!(
            matches!(err, PkiError::Location(_)) && err.is_usage(),
            "{err}"
        );
        assert!(err.to_string().contains("--region"), "{err}");
        for role in [
            Role::Coordinator,
            Role::Client,
            Role::Ceremony,
            Role::Auditor,
        ] {
            let err = issue(dir.path(), DOMAIN, role, "x", Some(&eu()), &[]).unwrap_err();
            assert!(matches!(err, PkiError::Location(_)), "{role}: {err}");
        }
    }

    #[test]
    fn ca_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let paths = create_ca(dir.path(), DOMAIN).unwrap();
        let before = fs::read(&paths.cert).unwrap();
        let err = create_ca(dir.path(), DOMAIN).unwrap_err();
        assert!(matches!(err, PkiError::CaExists { .. }), "{err}");
        assert!(err.is_usage());
        assert_eq!(fs::read(&paths.cert).unwrap(), before);
    }

    #[cfg(unix)]
    #[test]
    fn private_keys_are_readable_by_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ca = create_ca(dir.path(), DOMAIN).unwrap();
        let leaf = issue(dir.path(), DOMAIN, Role::Client, "svc", None, &[]).unwrap();
        // Re-issuing replaces the files and keeps the mode.
        let leaf2 = issue(dir.path(), DOMAIN, Role::Client, "svc", None, &[]).unwrap();
        assert_eq!(leaf, leaf2);
        for key in [&ca.key, &leaf.key] {
            let mode = fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
    }

    #[test]
    fn issuing_without_a_ca_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let err = issue(dir.path(), DOMAIN, Role::Node, "node-1", Some(&eu()), &[]).unwrap_err();
        assert!(matches!(err, PkiError::CaMissing { .. }));
        assert!(err.to_string().contains("pki init"), "{err}");
    }

    #[test]
    fn issuing_for_another_trust_domain_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        create_ca(dir.path(), DOMAIN).unwrap();
        let err = issue(
            dir.path(),
            "other.test",
            Role::Node,
            "node-1",
            Some(&eu()),
            &[],
        )
        .unwrap_err();
        assert!(matches!(err, PkiError::WrongTrustDomain { .. }), "{err}");
    }

    #[test]
    fn names_that_cannot_form_a_spiffe_id_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            create_ca(dir.path(), "bad/domain"),
            Err(PkiError::Identity(_))
        ));
        create_ca(dir.path(), DOMAIN).unwrap();
        for bad in ["", "a/b", "node 1", "../x"] {
            let err = issue(dir.path(), DOMAIN, Role::Node, bad, Some(&eu()), &[]).unwrap_err();
            assert!(matches!(err, PkiError::Identity(_)), "{bad:?}: {err}");
        }
        let err = issue(
            dir.path(),
            DOMAIN,
            Role::Node,
            "n",
            Some(&eu()),
            &["a b".into()],
        )
        .unwrap_err();
        assert!(matches!(err, PkiError::InvalidDnsName(_)), "{err}");
    }

    #[test]
    fn fingerprint_is_sha256_of_der() {
        let dir = tempfile::tempdir().unwrap();
        let ca = create_ca(dir.path(), DOMAIN).unwrap();
        let fp = fingerprint_pem(&fs::read(&ca.cert).unwrap()).unwrap();
        assert_eq!(fp, hex::encode(quorate_wire::sha256(&parse_pem(&ca.cert))));
        assert_eq!(fp.len(), 64);
        assert!(fingerprint_pem(b"not pem").is_err());
        assert!(fingerprint_pem(&fs::read(&ca.key).unwrap()).is_err());
    }

    #[test]
    fn renew_keeps_the_identity_location_and_names_with_a_new_key_and_validity() {
        let dir = tempfile::tempdir().unwrap();
        create_ca(dir.path(), DOMAIN).unwrap();
        let extra = ["node-1.example.net".to_string(), "10.0.0.7".to_string()];
        let first = issue(
            dir.path(),
            DOMAIN,
            Role::Node,
            "node-1",
            Some(&eu()),
            &extra,
        )
        .unwrap();
        let before_cert = parse_pem(&first.cert);
        let before_key = fs::read(&first.key).unwrap();
        let renewed = renew(
            dir.path(),
            Role::Node,
            "node-1",
            parse_validity("2m").unwrap(),
        )
        .unwrap();
        assert_eq!(renewed, first);
        let after_cert = parse_pem(&renewed.cert);
        assert_ne!(after_cert, before_cert);
        assert_ne!(fs::read(&renewed.key).unwrap(), before_key);
        let (_, before) = x509_parser::parse_x509_certificate(&before_cert).unwrap();
        let (_, after) = x509_parser::parse_x509_certificate(&after_cert).unwrap();
        assert_eq!(
            PeerIdentity::from_certificate(&after).unwrap(),
            PeerIdentity::from_certificate(&before).unwrap()
        );
        assert_eq!(Location::from_certificate(&after).unwrap(), Some(eu()));
        let names = |c: &x509_parser::certificate::X509Certificate<'_>| {
            format!("{:?}", c.subject_alternative_name().unwrap().unwrap().value)
        };
        assert_eq!(names(&after), names(&before));
        let left =
            after.validity().not_after.timestamp() - OffsetDateTime::now_utc().unix_timestamp();
        assert!((100..=120).contains(&left), "{left}");
        // The key belongs to the certificate.
        let tls = renewed.tls_paths().load().unwrap();
        assert_eq!(tls.identity().name, "node-1");
        // Renewing a party that has no certificate says which file is missing.
        let err = renew(dir.path(), Role::Client, "nobody", LEAF_VALIDITY).unwrap_err();
        assert!(err.to_string().contains("client-nobody.pem"), "{err}");
    }

    #[test]
    fn renew_refuses_a_certificate_another_ca_issued() {
        let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        create_ca(ours.path(), DOMAIN).unwrap();
        create_ca(theirs.path(), DOMAIN).unwrap();
        issue(ours.path(), DOMAIN, Role::Node, "node-1", Some(&eu()), &[]).unwrap();
        // node-1's certificate replaced by one from another CA claiming the same
        // identity, with its own key: renew would hand it this CA's signature.
        let foreign = issue(
            theirs.path(),
            DOMAIN,
            Role::Node,
            "node-1",
            Some(&eu()),
            &[],
        )
        .unwrap();
        let own_cert = ours.path().join("node-node-1.pem");
        fs::copy(&foreign.cert, &own_cert).unwrap();
        let before = fs::read(&own_cert).unwrap();
        let err = renew(ours.path(), Role::Node, "node-1", LEAF_VALIDITY).unwrap_err();
        assert!(err.to_string().contains("not issued by the CA"), "{err}");
        assert_eq!(fs::read(&own_cert).unwrap(), before, "nothing was replaced");
    }

    #[test]
    fn validities_parse_with_their_unit_and_nonsense_is_refused() {
        assert_eq!(parse_validity("90s").unwrap(), Duration::seconds(90));
        assert_eq!(parse_validity("2m").unwrap(), Duration::minutes(2));
        assert_eq!(parse_validity("12h").unwrap(), Duration::hours(12));
        assert_eq!(parse_validity("730d").unwrap(), Duration::days(730));
        for bad in ["", "m", "2", "0m", "-1h", "2w", "1.5h", "99999999999d"] {
            let err = parse_validity(bad).unwrap_err();
            assert!(
                matches!(err, PkiError::Validity(_)) && err.is_usage(),
                "{bad}"
            );
        }
    }
}
