//! Reading a custodian's escrow part (decrypted JSON, or age-encrypted with the
//! custodian's identities) and verifying it alone against its Feldman commitments
//! (`escrow verify`). Recover reads its parts with the same functions.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use quorate_escrow::{EscrowFileError, EscrowPart};
use zeroize::Zeroizing;

use super::error::EscrowError;

/// Largest part file read (a part is about 1 KiB).
const MAX_PART_FILE_BYTES: u64 = 64 * 1024;
/// How an age file in the binary format begins.
const AGE_MAGIC: &[u8] = b"age-encryption.org/";

/// age identities (from identity files such as `age-keygen` writes), redacted in
/// `Debug`.
pub struct Identities(Vec<Box<dyn age::Identity>>);

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identities({} <redacted>)", self.0.len())
    }
}

impl Identities {
    /// Loads identity files (`AGE-SECRET-KEY-1…` lines; `#` comments allowed).
    pub fn load(paths: &[PathBuf]) -> Result<Self, EscrowError> {
        let mut all = Vec::new();
        for path in paths {
            let err = |message: String| EscrowError::Identity {
                path: path.clone(),
                message,
            };
            let file = age::IdentityFile::from_file(path.display().to_string())
                .map_err(|e| err(e.to_string()))?;
            let ids = file.into_identities().map_err(|e| err(e.to_string()))?;
            if ids.is_empty() {
                return Err(err("holds no identity".into()));
            }
            all.extend(ids);
        }
        Ok(Self(all))
    }

    /// No identities.
    pub fn none() -> Self {
        Self(Vec::new())
    }
}

/// Reads a part: a decrypted JSON file, or an age file decrypted with `identities`.
/// Checks the format only; call [`EscrowPart::verify`] for the Feldman check.
pub fn read_part(path: &Path, identities: &Identities) -> Result<EscrowPart, EscrowError> {
    let io = |source| EscrowError::Io {
        what: "part file",
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_PART_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_PART_FILE_BYTES {
        return Err(EscrowError::Usage(format!(
            "{} is larger than {MAX_PART_FILE_BYTES} bytes; not an escrow part",
            path.display()
        )));
    }
    let plaintext = if bytes.starts_with(AGE_MAGIC) {
        if identities.0.is_empty() {
            return Err(EscrowError::Usage(format!(
                "{} is age-encrypted; give the custodian's --identity file",
                path.display()
            )));
        }
        decrypt(path, &bytes, identities)?
    } else {
        bytes
    };
    let text = std::str::from_utf8(&plaintext).map_err(|_| EscrowError::Part {
        path: path.to_path_buf(),
        source: EscrowFileError::Decode("not UTF-8 text".into()),
    })?;
    EscrowPart::from_json(text).map_err(|source| EscrowError::Part {
        path: path.to_path_buf(),
        source,
    })
}

fn decrypt(
    path: &Path,
    ciphertext: &[u8],
    identities: &Identities,
) -> Result<Zeroizing<Vec<u8>>, EscrowError> {
    let err = |message: String| EscrowError::Decrypt {
        path: path.to_path_buf(),
        message,
    };
    let decryptor = age::Decryptor::new(ciphertext).map_err(|e| err(e.to_string()))?;
    let mut reader = decryptor
        .decrypt(
            identities
                .0
                .iter()
                .map(|i| i.as_ref() as &dyn age::Identity),
        )
        .map_err(|e| err(e.to_string()))?;
    let mut plaintext = Zeroizing::new(Vec::new());
    reader
        .read_to_end(&mut plaintext)
        .map_err(|e| err(e.to_string()))?;
    Ok(plaintext)
}

/// Reads and fully verifies one part (what a single custodian can check alone).
pub fn verify_part(path: &Path, identities: &Identities) -> Result<EscrowPart, EscrowError> {
    let part = read_part(path, identities)?;
    part.verify().map_err(|source| EscrowError::Part {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_redacted_in_debug() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id.txt");
        let id = age::x25519::Identity::generate();
        use age::secrecy::ExposeSecret;
        std::fs::write(
            &path,
            format!("# test\n{}\n", id.to_string().expose_secret()),
        )
        .unwrap();
        let ids = Identities::load(&[path]).unwrap();
        assert_eq!(format!("{ids:?}"), "Identities(1 <redacted>)");
    }

    #[test]
    fn encrypted_part_without_identity_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.age");
        let recipient = age::x25519::Identity::generate().to_public();
        std::fs::write(&path, age::encrypt(&recipient, b"{}").unwrap()).unwrap();
        let err = read_part(&path, &Identities::none()).unwrap_err();
        assert!(err.is_usage(), "{err}");
        assert!(err.to_string().contains("--identity"), "{err}");
    }
}
