//! A manifest the network never made, and the reports a node that turned would
//! send about it: some that count for nothing by construction (no attestation, a
//! statement in another node's name) and then its own valid attestation, repeated.
//! A coordinator must count attesting participants, not reports.

use anyhow::{anyhow, Context};
use quorate_frost::Ciphersuite;
use quorate_keys::manifest::{self, Manifest};
use quorate_transport::attest::StatementSigner;
use quorate_transport::key_attestation;
use quorate_wire::pb;

use crate::spec::NetworkSpec;

/// A valid ED25519 manifest for `key_id` that the network never made: a 2-of-3 key
/// dealt by the attacker, naming the first three nodes of `spec` at their real
/// regions (so nothing but the attestations can tell it apart).
pub fn forged_manifest(spec: &NetworkSpec, key_id: &str) -> anyhow::Result<Manifest> {
    let nodes = spec
        .nodes
        .get(..3)
        .context("a network of at least 3 nodes")?;
    let names: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let dealt = Ciphersuite::Ed25519
        .ops()
        .split(None, &names, 2)
        .map_err(|e| anyhow!("dealing the forged key: {e}"))?;
    let encoded = manifest::encode(
        key_id,
        Ciphersuite::Ed25519,
        2,
        dealt.public_key_package,
        nodes
            .iter()
            .map(|n| pb::ManifestParticipant {
                node_id: n.id.clone(),
                region: n.region.clone(),
                jurisdiction: n.jurisdiction.clone(),
            })
            .collect(),
        "2026-01-01T00:00:00Z".into(),
        None,
    );
    Manifest::decode(&encoded).map_err(|e| anyhow!("decoding the forged manifest: {e}"))
}

/// What node `node_id`, signing with its own certificate's key, reports of
/// `forged`: three reports without attestation, five with a statement naming
/// `other_node` (signed with `node_id`'s key), then twenty with its own valid
/// attestation. Each of the first two kinds is judged and logged by a coordinator;
/// the last is one participant's word, however often repeated.
pub fn forged_reports(
    signer: &StatementSigner,
    node_id: &str,
    other_node: &str,
    forged: &Manifest,
) -> anyhow::Result<Vec<pb::NodeKey>> {
    let key_id = &forged.key_id;
    let own = key_attestation::sign(signer, node_id, key_id, &forged.hash)?;
    let for_other = key_attestation::sign(signer, other_node, key_id, &forged.hash)?;
    let report = |attestation: Option<pb::Signed>| pb::NodeKey {
        manifest: forged.encoded.clone(),
        attestation,
    };
    let mut keys = vec![report(None); 3];
    keys.extend((0..5).map(|_| report(Some(for_other.clone()))));
    keys.extend((0..20).map(|_| report(Some(own.clone()))));
    Ok(keys)
}
