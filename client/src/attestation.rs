//! Key provenance, checked by the client itself: a `GetPublicKey` answer is trusted
//! only if its manifest is valid and for the key asked about, the answer's fields are
//! the manifest's, and at least the manifest's threshold of distinct participants
//! attest it with their own certificates under the client's CA. A coordinator
//! cannot hand out a public key the key's participants did not attest.

use quorate_keys::manifest::Manifest;
use quorate_transport::attest::{ChainCache, StatementVerifier};
use quorate_transport::key_attestation::{self, AttestedManifest};
use quorate_wire::pb;

/// Checks a `GetPublicKey` answer for `key_id`; the error says why it is not
/// trusted.
pub fn check_attested(
    verifier: &StatementVerifier,
    key_id: &str,
    response: &pb::GetPublicKeyResponse,
) -> Result<(), String> {
    let manifest =
        Manifest::decode(&response.manifest).map_err(|e| format!("its manifest: {e}"))?;
    if manifest.key_id != key_id || response.key_id != key_id {
        return Err(format!(
            "asked for key {key_id:?}, got {:?} with a manifest of {:?}",
            response.key_id, manifest.key_id
        ));
    }
    let fields_match = response.public_key == manifest.public_key.public_key
        && response.threshold == u32::from(manifest.threshold)
        && response.ciphersuite == pb::Ciphersuite::from(manifest.ciphersuite) as i32
        && response.participants.len() == manifest.participants.len()
        && response
            .participants
            .iter()
            .zip(&manifest.participants)
            .all(|(r, m)| {
                r.node_id == m.node_id
                    && r.identifier == m.identifier
                    && r.verifying_share == m.verifying_share
                    && r.region == m.region
                    && r.jurisdiction == m.jurisdiction
            });
    if !fields_match {
        return Err(
            "the answer's public key, threshold, ciphersuite or participants differ from its manifest"
                .into(),
        );
    }
    let participants: Vec<&str> = manifest
        .participants
        .iter()
        .map(|p| p.node_id.as_str())
        .collect();
    let attesters = key_attestation::attesting_participants(
        verifier,
        &ChainCache::default(),
        AttestedManifest {
            key_id,
            manifest_hash: &manifest.hash,
            participants: &participants,
        },
        &response.attestation,
    );
    if !attesters.reach(manifest.threshold) {
        return Err(format!(
            "{} of its participants attest the manifest ({:?}), {} needed{}",
            attesters.nodes.len(),
            attesters.nodes,
            manifest.threshold,
            attesters
                .rejected
                .iter()
                .map(|e| format!("; {e}"))
                .collect::<String>()
        ));
    }
    Ok(())
}
