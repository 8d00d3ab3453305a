//! `quorate-ceremony`: key ceremonies and the dev PKI. Parses arguments, runs one
//! command from the library ([`quorate_ceremony::cli`]), maps errors to exit codes
//! (64 usage/config, 1 failure, 10-15 what `audit verify` found in a node's log,
//! 20-21 what reconciling several nodes' logs found).

use std::process::ExitCode;

use clap::Parser;
use quorate_ceremony::cli::{self, Cli, CliError};
use quorate_transport::runtime::{init_tracing, LogFormat};

/// Exit code for usage and configuration errors (BSD `EX_USAGE`).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    quorate_transport::install_crypto_provider();
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
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = exit_code(&err);
            let err = anyhow::Error::from(err);
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(code)
        }
    }
}

fn exit_code(err: &CliError) -> u8 {
    if err.is_usage() {
        EXIT_USAGE
    } else {
        err.audit_exit_code().unwrap_or(1)
    }
}
