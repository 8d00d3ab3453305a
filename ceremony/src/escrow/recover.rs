//! `escrow recover`: checks `k` or more parts, fetches the key's manifest from the
//! live nodes and trusts it only if at least its threshold `t` of participants
//! attest it (the coordinator's and the clients' rule, with the same function),
//! rebuilds the share, accepts it only if it matches the node's verifying share, and
//! installs it on the (fresh) node with the recovery's setup: for a key with
//! administrators, the plan they authorized ([`plan_recover`]), which the node
//! checks with their authorizations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::future::join_all;
use quorate_ceremony_protocol::setup::{Kind, Setup, SETUP_VERSION};
use quorate_escrow::{EscrowFileError, EscrowPart, ShamirPart};
use quorate_frost::Ciphersuite;
use quorate_keys::manifest::Manifest;
use quorate_transport::attest::{ChainCache, StatementVerifier};
use quorate_transport::key_attestation::{self, AttestedManifest};
use quorate_transport::tls::TlsMaterial;
use quorate_wire::pb;
use quorate_wire::pb::ceremony_client::CeremonyClient;

use super::error::EscrowError;
use super::node::{call, channel, node, tls};
use crate::ceremony_file::CeremonyFile;
use crate::plan::Plan;

/// What to recover.
#[derive(Debug)]
pub struct RecoverRequest {
    /// The key.
    pub key_id: String,
    /// The node to restore (same id as the node whose share was split).
    pub node_id: String,
    /// The parts, with the files they came from (for messages).
    pub parts: Vec<(PathBuf, EscrowPart)>,
    /// For a key with administrators: the recovery's plan ([`plan_recover`]) and
    /// the administrators' authorizations of it.
    pub plan: Option<Plan>,
    /// The administrators' authorizations of `plan`.
    pub authorizations: Vec<Vec<u8>>,
}

/// Plans the escrow recovery of `node_id`'s share of `key_id` (a key with
/// administrators needs their authorizations of it): fetches the key's manifest
/// as `recover` does (at least its threshold of participants attest it) and fixes
/// the setup (a fresh ceremony id, that manifest's hash, the node). The parts are
/// not needed yet.
pub async fn plan_recover(
    file: &CeremonyFile,
    key_id: &str,
    node_id: &str,
) -> Result<Plan, EscrowError> {
    quorate_wire::validate_key_id(key_id).map_err(EscrowError::Usage)?;
    node(file, node_id)?;
    let tls = tls(file)?;
    let manifest = agreed_manifest(file, &tls, key_id).await?.manifest;
    let setup = recovery_setup(&manifest, node_id)?;
    Plan::new(setup, manifest).map_err(EscrowError::Usage)
}

/// A fresh setup of the recovery of `node_id`'s share of `manifest`'s key.
fn recovery_setup(manifest: &Manifest, node_id: &str) -> Result<Setup, EscrowError> {
    if manifest.participant(node_id).is_none() {
        return Err(EscrowError::Mismatch(format!(
            "node {node_id} is not a participant of key {}",
            manifest.key_id
        )));
    }
    Setup::from_pb(pb::CeremonySetup {
        version: SETUP_VERSION,
        ceremony_id: crate::plan::ceremony_id("escrow-recover"),
        kind: pb::CeremonyKind::EscrowRecover as i32,
        key_id: manifest.key_id.clone(),
        ciphersuite: pb::Ciphersuite::from(manifest.ciphersuite) as i32,
        threshold: u32::from(manifest.threshold),
        manifest_hash: manifest.hash.to_vec(),
        repair_target: node_id.to_string(),
        ..Default::default()
    })
    .map_err(|e| EscrowError::Usage(e.to_string()))
}

