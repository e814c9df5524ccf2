//! One module per subcommand; `execute` dispatches. Each returns the process exit code.

use anyhow::Result;

use crate::cli::{Cli, Command};

/// Run a parsed command line; returns the exit code (see [`crate::exit`]).
pub fn execute(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Check { .. }
        | Command::Plan { .. }
        | Command::Run { .. }
        | Command::Status { .. }
        | Command::Detach { .. }
        | Command::Devices { .. }
        | Command::Quarantine { .. }
        | Command::Release { .. } => anyhow::bail!("not implemented yet"),
    }
}
