//! Entry point: parse the command line, run it, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser as _;
use enforcer::{cli::Cli, commands, exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    enforcer::logging::init(cli.log_format);
    match commands::execute(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            #[expect(clippy::print_stderr, reason = "last-resort error report of the CLI")]
            {
                eprintln!("enforcer: error: {err:#}");
            }
            ExitCode::from(exit::INTERNAL)
        }
    }
}
