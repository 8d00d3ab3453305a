//! Fuzz targets for the decoders of the shared layers (`quorate-wire`,
//! `quorate-frost`, `quorate-keys`, `quorate-escrow`, and the sign intent of
//! `quorate-transport`) that read bytes from the network, a disk or a custodian:
//! protobuf requests into domain types, FROST packages of all three ciphersuites, key
//! manifests, approval tokens, escrow part files and audit records.
//!
//! The FROST targets take the ciphersuite from the input's first byte (modulo 3,
//! in [`Ciphersuite::ALL`] order) and decode the rest, so one target covers a decoder
//! in every ciphersuite, and each corpus also holds the other suites' encodings (a
//! secp256k1 package sent for an Ed25519 key).

#![allow(dead_code)]

use std::collections::BTreeMap;

use prost::Message;
use quorate_escrow::{EscrowPart, SplitRequest, ESCROW_FORMAT};
use quorate_frost::{Ciphersuite, ParsedPublicKeyPackage, ParsedSigningPackage, SecretKeyPackage};
use quorate_keys::approval::{Approval, ApprovalToken, ApproverKey, SCOPE_OUT_OF_POLICY_QUORUM};
use quorate_keys::audit::{verify_chain, AuditRecord, GENESIS_HASH};
use quorate_keys::checkpoint::{Checkpoint, LogSigner, LogVerifier};
use quorate_keys::cosignature::{WitnessSigner, WitnessVerifier};
use quorate_keys::manifest::{self, Manifest};
use quorate_transport::intent::SignIntent;
use quorate_wire::pb;

use crate::target::{committed_valid_seeds, Target, CHEAP, CRYPTO};

/// Every target of this module, by name.
pub const NAMES: &[&str] = &[
    "sign_intent_body",
    "sign_request",
    "commit_request",
    "sign_share_request",
    "install_key_request",
    "escrow_split_request",
    "read_audit_request",
    "get_manifest_request",
    "frost_received_commitments",
    "frost_commitments",
    "frost_identifier",
    "frost_signature_share",
    "frost_key_package",
    "frost_public_key_package",
    "frost_signature",
    "frost_public_key",
    "key_manifest",
    "approval_token",
    "approval_revocation",
    "administrator_authorization",
    "escrow_part",
    "audit_record",
    "audit_checkpoint",
    "audit_cosignature",
];

/// The target called `name`, with a freshly built context and corpus.
pub fn target(name: &str) -> Option<Target> {
    Some(match name {
        "sign_intent_body" => sign_intent_body(),
        "sign_request" => sign_request(),
        "commit_request" => commit_request(),
        "sign_share_request" => sign_share_request(),
        "install_key_request" => install_key_request(),
        "escrow_split_request" => escrow_split_request(),
        "read_audit_request" => read_audit_request(),
        "get_manifest_request" => get_manifest_request(),
        "frost_received_commitments" => frost_received_commitments(),
        "frost_commitments" => frost_commitments(),
        "frost_identifier" => frost_identifier(),
        "frost_signature_share" => frost_signature_share(),
        "frost_key_package" => frost_key_package(),
        "frost_public_key_package" => frost_public_key_package(),
        "frost_signature" => frost_signature(),
        "frost_public_key" => frost_public_key(),
        "key_manifest" => key_manifest(),
        "approval_token" => approval_token(),
        "approval_revocation" => approval_revocation(),
        "administrator_authorization" => administrator_authorization(),
        "escrow_part" => escrow_part(),
        "audit_record" => audit_record(),
        "audit_checkpoint" => audit_checkpoint(),
        "audit_cosignature" => audit_cosignature(),
        _ => return None,
    })
}

fn simple(
    name: &'static str,
    corpus: Vec<Vec<u8>>,
    smoke_cases: u64,
    check: impl Fn(&[u8]) -> bool + 'static,
) -> Target {
    Target {
        name,
        must_accept: corpus.len(),
        corpus,
        seeds_stay_valid: true,
        smoke_cases,
        check: Box::new(check),
    }
}

pub fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("node-{i}")).collect()
}

