//! This node as a ceremony participant: the keys it signs and checks statements
//! with, the secret state of its ceremonies under way, and the checks and helpers
//! every ceremony step shares (setup decoding, this node's place in it, the key a
//! refresh or repair is about, opening envelopes, naming culprits).
//!
//! Used by the DKG, refresh and repair steps and by the `Ceremony` gRPC adapter;
//! it uses the node's state (identity, key registry) and never a step. Invariants: every statement this node makes is signed with its
//! mTLS key; an envelope is opened only from an expected sender, to this node, once
//! per sender, in this ceremony and step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use prost::Message;
use quorate_ceremony_protocol::envelope::{EnvelopeContext, EnvelopeKey};
use quorate_ceremony_protocol::setup::{self, CeremonyCheckError, Setup, VerifiedContribution};
use quorate_frost::{CryptoError, SecretBytes};
use quorate_transport::attest::{StatementSigner, StatementVerifier, VerifiedCertificates};
use quorate_wire::pb;

use super::sessions::{Session, Sessions, Stage, SESSION_TTL};
use crate::error::NodeError;
use crate::identity::NodeIdentity;
use crate::key::ActiveKey;
use crate::state::NodeState;

/// Envelope purposes: the AAD binds each sealed message to its step.
pub(super) const PURPOSE_ROUND2: &str = "dkg-round2";
pub(super) const PURPOSE_DELTA: &str = "repair-delta";
pub(super) const PURPOSE_SIGMA: &str = "repair-sigma";

/// Keys the node uses in ceremonies: its mTLS key to sign statements, and the CA to
/// check its peers'.
#[derive(Debug)]
pub struct CeremonyKeys {
    /// Signs this node's statements.
    pub signer: StatementSigner,
    /// Checks other nodes' statements.
    pub verifier: StatementVerifier,
}

/// This node's part in key ceremonies: its statement keys and its pending sessions.
#[derive(Debug)]
pub struct Participant {
    pub(super) keys: CeremonyKeys,
    pub(super) sessions: Sessions,
}

impl Participant {
    /// A participant with no ceremony under way.
    pub fn new(keys: CeremonyKeys) -> Self {
        Self {
            keys,
            sessions: Sessions::default(),
        }
    }

    /// Checks other nodes' statements (chained to the trust domain's CA).
    pub(crate) fn verifier(&self) -> &StatementVerifier {
        &self.keys.verifier
    }

    /// Pending ceremonies on this node.
    pub fn pending_ceremonies(&self) -> usize {
        self.sessions.len()
    }

    /// `Abort`.
    pub(crate) fn abort(&self, req: &pb::AbortRequest) -> pb::AbortResponse {
        let dropped = self.sessions.abort(&req.ceremony_id);
        tracing::warn!(ceremony_id = %req.ceremony_id, reason = %req.reason, dropped, "ceremony aborted");
        pb::AbortResponse { dropped }
    }

    /// This node's (`me`) receipt for holding its share of `manifest_hash` from
    /// `setup`: made only once that share is durable.
    pub(super) fn receipt(
        &self,
        me: &str,
        setup: &Setup,
        manifest_hash: &[u8; 32],
    ) -> Result<pb::Signed, NodeError> {
        let body = pb::Receipt {
            setup_hash: setup.hash.to_vec(),
            node_id: me.to_string(),
            manifest_hash: manifest_hash.to_vec(),
        };
        self.sign_statement(setup::RECEIPT, body.encode_to_vec())
    }

    pub(super) fn sign_statement(
        &self,
        kind: &str,
        body: Vec<u8>,
    ) -> Result<pb::Signed, NodeError> {
        self.keys
            .signer
            .sign(kind, body)
            .map_err(|e| NodeError::Server(e.to_string()))
    }

