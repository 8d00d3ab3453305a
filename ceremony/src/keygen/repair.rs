//! Repair: `t` helper nodes rebuild a node's lost share, every delta and sigma
//! sealed end to end (`RepairStart` -> `RepairDeltas` -> `RepairSigma` ->
//! `RepairFinish` on the target).

use std::collections::BTreeMap;

use quorate_ceremony_protocol::setup::{verify_contributions, Setup, SETUP_VERSION};
use quorate_transport::attest::VerifiedCertificates;
use quorate_wire::pb;

use super::relay::{
    agreed_manifest, ceremony_id, check_failure, manifest_participants, reach, rpc, single, step,
    Peer, Run,
};
use crate::ceremony_file::CeremonyFile;
use crate::error::CeremonyError;

/// What a repair rebuilds.
#[derive(Clone, Debug)]
pub struct RepairRequest {
    /// Key id.
    pub key_id: String,
    /// The node whose share is rebuilt.
    pub node: String,
}

/// What a repair did.
#[derive(Clone, Debug)]
pub struct RepairOutcome {
    /// The helpers.
    pub helpers: Vec<String>,
    /// SHA-256 of the manifest the target stored.
    pub manifest_hash: String,
    /// The target's verifying share (hex), as in the manifest.
    pub verifying_share: String,
}

/// Runs a repair: the first `t` reachable holders of the key help rebuild `node`'s
/// share; every delta and sigma travels sealed to its recipient node.
pub async fn run_repair(
    file: &CeremonyFile,
    req: RepairRequest,
) -> Result<RepairOutcome, CeremonyError> {
    quorate_wire::validate_key_id(&req.key_id).map_err(CeremonyError::Request)?;
    let (peers, verifier) = reach(file).await?;
    let target = peers
        .iter()
        .find(|p| p.id == req.node)
        .cloned()
        .ok_or_else(|| {
            CeremonyError::Request(format!(
                "--node {}: the ceremony file lists no such node",
                req.node
            ))
        })?;
    // Helpers are the listed nodes that hold the key (a node dropped by an earlier
    // refresh, or down, answers without it); those holding it must agree on it.
    let others: Vec<Peer> = peers.iter().filter(|p| p.id != req.node).cloned().collect();
    let mut holders = Vec::new();
    for p in &others {
        let request = pb::GetManifestRequest {
            key_id: req.key_id.clone(),
        };
        match rpc(p.client().get_manifest(request)).await {
            Ok(_) => holders.push(p.clone()),
            Err(e) => {
                tracing::warn!(node = %p.id, error = %e, "repair: node does not offer the key; not a helper")
            }
        }
    }
    let manifest = agreed_manifest(&holders, &req.key_id).await?;
    let others = holders;
    let me = manifest.participant(&target.id).ok_or_else(|| {
        CeremonyError::Request(format!(
            "{} holds no share of key {}",
            target.id, req.key_id
        ))
    })?;
    let helpers: Vec<Peer> = others
        .iter()
        .filter(|p| manifest.participant(&p.id).is_some())
        .take(usize::from(manifest.threshold))
        .cloned()
        .collect();
    if helpers.len() < usize::from(manifest.threshold) {
        return Err(CeremonyError::Request(format!(
            "a repair needs {} helpers holding the key; the ceremony file lists {}",
            manifest.threshold,
            helpers.len()
        )));
    }
    let setup = pb::CeremonySetup {
        version: SETUP_VERSION,
        ceremony_id: ceremony_id("repair"),
        kind: pb::CeremonyKind::Repair as i32,
        key_id: req.key_id.clone(),
        ciphersuite: quorate_wire::pb::Ciphersuite::from(manifest.ciphersuite) as i32,
        threshold: u32::from(manifest.threshold),
        participants: manifest_participants(&helpers),
        policy: None,
        created_at: String::new(),
        manifest_hash: manifest.hash.to_vec(),
        repair_target: target.id.clone(),
        escrow: None,
    };
    let setup = Setup::from_pb(setup).map_err(|e| CeremonyError::Request(e.to_string()))?;
    let mut all = helpers.clone();
    all.push(target.clone());
    let run = Run {
        kind: "repair",
        key_id: req.key_id.clone(),
        ceremony_id: setup.ceremony_id().to_string(),
        peers: &all,
    };
    let contributions = match step(&all, |p| {
        let request = pb::RepairStartRequest {
            setup: Some(setup.pb.clone()),
        };
        async move { rpc(p.client().repair_start(request)).await }
    })
    .await
    {
        Ok(c) => c,
        Err(f) => return Err(run.abort("start", f).await),
    };
    let all_ids: Vec<String> = all.iter().map(|p| p.id.clone()).collect();
    if let Err(e) = verify_contributions(
        &verifier,
        &mut VerifiedCertificates::default(),
        &setup,
        &all_ids,
        &contributions,
    ) {
        return Err(run.abort("start", check_failure(e)).await);
    }
    let deltas = match step(&helpers, |p| {
        let request = pb::RepairDeltasRequest {
            ceremony_id: run.ceremony_id.clone(),
            contributions: contributions.clone(),
        };
        async move { rpc(p.client().repair_deltas(request)).await }
    })
    .await
    {
        Ok(d) => d,
        Err(f) => return Err(run.abort("deltas", f).await),
    };
    let mut inbox: BTreeMap<String, Vec<pb::Envelope>> = BTreeMap::new();
    for envelope in deltas.into_iter().flat_map(|r| r.envelopes) {
        inbox
            .entry(envelope.recipient.clone())
            .or_default()
            .push(envelope);
    }
    let sigmas = match step(&helpers, |p| {
        let request = pb::RepairSigmaRequest {
            ceremony_id: run.ceremony_id.clone(),
            envelopes: inbox.get(&p.id).cloned().unwrap_or_default(),
        };
        async move { rpc(p.client().repair_sigma(request)).await }
    })
    .await
    {
        Ok(s) => s,
        Err(f) => return Err(run.abort("sigmas", f).await),
    };
    // Only the target needs the helpers' contributions (their envelope keys and the
    // setup they signed).
    let helper_contributions: Vec<pb::Signed> = contributions[..helpers.len()].to_vec();
    let request = pb::RepairFinishRequest {
        ceremony_id: run.ceremony_id.clone(),
        manifest: manifest.encoded.clone(),
        contributions: helper_contributions,
        envelopes: sigmas,
    };
    match rpc(target.client().repair_finish(request)).await {
        Ok(ack) if ack.manifest_hash == manifest.hash => {}
        Ok(ack) => {
            return Err(run
                .abort(
                    "finish",
                    single(
                        &target.id,
                        format!(
                            "acknowledged manifest hash {}",
                            hex::encode(ack.manifest_hash)
                        ),
                    ),
                )
                .await)
        }
        Err(e) => return Err(run.abort("finish", single(&target.id, e)).await),
    }
    Ok(RepairOutcome {
        helpers: helpers.iter().map(|p| p.id.clone()).collect(),
        manifest_hash: hex::encode(manifest.hash),
        verifying_share: hex::encode(&me.verifying_share),
    })
}
