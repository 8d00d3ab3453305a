//! `quorate-ceremony approver keygen`, `approve`, `cosign`, `revoke` and
//! `deliver-revocation`: approver keys, the approval tokens that let an
//! out-of-policy quorum sign one key for a limited time, and their revocation.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use quorate_keys::approval::{self, ApproverKey};

use super::error::CliError;

#[derive(Debug, Subcommand)]
pub(super) enum ApproverCommand {
    /// Create an approver key: writes the secret seed (64 hex digits, mode 0600) and
    /// prints the public key to list in key policies.
    Keygen {
        /// Where to write the secret key; must not exist yet.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub(super) struct ApproveArgs {
    /// The approver's secret key file (from `approver keygen`).
    #[arg(long, value_name = "FILE")]
    pub(super) approver_key: PathBuf,
    /// The key the approval applies to.
    #[arg(long, value_name = "ID")]
    pub(super) key_id: String,
    /// How long the token is valid from now, e.g. 30m, 2h, 1d (at most 7d).
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub(super) valid_for: String,
    /// Why (recorded in the token; shown in audits).
    #[arg(long)]
    pub(super) reason: String,
    /// Token id recorded in audit logs (default: random).
    #[arg(long)]
    pub(super) token_id: Option<String>,
    /// Bind the token to one client: only the client whose certificate has this
    /// SPIFFE id (exactly) may sign under it. Default: any client the key's
    /// policy allows.
    #[arg(long, value_name = "SPIFFE_ID")]
    pub(super) client: Option<String>,
    /// Bind the token to one message: its SHA-256 as 64 hex digits (`sha256sum
    /// FILE`). Default: any message.
    #[arg(long, value_name = "HEX")]
    pub(super) message_sha256: Option<String>,
    /// Where to write the token; must not exist yet.
    #[arg(long, value_name = "FILE")]
    pub(super) out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(super) struct CosignArgs {
    /// The approver's secret key file (from `approver keygen`).
    #[arg(long, value_name = "FILE")]
    pub(super) approver_key: PathBuf,
    /// The token to add a signature to (from `approve` or an earlier `cosign`).
    #[arg(long, value_name = "FILE")]
    pub(super) token: PathBuf,
    /// Where to write the token with this approver's signature added; must not
    /// exist yet.
    #[arg(long, value_name = "FILE")]
    pub(super) out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(super) struct RevokeArgs {
    /// The approver's secret key file (from `approver keygen`); the key's policy
    /// must list its public key.
    #[arg(long, value_name = "FILE")]
    pub(super) approver_key: PathBuf,
    /// The key the token applies to.
    #[arg(long, value_name = "ID")]
    pub(super) key_id: String,
    /// The id of the token to revoke (as `approve` printed it, or
    /// `approval_token_id` in the audit log).
    #[arg(long, value_name = "ID")]
    pub(super) token_id: String,
    /// Where to write the revocation; must not exist yet.
    #[arg(long, value_name = "FILE")]
    pub(super) out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(super) struct DeliverRevocationArgs {
    /// Ceremony file (TOML) listing every node of the key.
    #[arg(long, value_name = "FILE")]
    pub(super) ceremony: PathBuf,
    /// The revocation (from `revoke`).
    #[arg(long, value_name = "FILE")]
    pub(super) revocation: PathBuf,
}

/// Runs `revoke`: signs a revocation of a token (offline; `deliver-revocation`
/// takes it to the nodes).
pub(super) fn revoke(args: RevokeArgs) -> Result<(), CliError> {
    quorate_wire::validate_key_id(&args.key_id).map_err(CliError::Usage)?;
    approval::validate_token_id(&args.token_id)
        .map_err(|e| CliError::Usage(format!("--token-id: {e}")))?;
    if args.out.exists() {
        return Err(CliError::Usage(format!(
            "{} already exists",
            args.out.display()
        )));
    }
    let secret = std::fs::read_to_string(&args.approver_key).map_err(|source| CliError::Read {
        path: args.approver_key.clone(),
        source,
    })?;
    let key = ApproverKey::from_hex(&secret).map_err(CliError::Usage)?;
    let signed = quorate_keys::revocation::sign(&key, &args.key_id, &args.token_id);
    write_new_private(&args.out, &String::from_utf8_lossy(&signed))?;
    println!(
        "revocation of approval {} for key {} by approver {}: {}",
        args.token_id,
        args.key_id,
        hex::encode(key.public_key()),
        args.out.display()
    );
    Ok(())
}

/// Runs `deliver-revocation`: every node of the ceremony file stores the
/// revocation and refuses the token from then on.
pub(super) fn deliver_revocation(args: DeliverRevocationArgs) -> Result<(), CliError> {
    let revocation = std::fs::read(&args.revocation).map_err(|source| CliError::Read {
        path: args.revocation.clone(),
        source,
    })?;
    let file = crate::ceremony_file::CeremonyFile::load(&args.ceremony)?;
    let delivered =
        super::common::runtime()?.block_on(crate::revoke::deliver(&file, &revocation))?;
    for (node, newly) in &delivered.nodes {
        println!(
            "{node}: {}",
            if *newly { "revoked" } else { "already revoked" }
        );
    }
    println!(
        "the token is revoked on all {} node(s) of key {}",
        delivered.nodes.len(),
        delivered.key_id
    );
    Ok(())
}

/// Runs `approver keygen`.
pub(super) fn approver(command: ApproverCommand) -> Result<(), CliError> {
    match command {
        ApproverCommand::Keygen { out } => {
            let key = ApproverKey::generate();
            write_new_private(&out, key.to_hex().as_str())?;
            println!("approver secret key: {}", out.display());
            println!("approver public key: {}", hex::encode(key.public_key()));
            Ok(())
        }
    }
}

/// Parses a validity like `30m`, `2h`, `1d`: 1 s to 7 days (the longest an
/// approval token or an administrator's authorization may be valid).
pub(super) fn parse_duration(text: &str) -> Result<u64, CliError> {
    let bad = || {
        CliError::Usage(format!(
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
        return Err(CliError::Usage(format!(
            "a validity must be 1 s to {} days",
            approval::MAX_VALIDITY_SECS / 86400
        )));
    }
    Ok(secs)
}

/// Runs `approve`: signs an approval token.
pub(super) fn approve(args: ApproveArgs) -> Result<(), CliError> {
    quorate_wire::validate_key_id(&args.key_id).map_err(CliError::Usage)?;
    let valid_for = parse_duration(&args.valid_for)?;
    if args.out.exists() {
        return Err(CliError::Usage(format!(
            "{} already exists",
            args.out.display()
        )));
    }
    let secret = std::fs::read_to_string(&args.approver_key).map_err(|source| CliError::Read {
        path: args.approver_key.clone(),
        source,
    })?;
    let key = ApproverKey::from_hex(&secret).map_err(CliError::Usage)?;
    if let Some(client) = &args.client {
        quorate_transport::identity::PeerIdentity::parse_spiffe_id(client)
            .ok()
            .filter(|id| id.role == quorate_transport::identity::Role::Client)
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "--client {client:?} is not a client's SPIFFE id \
                     (spiffe://TRUST_DOMAIN/client/NAME)"
                ))
            })?;
    }
    let message_sha256 = args
        .message_sha256
        .map(|h| {
            let h = h.trim().to_ascii_lowercase();
            let ok = h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
            ok.then_some(h.clone()).ok_or_else(|| {
                CliError::Usage(format!("--message-sha256 {h:?} is not 64 hex digits"))
            })
        })
        .transpose()?;
    if let Some(id) = &args.token_id {
        approval::validate_token_id(id).map_err(|e| CliError::Usage(format!("--token-id: {e}")))?;
    }
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
        client: args.client.clone(),
        message_sha256: message_sha256.clone(),
    };
    write_new_private(&args.out, &String::from_utf8_lossy(&key.sign(&approval)))?;
    println!(
        "approval {token_id} for key {} valid until {} (Unix time){}{}: {}",
        args.key_id,
        approval.not_after,
        args.client
            .as_deref()
            .map(|c| format!(", client {c} only"))
            .unwrap_or_default(),
        message_sha256
            .as_deref()
            .map(|m| format!(", message sha256 {m} only"))
            .unwrap_or_default(),
        args.out.display()
    );
    Ok(())
}

/// Runs `cosign`: adds this approver's signature to a token. What the token grants
/// is shown first, so the approver sees what they sign.
pub(super) fn cosign(args: CosignArgs) -> Result<(), CliError> {
    if args.out.exists() {
        return Err(CliError::Usage(format!(
            "{} already exists",
            args.out.display()
        )));
    }
    let token = std::fs::read(&args.token).map_err(|source| CliError::Read {
        path: args.token.clone(),
        source,
    })?;
    let secret = std::fs::read_to_string(&args.approver_key).map_err(|source| CliError::Read {
        path: args.approver_key.clone(),
        source,
    })?;
    let key = ApproverKey::from_hex(&secret).map_err(CliError::Usage)?;
    let bad =
        |e: approval::ApprovalError| CliError::Usage(format!("{}: {e}", args.token.display()));
    let decoded = approval::ApprovalToken::decode(&token).map_err(bad)?;
    let cosigned = approval::cosign(&token, &key).map_err(bad)?;
    write_new_private(&args.out, &String::from_utf8_lossy(&cosigned))?;
    let a = &decoded.approval;
    println!(
        "cosigned approval {} for key {} valid {}..{} (Unix time), reason {:?}{}{}: {}",
        a.token_id,
        a.key_id,
        a.not_before,
        a.not_after,
        a.reason,
        a.client
            .as_deref()
            .map(|c| format!(", client {c} only"))
            .unwrap_or_default(),
        a.message_sha256
            .as_deref()
            .map(|m| format!(", message sha256 {m} only"))
            .unwrap_or_default(),
        args.out.display()
    );
    Ok(())
}

/// Writes `contents` to a new file of mode 0600.
pub(super) fn write_new_private(path: &Path, contents: &str) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CliError::Usage(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(contents.as_bytes()).map_err(CliError::Write)?;
    Ok(())
}
