//! `quorate-ceremony audit verify`: fetch a node's audit log as an auditor and
//! check its hash chain.

use std::path::PathBuf;

use clap::Subcommand;
use quorate_transport::tls::TlsPaths;

use super::error::CliError;
use crate::audit;

#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
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

/// Runs an `audit` command.
pub(super) fn run(command: AuditCommand) -> Result<(), CliError> {
    match command {
        AuditCommand::Verify {
            endpoint,
            node,
            ca,
            cert,
            key,
            print,
        } => {
            let tls = TlsPaths { ca, cert, key };
            let runtime = tokio::runtime::Runtime::new().map_err(CliError::Runtime)?;
            let records = runtime.block_on(audit::fetch(&endpoint, &node, &tls))?;
            if print {
                for (_, bytes) in &records {
                    println!("{}", String::from_utf8_lossy(bytes));
                }
            }
            let report = audit::check(&records);
            match report.head {
                Ok(head) => {
                    println!(
                        "{node}: {} records, chain intact, head {head}",
                        report.records
                    );
                    Ok(())
                }
                Err(brk) => Err(CliError::AuditChainBroken {
                    node,
                    brk,
                    records: report.records,
                }),
            }
        }
    }
}
