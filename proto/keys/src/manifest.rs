//! A key's public description ([`pb::KeyManifest`]), parsed and checked at the boundary.
//!
//! Every participant stores the same encoded manifest. Its SHA-256 ([`Manifest::hash`])
//! is how the coordinator tells that nodes agree on a key, and what each node's key
//! attestation signs.
//!
//! A key's manifests are ordered by [`Manifest::generation`]: 0 when a DKG or an import
//! creates the key, one more with every refresh ([`encode_successor`],
//! [`Manifest::check_successor`]). The generation is inside the attested bytes, so
//! whoever has accepted generation `g` can refuse an older manifest however genuinely
//! it was once attested: a replay of a pre-refresh manifest is a rollback.

use prost::Message;

use crate::custodians::KeyEscrow;
use crate::policy::Policy;
use quorate_frost::{Ciphersuite, CryptoError, ParsedPublicKeyPackage, PublicKeyInfo};
use quorate_wire::pb;

/// Manifest format version this build writes and accepts.
pub const MANIFEST_VERSION: u32 = 1;

/// A share holder named in a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestParticipant {
    /// Node id (the name in the node's certificate).
    pub node_id: String,
    /// FROST identifier: `Identifier::derive(node_id)`.
    pub identifier: Vec<u8>,
    /// The participant's verifying share.
    pub verifying_share: Vec<u8>,
    /// Cloud or sovereign region.
    pub region: String,
    /// Legal jurisdiction (e.g. `EU`).
    pub jurisdiction: String,
}

/// A validated key manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Key id.
    pub key_id: String,
    /// Ciphersuite.
    pub ciphersuite: Ciphersuite,
    /// Signers needed (`t`).
    pub threshold: u16,
    /// Share holders, in manifest order.
    pub participants: Vec<ManifestParticipant>,
    /// Public key facts decoded from the public key package.
    pub public_key: PublicKeyInfo,
    /// The frost public key package.
    pub public_key_package: Vec<u8>,
    /// The same, decoded once: the coordinator aggregates with it.
    pub parsed_public_key_package: ParsedPublicKeyPackage,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Who may use the key and which quorums are lawful.
    pub policy: Policy,
    /// Which manifest of the key this is: 0 from a DKG or an import, +1 per refresh.
    pub generation: u64,
    /// The custodians each node's share may be escrowed to, and how many rebuild it;
    /// `None`: the key cannot be escrowed.
    pub escrow: Option<KeyEscrow>,
    /// The manifest exactly as encoded and stored.
    pub encoded: Vec<u8>,
    /// SHA-256 of `encoded`.
    pub hash: [u8; 32],
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Not a protobuf KeyManifest.
    #[error("manifest does not decode: {0}")]
    Decode(String),
    /// Decodes, but is inconsistent; the message says how.
    #[error("invalid manifest: {0}")]
    Invalid(String),
    /// The embedded FROST package is malformed.
    #[error("invalid manifest: {0}")]
    Crypto(#[from] CryptoError),
}

