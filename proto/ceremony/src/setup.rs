//! What nodes exchange in key ceremonies (DKG, refresh, repair), checked at the
//! boundary, and the checks that node and ceremony tool both run.
//!
//! A ceremony is described by a [`Setup`]; every node signs its hash in its
//! [`pb::Contribution`] (envelope key and round-1 package) and its
//! [`pb::Confirmation`] (round-1 transcript hash, group key, manifest hash), so a
//! relay that shows nodes different setups, drops, swaps or alters a contribution,
//! or forges a confirmation, is caught and the failing party is named.
//!
//! The manifest of the resulting key is a function of the setup (and, for a refresh,
//! of the key's previous manifest) and the public key package ([`build_manifest`]),
//! so every node computes the same bytes itself and refuses any other.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;

use quorate_frost::{Ciphersuite, DkgMode};
use quorate_keys::custodians::KeyEscrow;
use quorate_keys::manifest::{self, Manifest, NewManifest};
use quorate_keys::policy::Policy;
use quorate_transport::attest::{StatementVerifier, VerifiedCertificates};
use quorate_transport::identity::Location;
use quorate_wire::pb;

/// Setup format version this build writes and accepts.
pub const SETUP_VERSION: u32 = 1;
/// Statement kind of a [`pb::Contribution`].
pub const CONTRIBUTION: &str = "ceremony-contribution";
/// Statement kind of a [`pb::Confirmation`].
pub const CONFIRMATION: &str = "ceremony-confirmation";
/// Statement kind of a [`pb::Receipt`].
pub const RECEIPT: &str = "ceremony-receipt";
/// Statement kind of a [`pb::Abandonment`].
pub const ABANDONMENT: &str = "ceremony-abandonment";

/// Why a ceremony message was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CeremonyCheckError {
    /// The setup itself is unusable.
    #[error("invalid ceremony setup: {0}")]
    Setup(String),
    /// A named party's message failed a check.
    #[error("{party}: {reason}")]
    Party {
        /// Node id of the party at fault (or whose message was tampered with).
        party: String,
        /// What failed.
        reason: String,
    },
}

fn party(party: &str, reason: impl Into<String>) -> CeremonyCheckError {
    CeremonyCheckError::Party {
        party: party.to_string(),
        reason: reason.into(),
    }
}

/// Which ceremony.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A new key by DKG.
    Dkg,
    /// New shares of an existing key.
    Refresh,
    /// Rebuilding one node's share.
    Repair,
    /// Splitting nodes' shares among the key's escrow custodians (no rounds
    /// between nodes; a setup so that administrators can authorize it).
    EscrowSplit,
    /// Installing one node's share, rebuilt from its custodians' escrow parts, on
    /// that node (no rounds either; a setup so that administrators can authorize
    /// it).
    EscrowRecover,
}

impl Kind {
    /// The operation's name in authorizations and messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dkg => "dkg",
            Kind::Refresh => "refresh",
            Kind::Repair => "repair",
            Kind::EscrowSplit => "escrow-split",
            Kind::EscrowRecover => "escrow-recover",
        }
    }

    /// The DKG variant to run (repair runs none).
    pub fn dkg_mode(self) -> DkgMode {
        match self {
            Kind::Refresh => DkgMode::Refresh,
            Kind::Dkg | Kind::Repair | Kind::EscrowSplit | Kind::EscrowRecover => DkgMode::Generate,
        }
    }
}

/// A validated ceremony setup.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The setup as received.
    pub pb: pb::CeremonySetup,
    /// Which ceremony.
    pub kind: Kind,
    /// Ciphersuite.
    pub ciphersuite: Ciphersuite,
    /// Threshold.
    pub threshold: u16,
    /// SHA-256 of the encoded setup.
    pub hash: [u8; 32],
}

