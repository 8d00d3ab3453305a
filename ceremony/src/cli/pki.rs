//! `quorate-ceremony pki init` and `pki issue`: the development PKI.

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
    /// URI, DNS NAME, DNS localhost, IP 127.0.0.1 and each --dns. Valid for two years,
    /// for client authentication, and for server authentication only for the server
    /// roles node and coordinator. A node's certificate carries its region and
    /// jurisdiction (both required for --role node, refused for other roles).
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
    },
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
        } => {
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
            let issued = pki::issue(&dir, &trust_domain, role, &name, location.as_ref(), &dns)?;
            println!("certificate for spiffe://{trust_domain}/{role}/{name}:");
            if let Some(location) = &location {
                println!("  location:    {location}");
            }
            println!("  certificate: {}", issued.cert.display());
            println!("  private key: {}", issued.key.display());
            println!("  CA:          {}", issued.ca.display());
            Ok(())
        }
    }
}
