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
        /// The node's endpoint, https://host:port (anything else is refused: the
        /// log is read over mTLS pinned to the node's certificate).
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
            // The log is trusted only as read from the node itself, over mTLS
            // pinned to its certificate: a plaintext endpoint is a usage mistake.
            if !endpoint.starts_with("https://") {
                return Err(CliError::Usage(format!(
                    "--endpoint {endpoint:?} is not an https://host:port URL: the audit log \
                     is read over mTLS, pinned to the certificate of node {node:?}"
                )));
            }
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