/// The group secret of every fuzzed key, so that a committed signature or public key
/// seed matches the key a fuzzer builds at start-up. A valid scalar in every
/// ciphersuite's encoding (little- or big-endian).
const GROUP_SECRET: [u8; 32] = [1; 32];

/// The message every fuzzed round signs.
pub const MESSAGE: &[u8] = b"fuzz corpus message";

/// Valid encodings of one signing round of a 2-of-3 key.
pub struct Round {
    pub suite: Ciphersuite,
    pub public_key_package: Vec<u8>,
    pub key_packages: Vec<Vec<u8>>,
    pub identifiers: Vec<Vec<u8>>,
    pub commitments: Vec<Vec<u8>>,
    /// The quorum's commitments by identifier, as a round-2 request carries them.
    pub quorum: BTreeMap<Vec<u8>, Vec<u8>>,
    pub message: Vec<u8>,
    pub shares: BTreeMap<Vec<u8>, Vec<u8>>,
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
    pub manifest: Vec<u8>,
}

pub fn round(suite: Ciphersuite) -> Round {
    let ops = suite.ops();
    let names = names(3);
    let dealt = ops.split(Some(&GROUP_SECRET), &names, 2).unwrap();
    let mut nonces = Vec::new();
    let mut commitments = BTreeMap::new();
    let signers: Vec<_> = dealt.key_packages[..2]
        .iter()
        .map(|(name, kp)| {
            (
                ops.identifier(name).unwrap(),
                ops.parse_key_package(kp).unwrap(),
            )
        })
        .collect();
    for (id, kp) in &signers {
        let (n, c) = ops.commit(kp).unwrap();
        commitments.insert(id.clone(), c);
        nonces.push(n);
    }
    let message = MESSAGE.to_vec();
    let mut shares = BTreeMap::new();
    for ((id, kp), n) in signers.iter().zip(nonces) {
        let received = ops
            .receive_signing_package(&message, &commitments, id)
            .unwrap();
        shares.insert(id.clone(), received.sign(n, kp).unwrap());
    }
    let public_key_package = ops
        .parse_public_key_package(&dealt.public_key_package)
        .unwrap();
    let signature = coordinator_package(suite, &commitments, &message)
        .aggregate(&shares, &public_key_package)
        .unwrap();
    let info = ops.public_key_info(&dealt.public_key_package).unwrap();
    let manifest = manifest::encode(
        &format!("fuzz-{}", suite.name().to_lowercase()),
        suite,
        2,
        dealt.public_key_package.clone(),
        names
            .iter()
            .map(|n| pb::ManifestParticipant {
                node_id: n.clone(),
                region: format!("region-{n}"),
                jurisdiction: "EU".into(),
            })
            .collect(),
        "2026-01-01T00:00:00Z".into(),
        Some(pb::KeyPolicy {
            allowed_clients: vec!["spiffe://quorate.test/client/a".into()],
            home_jurisdictions: vec!["EU".into()],
            min_home_signers: 2,
            approver_keys: vec![approver().public_key().to_vec()],
            rate_limit_per_minute: 60,
            approvals_required: 0,
            ..Default::default()
        }),
    );
    Round {
        suite,
        identifiers: names.iter().map(|n| ops.identifier(n).unwrap()).collect(),
        key_packages: dealt
            .key_packages
            .iter()
            .map(|(_, kp)| kp.expose_bytes().to_vec())
            .collect(),
        commitments: commitments.values().cloned().collect(),
        quorum: commitments,
        message,
        public_key_package: dealt.public_key_package,
        shares,
        public_key: info.public_key,
        signature,
        manifest,
    }
}

/// The coordinator's signing package over `commitments`, for aggregation.
pub fn coordinator_package(
    suite: Ciphersuite,
    commitments: &BTreeMap<Vec<u8>, Vec<u8>>,
    message: &[u8],
) -> Box<dyn ParsedSigningPackage> {
    let ops = suite.ops();
    let parsed = commitments
        .iter()
        .map(|(id, c)| (id.clone(), ops.parse_commitments(c).unwrap()))
        .collect();
    ops.new_signing_package(&parsed, message).unwrap()
}

