//! Property tests over random inputs: escrow split/combine for any valid k-of-m,
//! round trips of every serialized record, and detection of any single-bit change of
//! an audit record. `QUORATE_PROPTEST_CASES=<n>` raises the case count;
//! `QUORATE_FUZZ_SEED=<n>` replays a run (the seed is printed).

#[path = "../../fuzzing/mod.rs"]
mod fuzzing;

use prost::Message;
use quorate_escrow::{EscrowPart, ShamirPart, ESCROW_FORMAT};
use quorate_frost::Ciphersuite;
use quorate_keys::approval::{Approval, ApprovalToken, ApproverKey, SCOPE_OUT_OF_POLICY_QUORUM};
use quorate_keys::audit::{verify_chain, AuditRecord, GENESIS_HASH};
use quorate_keys::manifest::{self, Manifest};
use quorate_wire::pb;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

fn cases(default: u64) -> u64 {
    std::env::var("QUORATE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seeded(name: &str) -> ChaCha8Rng {
    let seed = fuzzing::seed();
    eprintln!("{name}: seed {seed} (replay with QUORATE_FUZZ_SEED={seed})");
    fuzzing::rng(seed)
}

fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("node-{i}")).collect()
}

fn text(rng: &mut ChaCha8Rng, max: usize) -> String {
    let n = rng.gen_range(0..=max);
    // Printable ASCII and some multi-byte characters, which JSON must escape or keep.
    (0..n)
        .map(|_| match rng.gen_range(0..10) {
            0 => 'é',
            1 => '"',
            2 => '\\',
            3 => '\n',
            _ => char::from(rng.gen_range(0x20u8..0x7f)),
        })
        .collect()
}

#[test]
fn escrow_split_and_combine_round_trip_for_any_k_of_m_and_fewer_parts_are_refused() {
    let mut rng = seeded("escrow k-of-m");
    for _ in 0..cases(200) {
        let suite = *Ciphersuite::ALL.choose(&mut rng).unwrap();
        let ops = suite.ops();
        let m: u16 = rng.gen_range(2..=10);
        let k: u16 = rng.gen_range(2..=m);
        let dealt = ops.split(None, &names(3), 2).unwrap();
        let (name, key_package) = &dealt.key_packages[rng.gen_range(0..3)];
        let info = ops.key_package_info(key_package).unwrap();
        let split = quorate_escrow::split(suite, key_package, k, m).unwrap();
        assert_eq!(split.parts.len(), usize::from(m));
        assert_eq!(split.commitments.len(), usize::from(k));
        assert_eq!(split.verifying_share, info.verifying_share);
        for part in &split.parts {
            quorate_escrow::verify(suite, part, &split.commitments).unwrap();
        }

        // Any k or more parts, in any order, rebuild exactly this node's share.
        let mut parts: Vec<ShamirPart> = split.parts.clone();
        parts.shuffle(&mut rng);
        let take = rng.gen_range(usize::from(k)..=usize::from(m));
        let share = quorate_escrow::combine(suite, &parts[..take], &split.verifying_share)
            .unwrap_or_else(|e| panic!("{suite} {k}-of-{m} with {take} parts: {e}"));
        let rebuilt = ops
            .key_package_from_signing_share(
                &info.identifier,
                &share,
                &dealt.public_key_package,
                info.min_signers,
            )
            .unwrap();
        assert_eq!(
            rebuilt.expose_bytes(),
            key_package.expose_bytes(),
            "{suite} {k}-of-{m}: rebuilt key package of {name} differs"
        );

        // Fewer than k parts never pass as the share.
        let fewer = rng.gen_range(1..usize::from(k));
        assert!(
            quorate_escrow::combine(suite, &parts[..fewer], &split.verifying_share).is_err(),
            "{suite} {k}-of-{m}: {fewer} parts were accepted"
        );
    }
}

#[test]
fn manifests_round_trip() {
    let mut rng = seeded("manifest round trip");
    for _ in 0..cases(100) {
        let suite = *Ciphersuite::ALL.choose(&mut rng).unwrap();
        let n = rng.gen_range(2..=10);
        let t: u16 = rng.gen_range(2..=n as u16);
        let names = names(n);
        let dealt = suite.ops().split(None, &names, t).unwrap();
        let participants: Vec<pb::ManifestParticipant> = names
            .iter()
            .map(|id| pb::ManifestParticipant {
                node_id: id.clone(),
                region: text(&mut rng, 20),
                jurisdiction: ["EU", "US", "SG"].choose(&mut rng).unwrap().to_string(),
            })
            .collect();
        let policy = rng.gen_bool(0.5).then(|| pb::KeyPolicy {
            allowed_clients: vec!["spiffe://quorate.test/client/a".into()],
            home_jurisdictions: vec!["EU".into()],
            min_home_signers: rng.gen_range(0..=u32::from(t)),
            approver_keys: vec![ApproverKey::generate().public_key().to_vec()],
            rate_limit_per_minute: rng.gen_range(0..1000),
            approvals_required: 0,
            administrator_keys: vec![ApproverKey::generate().public_key().to_vec()],
            administrators_required: 1,
            unsafe_no_administrators: false,
        });
        let created_at = text(&mut rng, 30);
        let encoded = manifest::encode(
            "key-1",
            suite,
            t,
            dealt.public_key_package.clone(),
            participants.clone(),
            created_at.clone(),
            policy.clone(),
        );
        let m = Manifest::decode(&encoded).unwrap();
        assert_eq!(m.ciphersuite, suite);
        assert_eq!(m.threshold, t);
        assert_eq!(m.public_key_package, dealt.public_key_package);
        assert_eq!(m.created_at, created_at);
        assert_eq!(m.encoded, encoded);
        assert_eq!(m.hash, quorate_wire::sha256(&encoded));
        for (p, q) in m.participants.iter().zip(&participants) {
            assert_eq!(
                (&p.node_id, &p.region, &p.jurisdiction),
                (&q.node_id, &q.region, &q.jurisdiction)
            );
        }
        // The stored bytes are canonical: re-encoding the decoded protobuf gives them.
        let pb = pb::KeyManifest::decode(encoded.as_slice()).unwrap();
        assert_eq!(pb.encode_to_vec(), encoded);
        assert_eq!(pb.policy, policy);
    }
}

