//! `quorate-ceremony escrow split`, `verify` and `recover`: custodian escrow of one
//! node's share from the command line.

use std::path::PathBuf;

use clap::Subcommand;

use super::error::CliError;
use super::governance::PlanArgs;
use crate::ceremony_file::CeremonyFile;
use crate::escrow::{self, Identities};

#[derive(Debug, Subcommand)]
pub(super) enum EscrowCommand {
    /// Have a node Feldman-split its own share of a key among the key's custodians.
    ///
    /// The custodians (names and age recipients) and the threshold are those in the
    /// key's manifest (set by dkg or import with --custodians, changed only by a
    /// refresh the key's administrators authorize); no one running a split can
    /// choose others. The node splits its signing share into
    /// one part per custodian, any threshold of which rebuild it, and encrypts each
    /// part to the custodian's age recipient; the plaintext never leaves the node.
    /// Writes OUT/KEY.NODE.CUSTODIAN.age per custodian (never replacing a file). A
    /// custodian decrypts theirs with the standard `age` tool:
    /// `age -d -i key.txt FILE.age > part.json`.
    ///
    /// For a key with administrators, plan first (--write-plan, naming every node
    /// to split), have administrators authorize the plan, then run it (--plan,
    /// --authorization); each node checks the authorizations before it splits.
    Split {
        /// Ceremony file (as for `import`); must list every NODE.
        #[arg(long, value_name = "FILE")]
        ceremony: PathBuf,
        /// The key whose shares to escrow.
        #[arg(
            long,
            value_name = "ID",
            required_unless_present = "plan",
            conflicts_with = "plan"
        )]
        key_id: Option<String>,
        /// A node whose share to escrow (repeat for several; with --plan, default:
        /// every node the plan names).
        #[arg(long = "node", value_name = "NODE", required_unless_present = "plan")]
        nodes: Vec<String>,
        /// Directory for the .age files (created if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Check one part alone against the Feldman commitments it carries.
    ///
    /// Needs no other part and no network. Exit 0: the part lies on the committed
    /// polynomial whose constant term is the node's verifying share.
    Verify {
        /// The part: decrypted JSON, or the .age file with --identity.
        #[arg(long, value_name = "FILE")]
        part: PathBuf,
        /// age identity file that decrypts an .age part (repeatable).
        #[arg(long = "identity", value_name = "AGE_IDENTITY_FILE")]
        identities: Vec<PathBuf>,
    },
    /// Rebuild a node's share from K or more parts and install it on the node.
    ///
    /// Checks every part, fetches the key's manifest from the nodes in the ceremony
    /// file (at least threshold of its participants must attest it), checks the
    /// rebuilt share against the node's verifying share in it, and installs the
    /// share on the node (which must not hold the key, e.g. after it was wiped).
    /// Refuses, installing nothing, when parts are too few, forged or from another
    /// split.
    ///
    /// For a key with administrators, plan first (--write-plan; no parts needed),
    /// have administrators authorize the plan, then run it (--plan,
    /// --authorization, the parts); the node checks the authorizations before it
    /// installs anything.
    Recover {
        /// Ceremony file (as for `import`); must list NODE.
        #[arg(long, value_name = "FILE")]
        ceremony: PathBuf,
        /// The key to restore.
        #[arg(
            long,
            value_name = "ID",
            required_unless_present = "plan",
            conflicts_with = "plan"
        )]
        key_id: Option<String>,
        /// The node to restore (same id as the node that split its share).
        #[arg(
            long,
            value_name = "NODE",
            required_unless_present = "plan",
            conflicts_with = "plan"
        )]
        node: Option<String>,
        /// A part: decrypted JSON or .age (repeat; at least K).
        #[arg(
            long = "part",
            value_name = "FILE",
            required_unless_present = "write_plan"
        )]
        parts: Vec<PathBuf>,
        /// age identity file for .age parts (repeatable; each part is tried with all).
        #[arg(long = "identity", value_name = "AGE_IDENTITY_FILE")]
        identities: Vec<PathBuf>,
        #[command(flatten)]
        plan: PlanArgs,
    },
}