pub fn rounds() -> Vec<Round> {
    Ciphersuite::ALL.into_iter().map(round).collect()
}

/// A well-formed signed intent (its certificate and signature are not real: the
/// decoders are fuzzed, not the signature check).
fn sample_intent() -> pb::Signed {
    pb::Signed {
        body: sample_intent_body(),
        certificate: vec![0x30, 0x82, 0x01, 0x00],
        scheme: 0x0403,
        signature: vec![7; 71],
    }
}

fn sample_intent_body() -> Vec<u8> {
    SignIntent {
        key_id: "demo-ed25519".into(),
        message_sha256: quorate_wire::sha256(b"pay 10 EUR"),
        request_id: "req-1".into(),
        approval_token_sha256: [0; 32],
        not_before: 1_798_761_600,
        not_after: 1_798_761_660,
    }
    .encode()
}

fn sign_intent_body() -> Target {
    let corpus = vec![
        sample_intent_body(),
        SignIntent {
            key_id: "k".into(),
            message_sha256: [1; 32],
            request_id: String::new(),
            approval_token_sha256: [2; 32],
            not_before: 0,
            not_after: 300,
        }
        .encode(),
    ];
    simple("sign_intent_body", corpus, CHEAP, |b| {
        match SignIntent::decode(b) {
            // Whatever decodes re-encodes to exactly its bytes: one encoding each.
            Ok(intent) => {
                assert_eq!(intent.encode(), b, "an intent body with two encodings");
                true
            }
            Err(_) => false,
        }
    })
}

fn sign_request() -> Target {
    let corpus: Vec<Vec<u8>> = [
        pb::SignRequest {
            key_id: "demo-ed25519".into(),
            message: b"pay 10 EUR".to_vec(),
            request_id: "req-1".into(),
            approval_token: Vec::new(),
            intent: Some(sample_intent()),
        },
        pb::SignRequest {
            key_id: "k".into(),
            message: vec![7; 300],
            request_id: String::new(),
            approval_token: b"{\"format\":\"quorate-approval/1\"}".to_vec(),
            intent: None,
        },
    ]
    .iter()
    .map(Message::encode_to_vec)
    .collect();
    simple("sign_request", corpus, CHEAP, |b| {
        pb::SignRequest::decode(b)
            .ok()
            .and_then(|r| quorate_wire::api::SignRequest::try_from(r).ok())
            .is_some()
    })
}

fn commit_request() -> Target {
    let corpus = vec![pb::CommitRequest {
        key_id: "demo-ed25519".into(),
        count: 4,
    }
    .encode_to_vec()];
    simple("commit_request", corpus, CHEAP, |b| {
        pb::CommitRequest::decode(b)
            .ok()
            .filter(|r| quorate_wire::validate_key_id(&r.key_id).is_ok())
            .is_some()
    })
}

/// SignShare: the node parses the request at the boundary, decodes the other signers'
/// commitments in the key's ciphersuite and, for an out-of-policy quorum, the
/// approval token.
fn sign_share_request() -> Target {
    let rounds = rounds();
    let token = approver().sign(&approval("fuzz-ed25519"));
    let corpus = rounds
        .iter()
        .map(|r| {
            pb::SignShareRequest {
                key_id: format!("fuzz-{}", r.suite.name().to_lowercase()),
                message: r.message.clone(),
                commitments: quorate_wire::api::signer_commitments(&r.quorum),
                request_id: "req".into(),
                approval_token: token.clone(),
                intent: Some(sample_intent()),
                // The shape of a manifest's SHA-256.
                manifest_hash: vec![7; 32],
            }
            .encode_to_vec()
        })
        .collect();
    simple("sign_share_request", corpus, CRYPTO, |b| {
        let Some(req) = pb::SignShareRequest::decode(b)
            .ok()
            .and_then(|r| quorate_wire::api::SignShareRequest::try_from(r).ok())
        else {
            return false;
        };
        let Some(own) = req.commitments.keys().next() else {
            return false;
        };
        let mut any = false;
        for suite in Ciphersuite::ALL {
            any |= suite
                .ops()
                .receive_signing_package(&req.message, &req.commitments, own)
                .is_ok();
        }
        let _ = ApprovalToken::decode(&req.approval_token.unwrap_or_default());
        any
    })
}

