//! `quorate-ceremony`: key ceremonies and the dev PKI. Parses arguments, runs one
//! command from the library, maps errors to exit codes (64 usage/config, 1 failure).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use quorate_ceremony::import::{self, CeremonyError, CeremonyFile, ImportRequest};
use quorate_ceremony::keygen::{self, DkgRequest, PolicyFile, RefreshRequest, RepairRequest};
use quorate_ceremony::pki::{self, PkiError};
use quorate_proto::identity::Role;
use quorate_proto::runtime::{init_tracing, LogFormat};
use quorate_proto::suite::Ciphersuite;

/// Exit code for usage and configuration errors (BSD `EX_USAGE`).
const EXIT_USAGE: u8 = 64;

/// Key ceremonies for a Quorate threshold-signing network.
///
/// Run by key custodians. Talks to signer nodes over mTLS as role `ceremony`; never
/// prints or logs secret material. Logs go to stderr (filter with RUST_LOG).
#[derive(Debug, Parser)]
#[command(name = "quorate-ceremony", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Development PKI: a CA and SPIFFE role certificates for mTLS.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Trusted-dealer import: split a key into shares and install them on the nodes.
    ///
    /// For migrating an existing single-key signer (--secret-file) or dealing a fresh
    /// key. This process briefly holds the whole key; run it on a trusted machine.
    ///
    /// Before dealing anything, every node in the ceremony file is reached over mTLS
    /// and must report the node id, region and jurisdiction the file lists. Then each
    /// node receives the key's manifest and its own share, and must acknowledge the
    /// manifest's SHA-256. On success a JSON transcript (public facts only: group key,
    /// verifying shares, certificate fingerprints, manifest hash, times) is written.
    Import(ImportArgs),
    /// Distributed key generation: the nodes create a key no one ever holds whole.
    ///
    /// Every node in the ceremony file takes part (n), any t of them can sign. The
    /// nodes sign their contributions with their mTLS keys and seal secret shares to
    /// each other, so this process only relays. Before the key becomes active every
    /// node checks that all nodes confirmed the same round-1 transcript, group key and
    /// manifest; any disagreement aborts the ceremony on every node and names the
    /// party. Writes a JSON transcript.
    Dkg(DkgArgs),
    /// New shares for an existing key (same group public key); old shares stop
    /// working. With --remove-node, that node is dropped from the key and deletes
    /// its share. The ceremony file must list exactly the key's current nodes.
    Refresh(RefreshArgs),
    /// Rebuild a node's lost share (after its store was wiped) from t helper nodes;
    /// every message between nodes is sealed end to end. The node checks the rebuilt
    /// share against the key's manifest before activating it.
    Repair(RepairArgs),
    /// Transcripts.
    #[command(subcommand)]
    Transcript(TranscriptCommand),
}

