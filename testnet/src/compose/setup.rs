//! `compose-setup`, run once inside the `setup` container: the PKI, every party's
//! config and TLS files (each in its own state subdirectory, so a container mounts
//! only its own secrets), the ceremony file, the approver key, the policy files and
//! `testnet.json` for clients on the docker host, all for the addresses of the
//! [`ComposeLayout`].

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use quorate_ceremony::import::{CeremonyFile, CeremonyNode};
use quorate_ceremony::keygen::PolicyFile;
use quorate_ceremony::pki;
use quorate_transport::identity::Role;
use quorate_transport::tls::TlsPaths;

use super::layout::{
    party_tls, policy_path, ComposeLayout, COORDINATOR_PORT, NODE_PORT, POLICIES_DIR,
};
use crate::spec::{PolicySpec, TestnetCoordinator, TestnetJson, TestnetKey, TestnetNode};
use crate::toml_text::{node_entry, tls_toml, toml_string};

/// Copies an issued certificate into `dir` (created), so that each container
/// mounts only its own secrets, never the CA key or another party's key.
fn install_party(issued: &pki::IssuedCert, dir: &Path, key_mode: u32) -> anyhow::Result<TlsPaths> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let tls = party_tls(dir);
    std::fs::copy(&issued.ca, &tls.ca)?;
    std::fs::copy(&issued.cert, &tls.cert)?;
    std::fs::copy(&issued.key, &tls.key)?;
    std::fs::set_permissions(&tls.key, std::fs::Permissions::from_mode(key_mode))?;
    Ok(tls)
}

/// `compose-setup`: writes the PKI, each party's config and TLS files, the
/// ceremony file, the approver key, the policy files and `testnet.json` for clients
/// on the docker host, under `dir` (the state directory as mounted in the
/// container). What `dir` already holds is kept (the PKI, the approver key), so `up`
/// can be repeated; policy files and `testnet.json` follow from the layout and the
/// approver and are written every time. Node stores live in volumes and keys are
/// checked separately by `compose-keys`.
pub fn setup(layout: &ComposeLayout, dir: &Path) -> anyhow::Result<()> {
    if dir.join("pki").join(pki::CA_CERT_FILE).exists() {
        println!("{} already holds a PKI; keeping it", dir.display());
    } else {
        write_pki_and_configs(layout, dir)?;
        println!(
            "wrote PKI and configs for the compose testnet in {}",
            dir.display()
        );
    }
    // The compliance approver of the policy keys. Kept in `approver/`, which no
    // other container mounts; readable on the host (the state directory is written
    // by root in the container) so drills and custodians there can sign approval
    // tokens with it, as on the local testnet. It is a development approver.
    let approver_key = crate::approver::key_path(dir);
    if approver_key.exists() {
        println!("keeping the approver key {}", approver_key.display());
    } else {
        crate::approver::create(dir, 0o644)?;
        println!("created the approver key {}", approver_key.display());
    }
    let approver = crate::approver::public_key(&approver_key)?;
    // The administrators of every key, kept like the approver (and also given to
    // the `keys` container, which repairs a key some nodes lost).
    let administrators = crate::administrators::create_or_keep(dir, 0o644)?;
    write_policies(layout, dir, &approver, &administrators)?;
    write_testnet_json(layout, dir)?;
    Ok(())
}

