//! `compose-keys`, run once inside the `keys` container: waits until every node
//! serves, then creates each demo key no node holds yet with the key ceremony
//! [`KEY_CEREMONY`] (and repairs a key some nodes lost, authorized by the network's
//! administrators). The ceremony is one list of arguments with placeholders, filled
//! in per key by [`ceremony_command`], which refuses to create a key without its
//! policy.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use quorate_ceremony::import::CeremonyFile;

use super::layout::{policy_path, ComposeLayout};
use crate::probe::{node_holds_key, wait_node_serving};
use crate::spec::KeySpec;

/// The key ceremony the `keys` container runs once per demo key whose shares no
/// node holds yet: distributed key generation across the five nodes, as on the
/// local testnet (no process ever holds a whole key). Placeholders: `{ceremony}`
/// (ceremony file), `{key_id}`, `{ciphersuite}`, `{threshold}`, `{transcript}` (a
/// path that does not exist yet), and [`POLICY`], the key's policy file (the file
/// `compose-setup` wrote: the network's administrators, and for a key with a
/// residency policy that policy and the network's approver).
/// Switching the testnet to another ceremony (e.g. `import`, which takes the same
/// arguments) is a change of this list, then
/// `quorate-testnet compose-file > testnet/docker-compose.yml`.
pub const KEY_CEREMONY: &[&str] = &[
    "/bin/quorate-ceremony",
    "dkg",
    "--ceremony",
    "{ceremony}",
    "--key-id",
    "{key_id}",
    "--ciphersuite",
    "{ciphersuite}",
    "--threshold",
    "{threshold}",
    "--transcript",
    "{transcript}",
    "--policy",
    POLICY,
];

/// The placeholder of [`KEY_CEREMONY`] that becomes the key's policy file.
pub const POLICY: &str = "{policy}";

/// How long `compose-keys` waits for every node to serve.
const NODES_TIMEOUT: Duration = Duration::from_secs(90);

/// `compose-keys`: waits until every node serves, then runs `ceremony` (the
/// [`KEY_CEREMONY`] command line with its placeholders) once for each demo key that
/// no node holds yet. A key that every node already holds is kept (a repeated `up`).
/// A key that at least `t` nodes hold but others lost (a node whose volume was
/// wiped, e.g. by an interrupted `wipe-and-repair` drill) is repaired on those from
/// `t` holders; with fewer than `t` holders nothing can rebuild it, which is an
/// error.
pub async fn create_keys(
    layout: &ComposeLayout,
    dir: &Path,
    ceremony: &[String],
) -> anyhow::Result<()> {
    let program = ceremony
        .first()
        .ok_or_else(|| anyhow!("no key ceremony command given"))?;
    let ceremony_path = dir.join("ceremony").join("ceremony.toml");
    let file = CeremonyFile::load(&ceremony_path)?;
    for node in &file.nodes {
        wait_node_serving(&file.tls, &node.id, &node.endpoint, NODES_TIMEOUT).await?;
    }
    let transcripts = dir.join("transcripts");
    std::fs::create_dir_all(&transcripts)?;
    for key in &layout.spec.keys {
        let mut lacking = Vec::new();
        for node in &file.nodes {
            if !node_holds_key(&file.tls, node, &key.key_id).await? {
                lacking.push(node.id.clone());
            }
        }
        let holders = file.nodes.len() - lacking.len();
        if lacking.is_empty() {
            println!("{}: every node holds it already; keeping it", key.key_id);
            continue;
        }
        if holders >= usize::from(layout.spec.threshold) {
            for node in &lacking {
                let outcome = crate::administrators::repair(dir, &file, &key.key_id, node)
                    .await
                    .with_context(|| format!("{}: repairing {node}'s share", key.key_id))?;
                println!(
                    "{}: {node} had lost its share; repaired from {}",
                    key.key_id,
                    outcome.helpers.join(", ")
                );
            }
            continue;
        }
        if holders > 0 {
            bail!(
                "{}: only {holders} of {} nodes hold it, fewer than the {} that can rebuild it; remove the volumes (docker-compose down -v) and start again",
                key.key_id,
                file.nodes.len(),
                layout.spec.threshold
            );
        }
        let transcript = transcripts.join(format!("{}.json", key.key_id));
        if transcript.exists() {
            // From an earlier network whose node volumes were removed since.
            let stale = transcripts.join(format!(
                "{}.json.stale-{}",
                key.key_id,
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default()
            ));
            std::fs::rename(&transcript, &stale)?;
        }
        let policy = policy_path(dir, &key.key_id);
        if !policy.is_file() {
            bail!(
                "{}: its policy file {} is missing (compose-setup writes it)",
                key.key_id,
                policy.display()
            );
        }
        let args = ceremony_command(
            &ceremony[1..],
            &CeremonyArgs {
                ceremony: &ceremony_path,
                key,
                threshold: layout.spec.threshold,
                transcript: &transcript,
                policy: &policy,
            },
        )?;
        println!("{}: running {program} {}", key.key_id, args.join(" "));
        let status = tokio::process::Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .status()
            .await
            .with_context(|| format!("starting {program}"))?;
        if !status.success() {
            bail!("{}: key ceremony failed ({status})", key.key_id);
        }
    }
    Ok(())
}