/// InstallKey: a manifest and a key package, checked against each other.
fn install_key_request() -> Target {
    let corpus = rounds()
        .iter()
        .map(|r| {
            pb::InstallKeyRequest {
                manifest: r.manifest.clone(),
                key_package: r.key_packages[0].clone(),
                ..Default::default()
            }
            .encode_to_vec()
        })
        .collect();
    simple("install_key_request", corpus, CRYPTO, |b| {
        let Ok(req) = pb::InstallKeyRequest::decode(b) else {
            return false;
        };
        let Ok(m) = Manifest::decode(&req.manifest) else {
            return false;
        };
        m.ciphersuite
            .ops()
            .key_package_info(&SecretKeyPackage::from_bytes(req.key_package))
            .is_ok()
    })
}

fn escrow_split_request() -> Target {
    // A request names the key only (valid-00); one naming custodians is refused
    // (start-01).
    let corpus = vec![
        pb::EscrowSplitRequest {
            key_id: "demo-ed25519".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        pb::EscrowSplitRequest {
            key_id: "demo-ed25519".into(),
            threshold: 2,
            custodians: (1..=3)
                .map(|i| pb::EscrowCustodian {
                    name: format!("custodian-{i}"),
                    age_recipient: format!("age1custodian{i}"),
                })
                .collect(),
            ..Default::default()
        }
        .encode_to_vec(),
    ];
    Target {
        name: "escrow_split_request",
        must_accept: 1,
        corpus,
        seeds_stay_valid: true,
        smoke_cases: CHEAP,
        check: Box::new(|b| {
            pb::EscrowSplitRequest::decode(b)
                .ok()
                .and_then(|r| SplitRequest::try_from(r).ok())
                .is_some()
        }),
    }
}

fn read_audit_request() -> Target {
    let corpus = vec![pb::ReadAuditRequest { from_seq: 12 }.encode_to_vec()];
    simple("read_audit_request", corpus, CHEAP, |b| {
        pb::ReadAuditRequest::decode(b).is_ok()
    })
}

fn get_manifest_request() -> Target {
    let corpus = vec![pb::GetManifestRequest {
        key_id: "demo-taproot".into(),
    }
    .encode_to_vec()];
    simple("get_manifest_request", corpus, CHEAP, |b| {
        pb::GetManifestRequest::decode(b)
            .ok()
            .filter(|r| quorate_wire::validate_key_id(&r.key_id).is_ok())
            .is_some()
    })
}

/// The ciphersuite an input of a FROST target selects with its first byte, and the
/// encoding after it.
pub fn select(b: &[u8]) -> Option<(usize, &[u8])> {
    let (first, rest) = b.split_first()?;
    Some((usize::from(*first) % Ciphersuite::ALL.len(), rest))
}

/// A FROST target: for each ciphersuite, `field` of its own round (which `check`
/// must accept) and, when `foreign`, of the other rounds (starting points only),
/// each prefixed with the ciphersuite's selector byte.
fn frost(
    name: &'static str,
    rounds: Vec<Round>,
    field: impl Fn(&Round) -> Vec<Vec<u8>>,
    foreign: bool,
    check: impl Fn(&Round, &[u8]) -> bool + 'static,
) -> Target {
    let prefixed = |i: usize, r: &Round| {
        field(r).into_iter().map(move |e| {
            let mut v = vec![i as u8];
            v.extend(e);
            v
        })
    };
    let mut corpus: Vec<Vec<u8>> = rounds
        .iter()
        .enumerate()
        .flat_map(|(i, r)| prefixed(i, r))
        .collect();
    let must_accept = corpus.len();
    if foreign {
        for i in 0..rounds.len() {
            for (j, other) in rounds.iter().enumerate() {
                if i != j {
                    corpus.extend(prefixed(i, other));
                }
            }
        }
    }
    Target {
        name,
        corpus,
        must_accept,
        seeds_stay_valid: true,
        smoke_cases: CRYPTO,
        check: Box::new(move |b| {
            let Some((i, rest)) = select(b) else {
                return false;
            };
            check(&rounds[i], rest)
        }),
    }
}

/// Another signer's commitments as a node receives them in round 2 (its own entry it
/// does not decode).
pub fn receive_other_commitments(r: &Round, other: &[u8]) -> bool {
    let own_id = &r.identifiers[0];
    let quorum = BTreeMap::from([
        (own_id.clone(), r.quorum[own_id].clone()),
        (r.identifiers[1].clone(), other.to_vec()),
    ]);
    r.suite
        .ops()
        .receive_signing_package(b"m", &quorum, own_id)
        .is_ok()
}

fn frost_received_commitments() -> Target {
    frost(
        "frost_received_commitments",
        rounds(),
        |r| r.commitments.clone(),
        true,
        receive_other_commitments,
    )
}

/// Commitments, as the coordinator decodes them from a node's answer.
fn frost_commitments() -> Target {
    frost(
        "frost_commitments",
        rounds(),
        |r| r.commitments.clone(),
        true,
        |r, b| r.suite.ops().parse_commitments(b).is_ok(),
    )
}

/// Identifiers of the other signers in a round-2 quorum.
fn frost_identifier() -> Target {
    frost(
        "frost_identifier",
        rounds(),
        |r| r.identifiers[1..].to_vec(),
        true,
        |r, b| {
            let own_id = &r.identifiers[0];
            let quorum = BTreeMap::from([
                (own_id.clone(), r.quorum[own_id].clone()),
                (b.to_vec(), r.quorum[&r.identifiers[1]].clone()),
            ]);
            r.suite
                .ops()
                .receive_signing_package(b"m", &quorum, own_id)
                .is_ok()
        },
    )
}

/// Signature shares: one share replaced by the input; aggregation must refuse it
/// cleanly (as a culprit) unless the input is the genuine share. A share is genuine
/// only for the nonces it was made with, which are fresh in every run, so the seeds
/// are well-formed shares that no longer aggregate.
fn frost_signature_share() -> Target {
    let rounds = rounds();
    // What aggregation needs, decoded once per ciphersuite (in `Ciphersuite::ALL` order).
    let contexts: Vec<(ParsedPublicKeyPackage, Box<dyn ParsedSigningPackage>)> = rounds
        .iter()
        .map(|r| {
            let pkp = r
                .suite
                .ops()
                .parse_public_key_package(&r.public_key_package)
                .unwrap();
            (pkp, coordinator_package(r.suite, &r.quorum, &r.message))
        })
        .collect();
    let mut t = frost(
        "frost_signature_share",
        rounds,
        |r| r.shares.values().take(1).cloned().collect(),
        true,
        move |r, b| {
            let i = Ciphersuite::ALL.iter().position(|s| *s == r.suite).unwrap();
            let (pkp, package) = &contexts[i];
            let (first_id, genuine) = r.shares.iter().next().unwrap();
            let mut shares = r.shares.clone();
            shares.insert(first_id.clone(), b.to_vec());
            let ok = package.aggregate(&shares, pkp).is_ok();
            // Only the genuine share (in its one canonical encoding) aggregates.
            assert!(!ok || b == genuine.as_slice(), "a forged share aggregated");
            ok
        },
    );
    t.seeds_stay_valid = false;
    t
}

fn frost_key_package() -> Target {
    frost(
        "frost_key_package",
        rounds(),
        |r| r.key_packages.clone(),
        true,
        |r, b| {
            r.suite
                .ops()
                .key_package_info(&SecretKeyPackage::from_bytes(b.to_vec()))
                .is_ok()
        },
    )
}

fn frost_public_key_package() -> Target {
    frost(
        "frost_public_key_package",
        rounds(),
        |r| vec![r.public_key_package.clone()],
        true,
        |r, b| r.suite.ops().public_key_info(b).is_ok(),
    )
}

/// A signature over [`MESSAGE`] under the key of [`GROUP_SECRET`].
fn frost_signature() -> Target {
    frost(
        "frost_signature",
        rounds(),
        |r| vec![r.signature.clone()],
        false,
        |r, b| r.suite.ops().verify(&r.public_key, MESSAGE, b).is_ok(),
    )
}

/// The public key [`MESSAGE`]'s signature is checked under.
fn frost_public_key() -> Target {
    frost(
        "frost_public_key",
        rounds(),
        |r| vec![r.public_key.clone()],
        false,
        |r, b| r.suite.ops().verify(b, MESSAGE, &r.signature).is_ok(),
    )
}

fn key_manifest() -> Target {
    let rounds = rounds();
    let mut corpus: Vec<Vec<u8>> = rounds.iter().map(|r| r.manifest.clone()).collect();
    // Also manifests without a policy.
    for r in &rounds {
        let mut m = pb::KeyManifest::decode(r.manifest.as_slice()).unwrap();
        m.policy = None;
        corpus.push(m.encode_to_vec());
    }
    // And one with escrow custodians (fixed recipients, so the seed is stable).
    let mut m = pb::KeyManifest::decode(rounds[0].manifest.as_slice()).unwrap();
    m.escrow = Some(pb::KeyEscrow {
        threshold: 2,
        custodians: [
            (
                "bank-a",
                "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
            ),
            (
                "notary-d",
                "age1f60xkx9pk7ccqnk54cjjfmn427k3rhs30m7ywumvsvnsw832hpesa4qkt3",
            ),
        ]
        .iter()
        .map(|(name, recipient)| pb::EscrowCustodian {
            name: (*name).into(),
            age_recipient: (*recipient).into(),
        })
        .collect(),
    });
    corpus.push(m.encode_to_vec());
    simple("key_manifest", corpus, CRYPTO, |b| {
        Manifest::decode(b).is_ok()
    })
}

/// The approver of every fuzzed token, fixed so committed seeds stay verifiable.
pub fn approver() -> ApproverKey {
    ApproverKey::from_hex(&"5a".repeat(32)).unwrap()
}

/// The time tokens are checked at: inside [`approval`]'s window, fixed so committed
/// seeds stay valid.
pub const APPROVAL_NOW: u64 = 1_798_761_600;

pub fn approval(key_id: &str) -> Approval {
    Approval {
        token_id: "t-1".into(),
        key_id: key_id.into(),
        scope: SCOPE_OUT_OF_POLICY_QUORUM.into(),
        not_before: APPROVAL_NOW - 10,
        not_after: APPROVAL_NOW + 3600,
        reason: "EU outage".into(),
        client: None,
        message_sha256: None,
    }
}

fn approval_token() -> Target {
    let approver = approver();
    let approvers = [approver.public_key()];
    let corpus = vec![
        approver.sign(&approval("eu-payments")),
        approver.sign(&approval("k")),
    ];
    let originals: Vec<Approval> = corpus
        .iter()
        .map(|t| ApprovalToken::decode(t).unwrap().approval)
        .collect();
    simple("approval_token", corpus, CHEAP, move |b| {
        let verified = ApprovalToken::decode(b).and_then(|t| {
            t.verify(&t.approval.key_id.clone(), &approvers, 1, APPROVAL_NOW)
                .cloned()
        });
        // A mutated token that still verifies must grant exactly what was signed
        // (only JSON whitespace or hex case may differ), or it would be a forgery.
        if let Ok(approval) = &verified {
            assert!(originals.contains(approval), "forged approval {approval:?}");
        }
        verified.is_ok()
    })
}

/// Revocations as nodes read them (`RevokeApproval`): a mutated revocation that
/// still verifies must revoke exactly what was signed, or whoever can reach a node
/// could withdraw a token no approver withdrew.
fn approval_revocation() -> Target {
    use quorate_keys::revocation::{self, Revocation};
    let approver = approver();
    let approvers = [approver.public_key()];
    let originals = [
        Revocation {
            token_id: "appr-5f0c2a9e41d7b386".into(),
            key_id: "eu-payments".into(),
            revoked_at: APPROVAL_NOW,
        },
        Revocation {
            token_id: "t".into(),
            key_id: "k".into(),
            revoked_at: 0,
        },
    ];
    let corpus = originals
        .iter()
        .map(|r| revocation::sign_revocation(&approver, r))
        .collect();
    simple("approval_revocation", corpus, CHEAP, move |b| {
        let verified = revocation::read_unverified(b)
            .and_then(|r| revocation::verify(b, &r.key_id, &approvers));
        if let Ok(v) = &verified {
            assert!(
                originals.contains(&v.revocation),
                "forged revocation {:?}",
                v.revocation
            );
        }
        verified.is_ok()
    })
}

/// Administrators' authorizations as nodes read them (every governed operation):
/// a mutated authorization that still verifies must authorize exactly what was
/// signed, or whoever holds the ceremony certificate could run an operation no
/// administrator authorized.
fn administrator_authorization() -> Target {
    use quorate_keys::authorization::{self, Authorization, Operation};
    let administrator = approver();
    let administrators = [administrator.public_key()];
    let original = Authorization {
        key_id: "eu-payments".into(),
        operation: "escrow-split".into(),
        ceremony_id: "escrow-split-5f0c2a9e41d7b386".into(),
        setup_hash: "ab".repeat(32),
        not_before: APPROVAL_NOW - 60,
        not_after: APPROVAL_NOW + 3600,
    };
    let corpus = vec![authorization::sign(&administrator, &original)];
    let setup_hash = [0xab; 32];
    simple("administrator_authorization", corpus, CHEAP, move |b| {
        let operation = Operation {
            key_id: "eu-payments",
            operation: "escrow-split",
            ceremony_id: "escrow-split-5f0c2a9e41d7b386",
            setup_hash: &setup_hash,
        };
        let verified = authorization::SignedAuthorization::decode(b).and_then(|a| {
            a.verify(&operation, &administrators, APPROVAL_NOW)
                .map(|()| a.authorization)
        });
        if let Ok(a) = &verified {
            assert_eq!(a, &original, "forged authorization");
        }
        verified.is_ok()
    })
}

fn escrow_corpus() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for suite in Ciphersuite::ALL {
        let ops = suite.ops();
        let dealt = ops.split(None, &names(3), 2).unwrap();
        let split = quorate_escrow::split(suite, &dealt.key_packages[0].1, 2, 3).unwrap();
        let part = &split.parts[0];
        let file = EscrowPart {
            format: ESCROW_FORMAT.into(),
            key_id: "demo-key".into(),
            node_id: "node-1".into(),
            ciphersuite: suite.name().into(),
            custodian: "bank-a".into(),
            threshold: 2,
            parts: 3,
            identifier: part.identifier,
            value: hex::encode(part.value.expose_bytes()),
            verifying_share: hex::encode(&split.verifying_share),
            commitments: split.commitments.iter().map(hex::encode).collect(),
            group_public_key: "00".into(),
            manifest_hash: "00".into(),
        };
        out.push(file.to_json().as_bytes().to_vec());
    }
    out
}

