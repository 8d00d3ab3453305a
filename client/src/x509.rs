//! X.509 certificates signed by a key the caller does not hold: a self-signed CA
//! certificate, and certificates issued from a certificate signing request (CSR).
//!
//! Everything here is generic over [`rcgen::SigningKey`], so the `quorate x509`
//! command signs through a threshold key's quorum while tests sign with an ordinary
//! rcgen key pair. Invariants:
//! - the issuer decides the profile: of a CSR only the subject and the public key
//!   are taken, and only once its self-signature verifies; the extensions it
//!   requests are ignored, and its subject is certified only if it holds nothing
//!   but CN, O, OU, C, ST and L without control characters (else the issuer gives
//!   one);
//! - a certificate is issued only under a CA certificate that is a CA
//!   (basicConstraints CA:TRUE, keyCertSign if it has a keyUsage), that has not
//!   expired, outlives the new certificate, and whose public key is the signer's
//!   (a self-issued one must carry a valid signature by that key);
//! - every certificate is parsed back, its signature checked under the issuer's
//!   key, its issuer name and public key compared with what was asked, before it
//!   is returned.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use rand_core::{OsRng, RngCore};
use rcgen::string::{BmpString, Ia5String, PrintableString, TeletexString, UniversalString};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyUsagePurpose, SanType, SerialNumber,
    SigningKey, SubjectPublicKeyInfo,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

/// How far notBefore lies before the moment of signing, so a relying party whose
/// clock runs a little slow does not reject a certificate that was just issued.
pub const BACKDATE: Duration = Duration::minutes(5);

/// The longest validity `--days` may ask for: 25 years, enough for a root CA;
/// anything longer is more likely a typo than a plan.
pub const MAX_DAYS: u32 = 9150;

/// The subject attributes [`Subject::from_str`] knows, as RFC 4514 writes them.
pub const SUBJECT_ATTRIBUTES: &str = "CN, O, OU, C, ST, L";

/// Key usages by name, as RFC 5280 and `openssl x509 -text` name them.
const KEY_USAGES: &[(&str, KeyUsagePurpose)] = &[
    ("digitalSignature", KeyUsagePurpose::DigitalSignature),
    ("nonRepudiation", KeyUsagePurpose::ContentCommitment),
    ("contentCommitment", KeyUsagePurpose::ContentCommitment),
    ("keyEncipherment", KeyUsagePurpose::KeyEncipherment),
    ("dataEncipherment", KeyUsagePurpose::DataEncipherment),
    ("keyAgreement", KeyUsagePurpose::KeyAgreement),
    ("keyCertSign", KeyUsagePurpose::KeyCertSign),
    ("cRLSign", KeyUsagePurpose::CrlSign),
    ("encipherOnly", KeyUsagePurpose::EncipherOnly),
    ("decipherOnly", KeyUsagePurpose::DecipherOnly),
];

/// Extended key usages by name.
const EXT_KEY_USAGES: &[(&str, ExtendedKeyUsagePurpose)] = &[
    ("serverAuth", ExtendedKeyUsagePurpose::ServerAuth),
    ("clientAuth", ExtendedKeyUsagePurpose::ClientAuth),
    ("codeSigning", ExtendedKeyUsagePurpose::CodeSigning),
    ("emailProtection", ExtendedKeyUsagePurpose::EmailProtection),
    ("timeStamping", ExtendedKeyUsagePurpose::TimeStamping),
    ("OCSPSigning", ExtendedKeyUsagePurpose::OcspSigning),
    ("any", ExtendedKeyUsagePurpose::Any),
];

/// Why a certificate was not made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum X509Error {
    /// A subject string that is not a distinguished name this module can write.
    #[error("invalid subject {input:?}: {reason}")]
    Subject {
        /// The string given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A subject alternative name that cannot be parsed.
    #[error("invalid subject alternative name {input:?}: {reason}")]
    San {
        /// The value given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key usage or extended key usage name that is not known.
    #[error("unknown {kind} {input:?} (known: {known})")]
    UnknownUsage {
        /// "key usage" or "extended key usage".
        kind: &'static str,
        /// The name given.
        input: String,
        /// The names that are known.
        known: String,
    },
    /// A profile that contradicts itself or its issuer (a leaf with keyCertSign, a
    /// path length the CA does not allow, a validity out of bounds).
    #[error("{0}")]
    Profile(String),
    /// The certificate signing request cannot be used.
    #[error("certificate signing request: {0}")]
    Csr(String),
    /// The CA certificate cannot issue certificates.
    #[error("CA certificate: {0}")]
    CaCert(String),
    /// The CA certificate names another public key than the signer's: what the
    /// signer made would not verify under the CA certificate.
    #[error(
        "CA certificate: its public key ({ca}) is not the signing key's ({signer}); \
         give the certificate of this key"
    )]
    KeyMismatch {
        /// The CA certificate's public key (hex).
        ca: String,
        /// The signer's public key (hex).
        signer: String,
    },
    /// rcgen could not build or sign the certificate (a signer's own failure comes
    /// through here as rcgen's `RemoteKeyError`).
    #[error("cannot build the certificate: {0}")]
    Build(#[source] rcgen::Error),
    /// The signed certificate did not check out when parsed back; it is not returned.
    #[error("the signed certificate does not check out, nothing is returned: {0}")]
    SelfCheck(String),
}

