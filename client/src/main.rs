//! `quorate`: parse, run, map the outcome to an exit code (0 ok, 1 failed, 64 usage
//! or configuration; see `quorate --help`). Called with ssh-keygen's `-Y` arguments
//! (as git's `gpg.ssh.program`), it signs as `ssh-keygen -Y sign` would and hands
//! other `-Y` operations to ssh-keygen.

use std::process::ExitCode;

use clap::Parser;
use quorate_client::cli::ssh::{self, SshKeygenArgs};
use quorate_client::cli::{self, Cli, CliError};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match ssh::ssh_keygen_call(&args) {
        Some(true) => match parse::<SshKeygenArgs>(&args) {
            Ok(keygen) => run(ssh::run_ssh_keygen_sign(keygen)),
            Err(code) => code,
        },
        Some(false) => match ssh::run_ssh_keygen(&args) {
            Ok(code) => ExitCode::from(code),
            Err(e) => exit_with(e),
        },
        None => match parse::<Cli>(&args) {
            Ok(cli) => run(cli::run(cli)),
            Err(code) => code,
        },
    }
}

/// The parsed command line, or the exit code after clap printed help or an error.
fn parse<P: Parser>(args: &[std::ffi::OsString]) -> Result<P, ExitCode> {
    P::try_parse_from(args).map_err(|e| {
        let code = if e.use_stderr() {
            cli::EXIT_USAGE
        } else {
            cli::EXIT_OK
        };
        let _ = e.print();
        ExitCode::from(code)
    })
}

fn run(command: impl std::future::Future<Output = Result<(), CliError>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("quorate: cannot start the runtime: {e}");
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::from(cli::EXIT_OK),
        Err(e) => exit_with(e),
    }
}

fn exit_with(e: CliError) -> ExitCode {
    match e {
        // `verify` has printed its verdict on stdout already.
        CliError::Negative(_) => ExitCode::from(cli::EXIT_FAILURE),
        e => {
            eprintln!("quorate: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
