//! `enforcer devices`: the inventory as the datapath sees it: listed devices with their zone,
//! inventory, counters and state, and the unlisted ones it discovered. `--output yaml` prints the
//! discovered ones as `devices:` entries ready to paste into the policy repo.

use std::{collections::BTreeMap, path::Path};

use anyhow::Result;
use enforcer_common::{FAMILY_V4, FAMILY_V6, state::QuarantineReason};
use serde::Serialize;

use crate::{
    cli::DevicesOutput,
    daemon::{
        events::{event_addr, ifname},
        state::{self, Status},
    },
    datapath::{self, PinnedMaps},
    exit,
    policy::compiled::Inventory,
};

#[derive(Serialize)]
struct Traffic {
    allow: u64,
    deny: u64,
    audit: u64,
}

#[derive(Serialize)]
struct Listed {
    name: String,
    zone: String,
    /// ok, quarantined or spoofing.
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    quarantine_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
    addresses: Vec<String>,
    #[serde(flatten)]
    inventory: Inventory,
    /// RFC 3339, absent when never seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen: Option<String>,
    packets: Traffic,
    bytes: Traffic,
    spoofed_packets: u64,
}

#[derive(Serialize)]
struct Discovered {
    mac: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipv4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipv6: Option<String>,
    interface: String,
    vlan: u16,
    first_seen: String,
    last_seen: String,
    packets: u64,
    /// What it last tried to reach.
    last_destination: String,
    last_port: u16,
    last_protocol: u8,
}

#[derive(Serialize)]
struct Inventoried {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    listed: Vec<Listed>,
    unknown: Vec<Discovered>,
}

/// RFC 3339 (UTC, seconds) for a Unix time.
fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Wall-clock time of a monotonic (`bpf_ktime_get_ns`) timestamp.
fn wall(mono_ns: u64, now_mono: u64, now_unix: u64) -> String {
    rfc3339(now_unix.saturating_sub(now_mono.saturating_sub(mono_ns) / 1_000_000_000))
}

fn mac_text(mac: &[u8; 6]) -> String {
    crate::policy::model::fmt_mac(*mac)
}

fn listed(maps: &PinnedMaps, st: &Status, now_mono: u64, now_unix: u64) -> Result<Vec<Listed>> {
    let ids: Vec<u32> = st.devices.iter().map(|d| d.id).collect();
    let counters: BTreeMap<u32, datapath::DeviceCounters> =
        datapath::device_counters(maps, ids.iter().copied())?
            .into_iter()
            .collect();
    let states: BTreeMap<u32, _> = datapath::device_states(maps, ids.iter().copied())?
        .into_iter()
        .collect();
    Ok(st
        .devices
        .iter()
        .map(|d| {
            let c = counters.get(&d.id).copied().unwrap_or_default();
            let s = states.get(&d.id).copied().unwrap_or_default();
            let quarantined = s.quarantine_until_ns > now_mono;
            let state = if quarantined {
                "quarantined"
            } else if c.spoofed > 0 {
                "spoofing"
            } else {
                "ok"
            };
            Listed {
                name: d.name.clone(),
                zone: d.zone.clone(),
                state: state.to_owned(),
                quarantine_reason: quarantined.then(|| {
                    QuarantineReason::from_u32(s.quarantine_reason)
                        .as_str()
                        .to_owned()
                }),
                mac: d.mac.clone(),
                addresses: d.addresses.clone(),
                inventory: d.inventory.clone(),
                last_seen: (c.last_seen_ns != 0).then(|| wall(c.last_seen_ns, now_mono, now_unix)),
                packets: Traffic {
                    allow: c.packets[0],
                    deny: c.packets[1],
                    audit: c.packets[2],
                },
                bytes: Traffic {
                    allow: c.bytes[0],
                    deny: c.bytes[1],
                    audit: c.bytes[2],
                },
                spoofed_packets: c.spoofed,
            }
        })
        .collect())
}

fn discovered(maps: &PinnedMaps, now_mono: u64, now_unix: u64) -> Result<Vec<Discovered>> {
    let mut out: Vec<Discovered> = datapath::discovered(maps)?
        .into_iter()
        .map(|(mac, d)| Discovered {
            mac: mac_text(&mac),
            ipv4: (d.has_v4 != 0).then(|| event_addr(FAMILY_V4, [d.v4, 0, 0, 0]).to_string()),
            ipv6: (d.has_v6 != 0).then(|| event_addr(FAMILY_V6, d.v6).to_string()),
            interface: ifname(d.ifindex),
            vlan: d.vlan,
            first_seen: wall(d.first_seen_ns, now_mono, now_unix),
            last_seen: wall(d.last_seen_ns, now_mono, now_unix),
            packets: d.packets,
            last_destination: event_addr(d.last_family, d.last_dst).to_string(),
            last_port: d.last_dport,
            last_protocol: d.last_proto,
        })
        .collect();
    out.sort_by(|a, b| a.mac.cmp(&b.mac));
    Ok(out)
}

