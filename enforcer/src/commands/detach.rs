//! `enforcer detach`: remove what the enforcer attached and pinned.

use anyhow::Result;
use serde::Serialize;

use crate::{
    cli::{Output, Paths},
    commands::{Refusal, tell_daemon},
    daemon::control::OperatorAction,
    datapath, exit,
};

/// What `detach` did, for `--output json`.
#[derive(Serialize)]
struct Detached {
    /// Interfaces detached by this command.
    detached: Vec<String>,
    /// Interfaces still attached afterwards (with `--iface`, the others).
    still_attached: Vec<String>,
}

pub fn run(paths: &Paths, iface: Option<&str>, output: Output) -> Result<u8> {
    let pin_dir = paths.pin_dir.as_path();
    if !crate::daemon::host::is_root() {
        return Ok(Refusal::new(exit::ENVIRONMENT, "detach needs root").report(output));
    }
    let before = datapath::pinned_interfaces(pin_dir);
    if let Some(i) = iface
        && !before.iter().any(|b| b == i)
    {
        return Ok(Refusal::new(
            exit::ENVIRONMENT,
            format!("{i} is not attached (pinned under {})", pin_dir.display()),
        )
        .report(output));
    }
    let detached = datapath::detach(pin_dir, iface)?;
    let still_attached = datapath::pinned_interfaces(pin_dir);
    if still_attached.is_empty() {
        // Nothing is enforced any more: the recorded state describes nothing.
        for f in [
            crate::daemon::state::STATUS_FILE,
            crate::daemon::state::APPLIED_FILE,
        ] {
            let _absent_is_fine = std::fs::remove_file(paths.state_dir.join(f));
        }
    }
    for i in &detached {
        tracing::info!(iface = %i, "detached by the operator");
    }
    if !detached.is_empty() {
        // The daemon (still running, when only one interface was detached) keeps the record.
        tell_daemon(
            &paths.control_socket,
            OperatorAction {
                action: "detach".to_owned(),
                target: detached.join(","),
                detail: None,
            },
        );
    }
    #[expect(clippy::print_stdout, reason = "CLI output")]
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string(&Detached {
                detached,
                still_attached
            })?
        ),
        Output::Text => {
            if detached.is_empty() {
                println!("nothing attached under {}", pin_dir.display());
            }
            for i in &detached {
                println!("detached {i}");
            }
        }
    }
    Ok(exit::OK)
}
