//! Fuzz targets for every decoder of the shared layers (`quorate-wire`, `quorate-frost`,
//! `quorate-keys`, `quorate-escrow`, and the sign intent of `quorate-transport`) that reads bytes from the network or the disk: protobuf requests into domain types, FROST packages of all three
//! ciphersuites, key manifests, approval tokens, escrow part files and audit records.
//!
//! Property: no panic, no hang, and a clean `Err` for what does not decode. The default
//! is a quick smoke pass run by every `cargo nextest run`; a long run is
//! `QUORATE_FUZZ_CASES=1000000 cargo nextest run -p quorate-keys --test fuzz_decoders
//! --release` (see docs/security.md for recorded runs).

#[path = "../../fuzzing/mod.rs"]
mod fuzzing;

use std::collections::BTreeMap;

use prost::Message;
use quorate_escrow::{EscrowPart, SplitRequest, ESCROW_FORMAT};
use quorate_frost::{Ciphersuite, ParsedSigningPackage, SecretKeyPackage};
use quorate_keys::approval::{Approval, ApprovalToken, ApproverKey, SCOPE_OUT_OF_POLICY_QUORUM};
use quorate_keys::audit::{verify_chain, AuditRecord, GENESIS_HASH};
use quorate_keys::manifest::{self, Manifest};
use quorate_transport::intent::SignIntent;
use quorate_wire::pb;

/// Cheap decoders (protobuf, JSON) get more cases than ones that do curve arithmetic.
const CHEAP: u64 = 20_000;
const CRYPTO: u64 = 2_000;

fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("node-{i}")).collect()
}

/// Valid encodings of one signing round of a 2-of-3 key.
struct Round {
    suite: Ciphersuite,
    public_key_package: Vec<u8>,
    key_packages: Vec<Vec<u8>>,
    identifiers: Vec<Vec<u8>>,
    commitments: Vec<Vec<u8>>,
    /// The quorum's commitments by identifier, as a round-2 request carries them.
    quorum: BTreeMap<Vec<u8>, Vec<u8>>,
    message: Vec<u8>,
    shares: BTreeMap<Vec<u8>, Vec<u8>>,
    public_key: Vec<u8>,
    signature: Vec<u8>,
    manifest: Vec<u8>,
}

