//! `quorate ssh sign`, and `quorate -Y ...`: the signing half of `ssh-keygen -Y`, so
//! git's `gpg.ssh.program` can point at `quorate` itself.
//!
//! `quorate -Y sign -n NAMESPACE -f PUBLIC_KEY_FILE FILE...` takes ssh-keygen's
//! arguments, finds the threshold key whose public key the file holds, and writes
//! `FILE.sig` as ssh-keygen does. Every other `-Y` operation (`verify`,
//! `find-principals`, `check-novalidate`, which need no secret) is handed to
//! `ssh-keygen` itself, so one `gpg.ssh.program` serves both `git commit -S` and
//! `git verify-commit`.

use std::ffi::OsString;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use super::output::{write_atomically, write_stdout};
use super::threshold_key::{KeyArgs, ThresholdKey};
use super::{CliError, GlobalArgs};
use crate::key_formats::ssh_public_key_blob;
use crate::sshsig;
use quorate_frost::Ciphersuite;

/// Flags of `ssh sign`.
#[derive(Debug, clap::Args)]
pub struct SshSignArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// The signature's namespace (`git` for commits, `file` for files); a verifier
    /// must name the same one.
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: String,
    /// Files to sign: each gets FILE.sig beside it. `-` signs standard input and
    /// prints the signature.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// `ssh` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SshCommand {
    /// Sign files with an Ed25519 key into OpenSSH signatures (FILE.sig), which
    /// `ssh-keygen -Y verify` checks against an allowed-signers line made from
    /// `quorate public-key --format openssh`.
    Sign(SshSignArgs),
}

/// Runs `ssh ...`.
pub async fn run(global: &GlobalArgs, command: SshCommand) -> Result<(), CliError> {
    match command {
        SshCommand::Sign(args) => {
            sshsig::check_namespace(&args.namespace).map_err(|e| CliError::Usage(e.to_string()))?;
            let messages = read_messages(&args.files)?;
            let key = ThresholdKey::open(global, &args.key).await?;
            sign_files(&key, &args.namespace, &messages).await
        }
    }
}

/// ssh-keygen's signing arguments, as git passes them.
#[derive(Debug, clap::Parser)]
#[command(
    name = "quorate -Y",
    about = "ssh-keygen's `-Y sign` through the quorum (for git's gpg.ssh.program); \
             other -Y operations run ssh-keygen",
    after_help = "The client config comes from QUORATE_CONFIG (or QUORATE_COORDINATORS, \
                  QUORATE_CA, QUORATE_CERT, QUORATE_KEY); an approval token from \
                  QUORATE_APPROVAL_TOKEN."
)]
pub struct SshKeygenArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The operation: `sign` (others are ssh-keygen's).
    #[arg(short = 'Y', value_name = "OP")]
    pub operation: String,
    /// The namespace.
    #[arg(short = 'n', value_name = "NAMESPACE")]
    pub namespace: String,
    /// The public key file (`ssh-ed25519 ...`) naming the threshold key.
    #[arg(short = 'f', value_name = "PUBLIC_KEY_FILE")]
    pub key_file: PathBuf,
    /// "Use the agent" (git passes it for a literal key); the quorum is the agent
    /// here, so it changes nothing.
    #[arg(short = 'U')]
    pub agent: bool,
    /// ssh-keygen signing options (`-O hashalg=sha512` is the one used; others are
    /// refused).
    #[arg(short = 'O', value_name = "OPTION")]
    pub options: Vec<String>,
    /// Approval token file permitting an out-of-policy quorum.
    #[arg(long, env = "QUORATE_APPROVAL_TOKEN", value_name = "FILE")]
    pub approval_token: Option<PathBuf>,
    /// Files to sign (FILE.sig is written); `-` for standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Whether the command line is ssh-keygen's (`quorate -Y OP ...`), and if so, whether
/// it is a signing operation this program performs (`Some(true)`) or one for
/// ssh-keygen (`Some(false)`).
pub fn ssh_keygen_call(args: &[OsString]) -> Option<bool> {
    match args.get(1).and_then(|a| a.to_str()) {
        Some("-Y") => Some(args.get(2).and_then(|a| a.to_str()) == Some("sign")),
        Some(flag) if flag.starts_with("-Y") && flag.len() > 2 => Some(&flag[2..] == "sign"),
        _ => None,
    }
}

/// ssh-keygen from PATH, taking absolute entries only (an empty or relative entry
/// would run whatever `ssh-keygen` the current directory, perhaps a repository
/// being verified, holds) and never this program itself (a `ssh-keygen` link to
/// `quorate` would call itself without end).
fn ssh_keygen() -> Result<PathBuf, CliError> {
    let this = std::env::current_exe().and_then(std::fs::canonicalize).ok();
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("ssh-keygen"))
        .find(|candidate| candidate.is_file() && std::fs::canonicalize(candidate).ok() != this)
        .ok_or_else(|| {
            CliError::Usage(
                "`quorate -Y` hands this operation to ssh-keygen, which is not in PATH \
                 (install openssh-client)"
                    .into(),
            )
        })
}