/// The PKI, every node's and coordinator's config and TLS files, the ceremony file
/// and the demo client's certificate.
fn write_pki_and_configs(layout: &ComposeLayout, dir: &Path) -> anyhow::Result<()> {
    let pki_dir = dir.join("pki");
    let td = layout.spec.trust_domain.as_str();
    pki::create_ca(&pki_dir, td)?;

    for node in &layout.nodes {
        let issued = pki::issue(
            &pki_dir,
            td,
            Role::Node,
            &node.spec.id,
            Some(&node.spec.location()?),
            &[node.ip()],
        )?;
        let node_dir = dir.join(&node.spec.id);
        let tls = install_party(&issued, &node_dir, 0o600)?;
        let kek = node_dir.join("kek.hex");
        std::fs::write(&kek, quorate_node::store::Kek::generate_hex())?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600))?;
        }
        let config = format!(
            "node_id = {}\ntrust_domain = {}\nlisten = {}\nregion = {}\njurisdiction = {}\ndata_dir = \"/data/store\"\nkek_file = {}\n{}",
            toml_string(&node.spec.id),
            toml_string(td),
            toml_string(&format!("0.0.0.0:{NODE_PORT}")),
            toml_string(&node.spec.region),
            toml_string(&node.spec.jurisdiction),
            toml_string(&kek.display().to_string()),
            tls_toml(&tls),
        );
        // No [witness]: each node sits alone on its region's segment (what the
        // drills' partitions cut), so it cannot reach its peers.
        std::fs::write(node_dir.join("node.toml"), config)?;
    }

    for c in &layout.coordinators {
        let issued = pki::issue(&pki_dir, td, Role::Coordinator, &c.name, None, &[])?;
        let c_dir = dir.join(&c.name);
        let tls = install_party(&issued, &c_dir, 0o600)?;
        let mut text = format!(
            "trust_domain = {}\nlisten = {}\n{}",
            toml_string(td),
            toml_string(&format!("0.0.0.0:{COORDINATOR_PORT}")),
            tls_toml(&tls)
        );
        for node in &layout.nodes {
            text.push_str(&node_entry(&node.spec.id, &node.endpoint()));
        }
        std::fs::write(c_dir.join("coordinator.toml"), text)?;
    }

    // The ceremony's file uses paths relative to itself, so the same file serves
    // inside the `keys` container and on the host (the drills probe nodes with it).
    let issued = pki::issue(&pki_dir, td, Role::Ceremony, "compose", None, &[])?;
    let ceremony_dir = dir.join("ceremony");
    // Readable by the host user running drills (the state directory is written by
    // root in the container); it is a development PKI.
    install_party(&issued, &ceremony_dir, 0o644)?;
    let ceremony = CeremonyFile {
        trust_domain: td.to_string(),
        tls: party_tls(Path::new("")),
        nodes: layout
            .nodes
            .iter()
            .map(|n| CeremonyNode {
                id: n.spec.id.clone(),
                endpoint: n.endpoint(),
                region: n.spec.region.clone(),
                jurisdiction: n.spec.jurisdiction.clone(),
            })
            .collect(),
        source: PathBuf::new(),
    };
    std::fs::write(
        ceremony_dir.join("ceremony.toml"),
        toml::to_string(&ceremony)?,
    )?;
    std::fs::create_dir_all(dir.join("transcripts"))?;

    let issued = pki::issue(&pki_dir, td, Role::Client, "demo-client", None, &[])?;
    install_party(&issued, &dir.join("client"), 0o644)?;
    Ok(())
}

/// `policies/KEY.toml` for every key: its policy ([`crate::spec::KeySpec::policy_pb`]:
/// the network's administrators, and the spec's residency policy with the
/// network's approver), as `quorate-ceremony dkg --policy` reads it.
fn write_policies(
    layout: &ComposeLayout,
    dir: &Path,
    approver: &[u8; 32],
    administrators: &[[u8; 32]],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join(POLICIES_DIR))?;
    for key in &layout.spec.keys {
        let file = PolicyFile::from_pb(&key.policy_pb(&[*approver], administrators));
        let path = policy_path(dir, &key.key_id);
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, toml::to_string(&file)?)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(())
}

