//! One module per subcommand; `execute` dispatches. Each returns the process exit code.

use std::path::Path;

use anyhow::Result;

use crate::{
    cli::{Cli, Command, Output},
    daemon::state::{self, Status},
    exit,
};

pub mod apply;
pub mod check;
pub mod detach;
pub mod devices;
pub mod explain;
pub mod graph;
pub mod import;
pub mod learn;
pub mod plan;
pub mod quarantine;
pub mod run;
pub mod schema;
pub mod status;
pub mod table;
pub mod test;
pub mod watch;

/// Run a parsed command line; returns the exit code (see [`crate::exit`]).
pub fn execute(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Check { paths, output } => check::run(&paths, output),
        Command::Test { paths, output } => test::run(&paths, output),
        Command::Explain {
            from,
            to,
            service,
            policies,
            output,
            paths,
        } => explain::run(
            &explain::Question { from, to, service },
            &policies,
            output,
            &paths,
        ),
        Command::Plan {
            paths,
            output,
            state_dir,
        } => plan::run(&paths, output, &state_dir),
        Command::Graph(args) => graph::run(&args),
        Command::Run {
            policies,
            ifaces,
            metrics_addr,
            metrics_max_devices,
            control_socket,
            pin_dir,
            state_dir,
            generic,
            confirm_window,
            status_addr,
        } => run::run(crate::daemon::Config {
            policies,
            ifaces,
            uplinks: crate::daemon::Uplinks::Guessed,
            metrics_addr,
            metrics_max_devices,
            control_socket,
            pin_dir,
            state_dir,
            generic,
            confirm_window: confirm_window.map(|w| w.0),
            status_addr,
        }),
        Command::Apply {
            paths,
            confirm,
            output,
            control_socket,
        } => apply::apply(&paths, confirm.map(|w| w.0), output, &control_socket),
        Command::Confirm {
            output,
            control_socket,
        } => apply::confirm(output, &control_socket),
        Command::Status { output, paths } => status::run(output, &paths),
        Command::Detach {
            iface,
            output,
            paths,
        } => detach::run(&paths, iface.as_deref(), output),
        Command::Devices {
            unknown,
            drift,
            output,
            paths,
        } => devices::run(unknown, drift, output, &paths),
        Command::Import(what) => import::run(&what),
        Command::Learn(args) => learn::run(args),
        Command::Quarantine {
            device,
            duration,
            output,
            paths,
        } => quarantine::quarantine(&device, duration.as_deref(), output, &paths),
        Command::Release {
            device,
            output,
            paths,
        } => quarantine::release(&device, output, &paths),
        Command::Watch {
            device,
            zone,
            verdict,
            count,
            output,
            control_socket,
        } => watch::run(
            &watch_filter(device, zone, verdict),
            count,
            output,
            &control_socket,
        ),
        Command::Schema => schema::schema(),
        Command::Completions { shell } => schema::completions(shell),
        Command::Manpages { dir } => schema::manpages(&dir),
    }
}

/// What `enforcer watch` asked to see.
fn watch_filter(
    device: Option<String>,
    zone: Option<String>,
    verdict: Option<crate::cli::WatchVerdict>,
) -> crate::daemon::control::WatchFilter {
    crate::daemon::control::WatchFilter {
        device,
        zone,
        verdict: verdict.map(|v| v.as_str().to_owned()),
    }
}

/// Prints `enforcer: error: MSG` and returns `code`, for a command to exit with.
#[expect(clippy::print_stderr, reason = "CLI diagnostics")]
pub(crate) fn fail(code: u8, msg: &str) -> u8 {
    eprintln!("enforcer: error: {msg}");
    code
}

/// Why a command cannot do its job, and the exit code that says so.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub code: u8,
    pub message: String,
}

impl Refusal {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Says why on stderr and, for `--output json`, also as `{"error": ..., "exit": ...}` on
    /// stdout, so a script reading stdout always gets one JSON document; returns the exit code.
    pub fn report(self, output: Output) -> u8 {
        if output == Output::Json {
            let doc = serde_json::json!({ "error": self.message, "exit": self.code });
            #[expect(clippy::print_stdout, reason = "CLI output")]
            {
                println!("{doc}");
            }
        }
        fail(self.code, &self.message)
    }
}

/// The running (or last) daemon's status, or why there is none to read (none recorded, or this
/// process may not read it: the state directory and the pinned maps are root's).
pub(crate) fn running_status(state_dir: &Path) -> Result<Result<Status, Refusal>> {
    if !crate::daemon::host::is_root() {
        return Ok(Err(Refusal::new(
            exit::ENVIRONMENT,
            "this command needs root: it reads the enforcer's state directory and pinned maps",
        )));
    }
    Ok(state::read(state_dir, state::STATUS_FILE)?.ok_or_else(|| {
        Refusal::new(
            exit::ENVIRONMENT,
            format!(
                "no enforcer state in {} (is `enforcer run` running?)",
                state_dir.display()
            ),
        )
    }))
}

/// Connects to the daemon's control socket for `command`, or says plainly why not (exit 3): not
/// root, or no daemon listening.
pub(crate) fn connect_daemon(
    socket: &Path,
    command: &str,
) -> Result<std::os::unix::net::UnixStream, Refusal> {
    use std::io::ErrorKind;
    std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
        let why = match e.kind() {
            ErrorKind::PermissionDenied => format!(
                "{command} needs root: the control socket {} is root's",
                socket.display()
            ),
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => format!(
                "no enforcer daemon listens on {} (is `enforcer run` running, with this --control-socket?)",
                socket.display()
            ),
            _ => format!("cannot connect to {}: {e}", socket.display()),
        };
        Refusal::new(exit::ENVIRONMENT, why)
    })
}

/// Reports an operator's action to the running daemon, for its audit trail (`enforcer::audit`
/// in its log, with the caller's uid and pid). Best effort: the action is done already, and with
/// no daemon listening there is nobody to tell.
pub(crate) fn tell_daemon(socket: &Path, action: crate::daemon::control::OperatorAction) {
    use std::io::{BufRead as _, Write as _};
    let told = (|| -> std::io::Result<()> {
        let stream = std::os::unix::net::UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        stream.set_write_timeout(Some(std::time::Duration::from_secs(2)))?;
        let mut line = serde_json::to_string(&crate::daemon::control::Request::Audit(action))
            .map_err(std::io::Error::other)?;
        line.push('\n');
        (&stream).write_all(line.as_bytes())?;
        // Wait for the daemon's answer, so the record is written before this command exits.
        let mut answer = String::new();
        std::io::BufReader::new(&stream).read_line(&mut answer)?;
        Ok(())
    })();
    if let Err(e) = told {
        tracing::debug!(socket = %socket.display(), error = %e, "no daemon told of the action");
    }
}
