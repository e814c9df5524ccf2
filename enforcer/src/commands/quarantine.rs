//! `enforcer quarantine` and `enforcer release`: the operator moves a listed device into or out of
//! the quarantine zone. The running datapath applies it at the device's next packet.

use anyhow::Result;
use enforcer_common::state::{QUARANTINE_FOREVER, QuarantineReason};
use serde::Serialize;

use crate::{
    cli::{Output, Paths},
    commands::{Refusal, running_status, tell_daemon},
    daemon::{
        control::OperatorAction,
        state::{DeviceLabel, Status},
    },
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

/// What `quarantine` and `release` did, for `--output json`.
#[derive(Serialize)]
struct Done<'a> {
    device: &'a str,
    zone: &'a str,
    /// Whether the device is in quarantine now.
    quarantined: bool,
    /// Whether this command changed anything (`release` of a device not in quarantine does not).
    changed: bool,
    /// How long the quarantine lasts (`quarantine --for`); absent: until released.
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<&'a str>,
    /// What this command did, as the text output says it.
    message: String,
}

impl Done<'_> {
    fn print(&self, output: Output) -> Result<u8> {
        #[expect(clippy::print_stdout, reason = "CLI output")]
        match output {
            Output::Json => println!("{}", serde_json::to_string(self)?),
            Output::Text => println!("{}", self.message),
        }
        Ok(exit::OK)
    }
}

/// The listed device `key` of the running policy, or why the command cannot go on.
fn listed_device(paths: &Paths, key: &str) -> Result<Result<(Status, DeviceLabel), Refusal>> {
    let st = match running_status(&paths.state_dir)? {
        Ok(st) => st,
        Err(no) => return Ok(Err(no)),
    };
    let Some(d) = find_device(&st, key).cloned() else {
        return Ok(Err(Refusal::new(
            exit::INVALID,
            format!(
                "`{key}` is no listed device of the running policy (unlisted devices are already in the unknown zone)"
            ),
        )));
    };
    Ok(Ok((st, d)))
}

/// `enforcer quarantine DEVICE [--for DURATION]`.
pub fn quarantine(
    device: &str,
    duration: Option<&str>,
    output: Output,
    paths: &Paths,
) -> Result<u8> {
    let seconds = match duration
        .map(crate::policy::model::parse_duration)
        .transpose()
    {
        Ok(s) => s,
        Err(p) => {
            return Ok(
                Refusal::new(exit::USAGE, format!("{}; {}", p.message, p.hint)).report(output),
            );
        }
    };
    let (st, d) = match listed_device(paths, device)? {
        Ok(found) => found,
        Err(no) => return Ok(no.report(output)),
    };
    if st.quarantine_zone.is_none() {
        return Ok(Refusal::new(
            exit::INVALID,
            "the running policy has no `quarantine:` section (which zone?)",
        )
        .report(output));
    }
    let until = seconds.map_or(QUARANTINE_FOREVER, |s| {
        datapath::monotonic_ns() + u64::from(s) * 1_000_000_000
    });
    PinnedMaps::open(&paths.pin_dir)?.set_quarantine(d.id, until, QuarantineReason::Operator)?;
    tracing::warn!(device = %d.name, zone = %d.zone, duration = duration.unwrap_or("until released"), "device quarantined by the operator");
    tell_daemon(
        &paths.control_socket,
        OperatorAction {
            action: "quarantine".to_owned(),
            target: d.name.clone(),
            detail: Some(duration.unwrap_or("until released").to_owned()),
        },
    );
    Done {
        device: &d.name,
        zone: &d.zone,
        quarantined: true,
        changed: true,
        duration,
        message: format!(
            "{} quarantined {}",
            d.name,
            duration.map_or_else(|| "until released".to_owned(), |d| format!("for {d}"))
        ),
    }
    .print(output)
}

/// `enforcer release DEVICE`. Releasing a device that is not in quarantine changes nothing and
/// says so (exit 0: the device is out of quarantine, as asked).
pub fn release(device: &str, output: Output, paths: &Paths) -> Result<u8> {
    let (_, d) = match listed_device(paths, device)? {
        Ok(found) => found,
        Err(no) => return Ok(no.report(output)),
    };
    let mut maps = PinnedMaps::open(&paths.pin_dir)?;
    let now = datapath::monotonic_ns();
    let was_quarantined = datapath::device_states(&maps, [d.id])?
        .first()
        .is_some_and(|(_, s)| s.quarantine_until_ns > now);
    let message = if was_quarantined {
        maps.set_quarantine(d.id, 0, QuarantineReason::None)?;
        tracing::info!(device = %d.name, "device released from quarantine by the operator");
        tell_daemon(
            &paths.control_socket,
            OperatorAction {
                action: "release".to_owned(),
                target: d.name.clone(),
                detail: None,
            },
        );
        format!("{} released", d.name)
    } else {
        format!("{} is not in quarantine; nothing changed", d.name)
    };
    Done {
        device: &d.name,
        zone: &d.zone,
        quarantined: false,
        changed: was_quarantined,
        duration: None,
        message,
    }
    .print(output)
}