/// `testnet.json` for clients on the docker host: coordinators at their published
/// ports, TLS paths relative to the state directory.
fn write_testnet_json(layout: &ComposeLayout, dir: &Path) -> anyhow::Result<()> {
    let first = layout
        .coordinators
        .first()
        .ok_or_else(|| anyhow!("layout has no coordinator"))?;
    let client = party_tls(Path::new("client"));
    let json = TestnetJson {
        coordinator: first.host_endpoint(),
        server_name: first.name.clone(),
        ca: client.ca,
        client_cert: client.cert,
        client_key: client.key,
        nodes: layout
            .nodes
            .iter()
            .map(|n| TestnetNode {
                id: n.spec.id.clone(),
                endpoint: n.endpoint(),
                region: n.spec.region.clone(),
                jurisdiction: n.spec.jurisdiction.clone(),
                pid: 0,
            })
            .collect(),
        keys: layout
            .spec
            .keys
            .iter()
            .map(|k| TestnetKey {
                key_id: k.key_id.clone(),
                ciphersuite: k.ciphersuite.name().to_string(),
                policy: k.policy.as_ref().map(PolicySpec::to_testnet_json),
            })
            .collect(),
        coordinators: layout
            .coordinators
            .iter()
            .map(|c| TestnetCoordinator {
                endpoint: c.host_endpoint(),
                server_name: c.name.clone(),
            })
            .collect(),
    };
    let tmp = dir.join("testnet.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&json)?)?;
    std::fs::rename(&tmp, dir.join("testnet.json"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_wire::pb;

    #[test]
    fn setup_writes_the_approver_and_the_eu_policy_and_lists_it_in_testnet_json(
    ) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let layout = ComposeLayout::default_five_regions();
        let dir = tempfile::tempdir()?;
        setup(&layout, dir.path())?;

        let approver_file = crate::approver::key_path(dir.path());
        let approver = crate::approver::public_key(&approver_file)?;
        let mode = std::fs::metadata(&approver_file)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "readable by the host user running drills");

        let policy = PolicyFile::load(&policy_path(dir.path(), "eu-payments"))?;
        assert_eq!(policy.home_jurisdictions, vec!["EU".to_string()]);
        assert_eq!(policy.min_home_signers, 2);
        assert_eq!(policy.approver_keys, vec![approver.to_vec()]);
        assert!(policy.allowed_clients.is_empty());
        // Every key is governed by the network's administrators, 2 of 3; an
        // unrestricted key's policy names them and nothing else.
        let administrators: Vec<Vec<u8>> = crate::administrators::public_keys(dir.path())?
            .iter()
            .map(|k| k.to_vec())
            .collect();
        assert_eq!(administrators.len(), 3);
        assert_eq!(policy.administrator_keys, administrators);
        assert_eq!(policy.administrators_required, 2);
        let plain = PolicyFile::load(&policy_path(dir.path(), "demo-ed25519"))?;
        assert_eq!(
            plain,
            pb::KeyPolicy {
                administrator_keys: administrators.clone(),
                administrators_required: 2,
                ..Default::default()
            }
        );

        let json = TestnetJson::read(dir.path())?;
        let policies: Vec<(String, Option<serde_json::Value>)> = json
            .keys
            .iter()
            .map(|k| (k.key_id.clone(), k.policy.clone()))
            .collect();
        assert_eq!(
            policies,
            vec![
                ("demo-ed25519".into(), None),
                ("demo-taproot".into(), None),
                ("demo-secp256k1".into(), None),
                (
                    "eu-payments".into(),
                    Some(serde_json::json!({"home_jurisdiction": "EU", "min_home_signers": 2}))
                ),
            ]
        );

        // No node or coordinator directory (the only parts of the state directory
        // those containers mount) holds the approver's secret key.
        let secret = std::fs::read_to_string(&approver_file)?;
        for party in layout
            .nodes
            .iter()
            .map(|n| n.spec.id.clone())
            .chain(layout.coordinators.iter().map(|c| c.name.clone()))
        {
            for entry in std::fs::read_dir(dir.path().join(&party))? {
                let text = std::fs::read(entry?.path())?;
                assert!(
                    !String::from_utf8_lossy(&text).contains(secret.trim()),
                    "{party} holds the approver key"
                );
            }
        }

        // A repeated setup (a repeated `up`) keeps the approver, so keys made with
        // its policy keep working.
        setup(&layout, dir.path())?;
        assert_eq!(std::fs::read_to_string(&approver_file)?, secret);
        let again = PolicyFile::load(&policy_path(dir.path(), "eu-payments"))?;
        assert_eq!(again.approver_keys, vec![approver.to_vec()]);
        assert_eq!(again.administrator_keys, administrators);
        Ok(())
    }
}
