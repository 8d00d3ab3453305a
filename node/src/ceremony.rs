//! The node's side of key ceremonies: DKG, refresh and repair sessions.
//!
//! Secret state (frost round-1/round-2 secret packages, the per-ceremony X25519
//! envelope key, a computed but not yet activated key package, repair deltas) lives
//! only here, in memory, keyed by ceremony id. Each step takes its session out of
//! the table, so a step consumes the previous step's state; the session goes back
//! only if the step succeeded. Any failure, an `Abort`, or expiry drops it. Nothing
//! here is logged beyond ids and hashes.
//!
//! Trust: the ceremony tool relays messages but is not trusted with them. Every
//! contribution and confirmation a node accepts is signed by its named peer's mTLS
//! key ([`quorate_proto::attest`]); secret packages travel in envelopes only the
//! recipient can open ([`quorate_proto::envelope`]). A key becomes active only when
//! every participant has confirmed the same round-1 transcript, group key and
//! manifest.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use quorate_proto::attest::{StatementSigner, StatementVerifier, VerifiedCertificates};
use quorate_proto::ceremony::{
    self, build_manifest, round1_transcript_hash, verify_confirmations, verify_contributions,
    CeremonyCheckError, Kind, Setup, VerifiedContribution,
};
use quorate_proto::envelope::{EnvelopeContext, EnvelopeKey};
use quorate_proto::manifest::Manifest;
use quorate_proto::pb;
use quorate_proto::suite::{CryptoError, SecretBytes, SecretKeyPackage};

use crate::error::NodeError;
use crate::service::{ActiveKey, NodeState};
use crate::store::KeyRecord;

/// How long a ceremony's secret state may wait for its next step.
pub const SESSION_TTL: Duration = Duration::from_secs(600);
/// Most ceremonies a node takes part in at once.
pub const MAX_SESSIONS: usize = 32;

const PURPOSE_ROUND2: &str = "dkg-round2";
const PURPOSE_DELTA: &str = "repair-delta";
const PURPOSE_SIGMA: &str = "repair-sigma";

/// Keys the node uses in ceremonies: its mTLS key to sign statements, and the CA to
/// check its peers'.
#[derive(Debug)]
pub struct CeremonyKeys {
    /// Signs this node's statements.
    pub signer: StatementSigner,
    /// Checks other nodes' statements.
    pub verifier: StatementVerifier,
}

enum Stage {
    Round1 {
        secret: SecretBytes,
    },
    Round2 {
        secret: SecretBytes,
        contributions: Vec<VerifiedContribution>,
        round1: BTreeMap<Vec<u8>, Vec<u8>>,
        transcript: [u8; 32],
    },
    Confirmed {
        key_package: SecretKeyPackage,
        manifest: Vec<u8>,
        confirmation: pb::Confirmation,
    },
    RepairHelper {
        contributions: Option<Vec<VerifiedContribution>>,
    },
    RepairTarget,
}

impl Stage {
    fn name(&self) -> &'static str {
        match self {
            Stage::Round1 { .. } => "round 1",
            Stage::Round2 { .. } => "round 2",
            Stage::Confirmed { .. } => "confirmed",
            Stage::RepairHelper { .. } => "repair helper",
            Stage::RepairTarget => "repair target",
        }
    }
}

struct Session {
    setup: Setup,
    expires: Instant,
    envelope: EnvelopeKey,
    own: pb::Signed,
    /// Peer certificates whose chain this ceremony already checked: each peer's
    /// contribution and confirmation carry the same one.
    certificates: VerifiedCertificates,
    stage: Stage,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("ceremony_id", &self.setup.ceremony_id())
            .field("stage", &self.stage.name())
            .field("secrets", &"<redacted>")
            .finish()
    }
}