#[derive(Debug, Subcommand)]
enum TranscriptCommand {
    /// Re-check a transcript against the live nodes (manifest hash, group key,
    /// verifying shares, participants, recorded confirmations). Exits 1 on any
    /// mismatch, listing each.
    Verify {
        /// The transcript (JSON).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Ceremony file naming how to reach the nodes.
        #[arg(long, value_name = "FILE")]
        ceremony: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct DkgArgs {
    /// Ceremony file (TOML), as for `import`.
    #[arg(long, value_name = "FILE")]
    ceremony: PathBuf,
    /// Key id: 1-128 characters of A-Z a-z 0-9 . _ -
    #[arg(long, value_name = "ID")]
    key_id: String,
    /// Ciphersuite: ed25519, secp256k1 or secp256k1-tr (BIP340).
    #[arg(long, value_name = "SUITE")]
    ciphersuite: Ciphersuite,
    /// Signers needed to sign (t), between 2 and the number of nodes.
    #[arg(long, value_name = "T")]
    threshold: u16,
    /// The key's policy (TOML, or JSON if the name ends in .json): allowed_clients,
    /// home_jurisdictions, min_home_signers, approver_keys (hex),
    /// rate_limit_per_minute. Without it the key is unrestricted.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Where to write the JSON transcript; must not exist yet.
    #[arg(long, value_name = "OUT.json")]
    transcript: PathBuf,
}

#[derive(Debug, clap::Args)]
struct RefreshArgs {
    /// Ceremony file (TOML) listing the key's current nodes.
    #[arg(long, value_name = "FILE")]
    ceremony: PathBuf,
    /// Key id.
    #[arg(long, value_name = "ID")]
    key_id: String,
    /// Drop this node from the key.
    #[arg(long, value_name = "ID")]
    remove_node: Option<String>,
    /// Where to write the JSON transcript; must not exist yet.
    #[arg(long, value_name = "OUT.json")]
    transcript: PathBuf,
}

#[derive(Debug, clap::Args)]
struct RepairArgs {
    /// Ceremony file (TOML) listing the node to repair and at least t helpers.
    #[arg(long, value_name = "FILE")]
    ceremony: PathBuf,
    /// Key id.
    #[arg(long, value_name = "ID")]
    key_id: String,
    /// The node whose share is rebuilt.
    #[arg(long, value_name = "ID")]
    node: String,
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
    /// Create a CA for a trust domain: DIR/ca.pem and DIR/ca-key.pem (mode 0600).
    ///
    /// Refuses to overwrite an existing CA. The CA is valid for ten years.
    Init {
        /// Directory for the PKI files (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// SPIFFE trust domain, e.g. quorate.test.
        #[arg(long, value_name = "DOMAIN")]
        trust_domain: String,
    },
    /// Issue a certificate for spiffe://DOMAIN/ROLE/NAME signed by the CA in DIR.
    ///
    /// Writes DIR/ROLE-NAME.pem and DIR/ROLE-NAME-key.pem (mode 0600), replacing an
    /// earlier certificate of the same party. Subject alternative names: the SPIFFE
    /// URI, DNS NAME, DNS localhost, IP 127.0.0.1 and each --dns. Valid for two years,
    /// for both server and client authentication.
    Issue {
        /// Directory holding the CA (from `pki init`).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// SPIFFE trust domain; must match the CA's.
        #[arg(long, value_name = "DOMAIN")]
        trust_domain: String,
        /// The holder's role.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// The holder's name, e.g. node-1. Nodes are reached under this name.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// Extra DNS name or IP address for the certificate (repeatable).
        #[arg(long = "dns", value_name = "HOST")]
        dns: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RoleArg {
    /// A signer node.
    Node,
    /// A coordinator.
    Coordinator,
    /// A service requesting signatures.
    Client,
    /// The ceremony tool.
    Ceremony,
    /// An auditor.
    Auditor,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Node => Role::Node,
            RoleArg::Coordinator => Role::Coordinator,
            RoleArg::Client => Role::Client,
            RoleArg::Ceremony => Role::Ceremony,
            RoleArg::Auditor => Role::Auditor,
        }
    }
}

#[derive(Debug, clap::Args)]
struct ImportArgs {
    /// Ceremony file (TOML): trust_domain, [tls] with the ceremony's certificate
    /// (role `ceremony`), and one [[nodes]] entry (id, endpoint, region,
    /// jurisdiction) per share holder. Relative paths are relative to the file.
    #[arg(long, value_name = "FILE")]
    ceremony: PathBuf,
    /// Key id: 1-128 characters of A-Z a-z 0-9 . _ -
    #[arg(long, value_name = "ID")]
    key_id: String,
    /// Ciphersuite: ed25519, secp256k1 or secp256k1-tr (BIP340).
    #[arg(long, value_name = "SUITE")]
    ciphersuite: Ciphersuite,
    /// Signers needed to sign (t), between 2 and the number of nodes.
    #[arg(long, value_name = "T")]
    threshold: u16,
    /// File holding the signing key to import as 64 hex digits, in the ciphersuite's
    /// FROST scalar encoding (Ed25519: little-endian; secp256k1: big-endian).
    /// Without it a fresh random key is dealt.
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// Where to write the JSON transcript; must not exist yet.
    #[arg(long, value_name = "OUT.json")]
    transcript: PathBuf,
}

fn main() -> ExitCode {
    quorate_proto::install_crypto_provider();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                e.exit();
            }
            let _ = e.print();
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_tracing(LogFormat::Text, "info");
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(exit_code(&err))
        }
    }
}

fn exit_code(err: &anyhow::Error) -> u8 {
    let usage = err.chain().any(|cause| {
        cause
            .downcast_ref::<PkiError>()
            .is_some_and(PkiError::is_usage)
            || cause
                .downcast_ref::<CeremonyError>()
                .is_some_and(CeremonyError::is_usage)
            || cause.downcast_ref::<UsageError>().is_some()
    });
    if usage {
        EXIT_USAGE
    } else {
        1
    }
}

/// A usage mistake found by `main` itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Pki(PkiCommand::Init { dir, trust_domain }) => {
            let ca = pki::create_ca(&dir, &trust_domain)?;
            println!("CA for trust domain {trust_domain}:");
            println!("  certificate: {}", ca.cert.display());
            println!("  private key: {}", ca.key.display());
            Ok(())
        }
        Command::Pki(PkiCommand::Issue {
            dir,
            trust_domain,
            role,
            name,
            dns,
        }) => {
            let role = Role::from(role);
            let issued = pki::issue(&dir, &trust_domain, role, &name, &dns)?;
            println!("certificate for spiffe://{trust_domain}/{role}/{name}:");
            println!("  certificate: {}", issued.cert.display());
            println!("  private key: {}", issued.key.display());
            println!("  CA:          {}", issued.ca.display());
            Ok(())
        }
        Command::Import(args) => import(args),
        Command::Dkg(args) => dkg(args),
        Command::Refresh(args) => refresh(args),
        Command::Repair(args) => repair(args),
        Command::Transcript(TranscriptCommand::Verify { file, ceremony }) => {
            transcript_verify(&file, &ceremony)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("cannot start the async runtime")
}