impl X509Error {
    /// Whether the caller's input is at fault (rather than the signer or this code).
    pub fn is_input(&self) -> bool {
        !matches!(self, Self::Build(_) | Self::SelfCheck(_))
    }
}

/// A distinguished name parsed from an RFC 4514-style string such as
/// `CN=Quorate Root CA,O=Example,C=DE`.
///
/// As in RFC 4514 the string lists the most specific attribute first; the
/// certificate holds them in the reverse order (C, then O, then CN), which is how
/// `openssl x509 -subject -nameopt RFC2253` prints the string back. `\` escapes a
/// special character (`\,`, `\+`, `\\`, `\=`, ...) or gives a byte as two hex
/// digits. Each attribute may appear once (the certificate encoder keeps one value
/// per type), multi-valued RDNs (`+`) are refused, C must be two letters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject(DistinguishedName);

impl Subject {
    /// The distinguished name, in certificate order.
    pub fn distinguished_name(&self) -> &DistinguishedName {
        &self.0
    }
}

impl FromStr for Subject {
    type Err = X509Error;

    fn from_str(input: &str) -> Result<Self, X509Error> {
        let err = |reason: String| X509Error::Subject {
            input: input.to_string(),
            reason,
        };
        let mut attributes = Vec::new();
        for part in split_unescaped(input).map_err(err)? {
            let (ty, value) = part;
            let ty = ty.trim();
            if ty.is_empty() {
                return Err(err("an attribute has no type (expected TYPE=value)".into()));
            }
            let (dn_type, max_len) = match ty.to_ascii_uppercase().as_str() {
                "CN" => (DnType::CommonName, 64),
                "O" => (DnType::OrganizationName, 64),
                "OU" => (DnType::OrganizationalUnitName, 64),
                "C" => (DnType::CountryName, 2),
                "ST" => (DnType::StateOrProvinceName, 128),
                "L" => (DnType::LocalityName, 128),
                _ => {
                    return Err(err(format!(
                        "unknown attribute {ty:?} (known: {SUBJECT_ATTRIBUTES})"
                    )))
                }
            };
            let Some(value) = value else {
                return Err(err(format!("{ty} has no value (expected {ty}=value)")));
            };
            if value.is_empty() {
                return Err(err(format!("{ty} is empty")));
            }
            if value.chars().any(char::is_control) {
                return Err(err(format!(
                    "{ty} holds a control character (NUL, newline, ...)"
                )));
            }
            if value.chars().count() > max_len {
                return Err(err(format!("{ty} is longer than {max_len} characters")));
            }
            let value = if dn_type == DnType::CountryName {
                // RFC 5280: countryName is a PrintableString of an ISO 3166 code.
                if !value.chars().all(|c| c.is_ascii_alphabetic()) || value.len() != 2 {
                    return Err(err(format!(
                        "C must be a two-letter country code, not {value:?}"
                    )));
                }
                DnValue::PrintableString(
                    PrintableString::try_from(value.as_str())
                        .map_err(|e| err(format!("C: {e}")))?,
                )
            } else {
                DnValue::Utf8String(value)
            };
            if attributes.iter().any(|(t, _)| *t == dn_type) {
                return Err(err(format!(
                    "{ty} appears twice; each attribute may appear once"
                )));
            }
            attributes.push((dn_type, value));
        }
        if attributes.is_empty() {
            return Err(err(format!(
                "no attribute (e.g. CN=name; known: {SUBJECT_ATTRIBUTES})"
            )));
        }
        let mut dn = DistinguishedName::new();
        for (ty, value) in attributes.into_iter().rev() {
            dn.push(ty, value);
        }
        Ok(Self(dn))
    }
}

/// Splits `TYPE=value,TYPE=value` at unescaped commas into (type, unescaped value)
/// pairs; the value is `None` when there is no `=`.
fn split_unescaped(input: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut parts = Vec::new();
    let mut ty = String::new();
    // The value as bytes, since `\XX` escapes give UTF-8 bytes one at a time.
    let mut value: Option<Vec<u8>> = None;
    // Trailing spaces of a value are dropped unless escaped: this many bytes of
    // `value` are kept whatever follows.
    let mut kept = 0;
    let mut chars = input.chars().peekable();
    let finish = |ty: &mut String, value: &mut Option<Vec<u8>>, kept: usize| {
        let v = match value.take() {
            Some(mut v) => {
                let end = v.iter().rposition(|b| *b != b' ').map_or(0, |i| i + 1);
                v.truncate(end.max(kept));
                Some(String::from_utf8(v).map_err(|_| "a value is not UTF-8".to_string())?)
            }
            None => None,
        };
        Ok::<_, String>((std::mem::take(ty), v))
    };
    while let Some(c) = chars.next() {
        match (c, &mut value) {
            (',', _) => {
                parts.push(finish(&mut ty, &mut value, kept)?);
                kept = 0;
            }
            ('+', _) => {
                return Err(
                    "multi-valued RDNs (+) are not supported; escape a literal + as \\+".into(),
                )
            }
            ('=', None) => value = Some(Vec::new()),
            ('\\', _) => {
                let Some(next) = chars.next() else {
                    return Err("ends with a lone backslash".into());
                };
                let mut bytes = [0u8; 4];
                let escaped: &[u8] = if next.is_ascii_hexdigit() {
                    let Some(low) = chars.next().filter(char::is_ascii_hexdigit) else {
                        return Err(format!("\\{next} is not an escape (\\, or two hex digits)"));
                    };
                    let byte = u8::from_str_radix(&format!("{next}{low}"), 16)
                        .map_err(|e| e.to_string())?;
                    bytes[0] = byte;
                    &bytes[..1]
                } else if ",+\"\\<>;=# ".contains(next) {
                    next.encode_utf8(&mut bytes).as_bytes()
                } else {
                    return Err(format!("\\{next} is not an escape"));
                };
                match &mut value {
                    Some(v) => {
                        v.extend_from_slice(escaped);
                        kept = v.len();
                    }
                    None => return Err("escapes are allowed in values only".into()),
                }
            }
            (' ', Some(v)) if v.is_empty() => {} // leading spaces of a value
            (c, Some(v)) => {
                let mut bytes = [0u8; 4];
                v.extend_from_slice(c.encode_utf8(&mut bytes).as_bytes());
            }
            (c, None) => ty.push(c),
        }
    }
    parts.push(finish(&mut ty, &mut value, kept)?);
    Ok(parts)
}

