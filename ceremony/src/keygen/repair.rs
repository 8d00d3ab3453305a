//! Repair: `t` helper nodes rebuild a node's lost share, every delta and sigma
//! sealed end to end (`RepairStart` -> `RepairDeltas` -> `RepairSigma` ->
//! `RepairFinish` on the target). Planned first ([`plan_repair`]) so that the key's
//! administrators can authorize the exact setup, then run ([`run_repair`]).

use std::collections::BTreeMap;

use quorate_ceremony_protocol::setup::{verify_contributions, Kind, Setup, SETUP_VERSION};
use quorate_transport::attest::VerifiedCertificates;
use quorate_wire::pb;

use super::relay::{
    agreed_manifest, check_failure, manifest_participants, reach, rpc, single, step, Peer, Run,
};
use crate::ceremony_file::CeremonyFile;
use crate::error::CeremonyError;
use crate::plan::{ceremony_id, Plan};

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

/// Plans a repair: the first `t` reachable holders of the key (in ceremony-file
/// order) will help rebuild `node`'s share; fixes the setup (a fresh ceremony id,
/// the current manifest's hash, the helpers, the target).
pub async fn plan_repair(file: &CeremonyFile, req: RepairRequest) -> Result<Plan, CeremonyError> {
    quorate_wire::validate_key_id(&req.key_id).map_err(CeremonyError::Request)?;
    if !file.nodes.iter().any(|n| n.id == req.node) {
        return Err(CeremonyError::Request(format!(
            "--node {}: the ceremony file lists no such node",
            req.node
        )));
    }
    let (peers, _) = reach(file).await?;
    // Helpers are the listed nodes that hold the key (a node dropped by an earlier
    // refresh, or down, answers without it); those holding it must agree on it.
    let holders = holders(&peers, &req.key_id, &req.node).await;
    let manifest = agreed_manifest(&holders, &req.key_id).await?;
    if manifest.participant(&req.node).is_none() {
        return Err(CeremonyError::Request(format!(
            "{} holds no share of key {}",
            req.node, req.key_id
        )));
    }
    let helpers: Vec<Peer> = holders
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
        repair_target: req.node.clone(),
        escrow: None,
    };
    let setup = Setup::from_pb(setup).map_err(|e| CeremonyError::Request(e.to_string()))?;
    Plan::new(setup, manifest).map_err(CeremonyError::Request)
}

/// The nodes of `peers` other than `target` that offer `key_id`.
async fn holders(peers: &[Peer], key_id: &str, target: &str) -> Vec<Peer> {
    let mut holders = Vec::new();
    for p in peers.iter().filter(|p| p.id != target) {
        let request = pb::GetManifestRequest {
            key_id: key_id.to_string(),
        };
        match rpc(p.client().get_manifest(request)).await {
            Ok(_) => holders.push(p.clone()),
            Err(e) => {
                tracing::warn!(node = %p.id, error = %e, "repair: node does not offer the key; not a helper")
            }
        }
    }
    holders
}

/// Runs a planned repair with the administrators' `authorizations` (none for a
/// key without administrators): the plan's helpers rebuild its target's share;
/// every delta and sigma travels sealed to its recipient node. Refused before any
/// node is asked when the key changed since the plan was written or the
/// authorizations would not satisfy the nodes.
pub async fn run_repair(
    file: &CeremonyFile,
    plan: &Plan,
    authorizations: &[Vec<u8>],
) -> Result<RepairOutcome, CeremonyError> {
    let setup = plan.setup().clone();
    if setup.kind != Kind::Repair {
        return Err(CeremonyError::Request(format!(
            "the plan is a {}, not a repair",
            setup.kind.name()
        )));
    }
    let key_id = setup.pb.key_id.clone();
    let (peers, verifier) = reach(file).await?;
    let find = |id: &str| {
        peers.iter().find(|p| p.id == id).cloned().ok_or_else(|| {
            CeremonyError::Request(format!(
                "the plan needs {id}, which the ceremony file does not list"
            ))
        })
    };
    let target = find(&setup.pb.repair_target)?;
    let helpers = setup
        .participant_ids()
        .iter()
        .map(|id| find(id))
        .collect::<Result<Vec<Peer>, _>>()?;
    let manifest = agreed_manifest(&helpers, &key_id).await?;
    if manifest.hash.as_slice() != setup.pb.manifest_hash.as_slice() {
        return Err(CeremonyError::KeyState {
            key_id,
            message: format!(
                "the plan is for manifest {}, but the helpers hold {}: the key changed since \
                 the plan was written; plan again",
                hex::encode(&setup.pb.manifest_hash),
                hex::encode(manifest.hash)
            ),
        });
    }
    plan.check_authorizations(&manifest, authorizations)?;
    let me = manifest.participant(&target.id).ok_or_else(|| {
        CeremonyError::Request(format!("{} holds no share of key {key_id}", target.id))
    })?;
    let mut all = helpers.clone();
    all.push(target.clone());
    let run = Run {
        kind: "repair",
        key_id: key_id.clone(),
        ceremony_id: setup.ceremony_id().to_string(),
        peers: &all,
    };
    let contributions = match step(&all, |p| {
        let request = pb::RepairStartRequest {
            setup: Some(setup.pb.clone()),
            authorizations: authorizations.to_vec(),
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
        authorizations: authorizations.to_vec(),
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
