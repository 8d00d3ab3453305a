//! `quorate x509`: X.509 certificates whose CA key is a threshold key.
//!
//! The certificates are built by [`crate::x509`] (rcgen underneath); the one
//! signature each needs is made by the key's quorum through [`ThresholdKey::sign`],
//! so it passes the key's policy like any other signature. rcgen signs
//! synchronously and the quorum answers asynchronously: the certificate is built on
//! a blocking thread that waits on the runtime for the quorum's answer.
//!
//! Every flag and file is read and checked before the network is asked for
//! anything (a usage error exits 64); a certificate is written only after it has
//! been parsed back and its signature checked.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use clap::Subcommand;
use quorate_frost::Ciphersuite;
use rcgen::{PublicKeyData, SignatureAlgorithm, SigningKey, PKCS_ED25519};
use time::OffsetDateTime;
use tokio::runtime::Handle;

use super::output::{parent, same_file, write_atomically, write_stdout};
use super::threshold_key::{KeyArgs, ThresholdKey};
use super::{CliError, GlobalArgs};
use crate::x509::{
    self, check_days, parse_ext_key_usage, parse_key_usage, parse_san, utc, CaCertificate,
    CaProfile, Csr, IssueProfile, Issued, Subject, X509Error, MAX_DAYS,
};
use crate::PublicKey;

const AFTER_HELP: &str = "\
Only ED25519 keys can sign certificates (RFC 8410, signature algorithm 1.3.101.112):
FROST secp256k1 and BIP340 (SECP256K1_TR) signatures have no X.509 algorithm, and
such keys are refused.

Validity: notBefore is 5 minutes before signing (for relying parties whose clocks
run a little slow), notAfter --days later (1 to 9150 days). Serial numbers are 16
random bytes. --out is written atomically (a temporary file beside it, then moved
into place) and an existing file is never replaced unless --force is given.

Examples:
  quorate --config DIR/client.toml x509 self-sign --key-id demo-ed25519 \\
      --subject \"CN=Quorate Root CA,O=Example,C=DE\" --days 3650 --path-len 1 --out ca.pem
  openssl req -new -newkey ed25519 -nodes -keyout leaf.key -subj /CN=leaf.example -out leaf.csr
  quorate --config DIR/client.toml x509 sign-csr --key-id demo-ed25519 --ca-cert ca.pem \\
      --csr leaf.csr --days 90 --san leaf.example --san IP:127.0.0.1 --out leaf.pem
  openssl verify -CAfile ca.pem leaf.pem";

const SIGN_CSR_AFTER_HELP: &str = "\
The issuer decides the profile: of the CSR only its subject (unless --subject is
given) and its public key are taken, after its self-signature verifies; the
extensions it requests (SANs, key usages, basic constraints, ...) are ignored.

Defaults: a leaf gets basicConstraints CA:FALSE, keyUsage digitalSignature and
extendedKeyUsage serverAuth, clientAuth (keyEncipherment is for RSA key transport
only: add it with --key-usage for an RSA TLS 1.2 server); an intermediate
(--intermediate) gets CA:TRUE, keyUsage keyCertSign, cRLSign and no extendedKeyUsage. Both get a
subjectKeyIdentifier and the CA's authorityKeyIdentifier.

Refused: a CA certificate that is not a CA (no basicConstraints CA:TRUE, or a
keyUsage without keyCertSign) or has expired, one whose public key is not the key's,
a notAfter past the CA certificate's (not shortened: the error says how many days
are left), an intermediate under a CA with pathlen 0, a --path-len not below the
CA's.";

/// Flags of `x509`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct X509Args {
    #[command(subcommand)]
    pub command: X509Command,
}

/// `x509` commands.
#[derive(Debug, Subcommand)]
pub enum X509Command {
    /// Make a self-signed CA certificate whose key is the threshold key:
    /// basicConstraints CA:TRUE (critical), keyUsage keyCertSign, cRLSign and
    /// digitalSignature (critical), subjectKeyIdentifier.
    SelfSign(SelfSignArgs),
    /// Issue a certificate (a leaf, or with --intermediate an intermediate CA) for a CSR,
    /// signed by the threshold key under its CA certificate.
    #[command(after_help = SIGN_CSR_AFTER_HELP)]
    SignCsr(SignCsrArgs),
}

