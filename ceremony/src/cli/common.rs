//! What the ceremony commands share: the async runtime, checking a transcript path
//! before any node is contacted, saving a transcript, and loading a policy file and
//! a custodians file.
//! Used by the import and key ceremony commands.

use std::path::Path;

use super::error::CliError;
use crate::custodians_file::CustodiansFile;
use crate::policy_file::PolicyFile;
use crate::transcript::Transcript;

/// A runtime for the command's async work.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Runtime::new().map_err(CliError::Runtime)
}

/// Writes a finished ceremony's transcript; if that fails, prints it so the record
/// is not lost.
pub(super) fn save_transcript(transcript: &Transcript, path: &Path) -> Result<(), CliError> {
    if let Err(e) = transcript.write(path) {
        // The ceremony is done; its record must not be lost with the error.
        println!("{}", transcript.to_json());
        return Err(CliError::TranscriptNotSaved(e));
    }
    Ok(())
}

/// Reads a new key's policy file (TOML, or JSON if it ends in .json) and checks it
/// against the key's threshold, and that it lists administrators or opts out of
/// them, before any node is contacted.
pub(super) fn load_policy(
    path: &Path,
    threshold: u16,
) -> Result<quorate_wire::pb::KeyPolicy, CliError> {
    let policy = PolicyFile::load(path)?;
    quorate_keys::policy::Policy::from_pb(Some(&policy), threshold)
        .and_then(|p| p.check_new_key())
        .map_err(|e| CliError::Usage(format!("policy file {}: {e}", path.display())))?;
    Ok(policy)
}

/// Reads a custodians file (TOML, or JSON if it ends in .json), checked as every
/// node will check it, before any node is contacted.
pub(super) fn load_custodians(
    path: Option<&Path>,
) -> Result<Option<quorate_wire::pb::KeyEscrow>, CliError> {
    path.map(CustodiansFile::load)
        .transpose()
        .map_err(CliError::from)
}

/// Refuses a transcript path that exists or whose directory does not.
pub(super) fn check_transcript_path(path: &Path) -> Result<(), CliError> {
    if path.exists() {
        return Err(CliError::Usage(format!(
            "transcript {} already exists; choose a new file",
            path.display()
        )));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        if !parent.is_dir() {
            return Err(CliError::Usage(format!(
                "transcript directory {} does not exist",
                parent.display()
            )));
        }
    }
    Ok(())
}
