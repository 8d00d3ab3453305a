//! `InstallKey`: a share installed on a node that does not hold the key, either
//! by an **import** (a trusted dealer's new key) or by an **escrow recovery** (an
//! existing key's share, rebuilt from its custodians' parts, put back on this
//! node).
//!
//! Used by the `Ceremony` gRPC adapter. Invariants: a recovery carries its setup
//! (kind `escrow-recover`, this node as its target, the SHA-256 of exactly the
//! manifest installed), key attestations of that manifest by at least its
//! threshold of participants (so it is a manifest the key's nodes hold or held,
//! not one the caller made with administrators of its own or none), and, for a
//! key with administrators, enough of their authorizations of the setup, checked
//! against the policy of that manifest. A request without a setup is an import,
//! and only a key created now can be imported (generation 0, `created_at` within
//! [`IMPORT_WINDOW_SECS`] of this node's clock), so a key's manifest cannot be
//! passed off as an import to skip its administrators; a new key lists
//! administrators or opts out explicitly. Missing attestations or authorizations,
//! and an "import" of a key not created now, are refused and audited; every
//! install is held to the node's audit log ([`crate::activations::check_install`]).

use quorate_ceremony_protocol::setup::{Kind, Setup};
use quorate_frost::SecretKeyPackage;
use quorate_keys::manifest::Manifest;
use quorate_transport::attest::{ChainCache, StatementVerifier};
use quorate_transport::identity::PeerIdentity;
use quorate_transport::key_attestation::{self, AttestedManifest};
use quorate_wire::pb;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::ceremony::governance::{check_authorized, refuse};
use crate::error::NodeError;
use crate::state::NodeState;
use crate::store::KeyRecord;

/// How long after its creation a key can be imported: an import installs every
/// node's share within seconds of making the manifest; anything later is an
/// existing key, whose shares are installed by an authorized escrow recovery.
pub const IMPORT_WINDOW_SECS: u64 = 600;
/// How far in the future a new key's `created_at` may lie (the ceremony host's
/// clock against this node's).
pub const IMPORT_CLOCK_SKEW_SECS: u64 = 300;

/// Installs the share in `req` (see the module docs); `caller` is the ceremony
/// tool's identity, `verifier` checks statements against the trust domain's CA.
pub(crate) fn install(
    state: &NodeState,
    verifier: &StatementVerifier,
    req: pb::InstallKeyRequest,
    caller: &PeerIdentity,
) -> Result<pb::InstallKeyResponse, NodeError> {
    let caller = caller.spiffe_id();
    let manifest =
        Manifest::decode(&req.manifest).map_err(|e| NodeError::KeyNotForThisNode(e.to_string()))?;
    let record = KeyRecord {
        manifest: req.manifest,
        key_package: SecretKeyPackage::from_bytes(req.key_package),
    };
    match req.setup {
        Some(setup) => {
            let setup = recovery_setup(state, &manifest, setup)?;
            check_attested(state, verifier, &manifest, &req.attestations, &caller)?;
            // Before the authorization is recorded: nothing it authorizes fails
            // after it, short of the store itself.
            let key = state.check_installable(&record)?;
            check_authorized(state, &manifest, &setup, &req.authorizations, &caller)?;
            state.install_activated(key, record, "key_recovered", &caller)
        }
        None => {
            check_created_now(
                state,
                &manifest,
                &caller,
                quorate_keys::approval::unix_now(),
            )?;
            // A new key has administrators, or its creator opted out explicitly.
            manifest
                .policy
                .check_new_key()
                .map_err(|e| NodeError::MalformedRequest(format!("policy: {e}")))?;
            state.install_record(record, "key_installed", &caller)
        }
    }
}

/// The setup of an escrow recovery, checked against the request: a recovery of
/// this key onto this node, of exactly the manifest installed.
fn recovery_setup(
    state: &NodeState,
    manifest: &Manifest,
    setup: pb::CeremonySetup,
) -> Result<Setup, NodeError> {
    let setup = Setup::from_pb(setup).map_err(|e| NodeError::MalformedRequest(e.to_string()))?;
    if setup.kind != Kind::EscrowRecover
        || setup.pb.key_id != manifest.key_id
        || setup.ciphersuite != manifest.ciphersuite
        || setup.threshold != manifest.threshold
    {
        return Err(NodeError::MalformedRequest(format!(
            "the setup is a {} of key {:?} ({}, threshold {}), not an escrow recovery of key \
             {:?} ({}, threshold {})",
            setup.kind.name(),
            setup.pb.key_id,
            setup.ciphersuite,
            setup.threshold,
            manifest.key_id,
            manifest.ciphersuite,
            manifest.threshold
        )));
    }
    if setup.pb.repair_target != state.identity.node_id {
        return Err(NodeError::CeremonyMismatch(format!(
            "the escrow recovery is onto {}, not {}",
            setup.pb.repair_target, state.identity.node_id
        )));
    }
    if setup.pb.manifest_hash.as_slice() != manifest.hash.as_slice() {
        return Err(NodeError::KeyVersionMismatch(format!(
            "the escrow recovery is of manifest {}, the request installs {}",
            hex::encode(&setup.pb.manifest_hash),
            hex::encode(manifest.hash)
        )));
    }
    Ok(setup)
}

