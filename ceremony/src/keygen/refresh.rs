//! Refresh: new shares of an existing key among its nodes (same group key),
//! optionally dropping one node, which then retires its share, and optionally
//! changing the key's policy or escrow custodians. Planned first ([`plan_refresh`])
//! so that the key's administrators can authorize the exact setup, then run
//! ([`run_refresh`]).

use pb::refresh_state_response::State;
use quorate_ceremony_protocol::setup::{Setup, SETUP_VERSION};
use quorate_keys::manifest::Manifest;
use quorate_wire::pb;

use super::relay::{agreed_manifest, manifest_participants, reach, rpc, step, step_abort, Peer};
use super::rounds::run_keygen;
use super::rounds::transcript;
use crate::ceremony_file::CeremonyFile;
use crate::error::CeremonyError;
use crate::plan::{ceremony_id, Plan};
use crate::transcript::{now_rfc3339, Transcript};

/// What a refresh changes.
#[derive(Clone, Debug, Default)]
pub struct RefreshRequest {
    /// Key id.
    pub key_id: String,
    /// A node to drop from the key (its share is deleted).
    pub remove_node: Option<String>,
    /// The key's new policy (`None`: kept).
    pub policy: Option<pb::KeyPolicy>,
    /// The key's new escrow custodians and threshold (`None`: kept).
    pub escrow: Option<pb::KeyEscrow>,
}

/// Plans a refresh: reaches the key's nodes (the ceremony file must list exactly
/// them), checks they agree on the key, and fixes the setup (a fresh ceremony id,
/// the current manifest's hash, the nodes that keep a share, any change of terms).
pub async fn plan_refresh(file: &CeremonyFile, req: RefreshRequest) -> Result<Plan, CeremonyError> {
    quorate_wire::validate_key_id(&req.key_id).map_err(CeremonyError::Request)?;
    if let Some(r) = &req.remove_node {
        if !file.nodes.iter().any(|n| &n.id == r) {
            return Err(CeremonyError::Request(format!(
                "--remove-node {r}: the ceremony file lists no such node"
            )));
        }
    }
    let (peers, _) = reach(file).await?;
    let manifest = agreed_manifest(&peers, &req.key_id).await?;
    check_lists_the_key_nodes(&manifest, &peers)?;
    let remaining: Vec<Peer> = peers
        .iter()
        .filter(|p| Some(&p.id) != req.remove_node.as_ref())
        .cloned()
        .collect();
    if remaining.len() < usize::from(manifest.threshold) {
        return Err(CeremonyError::Request(format!(
            "removing a node would leave {} nodes, fewer than the threshold {}",
            remaining.len(),
            manifest.threshold
        )));
    }
    let setup = pb::CeremonySetup {
        version: SETUP_VERSION,
        ceremony_id: ceremony_id("refresh"),
        kind: pb::CeremonyKind::Refresh as i32,
        key_id: req.key_id.clone(),
        ciphersuite: quorate_wire::pb::Ciphersuite::from(manifest.ciphersuite) as i32,
        threshold: u32::from(manifest.threshold),
        participants: manifest_participants(&remaining),
        policy: req.policy,
        created_at: String::new(),
        manifest_hash: manifest.hash.to_vec(),
        repair_target: String::new(),
        escrow: req.escrow,
    };
    let setup = Setup::from_pb(setup).map_err(|e| CeremonyError::Request(e.to_string()))?;
    Plan::new(setup, manifest).map_err(CeremonyError::Request)
}