impl Manifest {
    /// Decodes and validates an encoded manifest.
    pub fn decode(encoded: &[u8]) -> Result<Self, ManifestError> {
        let pb =
            pb::KeyManifest::decode(encoded).map_err(|e| ManifestError::Decode(e.to_string()))?;
        let invalid = |m: String| ManifestError::Invalid(m);
        if pb.version != MANIFEST_VERSION {
            return Err(invalid(format!(
                "unsupported manifest version {} (this build reads {MANIFEST_VERSION})",
                pb.version
            )));
        }
        quorate_wire::validate_key_id(&pb.key_id).map_err(invalid)?;
        let ciphersuite = quorate_wire::ciphersuite_from_pb(pb.ciphersuite)?;
        let ops = ciphersuite.ops();
        let parsed_public_key_package = ops.parse_public_key_package(&pb.public_key_package)?;
        let public_key = parsed_public_key_package.info().clone();
        let n = pb.participants.len();
        let threshold = u16::try_from(pb.threshold)
            .ok()
            .filter(|t| *t >= 2 && usize::from(*t) <= n)
            .ok_or_else(|| invalid(format!("threshold {} is not within 2..={n}", pb.threshold)))?;
        if public_key.min_signers.is_some_and(|m| m != threshold) {
            return Err(invalid(
                "threshold differs from the public key package".into(),
            ));
        }
        if public_key.verifying_shares.len() != n {
            return Err(invalid(format!(
                "{n} participants but {} verifying shares",
                public_key.verifying_shares.len()
            )));
        }
        let mut participants = Vec::with_capacity(n);
        for p in &pb.participants {
            if p.node_id.is_empty() {
                return Err(invalid("participant with empty node_id".into()));
            }
            if participants
                .iter()
                .any(|q: &ManifestParticipant| q.node_id == p.node_id)
            {
                return Err(invalid(format!("participant {} listed twice", p.node_id)));
            }
            let identifier = ops.identifier(&p.node_id)?;
            let verifying_share = public_key
                .verifying_shares
                .get(&identifier)
                .ok_or_else(|| invalid(format!("no verifying share for {}", p.node_id)))?
                .clone();
            participants.push(ManifestParticipant {
                node_id: p.node_id.clone(),
                identifier,
                verifying_share,
                region: p.region.clone(),
                jurisdiction: p.jurisdiction.clone(),
            });
        }
        let policy = Policy::from_pb(pb.policy.as_ref(), threshold)
            .map_err(|e| invalid(format!("policy: {e}")))?;
        let escrow = pb
            .escrow
            .as_ref()
            .map(KeyEscrow::from_pb)
            .transpose()
            .map_err(|e| invalid(format!("escrow: {e}")))?;
        Ok(Self {
            policy,
            escrow,
            key_id: pb.key_id,
            ciphersuite,
            threshold,
            participants,
            public_key,
            public_key_package: pb.public_key_package,
            parsed_public_key_package,
            created_at: pb.created_at,
            generation: pb.generation,
            encoded: encoded.to_vec(),
            hash: quorate_wire::sha256(encoded),
        })
    }

    /// The participant with FROST identifier `identifier`.
    pub fn participant_by_identifier(&self, identifier: &[u8]) -> Option<&ManifestParticipant> {
        self.participants
            .iter()
            .find(|p| p.identifier == identifier)
    }

    /// Jurisdictions of the signers named by FROST identifiers; `None` if one of
    /// them is not a participant.
    pub fn jurisdictions_of<'a>(
        &'a self,
        identifiers: impl IntoIterator<Item = &'a Vec<u8>>,
    ) -> Option<Vec<&'a str>> {
        identifiers
            .into_iter()
            .map(|id| {
                self.participant_by_identifier(id)
                    .map(|p| p.jurisdiction.as_str())
            })
            .collect()
    }

    /// The participant named `node_id`.
    pub fn participant(&self, node_id: &str) -> Option<&ManifestParticipant> {
        self.participants.iter().find(|p| p.node_id == node_id)
    }

    /// The participants' node ids, in manifest order.
    pub fn participant_ids(&self) -> Vec<&str> {
        self.participants
            .iter()
            .map(|p| p.node_id.as_str())
            .collect()
    }

    /// Whether `self` may replace `previous` as the key's manifest after a refresh:
    /// the same key, and exactly the next generation. A node installs a refreshed
    /// manifest only if this holds, so a key's generations on a node only go up, one
    /// refresh at a time.
    pub fn check_successor(&self, previous: &Manifest) -> Result<(), ManifestError> {
        if self.key_id != previous.key_id {
            return Err(ManifestError::Invalid(format!(
                "manifest of key {:?} cannot replace one of key {:?}",
                self.key_id, previous.key_id
            )));
        }
        if previous.generation.checked_add(1) != Some(self.generation) {
            return Err(ManifestError::Invalid(format!(
                "manifest generation {} cannot replace generation {} of key {:?}: a refresh makes exactly the next one",
                self.generation, previous.generation, self.key_id
            )));
        }
        Ok(())
    }
}

