//! Custodian escrow over real node processes: a node splits its own share among the
//! custodians fixed in the key's manifest (age-encrypted), custodians decrypt and
//! verify their parts alone, the node is wiped, its share is recovered from the
//! parts into it, and it signs again in a quorum that cannot do without it. Too few
//! or forged parts install nothing. Whoever holds the ceremony's certificate cannot
//! have parts encrypted to anyone but those custodians, nor put a share back on a
//! node without the key's administrators.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use age::secrecy::ExposeSecret;
use common::{bin_dir, ceremony_client, start_default, TestNetwork, DEADLINE};
use prost::Message;
use quorate_ceremony::escrow::{
    self, part_file_name, EscrowError, Identities, RecoverRequest, SplitRequest,
};
use quorate_escrow::EscrowPart;
use quorate_frost::Ciphersuite;
use quorate_transport::identity::Role;
use quorate_wire::pb;
use quorate_wire::pb::ceremony_client::CeremonyClient;
use tonic::Code;

const TARGET: &str = "node-2";
/// The testnet's custodians, fixed in every key's manifest.
const CUSTODIANS: [&str; 4] = quorate_testnet::custodians::NAMES;
/// Parts needed to recover: 3 of the 4 custodians.
const K: u16 = quorate_testnet::custodians::THRESHOLD;

/// A custodian: name, age identity, and the identity file as `age-keygen` writes it.
struct Holder {
    name: String,
    identity: age::x25519::Identity,
    identity_file: PathBuf,
}

/// The custodians the testnet registered with its keys (`DIR/custodians/`).
fn custodians(net: &TestNetwork) -> Vec<Holder> {
    net.custodians
        .iter()
        .map(|c| Holder {
            name: c.name.clone(),
            identity: quorate_testnet::custodians::identity(c).unwrap(),
            identity_file: c.identity_file.clone(),
        })
        .collect()
}

/// An attacker's age identity, in a file as `age-keygen` writes it.
fn attacker_identity(dir: &Path, name: &str) -> (age::x25519::Identity, PathBuf) {
    let identity = age::x25519::Identity::generate();
    let file = dir.join(format!("{name}-key.txt"));
    std::fs::write(
        &file,
        format!(
            "# public key: {}\n{}\n",
            identity.to_public(),
            identity.to_string().expose_secret()
        ),
    )
    .unwrap();
    (identity, file)
}

fn key_of(net: &TestNetwork, suite: Ciphersuite) -> String {
    net.spec
        .keys
        .iter()
        .find(|k| k.ciphersuite == suite)
        .expect("the default network has a key per ciphersuite")
        .key_id
        .clone()
}

/// An `EscrowSplit` of `TARGET`'s share of `key_id` as the ceremony tool sends
/// it: the split's setup, authorized by two of the network's administrators.
async fn authorized_split(net: &TestNetwork, key_id: &str) -> pb::EscrowSplitRequest {
    let plan =
        quorate_ceremony::escrow::plan_split(&net.ceremony().unwrap(), key_id, &[TARGET.into()])
            .await
            .unwrap();
    pb::EscrowSplitRequest {
        key_id: key_id.into(),
        setup: Some(plan.setup().pb.clone()),
        authorizations: net.authorize(&plan).unwrap(),
        ..Default::default()
    }
}

async fn holds_key(net: &TestNetwork, node_id: &str, key_id: &str) -> bool {
    match ceremony_client(net, node_id)
        .await
        .get_manifest(pb::GetManifestRequest {
            key_id: key_id.into(),
        })
        .await
    {
        Ok(_) => true,
        Err(status) if status.code() == Code::NotFound => false,
        Err(status) => panic!("GetManifest on {node_id}: {status}"),
    }
}

/// Signs with `TARGET` forced into the quorum: two other nodes are down, so the only
/// 3 live nodes of the 3-of-5 key include it.
async fn sign_with_target_required(net: &mut TestNetwork, key_id: &str) {
    net.kill_node("node-4").await.unwrap();
    net.kill_node("node-5").await.unwrap();
    let client = net.client().await.unwrap();
    let signed = client
        .sign_verified(key_id, b"signed with a recovered share", DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("{key_id}: {e:#}"));
    assert!(
        signed.response.signers.iter().any(|s| s == TARGET),
        "signers {:?} must include the recovered node",
        signed.response.signers
    );
}

/// Decrypts a part as a custodian would, with the age crate and nothing of ours.
fn custodian_decrypts(holder: &Holder, age_file: &Path) -> String {
    let ciphertext = std::fs::read(age_file).unwrap();
    assert!(
        !ciphertext.windows(14).any(|w| w == b"quorate-escrow"),
        "{} holds plaintext",
        age_file.display()
    );
    let plaintext = age::decrypt(&holder.identity, &ciphertext).unwrap();
    String::from_utf8(plaintext).unwrap()
}

