//! Key attestations: a node's signed statement that it holds its share of the key
//! whose manifest has a given SHA-256, and the check of who attests a manifest.
//!
//! A node signs a [`pb::KeyAttestation`] (kind [`KEY_ATTESTATION`]) with its mTLS
//! key for every key it holds. Whoever must decide whether a manifest is the key's
//! true one (the coordinator before it serves a key, a client before it trusts a
//! public key) counts the *distinct participants* of that manifest whose statement
//! over it verifies ([`attesting_participants`]). A statement counts only if its
//! certificate chains to the CA for client authentication, its SPIFFE id is
//! `node/<id>` for the participant the statement names, and the statement names
//! this key id and this manifest's hash: one node, however often it repeats
//! itself, is one participant, and a node cannot vouch for a manifest it is not
//! a participant of, nor for another node.
//!
//! A share staged by a refresh, not yet committed, is attested with another kind
//! ([`STAGED_KEY_ATTESTATION`], [`sign_staged`], [`Holding::Staged`]): coordinators
//! count it to sign with that share, but it is never a "key-attestation", so no
//! client can be shown a staged manifest as the key's, and a refresh rolled back
//! leaves no client pinned to a generation that never took effect.
//!
//! The rule built on it: a manifest is trusted only when at least its threshold
//! of participants attest it. A manifest's threshold is at least 2
//! (`quorate_keys::manifest`), so no single node certificate can make any
//! manifest trusted, whatever it lists.

use std::collections::BTreeSet;

use prost::Message;

use crate::attest::{AttestError, ChainCache, StatementSigner, StatementVerifier};
use crate::identity::Role;
use quorate_wire::pb;

/// Statement kind of a [`pb::KeyAttestation`] of a share the node holds as the
/// key's current one.
pub const KEY_ATTESTATION: &str = "key-attestation";

/// Statement kind of a [`pb::KeyAttestation`] of a share a refresh staged on the
/// node and it has not committed yet.
pub const STAGED_KEY_ATTESTATION: &str = "staged-key-attestation";

/// How the attesting node holds the share: which statement kind says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Holding {
    /// As the key's current share ([`KEY_ATTESTATION`]).
    Current,
    /// Staged by a refresh, not yet committed ([`STAGED_KEY_ATTESTATION`]).
    Staged,
}

impl Holding {
    fn kind(self) -> &'static str {
        match self {
            Holding::Current => KEY_ATTESTATION,
            Holding::Staged => STAGED_KEY_ATTESTATION,
        }
    }
}

/// Why a key attestation does not count for a manifest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyAttestationError {
    /// The statement's body is not a `KeyAttestation`.
    #[error("attestation does not decode: {0}")]
    Decode(String),
    /// The statement is about another key or another version of it.
    #[error("attestation of {node} is for key {key_id:?} with manifest {manifest_hash}, not this manifest")]
    OtherManifest {
        /// The node the statement names.
        node: String,
        /// Key id the statement names.
        key_id: String,
        /// Manifest hash the statement names, hex.
        manifest_hash: String,
    },
    /// The statement names a node that is not a participant of the manifest.
    #[error("attestation names {0}, which is not a participant of this manifest")]
    NotAParticipant(String),
    /// The statement names another node than the one expected.
    #[error("attestation names {found}, but was reported by {expected}")]
    OtherNode {
        /// The node expected to have signed.
        expected: String,
        /// The node the statement names.
        found: String,
    },
    /// The signature, certificate or signer does not check out.
    #[error("attestation of {node} does not verify: {source}")]
    Signature {
        /// The node the statement names.
        node: String,
        /// Why.
        #[source]
        source: AttestError,
    },
}

/// Signs `node_id`'s attestation of the key `key_id` whose manifest hashes to
/// `manifest_hash`.
pub fn sign(
    signer: &StatementSigner,
    node_id: &str,
    key_id: &str,
    manifest_hash: &[u8],
) -> Result<pb::Signed, AttestError> {
    sign_as(Holding::Current, signer, node_id, key_id, manifest_hash)
}

/// Signs `node_id`'s statement that a refresh staged its share of the manifest
/// hashing to `manifest_hash` on it ([`STAGED_KEY_ATTESTATION`]).
pub fn sign_staged(
    signer: &StatementSigner,
    node_id: &str,
    key_id: &str,
    manifest_hash: &[u8],
) -> Result<pb::Signed, AttestError> {
    sign_as(Holding::Staged, signer, node_id, key_id, manifest_hash)
}

fn sign_as(
    holding: Holding,
    signer: &StatementSigner,
    node_id: &str,
    key_id: &str,
    manifest_hash: &[u8],
) -> Result<pb::Signed, AttestError> {
    let body = pb::KeyAttestation {
        node_id: node_id.to_string(),
        key_id: key_id.to_string(),
        manifest_hash: manifest_hash.to_vec(),
    }
    .encode_to_vec();
    signer.sign(holding.kind(), body)
}

