//! `quorate-ceremony dkg`, `refresh`, `repair` and `transcript verify`: the key
//! ceremonies between nodes from the command line (refresh and repair are
//! governed: see [`super::governance`]).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use quorate_frost::Ciphersuite;

use super::common::{
    check_transcript_path, load_custodians, load_policy, runtime, save_transcript,
};
use super::error::CliError;
use super::governance::PlanArgs;
use crate::ceremony_file::CeremonyFile;
use crate::keygen::{
    plan_refresh, plan_repair, run_dkg, run_refresh, run_repair, verify_transcript, DkgRequest,
    PolicyFile, RefreshRequest, RepairRequest,
};
use crate::transcript::Transcript;

#[derive(Debug, Subcommand)]
pub(super) enum TranscriptCommand {
    /// Re-check a transcript against the live nodes (manifest hash, group key,
    /// verifying shares, participants, recorded confirmations, escrow custodians and
    /// policy as the transcript shows them). Exits 1 on any mismatch, listing each.
    Verify {
        /// The transcript (JSON).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Ceremony file naming how to reach the nodes.
        #[arg(long, value_name = "FILE")]
        ceremony: PathBuf,
        /// The custodians file the key's custodians expect (as for `dkg`): the
        /// manifest's escrow custodians and threshold must be exactly these.
        #[arg(long, value_name = "FILE")]
        custodians: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub(super) struct DkgArgs {
    /// Ceremony file (TOML), as for `import`.
    #[arg(long, value_name = "FILE")]
    pub(super) ceremony: PathBuf,
    /// Key id: 1-128 characters of A-Z a-z 0-9 . _ -
    #[arg(long, value_name = "ID")]
    pub(super) key_id: String,
    /// Ciphersuite: ed25519, secp256k1 or secp256k1-tr (BIP340).
    #[arg(long, value_name = "SUITE")]
    pub(super) ciphersuite: Ciphersuite,
    /// Signers needed to sign (t), between 2 and the number of nodes.
    #[arg(long, value_name = "T")]
    pub(super) threshold: u16,
    /// The key's policy (TOML, or JSON if the name ends in .json): allowed_clients,
    /// home_jurisdictions, min_home_signers, approver_keys (hex),
    /// rate_limit_per_minute, and administrator_keys (hex, from `admin keygen`)
    /// with administrators_required. Every node refuses a new key whose policy
    /// lists no administrators unless it says unsafe_no_administrators = true.
    #[arg(long, value_name = "FILE")]
    pub(super) policy: PathBuf,
    /// The key's escrow custodians (TOML, or JSON if the name ends in .json):
    /// `threshold = K` and one `[[custodians]]` table (name, recipient: an age X25519
    /// recipient, age1...) per custodian, 2 to 64 of them. Fixed in the key's
    /// manifest and confirmed by every node: each node's share can then be escrowed
    /// (`escrow split`) to these custodians only, and to no one else, ever. Without
    /// it the key's shares cannot be escrowed.
    #[arg(long, value_name = "FILE")]
    pub(super) custodians: Option<PathBuf>,
    /// Where to write the JSON transcript; must not exist yet.
    #[arg(long, value_name = "OUT.json")]
    pub(super) transcript: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(super) struct RefreshArgs {
    /// Ceremony file (TOML) listing the key's current nodes.
    #[arg(long, value_name = "FILE")]
    pub(super) ceremony: PathBuf,
    /// Key id.
    #[arg(
        long,
        value_name = "ID",
        required_unless_present = "plan",
        conflicts_with = "plan"
    )]
    pub(super) key_id: Option<String>,
    /// Drop this node from the key.
    #[arg(long, value_name = "ID", conflicts_with = "plan")]
    pub(super) remove_node: Option<String>,
    /// Give the key this policy (a policy file, as for `dkg`) from the refresh on.
    #[arg(long, value_name = "FILE", conflicts_with = "plan")]
    pub(super) policy: Option<PathBuf>,
    /// Give the key these escrow custodians (a custodians file, as for `dkg`) from
    /// the refresh on: parts of earlier splits stay with the earlier custodians,
    /// and are of the earlier shares, which the refresh replaces.
    #[arg(long, value_name = "FILE", conflicts_with = "plan")]
    pub(super) custodians: Option<PathBuf>,
    /// Where to write the JSON transcript; must not exist yet.
    #[arg(long, value_name = "OUT.json", required_unless_present = "write_plan")]
    pub(super) transcript: Option<PathBuf>,
    #[command(flatten)]
    pub(super) plan: PlanArgs,
}

#[derive(Debug, clap::Args)]
pub(super) struct RepairArgs {
    /// Ceremony file (TOML) listing the node to repair and at least t helpers.
    #[arg(long, value_name = "FILE")]
    pub(super) ceremony: PathBuf,
    /// Key id.
    #[arg(
        long,
        value_name = "ID",
        required_unless_present = "plan",
        conflicts_with = "plan"
    )]
    pub(super) key_id: Option<String>,
    /// The node whose share is rebuilt.
    #[arg(
        long,
        value_name = "ID",
        required_unless_present = "plan",
        conflicts_with = "plan"
    )]
    pub(super) node: Option<String>,
    #[command(flatten)]
    pub(super) plan: PlanArgs,
}

