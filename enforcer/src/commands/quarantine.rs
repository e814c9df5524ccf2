//! `enforcer quarantine` and `enforcer release`: the operator moves a listed device into or out of
//! the quarantine zone. The running datapath applies it at the device's next packet.

use std::path::Path;

use anyhow::Result;
use enforcer_common::state::{QUARANTINE_FOREVER, QuarantineReason};

use crate::{
    commands::{fail, running_status},
    daemon::state::{DeviceLabel, Status},
    datapath::{self, PinnedMaps},
    exit,
};

/// Finds a listed device by name or MAC (any case, `:` or `-` separated).
pub(crate) fn find_device<'a>(st: &'a Status, key: &str) -> Option<&'a DeviceLabel> {
    let norm = key.to_ascii_lowercase().replace('-', ":");
    st.devices
        .iter()
        .find(|d| d.name == key || d.mac.as_deref() == Some(norm.as_str()))
}

/// `enforcer quarantine DEVICE [--for DURATION]`.
pub fn quarantine(
    device: &str,
    duration: Option<&str>,
    pin_dir: &Path,
    state_dir: &Path,
) -> Result<u8> {
    let seconds = match duration
        .map(crate::policy::model::parse_duration)
        .transpose()
    {
        Ok(s) => s,
        Err(p) => return Ok(fail(exit::USAGE, &format!("{}; {}", p.message, p.hint))),
    };
    let st = match running_status(state_dir)? {
        Ok(st) => st,
        Err(code) => return Ok(code),
    };
    if st.quarantine_zone.is_none() {
        return Ok(fail(
            exit::INVALID,
            "the running policy has no `quarantine:` section (which zone?)",
        ));
    }
    let Some(d) = find_device(&st, device) else {
        return Ok(fail(
            exit::INVALID,
            &format!(
                "`{device}` is no listed device (unlisted devices are already in the unknown zone)"
            ),
        ));
    };
    let until = seconds.map_or(QUARANTINE_FOREVER, |s| {
        datapath::monotonic_ns() + u64::from(s) * 1_000_000_000
    });
    PinnedMaps::open(pin_dir)?.set_quarantine(d.id, until, QuarantineReason::Operator)?;
    tracing::warn!(device = %d.name, zone = %d.zone, duration = duration.unwrap_or("until released"), "device quarantined by the operator");
    #[expect(clippy::print_stdout, reason = "CLI output")]
    {
        println!(
            "{} quarantined {}",
            d.name,
            duration.map_or_else(|| "until released".to_owned(), |d| format!("for {d}"))
        );
    }
    Ok(exit::OK)
}

/// `enforcer release DEVICE`.
pub fn release(device: &str, pin_dir: &Path, state_dir: &Path) -> Result<u8> {
    let st = match running_status(state_dir)? {
        Ok(st) => st,
        Err(code) => return Ok(code),
    };
    let Some(d) = find_device(&st, device) else {
        return Ok(fail(
            exit::INVALID,
            &format!("`{device}` is no listed device"),
        ));
    };
    PinnedMaps::open(pin_dir)?.set_quarantine(d.id, 0, QuarantineReason::None)?;
    tracing::info!(device = %d.name, "device released from quarantine by the operator");
    #[expect(clippy::print_stdout, reason = "CLI output")]
    {
        println!("{} released", d.name);
    }
    Ok(exit::OK)
}