/// The discovered devices as policy `devices:` entries, in the unknown zone, for review.
fn adoptable_yaml(found: &[Discovered], zone: &str) -> Result<String> {
    let mut devices = serde_yaml::Mapping::new();
    for d in found {
        let mut e = serde_yaml::Mapping::new();
        e.insert("zone".into(), zone.into());
        e.insert("mac".into(), d.mac.clone().into());
        let addrs: Vec<serde_yaml::Value> = d
            .ipv4
            .iter()
            .chain(d.ipv6.iter())
            .map(|a| a.clone().into())
            .collect();
        if !addrs.is_empty() {
            e.insert("addresses".into(), serde_yaml::Value::Sequence(addrs));
        }
        e.insert(
            "notes".into(),
            format!(
                "discovered on {} (vlan {}), first seen {}, last tried {} port {}",
                d.interface, d.vlan, d.first_seen, d.last_destination, d.last_port
            )
            .into(),
        );
        let name = format!("unknown-{}", d.mac.replace(':', ""));
        devices.insert(name.into(), serde_yaml::Value::Mapping(e));
    }
    let mut root = serde_yaml::Mapping::new();
    root.insert("devices".into(), serde_yaml::Value::Mapping(devices));
    let body = serde_yaml::to_string(&root)?;
    Ok(format!(
        "# Devices the enforcer discovered, ready to adopt: review each name and zone, then add\n\
         # this file to the policy repo. Until then they stay in the `{zone}` zone.\n{body}"
    ))
}

pub fn run(
    unknown_only: bool,
    output: DevicesOutput,
    pin_dir: &Path,
    state_dir: &Path,
) -> Result<u8> {
    let st = match crate::commands::running_status(state_dir)? {
        Ok(st) => st,
        Err(code) => return Ok(code),
    };
    let maps = PinnedMaps::open(pin_dir)?;
    let (now_mono, now_unix) = (datapath::monotonic_ns(), state::unix_now());
    let found = discovered(&maps, now_mono, now_unix)?;
    #[expect(clippy::print_stdout, reason = "CLI output")]
    match output {
        DevicesOutput::Yaml => print!("{}", adoptable_yaml(&found, &st.unknown_zone)?),
        DevicesOutput::Json => {
            let listed = if unknown_only {
                Vec::new()
            } else {
                listed(&maps, &st, now_mono, now_unix)?
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&Inventoried {
                    listed,
                    unknown: found
                })?
            );
        }
        DevicesOutput::Table => {
            if !unknown_only {
                println!(
                    "{:<20} {:<12} {:<12} {:<18} {:<22} {:>10} {:>10}",
                    "DEVICE", "ZONE", "STATE", "MAC", "LAST SEEN", "ALLOWED", "DENIED"
                );
                for d in listed(&maps, &st, now_mono, now_unix)? {
                    println!(
                        "{:<20} {:<12} {:<12} {:<18} {:<22} {:>10} {:>10}",
                        d.name,
                        d.zone,
                        d.state,
                        d.mac.as_deref().unwrap_or("-"),
                        d.last_seen.as_deref().unwrap_or("never"),
                        d.packets.allow,
                        d.packets.deny + d.packets.audit
                    );
                }
                println!();
            }
            println!("UNKNOWN DEVICES (zone {})", st.unknown_zone);
            println!(
                "{:<18} {:<16} {:<26} {:<10} {:<22} {:>8}  LAST TRIED",
                "MAC", "IPV4", "IPV6", "IFACE", "LAST SEEN", "PACKETS"
            );
            for d in &found {
                println!(
                    "{:<18} {:<16} {:<26} {:<10} {:<22} {:>8}  {}:{}",
                    d.mac,
                    d.ipv4.as_deref().unwrap_or("-"),
                    d.ipv6.as_deref().unwrap_or("-"),
                    d.interface,
                    d.last_seen,
                    d.packets,
                    d.last_destination,
                    d.last_port
                );
            }
        }
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_549_534), "2026-11-24T19:45:34Z");
    }
}