/// Pending ceremonies, by id.
#[derive(Debug, Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn purge(map: &mut HashMap<String, Session>) {
        let now = Instant::now();
        map.retain(|id, s| {
            let keep = s.expires > now;
            if !keep {
                tracing::warn!(ceremony_id = %id, "ceremony expired; its secret state is dropped");
            }
            keep
        });
    }

    fn insert_new(&self, session: Session) -> Result<(), NodeError> {
        let mut map = self.lock();
        Self::purge(&mut map);
        let id = session.setup.ceremony_id().to_string();
        if map.contains_key(&id) {
            return Err(NodeError::FailedPrecondition(format!(
                "ceremony {id} is already under way on this node"
            )));
        }
        if map.len() >= MAX_SESSIONS {
            return Err(NodeError::FailedPrecondition(
                "too many ceremonies under way on this node".into(),
            ));
        }
        map.insert(id, session);
        Ok(())
    }

    fn take(&self, ceremony_id: &str) -> Result<Session, NodeError> {
        let mut map = self.lock();
        Self::purge(&mut map);
        map.remove(ceremony_id).ok_or_else(|| {
            NodeError::FailedPrecondition(format!(
                "no pending ceremony {ceremony_id:?} on this node (never started, aborted after an error, finished, or expired)"
            ))
        })
    }

    fn put_back(&self, session: Session) {
        self.lock()
            .insert(session.setup.ceremony_id().to_string(), session);
    }

    /// Drops a ceremony's state; whether there was any.
    pub fn abort(&self, ceremony_id: &str) -> bool {
        self.lock().remove(ceremony_id).is_some()
    }

    /// Number of pending ceremonies.
    pub fn len(&self) -> usize {
        let mut map = self.lock();
        Self::purge(&mut map);
        map.len()
    }

    /// Whether no ceremony is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn rejected(e: CeremonyCheckError) -> NodeError {
    NodeError::CeremonyRejected(e.to_string())
}

fn setup_of(setup: Option<pb::CeremonySetup>) -> Result<Setup, NodeError> {
    let setup = setup.ok_or_else(|| NodeError::InvalidArgument("setup is missing".into()))?;
    Setup::from_pb(setup).map_err(|e| NodeError::InvalidArgument(e.to_string()))
}

impl NodeState {
    fn ceremony_keys(&self) -> &CeremonyKeys {
        &self.ceremony
    }

    /// The node named in a frost culprit, for messages.
    fn culprit_name(setup: &Setup, error: CryptoError) -> NodeError {
        match error {
            CryptoError::Culprit { culprit, reason } => {
                let ops = setup.ciphersuite.ops();
                let name = setup
                    .participant_ids()
                    .into_iter()
                    .find(|id| ops.identifier(id).is_ok_and(|i| i == culprit))
                    .unwrap_or_else(|| "an unknown participant".into());
                NodeError::CeremonyRejected(format!("{name}: {reason}"))
            }
            other => NodeError::CeremonyRejected(other.to_string()),
        }
    }

    fn sign_statement(&self, kind: &str, body: Vec<u8>) -> Result<pb::Signed, NodeError> {
        self.ceremony_keys()
            .signer
            .sign(kind, body)
            .map_err(|e| NodeError::Server(e.to_string()))
    }

    /// Checks that this node is a participant of `setup` at its own place.
    fn check_own_place(&self, setup: &Setup) -> Result<(), NodeError> {
        let me = setup
            .pb
            .participants
            .iter()
            .find(|p| p.node_id == self.identity.node_id)
            .ok_or_else(|| {
                NodeError::InvalidArgument(format!(
                    "the ceremony does not name this node ({}) as a participant",
                    self.identity.node_id
                ))
            })?;
        if me.region != self.identity.region || me.jurisdiction != self.identity.jurisdiction {
            return Err(NodeError::InvalidArgument(format!(
                "the ceremony places {} in {}/{}, but this node is in {}/{}",
                me.node_id,
                me.region,
                me.jurisdiction,
                self.identity.region,
                self.identity.jurisdiction
            )));
        }
        Ok(())
    }