/// Runs a planned refresh with the administrators' `authorizations` (none for a
/// key without administrators): new shares for the same group key among the
/// plan's nodes, then the node the plan leaves out (if any) retires its share.
/// Refused before any node changes anything when the authorizations would not
/// satisfy the nodes, or when no node holds a share of this refresh and the key
/// changed since the plan was written. Run again after an interruption, it
/// finishes or rolls back what the interrupted run left (see the module docs of
/// `keygen` and docs/ceremony.md, "An interrupted refresh").
pub async fn run_refresh(
    file: &CeremonyFile,
    plan: &Plan,
    authorizations: &[Vec<u8>],
) -> Result<Transcript, CeremonyError> {
    let started_at = now_rfc3339()?;
    let setup = plan.setup().clone();
    if setup.kind != quorate_ceremony_protocol::setup::Kind::Refresh {
        return Err(CeremonyError::Request(format!(
            "the plan is a {}, not a refresh",
            setup.kind.name()
        )));
    }
    let (peers, verifier) = reach(file).await?;
    // The plan holds the key as it was planned (its hash is the setup's).
    check_lists_the_key_nodes(plan.manifest(), &peers)?;
    plan.check_authorizations(plan.manifest(), authorizations)?;
    let (remaining, removed): (Vec<Peer>, Vec<Peer>) =
        peers.iter().cloned().partition(|p| setup.involves(&p.id));
    // A rerun of this plan picks up where an interrupted run left the nodes.
    let states = refresh_states(&setup, &remaining).await?;
    let of = |state: State| -> Vec<Peer> {
        states
            .iter()
            .filter(|(_, s)| s.state() == state)
            .map(|(p, _)| p.clone())
            .collect()
    };
    let (unstaged, staged, committed) = (of(State::None), of(State::Staged), of(State::Committed));
    // A node committed (every participant had signed a receipt: never roll back;
    // commit the rest with the receipts that node committed with), or every node
    // stored its new share: finish.
    if !committed.is_empty() || (!staged.is_empty() && unstaged.is_empty()) {
        return resume(
            &setup,
            &remaining,
            &removed,
            states,
            authorizations,
            started_at,
        )
        .await;
    }
    if !staged.is_empty() {
        // Some stored their new share, some did not, and no one committed: roll
        // back (on the abandonment of one that did not).
        return Err(roll_back(&setup, &unstaged, &staged, authorizations, Vec::new()).await);
    }
    let manifest = agreed_manifest(&peers, &setup.pb.key_id).await?;
    if manifest.hash.as_slice() != setup.pb.manifest_hash.as_slice() {
        return Err(CeremonyError::KeyState {
            key_id: setup.pb.key_id.clone(),
            message: format!(
                "the plan is for manifest {}, but the nodes hold {}: the key changed since \
                 the plan was written; plan again",
                hex::encode(&setup.pb.manifest_hash),
                hex::encode(manifest.hash)
            ),
        });
    }
    // Nothing stored anywhere: start afresh (a session an interrupted run left on a
    // node is dropped first).
    let _ = step_abort(
        &remaining,
        pb::AbortRequest {
            ceremony_id: setup.ceremony_id().to_string(),
            reason: "the refresh starts afresh".into(),
        },
    )
    .await;
    run_keygen(
        "refresh",
        setup,
        &remaining,
        &removed,
        &verifier,
        Some(&manifest),
        authorizations,
        started_at,
    )
    .await
}

/// The ceremony file must list exactly the key's current nodes: those a refresh
/// keeps and the one it may remove.
fn check_lists_the_key_nodes(manifest: &Manifest, peers: &[Peer]) -> Result<(), CeremonyError> {
    let mut names = manifest.participant_ids();
    let mut listed: Vec<&str> = peers.iter().map(|p| p.id.as_str()).collect();
    names.sort_unstable();
    listed.sort_unstable();
    if names != listed {
        return Err(CeremonyError::Request(format!(
            "the ceremony file must list exactly the key's nodes [{}]; it lists [{}]",
            names.join(", "),
            listed.join(", ")
        )));
    }
    Ok(())
}

