//! `quorate jws sign`: a compact JWS (EdDSA, RFC 8037) signed by the quorum.

use std::io::Read as _;
use std::path::PathBuf;

use super::output::write_stdout;
use super::threshold_key::{KeyArgs, ThresholdKey};
use super::{CliError, GlobalArgs};
use crate::jws;

/// Flags of `jws sign`.
#[derive(Debug, clap::Args)]
pub struct JwsSignArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// The payload file (bytes as they are; `-` for standard input). For a JWT, a
    /// JSON object of claims.
    #[arg(long, value_name = "FILE")]
    pub payload: PathBuf,
    /// The header's `typ` (e.g. `JWT`; with JWT the payload must be a JSON object).
    #[arg(long, value_name = "TYP")]
    pub typ: Option<String>,
    /// The header's `kid` (default: the key id).
    #[arg(long, value_name = "KID")]
    pub kid: Option<String>,
}

/// `jws` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum JwsCommand {
    /// Print a compact JWS of the payload: header {"alg":"EdDSA","kid":...}, signed
    /// by an Ed25519 key's quorum. JOSE libraries verify it with the key from
    /// `quorate public-key --format jwk` (or pem).
    Sign(JwsSignArgs),
}

/// Runs `jws ...`.
pub async fn run(global: &GlobalArgs, command: JwsCommand) -> Result<(), CliError> {
    match command {
        JwsCommand::Sign(args) => sign(global, args).await,
    }
}

async fn sign(global: &GlobalArgs, args: JwsSignArgs) -> Result<(), CliError> {
    let payload = if args.payload.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| CliError::Usage(format!("cannot read standard input: {e}")))?;
        bytes
    } else {
        std::fs::read(&args.payload).map_err(|e| {
            CliError::Usage(format!(
                "cannot read --payload {}: {e}",
                args.payload.display()
            ))
        })?
    };
    let key = ThresholdKey::open(global, &args.key).await?;
    let public = key.public_key();
    let kid = args.kid.as_deref().unwrap_or(&public.key_id);
    let usage = |e: jws::JwsError| CliError::Usage(e.to_string());
    let header = jws::header(public.ciphersuite, kid, args.typ.as_deref()).map_err(usage)?;
    let input = jws::signing_input(&header, &payload).map_err(usage)?;
    let signature = key.sign(input.as_bytes()).await?;
    let token = jws::compact(&input, &signature).map_err(|e| CliError::Failed(e.to_string()))?;
    write_stdout(format!("{token}\n").as_bytes())
}