/// Where the certificate goes.
#[derive(Debug, clap::Args)]
pub struct OutArgs {
    /// Write the certificate (PEM) to FILE; refused if FILE exists, unless --force.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Flags of `x509 self-sign`.
#[derive(Debug, clap::Args)]
pub struct SelfSignArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// Subject and issuer, RFC 4514 style, most specific first:
    /// "CN=Quorate Root CA,O=Example,C=DE". Attributes: CN, O, OU, C (two letters),
    /// ST, L, each once; escape a literal , + \ = with a backslash.
    #[arg(long, value_name = "DN")]
    pub subject: String,
    /// Days of validity, 1 to 9150.
    #[arg(long, value_name = "N")]
    pub days: u32,
    /// How many intermediate CAs may follow this one (basicConstraints
    /// pathLenConstraint); default: no limit.
    #[arg(long, value_name = "N")]
    pub path_len: Option<u8>,
    #[command(flatten)]
    pub out: OutArgs,
}

/// Flags of `x509 sign-csr`.
#[derive(Debug, clap::Args)]
pub struct SignCsrArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// The CA certificate (PEM) of the key: it must be a CA and carry the key's
    /// public key. The new certificate's issuer is its subject.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: PathBuf,
    /// The certificate signing request (PEM, PKCS#10); its self-signature must
    /// verify. Only its subject and public key are used.
    #[arg(long, value_name = "FILE")]
    pub csr: PathBuf,
    /// Days of validity, 1 to 9150, and not past the CA certificate's notAfter.
    #[arg(long, value_name = "N")]
    pub days: u32,
    /// Issue an intermediate CA (basicConstraints CA:TRUE) instead of a leaf. (Not
    /// `--ca`: that global flag names the TLS CA of the network.)
    #[arg(long)]
    pub intermediate: bool,
    /// With --intermediate: how many further intermediates may follow; must be below the CA
    /// certificate's own limit (default: that limit minus one, or none).
    #[arg(long, value_name = "N", requires = "intermediate")]
    pub path_len: Option<u8>,
    /// A subject alternative name: DNS:name, IP:address, email:address or URI:uri;
    /// a bare value is a DNS name. Repeat for several.
    #[arg(long = "san", value_name = "NAME")]
    pub sans: Vec<String>,
    /// Key usages, comma-separated, replacing the default: digitalSignature,
    /// nonRepudiation, keyEncipherment, dataEncipherment, keyAgreement,
    /// keyCertSign, cRLSign, encipherOnly, decipherOnly.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub key_usage: Vec<String>,
    /// Extended key usages, comma-separated, replacing the default: serverAuth,
    /// clientAuth, codeSigning, emailProtection, timeStamping, OCSPSigning, any;
    /// "" for none (no extendedKeyUsage extension).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub ext_key_usage: Vec<String>,
    /// The subject, replacing the CSR's (same syntax as self-sign --subject).
    #[arg(long, value_name = "DN")]
    pub subject: Option<String>,
    #[command(flatten)]
    pub out: OutArgs,
}

/// Runs `x509`.
pub async fn run(global: &GlobalArgs, args: X509Args) -> Result<(), CliError> {
    match args.command {
        X509Command::SelfSign(args) => self_sign(global, args).await,
        X509Command::SignCsr(args) => sign_csr(global, args).await,
    }
}

async fn self_sign(global: &GlobalArgs, args: SelfSignArgs) -> Result<(), CliError> {
    let profile = CaProfile {
        subject: parse_subject(&args.subject)?,
        days: args.days,
        path_len: args.path_len,
    };
    check_days(args.days).map_err(usage)?;
    check_out(&args.out, &[])?;
    let signer = QuorumKey::open(global, &args.key).await?;
    let issued = signer
        .build(
            move |key| x509::self_signed_ca(&profile, OffsetDateTime::now_utc(), key),
            usage,
        )
        .await?;
    finish(&args.out, &issued)
}

