//! `docker-compose.yml`, rendered from the [`ComposeLayout`] (`quorate-testnet
//! compose-file`); the committed `testnet/docker-compose.yml` is this output, and a
//! test fails when the two disagree.

use super::keys::KEY_CEREMONY;
use super::layout::{ComposeLayout, COORDINATOR_PORT, IMAGE, POLICIES_DIR, STATE_DIR, STATE_MOUNT};
use crate::administrators::ADMINISTRATORS_DIR;

impl ComposeLayout {
    /// `docker-compose.yml`.
    pub fn render_compose_file(&self) -> String {
        let mut y = String::new();
        let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        let list = |items: &[String]| {
            format!(
                "[{}]",
                items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
            )
        };
        let state = format!("./{STATE_DIR}");
        y.push_str(
            "# Quorate 3-of-5 testnet: five signer nodes in five regions, each alone on its own\n\
             # network segment, two coordinators attached to every segment, and one-shot\n\
             # setup (PKI, configs) and ceremony (keys) containers. See docs/testnet.md.\n\
             #\n\
             # GENERATED from testnet/src/compose/ (ComposeLayout); do not edit by hand:\n\
             #   cargo run -p quorate-testnet -- compose-file > testnet/docker-compose.yml\n\
             # A test fails when this file and the layout disagree.\n\
             #\n\
             # Build the image first: testnet/build-images.sh\n",
        );
        y.push_str("version: \"2.4\"\n\nservices:\n");

        // setup: PKI, per-party configs, host testnet.json. No network needed.
        y.push_str("  setup:\n");
        y.push_str(&format!("    image: {IMAGE}\n"));
        y.push_str("    container_name: quorate-setup\n");
        y.push_str(&format!(
            "    command: {}\n",
            list(&[
                "/bin/quorate-testnet".into(),
                "compose-setup".into(),
                "--dir".into(),
                STATE_MOUNT.into(),
            ])
        ));
        y.push_str("    network_mode: none\n");
        y.push_str(&format!(
            "    volumes: [{}]\n",
            q(&format!("{state}:{STATE_MOUNT}"))
        ));

        // keys: the key ceremony, once the nodes serve.
        let mut keys_cmd: Vec<String> = vec![
            "/bin/quorate-testnet".into(),
            "compose-keys".into(),
            "--dir".into(),
            STATE_MOUNT.into(),
            "--".into(),
        ];
        keys_cmd.extend(KEY_CEREMONY.iter().map(|s| s.to_string()));
        y.push_str("  keys:\n");
        y.push_str(&format!("    image: {IMAGE}\n"));
        y.push_str("    container_name: quorate-keys\n");
        y.push_str(&format!("    command: {}\n", list(&keys_cmd)));
        y.push_str(
            "    depends_on:\n      setup:\n        condition: service_completed_successfully\n",
        );
        for n in &self.nodes {
            y.push_str(&format!(
                "      {}:\n        condition: service_started\n",
                n.service()
            ));
        }
        // Not the approver: its secret key stays with `setup` and the host. The
        // administrators' keys, to authorize the repair of a key some nodes lost.
        y.push_str(&format!(
            "    volumes: [{}, {}, {}, {}]\n",
            q(&format!("{state}/ceremony:{STATE_MOUNT}/ceremony:ro")),
            q(&format!(
                "{state}/{POLICIES_DIR}:{STATE_MOUNT}/{POLICIES_DIR}:ro"
            )),
            q(&format!(
                "{state}/{ADMINISTRATORS_DIR}:{STATE_MOUNT}/{ADMINISTRATORS_DIR}:ro"
            )),
            q(&format!("{state}/transcripts:{STATE_MOUNT}/transcripts"))
        ));
        y.push_str("    networks:\n");
        for n in &self.nodes {
            y.push_str(&format!(
                "      {}:\n        ipv4_address: 172.29.{}.{}\n",
                n.network_key(),
                n.segment,
                self.ceremony_octet
            ));
        }

        for n in &self.nodes {
            y.push_str(&format!("  {}:\n", n.service()));
            y.push_str(&format!("    image: {IMAGE}\n"));
            y.push_str(&format!("    container_name: {}\n", n.container()));
            y.push_str(&format!("    hostname: {}\n", n.spec.id));
            y.push_str(&format!(
                "    labels:\n      org.quorate.region: {}\n      org.quorate.jurisdiction: {}\n",
                q(&n.spec.region),
                q(&n.spec.jurisdiction)
            ));
            y.push_str(&format!(
                "    command: {}\n",
                list(&[
                    "/bin/quorate-node".into(),
                    "--config".into(),
                    format!("{STATE_MOUNT}/{}/node.toml", n.spec.id),
                ])
            ));
            y.push_str("    depends_on:\n      setup:\n        condition: service_completed_successfully\n");
            y.push_str(&format!(
                "    volumes: [{}, {}]\n",
                q(&format!(
                    "{state}/{id}:{STATE_MOUNT}/{id}:ro",
                    id = n.spec.id
                )),
                q(&format!("{}:/data", n.volume()))
            ));
            y.push_str(&format!(
                "    networks:\n      {}:\n        ipv4_address: {}\n",
                n.network_key(),
                n.ip()
            ));
            y.push_str("    stop_grace_period: 5s\n");
        }

        for c in &self.coordinators {
            y.push_str(&format!("  {}:\n", c.name));
            y.push_str(&format!("    image: {IMAGE}\n"));
            y.push_str(&format!("    container_name: {}\n", c.container()));
            y.push_str(&format!(
                "    command: {}\n",
                list(&[
                    "/bin/quorate-coordinator".into(),
                    "--config".into(),
                    format!("{STATE_MOUNT}/{}/coordinator.toml", c.name),
                ])
            ));
            y.push_str(
                "    depends_on:\n      keys:\n        condition: service_completed_successfully\n",
            );
            y.push_str(&format!(
                "    volumes: [{}]\n",
                q(&format!("{state}/{n}:{STATE_MOUNT}/{n}:ro", n = c.name))
            ));
            y.push_str(&format!(
                "    ports: [{}]\n",
                q(&format!("127.0.0.1:{}:{COORDINATOR_PORT}", c.host_port))
            ));
            y.push_str("    networks:\n");
            for n in &self.nodes {
                y.push_str(&format!(
                    "      {}:\n        ipv4_address: {}\n",
                    n.network_key(),
                    c.ip_on(n)
                ));
            }
            y.push_str("    stop_grace_period: 5s\n");
        }

        y.push_str("\nnetworks:\n");
        for n in &self.nodes {
            y.push_str(&format!("  {}:\n", n.network_key()));
            y.push_str(&format!("    name: {}\n", n.network()));
            y.push_str("    ipam:\n      config:\n");
            // Addresses assigned dynamically come from the upper half, clear of the
            // fixed ones below .128.
            y.push_str(&format!(
                "        - subnet: {}\n          ip_range: 172.29.{}.128/25\n",
                n.subnet(),
                n.segment
            ));
        }
        y.push_str("\nvolumes:\n");
        for n in &self.nodes {
            y.push_str(&format!("  {}:\n    name: {}\n", n.volume(), n.volume()));
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::compose::keys::POLICY;
    use crate::spec::{NetworkSpec, PolicySpec};

    /// The committed compose file is the one the layout renders, so the addresses
    /// the setup step writes into configs are the ones the containers get.
    #[test]
    fn committed_compose_file_matches_the_layout() {
        let committed = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docker-compose.yml"),
        )
        .unwrap_or_default();
        let rendered = ComposeLayout::default_five_regions().render_compose_file();
        assert!(
            committed == rendered,
            "testnet/docker-compose.yml is out of date; regenerate it with\n  cargo run -p quorate-testnet -- compose-file > testnet/docker-compose.yml"
        );
    }

    /// The volumes line of every service in the rendered compose file.
    fn service_volumes(rendered: &str) -> Vec<(String, String)> {
        let services = rendered
            .split("\nservices:\n")
            .nth(1)
            .and_then(|rest| rest.split("\nnetworks:\n").next())
            .unwrap_or_default();
        let mut current = String::new();
        let mut out = Vec::new();
        for line in services.lines() {
            if let Some(name) = line
                .strip_prefix("  ")
                .filter(|l| !l.starts_with(' '))
                .and_then(|l| l.strip_suffix(':'))
            {
                current = name.to_string();
            } else if let Some(volumes) = line.trim_start().strip_prefix("volumes: ") {
                out.push((current.clone(), volumes.to_string()));
            }
        }
        out
    }

    #[test]
    fn compose_keys_are_made_by_dkg_with_the_eu_key_and_its_policy() {
        let layout = ComposeLayout::default_five_regions();
        // The same keys as the local testnet, the EU-policy key included.
        assert_eq!(layout.spec.keys, NetworkSpec::default_five_regions().keys);
        let eu = layout
            .spec
            .keys
            .iter()
            .find(|k| k.key_id == "eu-payments")
            .expect("the compose layout has the EU key");
        assert_eq!(eu.ciphersuite, quorate_frost::Ciphersuite::Ed25519);
        assert_eq!(eu.policy, Some(PolicySpec::residency("EU", 2)));

        let rendered = layout.render_compose_file();
        let keys_command = rendered
            .lines()
            .skip_while(|l| *l != "  keys:")
            .find_map(|l| l.trim_start().strip_prefix("command: "))
            .expect("the keys service has a command");
        assert!(
            keys_command.contains(r#""/bin/quorate-ceremony", "dkg""#),
            "{keys_command}"
        );
        assert!(!keys_command.contains("import"), "{keys_command}");
        assert!(keys_command.contains(POLICY), "{keys_command}");
    }

    #[test]
    fn only_setup_sees_the_approver_key_and_the_keys_container_gets_the_policies() {
        let rendered = ComposeLayout::default_five_regions().render_compose_file();
        let volumes = service_volumes(&rendered);
        assert_eq!(volumes.len(), 1 + 1 + 5 + 2, "{volumes:?}");
        for (service, v) in &volumes {
            let whole_state = v.contains(&format!("\"./{STATE_DIR}:{STATE_MOUNT}\""));
            assert_eq!(whole_state, service == "setup", "{service}: {v}");
            assert!(!v.contains(crate::approver::APPROVER_DIR), "{service}: {v}");
        }
        let keys = volumes
            .iter()
            .find(|(s, _)| s == "keys")
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        assert!(
            keys.contains(&format!(
                "./{STATE_DIR}/{POLICIES_DIR}:{STATE_MOUNT}/{POLICIES_DIR}:ro"
            )),
            "{keys}"
        );
    }
}
