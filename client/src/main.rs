//! `quorate`: parse, run, map the outcome to an exit code (0 ok, 1 failed, 64 usage
//! or configuration; see `quorate --help`).

use std::process::ExitCode;

use clap::Parser;
use quorate_client::cli::{self, Cli, CliError};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                cli::EXIT_USAGE
            } else {
                cli::EXIT_OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("quorate: cannot start the runtime: {e}");
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::from(cli::EXIT_OK),
        // `verify` has printed its verdict on stdout already.
        Err(CliError::Negative(_)) => ExitCode::from(cli::EXIT_FAILURE),
        Err(e) => {
            eprintln!("quorate: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