/// The setup to install with: the plan's, checked against the request and the
/// manifest the nodes attest now (and its authorizations against the key's
/// administrators, as the node will), or a fresh one for a key without
/// administrators.
fn checked_setup(req: &RecoverRequest, manifest: &Manifest) -> Result<Setup, EscrowError> {
    let Some(plan) = &req.plan else {
        if manifest.policy.is_governed() {
            return Err(EscrowError::Usage(format!(
                "key {} has administrators: write the recovery's plan (--write-plan), have \
                 administrators authorize it (`quorate-ceremony authorize`), and run it with \
                 --plan and --authorization",
                req.key_id
            )));
        }
        return recovery_setup(manifest, &req.node_id);
    };
    let s = plan.setup();
    if s.kind != Kind::EscrowRecover
        || s.pb.key_id != req.key_id
        || s.pb.repair_target != req.node_id
    {
        return Err(EscrowError::Usage(format!(
            "the plan is a {} of key {} onto {:?}, not an escrow recovery of node {}'s share of key {}",
            s.kind.name(),
            s.pb.key_id,
            s.pb.repair_target,
            req.node_id,
            req.key_id
        )));
    }
    if s.pb.manifest_hash.as_slice() != manifest.hash.as_slice() {
        return Err(EscrowError::Manifest(format!(
            "the nodes attest manifest {} of key {}, but the plan is for {}: the key changed \
             since the plan was written; plan again",
            hex::encode(manifest.hash),
            req.key_id,
            hex::encode(&s.pb.manifest_hash)
        )));
    }
    plan.check_authorizations(manifest, &req.authorizations)?;
    Ok(s.clone())
}

/// What a recovery did.
#[derive(Clone, Debug)]
pub struct RecoverOutcome {
    /// SHA-256 of the installed manifest, hex; the node acknowledged it.
    pub manifest_hash: String,
    /// Parts combined.
    pub parts_used: usize,
    /// Participants whose key attestations of the manifest verified.
    pub manifest_from: Vec<String>,
}

/// A manifest at least its threshold of participants attest.
#[derive(Debug)]
struct Attested {
    manifest: Manifest,
    /// The participants whose attestations verified.
    attested_by: Vec<String>,
    /// The attestations reported for it (the node recovered checks them too).
    attestations: Vec<pb::Signed>,
}

/// Checks that the parts form one usable set for `key_id`/`node_id`; returns the
/// ciphersuite, the verifying share they escrow, and the Shamir parts.
fn check_parts(
    req: &RecoverRequest,
) -> Result<(Ciphersuite, Vec<u8>, Vec<ShamirPart>), EscrowError> {
    let (first_path, first) = req
        .parts
        .first()
        .ok_or_else(|| EscrowError::Usage("no --part given".into()))?;
    let mut seen: BTreeMap<u16, &Path> = BTreeMap::new();
    let mut shamir = Vec::with_capacity(req.parts.len());
    for (path, part) in &req.parts {
        part.verify().map_err(|source| EscrowError::Part {
            path: path.clone(),
            source,
        })?;
        if part.key_id != req.key_id || part.node_id != req.node_id {
            return Err(EscrowError::Parts(format!(
                "{} escrows node {}'s share of key {}, not node {}'s share of key {}",
                path.display(),
                part.node_id,
                part.key_id,
                req.node_id,
                req.key_id
            )));
        }
        if (
            &part.ciphersuite,
            part.threshold,
            part.parts,
            &part.commitments,
            &part.verifying_share,
        ) != (
            &first.ciphersuite,
            first.threshold,
            first.parts,
            &first.commitments,
            &first.verifying_share,
        ) {
            return Err(EscrowError::Parts(format!(
                "{} and {} come from different escrow splits (their commitments differ)",
                first_path.display(),
                path.display()
            )));
        }
        if let Some(other) = seen.insert(part.identifier, path) {
            return Err(EscrowError::Parts(format!(
                "{} and {} are the same part (identifier {})",
                other.display(),
                path.display(),
                part.identifier
            )));
        }
        shamir.push(part.shamir_part().map_err(|source| EscrowError::Part {
            path: path.clone(),
            source,
        })?);
    }
    if shamir.len() < usize::from(first.threshold) {
        return Err(EscrowError::Parts(format!(
            "too few parts: {} given, but the escrow of node {}'s share of key {} needs {} \
             of its {} parts",
            shamir.len(),
            req.node_id,
            req.key_id,
            first.threshold,
            first.parts
        )));
    }
    let suite = first.suite().map_err(|source| EscrowError::Part {
        path: first_path.clone(),
        source,
    })?;
    let verifying_share = hex::decode(&first.verifying_share).map_err(|_| EscrowError::Part {
        path: first_path.clone(),
        source: EscrowFileError::Invalid("verifying_share is not hex".into()),
    })?;
    Ok((suite, verifying_share, shamir))
}

