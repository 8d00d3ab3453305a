//! `quorate public-key`.
//!
//! The output is chosen in one place, [`render`]: today a summary (text or JSON);
//! encodings of the key alone (`--format pem|der|jwk|openssh|raw|hex`) are further
//! variants of [`Output`].

use super::{print_json, CliError, GlobalArgs};
use crate::PublicKey;

/// Flags of `public-key`.
#[derive(Debug, clap::Args)]
pub struct PublicKeyArgs {
    /// The key.
    #[arg(long, value_name = "ID")]
    pub key_id: String,
    /// Print one line of JSON: key_id, ciphersuite, public_key (hex), threshold,
    /// participants [{node_id, region, jurisdiction, verifying_share}].
    #[arg(long)]
    pub json: bool,
}

/// What `public-key` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    /// Id, ciphersuite, threshold, participants and the key in hex, for people.
    Summary,
    /// The same as one line of JSON.
    Json,
}

/// Runs `public-key`.
pub async fn run(global: &GlobalArgs, args: PublicKeyArgs) -> Result<(), CliError> {
    let output = if args.json {
        Output::Json
    } else {
        Output::Summary
    };
    let key = global.client()?.public_key(&args.key_id).await?;
    render(&key, output)
}

fn render(key: &PublicKey, output: Output) -> Result<(), CliError> {
    match output {
        Output::Json => {
            let value = serde_json::to_value(key)
                .map_err(|e| CliError::Negative(format!("cannot print JSON: {e}")))?;
            print_json(&value);
        }
        Output::Summary => {
            println!("key_id:       {}", key.key_id);
            println!("ciphersuite:  {}", key.ciphersuite.name());
            println!(
                "threshold:    {}-of-{}",
                key.threshold,
                key.participants.len()
            );
            println!("public_key:   {}", hex::encode(&key.public_key));
            println!("participants:");
            for p in &key.participants {
                println!("  {:<12} {:<16} {}", p.node_id, p.region, p.jurisdiction);
            }
        }
    }
    Ok(())
}