async fn escrow_round_trip(suite: Ciphersuite) {
    let mut net = start_default().await;
    let key_id = key_of(&net, suite);
    let work = net.dir.path().join("escrow");
    std::fs::create_dir_all(&work).unwrap();
    let holders = custodians(&net);
    let file = net.ceremony().unwrap();
    let manifest_before = ceremony_client(&net, TARGET)
        .await
        .get_manifest(pb::GetManifestRequest {
            key_id: key_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .manifest;

    // 1. The node splits its share among the manifest's custodians; the ceremony
    //    only writes ciphertexts.
    let out = work.join("out");
    let split = net.escrow_split(&key_id, TARGET, &out).await.unwrap();
    assert_eq!(split.files.len(), CUSTODIANS.len());
    assert_eq!(split.threshold, K);
    assert_eq!(
        split.custodians,
        holders
            .iter()
            .map(|h| (h.name.clone(), h.identity.to_public().to_string()))
            .collect::<Vec<_>>()
    );

    // 2. Each custodian decrypts with the age crate and verifies their part alone.
    let mut json_parts = Vec::new();
    for (i, holder) in holders.iter().enumerate() {
        let age_file = out.join(part_file_name(&key_id, TARGET, &holder.name));
        assert_eq!(split.files[i], (holder.name.clone(), age_file.clone()));
        let json = custodian_decrypts(holder, &age_file);
        let part = EscrowPart::from_json(&json).unwrap();
        part.verify().unwrap();
        assert_eq!(
            (
                part.key_id.as_str(),
                part.node_id.as_str(),
                part.custodian.as_str(),
                part.ciphersuite.as_str(),
                part.threshold,
                part.identifier
            ),
            (
                key_id.as_str(),
                TARGET,
                holder.name.as_str(),
                suite.name(),
                K,
                u16::try_from(i + 1).unwrap()
            )
        );
        assert_eq!(part.verifying_share, split.verifying_share);
        let json_file = work.join(format!("{}.json", holder.name));
        std::fs::write(&json_file, json.as_bytes()).unwrap();
        escrow::verify_part(&json_file, &Identities::none()).unwrap();
        let ids = Identities::load(std::slice::from_ref(&holder.identity_file)).unwrap();
        escrow::verify_part(&age_file, &ids).unwrap();
        json_parts.push((json_file, part));
    }
    // Another custodian's identity does not open a part.
    let wrong = Identities::load(std::slice::from_ref(&holders[1].identity_file)).unwrap();
    let err = escrow::verify_part(
        &out.join(part_file_name(&key_id, TARGET, &holders[0].name)),
        &wrong,
    )
    .unwrap_err();
    assert!(matches!(err, EscrowError::Decrypt { .. }), "{err}");

    // 3. The node's region is lost.
    net.wipe_node(TARGET).await.unwrap();
    assert!(!holds_key(&net, TARGET, &key_id).await);

    // 4. Too few parts: refused, nothing installed.
    let err = escrow::recover(
        &file,
        RecoverRequest {
            key_id: key_id.clone(),
            node_id: TARGET.into(),
            parts: json_parts[..2].to_vec(),
            plan: None,
            authorizations: Vec::new(),
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, EscrowError::Parts(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("too few parts: 2 given") && msg.contains("needs 3"),
        "{msg}"
    );
    assert!(!holds_key(&net, TARGET, &key_id).await);

    // 5. A forged part (another part's value under its own identifier): refused,
    //    naming the file and the custodian, nothing installed.
    let mut forged = json_parts[..3].to_vec();
    forged[0].1.value = json_parts[3].1.value.clone();
    let err = escrow::recover(
        &file,
        RecoverRequest {
            key_id: key_id.clone(),
            node_id: TARGET.into(),
            parts: forged,
            plan: None,
            authorizations: Vec::new(),
        },
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EscrowError::Part { .. }), "{msg}");
    assert!(
        msg.contains("bank-a") && msg.contains("does not verify"),
        "{msg}"
    );
    assert!(!holds_key(&net, TARGET, &key_id).await);

    // 6. Three genuine parts (not the first three) restore the node, as the
    //    key's administrators authorized.
    let outcome = net
        .escrow_recover(&key_id, TARGET, json_parts[1..].to_vec())
        .await
        .unwrap();
    assert_eq!(outcome.parts_used, 3);
    assert!(!outcome.manifest_from.contains(&TARGET.to_string()));
    let manifest_after = ceremony_client(&net, TARGET)
        .await
        .get_manifest(pb::GetManifestRequest {
            key_id: key_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .manifest;
    assert_eq!(manifest_after, manifest_before);

    // 7. A second recovery into a node that holds the key is refused.
    let err = net
        .escrow_recover(&key_id, TARGET, json_parts[..3].to_vec())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("AlreadyExists"), "{err}");

    // 8. The recovered node signs in a quorum that needs it.
    sign_with_target_required(&mut net, &key_id).await;
}

#[tokio::test]
async fn escrow_round_trip_restores_a_wiped_node_that_then_signs_ed25519() {
    escrow_round_trip(Ciphersuite::Ed25519).await;
}

#[tokio::test]
async fn escrow_round_trip_restores_a_wiped_node_that_then_signs_secp256k1() {
    escrow_round_trip(Ciphersuite::Secp256k1).await;
}

#[tokio::test]
async fn escrow_round_trip_restores_a_wiped_node_that_then_signs_secp256k1_tr() {
    escrow_round_trip(Ciphersuite::Secp256k1Tr).await;
}

#[tokio::test]
async fn escrow_split_is_refused_to_roles_other_than_ceremony() {
    let net = start_default().await;
    let node = net.node(TARGET).unwrap();
    let channel = net
        .tls_paths(Role::Coordinator, "coordinator")
        .load()
        .unwrap()
        .node_channel(&node.endpoint, TARGET, Duration::from_secs(2))
        .unwrap();
    let status = CeremonyClient::new(channel)
        .escrow_split(pb::EscrowSplitRequest {
            key_id: "demo-ed25519".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status}");
}

fn ceremony_cli(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(bin_dir().join("quorate-ceremony"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("quorate-ceremony runs (cargo build --workspace --bins)");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `quorate-ceremony authorize` of `plan` by two of the network's administrators,
/// into WORK/NAME-1.json and WORK/NAME-2.json: each file with what it printed.
fn authorize_with_two(
    net: &TestNetwork,
    work: &Path,
    plan: &str,
    name: &str,
) -> Vec<(String, String)> {
    (1..=2)
        .map(|n| {
            let admin = quorate_testnet::administrators::key_path(&net.net.dir, n)
                .display()
                .to_string();
            let auth = work.join(format!("{name}-{n}.json")).display().to_string();
            let (code, stdout, stderr) = ceremony_cli(&[
                "authorize",
                "--plan",
                plan,
                "--admin-key",
                &admin,
                "--out",
                &auth,
            ]);
            assert_eq!(code, 0, "{stdout}{stderr}");
            (auth, stdout)
        })
        .collect()
}

/// The commands exactly as docs/ceremony.md shows them, run through the binary.
#[tokio::test]
async fn escrow_cli_split_verify_recover_with_exit_codes() {
    let mut net = start_default().await;
    let key_id = "demo-taproot";
    let work = net.dir.path().join("escrow");
    std::fs::create_dir_all(&work).unwrap();
    let holders = custodians(&net);
    let ceremony = net.ceremony_file.display().to_string();
    let out = work.join("out");
    let out_arg = out.display().to_string();
    // Planned, authorized by two of the network's administrators, then run.
    let plan = work.join("split-plan.json").display().to_string();
    let (code, stdout, stderr) = ceremony_cli(&[
        "escrow",
        "split",
        "--ceremony",
        &ceremony,
        "--key-id",
        key_id,
        "--node",
        TARGET,
        "--write-plan",
        &plan,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let authorizations: Vec<String> = authorize_with_two(&net, &work, &plan, "split")
        .into_iter()
        .map(|(auth, stdout)| {
            assert!(stdout.contains("operation:   escrow-split"), "{stdout}");
            auth
        })
        .collect();
    let args = vec![
        "escrow",
        "split",
        "--ceremony",
        &ceremony,
        "--plan",
        &plan,
        "--authorization",
        &authorizations[0],
        "--authorization",
        &authorizations[1],
        "--out",
        &out_arg,
    ];
    let (code, stdout, stderr) = ceremony_cli(&args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let part = |h: &Holder| out.join(part_file_name(key_id, TARGET, &h.name));
    for h in &holders {
        assert!(stdout.contains(&part(h).display().to_string()), "{stdout}");
        // Each custodian is shown with the recipient its part is encrypted to.
        assert!(
            stdout.contains(&format!("{} ({})", h.name, h.identity.to_public())),
            "{stdout}"
        );
    }
    // The custodians are the manifest's: a split naming others is not a command.
    let mut naming = args.clone();
    let attacker = age::x25519::Identity::generate().to_public().to_string();
    let custodian_arg = format!("mallory={attacker}");
    naming.extend(["--custodian", &custodian_arg]);
    let (code, _, stderr) = ceremony_cli(&naming);
    assert_eq!(code, 64, "{stderr}");
    // Splitting again into the same directory would replace files: usage error.
    let (code, _, stderr) = ceremony_cli(&args);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("already exists"), "{stderr}");

    // One custodian verifies their .age part with their identity file.
    let p0 = part(&holders[0]).display().to_string();
    let id0 = holders[0].identity_file.display().to_string();
    let (code, stdout, stderr) =
        ceremony_cli(&["escrow", "verify", "--part", &p0, "--identity", &id0]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("OK: part 1 of 4 (custodian bank-a)"),
        "{stdout}"
    );
    // Without the identity: usage error.
    let (code, _, stderr) = ceremony_cli(&["escrow", "verify", "--part", &p0]);
    assert_eq!(code, 64, "{stderr}");
    // The custodian decrypts with the standard `age` tool where it is installed
    // (apt-get install age), else with the age crate, and verifies the JSON.
    let json = work.join("bank-a-part.json");
    let age_cli = Command::new("age")
        .args(["-d", "-i", &id0, "-o"])
        .arg(&json)
        .arg(&p0)
        .output();
    match age_cli {
        Ok(output) => assert!(
            output.status.success(),
            "age -d failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("the age CLI is not installed; decrypting with the age crate");
            std::fs::write(&json, custodian_decrypts(&holders[0], &part(&holders[0]))).unwrap();
        }
        Err(e) => panic!("running age: {e}"),
    }
    let json_arg = json.display().to_string();
    let (code, stdout, stderr) = ceremony_cli(&["escrow", "verify", "--part", &json_arg]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("OK: part 1 of 4 (custodian bank-a)"),
        "{stdout}"
    );

    net.wipe_node(TARGET).await.unwrap();
    let ids: Vec<String> = holders
        .iter()
        .map(|h| h.identity_file.display().to_string())
        .collect();
    let parts: Vec<String> = holders
        .iter()
        .map(|h| part(h).display().to_string())
        .collect();
    let recover = |n: usize, how: &[&str]| {
        let mut args = vec!["escrow", "recover", "--ceremony", &ceremony];
        args.extend(how);
        for p in &parts[..n] {
            args.extend(["--part", p.as_str()]);
        }
        for i in &ids {
            args.extend(["--identity", i.as_str()]);
        }
        ceremony_cli(&args)
    };
    let unplanned = ["--key-id", key_id, "--node", TARGET];
    // Two parts of a 3-of-4 escrow: refused (exit 1), nothing installed.
    let (code, _, stderr) = recover(2, &unplanned);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("too few parts: 2 given"), "{stderr}");
    assert!(!holds_key(&net, TARGET, key_id).await);
    // No --part at all: usage error.
    let (code, _, stderr) = ceremony_cli(&[
        "escrow",
        "recover",
        "--ceremony",
        &ceremony,
        "--key-id",
        key_id,
        "--node",
        TARGET,
    ]);
    assert_eq!(code, 64, "{stderr}");
    // Enough parts but no authorization of the key's administrators: usage error,
    // nothing installed.
    let (code, _, stderr) = recover(3, &unplanned);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("has administrators"), "{stderr}");
    assert!(!holds_key(&net, TARGET, key_id).await);

    // Planned (no parts needed yet), authorized by two administrators, then run.
    let plan = work.join("recover-plan.json").display().to_string();
    let (code, stdout, stderr) = ceremony_cli(&[
        "escrow",
        "recover",
        "--ceremony",
        &ceremony,
        "--key-id",
        key_id,
        "--node",
        TARGET,
        "--write-plan",
        &plan,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let mut planned = vec!["--plan".to_string(), plan.clone()];
    for (auth, stdout) in authorize_with_two(&net, &work, &plan, "recover") {
        assert!(stdout.contains("operation:   escrow-recover"), "{stdout}");
        assert!(
            stdout.contains(&format!("installs on {TARGET}"))
                && stdout.contains("with its policy: {"),
            "{stdout}"
        );
        planned.extend(["--authorization".to_string(), auth]);
    }
    let planned: Vec<&str> = planned.iter().map(String::as_str).collect();
    // One authorization of two needed: refused before any node is asked.
    let (code, _, stderr) = recover(3, &planned[..4]);
    assert_eq!(code, 64, "{stderr}");
    assert!(!holds_key(&net, TARGET, key_id).await);
    let (code, stdout, stderr) = recover(3, &planned);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("recovered node node-2's share"), "{stdout}");
    assert!(holds_key(&net, TARGET, key_id).await);
    sign_with_target_required(&mut net, key_id).await;
}

/// The node's audit records (JSON), read as an auditor over the `Audit` service.
async fn audit_records(net: &TestNetwork, node_id: &str) -> Vec<serde_json::Value> {
    let tls = net.issue(Role::Auditor, "auditor").unwrap();
    let endpoint = net.node(node_id).unwrap().endpoint.clone();
    quorate_ceremony::audit::fetch(&endpoint, node_id, &tls)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, r)| serde_json::from_slice(&r).unwrap())
        .collect()
}

/// The attack: holding only the ceremony's certificate, ask nodes (any `t` would
/// do; every node is tried) to escrow their shares to two "custodians" that are both
/// the attacker's own recipients, decrypt the parts and recombine `t` shares into
/// the group secret. Every node
/// refuses (the custodians are the manifest's, not the caller's) and audits the
/// attempt with the recipients named; a split to the registered custodians still
/// works, and none of its parts opens with the attacker's identity.
#[tokio::test]
async fn escrow_to_recipients_the_caller_names_is_refused_by_every_node_and_audited() {
    let net = start_default().await;
    let key_id = key_of(&net, Ciphersuite::Ed25519);
    let work = net.dir.path().join("attack");
    std::fs::create_dir_all(&work).unwrap();
    let (mallory, _) = attacker_identity(&work, "mallory");
    let (trudy, _) = attacker_identity(&work, "trudy");
    let named = [("bank-a", &mallory), ("law-firm-b", &trudy)];
    // The attacker needs `t` of them; every node is tried, so no node may answer.
    let every_node: Vec<String> = net.nodes.iter().map(|n| n.spec.id.clone()).collect();
    assert!(every_node.len() > usize::from(net.spec.threshold));
    for node in &every_node {
        let answer = ceremony_client(&net, node)
            .await
            .escrow_split(pb::EscrowSplitRequest {
                key_id: key_id.clone(),
                threshold: 2,
                custodians: named
                    .iter()
                    .map(|(name, id)| pb::EscrowCustodian {
                        name: (*name).into(),
                        age_recipient: id.to_public().to_string(),
                    })
                    .collect(),
                ..Default::default()
            })
            .await;
        let status = match answer {
            Err(status) => status,
            Ok(response) => {
                // What the attacker would have got: parts it can open.
                let opened = response
                    .into_inner()
                    .parts
                    .iter()
                    .filter(|p| age::decrypt(&mallory, &p.age_file).is_ok())
                    .count();
                panic!(
                    "{node} answered an escrow to the caller's recipients instead of refusing it \
                     ({opened} of its parts open with the attacker's identity)"
                );
            }
        };
        assert_eq!(status.code(), Code::InvalidArgument, "{node}: {status}");
        assert!(
            status.message().contains("manifest"),
            "{node}: {}",
            status.message()
        );
        // The attempt is on the record, naming the recipients it asked for.
        let records = audit_records(&net, node).await;
        let refused = records
            .iter()
            .find(|r| r["event"] == "escrow_split_refused" && r["key_id"] == key_id.as_str())
            .unwrap_or_else(|| panic!("{node} did not audit the refused escrow"));
        let detail = refused["detail"].as_str().unwrap();
        assert!(
            detail.contains(&mallory.to_public().to_string())
                && detail.contains(&trudy.to_public().to_string()),
            "{detail}"
        );
        assert!(
            refused["caller"]
                .as_str()
                .unwrap()
                .ends_with("/ceremony/testnet"),
            "{refused}"
        );
        assert!(!records.iter().any(|r| r["event"] == "escrow_split"));
    }

    // The same certificate may still escrow, to the registered custodians only.
    let holders = custodians(&net);
    let response = ceremony_client(&net, TARGET)
        .await
        .escrow_split(authorized_split(&net, &key_id).await)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.parts.len(), holders.len());
    for (part, holder) in response.parts.iter().zip(&holders) {
        assert_eq!(part.custodian, holder.name);
        assert!(age::decrypt(&mallory, &part.age_file).is_err());
        assert!(age::decrypt(&trudy, &part.age_file).is_err());
        let json =
            String::from_utf8(age::decrypt(&holder.identity, &part.age_file).unwrap()).unwrap();
        let parsed = EscrowPart::from_json(&json).unwrap();
        parsed.verify().unwrap();
        assert_eq!(
            (parsed.threshold, parsed.custodian.as_str()),
            (K, holder.name.as_str())
        );
    }
    // Its record names each custodian with the recipient its part went to.
    let records = audit_records(&net, TARGET).await;
    let split = records
        .iter()
        .find(|r| r["event"] == "escrow_split")
        .expect("the split is audited");
    let detail = split["detail"].as_str().unwrap();
    for h in &holders {
        assert!(
            detail.contains(&format!("{}:{}", h.name, h.identity.to_public())),
            "{detail}"
        );
    }
    assert!(detail.contains(&format!("threshold={K}")), "{detail}");
}

/// An age recipient spelling raw key bytes, as age would print them.
fn recipient_of(key: [u8; 32]) -> String {
    use bech32::ToBase32;
    bech32::encode("age", key.to_base32(), bech32::Variant::Bech32).unwrap()
}

/// The ceremony certificate installs a key for a node that does not hold it, with
/// custodians whose recipients are weak: an all-zero or other small-order X25519
/// key (age would panic encrypting to it, every share secret being zero) or a real
/// custodian's key with bit 255 set (x25519 ignores the bit, so it aliases that
/// key), or another custodian's key (one holder would count twice towards the
/// threshold). The node refuses the manifest; the key is not installed, and the node keeps
/// serving.
#[tokio::test]
async fn a_manifest_naming_a_weak_aliased_or_shared_recipient_is_refused_by_the_node() {
    let net = start_default().await;
    let holders = custodians(&net);
    let key_of_holder = |h: &Holder| {
        use bech32::FromBase32;
        let (_, data, _) = bech32::decode(&h.identity.to_public().to_string()).unwrap();
        <[u8; 32]>::try_from(Vec::<u8>::from_base32(&data).unwrap()).unwrap()
    };
    let mut aliased = key_of_holder(&holders[0]);
    aliased[31] |= 0x80;
    // law-firm-b's own key: both custodians the same holder, who alone meets k = 2.
    let shared = key_of_holder(&holders[1]);
    let mut small_order = [0u8; 32];
    small_order.copy_from_slice(
        &hex::decode("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800").unwrap(),
    );
    let ops = Ciphersuite::Ed25519.ops();
    let names: Vec<String> = net.nodes.iter().map(|n| n.spec.id.clone()).collect();
    for (i, weak) in [[0u8; 32], small_order, aliased, shared]
        .into_iter()
        .enumerate()
    {
        let key_id = format!("weak-recipient-{i}");
        let dealt = ops.split(None, &names, net.spec.threshold).unwrap();
        let escrow = pb::KeyEscrow {
            threshold: 2,
            custodians: vec![
                pb::EscrowCustodian {
                    name: "bank-a".into(),
                    age_recipient: recipient_of(weak),
                },
                pb::EscrowCustodian {
                    name: "law-firm-b".into(),
                    age_recipient: holders[1].identity.to_public().to_string(),
                },
            ],
        };
        let manifest = quorate_keys::manifest::NewManifest {
            key_id: key_id.clone(),
            ciphersuite: Ciphersuite::Ed25519,
            threshold: net.spec.threshold,
            public_key_package: dealt.public_key_package.clone(),
            participants: net
                .nodes
                .iter()
                .map(|n| n.spec.manifest_participant())
                .collect(),
            created_at: "2026-01-01T00:00:00Z".into(),
            policy: Some(pb::KeyPolicy {
                unsafe_no_administrators: true,
                ..Default::default()
            }),
            escrow: Some(escrow),
        }
        .encode();
        let mut client = ceremony_client(&net, TARGET).await;
        let installed = client
            .install_key(pb::InstallKeyRequest {
                manifest,
                key_package: dealt
                    .key_packages
                    .iter()
                    .find(|(n, _)| n == TARGET)
                    .unwrap()
                    .1
                    .expose_bytes()
                    .to_vec(),
                ..Default::default()
            })
            .await;
        let status = match installed {
            Err(status) => status,
            Ok(_) => {
                // What the attacker gets from the installed key: a panic in the node
                // (small order) or parts bank-a cannot open (aliased).
                let split = client
                    .escrow_split(pb::EscrowSplitRequest {
                        key_id: key_id.clone(),
                        ..Default::default()
                    })
                    .await;
                panic!(
                    "{TARGET} installed a key escrowed to a weak recipient; its split: {:?}",
                    split.map(|_| "parts")
                );
            }
        };
        assert_eq!(status.code(), Code::InvalidArgument, "{status}");
        assert!(
            status.message().contains("bank-a")
                && (status.message().contains("small order")
                    || status.message().contains("bit 255")
                    || status.message().contains("same recipient")),
            "{}",
            status.message()
        );
        assert!(!holds_key(&net, TARGET, &key_id).await);
    }
    // The node still serves: it escrows an existing key to its custodians.
    let parts = ceremony_client(&net, TARGET)
        .await
        .escrow_split(authorized_split(&net, &key_of(&net, Ciphersuite::Ed25519)).await)
        .await
        .unwrap()
        .into_inner()
        .parts;
    assert_eq!(parts.len(), holders.len());
}

/// A key created without custodians cannot be escrowed at all: the node refuses
/// with FAILED_PRECONDITION, and `escrow split` exits 1 saying why.
#[tokio::test]
async fn a_key_created_without_custodians_cannot_be_escrowed() {
    let net = start_default().await;
    let key_id = "no-custodians";
    let transcript = quorate_ceremony::keygen::run_dkg(
        &net.ceremony().unwrap(),
        quorate_ceremony::keygen::DkgRequest {
            key_id: key_id.into(),
            ciphersuite: Ciphersuite::Ed25519,
            threshold: net.spec.threshold,
            policy: Some(pb::KeyPolicy {
                unsafe_no_administrators: true,
                ..Default::default()
            }),
            escrow: None,
        },
    )
    .await
    .unwrap();
    assert!(transcript.escrow.is_none());
    let status = ceremony_client(&net, TARGET)
        .await
        .escrow_split(pb::EscrowSplitRequest {
            key_id: key_id.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status}");
    assert!(
        status.message().contains("no escrow custodians"),
        "{}",
        status.message()
    );
    let out = net.dir.path().join("no-custodians-out");
    let (code, _, stderr) = ceremony_cli(&[
        "escrow",
        "split",
        "--ceremony",
        &net.ceremony_file.display().to_string(),
        "--key-id",
        key_id,
        "--node",
        TARGET,
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no escrow custodians"), "{stderr}");
    assert!(!out.exists(), "nothing is written");
}

/// `import --custodians` fixes the custodians as `dkg --custodians` does: the
/// imported key's shares are escrowed to them, and a custodians file naming
/// something that is not an age recipient is refused before any node is contacted.
#[tokio::test]
async fn an_imported_key_is_escrowed_to_the_custodians_its_import_named() {
    let net = start_default().await;
    let holders = custodians(&net);
    let work = net.dir.path().join("import");
    std::fs::create_dir_all(&work).unwrap();
    let ceremony = net.ceremony_file.display().to_string();
    let custodians_file = quorate_testnet::custodians::file_path(&net.net.dir);
    // A key without administrators, chosen explicitly: the split below needs no
    // authorization.
    let ungoverned = work.join("ungoverned.toml");
    std::fs::write(&ungoverned, "unsafe_no_administrators = true\n").unwrap();
    let import = |custodians: &Path, transcript: &Path| {
        ceremony_cli(&[
            "import",
            "--ceremony",
            &ceremony,
            "--key-id",
            "imported",
            "--ciphersuite",
            "ed25519",
            "--threshold",
            "3",
            "--custodians",
            &custodians.display().to_string(),
            "--policy",
            &ungoverned.display().to_string(),
            "--transcript",
            &transcript.display().to_string(),
        ])
    };
    let bad = work.join("bad-custodians.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&custodians_file)
            .unwrap()
            .replacen("age1", "age1x", 1),
    )
    .unwrap();
    let (code, _, stderr) = import(&bad, &work.join("bad.json"));
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("not an age X25519 recipient"), "{stderr}");
    assert!(!holds_key(&net, TARGET, "imported").await);

    let transcript = work.join("imported.json");
    let (code, stdout, stderr) = import(&custodians_file, &transcript);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&transcript).unwrap()).unwrap();
    assert_eq!(recorded["escrow"]["threshold"], u32::from(K));
    let out = work.join("out");
    let split = escrow::split(
        &net.ceremony().unwrap(),
        SplitRequest {
            key_id: "imported".into(),
            node_id: TARGET.into(),
            out_dir: out.clone(),
            plan: None,
            authorizations: Vec::new(),
        },
    )
    .await
    .unwrap();
    assert_eq!(split.files.len(), holders.len());
    for (holder, (name, file)) in holders.iter().zip(&split.files) {
        assert_eq!(name, &holder.name);
        let part = EscrowPart::from_json(&custodian_decrypts(holder, file)).unwrap();
        part.verify().unwrap();
        assert_eq!(part.key_id, "imported");
    }
}

/// An escrow recovery is governed, and the node checks it itself. The attacker
/// holds the ceremony's certificate and `k` custodians' parts (so the rebuilt
/// share, the manifest every node attests and their attestations of it) and asks
/// the wiped node to install them: passed off as an import (no setup), or as a
/// recovery with no, one of two, one administrator's twice, forged, or another
/// setup's authorizations, without the attestations, or of the manifest made again
/// without administrators. Each is refused with PERMISSION_DENIED and audited, and
/// nothing is installed; a setup for another node is not this node's recovery.
/// The administrators' recovery installs the share, the node records who
/// authorized it, and the node signs.
#[tokio::test]
async fn an_escrow_recovery_needs_the_administrators_and_cannot_pass_as_an_import() {
    let mut net = start_default().await;
    let key_id = key_of(&net, Ciphersuite::Ed25519);
    // A refreshed key (generation 1), so that it is not a key created now.
    net.refresh(quorate_ceremony::keygen::RefreshRequest {
        key_id: key_id.clone(),
        remove_node: None,
        policy: None,
        escrow: None,
    })
    .await
    .unwrap();
    let out = net.dir.path().join("escrow");
    net.escrow_split(&key_id, TARGET, &out).await.unwrap();
    let holders = custodians(&net);
    let parts: Vec<_> = holders[..usize::from(K)]
        .iter()
        .map(|h| {
            let json = custodian_decrypts(h, &out.join(part_file_name(&key_id, TARGET, &h.name)));
            EscrowPart::from_json(&json).unwrap().shamir_part().unwrap()
        })
        .collect();
    let manifest = ceremony_client(&net, "node-1")
        .await
        .get_manifest(pb::GetManifestRequest {
            key_id: key_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .manifest;
    let decoded = quorate_keys::manifest::Manifest::decode(&manifest).unwrap();
    assert_eq!(decoded.generation, 1);
    let me = decoded.participant(TARGET).unwrap();
    let share = quorate_escrow::combine(Ciphersuite::Ed25519, &parts, &me.verifying_share).unwrap();
    let key_package = Ciphersuite::Ed25519
        .ops()
        .key_package_from_signing_share(
            &me.identifier,
            &share,
            &decoded.public_key_package,
            decoded.threshold,
        )
        .unwrap()
        .expose_bytes()
        .to_vec();
    net.wipe_node(TARGET).await.unwrap();

    let ceremony = net.ceremony().unwrap();
    let plan = escrow::plan_recover(&ceremony, &key_id, TARGET)
        .await
        .unwrap();
    let other = escrow::plan_recover(&ceremony, &key_id, TARGET)
        .await
        .unwrap();
    let genuine = net.authorize(&plan).unwrap();
    let mallory = quorate_keys::authorization::AdministratorKey::generate();
    let trudy = quorate_keys::authorization::AdministratorKey::generate();
    // The other nodes' key attestations of the manifest, as GetManifest gives them
    // to anyone holding the ceremony certificate.
    let mut attestations = Vec::new();
    for node in ["node-1", "node-3", "node-4", "node-5"] {
        let held = ceremony_client(&net, node)
            .await
            .get_manifest(pb::GetManifestRequest {
                key_id: key_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        attestations.push(held.attestation.unwrap());
    }
    let install =
        |setup: Option<pb::CeremonySetup>, authorizations: Vec<Vec<u8>>| pb::InstallKeyRequest {
            manifest: manifest.clone(),
            key_package: key_package.clone(),
            setup,
            authorizations,
            attestations: attestations.clone(),
        };
    let setup = Some(plan.setup().pb.clone());
    // The key's manifest made again without its administrators (everything else,
    // the share's verifying share included, as it was), with a setup of its own.
    let mut ungoverned = pb::KeyManifest::decode(manifest.as_slice()).unwrap();
    ungoverned.policy = Some(pb::KeyPolicy {
        unsafe_no_administrators: true,
        ..Default::default()
    });
    let ungoverned = ungoverned.encode_to_vec();
    let mut ungoverned_setup = plan.setup().pb.clone();
    ungoverned_setup.manifest_hash = quorate_wire::sha256(&ungoverned).to_vec();
    let attempts = [
        ("passed off as an import", install(None, Vec::new())),
        ("no authorization", install(setup.clone(), Vec::new())),
        ("one of two", install(setup.clone(), genuine[..1].to_vec())),
        (
            "one administrator twice",
            install(setup.clone(), vec![genuine[0].clone(), genuine[0].clone()]),
        ),
        (
            "forged",
            install(
                setup.clone(),
                vec![plan.authorize(&mallory, 600), plan.authorize(&trudy, 600)],
            ),
        ),
        (
            "another setup",
            install(setup.clone(), net.authorize(&other).unwrap()),
        ),
        (
            "the manifest without attestations",
            pb::InstallKeyRequest {
                attestations: Vec::new(),
                ..install(setup.clone(), genuine.clone())
            },
        ),
        (
            "the manifest re-made without administrators",
            pb::InstallKeyRequest {
                manifest: ungoverned,
                ..install(Some(ungoverned_setup), Vec::new())
            },
        ),
    ];
    let mut client = ceremony_client(&net, TARGET).await;
    for (what, request) in &attempts {
        let status = client.install_key(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{what}: {status:?}");
        assert!(!holds_key(&net, TARGET, &key_id).await, "{what}");
    }
    let mut elsewhere = plan.setup().pb.clone();
    elsewhere.repair_target = "node-3".into();
    let status = client
        .install_key(install(Some(elsewhere), genuine.clone()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(!holds_key(&net, TARGET, &key_id).await);
    let refused: Vec<_> = audit_records(&net, TARGET)
        .await
        .into_iter()
        .filter(|r| r["event"] == "operation_refused" && r["key_id"] == key_id.as_str())
        .collect();
    assert_eq!(refused.len(), attempts.len(), "{refused:?}");
    // Each for its own reason.
    for (record, says) in refused.iter().zip([
        "not a new key",
        "0 of the key's administrators authorized",
        "1 of the key's administrators authorized",
        "1 of the key's administrators authorized",
        "not an administrator of this key",
        "is for escrow-recover",
        "attested by []",
        "attested by []",
    ]) {
        let detail = record["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{says}: {detail}");
    }

    // The administrators' recovery: installed, recorded with who authorized it.
    client
        .install_key(install(setup.clone(), genuine.clone()))
        .await
        .unwrap();
    let records = audit_records(&net, TARGET).await;
    let authorized = records
        .iter()
        .find(|r| r["event"] == "operation_authorized")
        .expect("the recovery's authorization is recorded");
    assert!(
        authorized["detail"].as_str().unwrap().contains(&format!(
            "escrow-recover ceremony={}",
            plan.setup().ceremony_id()
        )),
        "{authorized:?}"
    );
    assert_eq!(
        authorized["authorized_by"].as_array().map(Vec::len),
        Some(2),
        "{authorized:?}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["event"] == "key_recovered" && r["key_id"] == key_id.as_str()),
        "{records:?}"
    );
    sign_with_target_required(&mut net, &key_id).await;
}
