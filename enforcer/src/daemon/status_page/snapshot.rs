//! What the page shows, read as `enforcer status` and `enforcer devices` read it: the status and
//! the applied policy from the state directory, the devices from the pinned maps. A part that
//! cannot be read is shown as why not, and the rest of the page still is.

use std::path::Path;

use crate::{
    daemon::{
        control::WatchEvent,
        error_chain,
        state::{self, Status},
    },
    policy::PlanView,
};

/// Everything one page shows.
#[derive(Debug)]
pub struct Snapshot {
    pub status: Result<Status, String>,
    /// The applied policy, for the zone graph.
    pub applied: Result<PlanView, String>,
    /// The inventory as `enforcer devices --output json` prints it (`listed`, `unknown`).
    pub devices: Result<serde_json::Value, String>,
    /// The latest deny, audit and quarantine events, newest first.
    pub recent: Vec<WatchEvent>,
}

impl Snapshot {
    /// Reads the daemon's state directory and pinned maps.
    #[must_use]
    pub fn read(pin_dir: &Path, state_dir: &Path, recent: Vec<WatchEvent>) -> Self {
        let record = |name: &str| format!("no {name} recorded in {} yet", state_dir.display());
        let status = state::read::<Status>(state_dir, state::STATUS_FILE)
            .map_err(|e| error_chain(&e))
            .and_then(|s| s.ok_or_else(|| record(state::STATUS_FILE)));
        let applied = state::read::<PlanView>(state_dir, state::APPLIED_FILE)
            .map_err(|e| error_chain(&e))
            .and_then(|s| s.ok_or_else(|| record(state::APPLIED_FILE)));
        let devices = match &status {
            Ok(st) => crate::commands::devices::inventory(pin_dir, state_dir, st)
                .map_err(|e| format!("{e:#}")),
            Err(why) => Err(why.clone()),
        };
        Self {
            status,
            applied,
            devices,
            recent,
        }
    }
}
