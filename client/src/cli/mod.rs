//! The `quorate` command line: one file per command, over the library's [`Client`].
//!
//! Raw values are parsed into a [`ClientConfig`] and a message before any call is
//! made; a problem there is a usage error (exit 64), anything after is a failure
//! (exit 1).

mod jws;
mod keys;
mod message;
mod output;
mod public_key;
mod sign;
pub mod ssh;
mod threshold_key;
mod verify;
mod x509;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{ClientConfig, ConfigError, CoordinatorEntry};
use crate::{Client, ClientError};

/// Exit code: success (for `verify`, the signature is valid).
pub const EXIT_OK: u8 = 0;
/// Exit code: the request failed (for `verify`, the signature is invalid).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: bad usage or configuration.
pub const EXIT_USAGE: u8 = 64;

const AFTER_HELP: &str = "\
Configuration: --config FILE (or QUORATE_CONFIG) names a client.toml with
`coordinators`, `ca`, `cert` and `key` (`quorate-testnet up` writes DIR/client.toml);
--coordinator/--ca/--cert/--key (or QUORATE_COORDINATORS, QUORATE_CA, QUORATE_CERT,
QUORATE_KEY) override it or stand in for it.

Exit codes: 0 success (verify: the signature is valid); 1 the request failed
(verify: the signature is invalid); 64 bad usage or configuration.

Example:
  quorate --config testnet-data/client.toml sign --key-id demo-ed25519 --message \"pay 10 EUR\"";

/// Quorate client: ask a threshold-signing network for signatures, and check them.
///
/// Every signature is verified under the key's public key before it is printed.
#[derive(Debug, Parser)]
#[command(name = "quorate", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the network is and who the client is.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Client config (TOML: coordinators, ca, cert, key).
    #[arg(long, global = true, env = "QUORATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Coordinator endpoint (https://host:port); repeat, or separate with commas,
    /// for several. Replaces the config's list.
    #[arg(
        long = "coordinator",
        global = true,
        env = "QUORATE_COORDINATORS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub coordinators: Vec<String>,
    /// Name the coordinators' certificates are issued for (default: each
    /// endpoint's host); with --coordinator.
    #[arg(long, global = true, env = "QUORATE_SERVER_NAME", value_name = "NAME")]
    pub server_name: Option<String>,
    /// CA certificate (PEM).
    #[arg(long, global = true, env = "QUORATE_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM, role `client`).
    #[arg(long, global = true, env = "QUORATE_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, global = true, env = "QUORATE_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Deadline of the whole call in milliseconds, every retry included.
    #[arg(long, global = true, env = "QUORATE_DEADLINE_MS", value_name = "MS")]
    pub deadline_ms: Option<u64>,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign a message with a key; prints the signature (hex), the signers and the
    /// ciphersuite once the signature has verified under the key's public key.
    Sign(sign::SignArgs),
    /// Show a key: its id, ciphersuite, threshold, participants and public key (hex).
    PublicKey(public_key::PublicKeyArgs),
    /// List the keys the network serves, as the coordinator reports them (not
    /// attested: `public-key` checks a key's attestation, and `sign` and `verify`
    /// use only attested keys).
    Keys(keys::KeysArgs),
    /// Check a signature (hex) on a message under a key's public key: exit 0 if it
    /// is valid, 1 if it is not.
    Verify(verify::VerifyArgs),
    /// OpenSSH signatures (SSHSIG) that `ssh-keygen -Y verify` and git accept.
    #[command(subcommand)]
    Ssh(ssh::SshCommand),
    /// JSON Web Signatures (compact, EdDSA) that JOSE/JWT libraries accept.
    #[command(subcommand)]
    Jws(jws::JwsCommand),
    /// X.509 certificates signed by a threshold key: `self-sign` makes a CA
    /// certificate for the key, `sign-csr` issues a leaf or an intermediate CA from
    /// a certificate signing request. Only ED25519 keys.
    X509(x509::X509Args),
}

/// A failure of a command, sorted by exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad usage or configuration (exit 64).
    #[error("{0}")]
    Usage(String),
    /// The request failed (exit 1).
    #[error(transparent)]
    Client(ClientError),
    /// The command failed after its request, e.g. writing its output (exit 1).
    #[error("{0}")]
    Failed(String),
    /// The command ran and its answer is "no" (exit 1), e.g. an invalid signature;
    /// the message is already printed.
    #[error("{0}")]
    Negative(String),
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        if e.is_config() {
            Self::Usage(e.to_string())
        } else {
            Self::Client(e)
        }
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        Self::Usage(e.to_string())
    }
}

impl CliError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => EXIT_USAGE,
            Self::Client(_) | Self::Failed(_) | Self::Negative(_) => EXIT_FAILURE,
        }
    }
}

impl GlobalArgs {
    /// The configuration: the file, if any, with the flags laid over it.
    pub fn config(&self) -> Result<ClientConfig, CliError> {
        let mut config = match &self.config {
            Some(path) => Some(ClientConfig::load(path)?),
            None => None,
        };
        let coordinators: Vec<CoordinatorEntry> = self
            .coordinators
            .iter()
            .filter(|c| !c.trim().is_empty())
            .map(|c| CoordinatorEntry::Named {
                endpoint: c.trim().to_string(),
                server_name: self.server_name.clone(),
            })
            .collect();
        let mut config = match config.take() {
            Some(c) => c,
            None => {
                let missing: Vec<&str> = [
                    ("--coordinator", coordinators.is_empty()),
                    ("--ca", self.ca.is_none()),
                    ("--cert", self.cert.is_none()),
                    ("--key", self.key.is_none()),
                ]
                .into_iter()
                .filter_map(|(flag, absent)| absent.then_some(flag))
                .collect();
                if !missing.is_empty() {
                    return Err(CliError::Usage(format!(
                        "no client configuration: give --config FILE (or QUORATE_CONFIG), \
                         or {} (missing: {})",
                        "--coordinator, --ca, --cert and --key",
                        missing.join(", ")
                    )));
                }
                ClientConfig::new(Vec::new(), PathBuf::new(), PathBuf::new(), PathBuf::new())
            }
        };
        if !coordinators.is_empty() {
            config.coordinators = coordinators;
        }
        if let Some(ca) = &self.ca {
            config.ca = ca.clone();
        }
        if let Some(cert) = &self.cert {
            config.cert = cert.clone();
        }
        if let Some(key) = &self.key {
            config.key = key.clone();
        }
        if let Some(ms) = self.deadline_ms {
            config.deadline_ms = ms;
        }
        config.validate()?;
        Ok(config)
    }

    /// A client for the configuration.
    pub fn client(&self) -> Result<Client, CliError> {
        Ok(Client::new(&self.config()?)?)
    }
}

/// Runs a parsed command line; prints its output on stdout.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Sign(args) => sign::run(&cli.global, args).await,
        Command::PublicKey(args) => public_key::run(&cli.global, args).await,
        Command::Keys(args) => keys::run(&cli.global, args).await,
        Command::Verify(args) => verify::run(&cli.global, args).await,
        Command::Ssh(command) => ssh::run(&cli.global, command).await,
        Command::Jws(command) => jws::run(&cli.global, command).await,
        Command::X509(args) => x509::run(&cli.global, args).await,
    }
}

/// Prints `value` as one line of JSON.
fn print_json(value: &serde_json::Value) {
    println!("{value}");
}
