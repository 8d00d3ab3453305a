//! Distributed key generation: the nodes create a key no one ever holds whole
//! (`quorate-ceremony dkg`; the testnet creates its keys this way).

use quorate_ceremony_protocol::setup::{Setup, SETUP_VERSION};
use quorate_frost::Ciphersuite;
use quorate_wire::pb;

use super::relay::{manifest_participants, reach};
use super::rounds::run_keygen;
use crate::ceremony_file::CeremonyFile;
use crate::error::CeremonyError;
use crate::plan::ceremony_id;
use crate::transcript::{now_rfc3339, Transcript};

/// What a DKG creates.
#[derive(Clone, Debug)]
pub struct DkgRequest {
    /// Key id.
    pub key_id: String,
    /// Ciphersuite.
    pub ciphersuite: Ciphersuite,
    /// Threshold `t`, `2..=n`.
    pub threshold: u16,
    /// The key's policy; `None` for an unrestricted key.
    pub policy: Option<pb::KeyPolicy>,
    /// The key's escrow custodians and threshold, fixed in its manifest; `None`
    /// for a key whose shares cannot be escrowed.
    pub escrow: Option<pb::KeyEscrow>,
}

/// Runs a DKG (see the module docs) and returns its transcript.
pub async fn run_dkg(file: &CeremonyFile, req: DkgRequest) -> Result<Transcript, CeremonyError> {
    let started_at = now_rfc3339()?;
    quorate_wire::validate_key_id(&req.key_id).map_err(CeremonyError::Request)?;
    let n = file.nodes.len();
    if req.threshold < 2 || usize::from(req.threshold) > n {
        return Err(CeremonyError::Request(format!(
            "threshold {} is not within 2..={n} (the ceremony file lists {n} nodes)",
            req.threshold
        )));
    }
    let (peers, verifier) = reach(file).await?;
    let setup = pb::CeremonySetup {
        version: SETUP_VERSION,
        ceremony_id: ceremony_id("dkg"),
        kind: pb::CeremonyKind::Dkg as i32,
        key_id: req.key_id.clone(),
        ciphersuite: quorate_wire::pb::Ciphersuite::from(req.ciphersuite) as i32,
        threshold: u32::from(req.threshold),
        participants: manifest_participants(&peers),
        policy: req.policy.clone(),
        created_at: now_rfc3339()?,
        manifest_hash: Vec::new(),
        repair_target: String::new(),
        escrow: req.escrow.clone(),
    };
    let setup = Setup::from_pb(setup).map_err(|e| CeremonyError::Request(e.to_string()))?;
    run_keygen(
        "DKG",
        setup,
        &peers,
        &peers,
        &verifier,
        None,
        &[],
        started_at,
    )
    .await
}