/// Fetches the key's manifest, with each node's key attestation, from every node,
/// and returns the one that at least its threshold of distinct participants attest
/// ([`attested_manifest`]).
async fn agreed_manifest(
    file: &CeremonyFile,
    tls: &TlsMaterial,
    key_id: &str,
) -> Result<Attested, EscrowError> {
    let verifier = tls
        .statement_verifier()
        .map_err(|e| EscrowError::Manifest(format!("cannot check key attestations: {e}")))?;
    let fetches = file.nodes.iter().map(|node| async move {
        let result = async {
            let mut client = CeremonyClient::new(channel(tls, node).map_err(|e| e.to_string())?);
            call(
                &node.id,
                "GetManifest",
                client.get_manifest(pb::GetManifestRequest {
                    key_id: key_id.to_string(),
                }),
            )
            .await
        }
        .await;
        (node.id.clone(), result)
    });
    attested_manifest(&verifier, key_id, join_all(fetches).await)
}

/// Of the nodes' `answers` (node id, its manifest and attestation), the manifest of
/// `key_id` that at least its threshold of distinct participants attest with their
/// own certificates, by the rule the coordinator and clients apply
/// ([`key_attestation::attesting_participants`]): nodes agreeing on bytes is not
/// enough, since a manifest is what a share is installed under. Of several, the
/// newest generation (an old manifest from before a refresh may still be attested
/// by nodes that have not retired it, but the parts recover the current share),
/// then the one most participants attest. Returns it with the attesting
/// participants and the attestations reported for it.
fn attested_manifest(
    verifier: &StatementVerifier,
    key_id: &str,
    answers: Vec<(String, Result<pb::NodeKey, String>)>,
) -> Result<Attested, EscrowError> {
    let mut groups: BTreeMap<[u8; 32], (Manifest, Vec<pb::Signed>)> = BTreeMap::new();
    let mut failures = Vec::new();
    for (node_id, result) in answers {
        let reported = result.and_then(|stored| {
            Manifest::decode(&stored.manifest)
                .map(|m| (m, stored.attestation))
                .map_err(|e| e.to_string())
        });
        match reported {
            Ok((m, attestation)) if m.key_id == key_id => {
                let group = groups.entry(m.hash).or_insert_with(|| (m, Vec::new()));
                match attestation {
                    Some(signed) => group.1.push(signed),
                    None => failures.push(format!("{node_id}: reported no key attestation")),
                }
            }
            Ok(_) => failures.push(format!("{node_id}: answered with another key's manifest")),
            Err(reason) => failures.push(format!("{node_id}: {reason}")),
        }
    }
    let chains = ChainCache::default();
    let mut best: Option<Attested> = None;
    for (manifest, statements) in groups.into_values() {
        let participants = manifest.participant_ids();
        let attesters = key_attestation::attesting_participants(
            verifier,
            &chains,
            AttestedManifest {
                key_id,
                manifest_hash: &manifest.hash,
                participants: &participants,
            },
            &statements,
        );
        for rejected in &attesters.rejected {
            failures.push(format!(
                "manifest {}: {rejected}",
                hex::encode(&manifest.hash[..8])
            ));
        }
        if !attesters.reach(manifest.threshold) {
            failures.push(format!(
                "manifest {}: attested by {} of its participants ({:?}), {} needed",
                hex::encode(&manifest.hash[..8]),
                attesters.nodes.len(),
                attesters.nodes,
                manifest.threshold
            ));
            continue;
        }
        let nodes: Vec<String> = attesters.nodes.into_iter().collect();
        if best.as_ref().is_none_or(|b| {
            (manifest.generation, nodes.len()) > (b.manifest.generation, b.attested_by.len())
        }) {
            best = Some(Attested {
                manifest,
                attested_by: nodes,
                attestations: statements,
            });
        }
    }
    best.ok_or_else(|| {
        EscrowError::Manifest(format!(
            "no manifest of key {key_id} is attested by at least its threshold of \
             participants; answers:{}",
            failures
                .iter()
                .map(|f| format!("\n  - {f}"))
                .collect::<String>()
        ))
    })
}

