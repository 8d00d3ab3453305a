//! JSON Web Signatures, compact serialization (RFC 7515), algorithm `EdDSA` with
//! Ed25519 (RFC 8037): what JOSE and JWT libraries verify.
//!
//! The key signs [`signing_input`] (`BASE64URL(header) "." BASE64URL(payload)`);
//! [`compact`] appends the signature. Only Ed25519 keys have a JOSE algorithm here:
//! FROST(secp256k1) makes Schnorr signatures, and `ES256K` is ECDSA.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use quorate_frost::Ciphersuite;

/// Why a JWS cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// The key has no JOSE algorithm.
    #[error("JWS needs an Ed25519 key (alg EdDSA); a {0} key has no JOSE algorithm")]
    Ciphersuite(&'static str),
    /// `typ` JWT with a payload that is not a JSON object of claims.
    #[error("a JWT's payload must be a JSON object of claims: {0}")]
    Claims(String),
    /// The signature is not a 64-byte Ed25519 signature.
    #[error("an Ed25519 signature is 64 bytes, this one {0}")]
    Signature(usize),
}

/// The protected header of a JWS by `key_id`: `alg` EdDSA, `kid` the key id, and
/// `typ` when given.
pub fn header(
    suite: Ciphersuite,
    key_id: &str,
    typ: Option<&str>,
) -> Result<serde_json::Value, JwsError> {
    if suite != Ciphersuite::Ed25519 {
        return Err(JwsError::Ciphersuite(suite.name()));
    }
    let mut header = serde_json::json!({ "alg": "EdDSA", "kid": key_id });
    if let Some(typ) = typ {
        header["typ"] = serde_json::Value::String(typ.to_string());
    }
    Ok(header)
}

/// The bytes the key signs: `BASE64URL(header) "." BASE64URL(payload)`. With `typ`
/// JWT the payload must be a JSON object.
pub fn signing_input(header: &serde_json::Value, payload: &[u8]) -> Result<String, JwsError> {
    if header["typ"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case("JWT"))
    {
        match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(serde_json::Value::Object(_)) => {}
            Ok(_) => return Err(JwsError::Claims("it is JSON, but not an object".into())),
            Err(e) => return Err(JwsError::Claims(e.to_string())),
        }
    }
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload)
    ))
}

/// The compact JWS: the signing input, ".", BASE64URL(signature).
pub fn compact(signing_input: &str, signature: &[u8]) -> Result<String, JwsError> {
    if signature.len() != 64 {
        return Err(JwsError::Signature(signature.len()));
    }
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}
