//! One module per subcommand; `execute` dispatches. Each returns the process exit code.

use std::path::Path;

use anyhow::Result;

use crate::{
    cli::{Cli, Command},
    daemon::state::{self, Status},
    exit,
};

pub mod check;
pub mod detach;
pub mod devices;
pub mod plan;
pub mod quarantine;
pub mod run;
pub mod schema;
pub mod status;
pub mod table;

/// Run a parsed command line; returns the exit code (see [`crate::exit`]).
pub fn execute(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Check { path, output } => check::run(&path, output),
        Command::Plan {
            path,
            output,
            state_dir,
        } => plan::run(&path, output, &state_dir),
        Command::Run {
            policy,
            ifaces,
            metrics_addr,
            metrics_max_devices,
            pin_dir,
            state_dir,
            generic,
        } => run::run(crate::daemon::Config {
            policy,
            ifaces,
            metrics_addr,
            metrics_max_devices,
            pin_dir,
            state_dir,
            generic,
        }),
        Command::Status {
            output,
            pin_dir,
            state_dir,
        } => status::run(output, &pin_dir, &state_dir),
        Command::Detach {
            iface,
            pin_dir,
            state_dir,
        } => detach::run(&pin_dir, &state_dir, iface.as_deref()),
        Command::Devices {
            unknown,
            output,
            pin_dir,
            state_dir,
        } => devices::run(unknown, output, &pin_dir, &state_dir),
        Command::Quarantine {
            device,
            duration,
            pin_dir,
            state_dir,
        } => quarantine::quarantine(&device, duration.as_deref(), &pin_dir, &state_dir),
        Command::Release {
            device,
            pin_dir,
            state_dir,
        } => quarantine::release(&device, &pin_dir, &state_dir),
        Command::Schema => schema::schema(),
        Command::Completions { shell } => schema::completions(shell),
        Command::Manpages { dir } => schema::manpages(&dir),
    }
}

/// Prints `enforcer: error: MSG` and returns `code`, for a command to exit with.
#[expect(clippy::print_stderr, reason = "CLI diagnostics")]
pub(crate) fn fail(code: u8, msg: &str) -> u8 {
    eprintln!("enforcer: error: {msg}");
    code
}

/// The running (or last) daemon's status, or the exit code when there is none or this process
/// may not read it (the state directory and the pinned maps are root's).
pub(crate) fn running_status(state_dir: &Path) -> Result<Result<Status, u8>> {
    if !crate::daemon::host::is_root() {
        return Ok(Err(fail(
            exit::ENVIRONMENT,
            "this command needs root: it reads the enforcer's state directory and pinned maps",
        )));
    }
    Ok(state::read(state_dir, state::STATUS_FILE)?.ok_or_else(|| {
        fail(
            exit::ENVIRONMENT,
            &format!(
                "no enforcer state in {} (is `enforcer run` running?)",
                state_dir.display()
            ),
        )
    }))
}
