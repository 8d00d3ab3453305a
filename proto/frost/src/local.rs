//! Every party of a threshold signature in one process: for tests, benchmarks and
//! the in-process signing limit the bench measures. In the network each key package
//! lives on its own node.

use std::collections::BTreeMap;

use crate::ciphersuite::Ciphersuite;
use crate::error::CryptoError;
use crate::keys::DealtKey;
use crate::packages::{ParsedKeyPackage, ParsedPublicKeyPackage};

/// How signers in one process receive the signing package ([`LocalQuorum::sign`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackageDelivery {
    /// Each signer decodes the other signers' commitments from the bytes it is
    /// sent, as a node does (and as RFC 9591 has every signer validate them).
    PerSigner,
    /// Every signer uses the coordinator's decoded package: no per-signer
    /// validation, so cheaper than any deployment of separate signers.
    Shared,
}

/// Every party of a threshold signature in one process: some signers' key packages
/// and the public key package, decoded once. For tests, benchmarks and the
/// in-process signing limit; in the network each key package lives on its own node.
#[derive(Debug)]
pub struct LocalQuorum {
    suite: Ciphersuite,
    signers: Vec<(Vec<u8>, ParsedKeyPackage)>,
    public_key_package: ParsedPublicKeyPackage,
}

impl LocalQuorum {
    /// The signers at positions `signers` of `dealt.key_packages`.
    pub fn new(
        suite: Ciphersuite,
        dealt: &DealtKey,
        signers: &[usize],
    ) -> Result<Self, CryptoError> {
        let ops = suite.ops();
        let signers = signers
            .iter()
            .map(|&i| {
                let (name, kp) = dealt
                    .key_packages
                    .get(i)
                    .ok_or_else(|| CryptoError::Frost(format!("no participant #{i}")))?;
                Ok((ops.identifier(name)?, ops.parse_key_package(kp)?))
            })
            .collect::<Result<Vec<_>, CryptoError>>()?;
        Ok(Self {
            suite,
            signers,
            public_key_package: ops.parse_public_key_package(&dealt.public_key_package)?,
        })
    }

    /// Both FROST rounds and the aggregation (which verifies the signature); the
    /// signature in the public API encoding.
    pub fn sign(&self, message: &[u8], delivery: PackageDelivery) -> Result<Vec<u8>, CryptoError> {
        let ops = self.suite.ops();
        let mut nonces = Vec::with_capacity(self.signers.len());
        let mut commitments = BTreeMap::new();
        for (id, kp) in &self.signers {
            let (n, c) = ops.commit(kp)?;
            // The coordinator decodes what each signer sends.
            commitments.insert(id.clone(), ops.parse_commitments(&c)?);
            nonces.push(n);
        }
        let package = ops.new_signing_package(&commitments, message)?;
        let encoded: BTreeMap<Vec<u8>, Vec<u8>> = commitments
            .iter()
            .map(|(id, c)| (id.clone(), c.encoded().to_vec()))
            .collect();
        let mut shares = BTreeMap::new();
        for ((id, kp), n) in self.signers.iter().zip(nonces) {
            let share = match delivery {
                PackageDelivery::PerSigner => ops
                    .receive_signing_package(message, &encoded, id)?
                    .sign(n, kp)?,
                PackageDelivery::Shared => package.sign(n, kp)?,
            };
            shares.insert(id.clone(), share);
        }
        package.aggregate(&shares, &self.public_key_package)
    }

    /// The group public key in the public API encoding.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key_package.info().public_key
    }
}