/// Parses a subject alternative name: `DNS:name`, `IP:address`, `email:address`
/// or `URI:uri` (the prefix in any case); a value without a known prefix is a DNS
/// name.
pub fn parse_san(input: &str) -> Result<SanType, X509Error> {
    let err = |reason: &str| X509Error::San {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let (kind, value) = match input.split_once(':') {
        Some((k, v))
            if ["dns", "ip", "email", "uri"].contains(&k.to_ascii_lowercase().as_str()) =>
        {
            (k.to_ascii_lowercase(), v)
        }
        _ => ("dns".to_string(), input),
    };
    if value.is_empty() {
        return Err(err("empty value"));
    }
    let ia5 = |v: &str| Ia5String::try_from(v).map_err(|_| err("not ASCII"));
    match kind.as_str() {
        "ip" => IpAddr::from_str(value)
            .map(SanType::IpAddress)
            .map_err(|_| err("not an IPv4 or IPv6 address")),
        "email" => {
            if !value.contains('@') {
                return Err(err("an email address needs an @"));
            }
            Ok(SanType::Rfc822Name(ia5(value)?))
        }
        "uri" => {
            if !value.contains(':') {
                return Err(err(
                    "a URI needs a scheme (e.g. spiffe://... or https://...)",
                ));
            }
            Ok(SanType::URI(ia5(value)?))
        }
        _ => {
            let name = value.strip_prefix("*.").unwrap_or(value);
            let valid = !name.is_empty()
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if !valid {
                return Err(err(
                    "not a DNS name (letters, digits and hyphens in dot-separated labels; \
                     prefix IP:, email: or URI: for other kinds)",
                ));
            }
            Ok(SanType::DnsName(ia5(value)?))
        }
    }
}

/// Parses a key usage name (case does not matter), e.g. `digitalSignature`.
pub fn parse_key_usage(input: &str) -> Result<KeyUsagePurpose, X509Error> {
    lookup(KEY_USAGES, "key usage", input)
}

/// Parses an extended key usage name (case does not matter), e.g. `serverAuth`.
pub fn parse_ext_key_usage(input: &str) -> Result<ExtendedKeyUsagePurpose, X509Error> {
    lookup(EXT_KEY_USAGES, "extended key usage", input)
}

fn lookup<T: Clone>(table: &[(&str, T)], kind: &'static str, input: &str) -> Result<T, X509Error> {
    let wanted = input.trim();
    table
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
        .map(|(_, v)| v.clone())
        .ok_or_else(|| X509Error::UnknownUsage {
            kind,
            input: input.to_string(),
            known: table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
        })
}

/// Checks `--days`: at least 1, at most [`MAX_DAYS`].
pub fn check_days(days: u32) -> Result<(), X509Error> {
    if days == 0 || days > MAX_DAYS {
        return Err(X509Error::Profile(format!(
            "--days must be between 1 and {MAX_DAYS}, not {days}"
        )));
    }
    Ok(())
}

/// A time as RFC 3339 in UTC, e.g. `2026-01-31T12:00:00Z`, as errors and the CLI
/// print it (the `Display` of `OffsetDateTime` is not a format people read).
pub fn utc(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A certificate made here, checked before it was returned.
#[derive(Clone, Debug)]
pub struct Issued {
    /// DER.
    pub der: Vec<u8>,
    /// PEM (`CERTIFICATE`).
    pub pem: String,
    /// The serial number's bytes (positive, big-endian).
    pub serial: Vec<u8>,
    /// notBefore.
    pub not_before: OffsetDateTime,
    /// notAfter.
    pub not_after: OffsetDateTime,
}

/// What a self-signed CA certificate says.
#[derive(Clone, Debug)]
pub struct CaProfile {
    /// Subject (and issuer).
    pub subject: Subject,
    /// Days of validity from now.
    pub days: u32,
    /// basicConstraints pathLenConstraint: how many intermediates may follow
    /// (`None`: no limit).
    pub path_len: Option<u8>,
}

/// A self-signed CA certificate for `key`: basicConstraints CA:TRUE (critical,
/// with the path length if given), keyUsage keyCertSign, cRLSign and
/// digitalSignature (critical; digitalSignature so the CA key may also sign OCSP
/// responses), and a subjectKeyIdentifier (RFC 7093 method 1: SHA-256 of the
/// public key, truncated to 160 bits).
pub fn self_signed_ca(
    profile: &CaProfile,
    now: OffsetDateTime,
    key: &impl SigningKey,
) -> Result<Issued, X509Error> {
    check_days(profile.days)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = profile.subject.distinguished_name().clone();
    params.is_ca = IsCa::Ca(match profile.path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.key_identifier_method = KeyIdMethod::Sha256;
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(i64::from(profile.days));
    let serial = random_serial();
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let cert = params.self_signed(key).map_err(X509Error::Build)?;
    let der = cert.der().to_vec();
    check_issued(
        &der,
        &key.subject_public_key_info(),
        None,
        &key.subject_public_key_info(),
    )?;
    Ok(Issued {
        pem: cert.pem(),
        der,
        serial,
        not_before: params.not_before,
        not_after: params.not_after,
    })
}

/// A CA certificate read back: what issuing under it needs, checked to be a CA.
#[derive(Clone, Debug)]
pub struct CaCertificate {
    subject: DistinguishedName,
    subject_raw: Vec<u8>,
    spki_raw: Vec<u8>,
    key_id: Option<Vec<u8>>,
    path_len: Option<u32>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl CaCertificate {
    /// Parses a PEM certificate and checks that it can issue: basicConstraints
    /// CA:TRUE, and keyCertSign if it has a keyUsage. Its subject must be one this
    /// module can write again byte for byte as the issuer of what it issues (no
    /// multi-valued RDN, no attribute type twice).
    pub fn from_pem(pem: &[u8]) -> Result<Self, X509Error> {
        let err = |m: String| X509Error::CaCert(m);
        let (_, pem) =
            x509_parser::pem::parse_x509_pem(pem).map_err(|e| err(format!("not PEM: {e}")))?;
        if pem.label != "CERTIFICATE" {
            return Err(err(format!(
                "PEM label is {:?}, not CERTIFICATE",
                pem.label
            )));
        }
        let (_, cert) = X509Certificate::from_der(&pem.contents)
            .map_err(|e| err(format!("not an X.509 certificate: {e}")))?;
        // A root made by `self-sign` is signed by the key itself: only the quorum
        // could have made a valid one, so a file edited to claim another path
        // length or lifetime for the same key is refused. (An intermediate's
        // signature is its issuer's, which is not at hand here.)
        if cert.subject().as_raw() == cert.issuer().as_raw() {
            cert.verify_signature(None).map_err(|e| {
                err(format!(
                    "it is self-issued but its signature does not verify under its own key ({e})"
                ))
            })?;
        }
        let constraints = cert
            .basic_constraints()
            .map_err(|e| err(format!("unreadable basicConstraints: {e}")))?;
        let Some(constraints) = constraints.filter(|bc| bc.value.ca) else {
            return Err(err(
                "not a CA certificate (no basicConstraints CA:TRUE); a leaf cannot issue".into(),
            ));
        };
        if let Some(usage) = cert
            .key_usage()
            .map_err(|e| err(format!("unreadable keyUsage: {e}")))?
        {
            if !usage.value.key_cert_sign() {
                return Err(err("its keyUsage does not allow keyCertSign".into()));
            }
        }
        let key_id = cert
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            });
        let subject =
            distinguished_name(cert.subject()).map_err(|e| err(format!("its subject {e}")))?;
        Ok(Self {
            subject,
            subject_raw: cert.subject().as_raw().to_vec(),
            spki_raw: cert.public_key().raw.to_vec(),
            key_id,
            path_len: constraints.value.path_len_constraint,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
        })
    }

    /// notAfter.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The public key's raw bytes (for Ed25519, the 32-byte key), as a
    /// [`rcgen::PublicKeyData::der_bytes`] would give it.
    pub fn public_key_bytes(&self) -> Result<Vec<u8>, X509Error> {
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&self.spki_raw)
            .map_err(|e| X509Error::CaCert(format!("unreadable public key: {e}")))?;
        Ok(spki.subject_public_key.data.to_vec())
    }
}

/// A certificate signing request whose self-signature verified: its subject and
/// public key, nothing else.
#[derive(Clone, Debug)]
pub struct Csr {
    /// The requester's subject, or why it cannot be certified as it is.
    subject: Result<DistinguishedName, String>,
    spki: SubjectPublicKeyInfo,
    spki_raw: Vec<u8>,
}

impl Csr {
    /// Parses a PEM CSR and verifies its self-signature (proof that the requester
    /// holds the private key). Requested extensions are ignored, not refused: the
    /// issuer's profile replaces them.
    pub fn from_pem(pem: &[u8]) -> Result<Self, X509Error> {
        let err = |m: String| X509Error::Csr(m);
        let (_, pem) =
            x509_parser::pem::parse_x509_pem(pem).map_err(|e| err(format!("not PEM: {e}")))?;
        if pem.label != "CERTIFICATE REQUEST" && pem.label != "NEW CERTIFICATE REQUEST" {
            return Err(err(format!(
                "PEM label is {:?}, not CERTIFICATE REQUEST",
                pem.label
            )));
        }
        let (_, csr) = X509CertificationRequest::from_der(&pem.contents)
            .map_err(|e| err(format!("not a PKCS#10 request: {e}")))?;
        csr.verify_signature()
            .map_err(|e| err(format!("its self-signature does not verify ({e})")))?;
        let info = &csr.certification_request_info;
        let spki_raw = info.subject_pki.raw.to_vec();
        // rcgen picks the SubjectPublicKeyInfo algorithm by the key's own
        // AlgorithmIdentifier (curve included), not by the CSR's signature
        // algorithm, which does not name a curve.
        let spki = SubjectPublicKeyInfo::from_der(&spki_raw).map_err(|_| {
            err(format!(
                "its key type ({}) cannot be written into a certificate here \
                 (Ed25519, ECDSA P-256/P-384 and RSA can)",
                info.subject_pki.algorithm.algorithm
            ))
        })?;
        // The requester's subject is certified only if --subject does not replace
        // it, so a subject this module would not write is an error only then.
        let subject = distinguished_name(&info.subject)
            .and_then(|dn| only_subject_attributes(&dn).map(|()| dn))
            .map_err(|e| format!("its subject {e}; give --subject to replace it"));
        Ok(Self {
            subject,
            spki,
            spki_raw,
        })
    }
}

/// What a certificate issued from a CSR says beyond the CSR's subject and key.
#[derive(Clone, Debug, Default)]
pub struct IssueProfile {
    /// Replaces the CSR's subject.
    pub subject: Option<Subject>,
    /// Days of validity from now; notAfter must not pass the CA's notAfter.
    pub days: u32,
    /// `Some` to issue an intermediate CA (CA:TRUE), with its path length
    /// (`Some(None)`: the CA's own limit minus one, or none if the CA has none).
    pub ca: Option<Option<u8>>,
    /// subjectAltName entries.
    pub sans: Vec<SanType>,
    /// keyUsage (`None`: digitalSignature for a leaf, keyCertSign and cRLSign for
    /// an intermediate).
    pub key_usages: Option<Vec<KeyUsagePurpose>>,
    /// extendedKeyUsage (`None`: serverAuth and clientAuth for a leaf, none for an
    /// intermediate; an empty list writes no extension).
    pub ext_key_usages: Option<Vec<ExtendedKeyUsagePurpose>>,
}

/// Default key usages of a leaf: digitalSignature alone, since keyEncipherment is
/// only for RSA key transport (TLS 1.2 RSA key exchange) and wrong for EC and
/// Ed25519 keys; ask for it with `key_usages` when the leaf's key is RSA.
pub const LEAF_KEY_USAGES: &[KeyUsagePurpose] = &[KeyUsagePurpose::DigitalSignature];
/// Default extended key usages of a leaf: a TLS server or client.
pub const LEAF_EXT_KEY_USAGES: &[ExtendedKeyUsagePurpose] = &[
    ExtendedKeyUsagePurpose::ServerAuth,
    ExtendedKeyUsagePurpose::ClientAuth,
];
/// Default key usages of an intermediate CA.
pub const INTERMEDIATE_KEY_USAGES: &[KeyUsagePurpose] =
    &[KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];

/// Issues a certificate for `csr` under `ca`, signed by `key`, which must hold the
/// CA certificate's public key. Adds the CA's authorityKeyIdentifier (its
/// subjectKeyIdentifier) and a subjectKeyIdentifier. A notAfter past the CA's is
/// refused, not clamped: the caller learns how many days are left instead of
/// receiving a certificate shorter than asked.
pub fn issue(
    ca: &CaCertificate,
    csr: &Csr,
    profile: &IssueProfile,
    now: OffsetDateTime,
    key: &impl SigningKey,
) -> Result<Issued, X509Error> {
    let signer_spki = key.subject_public_key_info();
    if signer_spki != ca.spki_raw {
        return Err(X509Error::KeyMismatch {
            ca: hex::encode(ca.public_key_bytes()?),
            signer: hex::encode(key.der_bytes()),
        });
    }
    let params = issue_params(ca, csr, profile, now)?;
    let mut issuer_params = CertificateParams::default();
    issuer_params.distinguished_name = ca.subject.clone();
    // The authorityKeyIdentifier must be the CA's subjectKeyIdentifier as written,
    // whatever method made it; without one, RFC 7093 method 1 as here.
    issuer_params.key_identifier_method = match &ca.key_id {
        Some(id) => KeyIdMethod::PreSpecified(id.clone()),
        None => KeyIdMethod::Sha256,
    };
    let issuer = Issuer::new(issuer_params, key);
    let cert = params
        .signed_by(&csr.spki, &issuer)
        .map_err(X509Error::Build)?;
    let der = cert.der().to_vec();
    check_issued(&der, &ca.spki_raw, Some(&ca.subject_raw), &csr.spki_raw)?;
    Ok(Issued {
        pem: cert.pem(),
        der,
        serial: params
            .serial_number
            .as_ref()
            .map(|s| s.to_bytes())
            .unwrap_or_default(),
        not_before: params.not_before,
        not_after: params.not_after,
    })
}

/// The parameters of [`issue`], every check made before anything is signed.
fn issue_params(
    ca: &CaCertificate,
    csr: &Csr,
    profile: &IssueProfile,
    now: OffsetDateTime,
) -> Result<CertificateParams, X509Error> {
    check_days(profile.days)?;
    if ca.not_after <= now {
        return Err(X509Error::CaCert(format!(
            "it expired at {}",
            utc(ca.not_after)
        )));
    }
    let not_after = now + Duration::days(i64::from(profile.days));
    if not_after > ca.not_after {
        let left = (ca.not_after - now).whole_days();
        return Err(X509Error::Profile(format!(
            "--days {} would outlive the CA certificate (notAfter {}); at most {left} days \
             are left",
            profile.days,
            utc(ca.not_after)
        )));
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = match &profile.subject {
        Some(s) => s.distinguished_name().clone(),
        None => csr.subject.clone().map_err(X509Error::Csr)?,
    };
    if params.distinguished_name.iter().next().is_none() && profile.sans.is_empty() {
        return Err(X509Error::Profile(
            "the subject is empty and no subject alternative name is given: give --subject \
             or --san"
                .into(),
        ));
    }
    let (is_ca, default_usages, default_ext): (_, &[_], &[_]) = match profile.ca {
        Some(requested) => (
            IsCa::Ca(intermediate_path_len(ca.path_len, requested)?),
            INTERMEDIATE_KEY_USAGES,
            &[],
        ),
        None => (IsCa::ExplicitNoCa, LEAF_KEY_USAGES, LEAF_EXT_KEY_USAGES),
    };
    let key_usages = profile
        .key_usages
        .clone()
        .unwrap_or_else(|| default_usages.to_vec());
    let cert_sign = key_usages.contains(&KeyUsagePurpose::KeyCertSign);
    match (profile.ca.is_some(), cert_sign) {
        (false, true) => {
            return Err(X509Error::Profile(
                "keyCertSign is for CA certificates (RFC 5280 4.2.1.9): add --intermediate to \
                 issue an intermediate"
                    .into(),
            ))
        }
        (true, false) => {
            return Err(X509Error::Profile(
                "an intermediate CA needs keyCertSign among its key usages".into(),
            ))
        }
        _ => {}
    }
    params.is_ca = is_ca;
    params.key_usages = key_usages;
    params.extended_key_usages = profile
        .ext_key_usages
        .clone()
        .unwrap_or_else(|| default_ext.to_vec());
    params.subject_alt_names = profile.sans.clone();
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::Sha256;
    // A certificate valid before its issuer would only confuse a reader.
    params.not_before = (now - BACKDATE).max(ca.not_before);
    params.not_after = not_after;
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    Ok(params)
}

/// The path length of an intermediate under a CA whose limit is `ca`: below the
/// CA's, which must leave room for one more CA.
fn intermediate_path_len(
    ca: Option<u32>,
    requested: Option<u8>,
) -> Result<BasicConstraints, X509Error> {
    match (ca, requested) {
        (Some(0), _) => Err(X509Error::Profile(
            "the CA certificate has pathlen 0: it may issue leaves only, not another CA".into(),
        )),
        (Some(limit), Some(n)) if u32::from(n) >= limit => Err(X509Error::Profile(format!(
            "--path-len {n} is not below the CA certificate's pathlen {limit}"
        ))),
        (_, Some(n)) => Ok(BasicConstraints::Constrained(n)),
        (Some(limit), None) => Ok(BasicConstraints::Constrained(
            u8::try_from(limit - 1).unwrap_or(u8::MAX),
        )),
        (None, None) => Ok(BasicConstraints::Unconstrained),
    }
}

/// Parses a certificate just made and checks it before anyone sees it: the
/// signature verifies under `issuer_spki`, the issuer name is byte for byte the
/// CA's subject (so chain building finds the CA), and the subject key is the one
/// asked for.
fn check_issued(
    der: &[u8],
    issuer_spki: &[u8],
    issuer_subject: Option<&[u8]>,
    subject_spki: &[u8],
) -> Result<(), X509Error> {
    let fail = |m: String| X509Error::SelfCheck(m);
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| fail(format!("does not parse: {e}")))?;
    let (_, issuer_key) = x509_parser::x509::SubjectPublicKeyInfo::from_der(issuer_spki)
        .map_err(|e| fail(format!("issuer key does not parse: {e}")))?;
    cert.verify_signature(Some(&issuer_key)).map_err(|e| {
        fail(format!(
            "its signature does not verify under the issuer's key: {e}"
        ))
    })?;
    let expected_issuer = issuer_subject.unwrap_or(cert.subject().as_raw());
    if cert.issuer().as_raw() != expected_issuer {
        return Err(fail(
            "its issuer name is not the CA certificate's subject".into(),
        ));
    }
    if cert.public_key().raw != subject_spki {
        return Err(fail("its public key is not the one requested".into()));
    }
    Ok(())
}

/// A serial number: 16 random bytes, the top bit clear so the INTEGER is positive
/// without a padding byte, and the first byte non-zero so it keeps all 16 bytes.
fn random_serial() -> Vec<u8> {
    let mut serial = [0u8; 16];
    OsRng.fill_bytes(&mut serial);
    serial[0] = (serial[0] & 0x7f).max(1);
    serial.to_vec()
}

/// A certificate's subject (RFC 4514, most specific first) and subject
/// alternative names (`DNS:...`, `IP:...`), as the issuer is shown them.
pub fn describe(der: &[u8]) -> Result<(String, Vec<String>), String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let rdns: Vec<_> = cert.subject().iter().collect();
    let subject = rdns
        .into_iter()
        .rev()
        .flat_map(|rdn| rdn.iter())
        .map(|attr| {
            let oid = attr.attr_type();
            let name = match oid.to_id_string().as_str() {
                "2.5.4.3" => "CN".to_string(),
                "2.5.4.10" => "O".to_string(),
                "2.5.4.11" => "OU".to_string(),
                "2.5.4.6" => "C".to_string(),
                "2.5.4.8" => "ST".to_string(),
                "2.5.4.7" => "L".to_string(),
                other => other.to_string(),
            };
            let value = value_text(attr.attr_value().tag(), attr.as_slice());
            format!("{name}={}", value.replace('\\', "\\\\").replace(',', "\\,"))
        })
        .collect::<Vec<_>>()
        .join(",");
    let sans = cert
        .subject_alternative_name()
        .map_err(|e| e.to_string())?
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .map(|name| match name {
                    GeneralName::DNSName(n) => format!("DNS:{n}"),
                    GeneralName::RFC822Name(n) => format!("email:{n}"),
                    GeneralName::URI(n) => format!("URI:{n}"),
                    GeneralName::IPAddress(ip) => match ip.len() {
                        4 => format!(
                            "IP:{}",
                            std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap_or_default())
                        ),
                        16 => format!(
                            "IP:{}",
                            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap_or_default())
                        ),
                        _ => format!("IP:{}", hex::encode(ip)),
                    },
                    other => format!("{other:?}"),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((
        if subject.is_empty() {
            "(empty)".into()
        } else {
            subject
        },
        sans,
    ))
}

