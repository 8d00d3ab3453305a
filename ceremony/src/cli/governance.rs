//! `quorate-ceremony admin keygen` and `authorize`, and the plan options every
//! governed command shares (`--write-plan`, `--plan`, `--authorization`): how a
//! key's administrators consent to one exact refresh, repair, escrow split or
//! escrow recovery.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use quorate_keys::authorization::AdministratorKey;

use super::approval::{parse_duration, write_new_private};
use super::error::CliError;
use crate::plan::{read_authorizations, Plan};

#[derive(Debug, Subcommand)]
pub(super) enum AdminCommand {
    /// Create an administrator key: writes the secret seed (64 hex digits, mode
    /// 0600) and prints the public key to list in key policies
    /// (`administrator_keys`). Keep it offline, one per administrator.
    Keygen {
        /// Where to write the secret key; must not exist yet.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub(super) struct AuthorizeArgs {
    /// The plan to authorize (from a governed command's --write-plan).
    #[arg(long, value_name = "FILE")]
    pub(super) plan: PathBuf,
    /// This administrator's secret key file (from `admin keygen`); the key's
    /// policy must list its public key. Without it (and --out), the plan is only
    /// shown.
    #[arg(long, value_name = "FILE", requires = "out")]
    pub(super) admin_key: Option<PathBuf>,
    /// How long the authorization is valid from now, e.g. 30m, 2h, 1d (at most 7d).
    #[arg(long, value_name = "DURATION", default_value = "1d")]
    pub(super) valid_for: String,
    /// Where to write the authorization; must not exist yet.
    #[arg(long, value_name = "FILE", requires = "admin_key")]
    pub(super) out: Option<PathBuf>,
}

/// How a governed command (refresh, repair, escrow split, escrow recovery) is
/// planned, authorized and run: a key with administrators needs `--write-plan`,
/// their authorizations, then `--plan` with them; a key without runs in one step.
#[derive(Debug, clap::Args)]
pub(super) struct PlanArgs {
    /// Only plan: write the operation's plan (its exact setup) to FILE and stop.
    /// Each administrator of the key then signs it with `quorate-ceremony
    /// authorize`; run it with --plan and their --authorization files.
    #[arg(long, value_name = "FILE", conflicts_with = "plan")]
    pub(super) write_plan: Option<PathBuf>,
    /// Run this plan (from --write-plan) as it is, instead of planning anew.
    #[arg(long, value_name = "FILE")]
    pub(super) plan: Option<PathBuf>,
    /// An administrator's authorization of the plan (repeat: as many distinct
    /// administrators as the key's policy needs). Every node checks them.
    #[arg(long = "authorization", value_name = "FILE", requires = "plan")]
    pub(super) authorizations: Vec<PathBuf>,
}

impl PlanArgs {
    /// The plan to run: the one in --plan, or `fresh` made now.
    pub(super) fn plan_or(
        &self,
        fresh: impl FnOnce() -> Result<Plan, CliError>,
    ) -> Result<Plan, CliError> {
        match &self.plan {
            Some(path) => Ok(Plan::load(path)?),
            None => fresh(),
        }
    }

    /// With --write-plan: writes `plan` there and says what comes next; true
    /// when the command should stop here.
    pub(super) fn write_if_asked(&self, plan: &Plan) -> Result<bool, CliError> {
        let Some(path) = &self.write_plan else {
            return Ok(false);
        };
        plan.write(path)?;
        for line in plan.describe() {
            println!("{line}");
        }
        println!("plan: {}", path.display());
        println!(
            "next: each administrator runs `quorate-ceremony authorize --plan {} --admin-key KEY \
             --out AUTH`; then run this command with --plan {} and one --authorization per file",
            path.display(),
            path.display()
        );
        Ok(true)
    }

    /// The authorization files' contents.
    pub(super) fn authorizations(&self) -> Result<Vec<Vec<u8>>, CliError> {
        Ok(read_authorizations(&self.authorizations)?)
    }
}

/// Runs `admin keygen`.
pub(super) fn admin(command: AdminCommand) -> Result<(), CliError> {
    match command {
        AdminCommand::Keygen { out } => {
            let key = AdministratorKey::generate();
            write_new_private(&out, key.to_hex().as_str())?;
            println!("administrator secret key: {}", out.display());
            println!(
                "administrator public key: {}",
                hex::encode(key.public_key())
            );
            Ok(())
        }
    }
}

/// Runs `authorize`: shows what the plan does (read from its setup, which is what
/// the nodes check, and the manifest it names) and, given a key and a file, then
/// writes this administrator's authorization of it.
pub(super) fn authorize(args: AuthorizeArgs) -> Result<(), CliError> {
    let valid_for = parse_duration(&args.valid_for)?;
    let plan = Plan::load(&args.plan)?;
    for line in plan.describe() {
        println!("{line}");
    }
    let (Some(admin_key), Some(out)) = (&args.admin_key, &args.out) else {
        println!(
            "nothing signed; to authorize exactly this, run again with --admin-key KEY --out FILE"
        );
        return Ok(());
    };
    if out.exists() {
        return Err(CliError::Usage(format!("{} already exists", out.display())));
    }
    let key = read_admin_key(admin_key)?;
    let authorization = plan.authorize(&key, valid_for);
    write_new_private(out, &String::from_utf8_lossy(&authorization))?;
    println!(
        "authorized by administrator {} for {}: {}",
        hex::encode(key.public_key()),
        args.valid_for,
        out.display()
    );
    Ok(())
}

fn read_admin_key(path: &Path) -> Result<AdministratorKey, CliError> {
    let secret = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
        CliError::Read {
            path: path.to_path_buf(),
            source,
        }
    })?);
    AdministratorKey::from_hex(&secret)
        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}
