//! Key provenance, checked by the client itself: a `GetPublicKey` answer is trusted
//! only if its manifest is valid and for the key asked about, the answer's fields are
//! the manifest's, and at least the manifest's threshold of distinct participants
//! attest it with their own certificates under the client's CA. A coordinator
//! cannot hand out a public key the key's participants did not attest.
//!
//! It can still replay a manifest they attested once, before a refresh; the
//! manifest's generation, inside the attested bytes, lets [`Generations`] refuse an
//! older one than the client has accepted already.

use std::collections::HashMap;

use quorate_keys::manifest::Manifest;
use quorate_transport::attest::{ChainCache, StatementVerifier};
use quorate_transport::key_attestation::{self, AttestedManifest};
use quorate_wire::pb;

/// Checks a `GetPublicKey` answer for `key_id` and returns its manifest; the error
/// says why it is not trusted.
pub fn check_attested(
    verifier: &StatementVerifier,
    key_id: &str,
    response: &pb::GetPublicKeyResponse,
) -> Result<Manifest, String> {
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
    let participants = manifest.participant_ids();
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
    Ok(manifest)
}

/// The highest manifest generation accepted so far, per key id: a refresh moves a
/// key forward, so a lower one is an old manifest replayed (a rollback to
/// participants and verifying shares the key no longer has), however genuine its
/// attestation.
#[derive(Debug, Default)]
pub struct Generations {
    highest: HashMap<String, u64>,
}

impl Generations {
    /// Accepts `generation` of `key_id` if it is not below the highest accepted,
    /// and remembers it; otherwise says what was accepted before.
    pub fn accept(&mut self, key_id: &str, generation: u64) -> Result<(), u64> {
        match self.highest.get_mut(key_id) {
            Some(highest) if generation < *highest => Err(*highest),
            Some(highest) => {
                *highest = generation;
                Ok(())
            }
            None => {
                self.highest.insert(key_id.to_string(), generation);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lower_generation_than_accepted_is_a_rollback_per_key() {
        let mut g = Generations::default();
        assert_eq!(g.accept("k", 0), Ok(()));
        assert_eq!(g.accept("k", 2), Ok(()));
        // The same generation again (another answer of the same manifest) is fine.
        assert_eq!(g.accept("k", 2), Ok(()));
        assert_eq!(g.accept("k", 1), Err(2));
        assert_eq!(g.accept("k", 0), Err(2));
        // Another key has its own history.
        assert_eq!(g.accept("other", 0), Ok(()));
        assert_eq!(g.accept("k", 3), Ok(()));
        assert_eq!(g.accept("k", 2), Err(3));
    }
}