/// A parsed name (a CA's subject, a CSR's subject) as rcgen writes it again,
/// keeping each value's string type so the encoding comes out the same.
fn distinguished_name(name: &X509Name<'_>) -> Result<DistinguishedName, NameError> {
    let mut dn = DistinguishedName::new();
    let mut seen = Vec::new();
    for rdn in name.iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err(NameError(
                "has a multi-valued RDN, which cannot be written".into(),
            ));
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| {
                NameError(format!(
                    "has an attribute type too large ({})",
                    attr.attr_type()
                ))
            })?
            .collect();
        let ty = DnType::from_oid(&oid);
        if seen.contains(&ty) {
            return Err(NameError(format!(
                "has attribute {} twice, which cannot be written",
                attr.attr_type()
            )));
        }
        let data = attr.as_slice();
        let text = || {
            std::str::from_utf8(data).map_err(|_| {
                NameError(format!(
                    "has a value of {} that is not text",
                    attr.attr_type()
                ))
            })
        };
        let bad = |e: rcgen::Error| NameError(format!("value of {}: {e}", attr.attr_type()));
        let value = match attr.attr_value().tag() {
            Tag::Utf8String => DnValue::Utf8String(text()?.to_string()),
            Tag::PrintableString => {
                DnValue::PrintableString(PrintableString::try_from(text()?).map_err(bad)?)
            }
            Tag::Ia5String => DnValue::Ia5String(Ia5String::try_from(text()?).map_err(bad)?),
            Tag::TeletexString => {
                DnValue::TeletexString(TeletexString::try_from(text()?).map_err(bad)?)
            }
            Tag::BmpString => {
                DnValue::BmpString(BmpString::from_utf16be(data.to_vec()).map_err(bad)?)
            }
            Tag::UniversalString => {
                DnValue::UniversalString(UniversalString::from_utf32be(data.to_vec()).map_err(bad)?)
            }
            tag => {
                return Err(NameError(format!(
                    "has a value of {} of type {tag}, which cannot be written",
                    attr.attr_type()
                )))
            }
        };
        if value_text(attr.attr_value().tag(), data)
            .chars()
            .any(char::is_control)
        {
            return Err(NameError(format!(
                "has a value of {} with a control character (NUL, newline, ...)",
                attr.attr_type()
            )));
        }
        seen.push(ty.clone());
        dn.push(ty, value);
    }
    Ok(dn)
}