fn random_record(rng: &mut ChaCha8Rng) -> AuditRecord {
    AuditRecord {
        node_id: text(rng, 12),
        event: [
            "sign_share",
            "sign_refused",
            "key_installed",
            "escrow_split",
        ]
        .choose(rng)
        .unwrap()
        .to_string(),
        key_id: text(rng, 20),
        client_id: text(rng, 40),
        request_id: text(rng, 20),
        message_sha256: hex::encode(rng.gen::<[u8; 32]>()),
        quorum: (0..rng.gen_range(0..6)).map(|_| text(rng, 8)).collect(),
        approval_token_id: text(rng, 10),
        caller: text(rng, 40),
        detail: text(rng, 60),
        time_unix_ms: rng.gen(),
        ..Default::default()
    }
}

#[test]
fn audit_records_round_trip_and_any_single_bit_change_is_detected() {
    let mut rng = seeded("audit records");
    for _ in 0..cases(500) {
        let len = rng.gen_range(1..=5u64);
        let mut prev = GENESIS_HASH.to_string();
        let mut chain = Vec::new();
        for seq in 0..len {
            let r = random_record(&mut rng).seal(seq, &prev);
            prev = r.hash.clone();
            let bytes = r.encode();
            let back: AuditRecord = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(back, r);
            chain.push((seq, bytes));
        }
        assert_eq!(verify_chain(chain.clone()).unwrap(), (len, prev));
        // Flip one random bit of one random record.
        let victim = rng.gen_range(0..chain.len());
        let byte = rng.gen_range(0..chain[victim].1.len());
        let bit = rng.gen_range(0..8);
        let mut damaged = chain.clone();
        damaged[victim].1[byte] ^= 1 << bit;
        let err = verify_chain(damaged).expect_err("a flipped bit must break the chain");
        assert!(err.seq <= victim as u64 + 1, "{err}");
    }
}

#[test]
fn escrow_part_files_round_trip() {
    let mut rng = seeded("escrow part files");
    for _ in 0..cases(64) {
        let suite = *Ciphersuite::ALL.choose(&mut rng).unwrap();
        let ops = suite.ops();
        let m: u16 = rng.gen_range(2..=10);
        let k: u16 = rng.gen_range(2..=m);
        let dealt = ops.split(None, &names(3), 2).unwrap();
        let split = quorate_escrow::split(suite, &dealt.key_packages[0].1, k, m).unwrap();
        for part in &split.parts {
            let file = EscrowPart {
                format: ESCROW_FORMAT.into(),
                key_id: "key-1".into(),
                node_id: "node-1".into(),
                ciphersuite: suite.name().into(),
                custodian: text(&mut rng, 16),
                threshold: k,
                parts: m,
                identifier: part.identifier,
                value: hex::encode(part.value.expose_bytes()),
                verifying_share: hex::encode(&split.verifying_share),
                commitments: split.commitments.iter().map(hex::encode).collect(),
                group_public_key: hex::encode(rng.gen::<[u8; 32]>()),
                manifest_hash: hex::encode(rng.gen::<[u8; 32]>()),
            };
            let back = EscrowPart::from_json(&file.to_json()).unwrap();
            assert!(back == file, "escrow part does not round-trip");
            back.verify().unwrap();
            assert_eq!(
                back.shamir_part().unwrap().value.expose_bytes(),
                part.value.expose_bytes()
            );
        }
    }
}

fn token_id(rng: &mut ChaCha8Rng) -> String {
    const ALLOWED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-";
    let n = rng.gen_range(1..=quorate_keys::approval::MAX_TOKEN_ID_LEN);
    (0..n)
        .map(|_| char::from(ALLOWED[rng.gen_range(0..ALLOWED.len())]))
        .collect()
}

#[test]
fn approval_tokens_round_trip_and_verify() {
    let mut rng = seeded("approval tokens");
    let approver = ApproverKey::generate();
    for _ in 0..cases(256) {
        let not_before = rng.gen_range(0..u64::from(u32::MAX));
        let approval = Approval {
            // Token ids are 1..=128 characters of [A-Za-z0-9._:-]: any such id.
            token_id: token_id(&mut rng),
            key_id: "key-1".into(),
            scope: SCOPE_OUT_OF_POLICY_QUORUM.into(),
            not_before,
            not_after: not_before + rng.gen_range(1..=quorate_keys::approval::MAX_VALIDITY_SECS),
            reason: text(&mut rng, 200),
            client: None,
            message_sha256: None,
        };
        let token = approver.sign(&approval);
        let decoded = ApprovalToken::decode(&token).unwrap();
        assert_eq!(decoded.approval, approval);
        assert_eq!(
            decoded
                .verify("key-1", &[approver.public_key()], 1, not_before)
                .unwrap(),
            &approval
        );
    }
}
