//! A testnet's key administrators: three Ed25519 administrator keys per network,
//! listed in the policy of every key it creates, any two of which authorize a
//! refresh, repair, node removal or escrow split of the key (docs/ceremony.md,
//! "Administrators").
//!
//! Both testnets keep them in `DIR/administrators/admin-N.hex` (the format
//! `quorate-ceremony admin keygen` writes and `quorate-ceremony authorize` reads),
//! so the governed flow can be run from the host with the standard tools. In
//! production each administrator keeps their key on their own machine; here one
//! directory holds all three, which is what makes it a development network. No
//! node or coordinator is given them.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use quorate_ceremony::plan::Plan;
use quorate_keys::authorization::AdministratorKey;

/// The administrators' directory inside a testnet directory.
pub const ADMINISTRATORS_DIR: &str = "administrators";
/// How many administrators a testnet key has.
pub const COUNT: usize = 3;
/// How many of them must authorize an operation.
pub const REQUIRED: u32 = 2;
/// How long the authorizations [`authorize`] makes are valid.
const VALID_SECS: u64 = 3600;

/// `DIR/administrators/admin-N.hex`, `n` from 1.
pub fn key_path(testnet_dir: &Path, n: usize) -> PathBuf {
    testnet_dir
        .join(ADMINISTRATORS_DIR)
        .join(format!("admin-{n}.hex"))
}

/// Creates the administrators' keys with file mode `mode` unless they exist
/// (keys whose policies list them would lose their administrators), and returns
/// their public keys.
pub fn create_or_keep(testnet_dir: &Path, mode: u32) -> anyhow::Result<Vec<[u8; 32]>> {
    let dir = testnet_dir.join(ADMINISTRATORS_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for n in 1..=COUNT {
        let path = key_path(testnet_dir, n);
        if !path.exists() {
            crate::approver::write_new_key(&path, mode)?;
        }
    }
    public_keys(testnet_dir)
}

/// Reads administrator `n`'s key.
pub fn load(testnet_dir: &Path, n: usize) -> anyhow::Result<AdministratorKey> {
    let path = key_path(testnet_dir, n);
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(&path)
            .with_context(|| format!("reading the administrator key {}", path.display()))?,
    );
    AdministratorKey::from_hex(&text)
        .map_err(|e| anyhow!("administrator key {}: {e}", path.display()))
}

/// The administrators' public keys (what key policies list), in order.
pub fn public_keys(testnet_dir: &Path) -> anyhow::Result<Vec<[u8; 32]>> {
    (1..=COUNT)
        .map(|n| Ok(load(testnet_dir, n)?.public_key()))
        .collect()
}

/// Authorizations of `plan` by [`REQUIRED`] of the administrators (the first
/// ones), as `quorate-ceremony authorize` writes them.
pub fn authorize(testnet_dir: &Path, plan: &Plan) -> anyhow::Result<Vec<Vec<u8>>> {
    (1..=REQUIRED as usize)
        .map(|n| Ok(plan.authorize(&load(testnet_dir, n)?, VALID_SECS)))
        .collect()
}

/// Repairs `node`'s share of `key_id` as an operator would: plans the repair,
/// has [`REQUIRED`] administrators authorize it, and runs it.
pub async fn repair(
    testnet_dir: &Path,
    ceremony: &quorate_ceremony::import::CeremonyFile,
    key_id: &str,
    node: &str,
) -> anyhow::Result<quorate_ceremony::keygen::RepairOutcome> {
    use quorate_ceremony::keygen::{plan_repair, run_repair, RepairRequest};
    let plan = plan_repair(
        ceremony,
        RepairRequest {
            key_id: key_id.into(),
            node: node.into(),
        },
    )
    .await?;
    let authorizations = authorize(testnet_dir, &plan)?;
    Ok(run_repair(ceremony, &plan, &authorizations).await?)
}
