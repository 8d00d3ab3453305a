//! SSH signatures (OpenSSH PROTOCOL.sshsig), the format of `ssh-keygen -Y sign`,
//! which `ssh-keygen -Y verify` and git (`gpg.format=ssh`) check.
//!
//! The key signs [`signed_data`]: the magic preamble, the namespace, and the
//! SHA-512 digest of the message; [`armor`] wraps that signature with the public key
//! in the `-----BEGIN SSH SIGNATURE-----` form. Only Ed25519 keys have an SSH
//! signature type (RFC 8709).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use quorate_frost::Ciphersuite;
use sha2::{Digest, Sha512};

use crate::key_formats::{ssh_public_key_blob, ssh_string, FormatError};

const MAGIC: &[u8; 6] = b"SSHSIG";
const VERSION: u32 = 1;
/// The message digest; OpenSSH signs with sha512 by default.
const HASH_ALGORITHM: &str = "sha512";

/// Why an SSH signature cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SshSigError {
    /// The namespace is empty or not printable ASCII.
    #[error("the namespace must be non-empty printable ASCII without spaces (e.g. `git`, `file`), got {0:?}")]
    Namespace(String),
    /// The key has no SSH form.
    #[error(transparent)]
    Key(#[from] FormatError),
    /// The signature is not a 64-byte Ed25519 signature.
    #[error("an Ed25519 signature is 64 bytes, this one {0}")]
    Signature(usize),
}

/// Checks a namespace the way `ssh-keygen` accepts them.
pub fn check_namespace(namespace: &str) -> Result<(), SshSigError> {
    if namespace.is_empty() || !namespace.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SshSigError::Namespace(namespace.to_string()));
    }
    Ok(())
}

/// The bytes the key signs for `message` under `namespace`.
pub fn signed_data(namespace: &str, message: &[u8]) -> Result<Vec<u8>, SshSigError> {
    check_namespace(namespace)?;
    let mut out = MAGIC.to_vec();
    ssh_string(&mut out, namespace.as_bytes());
    ssh_string(&mut out, b""); // reserved
    ssh_string(&mut out, HASH_ALGORITHM.as_bytes());
    ssh_string(&mut out, &Sha512::digest(message));
    Ok(out)
}

/// The armored SSH signature file for `signature` (over [`signed_data`]) by the
/// Ed25519 key `public_key`.
pub fn armor(
    suite: Ciphersuite,
    public_key: &[u8],
    namespace: &str,
    signature: &[u8],
) -> Result<String, SshSigError> {
    check_namespace(namespace)?;
    let key_blob = ssh_public_key_blob(suite, public_key)?;
    if signature.len() != 64 {
        return Err(SshSigError::Signature(signature.len()));
    }
    let mut signature_blob = Vec::with_capacity(83);
    ssh_string(&mut signature_blob, b"ssh-ed25519");
    ssh_string(&mut signature_blob, signature);

    let mut blob = MAGIC.to_vec();
    blob.extend_from_slice(&VERSION.to_be_bytes());
    ssh_string(&mut blob, &key_blob);
    ssh_string(&mut blob, namespace.as_bytes());
    ssh_string(&mut blob, b""); // reserved
    ssh_string(&mut blob, HASH_ALGORITHM.as_bytes());
    ssh_string(&mut blob, &signature_blob);

    // ssh-keygen writes 70 characters a line.
    let body = STANDARD.encode(blob);
    let mut out = String::from("-----BEGIN SSH SIGNATURE-----\n");
    for line in body.as_bytes().chunks(70) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END SSH SIGNATURE-----\n");
    Ok(out)
}

/// An Ed25519 public key read from an OpenSSH public key line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpensshKey {
    /// The 32-byte key.
    pub key: [u8; 32],
    /// The line's comment (`quorate public-key --format openssh` writes the key id
    /// there), if any.
    pub comment: Option<String>,
}

/// The Ed25519 key of an OpenSSH public key line (`ssh-ed25519 AAAA... comment`),
/// as `ssh-keygen -f KEY.pub` and git's `user.signingkey` name it. What the file
/// holds is never quoted back unless it is a known SSH key type: a wrong file
/// given here may be a secret.
pub fn parse_openssh_public_key(line: &str) -> Result<OpensshKey, String> {
    let line = line
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or("the public key file is empty")?;
    let line = line.strip_prefix("key::").unwrap_or(line);
    let mut fields = line.split_whitespace();
    let kind = fields.next().unwrap_or_default();
    if kind != "ssh-ed25519" {
        let known = ["ssh-rsa", "ssh-dss", "sk-ssh-ed25519@openssh.com"].contains(&kind)
            || kind.starts_with("ecdsa-sha2-")
            || kind.starts_with("sk-ecdsa-sha2-");
        return Err(if known {
            format!("the key is {kind}; only ssh-ed25519 keys are threshold keys here")
        } else {
            "not an OpenSSH public key line (`ssh-ed25519 AAAA... comment`)".into()
        });
    }
    let blob = STANDARD
        .decode(
            fields
                .next()
                .ok_or("the key line has no key after ssh-ed25519")?,
        )
        .map_err(|e| format!("the key is not base64: {e}"))?;
    let mut expected_prefix = Vec::new();
    ssh_string(&mut expected_prefix, b"ssh-ed25519");
    match blob.strip_prefix(expected_prefix.as_slice()) {
        Some([0, 0, 0, 32, key @ ..]) if key.len() == 32 => {
            let mut out = [0u8; 32];
            out.copy_from_slice(key);
            let comment = fields.collect::<Vec<_>>().join(" ");
            Ok(OpensshKey {
                key: out,
                comment: (!comment.is_empty()).then_some(comment),
            })
        }
        _ => Err("the key blob is not an ssh-ed25519 key".into()),
    }
}