async fn sign_csr(global: &GlobalArgs, args: SignCsrArgs) -> Result<(), CliError> {
    let profile = IssueProfile {
        subject: args.subject.as_deref().map(parse_subject).transpose()?,
        days: args.days,
        ca: args.intermediate.then_some(args.path_len),
        sans: args
            .sans
            .iter()
            .map(|s| parse_san(s))
            .collect::<Result<_, _>>()
            .map_err(usage)?,
        key_usages: list(&args.key_usage, parse_key_usage)?,
        ext_key_usages: list(&args.ext_key_usage, parse_ext_key_usage)?,
    };
    check_days(args.days).map_err(usage)?;
    let ca_flag = format!("--ca-cert {}", args.ca_cert.display());
    let ca = CaCertificate::from_pem(&read(&args.ca_cert, "--ca-cert")?)
        .map_err(|e| CliError::Usage(format!("{ca_flag}: {e}")))?;
    let csr = Csr::from_pem(&read(&args.csr, "--csr")?)
        .map_err(|e| CliError::Usage(format!("--csr {}: {e}", args.csr.display())))?;
    check_out(&args.out, &[&args.ca_cert, &args.csr])?;
    let signer = QuorumKey::open(global, &args.key).await?;
    // Checked here too (issue() checks it before signing) so the error can name
    // the file rather than say "CA certificate".
    if ca.public_key_bytes().map_err(usage)? != signer.public_key {
        return Err(CliError::Usage(format!(
            "{ca_flag}: its public key is not the public key of {} ({}); give the CA \
             certificate of this key",
            signer.key.public_key().key_id,
            hex::encode(&signer.public_key)
        )));
    }
    let issued = signer
        .build(
            move |key| x509::issue(&ca, &csr, &profile, OffsetDateTime::now_utc(), key),
            |e| match e {
                X509Error::CaCert(_) | X509Error::KeyMismatch { .. } => {
                    CliError::Usage(format!("{ca_flag}: {e}"))
                }
                e => usage(e),
            },
        )
        .await?;
    finish(&args.out, &issued)
}

/// A threshold key as rcgen's [`SigningKey`]: each `sign` is one quorum signature,
/// waited for on the runtime.
#[derive(Debug)]
struct QuorumKey {
    key: ThresholdKey,
    /// The raw Ed25519 public key, as an X.509 SubjectPublicKeyInfo holds it.
    public_key: Vec<u8>,
    runtime: Handle,
    /// The quorum's error, if signing failed: rcgen can only carry its own
    /// `RemoteKeyError`, and the user must see the quorum's reason (a policy
    /// refusal, no quorum reachable) instead.
    failure: Mutex<Option<CliError>>,
}

impl QuorumKey {
    /// Opens the key and checks it can make X.509 signatures.
    async fn open(global: &GlobalArgs, args: &KeyArgs) -> Result<Self, CliError> {
        let key = ThresholdKey::open(global, args).await?;
        let public = key.public_key();
        check_x509_capable(public)?;
        Ok(Self {
            public_key: public.public_key.clone(),
            key,
            runtime: Handle::current(),
            failure: Mutex::new(None),
        })
    }

    /// Runs `make` with this key on a blocking thread (rcgen is synchronous, the
    /// quorum is not) and maps its error: the quorum's own if signing failed,
    /// `input_error`'s if the input was at fault, a failure otherwise.
    async fn build<F>(
        self,
        make: F,
        input_error: impl FnOnce(X509Error) -> CliError,
    ) -> Result<Issued, CliError>
    where
        F: FnOnce(&Self) -> Result<Issued, X509Error> + Send + 'static,
    {
        let (result, failure) = tokio::task::spawn_blocking(move || {
            let result = make(&self);
            let failure = self
                .failure
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner);
            (result, failure)
        })
        .await
        .map_err(|e| CliError::Failed(format!("the certificate builder stopped: {e}")))?;
        match (result, failure) {
            (Ok(issued), _) => Ok(issued),
            (Err(_), Some(quorum)) => Err(quorum),
            (Err(e), None) if e.is_input() => Err(input_error(e)),
            (Err(e), None) => Err(CliError::Failed(e.to_string())),
        }
    }
}

/// Refuses keys whose signatures X.509 cannot carry.
fn check_x509_capable(public: &PublicKey) -> Result<(), CliError> {
    if public.ciphersuite != Ciphersuite::Ed25519 {
        return Err(CliError::Usage(format!(
            "key {} is a {} key: X.509 has no signature algorithm for FROST secp256k1 or \
             BIP340 Schnorr signatures; only ED25519 keys can sign certificates \
             (RFC 8410, 1.3.101.112)",
            public.key_id, public.ciphersuite
        )));
    }
    if public.public_key.len() != 32 {
        return Err(CliError::Failed(format!(
            "key {} has a {}-byte Ed25519 public key; 32 bytes expected",
            public.key_id,
            public.public_key.len()
        )));
    }
    Ok(())
}

