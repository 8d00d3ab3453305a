//! `quorate-ceremony pki init`, `pki issue` and `pki renew`: the development PKI.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use quorate_transport::identity::{Location, Role};

use super::error::CliError;
use crate::pki;

#[derive(Debug, Subcommand)]
pub(super) enum PkiCommand {
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
    /// URI, DNS NAME, DNS localhost, IP 127.0.0.1 and each --dns. Valid for two years
    /// (or --valid-for), for client authentication, and for server authentication only
    /// for the server roles node and coordinator. A node's certificate carries its
    /// region and jurisdiction (both required for --role node, refused for other
    /// roles).
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
        /// The node's region, e.g. eu-central-sov (role node only; required).
        #[arg(long, value_name = "REGION")]
        region: Option<String>,
        /// The node's jurisdiction, e.g. EU (role node only; required).
        #[arg(long, value_name = "JURISDICTION")]
        jurisdiction: Option<String>,
        /// Extra DNS name or IP address for the certificate (repeatable).
        #[arg(long = "dns", value_name = "HOST")]
        dns: Vec<String>,
        /// How long from now the certificate is valid: a number with a unit s, m,
        /// h or d (e.g. 2m, 12h, 90d). Default: two years.
        #[arg(long, value_name = "DURATION")]
        valid_for: Option<String>,
    },
    /// Renew the certificate of ROLE/NAME in DIR: a new key and certificate for the
    /// same identity, location and DNS names, replacing DIR/ROLE-NAME.pem and
    /// DIR/ROLE-NAME-key.pem (each written whole and renamed into place).
    ///
    /// Running nodes, coordinators and clients that use the files pick the new
    /// certificate up within seconds (or at once on SIGHUP), without a restart.
    Renew {
        /// Directory holding the CA and the certificate.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The holder's role.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// The holder's name, e.g. node-1.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// How long from now the new certificate is valid (as for issue). Default:
        /// two years.
        #[arg(long, value_name = "DURATION")]
        valid_for: Option<String>,
    },
}

fn validity(text: Option<&str>) -> Result<time::Duration, pki::PkiError> {
    text.map(pki::parse_validity)
        .unwrap_or(Ok(pki::LEAF_VALIDITY))
}

fn print_issued(identity: &str, issued: &pki::IssuedCert) -> Result<(), CliError> {
    let pem = std::fs::read(&issued.cert).map_err(|source| pki::PkiError::Io {
        path: issued.cert.clone(),
        writing: false,
        source,
    })?;
    let (_, parsed) =
        x509_parser::pem::parse_x509_pem(&pem).map_err(|e| pki::PkiError::BadPem(e.to_string()))?;
    let cert = parsed
        .parse_x509()
        .map_err(|e| pki::PkiError::BadPem(e.to_string()))?;
    println!("certificate for {identity}:");
    println!("  certificate: {}", issued.cert.display());
    println!("  private key: {}", issued.key.display());
    println!("  CA:          {}", issued.ca.display());
    println!("  sha256:      {}", pki::fingerprint_pem(&pem)?);
    println!("  valid until: {}", cert.validity().not_after);
    Ok(())
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(super) enum RoleArg {
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

/// Runs a `pki` command.
pub(super) fn run(command: PkiCommand) -> Result<(), CliError> {
    match command {
        PkiCommand::Init { dir, trust_domain } => {
            let ca = pki::create_ca(&dir, &trust_domain)?;
            println!("CA for trust domain {trust_domain}:");
            println!("  certificate: {}", ca.cert.display());
            println!("  private key: {}", ca.key.display());
            Ok(())
        }
        PkiCommand::Issue {
            dir,
            trust_domain,
            role,
            name,
            region,
            jurisdiction,
            dns,
            valid_for,
        } => {
            let valid_for = validity(valid_for.as_deref())?;
            let role = Role::from(role);
            let location = match (region, jurisdiction) {
                (None, None) => None,
                (Some(region), Some(jurisdiction)) => Some(
                    Location::new(&region, &jurisdiction)
                        .map_err(|e| pki::PkiError::Location(e.to_string()))?,
                ),
                _ => {
                    return Err(pki::PkiError::Location(
                        "--region and --jurisdiction go together".into(),
                    )
                    .into())
                }
            };
            let issued = pki::issue_valid(
                &dir,
                &trust_domain,
                role,
                &name,
                location.as_ref(),
                &dns,
                valid_for,
            )?;
            if let Some(location) = &location {
                println!("location: {location}");
            }
            print_issued(&format!("spiffe://{trust_domain}/{role}/{name}"), &issued)
        }
        PkiCommand::Renew {
            dir,
            role,
            name,
            valid_for,
        } => {
            let valid_for = validity(valid_for.as_deref())?;
            let role = Role::from(role);
            let issued = pki::renew(&dir, role, &name, valid_for)?;
            print_issued(&format!("{role}/{name} (renewed)"), &issued)
        }
    }
}