/// Escrow part files as a custodian hands them back. A part that verifies is a
/// point of the polynomial its own commitments describe, so a mutated part that still
/// verifies must be one of the originals.
fn escrow_part() -> Target {
    let corpus = escrow_corpus();
    let originals: Vec<(u16, Vec<u8>)> = corpus
        .iter()
        .chain(&committed_valid_seeds("escrow_part"))
        .filter_map(|b| {
            let p = EscrowPart::from_json(std::str::from_utf8(b).ok()?)
                .ok()?
                .shamir_part()
                .ok()?;
            Some((p.identifier, p.value.expose_bytes().to_vec()))
        })
        .collect();
    simple("escrow_part", corpus, CRYPTO, move |b| {
        let Ok(text) = std::str::from_utf8(b) else {
            return false;
        };
        let part = EscrowPart::from_json(text)
            .and_then(|p| p.verify().map(|_| p))
            .and_then(|p| p.shamir_part());
        if let Ok(p) = &part {
            let got = (p.identifier, p.value.expose_bytes().to_vec());
            assert!(originals.contains(&got), "a mutated escrow part verified");
        }
        part.is_ok()
    })
}

pub fn audit_chain(n: u64) -> Vec<(u64, Vec<u8>)> {
    let mut prev = GENESIS_HASH.to_string();
    (0..n)
        .map(|i| {
            let r = AuditRecord {
                node_id: "node-1".into(),
                event: "sign_share".into(),
                key_id: "k".into(),
                quorum: vec!["node-1".into(), "node-2".into()],
                message_sha256: hex::encode([i as u8; 32]),
                ..Default::default()
            }
            .seal(i, &prev);
            prev = r.hash.clone();
            (i, r.encode())
        })
        .collect()
}

