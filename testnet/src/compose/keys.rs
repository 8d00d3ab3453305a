//! `compose-keys`, run once inside the `keys` container: waits until every node
//! serves, then creates each demo key no node holds yet with the key ceremony
//! [`KEY_CEREMONY`] (and repairs a key some nodes lost). The ceremony is one list of
//! arguments with placeholders, filled in per key by [`ceremony_command`], which
//! refuses to create a policy key without its policy.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use quorate_ceremony::import::CeremonyFile;
use quorate_ceremony::keygen::{run_repair, RepairRequest};

use super::layout::{policy_path, ComposeLayout};
use crate::probe::{node_holds_key, wait_node_serving};
use crate::spec::KeySpec;

/// The key ceremony the `keys` container runs once per demo key whose shares no
/// node holds yet: distributed key generation across the five nodes, as on the
/// local testnet (no process ever holds a whole key). Placeholders: `{ceremony}`
/// (ceremony file), `{key_id}`, `{ciphersuite}`, `{threshold}`, `{transcript}` (a
/// path that does not exist yet), and `{policy_args}`, an argument of its own that
/// becomes `--policy FILE` for a key with a policy (the file `compose-setup` wrote,
/// listing the network's approver) and disappears for an unrestricted key.
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
    POLICY_ARGS,
];

/// The placeholder argument of [`KEY_CEREMONY`] that becomes `--policy FILE` or
/// nothing.
pub const POLICY_ARGS: &str = "{policy_args}";

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
                let outcome = run_repair(
                    &file,
                    RepairRequest {
                        key_id: key.key_id.clone(),
                        node: node.clone(),
                    },
                )
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
        let policy = key.policy.as_ref().map(|_| policy_path(dir, &key.key_id));
        if let Some(path) = &policy {
            if !path.is_file() {
                bail!(
                    "{}: its policy file {} is missing (compose-setup writes it)",
                    key.key_id,
                    path.display()
                );
            }
        }
        let args = ceremony_command(
            &ceremony[1..],
            &CeremonyArgs {
                ceremony: &ceremony_path,
                key,
                threshold: layout.spec.threshold,
                transcript: &transcript,
                policy: policy.as_deref(),
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

/// Why the key ceremony's command line could not be made for a key: each case would
/// create the key with another policy than its spec's, so none is a warning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CeremonyCommandError {
    /// A policy key without its policy file.
    #[error("{key_id}: the key has a policy but no policy file was given")]
    PolicyFileMissing {
        /// The key.
        key_id: String,
    },
    /// An unrestricted key with a policy file.
    #[error("{key_id}: the key is unrestricted, yet a policy file ({}) was given", .path.display())]
    UnexpectedPolicyFile {
        /// The key.
        key_id: String,
        /// The file given.
        path: PathBuf,
    },
    /// A policy key, and a ceremony template that cannot pass its policy.
    #[error("{key_id}: the key has a policy, but the key ceremony command has no {POLICY_ARGS} argument to pass it; it would be created unrestricted")]
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
    /// The key's policy file, for a key with a policy.
    pub policy: Option<&'a Path>,
}

/// The ceremony's arguments for one key: `template` (the arguments of
/// [`KEY_CEREMONY`], program excluded) with its placeholders filled in. A key with
/// a policy needs [`POLICY_ARGS`] in the template: without it the key would be
/// created unrestricted, so that is an error, not a silent downgrade.
pub fn ceremony_command(
    template: &[String],
    args: &CeremonyArgs<'_>,
) -> Result<Vec<String>, CeremonyCommandError> {
    let key = args.key;
    match (key.policy.is_some(), args.policy) {
        (true, None) => {
            return Err(CeremonyCommandError::PolicyFileMissing {
                key_id: key.key_id.clone(),
            })
        }
        (false, Some(path)) => {
            return Err(CeremonyCommandError::UnexpectedPolicyFile {
                key_id: key.key_id.clone(),
                path: path.to_path_buf(),
            })
        }
        _ => {}
    }
    if args.policy.is_some() && !template.iter().any(|a| a == POLICY_ARGS) {
        return Err(CeremonyCommandError::NoPolicyArgument {
            key_id: key.key_id.clone(),
        });
    }
    let mut out = Vec::with_capacity(template.len() + 1);
    for a in template {
        if a == POLICY_ARGS {
            if let Some(path) = args.policy {
                out.push("--policy".to_string());
                out.push(path.display().to_string());
            }
            continue;
        }
        out.push(
            a.replace("{ceremony}", &args.ceremony.display().to_string())
                .replace("{key_id}", &key.key_id)
                .replace("{ciphersuite}", ceremony_arg(key.ciphersuite))
                .replace("{threshold}", &args.threshold.to_string())
                .replace("{transcript}", &args.transcript.display().to_string()),
        );
    }
    Ok(out)
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
    fn the_key_ceremony_passes_a_policy_file_to_policy_keys_only() -> anyhow::Result<()> {
        let spec = NetworkSpec::default_five_regions();
        let template: Vec<String> = KEY_CEREMONY[1..].iter().map(|s| s.to_string()).collect();
        fn args<'a>(key: &'a KeySpec, policy: Option<&'a Path>) -> CeremonyArgs<'a> {
            CeremonyArgs {
                ceremony: Path::new("/quorate/ceremony/ceremony.toml"),
                key,
                threshold: 3,
                transcript: Path::new("/quorate/transcripts/k.json"),
                policy,
            }
        }
        let eu = spec
            .keys
            .iter()
            .find(|k| k.policy.is_some())
            .context("a policy key")?;
        let plain = spec
            .keys
            .iter()
            .find(|k| k.policy.is_none())
            .context("an unrestricted key")?;
        let policy = Path::new("/quorate/policies/eu-payments.toml");

        let with = ceremony_command(&template, &args(eu, Some(policy)))?;
        assert_eq!(
            with,
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
        let without = ceremony_command(&template, &args(plain, None))?;
        assert!(!without.iter().any(|a| a == "--policy" || a == POLICY_ARGS));
        assert_eq!(without.len(), with.len() - 2);

        // A policy key is never created unrestricted by accident.
        assert!(ceremony_command(&template, &args(eu, None)).is_err());
        let no_placeholder: Vec<String> = template
            .iter()
            .filter(|a| *a != POLICY_ARGS)
            .cloned()
            .collect();
        assert!(ceremony_command(&no_placeholder, &args(eu, Some(policy))).is_err());
        Ok(())
    }
}