/// The manifest an attestation must be about: what a verifier needs of it.
#[derive(Clone, Copy, Debug)]
pub struct AttestedManifest<'a> {
    /// The key id.
    pub key_id: &'a str,
    /// SHA-256 of the encoded manifest.
    pub manifest_hash: &'a [u8],
    /// Node ids of its participants.
    pub participants: &'a [&'a str],
}

/// Checks one statement (of a current share) against `manifest` and returns the
/// participant it attests for (the node named in it, which the certificate proves
/// signed it).
pub fn verify(
    verifier: &StatementVerifier,
    chains: &ChainCache,
    manifest: AttestedManifest<'_>,
    signed: &pb::Signed,
) -> Result<String, KeyAttestationError> {
    verify_holding(Holding::Current, verifier, chains, manifest, signed)
}

/// [`verify`] for a statement of the kind `holding` names.
pub fn verify_holding(
    holding: Holding,
    verifier: &StatementVerifier,
    chains: &ChainCache,
    manifest: AttestedManifest<'_>,
    signed: &pb::Signed,
) -> Result<String, KeyAttestationError> {
    let body = pb::KeyAttestation::decode(signed.body.as_slice())
        .map_err(|e| KeyAttestationError::Decode(e.to_string()))?;
    if body.key_id != manifest.key_id || body.manifest_hash != manifest.manifest_hash {
        return Err(KeyAttestationError::OtherManifest {
            node: body.node_id,
            key_id: body.key_id,
            manifest_hash: hex_short(&body.manifest_hash),
        });
    }
    if !manifest.participants.contains(&body.node_id.as_str()) {
        return Err(KeyAttestationError::NotAParticipant(body.node_id));
    }
    let signature = |source| KeyAttestationError::Signature {
        node: body.node_id.clone(),
        source,
    };
    let signer = verifier
        .identify(
            signed,
            holding.kind(),
            Role::Node,
            chains,
            rustls::pki_types::UnixTime::now(),
        )
        .map_err(signature)?;
    // The statement names the node it speaks for; only that node's certificate
    // may sign it.
    if signer.name != body.node_id {
        return Err(signature(AttestError::WrongSigner {
            expected: format!("spiffe://{}/node/{}", signer.trust_domain, body.node_id),
            found: signer.spiffe_id(),
        }));
    }
    Ok(body.node_id)
}

/// Who attests a manifest: the distinct participants whose statements verify, and
/// why each other statement does not count.
#[derive(Debug, Default)]
pub struct Attesters {
    /// Participants with a verified statement over the manifest.
    pub nodes: BTreeSet<String>,
    /// Statements that do not count, with the reason.
    pub rejected: Vec<KeyAttestationError>,
}

impl Attesters {
    /// Whether at least `threshold` distinct participants attest the manifest (and
    /// never fewer than two: one certificate never suffices).
    pub fn reach(&self, threshold: u16) -> bool {
        self.nodes.len() >= usize::from(threshold).max(2)
    }
}

/// The distinct participants of `manifest` among the signers of `statements`.
pub fn attesting_participants<'a>(
    verifier: &StatementVerifier,
    chains: &ChainCache,
    manifest: AttestedManifest<'_>,
    statements: impl IntoIterator<Item = &'a pb::Signed>,
) -> Attesters {
    let mut out = Attesters::default();
    for signed in statements {
        match verify(verifier, chains, manifest, signed) {
            Ok(node) => {
                out.nodes.insert(node);
            }
            Err(e) => out.rejected.push(e),
        }
    }
    out
}

