//! `quorate sign`.

use super::message::MessageArgs;
use super::threshold_key::KeyArgs;
use super::{print_json, CliError, GlobalArgs};
use crate::SignOptions;

/// Flags of `sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub message: MessageArgs,
    /// Idempotency key: the same id and message return the same signature (default:
    /// a fresh random id, kept across this call's retries).
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
    /// Print one line of JSON: key_id, ciphersuite, signature, signers,
    /// public_key, request_id, coordinator, verified.
    #[arg(long)]
    pub json: bool,
}

/// Runs `sign`.
pub async fn run(global: &GlobalArgs, args: SignArgs) -> Result<(), CliError> {
    let message = args.message.bytes()?;
    let approval_token = args.key.read_approval_token()?;
    let client = global.client()?;
    let signed = client
        .sign(
            &args.key.key_id,
            &message,
            SignOptions {
                request_id: args.request_id,
                approval_token,
                deadline: None,
            },
        )
        .await?;
    if args.json {
        let mut value = serde_json::to_value(&signed)
            .map_err(|e| CliError::Failed(format!("cannot print JSON: {e}")))?;
        value["verified"] = serde_json::Value::Bool(true);
        print_json(&value);
    } else {
        println!("key_id:      {}", signed.key_id);
        println!("ciphersuite: {}", signed.ciphersuite.name());
        println!("signature:   {}", hex::encode(&signed.signature));
        // The coordinator's word: an aggregate signature does not show who signed.
        println!(
            "signers:     {} (as the coordinator reports them)",
            signed.signers.join(", ")
        );
        println!("public_key:  {}", hex::encode(&signed.public_key));
        println!("request_id:  {}", signed.request_id);
        println!("verified:    yes");
    }
    Ok(())
}