    /// The key a refresh or repair is about, checked against the setup.
    fn prior_key(&self, setup: &Setup) -> Result<Arc<ActiveKey>, NodeError> {
        let key = self.key(&setup.pb.key_id)?;
        let m = &key.manifest;
        if m.hash.as_slice() != setup.pb.manifest_hash.as_slice() {
            return Err(NodeError::FailedPrecondition(format!(
                "key {} on this node has manifest {}, the ceremony is about {}",
                m.key_id,
                hex::encode(m.hash),
                hex::encode(&setup.pb.manifest_hash)
            )));
        }
        if m.ciphersuite != setup.ciphersuite || m.threshold != setup.threshold {
            return Err(NodeError::InvalidArgument(
                "the ceremony's ciphersuite or threshold differs from the key's".into(),
            ));
        }
        for p in &setup.pb.participants {
            let known = m.participant(&p.node_id).ok_or_else(|| {
                NodeError::InvalidArgument(format!(
                    "{} holds no share of key {}",
                    p.node_id, m.key_id
                ))
            })?;
            if known.region != p.region || known.jurisdiction != p.jurisdiction {
                return Err(NodeError::InvalidArgument(format!(
                    "the ceremony moves {} to {}/{}; a refresh or repair cannot move a node",
                    p.node_id, p.region, p.jurisdiction
                )));
            }
        }
        Ok(key)
    }

    fn new_session(
        &self,
        setup: Setup,
        round1_package: Vec<u8>,
        stage: Stage,
    ) -> Result<pb::Signed, NodeError> {
        let envelope = EnvelopeKey::generate();
        let body = pb::Contribution {
            setup_hash: setup.hash.to_vec(),
            node_id: self.identity.node_id.clone(),
            envelope_key: envelope.public_key().to_vec(),
            round1_package,
        }
        .encode_to_vec();
        let own = self.sign_statement(ceremony::CONTRIBUTION, body)?;
        tracing::info!(
            ceremony_id = %setup.ceremony_id(),
            kind = ?setup.kind,
            key_id = %setup.pb.key_id,
            setup_hash = %hex::encode(setup.hash),
            "ceremony started"
        );
        self.sessions.insert_new(Session {
            setup,
            expires: Instant::now() + SESSION_TTL,
            envelope,
            own: own.clone(),
            certificates: VerifiedCertificates::default(),
            stage,
        })?;
        Ok(own)
    }

    /// `DkgRound1`: starts a DKG or refresh session.
    pub(crate) fn dkg_round1(&self, req: pb::DkgRound1Request) -> Result<pb::Signed, NodeError> {
        let setup = setup_of(req.setup)?;
        self.check_own_place(&setup)?;
        match setup.kind {
            Kind::Dkg => {
                if self.key(&setup.pb.key_id).is_ok() {
                    return Err(NodeError::KeyExists(setup.pb.key_id.clone()));
                }
            }
            Kind::Refresh => {
                self.prior_key(&setup)?;
            }
            Kind::Repair => {
                return Err(NodeError::InvalidArgument(
                    "a repair starts with RepairStart".into(),
                ))
            }
        }
        let n = u16::try_from(setup.pb.participants.len())
            .map_err(|_| NodeError::InvalidArgument("too many participants".into()))?;
        let (secret, package) = setup
            .ciphersuite
            .ops()
            .dkg_part1(
                setup.kind.dkg_mode(),
                &self.identity.node_id,
                n,
                setup.threshold,
            )
            .map_err(|e| NodeError::InvalidArgument(e.to_string()))?;
        self.new_session(setup, package, Stage::Round1 { secret })
    }