/// Runs `escrow recover` (see the module docs).
pub async fn recover(
    file: &CeremonyFile,
    req: RecoverRequest,
) -> Result<RecoverOutcome, EscrowError> {
    quorate_wire::validate_key_id(&req.key_id).map_err(EscrowError::Usage)?;
    let target = node(file, &req.node_id)?;
    let tls = tls(file)?;
    let (suite, verifying_share, parts) = check_parts(&req)?;

    let Attested {
        manifest,
        attested_by: manifest_from,
        attestations,
    } = agreed_manifest(file, &tls, &req.key_id).await?;
    let setup = checked_setup(&req, &manifest)?;
    if manifest.ciphersuite != suite {
        return Err(EscrowError::Mismatch(format!(
            "the parts are {suite} but key {} is {}",
            req.key_id, manifest.ciphersuite
        )));
    }
    let me = manifest.participant(&req.node_id).ok_or_else(|| {
        EscrowError::Mismatch(format!(
            "node {} is not a participant of key {} (per the manifest of {})",
            req.node_id,
            req.key_id,
            manifest_from.join(", ")
        ))
    })?;
    if me.verifying_share != verifying_share {
        return Err(EscrowError::Mismatch(format!(
            "the parts escrow verifying share {}, but the key's manifest names {} for node {} \
             (were the parts made before the key's shares were refreshed?)",
            hex::encode(&verifying_share),
            hex::encode(&me.verifying_share),
            req.node_id
        )));
    }
    let ops = suite.ops();
    let share = quorate_escrow::combine(suite, &parts, &me.verifying_share)
        .map_err(|e| EscrowError::Mismatch(e.to_string()))?;
    drop(parts);
    let key_package = ops
        .key_package_from_signing_share(
            &me.identifier,
            &share,
            &manifest.public_key_package,
            manifest.threshold,
        )
        .map_err(|e| EscrowError::Mismatch(e.to_string()))?;
    drop(share);
    tracing::info!(key_id = %req.key_id, node = %req.node_id,
        "escrow: share rebuilt and matches the manifest; installing");

    let node_err = |reason: String| EscrowError::Node {
        node_id: req.node_id.clone(),
        reason,
    };
    let mut client = CeremonyClient::new(channel(&tls, target)?);
    let info = call(
        &req.node_id,
        "GetInfo",
        client.get_info(pb::GetInfoRequest {}),
    )
    .await
    .map_err(node_err)?;
    if (&info.node_id, &info.region, &info.jurisdiction)
        != (&target.id, &target.region, &target.jurisdiction)
    {
        return Err(node_err(format!(
            "answers as {}/{}/{}, but the ceremony file says {}/{}/{}; nothing was installed",
            info.node_id,
            info.region,
            info.jurisdiction,
            target.id,
            target.region,
            target.jurisdiction
        )));
    }
    let ack = call(
        &req.node_id,
        "InstallKey",
        client.install_key(pb::InstallKeyRequest {
            manifest: manifest.encoded.clone(),
            key_package: key_package.expose_bytes().to_vec(),
            setup: Some(setup.pb),
            authorizations: req.authorizations.clone(),
            attestations,
        }),
    )
    .await
    .map_err(node_err)?;
    drop(key_package);
    if ack.manifest_hash != manifest.hash {
        return Err(node_err(format!(
            "acknowledged manifest hash {}, expected {}",
            hex::encode(&ack.manifest_hash),
            hex::encode(manifest.hash)
        )));
    }
    Ok(RecoverOutcome {
        manifest_hash: hex::encode(manifest.hash),
        parts_used: req.parts.len(),
        manifest_from,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use prost::Message;
    use quorate_transport::test_ca::{self, Ca};

    use super::*;

    const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];

    /// A 2-of-3 manifest of key `k`.
    fn manifest() -> Manifest {
        at_generation(0)
    }

    /// A 2-of-3 manifest of key `k` (another each time) at manifest generation
    /// `generation`.
    fn at_generation(generation: u64) -> Manifest {
        let names: Vec<String> = NODES.iter().map(|n| n.to_string()).collect();
        let dealt = Ciphersuite::Ed25519.ops().split(None, &names, 2).unwrap();
        let participants = NODES
            .iter()
            .map(|n| pb::ManifestParticipant {
                node_id: n.to_string(),
                region: format!("r-{n}"),
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
                "2026-01-01T00:00:00Z".into(),
                None,
            )
            .as_slice(),
        )
        .unwrap();
        pb.generation = generation;
        Manifest::decode(&pb.encode_to_vec()).unwrap()
    }

    /// `node`'s answer: `manifest`, attested by `attester`'s certificate (if any).
    fn answer(
        ca: &Ca,
        node: &str,
        manifest: &Manifest,
        attester: Option<&str>,
    ) -> (String, Result<pb::NodeKey, String>) {
        let attestation = attester.map(|a| {
            key_attestation::sign(&test_ca::signer(ca, "node", a), a, "k", &manifest.hash).unwrap()
        });
        (
            node.to_string(),
            Ok(pb::NodeKey {
                manifest: manifest.encoded.clone(),
                attestation,
            }),
        )
    }

    fn verifier(ca: &Ca) -> StatementVerifier {
        StatementVerifier::from_pem(ca.pem.as_bytes(), "quorate.test").unwrap()
    }

    #[test]
    fn a_manifest_every_node_reports_is_refused_unless_its_participants_attest_it() {
        let ca = test_ca::new_ca("CA");
        let m = manifest();
        // Every node reports the same bytes, but none attests them.
        let unattested = NODES.iter().map(|n| answer(&ca, n, &m, None)).collect();
        let err = attested_manifest(&verifier(&ca), "k", unattested).unwrap_err();
        assert!(err.to_string().contains("attested by 0"), "{err}");
        // Attestations by certificates of another CA, or one node's many times.
        let foreign = test_ca::new_ca("another CA");
        let forged = NODES
            .iter()
            .map(|n| answer(&foreign, n, &m, Some(n)))
            .collect();
        assert!(attested_manifest(&verifier(&ca), "k", forged).is_err());
        let one = NODES
            .iter()
            .map(|n| answer(&ca, n, &m, Some("node-1")))
            .collect();
        let err = attested_manifest(&verifier(&ca), "k", one).unwrap_err();
        assert!(err.to_string().contains("attested by 1"), "{err}");
        // Two of its participants attest it: trusted, naming them.
        let attested = vec![
            answer(&ca, "node-1", &m, Some("node-1")),
            answer(&ca, "node-2", &m, None),
            answer(&ca, "node-3", &m, Some("node-3")),
        ];
        let trusted = attested_manifest(&verifier(&ca), "k", attested).unwrap();
        assert_eq!(trusted.manifest.hash, m.hash);
        assert_eq!(
            trusted.attested_by,
            vec!["node-1".to_string(), "node-3".to_string()]
        );
        // The statements go to the node recovered, which checks them itself.
        assert_eq!(trusted.attestations.len(), 2);
    }

    #[test]
    fn the_newest_attested_generation_is_chosen_over_an_older_one_more_attest() {
        let ca = test_ca::new_ca("CA");
        let (old, new) = (at_generation(0), at_generation(1));
        // All three participants' attestations of the old manifest (as a relay
        // replaying old answers could show them) and two of the refreshed one.
        let mut answers: Vec<_> = NODES
            .iter()
            .map(|n| answer(&ca, n, &old, Some(n)))
            .collect();
        answers.extend(
            ["node-2", "node-3"]
                .iter()
                .map(|n| answer(&ca, n, &new, Some(n))),
        );
        let trusted = attested_manifest(&verifier(&ca), "k", answers).unwrap();
        assert_eq!(trusted.manifest.generation, 1);
        assert_eq!(trusted.manifest.hash, new.hash);
        assert_eq!(
            trusted.attested_by,
            vec!["node-2".to_string(), "node-3".to_string()]
        );
    }
}