/// What a new key's manifest (a DKG or an import) holds.
#[derive(Clone, Debug)]
pub struct NewManifest {
    /// Key id.
    pub key_id: String,
    /// Ciphersuite.
    pub ciphersuite: Ciphersuite,
    /// Signers needed (`t`).
    pub threshold: u16,
    /// The frost public key package.
    pub public_key_package: Vec<u8>,
    /// Share holders, in manifest order.
    pub participants: Vec<pb::ManifestParticipant>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// The key's policy; `None` for an unrestricted key.
    pub policy: Option<pb::KeyPolicy>,
    /// The key's escrow custodians; `None` for a key that cannot be escrowed.
    pub escrow: Option<pb::KeyEscrow>,
}

impl NewManifest {
    /// Encodes the manifest: generation 0, which proto3 does not encode, so a key
    /// without escrow has the same bytes as before generations and escrow existed.
    pub fn encode(self) -> Vec<u8> {
        pb::KeyManifest {
            version: MANIFEST_VERSION,
            key_id: self.key_id,
            ciphersuite: quorate_wire::pb::Ciphersuite::from(self.ciphersuite) as i32,
            threshold: u32::from(self.threshold),
            public_key_package: self.public_key_package,
            participants: self.participants,
            created_at: self.created_at,
            policy: self.policy,
            generation: 0,
            escrow: self.escrow,
        }
        .encode_to_vec()
    }
}

/// Encodes a new key's manifest without escrow custodians ([`NewManifest`] with
/// `escrow: None`).
pub fn encode(
    key_id: &str,
    ciphersuite: Ciphersuite,
    threshold: u16,
    public_key_package: Vec<u8>,
    participants: Vec<pb::ManifestParticipant>,
    created_at: String,
    policy: Option<pb::KeyPolicy>,
) -> Vec<u8> {
    NewManifest {
        key_id: key_id.to_string(),
        ciphersuite,
        threshold,
        public_key_package,
        participants,
        created_at,
        policy,
        escrow: None,
    }
    .encode()
}

/// Encodes the manifest a refresh of `previous` produces: `previous` with the new
/// public key package and participants, and the next generation. Everything else
/// (key id, ciphersuite, threshold, creation time, policy, escrow custodians) a
/// refresh keeps.
pub fn encode_successor(
    previous: &Manifest,
    public_key_package: Vec<u8>,
    participants: Vec<pb::ManifestParticipant>,
    changes: TermChanges,
) -> Result<Vec<u8>, ManifestError> {
    let previous_pb = pb::KeyManifest::decode(previous.encoded.as_slice())
        .map_err(|e| ManifestError::Decode(e.to_string()))?;
    let generation = previous.generation.checked_add(1).ok_or_else(|| {
        ManifestError::Invalid(format!(
            "key {:?} is at the last manifest generation",
            previous.key_id
        ))
    })?;
    Ok(pb::KeyManifest {
        public_key_package,
        participants,
        generation,
        policy: changes.policy.or(previous_pb.policy),
        escrow: changes.escrow.or(previous_pb.escrow),
        ..previous_pb
    }
    .encode_to_vec())
}

/// What a refresh changes in a key's terms besides its shares: a new policy, new
/// escrow custodians (each `None`: kept as they are). Governed like the refresh
/// itself: the key's administrators authorize the setup that carries them.
#[derive(Clone, Debug, Default)]
pub struct TermChanges {
    /// The successor's policy.
    pub policy: Option<pb::KeyPolicy>,
    /// The successor's escrow custodians and threshold.
    pub escrow: Option<pb::KeyEscrow>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(threshold: u16) -> Vec<u8> {
        let names: Vec<String> = (1..=3).map(|i| format!("node-{i}")).collect();
        let dealt = Ciphersuite::Ed25519.ops().split(None, &names, 2).unwrap();
        encode(
            "k1",
            Ciphersuite::Ed25519,
            threshold,
            dealt.public_key_package,
            names
                .iter()
                .map(|n| pb::ManifestParticipant {
                    node_id: n.clone(),
                    region: "r".into(),
                    jurisdiction: "EU".into(),
                })
                .collect(),
            "2026-01-01T00:00:00Z".into(),
            None,
        )
    }

