//! `enforcer status`: what the running (or last) enforcer does, from its pinned maps and state.

use std::path::Path;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::{
    cli::{Output, Paths},
    commands::table,
    daemon::state,
    datapath::{self, PinnedMaps},
    exit,
};

#[derive(Serialize)]
struct DeniedDevice {
    device: String,
    zone: String,
    denied_packets: u64,
}

#[derive(Serialize)]
struct Report {
    running: bool,
    pid: u32,
    interfaces: Vec<state::Interface>,
    /// Interfaces the policy lists that do not exist now: attached when they appear.
    absent_interfaces: Vec<String>,
    generation: u64,
    digest: String,
    sources: Vec<String>,
    mode: String,
    devices: usize,
    flows: usize,
    /// The pinned flow table's capacity (`limits.flows` as it took effect).
    flow_capacity: u32,
    quarantined: Vec<String>,
    top_denied: Vec<DeniedDevice>,
    last_reload: Option<state::ReloadOutcome>,
    /// A provisional policy (`enforcer apply --confirm`) and when it reverts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<Pending>,
}

/// A provisional policy as the daemon recorded it, checked against the live-policy word.
#[derive(Serialize)]
struct Pending {
    #[serde(flatten)]
    recorded: state::PendingStatus,
    /// Its deadline passed: the program judges with the confirmed policy already (the daemon,
    /// if it is running, makes that permanent at once).
    reverted: bool,
}

/// Whether a process with this pid exists (signal 0 checks without sending anything).
pub(crate) fn process_alive(pid: u32) -> bool {
    i32::try_from(pid)
        .is_ok_and(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok())
}

pub fn run(output: Output, paths: &Paths) -> Result<u8> {
    let pin_dir = paths.pin_dir.as_path();
    let st = match crate::commands::running_status(&paths.state_dir)? {
        Ok(st) => st,
        Err(no) => {
            if output == Output::Json {
                // `running: false` too, so a script asking "is it running?" reads one key.
                let doc = serde_json::json!({
                    "running": false,
                    "error": no.message,
                    "exit": no.code,
                });
                #[expect(clippy::print_stdout, reason = "CLI output")]
                {
                    println!("{doc}");
                }
            }
            return Ok(crate::commands::fail(no.code, &no.message));
        }
    };
    let maps = PinnedMaps::open(pin_dir)
        .with_context(|| format!("open the pinned maps in {} (needs root)", pin_dir.display()))?;
    let report = Report::gather(&st, &maps, pin_dir)?;
    #[expect(clippy::print_stdout, reason = "CLI output")]
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => print!("{}", report.text()),
    }
    Ok(exit::OK)
}

/// Who a device id is, by the daemon's labels: (name, zone).
fn name_of(st: &state::Status, id: u32) -> (String, String) {
    st.devices
        .iter()
        .find(|d| d.id == id)
        .map_or(("unknown".to_owned(), st.unknown_zone.clone()), |d| {
            (d.name.clone(), d.zone.clone())
        })
}

impl Report {
    fn gather(st: &state::Status, maps: &PinnedMaps, pin_dir: &Path) -> Result<Self> {
        let (control, live) = datapath::live_config(maps)?;
        let now = datapath::monotonic_ns();
        // What the daemon recorded holds only while the kernel still has a deadline.
        let pending = st
            .pending
            .clone()
            .filter(|_| control.revert_at_ns != 0)
            .map(|recorded| Pending {
                recorded,
                reverted: control.reverted_at(now),
            });
        Ok(Self {
            running: process_alive(st.pid),
            pid: st.pid,
            interfaces: attached_interfaces(st, pin_dir),
            absent_interfaces: st.absent_interfaces.clone(),
            generation: live.generation,
            digest: st.digest.clone(),
            sources: st.sources.clone(),
            mode: if live.mode == enforcer_common::Mode::Audit as u8 {
                "audit".into()
            } else {
                "enforce".into()
            },
            devices: st.devices.len(),
            flows: datapath::flow_count(maps, now)?,
            flow_capacity: datapath::flow_capacity(maps)?,
            quarantined: datapath::device_states(maps, st.devices.iter().map(|d| d.id))?
                .into_iter()
                .filter(|(_, s)| s.quarantine_until_ns > now)
                .map(|(id, _)| name_of(st, id).0)
                .collect(),
            top_denied: top_denied(st, maps)?,
            last_reload: st.last_reload.clone(),
            pending,
        })
    }