/// Runs ssh-keygen with the same arguments and returns its exit code.
pub fn run_ssh_keygen(args: &[OsString]) -> Result<u8, CliError> {
    let status = std::process::Command::new(ssh_keygen()?)
        .args(args.iter().skip(1))
        .status()
        .map_err(|e| {
            CliError::Usage(format!(
                "`quorate -Y` hands this operation to ssh-keygen, which cannot run: {e} \
                 (install openssh-client)"
            ))
        })?;
    Ok(status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(super::EXIT_FAILURE))
}

/// Runs `quorate -Y sign ...`.
pub async fn run_ssh_keygen_sign(args: SshKeygenArgs) -> Result<(), CliError> {
    for option in &args.options {
        if option != "hashalg=sha512" {
            return Err(CliError::Usage(format!(
                "-O {option}: only hashalg=sha512 is supported"
            )));
        }
    }
    sshsig::check_namespace(&args.namespace).map_err(|e| CliError::Usage(e.to_string()))?;
    let line = std::fs::read_to_string(&args.key_file).map_err(|e| {
        CliError::Usage(format!(
            "cannot read the public key file {}: {e}",
            args.key_file.display()
        ))
    })?;
    let wanted = sshsig::parse_openssh_public_key(&line)
        .map_err(|e| CliError::Usage(format!("{}: {e}", args.key_file.display())))?;
    let messages = read_messages(&args.files)?;
    let key_id = find_key(&args.global, &wanted).await?;
    let key = ThresholdKey::open(
        &args.global,
        &KeyArgs {
            key_id,
            approval_token: args.approval_token.clone(),
        },
    )
    .await?;
    sign_files(&key, &args.namespace, &messages).await
}

/// The id of the Ed25519 key whose attested public key is `wanted`'s: the key its
/// comment names first (`quorate public-key --format openssh` writes the key id
/// there), then every other. A key that cannot be shown attested is passed over,
/// so one broken key does not stop signing with the others; its error is reported
/// only if no key matches.
async fn find_key(global: &GlobalArgs, wanted: &sshsig::OpensshKey) -> Result<String, CliError> {
    let client = global.client()?;
    let mut candidates: Vec<String> = client
        .list_keys()
        .await?
        .into_iter()
        .filter(|k| k.ciphersuite == Ciphersuite::Ed25519)
        .map(|k| k.key_id)
        .collect();
    if let Some(named) = candidates
        .iter()
        .position(|id| Some(id) == wanted.comment.as_ref())
    {
        let named = candidates.remove(named);
        candidates.insert(0, named);
    }
    let mut passed_over = Vec::new();
    for key_id in candidates {
        match client.public_key(&key_id).await {
            Ok(key) if key.public_key == wanted.key => return Ok(key.key_id),
            Ok(_) => {}
            Err(e) => passed_over.push(format!("{key_id}: {e}")),
        }
    }
    let mut message = "no key of the network has this public key (`quorate public-key \
                       --key-id ID --format openssh` prints a key's)"
        .to_string();
    if !passed_over.is_empty() {
        message.push_str(&format!(
            "; keys that could not be checked: {}",
            passed_over.join("; ")
        ));
    }
    Err(CliError::Usage(message))
}

/// A file to sign and its bytes.
struct Message {
    file: PathBuf,
    bytes: Vec<u8>,
}

/// Reads every file before anything is signed: an unreadable one is a usage error
/// that costs no signature.
fn read_messages(files: &[PathBuf]) -> Result<Vec<Message>, CliError> {
    files
        .iter()
        .map(|file| {
            Ok(Message {
                file: file.clone(),
                bytes: read_message(file)?,
            })
        })
        .collect()
}

/// Signs every message, then writes every signature: a refusal or failure of the
/// quorum part-way leaves no signature file written.
async fn sign_files(
    key: &ThresholdKey,
    namespace: &str,
    messages: &[Message],
) -> Result<(), CliError> {
    let public = key.public_key();
    // Before any signature is asked for: the key must have an SSH form.
    ssh_public_key_blob(public.ciphersuite, &public.public_key)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let mut signed = Vec::with_capacity(messages.len());
    for message in messages {
        let data = sshsig::signed_data(namespace, &message.bytes)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let signature = key.sign(&data).await?;
        let armored = sshsig::armor(
            public.ciphersuite,
            &public.public_key,
            namespace,
            &signature,
        )
        .map_err(|e| CliError::Failed(e.to_string()))?;
        signed.push((&message.file, armored));
    }
    for (file, armored) in signed {
        if file.as_os_str() == "-" {
            write_stdout(armored.as_bytes())?;
        } else {
            let mut out = file.clone().into_os_string();
            out.push(".sig");
            // As ssh-keygen does, an existing FILE.sig is replaced (git reuses its
            // temporary file's name); a reader never sees half a signature.
            let out = Path::new(&out);
            write_atomically(out, armored.as_bytes(), true)
                .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", out.display())))?;
        }
    }
    Ok(())
}

fn read_message(file: &Path) -> Result<Vec<u8>, CliError> {
    if file.as_os_str() == "-" {
        let mut message = Vec::new();
        std::io::stdin()
            .read_to_end(&mut message)
            .map_err(|e| CliError::Usage(format!("cannot read standard input: {e}")))?;
        return Ok(message);
    }
    std::fs::read(file).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))
}
