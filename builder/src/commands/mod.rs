//! The top of the binary: [`main`] parses the command line (`cli`), runs one subcommand, and
//! maps its [`Failure`] to the documented exit codes (0 ok, 1 build failed, 2 usage or Dockerfile
//! error). One small module per subcommand; each turns validated options into library calls.

mod bases;
pub mod binfmt;
pub mod build;
pub mod check;
pub mod explain;
pub mod login;
pub mod plan;
mod rootless;
pub mod store;

use std::io::Write;

use clap::Parser;

use crate::cli::{Cli, Command, UsageError};
use crate::errors::error_chain;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: the build failed.
pub const EXIT_BUILD_FAILED: i32 = 1;
/// Exit code: usage error or invalid Dockerfile.
pub const EXIT_USAGE: i32 = 2;

/// An error that ends the command, with the exit code it maps to.
#[derive(Debug)]
pub enum Failure {
    /// Bad flags, Dockerfile or ignore file: exit 2. The message is printed as is.
    Usage(String),
    /// The build itself failed: exit 1.
    Build(anyhow::Error),
    /// Exit with this status, everything already said (buildx's exit code of `--call check`).
    Status(i32),
}

impl From<UsageError> for Failure {
    fn from(e: UsageError) -> Self {
        Failure::Usage(format!("error: {}", error_chain(&e)))
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            // Printing help to a closed pipe is not an error worth reporting.
            let _ = e.print();
            return code;
        }
    };
    if let Some(code) = rootless::enter_if_needed(&cli) {
        return code;
    }
    let result = match cli.command {
        Some(Command::Check(a)) => check::run(&a),
        Some(Command::Build(a)) => build::run(&a),
        Some(Command::Explain(a)) => explain::run(&a),
        Some(Command::Prune(a)) => store::prune(&a),
        Some(Command::Du(a)) => store::du(&a),
        Some(Command::Fsck(a)) => store::fsck(&a),
        Some(Command::Login(a)) => login::run(&a),
        Some(Command::Binfmt(a)) => binfmt::run(&a),
        None => build::run(&cli.build),
    };
    match result {
        Ok(()) => EXIT_OK,
        Err(Failure::Usage(msg)) => {
            let _ = writeln!(std::io::stderr(), "{msg}");
            EXIT_USAGE
        }
        Err(Failure::Build(e)) => {
            let _ = writeln!(std::io::stderr(), "error: {}", error_chain(e.as_ref()));
            EXIT_BUILD_FAILED
        }
        Err(Failure::Status(code)) => code,
    }
}