/// Where each of `peers` stands in the refresh `setup`.
async fn refresh_states(
    setup: &Setup,
    peers: &[Peer],
) -> Result<Vec<(Peer, pb::RefreshStateResponse)>, CeremonyError> {
    let answers = step(peers, |p| {
        let request = pb::RefreshStateRequest {
            setup: Some(setup.pb.clone()),
        };
        async move { rpc(p.client().refresh_state(request)).await }
    })
    .await
    .map_err(|failures| CeremonyError::Aborted {
        kind: "refresh",
        key_id: setup.pb.key_id.clone(),
        step: "asking each node where the refresh stands (nothing was changed)",
        failures,
    })?;
    Ok(peers.iter().cloned().zip(answers).collect())
}

/// Finishes a refresh that every node stored, or some node committed: commits on
/// the nodes that staged their share (with the receipts a committed node holds,
/// or every node's own) and retires a removed node. A node without a share of it
/// (wiped since, or lying) is named, to be repaired once the others committed.
async fn resume(
    setup: &Setup,
    remaining: &[Peer],
    removed: &[Peer],
    states: Vec<(Peer, pb::RefreshStateResponse)>,
    authorizations: &[Vec<u8>],
    started_at: String,
) -> Result<Transcript, CeremonyError> {
    let key_state = |message: String| CeremonyError::KeyState {
        key_id: setup.pb.key_id.clone(),
        message,
    };
    let holding: Vec<&(Peer, pb::RefreshStateResponse)> = states
        .iter()
        .filter(|(_, s)| s.state() != State::None)
        .collect();
    let Some((_, first)) = holding.first() else {
        return Err(key_state("no node holds a share of this refresh".into()));
    };
    if holding.iter().any(|(_, s)| s.manifest != first.manifest) {
        return Err(key_state(
            "the nodes stored different manifests for one refresh; nothing was committed".into(),
        ));
    }
    let manifest = Manifest::decode(&first.manifest)
        .map_err(|e| key_state(format!("a node's refreshed manifest: {e}")))?;
    // A committed node's receipts are every participant's; otherwise every node
    // staged and each answered with its own.
    let receipts: Vec<pb::Signed> =
        match holding.iter().find(|(_, s)| s.state() == State::Committed) {
            Some((_, s)) => s.receipts.clone(),
            None => states
                .iter()
                .filter_map(|(_, s)| s.receipt.clone())
                .collect(),
        };
    let to_commit: Vec<Peer> = holding.iter().map(|(p, _)| p.clone()).collect();
    // A node without a share of this refresh may hold the refreshed key anyway
    // (repaired onto it since); only the others are missing.
    let mut missing = Vec::new();
    for (p, s) in &states {
        if s.state() != State::None {
            continue;
        }
        let request = pb::GetManifestRequest {
            key_id: setup.pb.key_id.clone(),
        };
        let holds_new = rpc(p.client().get_manifest(request))
            .await
            .is_ok_and(|nk| quorate_wire::sha256(&nk.manifest) == manifest.hash);
        if !holds_new {
            missing.push(p.id.as_str());
        }
    }
    tracing::info!(key_id = %setup.pb.key_id, ceremony_id = %setup.ceremony_id(), "refresh: finishing an interrupted run");
    commit_and_retire(
        setup,
        &to_commit,
        removed,
        &manifest,
        &receipts,
        authorizations,
    )
    .await?;
    if !missing.is_empty() {
        return Err(key_state(format!(
            "the refresh is committed on [{}]; [{}] hold no share of it (wiped since they \
             stored it?): repair them (quorate-ceremony repair)",
            to_commit
                .iter()
                .map(|p| p.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            missing.join(", ")
        )));
    }
    transcript(
        "refresh",
        setup,
        remaining,
        &manifest,
        None,
        &[],
        started_at,
    )
}

/// Commits a refresh on `peers` (each with every receipt), then has each of
/// `retire` (nodes the refresh removes) delete its share.
pub(super) async fn commit_and_retire(
    setup: &Setup,
    peers: &[Peer],
    retire: &[Peer],
    manifest: &Manifest,
    receipts: &[pb::Signed],
    authorizations: &[Vec<u8>],
) -> Result<(), CeremonyError> {
    let key_id = setup.pb.key_id.clone();
    let committed = step(peers, |p| {
        let request = pb::DkgCommitRequest {
            setup: Some(setup.pb.clone()),
            manifest: manifest.encoded.clone(),
            receipts: receipts.to_vec(),
        };
        async move { rpc(p.client().dkg_commit(request)).await }
    })
    .await;
    if let Err(failures) = committed {
        let failed = failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(CeremonyError::KeyState {
            key_id,
            message: format!(
                "every node stored its new share, but the commit failed on: {failed}; the \
                 key signs with the nodes' current shares meanwhile; run the same command again \
                 to commit the rest"
            ),
        });
    }
    for p in retire {
        let request = pb::RetireKeyRequest {
            ceremony_id: setup.ceremony_id().to_string(),
            setup: Some(setup.pb.clone()),
            manifest: manifest.encoded.clone(),
            authorizations: authorizations.to_vec(),
            receipts: receipts.to_vec(),
        };
        let answer =
            tokio::time::timeout(crate::connect::RPC_TIMEOUT, p.client().retire_key(request))
                .await
                .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("RetireKey timed out")));
        match answer {
            Ok(_) => tracing::info!(node = %p.id, "refresh: removed node retired its share"),
            // Retired by an earlier run of this refresh.
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => {
                let e = crate::connect::describe_status(&status);
                return Err(CeremonyError::KeyState {
                    key_id,
                    message: format!(
                        "the refresh succeeded without {}, but {} did not delete its old share \
                         ({e}); run the same command again, or delete the node's store",
                        p.id, p.id
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Rolls a refresh back: one of `unstaged` (nodes without a new share) abandons it,
/// and each of `staged` drops its staged share on that abandonment. Returns the
/// error that says what happened (the key keeps its current shares either way).
pub(super) async fn roll_back(
    setup: &Setup,
    unstaged: &[Peer],
    staged: &[Peer],
    authorizations: &[Vec<u8>],
    failures: Vec<crate::error::NodeFailure>,
) -> CeremonyError {
    let key_id = setup.pb.key_id.clone();
    let why = if failures.is_empty() {
        String::new()
    } else {
        format!(
            " (it failed on: {})",
            failures
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    let mut abandonment = None;
    let mut refusals = Vec::new();
    for p in unstaged {
        let request = pb::AbandonRefreshRequest {
            setup: Some(setup.pb.clone()),
            authorizations: authorizations.to_vec(),
        };
        match rpc(p.client().abandon_refresh(request)).await {
            Ok(signed) => {
                abandonment = Some(signed);
                break;
            }
            Err(e) => refusals.push(format!("{}: {e}", p.id)),
        }
    }
    let names = |ps: &[Peer]| {
        ps.iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(abandonment) = abandonment else {
        return CeremonyError::KeyState {
            key_id,
            message: format!(
                "the refresh was interrupted{why}: [{}] stored their new share, [{}] did not \
                 and none of them could abandon it ({}); the key signs with its current shares; \
                 run the same command again once they answer, to roll it back",
                names(staged),
                names(unstaged),
                refusals.join("; ")
            ),
        };
    };
    let dropped = step(staged, |p| {
        let request = pb::RollbackRefreshRequest {
            setup: Some(setup.pb.clone()),
            abandonment: Some(abandonment.clone()),
        };
        async move { rpc(p.client().rollback_refresh(request)).await }
    })
    .await;
    let outcome = match dropped {
        Ok(_) => format!(
            "rolled back: [{}] dropped the new share they had stored",
            names(staged)
        ),
        Err(f) => format!(
            "partly rolled back ({}); run the same command again to finish the rollback",
            f.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
    };
    CeremonyError::KeyState {
        key_id,
        message: format!(
            "the refresh could not complete{why} and was {outcome}; the key keeps its current \
             shares; plan a new refresh"
        ),
    }
}
