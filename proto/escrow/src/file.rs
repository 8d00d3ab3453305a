//! The escrow part file a custodian receives (encrypted to its `age` recipient) and
//! checks: JSON with a format tag, the part, and the public values it is checked
//! against. Nothing here prints a part's value.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use quorate_frost::{Ciphersuite, CryptoError, SecretScalar};

use crate::feldman::ShamirPart;
use crate::{ESCROW_FORMAT, MAX_CUSTODIANS};

/// Why an escrow part file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EscrowFileError {
    /// Not JSON of the expected shape. Never quotes the input (it holds a secret).
    #[error("not an escrow part: {0}")]
    Decode(String),
    /// A format this build does not read.
    #[error("unsupported escrow format {0:?} (this build reads {ESCROW_FORMAT})")]
    Format(String),
    /// Well-formed, but inconsistent; the message says how.
    #[error("invalid escrow part: {0}")]
    Invalid(String),
    /// The part does not verify.
    #[error("escrow part of custodian {custodian:?} does not verify: {source}")]
    Verify {
        /// The custodian named in the part.
        custodian: String,
        /// Why.
        source: CryptoError,
    },
}

/// The plaintext of one custodian's escrow file (JSON). Holds one secret field,
/// `value`; zeroized on drop and redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct EscrowPart {
    /// Always [`ESCROW_FORMAT`].
    pub format: String,
    /// The key whose share this escrows.
    pub key_id: String,
    /// The node whose signing share this escrows.
    pub node_id: String,
    /// Ciphersuite name (`ED25519`, `SECP256K1`, `SECP256K1_TR`).
    pub ciphersuite: String,
    /// The custodian this part is for.
    pub custodian: String,
    /// Parts needed to recover the share (`k`).
    pub threshold: u16,
    /// Parts made (`m`).
    pub parts: u16,
    /// The Shamir x-coordinate of this part, `1..=parts`.
    pub identifier: u16,
    /// The part's scalar `f(identifier)`, hex, FROST scalar encoding. Secret.
    pub value: String,
    /// The node's verifying share for the key, hex (FROST encoding); equals
    /// `commitments[0]`.
    pub verifying_share: String,
    /// Feldman commitments to the sharing polynomial's coefficients, hex (FROST
    /// element encoding), constant term first.
    pub commitments: Vec<String>,
    /// The key's group public key, hex (public API encoding).
    pub group_public_key: String,
    /// SHA-256 of the key's manifest when the part was made, hex.
    pub manifest_hash: String,
}

impl fmt::Debug for EscrowPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EscrowPart")
            .field("key_id", &self.key_id)
            .field("node_id", &self.node_id)
            .field("ciphersuite", &self.ciphersuite)
            .field("custodian", &self.custodian)
            .field("threshold", &self.threshold)
            .field("identifier", &self.identifier)
            .field("value", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn unhex(field: &str, text: &str) -> Result<Vec<u8>, EscrowFileError> {
    hex::decode(text).map_err(|_| EscrowFileError::Invalid(format!("{field} is not hex")))
}

impl EscrowPart {
    /// Pretty JSON, in a zeroizing buffer.
    pub fn to_json(&self) -> Zeroizing<String> {
        // A struct of strings and integers always serializes.
        let mut json = Zeroizing::new(serde_json::to_string_pretty(self).unwrap_or_default());
        json.push('\n');
        json
    }

    /// Parses a part and checks its format tag; see [`verify`](Self::verify) for the
    /// cryptographic check. Error messages never quote the input.
    pub fn from_json(text: &str) -> Result<Self, EscrowFileError> {
        #[derive(Deserialize)]
        struct Header {
            format: String,
        }
        let header: Header = serde_json::from_str(text).map_err(|e| {
            EscrowFileError::Decode(format!("line {} column {}", e.line(), e.column()))
        })?;
        if header.format != ESCROW_FORMAT {
            return Err(EscrowFileError::Format(header.format));
        }
        serde_json::from_str(text).map_err(|e| {
            // serde names the field, never the value, for missing/unknown fields.
            let reason = match e.classify() {
                serde_json::error::Category::Data => e.to_string(),
                _ => format!("line {} column {}", e.line(), e.column()),
            };
            EscrowFileError::Decode(reason)
        })
    }

    /// The ciphersuite named in the part.
    pub fn suite(&self) -> Result<Ciphersuite, EscrowFileError> {
        self.ciphersuite
            .parse()
            .map_err(|e: String| EscrowFileError::Invalid(e))
    }

    /// The part's secret as a Shamir part.
    pub fn shamir_part(&self) -> Result<ShamirPart, EscrowFileError> {
        let mut value = unhex("value", &self.value)?;
        let part = ShamirPart {
            identifier: self.identifier,
            value: SecretScalar::from_bytes(value.clone()),
        };
        value.zeroize();
        Ok(part)
    }

    /// The commitments, decoded.
    pub fn commitment_bytes(&self) -> Result<Vec<Vec<u8>>, EscrowFileError> {
        self.commitments
            .iter()
            .map(|c| unhex("commitments", c))
            .collect()
    }

    /// Everything one custodian can check alone: the format and field consistency
    /// (`threshold` commitments, identifier within `1..=parts`, the first commitment
    /// is the verifying share) and that the value lies on the committed polynomial.
    pub fn verify(&self) -> Result<(), EscrowFileError> {
        if self.format != ESCROW_FORMAT {
            return Err(EscrowFileError::Format(self.format.clone()));
        }
        let suite = self.suite()?;
        quorate_wire::validate_key_id(&self.key_id).map_err(EscrowFileError::Invalid)?;
        if self.threshold < 2 || self.parts < self.threshold || self.parts > MAX_CUSTODIANS {
            return Err(EscrowFileError::Invalid(format!(
                "threshold {} of {} parts is not within 2 <= threshold <= parts <= \
                 {MAX_CUSTODIANS}",
                self.threshold, self.parts
            )));
        }
        if self.identifier == 0 || self.identifier > self.parts {
            return Err(EscrowFileError::Invalid(format!(
                "identifier {} is not within 1..={}",
                self.identifier, self.parts
            )));
        }
        if self.commitments.len() != usize::from(self.threshold) {
            return Err(EscrowFileError::Invalid(format!(
                "{} commitments for threshold {}",
                self.commitments.len(),
                self.threshold
            )));
        }
        let commitments = self.commitment_bytes()?;
        if commitments.first() != Some(&unhex("verifying_share", &self.verifying_share)?) {
            return Err(EscrowFileError::Invalid(
                "the first commitment is not the verifying share".into(),
            ));
        }
        let part = self.shamir_part()?;
        crate::verify(suite, &part, &commitments).map_err(|source| EscrowFileError::Verify {
            custodian: self.custodian.clone(),
            source,
        })
    }
}