impl PublicKeyData for QuorumKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ED25519
    }
}

impl SigningKey for QuorumKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        // On a blocking-pool thread (see `build`), where waiting on the runtime is
        // allowed; the quorum's signature is verified under the key by `sign`.
        self.runtime.block_on(self.key.sign(msg)).map_err(|e| {
            *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
            rcgen::Error::RemoteKeyError
        })
    }
}

fn usage(e: X509Error) -> CliError {
    CliError::Usage(e.to_string())
}

fn parse_subject(s: &str) -> Result<Subject, CliError> {
    s.parse().map_err(usage)
}

/// A comma-separated flag's values parsed, or `None` when it was not given.
fn list<T>(
    values: &[String],
    parse: impl Fn(&str) -> Result<T, X509Error>,
) -> Result<Option<Vec<T>>, CliError> {
    if values.is_empty() {
        return Ok(None);
    }
    values
        .iter()
        .filter(|v| !v.trim().is_empty())
        .map(|v| parse(v))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
        .map_err(usage)
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>, CliError> {
    fs::read(path)
        .map_err(|e| CliError::Usage(format!("cannot read {flag} {}: {e}", path.display())))
}

/// Refuses an --out that exists (without --force) or whose folder does not, or that
/// is one of the command's `inputs` (a --force over the CA certificate would lose
/// it), before the quorum is asked to sign anything.
fn check_out(out: &OutArgs, inputs: &[&Path]) -> Result<(), CliError> {
    if let Some(input) = inputs.iter().find(|i| same_file(&out.out, i)) {
        return Err(CliError::Usage(format!(
            "--out {} is the input {}; write the certificate elsewhere",
            out.out.display(),
            input.display()
        )));
    }
    if !out.force && out.out.exists() {
        return Err(CliError::Usage(format!(
            "--out {} exists; give --force to replace it",
            out.out.display()
        )));
    }
    let dir = parent(&out.out);
    if !dir.is_dir() {
        return Err(CliError::Usage(format!(
            "--out {}: folder {} does not exist",
            out.out.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// Writes the certificate and says what was written.
fn finish(out: &OutArgs, issued: &Issued) -> Result<(), CliError> {
    write_atomically(&out.out, issued.pem.as_bytes(), out.force).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => CliError::Failed(format!(
            "--out {} appeared while signing; give --force to replace it (the certificate \
             was not written)",
            out.out.display()
        )),
        _ => CliError::Failed(format!("cannot write --out {}: {e}", out.out.display())),
    })?;
    // What was certified, read back from the certificate: the subject a CSR
    // brought in and the names it is valid for are shown, not only where it went.
    let (subject, sans) = x509::describe(&issued.der).map_err(CliError::Failed)?;
    write_stdout(
        format!(
            "wrote:      {}\nsubject:    {subject}\nsans:       {}\nserial:     {}\nnot_before: {}\nnot_after:  {}\n",
            out.out.display(),
            if sans.is_empty() { "(none)".to_string() } else { sans.join(", ") },
            hex::encode(&issued.serial),
            utc(issued.not_before),
            utc(issued.not_after)
        )
        .as_bytes(),
    )
}

// MAX_DAYS is named in the help text as a number; keep the two in step.
const _: () = assert!(MAX_DAYS == 9150);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secp256k1_keys_are_refused_naming_their_ciphersuite() {
        let mut key = PublicKey {
            key_id: "k".into(),
            ciphersuite: Ciphersuite::Ed25519,
            public_key: vec![7; 32],
            threshold: 3,
            participants: Vec::new(),
            generation: 0,
        };
        assert!(check_x509_capable(&key).is_ok());
        for (suite, len) in [(Ciphersuite::Secp256k1, 33), (Ciphersuite::Secp256k1Tr, 32)] {
            key.ciphersuite = suite;
            key.public_key = vec![2; len];
            let err = check_x509_capable(&key).expect_err("refused");
            assert_eq!(err.exit_code(), super::super::EXIT_USAGE);
            assert!(err.to_string().contains(suite.name()), "{err}");
            assert!(err.to_string().contains("only ED25519"), "{err}");
        }
    }
}
