//! One module per subcommand; `execute` dispatches. Each returns the process exit code.

use anyhow::Result;

use crate::cli::{Cli, Command};

pub mod check;
pub mod plan;

/// Run a parsed command line; returns the exit code (see [`crate::exit`]).
pub fn execute(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Check { path, output } => check::run(&path, output),
        Command::Plan { path, output, state_dir } => plan::run(&path, output, &state_dir),
        Command::Run { .. }
        | Command::Status { .. }
        | Command::Detach { .. }
        | Command::Devices { .. }
        | Command::Quarantine { .. }
        | Command::Release { .. } => anyhow::bail!("not implemented yet"),
    }
}
