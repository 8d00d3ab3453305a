//! The wire layer of Quorate: the gRPC schema (package `quorate.v1`: the public
//! `Signer` service, the nodes' `Node`, `Ceremony` and `Audit` services), its
//! generated code ([`pb`]), the limits every server enforces, and the boundary
//! validation that turns a protobuf request into a domain type ([`api`]): what fails
//! there is the caller's mistake, `INVALID_ARGUMENT`.
//!
//! Every other Quorate crate that talks gRPC depends on this one. It depends only on
//! the ciphersuite layer ([`quorate_frost`]), for the one enum both share
//! ([`ciphersuite_from_pb`], `pb::Ciphersuite::from`).
#![deny(clippy::unwrap_used)]

pub mod api;
pub mod limits;

pub use limits::{
    validate_custodian_name, validate_key_id, MAX_CUSTODIANS, MAX_CUSTODIAN_NAME_BYTES,
    MAX_KEY_ID_BYTES, MAX_MESSAGE_BYTES, MAX_NODE_REQUEST_BYTES, MAX_SIGNER_REQUEST_BYTES,
};

use quorate_frost::{Ciphersuite, CryptoError};

/// Generated protobuf and gRPC code for package `quorate.v1`.
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod pb {
    tonic::include_proto!("quorate.v1");

    /// Encoded `FileDescriptorSet` of the schema, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("quorate_descriptor");
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

impl From<Ciphersuite> for pb::Ciphersuite {
    fn from(suite: Ciphersuite) -> Self {
        match suite {
            Ciphersuite::Ed25519 => pb::Ciphersuite::Ed25519,
            Ciphersuite::Secp256k1 => pb::Ciphersuite::Secp256k1,
            Ciphersuite::Secp256k1Tr => pb::Ciphersuite::Secp256k1Tr,
        }
    }
}

/// Parses the protobuf `Ciphersuite` enum's integer value; unknown and unspecified
/// values are refused.
pub fn ciphersuite_from_pb(value: i32) -> Result<Ciphersuite, CryptoError> {
    match pb::Ciphersuite::try_from(value) {
        Ok(pb::Ciphersuite::Ed25519) => Ok(Ciphersuite::Ed25519),
        Ok(pb::Ciphersuite::Secp256k1) => Ok(Ciphersuite::Secp256k1),
        Ok(pb::Ciphersuite::Secp256k1Tr) => Ok(Ciphersuite::Secp256k1Tr),
        _ => Err(CryptoError::Malformed(format!(
            "unknown or unspecified ciphersuite {value}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ciphersuite_round_trips_through_the_protobuf_enum_and_unspecified_is_refused() {
        for suite in Ciphersuite::ALL {
            assert_eq!(
                ciphersuite_from_pb(pb::Ciphersuite::from(suite) as i32).unwrap(),
                suite
            );
        }
        assert!(ciphersuite_from_pb(pb::Ciphersuite::Unspecified as i32).is_err());
        assert!(ciphersuite_from_pb(99).is_err());
    }
}