/// Runs an `escrow` command.
pub(super) fn run(command: EscrowCommand) -> Result<(), CliError> {
    match command {
        EscrowCommand::Split {
            ceremony,
            key_id,
            nodes,
            out,
            plan,
        } => {
            let file = CeremonyFile::load(&ceremony)?;
            let runtime = tokio::runtime::Runtime::new().map_err(CliError::Runtime)?;
            let planned = if plan.plan.is_some() || plan.write_plan.is_some() {
                let p = plan.plan_or(|| {
                    let key_id = key_id.clone().unwrap_or_default();
                    Ok(runtime.block_on(escrow::plan_split(&file, &key_id, &nodes))?)
                })?;
                if plan.write_if_asked(&p)? {
                    return Ok(());
                }
                Some(p)
            } else {
                None
            };
            let (key_id, nodes) = match &planned {
                Some(p) if nodes.is_empty() => {
                    (p.setup().pb.key_id.clone(), p.setup().participant_ids())
                }
                Some(p) => (p.setup().pb.key_id.clone(), nodes),
                None => (key_id.unwrap_or_default(), nodes),
            };
            let authorizations = plan.authorizations()?;
            for node_id in nodes {
                let request = escrow::SplitRequest {
                    key_id: key_id.clone(),
                    node_id: node_id.clone(),
                    out_dir: out.clone(),
                    plan: planned.clone(),
                    authorizations: authorizations.clone(),
                };
                let outcome = runtime.block_on(escrow::split(&file, request))?;
                println!(
                    "node {node_id} split its share of key {key_id} among the {} custodians of \
                     its manifest {} ({} needed to recover); verifying share {}:",
                    outcome.files.len(),
                    outcome.manifest_hash,
                    outcome.threshold,
                    outcome.verifying_share
                );
                for ((custodian, path), (_, recipient)) in
                    outcome.files.iter().zip(&outcome.custodians)
                {
                    println!("  {custodian} ({recipient}): {}", path.display());
                }
            }
            Ok(())
        }
        EscrowCommand::Verify { part, identities } => {
            let identities = Identities::load(&identities)?;
            let verified = escrow::verify_part(&part, &identities)?;
            println!(
                "OK: part {} of {} (custodian {}) of node {}'s share of key {} ({}) lies on \
                 the committed polynomial; {} parts recover the share with verifying share {}",
                verified.identifier,
                verified.parts,
                verified.custodian,
                verified.node_id,
                verified.key_id,
                verified.ciphersuite,
                verified.threshold,
                verified.verifying_share
            );
            Ok(())
        }
        EscrowCommand::Recover {
            ceremony,
            key_id,
            node,
            parts,
            identities,
            plan,
        } => {
            let file = CeremonyFile::load(&ceremony)?;
            let runtime = tokio::runtime::Runtime::new().map_err(CliError::Runtime)?;
            let planned = if plan.plan.is_some() || plan.write_plan.is_some() {
                let p = plan.plan_or(|| {
                    let (key_id, node) = (key_id.clone(), node.clone());
                    Ok(runtime.block_on(escrow::plan_recover(
                        &file,
                        &key_id.unwrap_or_default(),
                        &node.unwrap_or_default(),
                    ))?)
                })?;
                if plan.write_if_asked(&p)? {
                    return Ok(());
                }
                Some(p)
            } else {
                None
            };
            let (key_id, node_id) = match &planned {
                Some(p) => (
                    p.setup().pb.key_id.clone(),
                    p.setup().pb.repair_target.clone(),
                ),
                None => (key_id.unwrap_or_default(), node.unwrap_or_default()),
            };
            let identities = Identities::load(&identities)?;
            let parts = parts
                .into_iter()
                .map(|path| escrow::read_part(&path, &identities).map(|p| (path, p)))
                .collect::<Result<Vec<_>, _>>()?;
            drop(identities);
            let request = escrow::RecoverRequest {
                key_id: key_id.clone(),
                node_id: node_id.clone(),
                parts,
                plan: planned,
                authorizations: plan.authorizations()?,
            };
            let outcome = runtime.block_on(escrow::recover(&file, request))?;
            println!(
                "recovered node {node_id}'s share of key {key_id} from {} parts and installed \
                 it; manifest {} (agreed by {})",
                outcome.parts_used,
                outcome.manifest_hash,
                outcome.manifest_from.join(", ")
            );
            Ok(())
        }
    }
}
