//! `enforcer detach`: remove what the enforcer attached and pinned.

use std::path::Path;

use anyhow::Result;

use crate::{datapath, exit};

pub fn run(pin_dir: &Path, state_dir: &Path, iface: Option<&str>) -> Result<u8> {
    if !crate::daemon::host::is_root() {
        #[expect(clippy::print_stderr, reason = "CLI diagnostics")]
        {
            eprintln!("enforcer: error: detach needs root");
        }
        return Ok(exit::ENVIRONMENT);
    }
    let before = datapath::pinned_interfaces(pin_dir);
    if let Some(i) = iface
        && !before.iter().any(|b| b == i)
    {
        #[expect(clippy::print_stderr, reason = "CLI diagnostics")]
        {
            eprintln!(
                "enforcer: error: {i} is not attached (pinned under {})",
                pin_dir.display()
            );
        }
        return Ok(exit::ENVIRONMENT);
    }
    let done = datapath::detach(pin_dir, iface)?;
    if datapath::pinned_interfaces(pin_dir).is_empty() {
        // Nothing is enforced any more: the recorded state describes nothing.
        for f in [
            crate::daemon::state::STATUS_FILE,
            crate::daemon::state::APPLIED_FILE,
        ] {
            let _absent_is_fine = std::fs::remove_file(state_dir.join(f));
        }
    }
    #[expect(clippy::print_stdout, reason = "CLI output")]
    {
        if done.is_empty() {
            println!("nothing attached under {}", pin_dir.display());
        }
        for i in &done {
            println!("detached {i}");
        }
    }
    Ok(exit::OK)
}
