//! `quorate public-key`.
//!
//! The output is chosen in one place, [`render`]: a summary (text or JSON), or the
//! key alone in a standard encoding (`--format`, see [`crate::key_formats`]).

use super::output::write_stdout;
use super::{print_json, CliError, GlobalArgs};
use crate::key_formats::{self, KeyFormat};
use crate::PublicKey;

/// Flags of `public-key`.
#[derive(Debug, clap::Args)]
pub struct PublicKeyArgs {
    /// The key.
    #[arg(long, value_name = "ID")]
    pub key_id: String,
    /// Print one line of JSON: key_id, ciphersuite, public_key (hex), threshold,
    /// participants [{node_id, region, jurisdiction, verifying_share}].
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Print only the public key, in a standard encoding: pem/der (SubjectPublicKeyInfo:
    /// RFC 8410 for Ed25519, RFC 5480 for secp256k1), jwk (RFC 8037 OKP for Ed25519,
    /// RFC 8812 EC for secp256k1), openssh (an `ssh-ed25519` line), raw (binary) or
    /// hex. A BIP340 (Taproot) key is x-only: raw or hex only.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<KeyFormat>,
}

/// What `public-key` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    /// Id, ciphersuite, threshold, participants and the key in hex, for people.
    Summary,
    /// The same as one line of JSON.
    Json,
    /// The public key alone, encoded.
    Encoded(KeyFormat),
}

/// Runs `public-key`.
pub async fn run(global: &GlobalArgs, args: PublicKeyArgs) -> Result<(), CliError> {
    let output = match (args.format, args.json) {
        (Some(format), _) => Output::Encoded(format),
        (None, true) => Output::Json,
        (None, false) => Output::Summary,
    };
    let key = global.client()?.public_key(&args.key_id).await?;
    render(&key, output)
}

fn render(key: &PublicKey, output: Output) -> Result<(), CliError> {
    match output {
        Output::Encoded(format) => {
            let bytes = key_formats::encode(key.ciphersuite, &key.public_key, &key.key_id, format)
                .map_err(|e| CliError::Usage(e.to_string()))?;
            write_stdout(&bytes)?;
        }
        Output::Json => {
            let value = serde_json::to_value(key)
                .map_err(|e| CliError::Failed(format!("cannot print JSON: {e}")))?;
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
