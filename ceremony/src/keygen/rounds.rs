//! The DKG rounds, shared by DKG and refresh: round 1 (signed contributions),
//! round 2 (sealed packages relayed), round 3 (signed confirmations), the manifest
//! checked against every confirmation, activation on every node (each answering
//! with its receipt; a refresh's shares are staged, then committed with every
//! receipt, or rolled back when a node could not store its own), retiring a
//! removed node's share with those receipts, and the transcript that records it
//! all.

use std::collections::BTreeMap;

use prost::Message;
use quorate_ceremony_protocol::setup::{
    build_manifest, verify_confirmations, verify_contributions, verify_receipts, Setup,
};
use quorate_keys::manifest::Manifest;
use quorate_transport::attest::{StatementVerifier, VerifiedCertificates};
use quorate_wire::pb;

use super::refresh::{commit_and_retire, roll_back};
use super::relay::{check_failure, rpc, single, step, step_abort, Peer, Run};
use crate::error::CeremonyError;
use crate::transcript::{
    now_rfc3339, Transcript, TranscriptConfirmation, TranscriptParticipant, TRANSCRIPT_FORMAT,
};

#[allow(clippy::too_many_arguments)]
pub(super) async fn run_keygen(
    kind: &'static str,
    setup: Setup,
    peers: &[Peer],
    retire: &[Peer],
    verifier: &StatementVerifier,
    previous: Option<&Manifest>,
    authorizations: &[Vec<u8>],
    started_at: String,
) -> Result<Transcript, CeremonyError> {
    let ids = setup.participant_ids();
    let run = Run {
        kind,
        key_id: setup.pb.key_id.clone(),
        ceremony_id: setup.ceremony_id().to_string(),
        peers,
    };
    let retire: Vec<Peer> = retire
        .iter()
        .filter(|p| !ids.contains(&p.id))
        .cloned()
        .collect();
    tracing::info!(ceremony_id = %run.ceremony_id, key_id = %run.key_id, nodes = peers.len(), "{kind}: round 1");
    // Each node's contribution and confirmation carry the same certificate.
    let mut certificates = VerifiedCertificates::default();

    // Round 1: contributions.
    let contributions = match step(peers, |p| {
        let request = pb::DkgRound1Request {
            setup: Some(setup.pb.clone()),
            authorizations: authorizations.to_vec(),
        };
        async move { rpc(p.client().dkg_round1(request)).await }
    })
    .await
    {
        Ok(c) => c,
        Err(f) => return Err(run.abort("round 1", f).await),
    };
    if let Err(e) = verify_contributions(verifier, &mut certificates, &setup, &ids, &contributions)
    {
        return Err(run.abort("round 1", check_failure(e)).await);
    }

    // Round 2: every contribution to every node; sealed packages back.
    let round2 = match step(peers, |p| {
        let request = pb::DkgRound2Request {
            ceremony_id: run.ceremony_id.clone(),
            contributions: contributions.clone(),
        };
        async move { rpc(p.client().dkg_round2(request)).await }
    })
    .await
    {
        Ok(r) => r,
        Err(f) => return Err(run.abort("round 2", f).await),
    };
    let mut inbox: BTreeMap<String, Vec<pb::Envelope>> = BTreeMap::new();
    for envelope in round2.into_iter().flat_map(|r| r.envelopes) {
        inbox
            .entry(envelope.recipient.clone())
            .or_default()
            .push(envelope);
    }

    // Round 3: each node's envelopes; signed confirmations back.
    let confirmations = match step(peers, |p| {
        let request = pb::DkgRound3Request {
            ceremony_id: run.ceremony_id.clone(),
            envelopes: inbox.get(&p.id).cloned().unwrap_or_default(),
        };
        async move { rpc(p.client().dkg_round3(request)).await }
    })
    .await
    {
        Ok(c) => c,
        Err(f) => return Err(run.abort("round 3", f).await),
    };

    // The manifest, from the setup and the first node's public key package; every
    // confirmation must name its hash.
    let first = match confirmations
        .first()
        .map(|s| pb::Confirmation::decode(s.body.as_slice()))
    {
        Some(Ok(c)) => c,
        _ => {
            return Err(run
                .abort(
                    "confirmation",
                    single(&ids[0], "confirmation does not decode"),
                )
                .await)
        }
    };
    let manifest = match build_manifest(&setup, previous, first.public_key_package.clone()) {
        Ok(m) => m,
        Err(e) => return Err(run.abort("confirmation", check_failure(e)).await),
    };
    let expected = pb::Confirmation {
        setup_hash: setup.hash.to_vec(),
        node_id: "the ceremony".into(),
        round1_transcript_hash: first.round1_transcript_hash.clone(),
        group_public_key: manifest.public_key.public_key.clone(),
        manifest_hash: manifest.hash.to_vec(),
        public_key_package: Vec::new(),
    };
    if let Err(e) =
        verify_confirmations(verifier, &mut certificates, &ids, &expected, &confirmations)
    {
        return Err(run.abort("confirmation", check_failure(e)).await);
    }
    if let Some(prev) = previous {
        if prev.public_key.verifying_key != manifest.public_key.verifying_key {
            return Err(run
                .abort(
                    "confirmation",
                    single("ceremony", "the refresh changed the group key"),
                )
                .await);
        }
    }

    // Activation: every node checks every confirmation itself, stores the key and
    // answers with its receipt.
    let acks = step(peers, |p| {
        let request = pb::DkgActivateRequest {
            ceremony_id: run.ceremony_id.clone(),
            manifest: manifest.encoded.clone(),
            confirmations: confirmations.clone(),
        };
        let expected = manifest.hash;
        async move {
            let ack = rpc(p.client().dkg_activate(request)).await?;
            if ack.manifest_hash != expected {
                return Err(format!(
                    "acknowledged manifest hash {}, expected {}",
                    hex::encode(&ack.manifest_hash),
                    hex::encode(expected)
                ));
            }
            ack.receipt
                .ok_or_else(|| "activated without a receipt (an older node?)".to_string())
        }
    })
    .await;
    let receipts = match acks {
        Ok(receipts) => receipts,
        Err(failures) => {
            // Nodes that activated keep what they stored; those that did not drop
            // their state (and so can never store their share of this ceremony).
            let _ = step_abort(
                peers,
                pb::AbortRequest {
                    ceremony_id: run.ceremony_id.clone(),
                    reason: "activation failed on another node".into(),
                },
            )
            .await;
            if previous.is_some() {
                // A refresh: the nodes that staged their new share drop it again, on
                // the abandonment of one that did not. The key keeps its shares.
                let failed: Vec<Peer> = peers
                    .iter()
                    .filter(|p| failures.iter().any(|f| f.node_id == p.id))
                    .cloned()
                    .collect();
                let staged: Vec<Peer> = peers
                    .iter()
                    .filter(|p| !failures.iter().any(|f| f.node_id == p.id))
                    .cloned()
                    .collect();
                return Err(roll_back(&setup, &failed, &staged, authorizations, failures).await);
            }
            return Err(CeremonyError::Aborted {
                kind,
                key_id: run.key_id.clone(),
                step: "activation (nodes not listed here did activate)",
                failures,
            });
        }
    };
    if let Err(e) = verify_receipts(
        verifier,
        &mut certificates,
        &ids,
        &setup.hash,
        &manifest.hash,
        &receipts,
    ) {
        return Err(CeremonyError::KeyState {
            key_id: run.key_id.clone(),
            message: format!(
                "every node activated, but a receipt does not verify ({e}); nothing was committed or retired"
            ),
        });
    }
    if previous.is_some() {
        commit_and_retire(&setup, peers, &retire, &manifest, &receipts, authorizations).await?;
    }

    transcript(
        kind,
        &setup,
        peers,
        &manifest,
        Some(&first.round1_transcript_hash),
        &confirmations,
        started_at,
    )
}

