//! A threshold key's public key in the encodings standard tools read: DER and PEM
//! SubjectPublicKeyInfo, JWK, an OpenSSH public key line, raw bytes and hex.
//!
//! Each ciphersuite gets only the forms a standard defines for its key:
//! - Ed25519: every form (SPKI per RFC 8410, JWK `OKP` per RFC 8037, `ssh-ed25519`).
//! - FROST(secp256k1, SHA-256): SPKI (`id-ecPublicKey` on secp256k1, RFC 5480, the
//!   point uncompressed) and JWK (`EC`, curve `secp256k1`, RFC 8812), without an
//!   `alg`: the key is a standard point, but its RFC 9591 Schnorr signatures are
//!   neither ECDSA nor any JOSE algorithm, so no algorithm is claimed for it.
//!   OpenSSH has no secp256k1 key type.
//! - BIP340 (Taproot): the 32-byte x-only key, raw or hex, as BIP340 defines it; no
//!   SPKI, JWK or OpenSSH form exists for x-only keys, so those are refused.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use k256::elliptic_curve::sec1::ToEncodedPoint;
use quorate_frost::Ciphersuite;

/// An encoding of a public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyFormat {
    /// SubjectPublicKeyInfo, PEM (`-----BEGIN PUBLIC KEY-----`).
    Pem,
    /// SubjectPublicKeyInfo, DER (binary).
    Der,
    /// JSON Web Key (one line).
    Jwk,
    /// An OpenSSH public key line (`ssh-ed25519 AAAA... KEY_ID`).
    Openssh,
    /// The ciphersuite's own encoding, binary (Ed25519: 32 bytes; secp256k1: 33-byte
    /// compressed SEC1; BIP340: 32-byte x-only).
    Raw,
    /// The same as hex (one line).
    Hex,
}

impl KeyFormat {
    /// The name `--format` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pem => "pem",
            Self::Der => "der",
            Self::Jwk => "jwk",
            Self::Openssh => "openssh",
            Self::Raw => "raw",
            Self::Hex => "hex",
        }
    }
}

/// A key the format cannot express, or a key that is not what its ciphersuite says.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(String);

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410 section 4): the
/// SEQUENCE, the algorithm identifier (OID 1.3.101.112, no parameters) and the BIT
/// STRING header; the 32 key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The DER prefix of a secp256k1 SubjectPublicKeyInfo with an uncompressed point
/// (RFC 5480): `id-ecPublicKey` (1.2.840.10045.2.1) with the named curve secp256k1
/// (1.3.132.0.10), and the BIT STRING header; the 65-byte point follows.
const SECP256K1_SPKI_PREFIX: [u8; 23] = [
    0x30, 0x56, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
    0x81, 0x04, 0x00, 0x0a, 0x03, 0x42, 0x00,
];

/// `public_key` (the ciphersuite's encoding) as `format`; text formats end in a
/// newline.
pub fn encode(
    suite: Ciphersuite,
    public_key: &[u8],
    key_id: &str,
    format: KeyFormat,
) -> Result<Vec<u8>, FormatError> {
    check_length(suite, public_key)?;
    Ok(match format {
        KeyFormat::Raw => public_key.to_vec(),
        KeyFormat::Hex => format!("{}\n", hex::encode(public_key)).into_bytes(),
        KeyFormat::Der => spki_der(suite, public_key)?,
        KeyFormat::Pem => pem("PUBLIC KEY", &spki_der(suite, public_key)?).into_bytes(),
        KeyFormat::Jwk => format!("{}\n", jwk(suite, public_key, key_id)?).into_bytes(),
        KeyFormat::Openssh => format!("{}\n", openssh(suite, public_key, key_id)?).into_bytes(),
    })
}