    /// `DkgRound2`: checks the contributions and seals round-2 packages.
    pub(crate) fn dkg_round2(
        &self,
        req: pb::DkgRound2Request,
    ) -> Result<pb::DkgRound2Response, NodeError> {
        let mut session = self.sessions.take(&req.ceremony_id)?;
        let Stage::Round1 { secret } = session.stage else {
            return Err(NodeError::FailedPrecondition(format!(
                "ceremony {} is at {}, not round 1; it is aborted on this node",
                req.ceremony_id,
                session.stage.name()
            )));
        };
        let setup = &session.setup;
        let me = self.identity.node_id.clone();
        let contributions = verify_contributions(
            &self.ceremony_keys().verifier,
            &mut session.certificates,
            setup,
            &setup.participant_ids(),
            &req.contributions,
        )
        .map_err(rejected)?;
        let own = pb::Contribution::decode(session.own.body.as_slice())
            .map_err(|e| NodeError::Server(e.to_string()))?;
        let ops = setup.ciphersuite.ops();
        let mut round1 = BTreeMap::new();
        for c in &contributions {
            if c.node_id == me {
                if c.envelope_key != own.envelope_key || c.round1_package != own.round1_package {
                    return Err(NodeError::CeremonyRejected(format!(
                        "{me}: the relay delivered a contribution of this node that it did not make"
                    )));
                }
                continue;
            }
            let id = ops
                .identifier(&c.node_id)
                .map_err(|e| NodeError::InvalidArgument(e.to_string()))?;
            round1.insert(id, c.round1_package.clone());
        }
        let transcript = round1_transcript_hash(setup, &contributions);
        let (secret, packages) = ops
            .dkg_part2(setup.kind.dkg_mode(), secret, &round1)
            .map_err(|e| Self::culprit_name(setup, e))?;
        let mut envelopes = Vec::with_capacity(packages.len());
        for c in contributions.iter().filter(|c| c.node_id != me) {
            let id = ops
                .identifier(&c.node_id)
                .map_err(|e| NodeError::InvalidArgument(e.to_string()))?;
            let package = packages.get(&id).ok_or_else(|| {
                NodeError::Server(format!("frost made no round-2 package for {}", c.node_id))
            })?;
            let ctx = EnvelopeContext {
                ceremony_id: setup.ceremony_id(),
                sender: &me,
                recipient: &c.node_id,
                purpose: PURPOSE_ROUND2,
            };
            let (nonce, ciphertext) = session
                .envelope
                .seal(&c.envelope_key, &ctx, package)
                .map_err(|e| NodeError::CeremonyRejected(format!("{}: {e}", c.node_id)))?;
            envelopes.push(pb::Envelope {
                sender: me.clone(),
                recipient: c.node_id.clone(),
                nonce,
                ciphertext,
            });
        }
        tracing::info!(
            ceremony_id = %req.ceremony_id,
            round1_transcript = %hex::encode(transcript),
            "ceremony round 2: contributions verified, round-2 packages sealed"
        );
        session.stage = Stage::Round2 {
            secret,
            contributions,
            round1,
            transcript,
        };
        self.sessions.put_back(session);
        Ok(pb::DkgRound2Response { envelopes })
    }

    /// Opens one envelope per expected sender addressed to this node.
    fn open_envelopes(
        &self,
        session: &Session,
        senders: &[&VerifiedContribution],
        envelopes: &[pb::Envelope],
        purpose: &str,
    ) -> Result<BTreeMap<String, SecretBytes>, NodeError> {
        let me = &self.identity.node_id;
        let mut out = BTreeMap::new();
        for sender in senders {
            let mut matching = envelopes
                .iter()
                .filter(|e| e.sender == sender.node_id && &e.recipient == me);
            let envelope = matching.next().ok_or_else(|| {
                NodeError::CeremonyRejected(format!(
                    "{}: no {purpose} envelope from this node was delivered",
                    sender.node_id
                ))
            })?;
            if matching.next().is_some() {
                return Err(NodeError::CeremonyRejected(format!(
                    "{}: two {purpose} envelopes from this node were delivered",
                    sender.node_id
                )));
            }
            let ctx = EnvelopeContext {
                ceremony_id: session.setup.ceremony_id(),
                sender: &sender.node_id,
                recipient: me,
                purpose,
            };
            let plain = session
                .envelope
                .open(
                    &sender.envelope_key,
                    &ctx,
                    &envelope.nonce,
                    &envelope.ciphertext,
                )
                .map_err(|e| NodeError::CeremonyRejected(format!("{}: {e}", sender.node_id)))?;
            out.insert(sender.node_id.clone(), plain);
        }
        if envelopes.len() != senders.len() {
            return Err(NodeError::CeremonyRejected(format!(
                "ceremony: {} envelopes delivered, {} expected",
                envelopes.len(),
                senders.len()
            )));
        }
        Ok(out)
    }