/// A name value's characters, whatever its string type (undecodable units as
/// U+FFFD), for the checks every value gets.
fn value_text(tag: Tag, data: &[u8]) -> String {
    match tag {
        Tag::BmpString => char::decode_utf16(
            data.chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])),
        )
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect(),
        Tag::UniversalString => data
            .chunks(4)
            .map(|c| {
                <[u8; 4]>::try_from(c)
                    .ok()
                    .and_then(|c| char::from_u32(u32::from_be_bytes(c)))
                    .unwrap_or(char::REPLACEMENT_CHARACTER)
            })
            .collect(),
        _ => String::from_utf8_lossy(data).into_owned(),
    }
}

/// Refuses attribute types beyond the ones `--subject` takes (CN, O, OU, C, ST,
/// L): a requester's emailAddress or an unknown OID is not certified unseen.
fn only_subject_attributes(dn: &DistinguishedName) -> Result<(), NameError> {
    for (ty, _) in dn.iter() {
        if !matches!(
            ty,
            DnType::CommonName
                | DnType::OrganizationName
                | DnType::OrganizationalUnitName
                | DnType::CountryName
                | DnType::StateOrProvinceName
                | DnType::LocalityName
        ) {
            return Err(NameError(format!(
                "has attribute {ty:?}, which is not one of {SUBJECT_ATTRIBUTES}"
            )));
        }
    }
    Ok(())
}