/// The SubjectPublicKeyInfo (DER) of the key.
pub fn spki_der(suite: Ciphersuite, public_key: &[u8]) -> Result<Vec<u8>, FormatError> {
    check_length(suite, public_key)?;
    match suite {
        Ciphersuite::Ed25519 => Ok([&ED25519_SPKI_PREFIX[..], public_key].concat()),
        Ciphersuite::Secp256k1 => {
            Ok([&SECP256K1_SPKI_PREFIX[..], &uncompressed(public_key)?].concat())
        }
        Ciphersuite::Secp256k1Tr => Err(refused(suite, KeyFormat::Der)),
    }
}

/// The key as a JSON Web Key.
pub fn jwk(
    suite: Ciphersuite,
    public_key: &[u8],
    key_id: &str,
) -> Result<serde_json::Value, FormatError> {
    check_length(suite, public_key)?;
    match suite {
        Ciphersuite::Ed25519 => Ok(serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(public_key),
            "kid": key_id,
            "alg": "EdDSA",
            "use": "sig",
        })),
        Ciphersuite::Secp256k1 => {
            let point = uncompressed(public_key)?;
            Ok(serde_json::json!({
                "kty": "EC",
                "crv": "secp256k1",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
                "kid": key_id,
            }))
        }
        Ciphersuite::Secp256k1Tr => Err(refused(suite, KeyFormat::Jwk)),
    }
}

/// The key as an OpenSSH public key line, commented with its key id.
pub fn openssh(suite: Ciphersuite, public_key: &[u8], key_id: &str) -> Result<String, FormatError> {
    Ok(format!(
        "ssh-ed25519 {} {key_id}",
        STANDARD.encode(ssh_public_key_blob(suite, public_key)?)
    ))
}

/// The SSH wire encoding of the key (RFC 8709): `string "ssh-ed25519"`, `string key`.
pub fn ssh_public_key_blob(suite: Ciphersuite, public_key: &[u8]) -> Result<Vec<u8>, FormatError> {
    check_length(suite, public_key)?;
    if suite != Ciphersuite::Ed25519 {
        return Err(refused(suite, KeyFormat::Openssh));
    }
    let mut blob = Vec::with_capacity(51);
    ssh_string(&mut blob, b"ssh-ed25519");
    ssh_string(&mut blob, public_key);
    Ok(blob)
}

/// Appends an SSH `string` (RFC 4251 section 5): a 32-bit big-endian length, then
/// the bytes.
pub fn ssh_string(out: &mut Vec<u8>, bytes: &[u8]) {
    // SSH strings here are keys, namespaces and digests: far below 4 GiB.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// PEM with the given label, lines of 64 characters (RFC 7468).
pub fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn check_length(suite: Ciphersuite, public_key: &[u8]) -> Result<(), FormatError> {
    let expected = match suite {
        Ciphersuite::Ed25519 | Ciphersuite::Secp256k1Tr => 32,
        Ciphersuite::Secp256k1 => 33,
    };
    if public_key.len() == expected {
        Ok(())
    } else {
        Err(FormatError(format!(
            "a {} public key is {expected} bytes, this one {}",
            suite.name(),
            public_key.len()
        )))
    }
}

fn uncompressed(sec1: &[u8]) -> Result<Vec<u8>, FormatError> {
    let key = k256::PublicKey::from_sec1_bytes(sec1)
        .map_err(|_| FormatError("the secp256k1 public key is not a curve point".into()))?;
    Ok(key.to_encoded_point(false).as_bytes().to_vec())
}

fn refused(suite: Ciphersuite, format: KeyFormat) -> FormatError {
    let why = match (suite, format) {
        (Ciphersuite::Secp256k1Tr, _) => {
            "a BIP340 key is a 32-byte x-only key; no SubjectPublicKeyInfo, JWK or OpenSSH \
             form exists for it (use --format raw or hex, as BIP340 and Taproot outputs do)"
        }
        (_, KeyFormat::Openssh) => "OpenSSH has key types for Ed25519, not for secp256k1",
        _ => "no standard form",
    };
    FormatError(format!(
        "--format {} cannot express a {} key: {why}",
        format.name(),
        suite.name()
    ))
}