fn round(suite: Ciphersuite) -> Round {
    let ops = suite.ops();
    let names = names(3);
    let dealt = ops.split(None, &names, 2).unwrap();
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
    let message = b"fuzz corpus message".to_vec();
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
            approver_keys: vec![ApproverKey::generate().public_key().to_vec()],
            rate_limit_per_minute: 60,
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
fn coordinator_package(
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

fn rounds() -> Vec<Round> {
    Ciphersuite::ALL.into_iter().map(round).collect()
}

/// The corpus of one field across all ciphersuites, so every decoder also sees the
/// other ciphersuites' valid encodings (a secp256k1 package sent for an Ed25519 key).
fn all<F: Fn(&Round) -> Vec<Vec<u8>>>(rounds: &[Round], f: F) -> Vec<Vec<u8>> {
    rounds.iter().flat_map(f).collect()
}

fn own(rounds: &[Round], suite: Ciphersuite, f: impl Fn(&Round) -> Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    rounds
        .iter()
        .filter(|r| r.suite == suite)
        .flat_map(f)
        .collect()
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

#[test]
fn fuzz_sign_intent_body() {
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
    fuzzing::run("sign intent body", &corpus, fuzzing::cases(CHEAP), |b| {
        match SignIntent::decode(b) {
            // Whatever decodes re-encodes to exactly its bytes: one encoding each.
            Ok(intent) => {
                assert_eq!(intent.encode(), b, "an intent body with two encodings");
                true
            }
            Err(_) => false,
        }
    });
}

#[test]
fn fuzz_sign_request_into_domain_type() {
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
    fuzzing::run(
        "pb::SignRequest -> api::SignRequest",
        &corpus,
        fuzzing::cases(CHEAP),
        |b| {
            pb::SignRequest::decode(b)
                .ok()
                .and_then(|r| quorate_wire::api::SignRequest::try_from(r).ok())
                .is_some()
        },
    );
}

#[test]
fn fuzz_node_rpc_requests() {
    let rounds = rounds();
    let commit: Vec<Vec<u8>> = vec![pb::CommitRequest {
        key_id: "demo-ed25519".into(),
        count: 4,
    }
    .encode_to_vec()];
    fuzzing::run("pb::CommitRequest", &commit, fuzzing::cases(CHEAP), |b| {
        pb::CommitRequest::decode(b)
            .ok()
            .filter(|r| quorate_wire::validate_key_id(&r.key_id).is_ok())
            .is_some()
    });

    // SignShare: the node parses the request at the boundary, decodes the other
    // signers' commitments in the key's ciphersuite and, for an out-of-policy quorum,
    // the approval token.
    let approver = ApproverKey::generate();
    let token = approver.sign(&approval("fuzz-ed25519"));
    let sign_share = all(&rounds, |r| {
        vec![pb::SignShareRequest {
            key_id: format!("fuzz-{}", r.suite.name().to_lowercase()),
            message: r.message.clone(),
            commitments: quorate_wire::api::signer_commitments(&r.quorum),
            request_id: "req".into(),
            approval_token: token.clone(),
            intent: Some(sample_intent()),
        }
        .encode_to_vec()]
    });
    fuzzing::run(
        "pb::SignShareRequest",
        &sign_share,
        fuzzing::cases(CRYPTO),
        |b| {
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
        },
    );

    // InstallKey: a manifest and a key package, checked against each other.
    let install = all(&rounds, |r| {
        vec![pb::InstallKeyRequest {
            manifest: r.manifest.clone(),
            key_package: r.key_packages[0].clone(),
        }
        .encode_to_vec()]
    });
    fuzzing::run(
        "pb::InstallKeyRequest",
        &install,
        fuzzing::cases(CRYPTO),
        |b| {
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
        },
    );

    let escrow = vec![pb::EscrowSplitRequest {
        key_id: "demo-ed25519".into(),
        threshold: 2,
        custodians: (1..=3)
            .map(|i| pb::EscrowCustodian {
                name: format!("custodian-{i}"),
                age_recipient: format!("age1custodian{i}"),
            })
            .collect(),
    }
    .encode_to_vec()];
    fuzzing::run(
        "pb::EscrowSplitRequest -> SplitRequest",
        &escrow,
        fuzzing::cases(CHEAP),
        |b| {
            pb::EscrowSplitRequest::decode(b)
                .ok()
                .and_then(|r| SplitRequest::try_from(r).ok())
                .is_some()
        },
    );

    let read_audit = vec![pb::ReadAuditRequest { from_seq: 12 }.encode_to_vec()];
    fuzzing::run(
        "pb::ReadAuditRequest",
        &read_audit,
        fuzzing::cases(CHEAP),
        |b| pb::ReadAuditRequest::decode(b).is_ok(),
    );
    let get_manifest = vec![pb::GetManifestRequest {
        key_id: "demo-taproot".into(),
    }
    .encode_to_vec()];
    fuzzing::run(
        "pb::GetManifestRequest",
        &get_manifest,
        fuzzing::cases(CHEAP),
        |b| {
            pb::GetManifestRequest::decode(b)
                .ok()
                .filter(|r| quorate_wire::validate_key_id(&r.key_id).is_ok())
                .is_some()
        },
    );
}

#[test]
fn fuzz_frost_packages_of_every_ciphersuite() {
    let rounds = rounds();
    for suite in Ciphersuite::ALL {
        let ops = suite.ops();
        let name = suite.name();
        let r = rounds.iter().find(|r| r.suite == suite).unwrap();
        let cases = fuzzing::cases(CRYPTO);

        // Each corpus holds this suite's valid encodings, which must be accepted, and
        // the other suites' ones, which the mutations start from as well.
        let mixed =
            |target: String, f: &dyn Fn(&Round) -> Vec<Vec<u8>>, decode: &dyn Fn(&[u8]) -> bool| {
                let mut c = own(&rounds, suite, f);
                for (i, e) in c.iter().enumerate() {
                    assert!(decode(e), "{target}: valid entry {i} is not accepted");
                }
                for e in all(&rounds, f) {
                    if !c.contains(&e) {
                        c.push(e);
                    }
                }
                fuzzing::run_expecting_errors(leak(target), &c, cases, decode);
            };
        // Another signer's commitments, as a node receives them in round 2 (its own
        // entry it does not decode).
        let own_id = r.identifiers[0].clone();
        let other_id = r.identifiers[1].clone();
        let own_commitment = r.quorum[&own_id].clone();
        let received = |other: &[u8]| {
            let quorum = BTreeMap::from([
                (own_id.clone(), own_commitment.clone()),
                (other_id.clone(), other.to_vec()),
            ]);
            ops.receive_signing_package(b"m", &quorum, &own_id).is_ok()
        };
        mixed(
            format!("{name} received commitments"),
            &|r: &Round| r.commitments.clone(),
            &received,
        );
        // Foreign ciphersuites' commitments must be refused, not misread.
        for other in rounds.iter().filter(|o| o.suite != suite) {
            if suite == Ciphersuite::Ed25519 || other.suite == Ciphersuite::Ed25519 {
                for c in &other.commitments {
                    assert!(!received(c), "{name} accepted {} commitments", other.suite);
                }
            }
        }

        // Commitments, as the coordinator decodes them from a node's answer.
        mixed(
            format!("{name} commitments"),
            &|r: &Round| r.commitments.clone(),
            &|b| ops.parse_commitments(b).is_ok(),
        );
        // Identifiers of the other signers in a round-2 quorum.
        let commitment = r.quorum[&other_id].clone();
        mixed(
            format!("{name} identifier"),
            &|r: &Round| r.identifiers[1..].to_vec(),
            &|b| {
                let quorum = BTreeMap::from([
                    (own_id.clone(), own_commitment.clone()),
                    (b.to_vec(), commitment.clone()),
                ]);
                ops.receive_signing_package(b"m", &quorum, &own_id).is_ok()
            },
        );

        // Signature shares: one share replaced by fuzz; aggregation must refuse it
        // cleanly (as a culprit) unless the input is the genuine share.
        let (first_id, _) = r.shares.iter().next().unwrap();
        let first_id = first_id.clone();
        let genuine = r.shares[&first_id].clone();
        let public_key_package = ops.parse_public_key_package(&r.public_key_package).unwrap();
        let package = coordinator_package(suite, &r.quorum, &r.message);
        mixed(
            format!("{name} signature share"),
            &|r: &Round| r.shares.values().take(1).cloned().collect(),
            &|b| {
                let mut shares = r.shares.clone();
                shares.insert(first_id.clone(), b.to_vec());
                let ok = package.aggregate(&shares, &public_key_package).is_ok();
                // Only the genuine share (in its one canonical encoding) aggregates.
                assert!(!ok || b == genuine.as_slice(), "a forged share aggregated");
                ok
            },
        );

        mixed(
            format!("{name} key package"),
            &|r: &Round| r.key_packages.clone(),
            &|b| {
                ops.key_package_info(&SecretKeyPackage::from_bytes(b.to_vec()))
                    .is_ok()
            },
        );
        mixed(
            format!("{name} public key package"),
            &|r: &Round| vec![r.public_key_package.clone()],
            &|b| ops.public_key_info(b).is_ok(),
        );
        let public_key = r.public_key.clone();
        fuzzing::run(
            leak(format!("{name} signature")),
            &own(&rounds, suite, |r| vec![r.signature.clone()]),
            cases,
            |b| ops.verify(&public_key, b"fuzz corpus message", b).is_ok(),
        );
        let signature = r.signature.clone();
        fuzzing::run(
            leak(format!("{name} public key")),
            &own(&rounds, suite, |r| vec![r.public_key.clone()]),
            cases,
            |b| ops.verify(b, b"fuzz corpus message", &signature).is_ok(),
        );
    }
}

/// Target names live for the whole test; leaking a dozen short strings is fine.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[test]
fn fuzz_key_manifest_decode() {
    let rounds = rounds();
    let mut corpus = all(&rounds, |r| vec![r.manifest.clone()]);
    // Also manifests without a policy.
    for r in &rounds {
        let mut m = pb::KeyManifest::decode(r.manifest.as_slice()).unwrap();
        m.policy = None;
        corpus.push(m.encode_to_vec());
    }
    fuzzing::run("KeyManifest", &corpus, fuzzing::cases(CRYPTO), |b| {
        Manifest::decode(b).is_ok()
    });
}

fn approval(key_id: &str) -> Approval {
    let now = quorate_keys::approval::unix_now();
    Approval {
        token_id: "t-1".into(),
        key_id: key_id.into(),
        scope: SCOPE_OUT_OF_POLICY_QUORUM.into(),
        not_before: now - 10,
        not_after: now + 3600,
        reason: "EU outage".into(),
    }
}

#[test]
fn fuzz_approval_token_decode_and_verify() {
    let approver = ApproverKey::generate();
    let approvers = [approver.public_key()];
    let corpus = vec![
        approver.sign(&approval("eu-payments")),
        approver.sign(&approval("k")),
    ];
    let originals: Vec<Approval> = corpus
        .iter()
        .map(|t| ApprovalToken::decode(t).unwrap().approval)
        .collect();
    let now = quorate_keys::approval::unix_now();
    fuzzing::run("ApprovalToken", &corpus, fuzzing::cases(CHEAP), |b| {
        let verified = ApprovalToken::decode(b).and_then(|t| {
            t.verify(&t.approval.key_id.clone(), &approvers, now)
                .cloned()
        });
        // A mutated token that still verifies must grant exactly what was signed
        // (only JSON whitespace or hex case may differ), or it would be a forgery.
        if let Ok(approval) = &verified {
            assert!(originals.contains(approval), "forged approval {approval:?}");
        }
        verified.is_ok()
    });
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

#[test]
fn fuzz_escrow_part_files() {
    let corpus = escrow_corpus();
    let originals: Vec<(u16, Vec<u8>)> = corpus
        .iter()
        .map(|b| {
            let p = EscrowPart::from_json(std::str::from_utf8(b).unwrap())
                .unwrap()
                .shamir_part()
                .unwrap();
            (p.identifier, p.value.expose_bytes().to_vec())
        })
        .collect();
    fuzzing::run("EscrowPart", &corpus, fuzzing::cases(CRYPTO), |b| {
        let Ok(text) = std::str::from_utf8(b) else {
            return false;
        };
        let part = EscrowPart::from_json(text)
            .and_then(|p| p.verify().map(|_| p))
            .and_then(|p| p.shamir_part());
        // A part that still verifies after mutation must be the same point of the
        // same polynomial: verification cannot be fooled into another value.
        if let Ok(p) = &part {
            let got = (p.identifier, p.value.expose_bytes().to_vec());
            assert!(originals.contains(&got), "a mutated escrow part verified");
        }
        part.is_ok()
    });
}

fn audit_chain(n: u64) -> Vec<(u64, Vec<u8>)> {
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

#[test]
fn fuzz_audit_records_in_a_chain() {
    let chain = audit_chain(3);
    let corpus: Vec<Vec<u8>> = chain.iter().map(|(_, b)| b.clone()).collect();
    // The fuzzed record takes the middle place of an otherwise intact chain.
    let original: AuditRecord = serde_json::from_slice(&corpus[1]).unwrap();
    fuzzing::run(
        "audit record (verify_chain)",
        &corpus[1..2],
        fuzzing::cases(CHEAP),
        |b| {
            let mut records = chain.clone();
            records[1].1 = b.to_vec();
            let ok = verify_chain(records).is_ok();
            // Whatever still verifies must say exactly what was written.
            if ok {
                let parsed: AuditRecord = serde_json::from_slice(b).unwrap();
                assert_eq!(parsed, original, "an altered audit record verified");
            }
            ok
        },
    );
}
