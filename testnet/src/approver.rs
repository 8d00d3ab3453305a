//! A testnet's compliance approver: one Ed25519 approver key per network, listed in
//! the policy of every key that has one, whose signed, expiring tokens permit an
//! out-of-policy quorum (docs/sovereignty.md, the `eu-failover` drill).
//!
//! Both testnets keep it in `DIR/approver/approver-key.hex` (the format
//! `quorate-ceremony approver keygen` writes, which `quorate-ceremony approve`
//! reads), so the failover path can be tried from the host with the standard tools.
//! The secret key is read here only to sign a token; it never reaches a log, and no
//! node or coordinator is given it.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use quorate_keys::approval::{self, Approval, ApproverKey};

/// The approver's directory inside a testnet directory.
pub const APPROVER_DIR: &str = "approver";
/// The secret key file inside [`APPROVER_DIR`].
pub const APPROVER_KEY_FILE: &str = "approver-key.hex";

/// `DIR/approver/approver-key.hex`.
pub fn key_path(testnet_dir: &Path) -> PathBuf {
    testnet_dir.join(APPROVER_DIR).join(APPROVER_KEY_FILE)
}

/// Creates a fresh approver key at [`key_path`] with file mode `mode`, replacing
/// none: an existing key is an error (the keys whose policies list it would lose
/// their approver).
pub fn create(testnet_dir: &Path, mode: u32) -> anyhow::Result<PathBuf> {
    let path = key_path(testnet_dir);
    let dir = testnet_dir.join(APPROVER_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_new_key(&path, mode)?;
    Ok(path)
}

/// Writes a fresh Ed25519 key (an approver's or an administrator's: the same kind
/// of key) to `path`, which must not exist, as 64 hex digits with file mode `mode`.
pub(crate) fn write_new_key(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(ApproverKey::generate().to_hex().as_bytes())?;
    // create_new applies the umask to `mode`; say exactly what was asked.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    Ok(())
}

/// Reads the approver key at `path`.
pub fn load(path: &Path) -> anyhow::Result<ApproverKey> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the approver key {}", path.display()))?,
    );
    ApproverKey::from_hex(&text).map_err(|e| anyhow!("approver key {}: {e}", path.display()))
}

/// The approver's public key (what key policies list).
pub fn public_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    Ok(load(path)?.public_key())
}

/// A token from the approver at `path` permitting an out-of-policy quorum for
/// `key_id`, valid from now for `valid_secs`, as `quorate-ceremony approve` makes.
pub fn approve(
    path: &Path,
    key_id: &str,
    valid_secs: u64,
    reason: &str,
) -> anyhow::Result<Vec<u8>> {
    let key = load(path)?;
    let now = approval::unix_now();
    Ok(key.sign(&Approval {
        token_id: format!("testnet-{key_id}-{now}"),
        key_id: key_id.into(),
        scope: approval::SCOPE_OUT_OF_POLICY_QUORUM.into(),
        not_before: now,
        not_after: now + valid_secs,
        reason: reason.into(),
        client: None,
        message_sha256: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_approver_signs_tokens_its_public_key_verifies() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = create(dir.path(), 0o600)?;
        assert_eq!(path, dir.path().join("approver/approver-key.hex"));
        let token = approve(&path, "eu-payments", 60, "test")?;
        let decoded = approval::ApprovalToken::decode(&token)?;
        assert_eq!(decoded.approval.key_id, "eu-payments");
        let public = public_key(&path)?;
        decoded.verify("eu-payments", &[public], 1, approval::unix_now())?;
        // A second create would orphan the first key's policies.
        assert!(create(dir.path(), 0o600).is_err());
        Ok(())
    }
}
