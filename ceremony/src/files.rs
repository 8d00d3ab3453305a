//! Files a ceremony writes (transcripts, plans, escrow parts): records, so each is
//! created new, never replacing a file of the same name, and synced to disk before
//! the command says it is written.

use std::io::Write;
use std::path::Path;

/// Creates `path` (which must not exist) holding `bytes`, synced.
pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
