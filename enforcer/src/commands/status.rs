//! `enforcer status`: what the running (or last) enforcer does, from its pinned maps and state.

use std::path::Path;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::{
    cli::Output,
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
    generation: u64,
    digest: String,
    sources: Vec<String>,
    mode: String,
    devices: usize,
    flows: usize,
    quarantined: Vec<String>,
    top_denied: Vec<DeniedDevice>,
    last_reload: Option<state::ReloadOutcome>,
}

fn process_alive(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(|p| {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(p, 0) == 0 }
    })
}

pub fn run(output: Output, pin_dir: &Path, state_dir: &Path) -> Result<u8> {
    let st = match crate::commands::running_status(state_dir)? {
        Ok(st) => st,
        Err(code) => return Ok(code),
    };
    let maps = PinnedMaps::open(pin_dir)
        .with_context(|| format!("open the pinned maps in {} (needs root)", pin_dir.display()))?;
    let (_, live) = datapath::live_config(&maps)?;
    let now = datapath::monotonic_ns();
    let ids: Vec<u32> = std::iter::once(0)
        .chain(st.devices.iter().map(|d| d.id))
        .collect();
    let name_of = |id: u32| {
        st.devices
            .iter()
            .find(|d| d.id == id)
            .map_or(("unknown".to_owned(), st.unknown_zone.clone()), |d| {
                (d.name.clone(), d.zone.clone())
            })
    };
    let mut top: Vec<DeniedDevice> = datapath::device_counters(&maps, ids.iter().copied())?
        .into_iter()
        .filter(|(_, c)| c.packets[1] + c.packets[2] > 0)
        .map(|(id, c)| {
            let (device, zone) = name_of(id);
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
    let quarantined = datapath::device_states(&maps, st.devices.iter().map(|d| d.id))?
        .into_iter()
        .filter(|(_, s)| s.quarantine_until_ns > now)
        .map(|(id, _)| name_of(id).0)
        .collect();
    let report = Report {
        running: process_alive(st.pid),
        pid: st.pid,
        interfaces: datapath::pinned_interfaces(pin_dir)
            .into_iter()
            .map(|name| {
                let mode = st
                    .interfaces
                    .iter()
                    .find(|i| i.name == name)
                    .map_or("unknown".into(), |i| i.mode.clone());
                state::Interface { name, mode }
            })
            .collect(),
        generation: live.generation,
        digest: st.digest.clone(),
        sources: st.sources.clone(),
        mode: if live.mode == enforcer_common::Mode::Audit as u8 {
            "audit".into()
        } else {
            "enforce".into()
        },
        devices: st.devices.len(),
        flows: datapath::flow_count(&maps, now)?,
        quarantined,
        top_denied: top,
        last_reload: st.last_reload.clone(),
    };
    #[expect(clippy::print_stdout, reason = "CLI output")]
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => {
            let daemon = if report.running {
                format!("running (pid {})", report.pid)
            } else {
                "not running".into()
            };
            println!("daemon:       {daemon}");
            for i in &report.interfaces {
                println!("interface:    {} ({})", i.name, i.mode);
            }
            if report.interfaces.is_empty() {
                println!("interface:    none attached");
            }
            println!(
                "policy:       generation {} ({}), digest {}",
                report.generation, report.mode, report.digest
            );
            println!("devices:      {} listed", report.devices);
            println!("flows:        {}", report.flows);
            println!(
                "quarantined:  {}",
                if report.quarantined.is_empty() {
                    "none".into()
                } else {
                    report.quarantined.join(", ")
                }
            );
            if let Some(r) = &report.last_reload {
                println!(
                    "last reload:  {} at {}{}",
                    r.result,
                    r.at,
                    r.error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                );
            }
            println!("top denied:");
            for d in &report.top_denied {
                println!("  {:<24} {:<16} {}", d.device, d.zone, d.denied_packets);
            }
        }
    }
    Ok(exit::OK)
}