    /// The report as `status` prints it.
    fn text(&self) -> String {
        let mut s = String::new();
        let mut line = |label: &str, value: &str| s.push_str(&format!("{label:<14}{value}\n"));
        let daemon = if self.running {
            format!("running (pid {})", self.pid)
        } else {
            "not running".into()
        };
        line("daemon:", &daemon);
        for i in &self.interfaces {
            line("interface:", &format!("{} ({})", i.name, i.mode));
        }
        for name in &self.absent_interfaces {
            line(
                "interface:",
                &format!("{name} (listed, absent: attached when it appears)"),
            );
        }
        if self.interfaces.is_empty() && self.absent_interfaces.is_empty() {
            line("interface:", "none attached");
        }
        line(
            "policy:",
            &format!(
                "generation {} ({}), digest {}",
                self.generation, self.mode, self.digest
            ),
        );
        if let Some(p) = &self.pending {
            let r = &p.recorded;
            let what = if p.reverted {
                format!(
                    "generation {} ({} of {}) was not confirmed: reverted to generation {} at {}",
                    r.generation, r.origin, r.paths, r.confirmed_generation, r.deadline
                )
            } else {
                format!(
                    "generation {} ({} of {}) reverts to generation {} at {} unless `enforcer confirm`",
                    r.generation, r.origin, r.paths, r.confirmed_generation, r.deadline
                )
            };
            line("pending:", &what);
        }
        line("devices:", &format!("{} listed", self.devices));
        line(
            "flows:",
            &format!(
                "{} of {} (flow table capacity)",
                self.flows, self.flow_capacity
            ),
        );
        let quarantined = if self.quarantined.is_empty() {
            "none".into()
        } else {
            self.quarantined.join(", ")
        };
        line("quarantined:", &quarantined);
        if let Some(r) = &self.last_reload {
            let error = r
                .error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            line(
                "last reload:",
                &format!("{} at {}{error}", r.result, crate::time::rfc3339(r.at)),
            );
        }
        s.push_str("top denied:\n");
        let mut t = table::new(&["DEVICE", "ZONE", "DENIED"], &["DENIED"]);
        for d in &self.top_denied {
            t.add_row(vec![
                d.device.clone(),
                d.zone.clone(),
                d.denied_packets.to_string(),
            ]);
        }
        if !self.top_denied.is_empty() {
            s.push_str(&table::render(&t));
            s.push('\n');
        }
        s
    }
}

/// The interfaces with a pinned link, and the mode the daemon attached each in.
fn attached_interfaces(st: &state::Status, pin_dir: &Path) -> Vec<state::Interface> {
    datapath::pinned_interfaces(pin_dir)
        .into_iter()
        .map(|name| {
            let mode = st
                .interfaces
                .iter()
                .find(|i| i.name == name)
                .map_or("unknown".into(), |i| i.mode.clone());
            state::Interface { name, mode }
        })
        .collect()
}

/// The ten devices (unknown ones as one row) with the most denied packets.
fn top_denied(st: &state::Status, maps: &PinnedMaps) -> Result<Vec<DeniedDevice>> {
    let ids = std::iter::once(0).chain(st.devices.iter().map(|d| d.id));
    let mut top: Vec<DeniedDevice> = datapath::device_counters(maps, ids)?
        .into_iter()
        .filter(|(_, c)| c.packets[1] + c.packets[2] > 0)
        .map(|(id, c)| {
            let (device, zone) = name_of(st, id);
            DeniedDevice {
                device,
                zone,
                denied_packets: c.packets[1] + c.packets[2],
            }
        })
        .collect();
    top.sort_by(|a, b| {
        b.denied_packets
            .cmp(&a.denied_packets)
            .then(a.device.cmp(&b.device))
    });
    top.truncate(10);
    Ok(top)
}
