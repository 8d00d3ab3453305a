//! `quorate-ceremony import`: trusted-dealer import from the command line.

use std::path::PathBuf;

use quorate_frost::Ciphersuite;

use super::common::{check_transcript_path, load_custodians, load_policy, runtime};
use super::error::CliError;
use crate::ceremony_file::CeremonyFile;
use crate::import::{import_key, read_secret_file, ImportRequest};

#[derive(Debug, clap::Args)]
pub(super) struct ImportArgs {
    /// Ceremony file (TOML): trust_domain, [tls] with the ceremony's certificate
    /// (role `ceremony`), and one [[nodes]] entry (id, endpoint, region,
    /// jurisdiction) per share holder. Relative paths are relative to the file.
    #[arg(long, value_name = "FILE")]
    pub(super) ceremony: PathBuf,
    /// Key id: 1-128 characters of A-Z a-z 0-9 . _ -
    #[arg(long, value_name = "ID")]
    pub(super) key_id: String,
    /// Ciphersuite: ed25519, secp256k1 or secp256k1-tr (BIP340).
    #[arg(long, value_name = "SUITE")]
    pub(super) ciphersuite: Ciphersuite,
    /// Signers needed to sign (t), between 2 and the number of nodes.
    #[arg(long, value_name = "T")]
    pub(super) threshold: u16,
    /// File holding the signing key to import as 64 hex digits, in the ciphersuite's
    /// FROST scalar encoding (Ed25519: little-endian; secp256k1: big-endian).
    /// Without it a fresh random key is dealt.
    #[arg(long, value_name = "FILE")]
    pub(super) secret_file: Option<PathBuf>,
    /// Where to write the JSON transcript; must not exist yet.
    #[arg(long, value_name = "OUT.json")]
    pub(super) transcript: PathBuf,
    /// Policy file (TOML: allowed_clients, home_jurisdictions, min_home_signers,
    /// approver_keys, rate_limit_per_minute, administrator_keys,
    /// administrators_required), fixed with the key and enforced by every node. It
    /// must list administrators or say unsafe_no_administrators = true. See
    /// docs/sovereignty.md and docs/ceremony.md.
    #[arg(long, value_name = "FILE")]
    pub(super) policy: PathBuf,
    /// The key's escrow custodians (TOML, or JSON if the name ends in .json):
    /// `threshold = K` and one `[[custodians]]` table (name, recipient: an age X25519
    /// recipient, age1...) per custodian, 2 to 64 of them. Fixed in the key's
    /// manifest and confirmed by every node: each node's share can then be escrowed
    /// (`escrow split`) to these custodians only, and to no one else, ever. Without
    /// it the key's shares cannot be escrowed.
    #[arg(long, value_name = "FILE")]
    pub(super) custodians: Option<PathBuf>,
}

/// Runs `import`.
pub(super) fn run(args: ImportArgs) -> Result<(), CliError> {
    // Everything the user typed is checked before any node is contacted.
    let file = CeremonyFile::load(&args.ceremony)?;
    check_transcript_path(&args.transcript)?;
    let policy = Some(load_policy(&args.policy, args.threshold)?);
    let escrow = load_custodians(args.custodians.as_deref())?;
    let secret = args
        .secret_file
        .as_deref()
        .map(read_secret_file)
        .transpose()?;
    let request = ImportRequest {
        key_id: args.key_id,
        ciphersuite: args.ciphersuite,
        threshold: args.threshold,
        secret,
        policy,
        escrow,
    };
    let runtime = runtime()?;
    let transcript = runtime.block_on(import_key(&file, request))?;
    if let Err(e) = transcript.write(&args.transcript) {
        // The key is installed; the record must not be lost with the error.
        println!("{}", transcript.to_json());
        return Err(CliError::ImportTranscriptNotSaved(e));
    }
    println!(
        "imported key {} ({}, {}-of-{}), group public key {}",
        transcript.key_id,
        transcript.ciphersuite,
        transcript.threshold,
        transcript.participants.len(),
        transcript.public_key
    );
    println!("transcript: {}", args.transcript.display());
    Ok(())
}
