//! `quorate-testnet sign`: one signature through a running testnet's coordinator
//! (read from its `testnet.json`), checked by an independent verifier and printed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use quorate_transport::tls::TlsPaths;

use crate::client::SignerClient;
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
    let (endpoint, server_name) = match coordinator {
        None => (testnet.coordinator.clone(), testnet.server_name.clone()),
        Some(i) => {
            let c = testnet.coordinators.get(i).with_context(|| {
                format!(
                    "testnet.json lists {} coordinators",
                    testnet.coordinators.len()
                )
            })?;
            (c.endpoint.clone(), c.server_name.clone())
        }
    };
    let client = SignerClient::connect(
        &endpoint,
        &server_name,
        &TlsPaths {
            ca: testnet.ca,
            cert: testnet.client_cert,
            key: testnet.client_key,
        },
    )?;
    let public = client.public_key(&key_id).await?;
    let response = client
        .sign_with(
            &key_id,
            &message,
            request_id.as_deref(),
            approval_token,
            Duration::from_millis(timeout_ms),
        )
        .await?;
    let suite = quorate_wire::ciphersuite_from_pb(response.ciphersuite)?;
    crate::verify::verify(suite, &public.public_key, &message, &response.signature)
        .map_err(|e| anyhow::anyhow!("signature does not verify: {e}"))?;
    println!("key_id:     {}", response.key_id);
    println!("ciphersuite: {suite}");
    println!("public_key: {}", hex::encode(&public.public_key));
    println!("signature:  {}", hex::encode(&response.signature));
    println!("signers:    {}", response.signers.join(", "));
    println!("verified:   yes (independent verifier)");
    Ok(())
}
