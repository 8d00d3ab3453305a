//! `transcript verify`: re-checks a ceremony's transcript against the live nodes
//! and the CA.

use std::sync::Arc;

use prost::Message;
use quorate_ceremony_protocol::setup;
use quorate_keys::manifest::Manifest;
use quorate_wire::pb;
use quorate_wire::pb::ceremony_client::CeremonyClient;

use super::relay::rpc;
use crate::ceremony_file::CeremonyFile;
use crate::custodians_file::CustodiansFile;
use crate::error::CeremonyError;
use crate::transcript::Transcript;

/// Re-checks a transcript against the live nodes: every participant must hold the
/// transcript's manifest, with its group key, verifying shares and participants,
/// and the recorded confirmations must verify under the CA. The transcript's
/// readable escrow custodians (and policy, if it records one) must be its
/// manifest's: a ceremony could otherwise show custodians honest JSON while the
/// nodes hold others. With `custodians` (what the key's custodians expect, from
/// their custodians file), the manifest's custodians and threshold must be exactly
/// those. Returns every mismatch (empty: the transcript matches).
pub async fn verify_transcript(
    file: &CeremonyFile,
    transcript: &Transcript,
    custodians: Option<&pb::KeyEscrow>,
) -> Result<Vec<String>, CeremonyError> {
    let tls = Arc::new(file.check()?);
    let verifier = tls
        .statement_verifier()
        .map_err(|e| CeremonyError::Config {
            path: file.source.clone(),
            message: format!("tls.ca: {e}"),
        })?;
    let mut problems = Vec::new();
    let manifest_bytes = hex::decode(&transcript.manifest).unwrap_or_default();
    if hex::encode(quorate_wire::sha256(&manifest_bytes)) != transcript.manifest_hash {
        problems.push("transcript: manifest_hash is not the SHA-256 of its manifest".to_string());
    }
    match Manifest::decode(&manifest_bytes) {
        Err(e) => problems.push(format!("transcript: manifest does not decode: {e}")),
        Ok(m) => {
            if hex::encode(&m.public_key.public_key) != transcript.public_key {
                problems.push("transcript: public_key differs from its manifest's".into());
            }
            let stored = pb::KeyManifest::decode(manifest_bytes.as_slice()).unwrap_or_default();
            problems.extend(terms_problems(transcript, &stored, custodians));
        }
    }
    for c in &transcript.confirmations {
        let signed = pb::Signed {
            body: hex::decode(&c.body).unwrap_or_default(),
            certificate: hex::decode(&c.certificate).unwrap_or_default(),
            scheme: c.scheme,
            signature: hex::decode(&c.signature).unwrap_or_default(),
        };
        if let Err(e) = verifier.verify(&signed, setup::CONFIRMATION, &c.node_id) {
            problems.push(format!(
                "{}: recorded confirmation does not verify: {e}",
                c.node_id
            ));
            continue;
        }
        match pb::Confirmation::decode(signed.body.as_slice()) {
            Ok(body) if hex::encode(&body.manifest_hash) == transcript.manifest_hash => {}
            _ => problems.push(format!(
                "{}: recorded confirmation is for another manifest",
                c.node_id
            )),
        }
    }
    let want_ids: Vec<&str> = transcript
        .participants
        .iter()
        .map(|p| p.node_id.as_str())
        .collect();
    for p in &transcript.participants {
        let Some(node) = file.nodes.iter().find(|n| n.id == p.node_id) else {
            problems.push(format!(
                "{}: not in the ceremony file; cannot reach it",
                p.node_id
            ));
            continue;
        };
        let channel =
            match tls.node_channel(&node.endpoint, &node.id, std::time::Duration::from_secs(5)) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(format!("{}: {e}", p.node_id));
                    continue;
                }
            };
        let live = match rpc(
            CeremonyClient::new(channel).get_manifest(pb::GetManifestRequest {
                key_id: transcript.key_id.clone(),
            }),
        )
        .await
        {
            Ok(nk) => nk.manifest,
            Err(e) => {
                problems.push(format!(
                    "{}: cannot read key {}: {e}",
                    p.node_id, transcript.key_id
                ));
                continue;
            }
        };
        let hash = hex::encode(quorate_wire::sha256(&live));
        if hash != transcript.manifest_hash {
            problems.push(format!(
                "{}: holds manifest {hash}, transcript records {}",
                p.node_id, transcript.manifest_hash
            ));
        }
        let Ok(m) = Manifest::decode(&live) else {
            problems.push(format!("{}: its manifest does not decode", p.node_id));
            continue;
        };
        if hex::encode(&m.public_key.public_key) != transcript.public_key {
            problems.push(format!(
                "{}: group key {}, transcript records {}",
                p.node_id,
                hex::encode(&m.public_key.public_key),
                transcript.public_key
            ));
        }
        let ids: Vec<&str> = m.participants.iter().map(|q| q.node_id.as_str()).collect();
        if ids != want_ids {
            problems.push(format!(
                "{}: participants [{}], transcript records [{}]",
                p.node_id,
                ids.join(", "),
                want_ids.join(", ")
            ));
        }
        for q in &transcript.participants {
            match m.participant(&q.node_id) {
                Some(mp) if hex::encode(&mp.verifying_share) == q.verifying_share => {}
                Some(mp) => problems.push(format!(
                    "{}: verifying share of {} is {}, transcript records {}",
                    p.node_id,
                    q.node_id,
                    hex::encode(&mp.verifying_share),
                    q.verifying_share
                )),
                None => {}
            }
        }
    }
    Ok(problems)
}

/// How the transcript's readable policy and custodians, and the custodians the
/// caller expects, differ from the manifest's.
fn terms_problems(
    transcript: &Transcript,
    manifest: &pb::KeyManifest,
    expected: Option<&pb::KeyEscrow>,
) -> Vec<String> {
    let describe = |e: Option<&CustodiansFile>| match e {
        None => "none".to_string(),
        Some(e) => format!(
            "threshold {} of [{}]",
            e.threshold,
            e.custodians
                .iter()
                .map(|c| format!("{}:{}", c.name, c.recipient))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut problems = Vec::new();
    let (policy, escrow) = crate::transcript::readable_terms(manifest);
    if transcript.escrow != escrow {
        problems.push(format!(
            "transcript: escrow custodians {} differ from its manifest's {}",
            describe(transcript.escrow.as_ref()),
            describe(escrow.as_ref())
        ));
    }
    if transcript.policy.is_some() && transcript.policy != policy {
        problems.push("transcript: policy differs from its manifest's".into());
    }
    if let Some(expected) = expected {
        if manifest.escrow.as_ref() != Some(expected) {
            problems.push(format!(
                "manifest: escrow custodians {} are not the custodians file's {}",
                describe(escrow.as_ref()),
                describe(Some(&CustodiansFile::from_pb(expected)))
            ));
        }
    }
    problems
}