/// The transcript of a ceremony that produced `manifest` (a resumed refresh has
/// no round-1 transcript hash or confirmations to record: the run that made them
/// was interrupted).
pub(super) fn transcript(
    kind: &'static str,
    setup: &Setup,
    peers: &[Peer],
    manifest: &Manifest,
    round1_transcript_hash: Option<&[u8]>,
    confirmations: &[pb::Signed],
    started_at: String,
) -> Result<Transcript, CeremonyError> {
    let participants = peers
        .iter()
        .map(|p| {
            let m = manifest.participant(&p.id).ok_or_else(|| {
                CeremonyError::Request(format!("{} missing from the manifest", p.id))
            })?;
            Ok(TranscriptParticipant {
                node_id: p.id.clone(),
                endpoint: p.endpoint.clone(),
                region: p.region.clone(),
                jurisdiction: p.jurisdiction.clone(),
                identifier: hex::encode(&m.identifier),
                verifying_share: hex::encode(&m.verifying_share),
                certificate_fingerprint: p.fingerprint.clone(),
            })
        })
        .collect::<Result<Vec<_>, CeremonyError>>()?;
    let (policy, escrow) = pb::KeyManifest::decode(manifest.encoded.as_slice())
        .map(|m| crate::transcript::readable_terms(&m))
        .unwrap_or_default();
    let confirmations = confirmations
        .iter()
        .map(|s| TranscriptConfirmation {
            node_id: pb::Confirmation::decode(s.body.as_slice())
                .map(|c| c.node_id)
                .unwrap_or_default(),
            body: hex::encode(&s.body),
            certificate: hex::encode(&s.certificate),
            scheme: s.scheme,
            signature: hex::encode(&s.signature),
        })
        .collect();
    Ok(Transcript {
        format: TRANSCRIPT_FORMAT.to_string(),
        kind: kind.to_ascii_lowercase(),
        key_id: manifest.key_id.clone(),
        ciphersuite: manifest.ciphersuite.name().to_string(),
        threshold: manifest.threshold,
        participants,
        public_key: hex::encode(&manifest.public_key.public_key),
        public_key_package: hex::encode(&manifest.public_key_package),
        manifest: hex::encode(&manifest.encoded),
        manifest_hash: hex::encode(manifest.hash),
        started_at,
        finished_at: now_rfc3339()?,
        ceremony_id: Some(setup.ceremony_id().to_string()),
        setup_hash: Some(hex::encode(setup.hash)),
        round1_transcript_hash: round1_transcript_hash.map(hex::encode),
        policy,
        escrow,
        confirmations,
    })
}