    /// Starts a session: draws this ceremony's envelope key and signs this node's
    /// contribution (`me` is this node's id).
    pub(super) fn new_session(
        &self,
        me: &str,
        setup: Setup,
        round1_package: Vec<u8>,
        stage: Stage,
    ) -> Result<pb::Signed, NodeError> {
        let envelope = EnvelopeKey::generate();
        let body = pb::Contribution {
            setup_hash: setup.hash.to_vec(),
            node_id: me.to_string(),
            envelope_key: envelope.public_key().to_vec(),
            round1_package,
        }
        .encode_to_vec();
        let own = self.sign_statement(setup::CONTRIBUTION, body)?;
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
}

pub(super) fn rejected(e: CeremonyCheckError) -> NodeError {
    NodeError::CeremonyRejected(e.to_string())
}

pub(super) fn setup_of(setup: Option<pb::CeremonySetup>) -> Result<Setup, NodeError> {
    let setup = setup.ok_or_else(|| NodeError::MalformedRequest("setup is missing".into()))?;
    Setup::from_pb(setup).map_err(|e| NodeError::MalformedRequest(e.to_string()))
}

/// The node named in a frost culprit, for messages.
pub(super) fn culprit_name(setup: &Setup, error: CryptoError) -> NodeError {
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

/// Checks that this node is a participant of `setup` at its own place.
pub(super) fn check_own_place(identity: &NodeIdentity, setup: &Setup) -> Result<(), NodeError> {
    let me = setup
        .pb
        .participants
        .iter()
        .find(|p| p.node_id == identity.node_id)
        .ok_or_else(|| {
            NodeError::CeremonyMismatch(format!(
                "the ceremony does not name this node ({}) as a participant",
                identity.node_id
            ))
        })?;
    if me.region != identity.region || me.jurisdiction != identity.jurisdiction {
        return Err(NodeError::CeremonyMismatch(format!(
            "the ceremony places {} in {}/{}, but this node is in {}/{}",
            me.node_id, me.region, me.jurisdiction, identity.region, identity.jurisdiction
        )));
    }
    Ok(())
}

/// The key a refresh or repair is about, checked against the setup.
pub(super) fn prior_key(node: &NodeState, setup: &Setup) -> Result<Arc<ActiveKey>, NodeError> {
    let key = node.key(&setup.pb.key_id)?;
    let m = &key.manifest;
    if m.hash.as_slice() != setup.pb.manifest_hash.as_slice() {
        return Err(NodeError::KeyVersionMismatch(format!(
            "key {} on this node has manifest {}, the ceremony is about {}",
            m.key_id,
            hex::encode(m.hash),
            hex::encode(&setup.pb.manifest_hash)
        )));
    }
    if m.ciphersuite != setup.ciphersuite || m.threshold != setup.threshold {
        return Err(NodeError::CeremonyMismatch(
            "the ceremony's ciphersuite or threshold differs from the key's".into(),
        ));
    }
    for p in &setup.pb.participants {
        let known = m.participant(&p.node_id).ok_or_else(|| {
            NodeError::CeremonyMismatch(format!("{} holds no share of key {}", p.node_id, m.key_id))
        })?;
        if known.region != p.region || known.jurisdiction != p.jurisdiction {
            return Err(NodeError::CeremonyMismatch(format!(
                "the ceremony moves {} to {}/{}; a refresh or repair cannot move a node",
                p.node_id, p.region, p.jurisdiction
            )));
        }
    }
    Ok(key)
}

/// Opens one envelope per expected sender addressed to this node (`me`).
pub(super) fn open_envelopes(
    me: &str,
    session: &Session,
    senders: &[&VerifiedContribution],
    envelopes: &[pb::Envelope],
    purpose: &str,
) -> Result<BTreeMap<String, SecretBytes>, NodeError> {
    let mut out = BTreeMap::new();
    for sender in senders {
        let mut matching = envelopes
            .iter()
            .filter(|e| e.sender == sender.node_id && e.recipient == me);
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