/// Runs `dkg`.
pub(super) fn dkg(args: DkgArgs) -> Result<(), CliError> {
    let file = CeremonyFile::load(&args.ceremony)?;
    check_transcript_path(&args.transcript)?;
    let policy = Some(load_policy(&args.policy, args.threshold)?);
    let escrow = load_custodians(args.custodians.as_deref())?;
    let request = DkgRequest {
        key_id: args.key_id,
        ciphersuite: args.ciphersuite,
        threshold: args.threshold,
        policy,
        escrow,
    };
    let transcript = runtime()?.block_on(run_dkg(&file, request))?;
    save_transcript(&transcript, &args.transcript)?;
    println!(
        "created key {} by DKG ({}, {}-of-{}), group public key {}",
        transcript.key_id,
        transcript.ciphersuite,
        transcript.threshold,
        transcript.participants.len(),
        transcript.public_key
    );
    println!("transcript: {}", args.transcript.display());
    Ok(())
}

/// Runs `refresh`.
pub(super) fn refresh(args: RefreshArgs) -> Result<(), CliError> {
    let file = CeremonyFile::load(&args.ceremony)?;
    let runtime = runtime()?;
    let plan = args.plan.plan_or(|| {
        let request = RefreshRequest {
            key_id: args.key_id.clone().unwrap_or_default(),
            remove_node: args.remove_node.clone(),
            policy: args.policy.as_deref().map(PolicyFile::load).transpose()?,
            escrow: load_custodians(args.custodians.as_deref())?,
        };
        Ok(runtime.block_on(plan_refresh(&file, request))?)
    })?;
    if args.plan.write_if_asked(&plan)? {
        return Ok(());
    }
    let path = args
        .transcript
        .ok_or_else(|| CliError::Usage("--transcript is needed to run a refresh".into()))?;
    check_transcript_path(&path)?;
    if args.plan.plan.is_none() {
        // Planned here, in one step: keep the plan, since only this plan can finish
        // or roll back the refresh if it is interrupted.
        let kept = path.with_extension("plan.json");
        plan.write(&kept)?;
        eprintln!(
            "plan: {} (if the refresh is interrupted, run again with --plan {})",
            kept.display(),
            kept.display()
        );
    }
    let authorizations = args.plan.authorizations()?;
    let transcript = runtime.block_on(run_refresh(&file, &plan, &authorizations))?;
    save_transcript(&transcript, &path)?;
    println!(
        "refreshed key {} ({}-of-{}: {}), group public key {} unchanged",
        transcript.key_id,
        transcript.threshold,
        transcript.participants.len(),
        transcript
            .participants
            .iter()
            .map(|p| p.node_id.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        transcript.public_key
    );
    println!("transcript: {}", path.display());
    Ok(())
}

/// Runs `repair`.
pub(super) fn repair(args: RepairArgs) -> Result<(), CliError> {
    let file = CeremonyFile::load(&args.ceremony)?;
    let runtime = runtime()?;
    let plan = args.plan.plan_or(|| {
        let request = RepairRequest {
            key_id: args.key_id.clone().unwrap_or_default(),
            node: args.node.clone().unwrap_or_default(),
        };
        Ok(runtime.block_on(plan_repair(&file, request))?)
    })?;
    if args.plan.write_if_asked(&plan)? {
        return Ok(());
    }
    let authorizations = args.plan.authorizations()?;
    let outcome = runtime.block_on(run_repair(&file, &plan, &authorizations))?;
    let setup = plan.setup();
    println!(
        "repaired {}'s share of key {} with helpers {}; verifying share {} matches the manifest {}",
        setup.pb.repair_target,
        setup.pb.key_id,
        outcome.helpers.join(", "),
        outcome.verifying_share,
        outcome.manifest_hash
    );
    Ok(())
}

/// Runs `transcript verify`.
pub(super) fn transcript_verify(
    path: &Path,
    ceremony: &Path,
    custodians: Option<&Path>,
) -> Result<(), CliError> {
    let file = CeremonyFile::load(ceremony)?;
    let transcript = Transcript::read(path)?;
    let custodians = load_custodians(custodians)?;
    let problems =
        runtime()?.block_on(verify_transcript(&file, &transcript, custodians.as_ref()))?;
    if problems.is_empty() {
        println!(
            "transcript {} matches the live nodes: key {} ({}), manifest {}, {} participants",
            path.display(),
            transcript.key_id,
            transcript.ciphersuite,
            transcript.manifest_hash,
            transcript.participants.len()
        );
        return Ok(());
    }
    for p in &problems {
        println!("MISMATCH {p}");
    }
    Err(CliError::TranscriptMismatch {
        count: problems.len(),
        path: path.to_path_buf(),
    })
}
