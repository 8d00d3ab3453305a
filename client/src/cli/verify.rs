//! `quorate verify`.

use quorate_frost::Ciphersuite;

use super::message::MessageArgs;
use super::{print_json, CliError, GlobalArgs};
use crate::verify::verify;
use crate::Verdict;

/// Flags of `verify`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("verify_key").required(true).args(["key_id", "public_key"])))]
pub struct VerifyArgs {
    /// The key whose public key to check against (asked of the network).
    #[arg(long, value_name = "ID")]
    pub key_id: Option<String>,
    /// A public key (hex) to check against instead, offline; needs --ciphersuite.
    #[arg(long, value_name = "HEX", requires = "ciphersuite")]
    pub public_key: Option<String>,
    /// ED25519, SECP256K1 or SECP256K1_TR; with --public-key.
    #[arg(long, value_name = "SUITE")]
    pub ciphersuite: Option<String>,
    #[command(flatten)]
    pub message: MessageArgs,
    /// The signature (hex).
    #[arg(long, value_name = "HEX")]
    pub signature: String,
    /// Print one line of JSON: key_id, ciphersuite, public_key, valid, reason.
    #[arg(long)]
    pub json: bool,
}

/// Runs `verify`: Ok if the signature is valid, `Negative` if not.
pub async fn run(global: &GlobalArgs, args: VerifyArgs) -> Result<(), CliError> {
    let message = args.message.bytes()?;
    let signature = hex::decode(args.signature.trim())
        .map_err(|e| CliError::Usage(format!("--signature is not hex: {e}")))?;
    let (key_id, suite, public_key, verdict) = match (&args.key_id, &args.public_key) {
        (Some(key_id), _) => {
            let (key, verdict) = global
                .client()?
                .verify(key_id, &message, &signature)
                .await?;
            (Some(key.key_id), key.ciphersuite, key.public_key, verdict)
        }
        (None, Some(hex_key)) => {
            let public_key = hex::decode(hex_key.trim())
                .map_err(|e| CliError::Usage(format!("--public-key is not hex: {e}")))?;
            let suite: Ciphersuite = args
                .ciphersuite
                .as_deref()
                .unwrap_or_default()
                .parse()
                .map_err(CliError::Usage)?;
            let verdict = match verify(suite, &public_key, &message, &signature) {
                Ok(()) => Verdict::Valid,
                Err(e) => Verdict::Invalid(e),
            };
            (None, suite, public_key, verdict)
        }
        (None, None) => return Err(CliError::Usage("give --key-id or --public-key".into())),
    };
    let reason = match &verdict {
        Verdict::Valid => None,
        Verdict::Invalid(e) => Some(e.to_string()),
    };
    if args.json {
        print_json(&serde_json::json!({
            "key_id": key_id,
            "ciphersuite": suite.name(),
            "public_key": hex::encode(&public_key),
            "valid": reason.is_none(),
            "reason": reason,
        }));
    } else {
        match &reason {
            None => println!(
                "valid: the signature verifies under {}",
                describe(&key_id, &public_key)
            ),
            Some(r) => println!(
                "INVALID: the signature does not verify under {}: {r}",
                describe(&key_id, &public_key)
            ),
        }
    }
    match reason {
        None => Ok(()),
        Some(r) => Err(CliError::Negative(format!("invalid signature: {r}"))),
    }
}

fn describe(key_id: &Option<String>, public_key: &[u8]) -> String {
    match key_id {
        Some(id) => format!("the public key of {id} ({})", hex::encode(public_key)),
        None => format!("public key {}", hex::encode(public_key)),
    }
}