    #[test]
    fn valid_manifest_decodes_with_identifiers_matching_shares() {
        let m = Manifest::decode(&sample(2)).unwrap();
        assert_eq!(m.participants.len(), 3);
        assert_eq!(m.hash, quorate_wire::sha256(&m.encoded));
    }

    #[test]
    fn threshold_disagreeing_with_package_is_refused() {
        assert!(matches!(
            Manifest::decode(&sample(3)),
            Err(ManifestError::Invalid(_))
        ));
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut pb = pb::KeyManifest::decode(sample(2).as_slice()).unwrap();
        pb.version = 2;
        let err = Manifest::decode(&pb.encode_to_vec()).unwrap_err();
        assert!(err.to_string().contains("version"), "{err}");
    }

    fn participants(names: &[String]) -> Vec<pb::ManifestParticipant> {
        names
            .iter()
            .map(|n| pb::ManifestParticipant {
                node_id: n.clone(),
                region: "r".into(),
                jurisdiction: "EU".into(),
            })
            .collect()
    }

    #[test]
    fn new_key_is_generation_zero_and_encodes_as_before_generations_existed() {
        let encoded = sample(2);
        let m = Manifest::decode(&encoded).unwrap();
        assert_eq!(m.generation, 0);
        // Field 9 (generation) is absent from the bytes: proto3 omits a zero, so
        // manifests and attested hashes made before the field are unchanged.
        let mut pb = pb::KeyManifest::decode(encoded.as_slice()).unwrap();
        pb.generation = 0;
        assert_eq!(pb.encode_to_vec(), encoded);
        pb.generation = 1;
        assert_ne!(quorate_wire::sha256(&pb.encode_to_vec()), m.hash);
    }

