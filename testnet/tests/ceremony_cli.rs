//! The custodian's guide (docs/ceremony.md), command by command, with the real
//! `quorate-ceremony` binary against a local testnet.

mod common;

use std::path::Path;
use std::process::Command;

use common::{bin_dir, start, DEADLINE};
use quorate_frost::Ciphersuite;
use quorate_testnet::spec::{KeySpec, NetworkSpec};

/// The commands in docs/ceremony.md, with `$DIR` replaced.
fn documented_commands(dir: &Path) -> Vec<Vec<String>> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/ceremony.md"))
        .expect("docs/ceremony.md");
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in doc.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            cmd if in_sh && cmd.starts_with("quorate-ceremony ") => commands.push(
                cmd.replace("$DIR", &dir.display().to_string())
                    .split_whitespace()
                    .skip(1)
                    .map(String::from)
                    .collect(),
            ),
            _ => {}
        }
    }
    commands
}

fn ceremony(args: &[String]) -> std::process::Output {
    Command::new(bin_dir().join("quorate-ceremony"))
        .args(args)
        .output()
        .expect("quorate-ceremony runs")
}

#[tokio::test]
async fn custodian_guide_commands_work_as_documented() {
    let mut spec = NetworkSpec::default_five_regions();
    spec.keys = vec![KeySpec::new("demo-taproot", Ciphersuite::Secp256k1Tr)];
    let mut net = start(spec).await;
    let dir = net.net.dir.clone();
    let (pki_commands, commands): (Vec<_>, Vec<_>) = documented_commands(&dir)
        .into_iter()
        .partition(|c| c[0] == "pki");

    // 0. The dev PKI, in a directory of its own.
    let pki_verbs: Vec<&str> = pki_commands.iter().map(|c| c[1].as_str()).collect();
    assert_eq!(
        pki_verbs,
        ["init", "issue", "issue", "renew"],
        "{pki_commands:?}"
    );
    for command in &pki_commands {
        let out = ceremony(command);
        assert!(
            out.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // node-6's certificate, renewed last: the same location, valid for 12 hours.
    let node_6 = std::fs::read(dir.join("my-pki/node-node-6.pem")).unwrap();
    assert_eq!(
        quorate_transport::identity::Location::from_certificate_pem(&node_6).unwrap(),
        Some(quorate_transport::identity::Location::new("eu-central-sov", "EU").unwrap())
    );
    let not_after = quorate_transport::tls::TlsPaths {
        ca: dir.join("my-pki/ca.pem"),
        cert: dir.join("my-pki/node-node-6.pem"),
        key: dir.join("my-pki/node-node-6-key.pem"),
    }
    .load()
    .unwrap()
    .certificate_not_after()
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let left = not_after - now;
    assert!(
        (12 * 3600 - 120..=12 * 3600).contains(&left),
        "node-6 renewed for 12h expires in {left} s"
    );

    let verbs: Vec<&str> = commands.iter().map(|c| c[0].as_str()).collect();
    assert_eq!(
        verbs,
        [
            "admin",
            "admin",
            "admin",
            "dkg",
            "transcript",
            "refresh",
            "authorize",
            "authorize",
            "authorize",
            "refresh",
            "repair",
            "authorize",
            "authorize",
            "repair",
            "escrow",
            "authorize",
            "authorize",
            "escrow",
            "escrow",
            "authorize",
            "authorize",
            "escrow"
        ],
        "{commands:?}"
    );

    // 0. Three administrators; the policy file lists them, two must agree.
    let mut administrators = Vec::new();
    for command in &commands[..3] {
        let out = ceremony(command);
        assert!(
            out.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let public = stdout
            .lines()
            .find_map(|l| l.strip_prefix("administrator public key: "))
            .unwrap_or_else(|| panic!("{stdout}"));
        administrators.push(format!("\"{public}\""));
    }
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            "administrator_keys = [{}]\nadministrators_required = 2\nallowed_clients = [\"spiffe://quorate.test/client/demo-client\"]\nhome_jurisdictions = [\"EU\"]\nmin_home_signers = 2\n",
            administrators.join(", ")
        ),
    )
    .unwrap();
    let commands = &commands[3..];
    let run = |command: &Vec<String>| {
        let out = ceremony(command);
        assert!(
            out.status.success(),
            "{command:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };

    // 1. DKG with a policy.
    let out = ceremony(&commands[0]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let transcript: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("payments-eu.json")).unwrap()).unwrap();
    assert_eq!(transcript["kind"], "dkg");
    assert_eq!(transcript["policy"]["min_home_signers"], 2);
    // The custodians file's custodians are the key's, as every node confirmed.
    assert_eq!(
        transcript["escrow"]["threshold"],
        u32::from(quorate_testnet::custodians::THRESHOLD)
    );
    let custodians = net.net.custodians.clone();
    for (entry, c) in transcript["escrow"]["custodians"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&custodians)
    {
        assert_eq!(
            (entry["name"].as_str(), entry["recipient"].as_str()),
            (Some(c.name.as_str()), Some(c.recipient.as_str()))
        );
    }
    assert_eq!(transcript["confirmations"].as_array().unwrap().len(), 5);

    // 2. The transcript matches the nodes.
    let out = ceremony(&commands[1]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A transcript that lies about a verifying share is caught, naming the node.
    let text = std::fs::read_to_string(dir.join("payments-eu.json")).unwrap();
    let share = transcript["participants"][2]["verifying_share"]
        .as_str()
        .unwrap();
    let forged_share = format!(
        "{}{}",
        &share[..share.len() - 2],
        if share.ends_with("00") { "01" } else { "00" }
    );
    std::fs::write(dir.join("forged.json"), text.replace(share, &forged_share)).unwrap();
    let mut forged_cmd = commands[1].clone();
    forged_cmd[2] = dir.join("forged.json").display().to_string();
    let out = ceremony(&forged_cmd);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("MISMATCH") && stdout.contains("verifying share of node-3"),
        "{stdout}"
    );

    // A transcript whose readable custodians or policy are not its manifest's (a
    // DKG showing custodians honest JSON while the nodes hold others) is caught.
    let mallory = age::x25519::Identity::generate().to_public().to_string();
    let mut doctored = transcript.clone();
    doctored["escrow"]["custodians"][0]["recipient"] = mallory.clone().into();
    let mut doctored_policy = transcript.clone();
    doctored_policy["policy"]["min_home_signers"] = 3.into();
    for (name, doc, says) in [
        ("doctored-escrow.json", &doctored, "escrow custodians"),
        ("doctored-policy.json", &doctored_policy, "policy differs"),
    ] {
        std::fs::write(dir.join(name), serde_json::to_vec(doc).unwrap()).unwrap();
        let mut cmd = commands[1].clone();
        cmd[2] = dir.join(name).display().to_string();
        let out = ceremony(&cmd);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{name}: {stdout}");
        assert!(
            stdout.contains("MISMATCH transcript:") && stdout.contains(says),
            "{name}: {stdout}"
        );
    }
    // With a custodians file other than the manifest's (mallory in bank-a's place),
    // the honest transcript is refused: the key's custodians are not the file's.
    let custodians_file = quorate_testnet::custodians::file_path(&dir);
    let expected = std::fs::read_to_string(&custodians_file)
        .unwrap()
        .replace(&custodians[0].recipient, &mallory);
    std::fs::write(dir.join("other-custodians.toml"), expected).unwrap();
    let mut cmd = commands[1].clone();
    let at = cmd.iter().position(|a| a == "--custodians").unwrap();
    cmd[at + 1] = dir.join("other-custodians.toml").display().to_string();
    let out = ceremony(&cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("not the custodians file's") && stdout.contains(&mallory),
        "{stdout}"
    );

    // 3. Refresh dropping node-5, planned and authorized by two administrators;
    //    the group key stays. The plan says what it does, and one
    //    authorization is not enough.
    run(&commands[2]);
    // Shown before anything is signed: what it keeps and removes.
    let shown = run(&commands[3]);
    let stdout = String::from_utf8_lossy(&shown.stdout);
    assert!(
        stdout.contains("operation:   refresh")
            && stdout.contains("new shares for: node-1, node-2, node-3, node-4")
            && stdout.contains("removes, deleting their shares: node-5")
            && stdout.contains("nothing signed"),
        "{stdout}"
    );
    run(&commands[4]);
    run(&commands[5]);
    let mut one_short = commands[6].clone();
    let bob = one_short
        .iter()
        .position(|a| a.ends_with("refresh-bob.json"))
        .unwrap();
    one_short.drain(bob - 1..=bob);
    let refused = ceremony(&one_short);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(64), "{stderr}");
    assert!(
        stderr
            .contains("1 of the key's administrators authorized this refresh; its policy needs 2"),
        "{stderr}"
    );
    run(&commands[6]);
    let refreshed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("payments-eu-refresh.json")).unwrap())
            .unwrap();
    assert_eq!(refreshed["public_key"], transcript["public_key"]);
    assert_eq!(refreshed["participants"].as_array().unwrap().len(), 4);

    // 4. Repair a wiped node, planned and authorized.
    net.wipe_node("node-2").await.unwrap();
    for command in &commands[7..10] {
        run(command);
    }
    let out = run(&commands[10]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("repaired node-2"));
    // The refresh's transcript still matches every node, node-2 included.
    let mut verify_refresh = commands[1].clone();
    verify_refresh[2] = dir.join("payments-eu-refresh.json").display().to_string();
    let out = ceremony(&verify_refresh);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // 5. Escrow node-2's refreshed share to the key's custodians, planned and
    //    authorized; bank-a decrypts their part with the standard `age` tool and
    //    verifies it.
    for command in &commands[11..15] {
        run(command);
    }
    let part = dir.join("escrow/payments-eu.node-2.bank-a.age");
    let json = dir.join("bank-a-part.json");
    let age = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&custodians[0].identity_file)
        .arg("-o")
        .arg(&json)
        .arg(&part)
        .output()
        .expect("the age CLI runs (apt-get install age)");
    assert!(
        age.status.success(),
        "age -d: {}",
        String::from_utf8_lossy(&age.stderr)
    );
    let verify = ceremony(&[
        "escrow".to_string(),
        "verify".to_string(),
        "--part".to_string(),
        json.display().to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success() && stdout.starts_with("OK: part 1 of 4 (custodian bank-a)"),
        "{stdout}{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // 6. node-2's region is lost again: its share is recovered from three
    //    custodians' parts, planned and authorized.
    net.wipe_node("node-2").await.unwrap();
    for command in &commands[15..18] {
        run(command);
    }
    let out = run(&commands[18]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("recovered node node-2's share"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Sign with the repaired and recovered node in the only possible quorum.
    net.restart_coordinator().await.unwrap();
    net.kill_node("node-3").await.unwrap();
    let client = net.client().await.unwrap();
    let signed = client
        .sign_verified("payments-eu", b"custodian guide", DEADLINE)
        .await
        .unwrap();
    assert!(signed.response.signers.contains(&"node-2".to_string()));
}