fn hex_short(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 8 {
        format!("{hex}…")
    } else {
        hex
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, SanType};

    use super::*;
    use crate::test_ca::{new_ca, Ca};

    const DOMAIN: &str = "quorate.test";
    const HASH: [u8; 32] = [7; 32];
    const PARTICIPANTS: &[&str] = &["node-1", "node-2", "node-3"];

    fn signer(ca: &Ca, node: &str) -> StatementSigner {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, node);
        params.subject_alt_names = vec![SanType::URI(
            format!("spiffe://{DOMAIN}/node/{node}").try_into().unwrap(),
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        StatementSigner::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap()
    }

    fn manifest() -> AttestedManifest<'static> {
        AttestedManifest {
            key_id: "k1",
            manifest_hash: &HASH,
            participants: PARTICIPANTS,
        }
    }

    fn count(ca: &Ca, statements: &[pb::Signed]) -> Attesters {
        let verifier = StatementVerifier::from_pem(ca.pem.as_bytes(), DOMAIN).unwrap();
        attesting_participants(&verifier, &ChainCache::default(), manifest(), statements)
    }

    #[test]
    fn one_node_repeating_its_attestation_counts_once() {
        let ca = new_ca("CA");
        let node1 = signer(&ca, "node-1");
        let statements: Vec<_> = (0..5)
            .map(|_| sign(&node1, "node-1", "k1", &HASH).unwrap())
            .collect();
        let attesters = count(&ca, &statements);
        assert_eq!(attesters.nodes.len(), 1);
        assert!(!attesters.reach(2));
    }

    #[test]
    fn distinct_participants_reach_the_threshold() {
        let ca = new_ca("CA");
        let statements: Vec<_> = ["node-1", "node-3"]
            .iter()
            .map(|n| sign(&signer(&ca, n), n, "k1", &HASH).unwrap())
            .collect();
        let attesters = count(&ca, &statements);
        assert!(attesters.reach(2), "{:?}", attesters.rejected);
        assert!(!attesters.reach(3));
    }

    #[test]
    fn node_cannot_attest_for_another_participant() {
        let ca = new_ca("CA");
        // node-1's certificate, a statement naming node-2.
        let forged = sign(&signer(&ca, "node-1"), "node-2", "k1", &HASH).unwrap();
        let attesters = count(&ca, &[forged]);
        assert!(attesters.nodes.is_empty());
        assert!(
            matches!(
                attesters.rejected[0],
                KeyAttestationError::Signature {
                    source: AttestError::WrongSigner { .. },
                    ..
                }
            ),
            "{:?}",
            attesters.rejected
        );
    }

    #[test]
    fn attestation_of_another_manifest_or_by_an_outsider_does_not_count() {
        let ca = new_ca("CA");
        let other_hash = sign(&signer(&ca, "node-1"), "node-1", "k1", &[8; 32]).unwrap();
        let other_key = sign(&signer(&ca, "node-2"), "node-2", "k2", &HASH).unwrap();
        let outsider = sign(&signer(&ca, "node-9"), "node-9", "k1", &HASH).unwrap();
        let foreign_ca = sign(
            &signer(&new_ca("other CA"), "node-3"),
            "node-3",
            "k1",
            &HASH,
        )
        .unwrap();
        let attesters = count(&ca, &[other_hash, other_key, outsider, foreign_ca]);
        assert!(attesters.nodes.is_empty());
        let reasons: Vec<_> = attesters.rejected.iter().map(|e| e.to_string()).collect();
        assert!(
            matches!(
                attesters.rejected[0],
                KeyAttestationError::OtherManifest { .. }
            ),
            "{reasons:?}"
        );
        assert!(
            matches!(
                attesters.rejected[1],
                KeyAttestationError::OtherManifest { .. }
            ),
            "{reasons:?}"
        );
        assert!(
            matches!(
                attesters.rejected[2],
                KeyAttestationError::NotAParticipant(_)
            ),
            "{reasons:?}"
        );
        assert!(
            matches!(
                attesters.rejected[3],
                KeyAttestationError::Signature {
                    source: AttestError::Certificate(_),
                    ..
                }
            ),
            "{reasons:?}"
        );
    }

    #[test]
    fn a_staged_statement_is_no_key_attestation_and_the_other_way_round() {
        let ca = new_ca("CA");
        let verifier = StatementVerifier::from_pem(ca.pem.as_bytes(), DOMAIN).unwrap();
        let chains = ChainCache::default();
        let node1 = signer(&ca, "node-1");
        let staged = sign_staged(&node1, "node-1", "k1", &HASH).unwrap();
        let current = sign(&node1, "node-1", "k1", &HASH).unwrap();
        assert_eq!(
            verify_holding(Holding::Staged, &verifier, &chains, manifest(), &staged).unwrap(),
            "node-1"
        );
        assert_eq!(
            verify(&verifier, &chains, manifest(), &current).unwrap(),
            "node-1"
        );
        for (holding, signed) in [(Holding::Current, &staged), (Holding::Staged, &current)] {
            assert!(
                matches!(
                    verify_holding(holding, &verifier, &chains, manifest(), signed),
                    Err(KeyAttestationError::Signature { .. })
                ),
                "{holding:?}"
            );
        }
    }

    #[test]
    fn garbage_body_is_refused_without_panic() {
        let ca = new_ca("CA");
        let mut signed = sign(&signer(&ca, "node-1"), "node-1", "k1", &HASH).unwrap();
        signed.body = vec![0xff, 0xff, 0xff];
        let attesters = count(&ca, &[signed]);
        assert!(matches!(
            attesters.rejected[0],
            KeyAttestationError::Decode(_)
        ));
    }
}