    /// `DkgRound3`: computes this node's share and confirms the outcome.
    pub(crate) fn dkg_round3(&self, req: pb::DkgRound3Request) -> Result<pb::Signed, NodeError> {
        let mut session = self.sessions.take(&req.ceremony_id)?;
        let stage = std::mem::replace(&mut session.stage, Stage::RepairTarget);
        let Stage::Round2 {
            secret,
            contributions,
            round1,
            transcript,
        } = stage
        else {
            return Err(NodeError::FailedPrecondition(format!(
                "ceremony {} is at {}, not round 2; it is aborted on this node",
                req.ceremony_id,
                stage.name()
            )));
        };
        let me = self.identity.node_id.clone();
        let setup = session.setup.clone();
        let ops = setup.ciphersuite.ops();
        let others: Vec<&VerifiedContribution> =
            contributions.iter().filter(|c| c.node_id != me).collect();
        let opened = self.open_envelopes(&session, &others, &req.envelopes, PURPOSE_ROUND2)?;
        let mut round2 = BTreeMap::new();
        for (node, package) in opened {
            let id = ops
                .identifier(&node)
                .map_err(|e| NodeError::InvalidArgument(e.to_string()))?;
            round2.insert(id, package);
        }
        let (key_package, pkp, previous) = match setup.kind {
            Kind::Dkg => {
                let (kp, pkp) = ops
                    .dkg_part3(&secret, &round1, &round2)
                    .map_err(|e| Self::culprit_name(&setup, e))?;
                (kp, pkp, None)
            }
            _ => {
                let prior = self.prior_key(&setup)?;
                let (kp, pkp) = ops
                    .refresh_part3(
                        &secret,
                        &round1,
                        &round2,
                        &prior.manifest.public_key_package,
                        &prior.key_package,
                    )
                    .map_err(|e| Self::culprit_name(&setup, e))?;
                (kp, pkp, Some(prior))
            }
        };
        drop(secret);
        let decoded = build_manifest(&setup, previous.as_ref().map(|p| &p.manifest), pkp.clone())
            .map_err(rejected)?;
        if let Some(prior) = &previous {
            if decoded.public_key.verifying_key != prior.manifest.public_key.verifying_key {
                return Err(NodeError::CeremonyRejected(
                    "the refresh changed the group public key".into(),
                ));
            }
        }
        let confirmation = pb::Confirmation {
            setup_hash: setup.hash.to_vec(),
            node_id: me,
            round1_transcript_hash: transcript.to_vec(),
            group_public_key: decoded.public_key.public_key.clone(),
            manifest_hash: decoded.hash.to_vec(),
            public_key_package: pkp,
        };
        let signed = self.sign_statement(ceremony::CONFIRMATION, confirmation.encode_to_vec())?;
        tracing::info!(
            ceremony_id = %req.ceremony_id,
            group_public_key = %hex::encode(&decoded.public_key.public_key),
            manifest_sha256 = %hex::encode(decoded.hash),
            "ceremony round 3: share computed, awaiting every participant's confirmation"
        );
        session.stage = Stage::Confirmed {
            key_package,
            manifest: decoded.encoded,
            confirmation,
        };
        self.sessions.put_back(session);
        Ok(signed)
    }

    /// `DkgActivate`: checks every confirmation and stores the key.
    pub(crate) fn dkg_activate(
        &self,
        req: pb::DkgActivateRequest,
        caller: &str,
    ) -> Result<pb::InstallKeyResponse, NodeError> {
        let mut session = self.sessions.take(&req.ceremony_id)?;
        let Stage::Confirmed {
            key_package,
            manifest,
            confirmation,
        } = session.stage
        else {
            return Err(NodeError::FailedPrecondition(format!(
                "ceremony {} is at {}, not confirmed; it is aborted on this node",
                req.ceremony_id,
                session.stage.name()
            )));
        };
        if req.manifest != manifest {
            return Err(NodeError::CeremonyRejected(format!(
                "ceremony: the manifest to activate (SHA-256 {}) is not the one {} computed ({})",
                hex::encode(quorate_proto::sha256(&req.manifest)),
                self.identity.node_id,
                hex::encode(quorate_proto::sha256(&manifest))
            )));
        }
        verify_confirmations(
            &self.ceremony_keys().verifier,
            &mut session.certificates,
            &session.setup.participant_ids(),
            &confirmation,
            &req.confirmations,
        )
        .map_err(rejected)?;
        let record = KeyRecord {
            manifest,
            key_package,
        };
        let response = match session.setup.kind {
            Kind::Dkg => self.install_record(record, "key_generated", caller)?,
            _ => self.replace_record(record, &session.setup.pb.manifest_hash, caller)?,
        };
        tracing::info!(
            ceremony_id = %req.ceremony_id,
            key_id = %session.setup.pb.key_id,
            kind = ?session.setup.kind,
            "ceremony complete: every participant confirmed; key active"
        );
        Ok(response)
    }

