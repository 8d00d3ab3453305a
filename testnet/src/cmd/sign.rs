//! `quorate-testnet sign`: one signature through a running testnet's coordinator
//! (read from its `testnet.json`) through the client library, which checks it with
//! an independent verifier, and printed. The `quorate` CLI does the same from
//! `client.toml`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use quorate_client::{Client, ClientConfig, CoordinatorEntry, SignOptions};

use crate::spec::TestnetJson;

/// Flags of `sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// Directory of a running testnet (holding testnet.json).
    #[arg(long)]
    pub dir: PathBuf,
    /// Key to sign with (see testnet.json).
    #[arg(long)]
    pub key_id: String,
    /// Message text (UTF-8).
    #[arg(long, conflicts_with = "message_hex")]
    pub message: Option<String>,
    /// Message as hex.
    #[arg(long)]
    pub message_hex: Option<String>,
    /// Idempotency key.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Approval token file (from `quorate-ceremony approve`) permitting an
    /// out-of-policy quorum.
    #[arg(long, value_name = "FILE")]
    pub approval_token: Option<PathBuf>,
    /// Deadline in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Use the coordinator at this position in testnet.json's `coordinators`
    /// (0 is the first) instead of `coordinator`.
    #[arg(long)]
    pub coordinator: Option<usize>,
}

/// Runs `sign`.
pub async fn run(args: SignArgs) -> anyhow::Result<()> {
    let SignArgs {
        dir,
        key_id,
        message,
        message_hex,
        request_id,
        approval_token,
        timeout_ms,
        coordinator,
    } = args;
    let approval_token = approval_token
        .map(|p| std::fs::read(&p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let message = match (message, message_hex) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(hex_text)) => hex::decode(hex_text.trim()).context("--message-hex")?,
        _ => anyhow::bail!("give --message or --message-hex"),
    };
    let testnet = TestnetJson::read(&dir)?;
    let all: Vec<CoordinatorEntry> = if testnet.coordinators.is_empty() {
        vec![CoordinatorEntry::Named {
            endpoint: testnet.coordinator.clone(),
            server_name: Some(testnet.server_name.clone()),
        }]
    } else {
        testnet
            .coordinators
            .iter()
            .map(|c| CoordinatorEntry::Named {
                endpoint: c.endpoint.clone(),
                server_name: Some(c.server_name.clone()),
            })
            .collect()
    };
    let coordinators = match coordinator {
        None => all,
        Some(i) => vec![all
            .get(i)
            .cloned()
            .with_context(|| format!("testnet.json lists {} coordinators", all.len()))?],
    };
    let client = Client::new(&ClientConfig::new(
        coordinators,
        testnet.ca,
        testnet.client_cert,
        testnet.client_key,
    ))?;
    // The library verifies the signature under the key's public key before it
    // returns it.
    let signed = client
        .sign(
            &key_id,
            &message,
            SignOptions {
                request_id,
                approval_token,
                deadline: Some(Duration::from_millis(timeout_ms)),
            },
        )
        .await?;
    println!("key_id:     {}", signed.key_id);
    println!("ciphersuite: {}", signed.ciphersuite);
    println!("public_key: {}", hex::encode(&signed.public_key));
    println!("signature:  {}", hex::encode(&signed.signature));
    println!("signers:    {}", signed.signers.join(", "));
    println!("verified:   yes (independent verifier)");
    Ok(())
}