/// Checks a ceremony id: 1..=128 bytes of `[A-Za-z0-9._-]`.
pub fn validate_ceremony_id(id: &str) -> Result<(), String> {
    quorate_wire::validate_key_id(id).map_err(|e| e.replace("key_id", "ceremony_id"))
}

impl Setup {
    /// Validates a setup.
    pub fn from_pb(pb: pb::CeremonySetup) -> Result<Self, CeremonyCheckError> {
        let bad = |m: String| CeremonyCheckError::Setup(m);
        if pb.version != SETUP_VERSION {
            return Err(bad(format!(
                "unsupported setup version {} (this build reads {SETUP_VERSION})",
                pb.version
            )));
        }
        validate_ceremony_id(&pb.ceremony_id).map_err(bad)?;
        quorate_wire::validate_key_id(&pb.key_id).map_err(bad)?;
        let kind = match pb::CeremonyKind::try_from(pb.kind) {
            Ok(pb::CeremonyKind::Dkg) => Kind::Dkg,
            Ok(pb::CeremonyKind::Refresh) => Kind::Refresh,
            Ok(pb::CeremonyKind::Repair) => Kind::Repair,
            Ok(pb::CeremonyKind::EscrowSplit) => Kind::EscrowSplit,
            Ok(pb::CeremonyKind::EscrowRecover) => Kind::EscrowRecover,
            _ => return Err(bad(format!("unknown ceremony kind {}", pb.kind))),
        };
        let ciphersuite =
            quorate_wire::ciphersuite_from_pb(pb.ciphersuite).map_err(|e| bad(e.to_string()))?;
        let n = pb.participants.len();
        // An escrow split or recovery names some or none of the key's nodes, so its
        // threshold (the key's) is not bounded by them.
        let escrow = matches!(kind, Kind::EscrowSplit | Kind::EscrowRecover);
        let threshold = u16::try_from(pb.threshold)
            .ok()
            .filter(|t| *t >= 2 && n <= usize::from(u16::MAX) && (usize::from(*t) <= n || escrow))
            .ok_or_else(|| bad(format!("threshold {} is not within 2..={n}", pb.threshold)))?;
        if kind == Kind::EscrowSplit && n == 0 {
            return Err(bad(
                "an escrow split names the nodes whose shares it splits".into(),
            ));
        }
        if kind == Kind::EscrowRecover && n != 0 {
            return Err(bad(
                "an escrow recovery names only its repair_target, no participants".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        for p in &pb.participants {
            quorate_transport::identity::PeerIdentity::new(
                "check",
                quorate_transport::identity::Role::Node,
                &p.node_id,
            )
            .map_err(|e| bad(format!("participant id: {e}")))?;
            if !seen.insert(p.node_id.as_str()) {
                return Err(bad(format!("participant {} listed twice", p.node_id)));
            }
            // Shown to administrators and custodians: no control characters.
            Location::new(&p.region, &p.jurisdiction)
                .map_err(|e| bad(format!("participant {}: {e}", p.node_id)))?;
        }
        if kind != Kind::Dkg && pb.manifest_hash.len() != 32 {
            return Err(bad("manifest_hash must be a SHA-256".into()));
        }
        if matches!(kind, Kind::Repair | Kind::EscrowRecover) {
            if pb.repair_target.is_empty() || seen.contains(pb.repair_target.as_str()) {
                return Err(bad(
                    "repair_target must be set and must not be a helper".into()
                ));
            }
            quorate_transport::identity::PeerIdentity::new(
                "check",
                quorate_transport::identity::Role::Node,
                &pb.repair_target,
            )
            .map_err(|e| bad(format!("repair_target: {e}")))?;
        } else if !pb.repair_target.is_empty() {
            return Err(bad(
                "repair_target is only for repairs and escrow recoveries".into(),
            ));
        }
        // A key's custodians and policy are set when it is created and changed only
        // by a refresh, which the key's administrators authorize.
        match kind {
            Kind::Dkg | Kind::Refresh => {
                if let Some(escrow) = &pb.escrow {
                    KeyEscrow::from_pb(escrow).map_err(|e| bad(format!("escrow: {e}")))?;
                }
                if kind == Kind::Dkg || pb.policy.is_some() {
                    let policy = Policy::from_pb(pb.policy.as_ref(), threshold)
                        .map_err(|e| bad(format!("policy: {e}")))?;
                    policy
                        .check_new_key()
                        .map_err(|e| bad(format!("policy: {e}")))?;
                }
            }
            Kind::Repair | Kind::EscrowSplit | Kind::EscrowRecover => {
                if pb.escrow.is_some() || pb.policy.is_some() {
                    return Err(bad(format!(
                        "a {} changes neither the key's policy nor its escrow custodians; a refresh does",
                        kind.name()
                    )));
                }
            }
        }
        if kind != Kind::Dkg && !pb.created_at.is_empty() {
            return Err(bad("created_at is only for a DKG".into()));
        }
        let hash = quorate_wire::sha256(&pb.encode_to_vec());
        Ok(Self {
            pb,
            kind,
            ciphersuite,
            threshold,
            hash,
        })
    }

    /// The ceremony id.
    pub fn ceremony_id(&self) -> &str {
        &self.pb.ceremony_id
    }

    /// Participant (or helper) node ids, in setup order.
    pub fn participant_ids(&self) -> Vec<String> {
        self.pb
            .participants
            .iter()
            .map(|p| p.node_id.clone())
            .collect()
    }

    /// Whether `node_id` takes part (as a participant, helper or repair target).
    pub fn involves(&self, node_id: &str) -> bool {
        self.pb.repair_target == node_id
            || self.pb.participants.iter().any(|p| p.node_id == node_id)
    }
}

/// A contribution whose signature and setup hash were checked.
#[derive(Clone, Debug)]
pub struct VerifiedContribution {
    /// Node id (from the signer's certificate).
    pub node_id: String,
    /// X25519 envelope key.
    pub envelope_key: Vec<u8>,
    /// frost round-1 package (empty in a repair).
    pub round1_package: Vec<u8>,
}

/// Checks one signed contribution per node of `expected`, returning them in that
/// order. Fails naming the first party whose contribution is missing, duplicated,
/// not signed by it, or made for another ceremony setup. `certificates` are the
/// ceremony's already verified certificates (see [`VerifiedCertificates`]).
pub fn verify_contributions(
    verifier: &StatementVerifier,
    certificates: &mut VerifiedCertificates,
    setup: &Setup,
    expected: &[String],
    signed: &[pb::Signed],
) -> Result<Vec<VerifiedContribution>, CeremonyCheckError> {
    let mut found: BTreeMap<String, VerifiedContribution> = BTreeMap::new();
    for s in signed {
        let body = pb::Contribution::decode(s.body.as_slice())
            .map_err(|e| CeremonyCheckError::Setup(format!("contribution does not decode: {e}")))?;
        let node = body.node_id.clone();
        if !expected.contains(&node) {
            return Err(party(
                &node,
                "sent a contribution but is not part of this ceremony",
            ));
        }
        verifier
            .verify_cached(s, CONTRIBUTION, &node, certificates)
            .map_err(|e| party(&node, format!("contribution rejected: {e}")))?;
        if let Some(p) = setup.pb.participants.iter().find(|p| p.node_id == node) {
            check_attested_location(&node, &s.certificate, &p.region, &p.jurisdiction)?;
        }
        if body.setup_hash != setup.hash {
            return Err(party(
                &node,
                "contribution was made for another ceremony setup (the relay showed nodes different setups, or mixed in a message of another ceremony)",
            ));
        }
        if body.envelope_key.len() != 32 {
            return Err(party(&node, "envelope key is not 32 bytes"));
        }
        if found.contains_key(&node) {
            return Err(party(&node, "two contributions for one node"));
        }
        found.insert(
            node.clone(),
            VerifiedContribution {
                node_id: node,
                envelope_key: body.envelope_key,
                round1_package: body.round1_package,
            },
        );
    }
    expected
        .iter()
        .map(|id| {
            found
                .remove(id)
                .ok_or_else(|| party(id, "no contribution from this node was delivered"))
        })
        .collect()
}

/// Checks that the setup places participant `node` where the CA does: the location
/// in the (already verified) certificate of its signed contribution. A setup (and so
/// the manifest made from it) cannot count a node toward a jurisdiction its
/// certificate does not attest.
fn check_attested_location(
    node: &str,
    certificate: &[u8],
    region: &str,
    jurisdiction: &str,
) -> Result<(), CeremonyCheckError> {
    let attested = Location::from_certificate_der(certificate)
        .map_err(|e| party(node, format!("certificate: {e}")))?
        .ok_or_else(|| party(node, "certificate carries no region and jurisdiction"))?;
    if attested.region != region || attested.jurisdiction != jurisdiction {
        return Err(party(
            node,
            format!(
                "the setup places it in region {region:?}, jurisdiction {jurisdiction:?}, \
                 but its certificate attests {attested}"
            ),
        ));
    }
    Ok(())
}

/// SHA-256 over the setup hash and every participant's contribution, in setup
/// order: what every node confirms before a key becomes active.
pub fn round1_transcript_hash(setup: &Setup, contributions: &[VerifiedContribution]) -> [u8; 32] {
    let mut bytes = b"quorate-round1-transcript/1".to_vec();
    bytes.extend_from_slice(&setup.hash);
    for c in contributions {
        for field in [
            c.node_id.as_bytes(),
            c.envelope_key.as_slice(),
            c.round1_package.as_slice(),
        ] {
            bytes.extend_from_slice(&(field.len() as u64).to_be_bytes());
            bytes.extend_from_slice(field);
        }
    }
    quorate_wire::sha256(&bytes)
}

/// Checks one signed confirmation per node of `expected`, each equal to `ours` in
/// setup hash, round-1 transcript hash, group key and manifest hash. Fails naming
/// the first party that is missing, not signed by itself, or disagrees.
pub fn verify_confirmations(
    verifier: &StatementVerifier,
    certificates: &mut VerifiedCertificates,
    expected: &[String],
    ours: &pb::Confirmation,
    signed: &[pb::Signed],
) -> Result<Vec<pb::Confirmation>, CeremonyCheckError> {
    let mut found: BTreeMap<String, pb::Confirmation> = BTreeMap::new();
    for s in signed {
        let c = pb::Confirmation::decode(s.body.as_slice())
            .map_err(|e| CeremonyCheckError::Setup(format!("confirmation does not decode: {e}")))?;
        let node = c.node_id.clone();
        if !expected.contains(&node) {
            return Err(party(
                &node,
                "sent a confirmation but is not part of this ceremony",
            ));
        }
        verifier
            .verify_cached(s, CONFIRMATION, &node, certificates)
            .map_err(|e| party(&node, format!("confirmation rejected: {e}")))?;
        for (what, theirs, mine) in [
            ("setup", &c.setup_hash, &ours.setup_hash),
            (
                "round-1 transcript hash",
                &c.round1_transcript_hash,
                &ours.round1_transcript_hash,
            ),
            (
                "group public key",
                &c.group_public_key,
                &ours.group_public_key,
            ),
            ("manifest hash", &c.manifest_hash, &ours.manifest_hash),
        ] {
            if theirs != mine {
                return Err(party(
                    &node,
                    format!(
                        "confirmed {what} {}, but {} computed {} (the nodes did not see the same ceremony: a relay tampered with or split a message)",
                        hex::encode(theirs),
                        ours.node_id,
                        hex::encode(mine)
                    ),
                ));
            }
        }
        found.insert(node, c);
    }
    expected
        .iter()
        .map(|id| {
            found
                .remove(id)
                .ok_or_else(|| party(id, "no confirmation from this node was delivered"))
        })
        .collect()
}

/// Checks one signed receipt per node of `expected`, each for `setup_hash` and the
/// manifest `manifest_hash`: every one of them has stored its share of that
/// manifest. Fails naming the first party whose receipt is missing, not signed by
/// it, or about another ceremony or manifest.
pub fn verify_receipts(
    verifier: &StatementVerifier,
    certificates: &mut VerifiedCertificates,
    expected: &[String],
    setup_hash: &[u8; 32],
    manifest_hash: &[u8; 32],
    signed: &[pb::Signed],
) -> Result<(), CeremonyCheckError> {
    let mut found: BTreeSet<String> = BTreeSet::new();
    for s in signed {
        let r = pb::Receipt::decode(s.body.as_slice())
            .map_err(|e| CeremonyCheckError::Setup(format!("receipt does not decode: {e}")))?;
        if !expected.contains(&r.node_id) {
            return Err(party(&r.node_id, "sent a receipt but is not a participant"));
        }
        verifier
            .verify_cached(s, RECEIPT, &r.node_id, certificates)
            .map_err(|e| party(&r.node_id, format!("receipt rejected: {e}")))?;
        if r.setup_hash != setup_hash || r.manifest_hash != manifest_hash {
            return Err(party(
                &r.node_id,
                "its receipt is for another ceremony or manifest",
            ));
        }
        found.insert(r.node_id);
    }
    match expected.iter().find(|id| !found.contains(*id)) {
        Some(id) => Err(party(
            id,
            "no receipt from this node: it has not shown that it stored its new share",
        )),
        None => Ok(()),
    }
}

/// The manifest a ceremony produces: for a DKG, from the setup (key id, ciphersuite,
/// threshold, participants, policy, created_at, escrow custodians), generation 0; for a refresh, the
/// key's previous manifest (which fixes everything but the participants and the
/// public key package) with the setup's participants and the next generation
/// ([`manifest::encode_successor`]). Deterministic, so every node computes the same
/// bytes ([`Manifest::encoded`]). Returned decoded and validated: decoding parses
/// every point of the public key package, which is worth doing once.
pub fn build_manifest(
    setup: &Setup,
    previous: Option<&Manifest>,
    public_key_package: Vec<u8>,
) -> Result<Manifest, CeremonyCheckError> {
    let bad = |e: manifest::ManifestError| CeremonyCheckError::Setup(e.to_string());
    let encoded = match (setup.kind, previous) {
        (Kind::Dkg, _) => NewManifest {
            key_id: setup.pb.key_id.clone(),
            ciphersuite: setup.ciphersuite,
            threshold: setup.threshold,
            public_key_package,
            participants: setup.pb.participants.clone(),
            created_at: setup.pb.created_at.clone(),
            policy: setup.pb.policy.clone(),
            escrow: setup.pb.escrow.clone(),
        }
        .encode(),
        (Kind::Refresh, Some(prev)) => {
            if prev.key_id != setup.pb.key_id
                || prev.ciphersuite != setup.ciphersuite
                || prev.threshold != setup.threshold
            {
                return Err(CeremonyCheckError::Setup(
                    "the refresh's key id, ciphersuite or threshold differs from the key's previous manifest".into(),
                ));
            }
            manifest::encode_successor(
                prev,
                public_key_package,
                setup.pb.participants.clone(),
                manifest::TermChanges {
                    policy: setup.pb.policy.clone(),
                    escrow: setup.pb.escrow.clone(),
                },
            )
            .map_err(bad)?
        }
        _ => {
            return Err(CeremonyCheckError::Setup(
                "a refresh needs the key's previous manifest".into(),
            ))
        }
    };
    Manifest::decode(&encoded).map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An age X25519 recipient (the one in age's README).
    const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    /// A second custodian's recipient: custodians may not share one.
    const RECIPIENT_2: &str = "age1f60xkx9pk7ccqnk54cjjfmn427k3rhs30m7ywumvsvnsw832hpesa4qkt3";

    fn setup(kind: pb::CeremonyKind, escrow: Option<pb::KeyEscrow>) -> pb::CeremonySetup {
        pb::CeremonySetup {
            version: SETUP_VERSION,
            ceremony_id: "c1".into(),
            kind: kind as i32,
            key_id: "k1".into(),
            ciphersuite: pb::Ciphersuite::Ed25519 as i32,
            threshold: 2,
            participants: (1..=3)
                .map(|i| pb::ManifestParticipant {
                    node_id: format!("node-{i}"),
                    region: "r".into(),
                    jurisdiction: "EU".into(),
                })
                .collect(),
            manifest_hash: if kind == pb::CeremonyKind::Dkg {
                Vec::new()
            } else {
                vec![0; 32]
            },
            policy: (kind == pb::CeremonyKind::Dkg).then(|| pb::KeyPolicy {
                unsafe_no_administrators: true,
                ..Default::default()
            }),
            escrow,
            ..Default::default()
        }
    }

    fn escrow(threshold: u32, recipient: &str) -> pb::KeyEscrow {
        pb::KeyEscrow {
            threshold,
            custodians: [("bank-a", recipient), ("notary-d", RECIPIENT_2)]
                .iter()
                .map(|(n, r)| pb::EscrowCustodian {
                    name: (*n).into(),
                    age_recipient: (*r).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_dkg_fixes_valid_custodians_and_their_setup_hash_covers_them() {
        let without = Setup::from_pb(setup(pb::CeremonyKind::Dkg, None)).unwrap();
        let with =
            Setup::from_pb(setup(pb::CeremonyKind::Dkg, Some(escrow(2, RECIPIENT)))).unwrap();
        assert_ne!(with.hash, without.hash);
        for bad in [escrow(3, RECIPIENT), escrow(2, "age1notarecipient")] {
            let err = Setup::from_pb(setup(pb::CeremonyKind::Dkg, Some(bad))).unwrap_err();
            assert!(err.to_string().contains("escrow"), "{err}");
        }
    }

    #[test]
    fn only_a_refresh_changes_custodians_and_it_checks_them() {
        let refresh = Setup::from_pb(setup(pb::CeremonyKind::Refresh, Some(escrow(2, RECIPIENT))));
        assert!(refresh.is_ok(), "{refresh:?}");
        let err = Setup::from_pb(setup(pb::CeremonyKind::Refresh, Some(escrow(3, RECIPIENT))))
            .unwrap_err();
        assert!(err.to_string().contains("escrow"), "{err}");
        for kind in [pb::CeremonyKind::Repair, pb::CeremonyKind::EscrowSplit] {
            let mut s = setup(kind, Some(escrow(2, RECIPIENT)));
            if kind == pb::CeremonyKind::Repair {
                s.repair_target = "node-4".into();
            }
            let err = Setup::from_pb(s).unwrap_err();
            assert!(err.to_string().contains("a refresh does"), "{err}");
        }
    }

    #[test]
    fn a_dkg_needs_administrators_or_the_explicit_opt_out() {
        let mut s = setup(pb::CeremonyKind::Dkg, None);
        s.policy = None;
        let err = Setup::from_pb(s.clone()).unwrap_err();
        assert!(
            err.to_string().contains("unsafe_no_administrators"),
            "{err}"
        );
        s.policy = Some(pb::KeyPolicy {
            administrator_keys: vec![quorate_keys::approval::ApproverKey::generate()
                .public_key()
                .to_vec()],
            administrators_required: 1,
            ..Default::default()
        });
        assert!(Setup::from_pb(s).is_ok());
    }
}