fn save_transcript(transcript: &import::Transcript, path: &Path) -> anyhow::Result<()> {
    if let Err(e) = transcript.write(path) {
        // The ceremony is done; its record must not be lost with the error.
        println!("{}", transcript.to_json());
        return Err(e)
            .context("the ceremony succeeded, but its transcript (printed above) was not saved");
    }
    Ok(())
}

fn dkg(args: DkgArgs) -> anyhow::Result<()> {
    let file = CeremonyFile::load(&args.ceremony)?;
    check_transcript_path(&args.transcript)?;
    let policy = args.policy.as_deref().map(PolicyFile::load).transpose()?;
    let request = DkgRequest {
        key_id: args.key_id,
        ciphersuite: args.ciphersuite,
        threshold: args.threshold,
        policy,
    };
    let transcript = runtime()?.block_on(keygen::run_dkg(&file, request))?;
    save_transcript(&transcript, &args.transcript)?;
    println!(
        "created key {} by DKG ({}, {}-of-{}), group public key {}",
        transcript.key_id,
        transcript.ciphersuite,
        transcript.threshold,
        transcript.participants.len(),
        transcript.public_key
    );
    println!("transcript: {}", args.transcript.display());
    Ok(())
}

fn refresh(args: RefreshArgs) -> anyhow::Result<()> {
    let file = CeremonyFile::load(&args.ceremony)?;
    check_transcript_path(&args.transcript)?;
    let request = RefreshRequest {
        key_id: args.key_id,
        remove_node: args.remove_node,
    };
    let transcript = runtime()?.block_on(keygen::run_refresh(&file, request))?;
    save_transcript(&transcript, &args.transcript)?;
    println!(
        "refreshed key {} ({}-of-{}: {}), group public key {} unchanged",
        transcript.key_id,
        transcript.threshold,
        transcript.participants.len(),
        transcript
            .participants
            .iter()
            .map(|p| p.node_id.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        transcript.public_key
    );
    println!("transcript: {}", args.transcript.display());
    Ok(())
}

fn repair(args: RepairArgs) -> anyhow::Result<()> {
    let file = CeremonyFile::load(&args.ceremony)?;
    let request = RepairRequest {
        key_id: args.key_id.clone(),
        node: args.node.clone(),
    };
    let outcome = runtime()?.block_on(keygen::run_repair(&file, request))?;
    println!(
        "repaired {}'s share of key {} with helpers {}; verifying share {} matches the manifest {}",
        args.node,
        args.key_id,
        outcome.helpers.join(", "),
        outcome.verifying_share,
        outcome.manifest_hash
    );
    Ok(())
}

fn transcript_verify(path: &Path, ceremony: &Path) -> anyhow::Result<()> {
    let file = CeremonyFile::load(ceremony)?;
    let transcript = import::Transcript::read(path)?;
    let problems = runtime()?.block_on(keygen::verify_transcript(&file, &transcript))?;
    if problems.is_empty() {
        println!(
            "transcript {} matches the live nodes: key {} ({}), manifest {}, {} participants",
            path.display(),
            transcript.key_id,
            transcript.ciphersuite,
            transcript.manifest_hash,
            transcript.participants.len()
        );
        return Ok(());
    }
    for p in &problems {
        println!("MISMATCH {p}");
    }
    anyhow::bail!(
        "{} mismatch(es) between {} and the live nodes",
        problems.len(),
        path.display()
    )
}

fn import(args: ImportArgs) -> anyhow::Result<()> {
    // Everything the user typed is checked before any node is contacted.
    let file = CeremonyFile::load(&args.ceremony)?;
    check_transcript_path(&args.transcript)?;
    let secret = args
        .secret_file
        .as_deref()
        .map(import::read_secret_file)
        .transpose()?;
    let request = ImportRequest {
        key_id: args.key_id,
        ciphersuite: args.ciphersuite,
        threshold: args.threshold,
        secret,
        policy: None,
    };
    let transcript = runtime()?.block_on(import::import_key(&file, request))?;
    if let Err(e) = transcript.write(&args.transcript) {
        // The key is installed; the record must not be lost with the error.
        println!("{}", transcript.to_json());
        return Err(e)
            .context("the key was imported, but its transcript (printed above) was not saved");
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

fn check_transcript_path(path: &Path) -> Result<(), UsageError> {
    if path.exists() {
        return Err(UsageError(format!(
            "transcript {} already exists; choose a new file",
            path.display()
        )));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        if !parent.is_dir() {
            return Err(UsageError(format!(
                "transcript directory {} does not exist",
                parent.display()
            )));
        }
    }
    Ok(())
}