/// Why the key ceremony's command line could not be made for a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CeremonyCommandError {
    /// A ceremony template that cannot pass the key's policy file.
    #[error("{key_id}: the key ceremony command has no {POLICY} argument to pass the key's policy (its administrators)")]
    NoPolicyArgument {
        /// The key.
        key_id: String,
    },
}

/// What fills the placeholders of [`KEY_CEREMONY`] for one key.
#[derive(Clone, Copy, Debug)]
pub struct CeremonyArgs<'a> {
    /// The ceremony file.
    pub ceremony: &'a Path,
    /// The key to create.
    pub key: &'a KeySpec,
    /// Signers needed.
    pub threshold: u16,
    /// Where the transcript goes.
    pub transcript: &'a Path,
    /// The key's policy file.
    pub policy: &'a Path,
}

/// The ceremony's arguments for one key: `template` (the arguments of
/// [`KEY_CEREMONY`], program excluded) with its placeholders filled in. The
/// template must pass the key's policy ([`POLICY`]): a key is never created
/// without its administrators.
pub fn ceremony_command(
    template: &[String],
    args: &CeremonyArgs<'_>,
) -> Result<Vec<String>, CeremonyCommandError> {
    let key = args.key;
    if !template.iter().any(|a| a == POLICY) {
        return Err(CeremonyCommandError::NoPolicyArgument {
            key_id: key.key_id.clone(),
        });
    }
    Ok(template
        .iter()
        .map(|a| {
            a.replace("{ceremony}", &args.ceremony.display().to_string())
                .replace("{key_id}", &key.key_id)
                .replace("{ciphersuite}", ceremony_arg(key.ciphersuite))
                .replace("{threshold}", &args.threshold.to_string())
                .replace("{transcript}", &args.transcript.display().to_string())
                .replace(POLICY, &args.policy.display().to_string())
        })
        .collect())
}

/// The ciphersuite as `quorate-ceremony` spells it on its command line.
fn ceremony_arg(suite: quorate_frost::Ciphersuite) -> &'static str {
    use quorate_frost::Ciphersuite;
    match suite {
        Ciphersuite::Ed25519 => "ed25519",
        Ciphersuite::Secp256k1 => "secp256k1",
        Ciphersuite::Secp256k1Tr => "secp256k1-tr",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::NetworkSpec;

    #[test]
    fn the_key_ceremony_passes_every_key_its_policy_file() -> anyhow::Result<()> {
        let spec = NetworkSpec::default_five_regions();
        let template: Vec<String> = KEY_CEREMONY[1..].iter().map(|s| s.to_string()).collect();
        let eu = spec
            .keys
            .iter()
            .find(|k| k.policy.is_some())
            .context("a policy key")?;
        let policy = Path::new("/quorate/policies/eu-payments.toml");
        let args = CeremonyArgs {
            ceremony: Path::new("/quorate/ceremony/ceremony.toml"),
            key: eu,
            threshold: 3,
            transcript: Path::new("/quorate/transcripts/k.json"),
            policy,
        };
        assert_eq!(
            ceremony_command(&template, &args)?,
            [
                "dkg",
                "--ceremony",
                "/quorate/ceremony/ceremony.toml",
                "--key-id",
                "eu-payments",
                "--ciphersuite",
                "ed25519",
                "--threshold",
                "3",
                "--transcript",
                "/quorate/transcripts/k.json",
                "--policy",
                "/quorate/policies/eu-payments.toml",
            ]
        );
        // A key is never created without its administrators by accident.
        let no_placeholder: Vec<String> =
            template.iter().filter(|a| *a != POLICY).cloned().collect();
        assert!(ceremony_command(&no_placeholder, &args).is_err());
        Ok(())
    }
}