    /// `Abort`.
    pub(crate) fn abort(&self, req: &pb::AbortRequest) -> pb::AbortResponse {
        let dropped = self.sessions.abort(&req.ceremony_id);
        tracing::warn!(ceremony_id = %req.ceremony_id, reason = %req.reason, dropped, "ceremony aborted");
        pb::AbortResponse { dropped }
    }

    /// `RetireKey`: a refresh removed this node; delete its share once every
    /// remaining participant has confirmed the refreshed key.
    pub(crate) fn retire_key(
        &self,
        req: pb::RetireKeyRequest,
        caller: &str,
    ) -> Result<pb::RetireKeyResponse, NodeError> {
        let setup = setup_of(req.setup)?;
        if setup.kind != Kind::Refresh || setup.ceremony_id() != req.ceremony_id {
            return Err(NodeError::InvalidArgument(
                "RetireKey needs the setup of the refresh that removed this node".into(),
            ));
        }
        if setup.involves(&self.identity.node_id) {
            return Err(NodeError::InvalidArgument(
                "the refresh keeps this node; it has nothing to retire".into(),
            ));
        }
        let key = self.key(&setup.pb.key_id)?;
        if key.manifest.hash.as_slice() != setup.pb.manifest_hash.as_slice() {
            return Err(NodeError::FailedPrecondition(
                "the refresh is about another version of this key".into(),
            ));
        }
        let new = Manifest::decode(&req.manifest)
            .map_err(|e| NodeError::InvalidArgument(e.to_string()))?;
        if new.key_id != key.manifest.key_id
            || new.public_key.verifying_key != key.manifest.public_key.verifying_key
            || new.participant(&self.identity.node_id).is_some()
        {
            return Err(NodeError::InvalidArgument(
                "the refreshed manifest is not this key without this node".into(),
            ));
        }
        let first = req
            .confirmations
            .first()
            .and_then(|s| pb::Confirmation::decode(s.body.as_slice()).ok())
            .ok_or_else(|| NodeError::InvalidArgument("no confirmations".into()))?;
        let expected = pb::Confirmation {
            setup_hash: setup.hash.to_vec(),
            node_id: self.identity.node_id.clone(),
            round1_transcript_hash: first.round1_transcript_hash,
            group_public_key: key.manifest.public_key.public_key.clone(),
            manifest_hash: new.hash.to_vec(),
            public_key_package: Vec::new(),
        };
        verify_confirmations(
            &self.ceremony_keys().verifier,
            &mut VerifiedCertificates::default(),
            &setup.participant_ids(),
            &expected,
            &req.confirmations,
        )
        .map_err(rejected)?;
        self.remove_key(&setup.pb.key_id, caller)?;
        tracing::info!(key_id = %setup.pb.key_id, ceremony_id = %req.ceremony_id, "share retired after a refresh removed this node");
        Ok(pb::RetireKeyResponse {})
    }

    /// `RepairStart`: a helper or the target joins a repair.
    pub(crate) fn repair_start(
        &self,
        req: pb::RepairStartRequest,
    ) -> Result<pb::Signed, NodeError> {
        let setup = setup_of(req.setup)?;
        if setup.kind != Kind::Repair {
            return Err(NodeError::InvalidArgument("not a repair setup".into()));
        }
        let stage = if setup.pb.repair_target == self.identity.node_id {
            if self.key(&setup.pb.key_id).is_ok() {
                return Err(NodeError::KeyExists(setup.pb.key_id.clone()));
            }
            Stage::RepairTarget
        } else {
            self.check_own_place(&setup)?;
            let key = self.prior_key(&setup)?;
            if key.manifest.participant(&setup.pb.repair_target).is_none() {
                return Err(NodeError::InvalidArgument(format!(
                    "{} holds no share of key {}",
                    setup.pb.repair_target, setup.pb.key_id
                )));
            }
            Stage::RepairHelper {
                contributions: None,
            }
        };
        self.new_session(setup, Vec::new(), stage)
    }

