//! `quorate-ceremony`: key ceremonies and the dev PKI. Parses arguments, runs one
//! command from the library, maps errors to exit codes (64 usage/config, 1 failure).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use quorate_ceremony::escrow::{self, Custodian, EscrowError, Identities};
use quorate_ceremony::import::{self, CeremonyError, CeremonyFile, ImportRequest};
use quorate_ceremony::keygen::{self, DkgRequest, PolicyFile, RefreshRequest, RepairRequest};
use quorate_ceremony::pki::{self, PkiError};
use quorate_proto::approval::{self, ApproverKey};
use quorate_proto::identity::Role;
use quorate_proto::runtime::{init_tracing, LogFormat};
use quorate_proto::suite::Ciphersuite;
use quorate_proto::tls::TlsPaths;

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
    /// Approver keys for out-of-policy (failover) quorums.
    #[command(subcommand)]
    Approver(ApproverCommand),
    /// Sign an approval token that lets one key be signed by an out-of-policy quorum
    /// (for example outside its home jurisdiction during an outage) for a limited
    /// time. The key's policy must list the approver's public key; the coordinator
    /// and every node of the quorum check the token, and each node records its id in
    /// its audit log.
    Approve(ApproveArgs),
    /// Audit logs of nodes.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Custodian escrow of one node's signing share (split, verify, recover).
    #[command(subcommand)]
    Escrow(EscrowCommand),
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
enum ApproverCommand {
    /// Create an approver key: writes the secret seed (64 hex digits, mode 0600) and
    /// prints the public key to list in key policies.
    Keygen {
        /// Where to write the secret key; must not exist yet.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct ApproveArgs {
    /// The approver's secret key file (from `approver keygen`).
    #[arg(long, value_name = "FILE")]
    approver_key: PathBuf,
    /// The key the approval applies to.
    #[arg(long, value_name = "ID")]
    key_id: String,
    /// How long the token is valid from now, e.g. 30m, 2h, 1d (at most 7d).
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    valid_for: String,
    /// Why (recorded in the token; shown in audits).
    #[arg(long)]
    reason: String,
    /// Token id recorded in audit logs (default: random).
    #[arg(long)]
    token_id: Option<String>,
    /// Where to write the token; must not exist yet.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Fetch a node's whole audit log over mTLS (as role `auditor`) and check its
    /// hash chain; reports the first broken or missing record and exits 1 if any.
    Verify {
        /// The node's endpoint, https://host:port.
        #[arg(long)]
        endpoint: String,
        /// The node's id (the name its certificate is issued for).
        #[arg(long)]
        node: String,
        /// CA certificate.
        #[arg(long, value_name = "FILE")]
        ca: PathBuf,
        /// The auditor's certificate (role `auditor`).
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// The auditor's private key.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Also print every record (one JSON object per line).
        #[arg(long)]
        print: bool,
    },
}

#[derive(Debug, Subcommand)]
enum EscrowCommand {
    /// Have a node Feldman-split its own share of a key among custodians.
    ///
    /// The node splits its signing share into one part per custodian, any THRESHOLD of
    /// which rebuild it, and encrypts each part to the custodian's age recipient; the
    /// plaintext never leaves the node. Writes OUT/KEY.NODE.CUSTODIAN.age per
    /// custodian (never replacing a file). A custodian decrypts theirs with the
    /// standard `age` tool: `age -d -i key.txt FILE.age > part.json`.
    Split {
        /// Ceremony file (as for `import`); must list NODE.
        #[arg(long, value_name = "FILE")]
        ceremony: PathBuf,
        /// The key whose share to escrow.
        #[arg(long, value_name = "ID")]
        key_id: String,
        /// The node whose share to escrow.
        #[arg(long, value_name = "NODE")]
        node: String,
        /// Parts needed to recover (k), between 2 and the number of custodians.
        #[arg(long, value_name = "K")]
        threshold: u16,
        /// A custodian and their age X25519 recipient (repeat, at least twice).
        #[arg(long = "custodian", value_name = "NAME=age1...", required = true)]
        custodians: Vec<Custodian>,
        /// Directory for the .age files (created if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
    },
    /// Check one part alone against the Feldman commitments it carries.
    ///
    /// Needs no other part and no network. Exit 0: the part lies on the committed
    /// polynomial whose constant term is the node's verifying share.
    Verify {
        /// The part: decrypted JSON, or the .age file with --identity.
        #[arg(long, value_name = "FILE")]
        part: PathBuf,
        /// age identity file that decrypts an .age part (repeatable).
        #[arg(long = "identity", value_name = "AGE_IDENTITY_FILE")]
        identities: Vec<PathBuf>,
    },
    /// Rebuild a node's share from K or more parts and install it on the node.
    ///
    /// Checks every part, fetches the key's manifest from the nodes in the ceremony
    /// file (at least threshold of them must agree), checks the rebuilt share against
    /// the node's verifying share in it, and installs the share on the node (which
    /// must not hold the key, e.g. after it was wiped). Refuses, installing nothing,
    /// when parts are too few, forged or from another split.
    Recover {
        /// Ceremony file (as for `import`); must list NODE.
        #[arg(long, value_name = "FILE")]
        ceremony: PathBuf,
        /// The key to restore.
        #[arg(long, value_name = "ID")]
        key_id: String,
        /// The node to restore (same id as the node that split its share).
        #[arg(long, value_name = "NODE")]
        node: String,
        /// A part: decrypted JSON or .age (repeat; at least K).
        #[arg(long = "part", value_name = "FILE", required = true)]
        parts: Vec<PathBuf>,
        /// age identity file for .age parts (repeatable; each part is tried with all).
        #[arg(long = "identity", value_name = "AGE_IDENTITY_FILE")]
        identities: Vec<PathBuf>,
    },
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
    /// Policy file (TOML: allowed_clients, home_jurisdictions, min_home_signers,
    /// approver_keys, rate_limit_per_minute), fixed with the key and enforced by every
    /// node. Without it the key is unrestricted. See docs/sovereignty.md.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
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
            || cause
                .downcast_ref::<EscrowError>()
                .is_some_and(EscrowError::is_usage)
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
        Command::Approver(ApproverCommand::Keygen { out }) => {
            let key = ApproverKey::generate();
            write_new_private(&out, key.to_hex().as_str())?;
            println!("approver secret key: {}", out.display());
            println!("approver public key: {}", hex::encode(key.public_key()));
            Ok(())
        }
        Command::Approve(args) => approve(args),
        Command::Audit(AuditCommand::Verify {
            endpoint,
            node,
            ca,
            cert,
            key,
            print,
        }) => {
            let tls = TlsPaths { ca, cert, key };
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let records =
                runtime.block_on(quorate_ceremony::audit::fetch(&endpoint, &node, &tls))?;
            if print {
                for (_, bytes) in &records {
                    println!("{}", String::from_utf8_lossy(bytes));
                }
            }
            let report = quorate_ceremony::audit::check(&records);
            match report.head {
                Ok(head) => {
                    println!(
                        "{node}: {} records, chain intact, head {head}",
                        report.records
                    );
                    Ok(())
                }
                Err(brk) => anyhow::bail!("{node}: {brk} ({} records fetched)", report.records),
            }
        }
        Command::Escrow(command) => escrow(command),
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

/// Reads a policy file (TOML, or JSON if it ends in .json) and checks it against
/// the key's threshold before any node is contacted.
fn load_policy(
    path: Option<&Path>,
    threshold: u16,
) -> anyhow::Result<Option<quorate_proto::pb::KeyPolicy>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let policy = PolicyFile::load(path)?;
    quorate_proto::policy::Policy::from_pb(Some(&policy), threshold)
        .map_err(|e| UsageError(format!("policy file {}: {e}", path.display())))?;
    Ok(Some(policy))
}

fn dkg(args: DkgArgs) -> anyhow::Result<()> {
    let file = CeremonyFile::load(&args.ceremony)?;
    check_transcript_path(&args.transcript)?;
    let policy = load_policy(args.policy.as_deref(), args.threshold)?;
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

fn escrow(command: EscrowCommand) -> anyhow::Result<()> {
    match command {
        EscrowCommand::Split {
            ceremony,
            key_id,
            node,
            threshold,
            custodians,
            out,
        } => {
            let file = CeremonyFile::load(&ceremony)?;
            let request = escrow::SplitRequest {
                key_id,
                node_id: node,
                threshold,
                custodians,
                out_dir: out,
            };
            let (key_id, node_id) = (request.key_id.clone(), request.node_id.clone());
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let outcome = runtime.block_on(escrow::split(&file, request))?;
            println!(
                "node {node_id} split its share of key {key_id} among {} custodians \
                 ({threshold} needed to recover); verifying share {}:",
                outcome.files.len(),
                outcome.verifying_share
            );
            for (custodian, path) in &outcome.files {
                println!("  {custodian}: {}", path.display());
            }
            Ok(())
        }
        EscrowCommand::Verify { part, identities } => {
            let identities = Identities::load(&identities)?;
            let verified = escrow::verify_part(&part, &identities)?;
            println!(
                "OK: part {} of {} (custodian {}) of node {}'s share of key {} ({}) lies on \
                 the committed polynomial; {} parts recover the share with verifying share {}",
                verified.identifier,
                verified.parts,
                verified.custodian,
                verified.node_id,
                verified.key_id,
                verified.ciphersuite,
                verified.threshold,
                verified.verifying_share
            );
            Ok(())
        }
        EscrowCommand::Recover {
            ceremony,
            key_id,
            node,
            parts,
            identities,
        } => {
            let file = CeremonyFile::load(&ceremony)?;
            let identities = Identities::load(&identities)?;
            let parts = parts
                .into_iter()
                .map(|path| escrow::read_part(&path, &identities).map(|p| (path, p)))
                .collect::<Result<Vec<_>, _>>()?;
            drop(identities);
            let request = escrow::RecoverRequest {
                key_id,
                node_id: node,
                parts,
            };
            let (key_id, node_id) = (request.key_id.clone(), request.node_id.clone());
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let outcome = runtime.block_on(escrow::recover(&file, request))?;
            println!(
                "recovered node {node_id}'s share of key {key_id} from {} parts and installed \
                 it; manifest {} (agreed by {})",
                outcome.parts_used,
                outcome.manifest_hash,
                outcome.manifest_from.join(", ")
            );
            Ok(())
        }
    }
}

fn parse_duration(text: &str) -> Result<u64, UsageError> {
    let bad = || {
        UsageError(format!(
            "duration {text:?}: expected a number and s, m, h or d (e.g. 2h)"
        ))
    };
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86400),
        _ => return Err(bad()),
    };
    if secs == 0 || secs > approval::MAX_VALIDITY_SECS {
        return Err(UsageError(format!(
            "a token may be valid for 1 s to {} days",
            approval::MAX_VALIDITY_SECS / 86400
        )));
    }
    Ok(secs)
}

