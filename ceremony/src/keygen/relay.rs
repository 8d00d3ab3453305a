//! The relay steps every key ceremony shares: reaching the peers, calling one node
//! with the RPC timeout, running a step on all peers at once, and aborting the
//! ceremony on every node when a step fails. Used by DKG, refresh and repair.

use std::future::Future;
use std::sync::Arc;

use futures::future::join_all;
use quorate_ceremony_protocol::setup;
use quorate_keys::manifest::Manifest;
use quorate_transport::attest::StatementVerifier;
use quorate_wire::pb;
use quorate_wire::pb::ceremony_client::CeremonyClient;
use tonic::transport::Channel;

use crate::ceremony_file::CeremonyFile;
use crate::connect::{describe_status, precheck, Reached, RPC_TIMEOUT};
use crate::error::{CeremonyError, NodeFailure};

/// A node in a running ceremony.
#[derive(Clone)]
pub(super) struct Peer {
    pub(super) id: String,
    pub(super) endpoint: String,
    pub(super) region: String,
    pub(super) jurisdiction: String,
    pub(super) channel: Channel,
    pub(super) fingerprint: Option<String>,
}

impl Peer {
    pub(super) fn client(&self) -> CeremonyClient<Channel> {
        CeremonyClient::new(self.channel.clone())
    }
}

pub(super) async fn rpc<T, Fut>(call: Fut) -> Result<T, String>
where
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    match tokio::time::timeout(RPC_TIMEOUT, call).await {
        Err(_) => Err(format!("timed out after {RPC_TIMEOUT:?}")),
        Ok(Err(status)) => Err(describe_status(&status)),
        Ok(Ok(response)) => Ok(response.into_inner()),
    }
}

/// Runs one step on `peers` concurrently; all results or every failure.
pub(super) async fn step<T, F, Fut>(peers: &[Peer], f: F) -> Result<Vec<T>, Vec<NodeFailure>>
where
    F: Fn(Peer) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let results = join_all(peers.iter().cloned().map(&f)).await;
    let mut ok = Vec::new();
    let mut failures = Vec::new();
    for (peer, result) in peers.iter().zip(results) {
        match result {
            Ok(v) => ok.push(v),
            Err(reason) => failures.push(NodeFailure {
                node_id: peer.id.clone(),
                reason,
            }),
        }
    }
    if failures.is_empty() {
        Ok(ok)
    } else {
        Err(failures)
    }
}

/// A running ceremony: aborts itself on every node when it fails.
pub(super) struct Run<'a> {
    pub(super) kind: &'static str,
    pub(super) key_id: String,
    pub(super) ceremony_id: String,
    pub(super) peers: &'a [Peer],
}

impl Run<'_> {
    pub(super) async fn abort(
        &self,
        step: &'static str,
        failures: Vec<NodeFailure>,
    ) -> CeremonyError {
        let reason = failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        tracing::error!(ceremony_id = %self.ceremony_id, step, %reason, "ceremony failed; aborting on every node");
        let request = pb::AbortRequest {
            ceremony_id: self.ceremony_id.clone(),
            reason: format!("{step}: {reason}"),
        };
        let _ = step_abort(self.peers, request).await;
        CeremonyError::Aborted {
            kind: self.kind,
            key_id: self.key_id.clone(),
            step,
            failures,
        }
    }
}

pub(super) async fn step_abort(
    peers: &[Peer],
    request: pb::AbortRequest,
) -> Result<Vec<pb::AbortResponse>, Vec<NodeFailure>> {
    step(peers, |p| {
        let request = request.clone();
        async move { rpc(p.client().abort(request)).await }
    })
    .await
}

pub(super) fn single(party: &str, reason: impl Into<String>) -> Vec<NodeFailure> {
    vec![NodeFailure {
        node_id: party.to_string(),
        reason: reason.into(),
    }]
}

pub(super) fn check_failure(e: setup::CeremonyCheckError) -> Vec<NodeFailure> {
    match e {
        setup::CeremonyCheckError::Party { party, reason } => single(&party, reason),
        other => single("ceremony", other.to_string()),
    }
}

pub(super) async fn reach(
    file: &CeremonyFile,
) -> Result<(Vec<Peer>, StatementVerifier), CeremonyError> {
    let tls = Arc::new(file.check()?);
    let verifier = tls
        .statement_verifier()
        .map_err(|e| CeremonyError::Config {
            path: file.source.clone(),
            message: format!("tls.ca: {e}"),
        })?;
    let reached: Vec<Reached> = precheck(file, &tls).await?;
    let peers = file
        .nodes
        .iter()
        .zip(reached)
        .map(|(n, r)| Peer {
            id: n.id.clone(),
            endpoint: n.endpoint.clone(),
            region: n.region.clone(),
            jurisdiction: n.jurisdiction.clone(),
            channel: r.channel,
            fingerprint: r.fingerprint,
        })
        .collect();
    Ok((peers, verifier))
}

pub(super) fn manifest_participants(peers: &[Peer]) -> Vec<pb::ManifestParticipant> {
    peers
        .iter()
        .map(|p| pb::ManifestParticipant {
            node_id: p.id.clone(),
            region: p.region.clone(),
            jurisdiction: p.jurisdiction.clone(),
        })
        .collect()
}

/// Every node's manifest of `key_id`; fails unless all of `peers` report the same.
pub(super) async fn agreed_manifest(
    peers: &[Peer],
    key_id: &str,
) -> Result<Manifest, CeremonyError> {
    let manifests = step(peers, |p| {
        let key_id = key_id.to_string();
        async move {
            let nk = rpc(p.client().get_manifest(pb::GetManifestRequest { key_id })).await?;
            Manifest::decode(&nk.manifest).map_err(|e| e.to_string())
        }
    })
    .await
    .map_err(|failures| CeremonyError::KeyState {
        key_id: key_id.to_string(),
        message: format!(
            "cannot read the key's manifest from every node:{}",
            failures
                .iter()
                .map(|f| format!("\n  - {f}"))
                .collect::<String>()
        ),
    })?;
    let first = manifests
        .first()
        .ok_or_else(|| CeremonyError::Request("no nodes".into()))?
        .clone();
    for (peer, m) in peers.iter().zip(&manifests) {
        if m.hash != first.hash {
            return Err(CeremonyError::KeyState {
                key_id: key_id.to_string(),
                message: format!(
                    "{} holds manifest {}, {} holds {}; the nodes disagree about the key",
                    peer.id,
                    hex::encode(m.hash),
                    peers[0].id,
                    hex::encode(first.hash)
                ),
            });
        }
    }
    Ok(first)
}