/// Why a parsed name cannot be written again; the message follows "its subject".
#[derive(Debug)]
struct NameError(String);

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(s: &str) -> Subject {
        s.parse().expect("subject parses")
    }

    fn entries(s: &Subject) -> Vec<(DnType, DnValue)> {
        s.distinguished_name()
            .iter()
            .map(|(t, v)| (t.clone(), v.clone()))
            .collect()
    }

    #[test]
    fn subject_is_stored_in_reverse_of_rfc4514_order() {
        let s = subject("CN=Quorate Root CA,O=Example,C=EU");
        assert_eq!(
            entries(&s),
            vec![
                (
                    DnType::CountryName,
                    DnValue::PrintableString(PrintableString::try_from("EU").expect("printable"))
                ),
                (
                    DnType::OrganizationName,
                    DnValue::Utf8String("Example".into())
                ),
                (
                    DnType::CommonName,
                    DnValue::Utf8String("Quorate Root CA".into())
                ),
            ]
        );
    }

    #[test]
    fn subject_escapes_spaces_and_case_are_handled() {
        let s = subject(" cn = Acme\\, Inc. \\2B Co ,ou=Ops\\\\Sec, l=M\\C3\\BCnchen ");
        assert_eq!(
            entries(&s),
            vec![
                (DnType::LocalityName, DnValue::Utf8String("München".into())),
                (
                    DnType::OrganizationalUnitName,
                    DnValue::Utf8String("Ops\\Sec".into())
                ),
                (
                    DnType::CommonName,
                    DnValue::Utf8String("Acme, Inc. + Co".into())
                ),
            ]
        );
        // An escaped trailing space is kept.
        let s = subject("CN=x\\ ");
        assert_eq!(entries(&s)[0].1, DnValue::Utf8String("x ".into()));
    }

    #[test]
    fn subject_errors_name_the_problem() {
        for (input, needle) in [
            ("CN=a,XX=b", "unknown attribute \"XX\""),
            ("CN=a,emailAddress=b@c", "unknown attribute"),
            ("CN", "has no value"),
            ("CN=", "CN is empty"),
            ("", "has no type"),
            ("CN=a,", "has no type"),
            ("CN=a+O=b", "multi-valued"),
            ("CN=a,CN=b", "appears twice"),
            ("C=EUR", "longer than 2"),
            ("C=1X", "two-letter"),
            ("CN=a\\", "lone backslash"),
            ("CN=a\\q", "not an escape"),
            ("CN=a\\FF", "not UTF-8"),
        ] {
            let err = input.parse::<Subject>().expect_err(input).to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
            assert!(err.contains("invalid subject"), "{input:?}: {err}");
        }
        let long = format!("CN={}", "x".repeat(65));
        assert!(long.parse::<Subject>().is_err());
    }

    #[test]
    fn san_prefixes_and_bare_dns() {
        assert_eq!(
            parse_san("leaf.example").expect("dns"),
            SanType::DnsName(Ia5String::try_from("leaf.example").expect("ia5"))
        );
        assert_eq!(
            parse_san("DNS:*.example.org").expect("wildcard"),
            SanType::DnsName(Ia5String::try_from("*.example.org").expect("ia5"))
        );
        assert_eq!(
            parse_san("IP:2001:db8::1").expect("ipv6"),
            SanType::IpAddress("2001:db8::1".parse().expect("ip"))
        );
        assert!(matches!(
            parse_san("email:a@b.example"),
            Ok(SanType::Rfc822Name(_))
        ));
        assert!(matches!(
            parse_san("URI:spiffe://q/node/1"),
            Ok(SanType::URI(_))
        ));
        for bad in [
            "IP:300.1.1.1",
            "email:nobody",
            "URI:nothing",
            "DNS:",
            "bad name",
            "a..b",
        ] {
            assert!(parse_san(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usage_names_are_case_insensitive_and_unknown_ones_list_the_known() {
        assert_eq!(
            parse_key_usage("keyencipherment").expect("ku"),
            KeyUsagePurpose::KeyEncipherment
        );
        assert_eq!(
            parse_ext_key_usage("CodeSigning").expect("eku"),
            ExtendedKeyUsagePurpose::CodeSigning
        );
        let err = parse_key_usage("signEverything")
            .expect_err("unknown")
            .to_string();
        assert!(
            err.contains("digitalSignature") && err.contains("cRLSign"),
            "{err}"
        );
        let err = parse_ext_key_usage("webAuth")
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("serverAuth"), "{err}");
    }

    #[test]
    fn days_are_bounded() {
        assert!(check_days(0).is_err());
        assert!(check_days(1).is_ok());
        assert!(check_days(MAX_DAYS).is_ok());
        assert!(check_days(MAX_DAYS + 1).is_err());
    }

    #[test]
    fn intermediate_path_len_stays_below_the_cas() {
        use BasicConstraints::*;
        assert!(intermediate_path_len(Some(0), None).is_err());
        assert!(intermediate_path_len(Some(2), Some(2)).is_err());
        assert_eq!(
            intermediate_path_len(Some(2), None).expect("ok"),
            Constrained(1)
        );
        assert_eq!(
            intermediate_path_len(Some(2), Some(0)).expect("ok"),
            Constrained(0)
        );
        assert_eq!(
            intermediate_path_len(None, None).expect("ok"),
            Unconstrained
        );
        assert_eq!(
            intermediate_path_len(None, Some(3)).expect("ok"),
            Constrained(3)
        );
    }

    #[test]
    fn utc_is_rfc3339() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        assert_eq!(utc(t), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn serials_are_16_bytes_positive_and_differ() {
        let a = random_serial();
        let b = random_serial();
        assert_eq!(a.len(), 16);
        assert!(a[0] != 0 && a[0] < 0x80);
        assert_ne!(a, b);
    }
}