fn approve(args: ApproveArgs) -> anyhow::Result<()> {
    quorate_proto::validate_key_id(&args.key_id).map_err(UsageError)?;
    let valid_for = parse_duration(&args.valid_for)?;
    if args.out.exists() {
        return Err(UsageError(format!("{} already exists", args.out.display())).into());
    }
    let secret = std::fs::read_to_string(&args.approver_key)
        .with_context(|| format!("reading {}", args.approver_key.display()))?;
    let key = ApproverKey::from_hex(&secret).map_err(UsageError)?;
    let now = approval::unix_now();
    let token_id = args.token_id.unwrap_or_else(|| {
        let mut id = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
        format!("appr-{}", hex::encode(id))
    });
    let approval = approval::Approval {
        token_id: token_id.clone(),
        key_id: args.key_id.clone(),
        scope: approval::SCOPE_OUT_OF_POLICY_QUORUM.into(),
        not_before: now,
        not_after: now + valid_for,
        reason: args.reason,
    };
    write_new_private(&args.out, &String::from_utf8_lossy(&key.sign(&approval)))?;
    println!(
        "approval {token_id} for key {} valid until {} (Unix time): {}",
        args.key_id,
        approval.not_after,
        args.out.display()
    );
    Ok(())
}

fn write_new_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| UsageError(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

fn import(args: ImportArgs) -> anyhow::Result<()> {
    // Everything the user typed is checked before any node is contacted.
    let file = CeremonyFile::load(&args.ceremony)?;
    check_transcript_path(&args.transcript)?;
    let policy = load_policy(args.policy.as_deref(), args.threshold)?;
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
        policy,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let transcript = runtime.block_on(import::import_key(&file, request))?;
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
