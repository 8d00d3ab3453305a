//! `quorate keys`.

use super::{print_json, CliError, GlobalArgs};

/// Flags of `keys`.
#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    /// Print one line of JSON: {"keys": [{key_id, ciphersuite, threshold, participants}]}.
    #[arg(long)]
    pub json: bool,
}

/// Runs `keys`.
pub async fn run(global: &GlobalArgs, args: KeysArgs) -> Result<(), CliError> {
    let keys = global.client()?.list_keys().await?;
    if args.json {
        print_json(&serde_json::json!({ "keys": keys }));
    } else {
        println!("{:<24} {:<13} threshold", "key_id", "ciphersuite");
        for k in &keys {
            println!(
                "{:<24} {:<13} {}-of-{}",
                k.key_id,
                k.ciphersuite.name(),
                k.threshold,
                k.participants
            );
        }
    }
    Ok(())
}