    /// `RepairDeltas`: a helper splits its share's contribution into deltas.
    pub(crate) fn repair_deltas(
        &self,
        req: pb::RepairDeltasRequest,
    ) -> Result<pb::RepairDeltasResponse, NodeError> {
        let mut session = self.sessions.take(&req.ceremony_id)?;
        if !matches!(
            session.stage,
            Stage::RepairHelper {
                contributions: None
            }
        ) {
            return Err(NodeError::FailedPrecondition(format!(
                "ceremony {} is at {}; it is aborted on this node",
                req.ceremony_id,
                session.stage.name()
            )));
        }
        let setup = session.setup.clone();
        let mut expected = setup.participant_ids();
        expected.push(setup.pb.repair_target.clone());
        let contributions = verify_contributions(
            &self.ceremony_keys().verifier,
            &mut session.certificates,
            &setup,
            &expected,
            &req.contributions,
        )
        .map_err(rejected)?;
        let key = self.prior_key(&setup)?;
        let ops = setup.ciphersuite.ops();
        let helpers = setup
            .participant_ids()
            .iter()
            .map(|h| ops.identifier(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| NodeError::InvalidArgument(e.to_string()))?;
        let target = ops
            .identifier(&setup.pb.repair_target)
            .map_err(|e| NodeError::InvalidArgument(e.to_string()))?;
        let deltas = ops
            .repair_part1(&helpers, &key.key_package, &target)
            .map_err(|e| NodeError::CeremonyRejected(e.to_string()))?;
        let me = self.identity.node_id.clone();
        let mut envelopes = Vec::new();
        for c in contributions
            .iter()
            .filter(|c| c.node_id != setup.pb.repair_target)
        {
            let id = ops
                .identifier(&c.node_id)
                .map_err(|e| NodeError::InvalidArgument(e.to_string()))?;
            let delta = deltas
                .get(&id)
                .ok_or_else(|| NodeError::Server(format!("no delta for {}", c.node_id)))?;
            let ctx = EnvelopeContext {
                ceremony_id: setup.ceremony_id(),
                sender: &me,
                recipient: &c.node_id,
                purpose: PURPOSE_DELTA,
            };
            let (nonce, ciphertext) = session
                .envelope
                .seal(&c.envelope_key, &ctx, delta)
                .map_err(|e| NodeError::CeremonyRejected(format!("{}: {e}", c.node_id)))?;
            envelopes.push(pb::Envelope {
                sender: me.clone(),
                recipient: c.node_id.clone(),
                nonce,
                ciphertext,
            });
        }
        session.stage = Stage::RepairHelper {
            contributions: Some(contributions),
        };
        self.sessions.put_back(session);
        Ok(pb::RepairDeltasResponse { envelopes })
    }

    /// `RepairSigma`: a helper sums the deltas it received into the target's sigma.
    pub(crate) fn repair_sigma(
        &self,
        req: pb::RepairSigmaRequest,
    ) -> Result<pb::Envelope, NodeError> {
        let mut session = self.sessions.take(&req.ceremony_id)?;
        let stage = std::mem::replace(&mut session.stage, Stage::RepairTarget);
        let Stage::RepairHelper {
            contributions: Some(contributions),
        } = stage
        else {
            return Err(NodeError::FailedPrecondition(format!(
                "ceremony {} is at {}; it is aborted on this node",
                req.ceremony_id,
                stage.name()
            )));
        };
        let setup = &session.setup;
        let target = &setup.pb.repair_target;
        let helpers: Vec<&VerifiedContribution> = contributions
            .iter()
            .filter(|c| &c.node_id != target)
            .collect();
        let deltas = self.open_envelopes(&session, &helpers, &req.envelopes, PURPOSE_DELTA)?;
        let deltas: Vec<SecretBytes> = deltas.into_values().collect();
        let sigma = setup
            .ciphersuite
            .ops()
            .repair_part2(&deltas)
            .map_err(|e| NodeError::CeremonyRejected(e.to_string()))?;
        let target_contribution = contributions
            .iter()
            .find(|c| &c.node_id == target)
            .ok_or_else(|| NodeError::Server("target contribution missing".into()))?;
        let me = self.identity.node_id.clone();
        let ctx = EnvelopeContext {
            ceremony_id: setup.ceremony_id(),
            sender: &me,
            recipient: target,
            purpose: PURPOSE_SIGMA,
        };
        let (nonce, ciphertext) = session
            .envelope
            .seal(&target_contribution.envelope_key, &ctx, &sigma)
            .map_err(|e| NodeError::CeremonyRejected(format!("{target}: {e}")))?;
        tracing::info!(ceremony_id = %req.ceremony_id, target = %target, "repair: sigma sealed to the target");
        // The helper's part is done; its session (and envelope key) ends here.
        Ok(pb::Envelope {
            sender: me,
            recipient: target.clone(),
            nonce,
            ciphertext,
        })
    }

    /// `RepairFinish`: the target rebuilds its share, checks it against the manifest
    /// the helpers vouched for, and stores it.
    pub(crate) fn repair_finish(
        &self,
        req: pb::RepairFinishRequest,
        caller: &str,
    ) -> Result<pb::InstallKeyResponse, NodeError> {
        let mut session = self.sessions.take(&req.ceremony_id)?;
        if !matches!(session.stage, Stage::RepairTarget) {
            return Err(NodeError::FailedPrecondition(format!(
                "ceremony {} is at {}; it is aborted on this node",
                req.ceremony_id,
                session.stage.name()
            )));
        }
        let setup = &session.setup;
        // Every helper signed the setup, which holds the manifest's hash: at least
        // `threshold` share holders vouch for this manifest.
        let contributions = verify_contributions(
            &self.ceremony_keys().verifier,
            &mut session.certificates,
            setup,
            &setup.participant_ids(),
            &req.contributions,
        )
        .map_err(rejected)?;
        if quorate_proto::sha256(&req.manifest).as_slice() != setup.pb.manifest_hash.as_slice() {
            return Err(NodeError::CeremonyRejected(
                "ceremony: the manifest delivered is not the one the helpers vouched for".into(),
            ));
        }
        let manifest = Manifest::decode(&req.manifest)
            .map_err(|e| NodeError::InvalidArgument(e.to_string()))?;
        if manifest.key_id != setup.pb.key_id
            || manifest.ciphersuite != setup.ciphersuite
            || manifest.threshold != setup.threshold
        {
            return Err(NodeError::InvalidArgument(
                "the manifest is not the key the repair is about".into(),
            ));
        }
        let helpers: Vec<&VerifiedContribution> = contributions.iter().collect();
        let sigmas = self.open_envelopes(&session, &helpers, &req.envelopes, PURPOSE_SIGMA)?;
        let sigmas: Vec<SecretBytes> = sigmas.into_values().collect();
        let ops = setup.ciphersuite.ops();
        let me = ops
            .identifier(&self.identity.node_id)
            .map_err(|e| NodeError::InvalidArgument(e.to_string()))?;
        let key_package = ops
            .repair_part3(&sigmas, &me, &manifest.public_key_package)
            .map_err(|e| NodeError::CeremonyRejected(e.to_string()))?;
        let record = KeyRecord {
            manifest: req.manifest,
            key_package,
        };
        // `activate` (inside install) refuses a share whose verifying share is not the
        // manifest's: a wrong sigma cannot become an active key.
        let response = self.install_record(record, "key_repaired", caller).map_err(|e| match e {
            NodeError::InvalidArgument(m) => NodeError::CeremonyRejected(format!(
                "the repaired share does not match the manifest's verifying share for this node: {m}"
            )),
            other => other,
        })?;
        tracing::info!(ceremony_id = %req.ceremony_id, key_id = %setup.pb.key_id, "repair complete: share rebuilt and verified");
        Ok(response)
    }
}
