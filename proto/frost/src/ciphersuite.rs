//! Which FROST ciphersuite: the enum every layer names, with its names in the
//! protobuf enum, `testnet.json` and command lines.

use std::fmt;

/// A FROST ciphersuite Quorate signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ciphersuite {
    /// FROST(Ed25519, SHA-512); RFC 8032 signatures.
    Ed25519,
    /// FROST(secp256k1, SHA-256); RFC 9591 signatures.
    Secp256k1,
    /// FROST(secp256k1, SHA-256) producing BIP340 (Taproot) signatures.
    Secp256k1Tr,
}

impl Ciphersuite {
    /// Every supported ciphersuite.
    pub const ALL: [Ciphersuite; 3] = [Self::Ed25519, Self::Secp256k1, Self::Secp256k1Tr];

    /// Name as in the protobuf enum and in `testnet.json` (`ED25519`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Ed25519 => "ED25519",
            Self::Secp256k1 => "SECP256K1",
            Self::Secp256k1Tr => "SECP256K1_TR",
        }
    }
}

impl fmt::Display for Ciphersuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Ciphersuite {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().replace('-', "_").as_str() {
            "ED25519" => Ok(Self::Ed25519),
            "SECP256K1" => Ok(Self::Secp256k1),
            "SECP256K1_TR" | "TAPROOT" | "BIP340" => Ok(Self::Secp256k1Tr),
            _ => Err(format!(
                "unknown ciphersuite {s:?}; expected ED25519, SECP256K1 or SECP256K1_TR"
            )),
        }
    }
}