    #[test]
    fn successor_is_the_next_generation_and_keeps_what_a_refresh_keeps() {
        let m0 = Manifest::decode(&sample(2)).unwrap();
        let names: Vec<String> = (1..=3).map(|i| format!("node-{i}")).collect();
        let refreshed = Ciphersuite::Ed25519.ops().split(None, &names, 2).unwrap();
        let m1 = Manifest::decode(
            &encode_successor(
                &m0,
                refreshed.public_key_package.clone(),
                participants(&names),
                TermChanges::default(),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(m1.generation, 1);
        assert_eq!(
            (m1.key_id.as_str(), m1.threshold, m1.created_at.as_str()),
            (m0.key_id.as_str(), m0.threshold, m0.created_at.as_str())
        );
        assert_eq!(m1.public_key_package, refreshed.public_key_package);
        m1.check_successor(&m0).unwrap();
        let m2 = Manifest::decode(
            &encode_successor(
                &m1,
                refreshed.public_key_package,
                participants(&names),
                TermChanges::default(),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(m2.generation, 2);
        m2.check_successor(&m1).unwrap();
    }

    #[test]
    fn successor_rule_refuses_a_rollback_a_replay_and_a_skipped_generation() {
        let with_generation = |g: u64| {
            let mut pb = pb::KeyManifest::decode(sample(2).as_slice()).unwrap();
            pb.generation = g;
            Manifest::decode(&pb.encode_to_vec()).unwrap()
        };
        let (g0, g1, g2, g3) = (
            with_generation(0),
            with_generation(1),
            with_generation(2),
            with_generation(3),
        );
        g2.check_successor(&g1).unwrap();
        for (new, old) in [(&g0, &g1), (&g1, &g1), (&g3, &g1)] {
            let err = new.check_successor(old).unwrap_err();
            assert!(err.to_string().contains("generation"), "{err}");
        }
        let mut last = pb::KeyManifest::decode(sample(2).as_slice()).unwrap();
        last.generation = u64::MAX;
        let last = Manifest::decode(&last.encode_to_vec()).unwrap();
        assert!(encode_successor(
            &last,
            last.public_key_package.clone(),
            Vec::new(),
            TermChanges::default()
        )
        .is_err());
    }

    #[test]
    fn successor_of_another_key_is_refused() {
        let m0 = Manifest::decode(&sample(2)).unwrap();
        let mut other = pb::KeyManifest::decode(sample(2).as_slice()).unwrap();
        other.key_id = "k2".into();
        other.generation = 1;
        let other = Manifest::decode(&other.encode_to_vec()).unwrap();
        assert!(other.check_successor(&m0).is_err());
    }

    /// Three custodians, the first with `recipient`, the others with fresh keys.
    fn escrow(threshold: u32, recipient: &str) -> pb::KeyEscrow {
        let fresh = || age::x25519::Identity::generate().to_public().to_string();
        pb::KeyEscrow {
            threshold,
            custodians: [
                ("bank-a", recipient.to_string()),
                ("law-firm-b", fresh()),
                ("notary-d", fresh()),
            ]
            .into_iter()
            .map(|(n, r)| pb::EscrowCustodian {
                name: n.into(),
                age_recipient: r,
            })
            .collect(),
        }
    }

    #[test]
    fn escrow_custodians_are_part_of_the_hashed_manifest_and_a_refresh_keeps_them_unless_it_changes_them(
    ) {
        let recipient = age::x25519::Identity::generate().to_public().to_string();
        let without = Manifest::decode(&sample(2)).unwrap();
        assert!(without.escrow.is_none());
        let mut pb = pb::KeyManifest::decode(sample(2).as_slice()).unwrap();
        pb.escrow = Some(escrow(2, &recipient));
        let with = Manifest::decode(&pb.encode_to_vec()).unwrap();
        let e = with.escrow.clone().unwrap();
        assert_eq!((e.threshold, e.custodians.len()), (2, 3));
        assert_eq!(e.custodians[0].recipient, recipient);
        assert_ne!(with.hash, without.hash);
        let names: Vec<String> = (1..=3).map(|i| format!("node-{i}")).collect();
        let refreshed = Ciphersuite::Ed25519.ops().split(None, &names, 2).unwrap();
        let next = Manifest::decode(
            &encode_successor(
                &with,
                refreshed.public_key_package.clone(),
                participants(&names),
                TermChanges::default(),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(next.escrow, with.escrow);
        // A refresh that brings custodians (authorized by the key's administrators)
        // gives the successor those, and keeps the policy it does not change.
        let other = age::x25519::Identity::generate().to_public().to_string();
        let changed = Manifest::decode(
            &encode_successor(
                &next,
                refreshed.public_key_package,
                participants(&names),
                TermChanges {
                    policy: None,
                    escrow: Some(escrow(2, &other)),
                },
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(changed.escrow.unwrap().custodians[0].recipient, other);
        assert_eq!(changed.policy, next.policy);
    }

    #[test]
    fn manifest_with_an_invalid_escrow_is_refused() {
        let recipient = age::x25519::Identity::generate().to_public().to_string();
        for bad in [escrow(4, &recipient), escrow(2, "age1notarecipient")] {
            let mut pb = pb::KeyManifest::decode(sample(2).as_slice()).unwrap();
            pb.escrow = Some(bad);
            let err = Manifest::decode(&pb.encode_to_vec()).unwrap_err();
            assert!(err.to_string().contains("escrow"), "{err}");
        }
    }

    #[test]
    fn garbage_is_refused_without_panic() {
        assert!(Manifest::decode(b"\xff\xff\xff").is_err());
        assert!(Manifest::decode(b"").is_err());
    }
}