/// A recovered manifest must be the one the key's nodes hold: key attestations of
/// it by at least its threshold of distinct participants (the coordinator's and
/// the clients' rule). A manifest only the caller vouches for, say the key's own
/// re-encoded without its administrators, is refused and audited.
fn check_attested(
    state: &NodeState,
    verifier: &StatementVerifier,
    manifest: &Manifest,
    attestations: &[pb::Signed],
    caller: &str,
) -> Result<(), NodeError> {
    if attestations.len() > manifest.participants.len() {
        return Err(NodeError::MalformedRequest(format!(
            "{} key attestations for a manifest of {} participants",
            attestations.len(),
            manifest.participants.len()
        )));
    }
    let participants = manifest.participant_ids();
    let attesters = key_attestation::attesting_participants(
        verifier,
        &ChainCache::default(),
        AttestedManifest {
            key_id: &manifest.key_id,
            manifest_hash: &manifest.hash,
            participants: &participants,
        },
        attestations,
    );
    if attesters.reach(manifest.threshold) {
        return Ok(());
    }
    let attested: Vec<&str> = attesters.nodes.iter().map(String::as_str).collect();
    Err(refuse(
        state,
        &manifest.key_id,
        caller,
        &format!(
            "escrow-recover of manifest {} attested by [{}], {} needed",
            hex::encode(manifest.hash),
            attested.join(" "),
            manifest.threshold
        ),
        format!(
            "escrow recovery of key {:?}: manifest {} is attested by {} of its participants \
             ({}), {} needed; a recovery installs the manifest the key's nodes hold",
            manifest.key_id,
            hex::encode(manifest.hash),
            attested.len(),
            attested.join(", "),
            manifest.threshold
        ),
    )?)
}

/// An import installs a key created now: generation 0, `created_at` within
/// [`IMPORT_WINDOW_SECS`] before `now` (and at most [`IMPORT_CLOCK_SKEW_SECS`]
/// after). Anything else is an existing key's share: refused and audited, since
/// that is what skipping an escrow recovery's authorization looks like.
fn check_created_now(
    state: &NodeState,
    manifest: &Manifest,
    caller: &str,
    now: u64,
) -> Result<(), NodeError> {
    if created_now(manifest, now) {
        return Ok(());
    }
    Err(refuse(
        state,
        &manifest.key_id,
        caller,
        &format!(
            "import of manifest {} (generation {}, created_at {:?}) that is not a new key",
            hex::encode(manifest.hash),
            manifest.generation,
            manifest.created_at
        ),
        format!(
            "key {:?} was not created now (generation {}, created at {:?}; an import must \
             install a generation-0 key created within the last {IMPORT_WINDOW_SECS} s): an \
             existing key's share is installed by `quorate-ceremony escrow recover`, which its \
             administrators authorize",
            manifest.key_id, manifest.generation, manifest.created_at
        ),
    )?)
}

/// Whether `manifest` is of a key created now (see [`check_created_now`]).
fn created_now(manifest: &Manifest, now: u64) -> bool {
    let created = OffsetDateTime::parse(&manifest.created_at, &Rfc3339)
        .ok()
        .and_then(|t| u64::try_from(t.unix_timestamp()).ok());
    manifest.generation == 0
        && created.is_some_and(|created| {
            created <= now.saturating_add(IMPORT_CLOCK_SKEW_SECS)
                && now.saturating_sub(created) <= IMPORT_WINDOW_SECS
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use prost::Message;
    use quorate_frost::Ciphersuite;

    use super::*;

    /// A 2-of-2 manifest created at `created_at`, at `generation`.
    fn manifest(created_at: &str, generation: u64) -> Manifest {
        let names = vec!["node-1".to_string(), "node-2".to_string()];
        let dealt = Ciphersuite::Ed25519.ops().split(None, &names, 2).unwrap();
        let participants = names
            .iter()
            .map(|n| pb::ManifestParticipant {
                node_id: n.clone(),
                region: "eu-west".into(),
                jurisdiction: "EU".into(),
            })
            .collect();
        let mut pb = pb::KeyManifest::decode(
            quorate_keys::manifest::encode(
                "k",
                Ciphersuite::Ed25519,
                2,
                dealt.public_key_package.clone(),
                participants,
                created_at.into(),
                None,
            )
            .as_slice(),
        )
        .unwrap();
        pb.generation = generation;
        Manifest::decode(&pb.encode_to_vec()).unwrap()
    }

    #[test]
    fn only_a_generation_0_key_created_within_the_window_is_created_now() {
        // 2026-01-01T00:00:00Z
        let created = 1_767_225_600;
        let m = manifest("2026-01-01T00:00:00Z", 0);
        assert!(created_now(&m, created));
        assert!(created_now(&m, created + IMPORT_WINDOW_SECS));
        assert!(!created_now(&m, created + IMPORT_WINDOW_SECS + 1));
        // The ceremony host's clock a little ahead of this node's, not more.
        assert!(created_now(&m, created - IMPORT_CLOCK_SKEW_SECS));
        assert!(!created_now(&m, created - IMPORT_CLOCK_SKEW_SECS - 1));
        // A refreshed key is never new, however recent its creation time.
        assert!(!created_now(&manifest("2026-01-01T00:00:00Z", 1), created));
        // A creation time that does not parse is not now.
        assert!(!created_now(&manifest("yesterday", 0), created));
    }
}
