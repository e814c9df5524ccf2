//! `enforcer devices`: the inventory as the datapath sees it: listed devices with their zone,
//! inventory, counters and state, and the unlisted ones it discovered. `--output yaml` prints the
//! discovered ones as `devices:` entries ready to paste into the policy repo.

use std::collections::BTreeMap;

use anyhow::Result;
use enforcer_common::{FAMILY_V4, FAMILY_V6, state::QuarantineReason};
use serde::Serialize;

use crate::{
    cli::{DevicesOutput, Output, Paths},
    commands::table,
    daemon::{
        events::{event_addr, ifname},
        state::Status,
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
    /// `enforce` or `audit` (`mode:` of the device or its zone).
    mode: &'static str,
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
                mode: if d.audit { "audit" } else { "enforce" },
                state: state.to_owned(),
                quarantine_reason: quarantined.then(|| {
                    QuarantineReason::from_u32(s.quarantine_reason)
                        .as_str()
                        .to_owned()
                }),
                mac: d.mac.clone(),
                addresses: d.addresses.clone(),
                inventory: d.inventory.clone(),
                last_seen: (c.last_seen_ns != 0)
                    .then(|| crate::time::wall_of_monotonic(c.last_seen_ns, now_mono, now_unix)),
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
            first_seen: crate::time::wall_of_monotonic(d.first_seen_ns, now_mono, now_unix),
            last_seen: crate::time::wall_of_monotonic(d.last_seen_ns, now_mono, now_unix),
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

pub fn run(unknown_only: bool, output: DevicesOutput, paths: &Paths) -> Result<u8> {
    let st = match crate::commands::running_status(&paths.state_dir)? {
        Ok(st) => st,
        Err(no) => {
            let format = match output {
                DevicesOutput::Json => Output::Json,
                DevicesOutput::Table | DevicesOutput::Yaml => Output::Text,
            };
            return Ok(no.report(format));
        }
    };
    let maps = PinnedMaps::open(&paths.pin_dir)?;
    let (now_mono, now_unix) = (datapath::monotonic_ns(), crate::time::unix_now());
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
                    "{}\n",
                    listed_table(&listed(&maps, &st, now_mono, now_unix)?)
                );
            }
            println!("UNKNOWN DEVICES (zone {})", st.unknown_zone);
            println!("{}", unknown_table(&found));
        }
    }
    Ok(exit::OK)
}

fn listed_table(devices: &[Listed]) -> String {
    let mut t = table::new(
        &[
            "DEVICE",
            "ZONE",
            "MODE",
            "STATE",
            "MAC",
            "LAST SEEN",
            "ALLOWED",
            "DENIED",
        ],
        &["ALLOWED", "DENIED"],
    );
    for d in devices {
        t.add_row(vec![
            d.name.clone(),
            d.zone.clone(),
            d.mode.to_owned(),
            d.state.clone(),
            d.mac.clone().unwrap_or_else(|| "-".into()),
            d.last_seen.clone().unwrap_or_else(|| "never".into()),
            d.packets.allow.to_string(),
            (d.packets.deny + d.packets.audit).to_string(),
        ]);
    }
    table::render(&t)
}

fn unknown_table(found: &[Discovered]) -> String {
    let mut t = table::new(
        &[
            "MAC",
            "IPV4",
            "IPV6",
            "IFACE",
            "LAST SEEN",
            "PACKETS",
            "LAST TRIED",
        ],
        &["PACKETS"],
    );
    for d in found {
        t.add_row(vec![
            d.mac.clone(),
            d.ipv4.clone().unwrap_or_else(|| "-".into()),
            d.ipv6.clone().unwrap_or_else(|| "-".into()),
            d.interface.clone(),
            d.last_seen.clone(),
            d.packets.to_string(),
            format!("{}:{}", d.last_destination, d.last_port),
        ]);
    }
    table::render(&t)
}
