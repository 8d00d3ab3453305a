//! Where a local network's programs are: `quorate-node` and `quorate-coordinator`
//! next to the running executable, unless `--bin-dir` says otherwise. Used by
//! `LocalNetwork::start_with` and the `up`, `bench` and `drill` commands.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};

/// The directory holding `quorate-node` and `quorate-coordinator`: the directory of
/// the running executable (they are built side by side).
pub fn default_bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("executable has no directory"))?;
    // Test executables live one level down, in target/<profile>/deps.
    if dir.ends_with("deps") {
        if let Some(parent) = dir.parent() {
            return Ok(parent.to_path_buf());
        }
    }
    Ok(dir.to_path_buf())
}

pub(super) fn binary(bin_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not found; build every binary first (`cargo build --workspace --bins`, with --release if this is a release build) or pass --bin-dir",
            path.display()
        );
    }
    Ok(path)
}
