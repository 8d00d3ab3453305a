//! A testnet's escrow custodians: four age identities per network, fixed in the
//! manifest of every key the network creates, any three of which rebuild a node's
//! escrowed share (docs/ceremony.md, "Escrow").
//!
//! They live in `DIR/custodians/`: `custodians.toml` (the file `quorate-ceremony dkg
//! --custodians` reads: threshold, names and recipients) and one identity file per
//! custodian, `NAME-key.txt`, as `age-keygen` writes it, so a part can be decrypted
//! with the standard `age` tool. Nodes and the coordinator are never given an
//! identity; in production each custodian keeps theirs.

use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;
use anyhow::{anyhow, Context};
use quorate_ceremony::custodians_file::{CustodianEntry, CustodiansFile};
use quorate_wire::pb;

/// The custodians' directory inside a testnet directory.
pub const CUSTODIANS_DIR: &str = "custodians";
/// The custodians file inside [`CUSTODIANS_DIR`].
pub const CUSTODIANS_FILE: &str = "custodians.toml";
/// The custodians' names, in manifest order.
pub const NAMES: [&str; 4] = ["bank-a", "law-firm-b", "security-office", "notary-d"];
/// Parts that rebuild a node's share: 3 of the 4 custodians.
pub const THRESHOLD: u16 = 3;

/// One custodian of a testnet.
#[derive(Clone, Debug)]
pub struct TestnetCustodian {
    /// Name.
    pub name: String,
    /// age X25519 recipient, `age1…`.
    pub recipient: String,
    /// Its age identity file, `DIR/custodians/NAME-key.txt`.
    pub identity_file: PathBuf,
}

/// `DIR/custodians/custodians.toml`.
pub fn file_path(testnet_dir: &Path) -> PathBuf {
    testnet_dir.join(CUSTODIANS_DIR).join(CUSTODIANS_FILE)
}

/// Creates the custodians' identities (file mode `mode`) and their custodians file
/// under `testnet_dir`, replacing none.
pub fn create(testnet_dir: &Path, mode: u32) -> anyhow::Result<Vec<TestnetCustodian>> {
    let dir = testnet_dir.join(CUSTODIANS_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut custodians = Vec::with_capacity(NAMES.len());
    for name in NAMES {
        let identity = age::x25519::Identity::generate();
        let recipient = identity.to_public().to_string();
        let identity_file = dir.join(format!("{name}-key.txt"));
        let text = zeroize::Zeroizing::new(format!(
            "# public key: {recipient}\n{}\n",
            identity.to_string().expose_secret()
        ));
        write_new(&identity_file, text.as_bytes(), mode)?;
        custodians.push(TestnetCustodian {
            name: name.to_string(),
            recipient,
            identity_file,
        });
    }
    let file = CustodiansFile {
        threshold: u32::from(THRESHOLD),
        custodians: custodians
            .iter()
            .map(|c| CustodianEntry {
                name: c.name.clone(),
                recipient: c.recipient.clone(),
            })
            .collect(),
    };
    write_new(
        &file_path(testnet_dir),
        toml::to_string(&file)?.as_bytes(),
        0o644,
    )?;
    Ok(custodians)
}

/// The escrow a key of this network is created with: every custodian, [`THRESHOLD`]
/// of them to recover.
pub fn escrow(custodians: &[TestnetCustodian]) -> pb::KeyEscrow {
    pb::KeyEscrow {
        threshold: u32::from(THRESHOLD),
        custodians: custodians
            .iter()
            .map(|c| pb::EscrowCustodian {
                name: c.name.clone(),
                age_recipient: c.recipient.clone(),
            })
            .collect(),
    }
}

/// Reads the identity of a custodian from its identity file.
pub fn identity(custodian: &TestnetCustodian) -> anyhow::Result<age::x25519::Identity> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(&custodian.identity_file)
            .with_context(|| format!("reading {}", custodian.identity_file.display()))?,
    );
    text.lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .ok_or_else(|| anyhow!("{}: no age identity", custodian.identity_file.display()))?
        .parse::<age::x25519::Identity>()
        .map_err(|e| anyhow!("{}: {e}", custodian.identity_file.display()))
}

/// What `custodian` does with their `.age` part of an escrow split: decrypts it
/// with their identity and checks it alone against its Feldman commitments.
pub fn open_part(
    custodian: &TestnetCustodian,
    age_file: &Path,
) -> anyhow::Result<quorate_escrow::EscrowPart> {
    let ciphertext =
        std::fs::read(age_file).with_context(|| format!("reading {}", age_file.display()))?;
    let plaintext = zeroize::Zeroizing::new(
        age::decrypt(&identity(custodian)?, &ciphertext)
            .map_err(|e| anyhow!("{}: {e}", age_file.display()))?,
    );
    let json = std::str::from_utf8(&plaintext)
        .map_err(|_| anyhow!("{}: the part is not UTF-8", age_file.display()))?;
    let part = quorate_escrow::EscrowPart::from_json(json)
        .map_err(|e| anyhow!("{}: {e}", age_file.display()))?;
    part.verify()
        .map_err(|e| anyhow!("{}: {e}", age_file.display()))?;
    Ok(part)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_custodians_decrypt_what_is_encrypted_to_their_recipients() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let custodians = create(dir.path(), 0o600)?;
        assert_eq!(custodians.len(), NAMES.len());
        let loaded = CustodiansFile::load(&file_path(dir.path()))?;
        assert_eq!(loaded, escrow(&custodians));
        for c in &custodians {
            let recipient: age::x25519::Recipient =
                c.recipient.parse().map_err(|e: &str| anyhow!(e))?;
            let sealed = age::encrypt(&recipient, b"part")?;
            assert_eq!(age::decrypt(&identity(c)?, &sealed)?, b"part");
        }
        assert!(create(dir.path(), 0o600).is_err(), "nothing is replaced");
        Ok(())
    }
}
