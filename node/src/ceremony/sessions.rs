//! The secret state of the ceremonies under way on this node, by ceremony id: each
//! ceremony's stage (frost secret packages, a computed but inactive key package,
//! repair contributions), its envelope key and the certificates it has checked.
//!
//! Used only by the ceremony steps (DKG, refresh, repair) and the `Participant`
//! they share. Invariants: the state lives in
//! memory only and is never logged (`Debug` prints `<redacted>`); a step takes its
//! session out (`Sessions::take`) and puts it back only if it succeeded, so any
//! error drops it; a session expires after [`SESSION_TTL`], and at most
//! [`MAX_SESSIONS`] are kept.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use quorate_ceremony_protocol::envelope::EnvelopeKey;
use quorate_ceremony_protocol::setup::{Setup, VerifiedContribution};
use quorate_frost::{SecretBytes, SecretKeyPackage};
use quorate_transport::attest::VerifiedCertificates;
use quorate_wire::pb;

use crate::error::NodeError;

/// How long a ceremony's secret state may wait for its next step.
pub const SESSION_TTL: Duration = Duration::from_secs(600);
/// Most ceremonies a node takes part in at once.
pub const MAX_SESSIONS: usize = 32;

/// Where a ceremony stands on this node, with the secrets the next step needs.
pub(super) enum Stage {
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
    pub(super) fn name(&self) -> &'static str {
        match self {
            Stage::Round1 { .. } => "round 1",
            Stage::Round2 { .. } => "round 2",
            Stage::Confirmed { .. } => "confirmed",
            Stage::RepairHelper { .. } => "repair helper",
            Stage::RepairTarget => "repair target",
        }
    }
}

pub(super) struct Session {
    pub(super) setup: Setup,
    pub(super) expires: Instant,
    /// This node's envelope key for the ceremony, drawn at its start and never
    /// stored: it dies with the session (forward secrecy).
    pub(super) envelope: EnvelopeKey,
    /// This node's signed contribution, to recognise it among those relayed back.
    pub(super) own: pb::Signed,
    /// Peer certificates whose chain this ceremony already checked: each peer's
    /// contribution and confirmation carry the same one.
    pub(super) certificates: VerifiedCertificates,
    pub(super) stage: Stage,
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

    pub(super) fn insert_new(&self, session: Session) -> Result<(), NodeError> {
        let mut map = self.lock();
        Self::purge(&mut map);
        let id = session.setup.ceremony_id().to_string();
        if map.contains_key(&id) {
            return Err(NodeError::CeremonyUnderWay { ceremony_id: id });
        }
        if map.len() >= MAX_SESSIONS {
            return Err(NodeError::TooManyCeremonies);
        }
        map.insert(id, session);
        Ok(())
    }

    pub(super) fn take(&self, ceremony_id: &str) -> Result<Session, NodeError> {
        let mut map = self.lock();
        Self::purge(&mut map);
        map.remove(ceremony_id)
            .ok_or_else(|| NodeError::NoPendingCeremony {
                ceremony_id: ceremony_id.to_string(),
            })
    }

    pub(super) fn put_back(&self, session: Session) {
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