/// An audit record in the middle of an otherwise intact chain.
fn audit_record() -> Target {
    let chain = audit_chain(3);
    let original: AuditRecord = serde_json::from_slice(&chain[1].1).unwrap();
    let corpus = vec![chain[1].1.clone()];
    simple("audit_record", corpus, CHEAP, move |b| {
        let mut records = chain.clone();
        records[1].1 = b.to_vec();
        let ok = verify_chain(records).is_ok();
        // Whatever still verifies must say exactly what was written.
        if ok {
            let parsed: AuditRecord = serde_json::from_slice(b).unwrap();
            assert_eq!(parsed, original, "an altered audit record verified");
        }
        ok
    })
}

/// A node's signed audit checkpoint (a C2SP signed note), as an auditor reads it,
/// and the same bytes as the verifier key a node attests (which must never panic).
fn audit_checkpoint() -> Target {
    let origin = "quorate.test/quorate-audit/node-1";
    let signer = LogSigner::from_seed(origin, &[3u8; 32]).unwrap();
    let original = Checkpoint {
        origin: origin.into(),
        size: 12,
        root: [7u8; 32],
    };
    let verifier = LogVerifier::parse(&signer.verifier_key()).unwrap();
    let corpus = vec![signer.sign(&original).into_bytes()];
    simple("audit_checkpoint", corpus, CHEAP, move |b| {
        let Ok(note) = std::str::from_utf8(b) else {
            return false;
        };
        let _ = LogVerifier::parse(note);
        match verifier.verify(note) {
            // Whatever verifies must say exactly what was signed.
            Ok(checkpoint) => {
                assert_eq!(checkpoint, original, "an altered checkpoint verified");
                true
            }
            Err(_) => false,
        }
    })
}

