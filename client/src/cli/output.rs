//! Files a command writes (certificates, signatures): whole or not at all.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;

use rand_core::{OsRng, RngCore};

/// Writes `contents` to a temporary file beside `path` and moves it into place, so
/// `path` is either absent or complete. Without `force` the move is a hard link,
/// which fails if `path` exists: nothing is replaced even if it appeared meanwhile.
pub fn write_atomically(path: &Path, contents: &[u8], force: bool) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = parent(path).join(format!(
        ".{}.{}-{:016x}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        OsRng.next_u64()
    ));
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        if force {
            fs::rename(&tmp, path)
        } else {
            fs::hard_link(&tmp, path)
        }
    })();
    // After a rename the temporary name is gone; after a link or a failure it is
    // still there.
    let _ = fs::remove_file(&tmp);
    result
}

/// Writes `bytes` to standard output and flushes it: a closed pipe or a full disk
/// is a failure (exit 1) with the reason, not a panic.
pub fn write_stdout(bytes: &[u8]) -> Result<(), super::CliError> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| super::CliError::Failed(format!("cannot write to standard output: {e}")))
}

/// Whether `a` and `b` name the same existing file (through links or `..` too).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The folder `path` is in (`.` for a bare file name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomically_refuses_an_existing_file_unless_forced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cert.pem");
        write_atomically(&path, b"one", false).expect("first write");
        let err = write_atomically(&path, b"two", false).expect_err("exists");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).expect("read"), b"one");
        write_atomically(&path, b"three", true).expect("forced");
        assert_eq!(fs::read(&path).expect("read"), b"three");
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("cert.pem")]);
    }
}