/// A witness-cosigned checkpoint (C2SP tlog-cosignature), as an auditor reads what
/// a witness serves, and the same bytes as the witness verifier key a node attests
/// (which must never panic).
fn audit_cosignature() -> Target {
    let origin = "quorate.test/quorate-audit/node-1";
    let log = LogSigner::from_seed(origin, &[3u8; 32]).unwrap();
    let witness =
        WitnessSigner::from_seed("quorate.test/quorate-witness/node-2", &[4u8; 32]).unwrap();
    let note = log.sign(&Checkpoint {
        origin: origin.into(),
        size: 12,
        root: [7u8; 32],
    });
    let cosigned = witness.cosign(&note, 1_700_000_000).unwrap();
    let verifier = WitnessVerifier::parse(&witness.verifier_key()).unwrap();
    let text = note.split("\n\n").next().unwrap().to_string() + "\n";
    let corpus = vec![cosigned.into_bytes()];
    simple("audit_cosignature", corpus, CHEAP, move |b| {
        let Ok(note) = std::str::from_utf8(b) else {
            return false;
        };
        let _ = WitnessVerifier::parse(note);
        match verifier.verify(note) {
            // Whatever verifies must cosign exactly the text and time that were.
            Ok(time) => {
                assert_eq!(time, 1_700_000_000, "an altered timestamp verified");
                assert!(note.starts_with(&text), "an altered checkpoint verified");
                true
            }
            Err(_) => false,
        }
    })
}
