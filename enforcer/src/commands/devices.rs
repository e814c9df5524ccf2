//! `enforcer devices`: the inventory as the datapath sees it: listed devices with their zone,
//! inventory, counters and state, and the unlisted ones it discovered. `--output yaml` prints the
//! discovered ones as `devices:` entries ready to paste into the policy repo. What devices
//! announced about themselves (`crate::inventory`) is shown beside each as `observed`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use enforcer_common::{FAMILY_V4, FAMILY_V6, identity::ip_addr, state::QuarantineReason};
use serde::Serialize;

use crate::{
    cli::{DevicesOutput, Output, Paths},
    commands::table,
    daemon::{events::ifname, state::Status},
    datapath::{self, PinnedMaps},
    exit,
    inventory::{
        drift, naming,
        store::{INVENTORY_FILE, Snapshot, Store, parse_mac},
        view::Observed,
    },
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
    /// What the device announced, and its MAC's vendor; absent without a MAC.
    #[serde(skip_serializing_if = "Option::is_none")]
    observed: Option<Observed>,
    /// Its live `dns:` name bindings (docs/names.md): addresses the resolver bound to names the
    /// device looked up.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bindings: Vec<NameBound>,
}

/// One live name binding of a device.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct NameBound {
    /// `dns:PATTERN` as the rules name it.
    pub name: String,
    pub address: String,
    /// RFC 3339, and seconds from now.
    pub expires: String,
    pub expires_in_s: u64,
}

/// The live name bindings of each device (by id), from the `BINDINGS` map pinned in `pin_dir`;
/// none when the policy has no `dns:` names.
pub(crate) fn bindings_by_device(
    pin_dir: &std::path::Path,
    st: &Status,
    now: (u64, u64),
) -> Result<BTreeMap<u32, Vec<NameBound>>> {
    let mut out: BTreeMap<u32, Vec<NameBound>> = BTreeMap::new();
    if st.names.is_empty() {
        return Ok(out);
    }
    let names = NameBound::patterns(st);
    let map = datapath::names::Bindings::open_pinned(pin_dir)?;
    for b in map.live(now.0) {
        if let Some(shown) = NameBound::of(&b, &names, now) {
            out.entry(b.device).or_default().push(shown);
        }
    }
    Ok(out)
}

impl NameBound {
    /// The running policy's name patterns by id, as the status records them.
    pub(crate) fn patterns(st: &Status) -> BTreeMap<u32, &str> {
        st.names.iter().map(|(id, p)| (*id, p.as_str())).collect()
    }

    /// Binding `b` as shown, its name id read through `patterns` (`None` for a name the running
    /// policy no longer has); `now` is (monotonic ns, Unix seconds).
    pub(crate) fn of(
        b: &datapath::names::Binding,
        patterns: &BTreeMap<u32, &str>,
        now: (u64, u64),
    ) -> Option<Self> {
        let (now_mono, now_unix) = now;
        let pattern = patterns.get(&b.name)?;
        let left = b.expires_ns.saturating_sub(now_mono) / 1_000_000_000;
        Some(Self {
            name: format!("dns:{pattern}"),
            address: b.addr.to_string(),
            expires: crate::time::rfc3339(now_unix.saturating_add(left)),
            expires_in_s: left,
        })
    }
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
    observed: Observed,
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

/// What the daemon recorded of the devices' announcements (empty before the first).
fn evidence(state_dir: &std::path::Path) -> Result<Store> {
    let snapshot: Option<Snapshot> = crate::daemon::state::read(state_dir, INVENTORY_FILE)?;
    Ok(Store::from_snapshot(snapshot.unwrap_or_default()))
}

fn listed(
    maps: &PinnedMaps,
    st: &Status,
    now: (u64, u64),
    store: &Store,
    bound: &BTreeMap<u32, Vec<NameBound>>,
) -> Result<Vec<Listed>> {
    let (now_mono, now_unix) = now;
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
                observed: d
                    .mac
                    .as_deref()
                    .and_then(parse_mac)
                    .map(|mac| Observed::of(mac, store.get(mac))),
                bindings: bound.get(&d.id).cloned().unwrap_or_default(),
            }
        })
        .collect())
}

fn discovered(maps: &PinnedMaps, now: (u64, u64), store: &Store) -> Result<Vec<Discovered>> {
    let (now_mono, now_unix) = now;
    let mut out: Vec<Discovered> = datapath::discovered(maps)?
        .into_iter()
        .map(|(mac, d)| Discovered {
            mac: mac_text(&mac),
            // A DHCPDISCOVER's 0.0.0.0 is no address of the device's.
            ipv4: (d.has_v4 != 0 && d.v4 != 0)
                .then(|| ip_addr(FAMILY_V4, [d.v4, 0, 0, 0]).to_string()),
            ipv6: (d.has_v6 != 0).then(|| ip_addr(FAMILY_V6, d.v6).to_string()),
            interface: ifname(d.ifindex),
            vlan: d.vlan,
            first_seen: crate::time::wall_of_monotonic(d.first_seen_ns, now_mono, now_unix),
            last_seen: crate::time::wall_of_monotonic(d.last_seen_ns, now_mono, now_unix),
            packets: d.packets,
            last_destination: ip_addr(d.last_family, d.last_dst).to_string(),
            last_port: d.last_dport,
            last_protocol: d.last_proto,
            observed: Observed::of(mac, store.get(mac)),
        })
        .collect();
    out.sort_by(|a, b| a.mac.cmp(&b.mac));
    Ok(out)
}

/// The discovered devices as policy `devices:` entries, in the unknown zone, for review: each
/// named after the host name it announced (sanitised, unique beside `taken`), with what it
/// announced as inventory fields that `notes` marks as observed.
fn adoptable_yaml(found: &[Discovered], zone: &str, mut taken: BTreeSet<String>) -> Result<String> {
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
        let o = &d.observed;
        for (field, value) in [
            ("vendor", &o.vendor),
            ("model", &o.said.model),
            ("firmware", &o.said.firmware),
        ] {
            if let Some(v) = value {
                e.insert(field.into(), v.clone().into());
            }
        }
        e.insert(
            "notes".into(),
            format!(
                "discovered on {} (vlan {}), first seen {}, last tried {} port {}{}",
                d.interface,
                d.vlan,
                d.first_seen,
                d.last_destination,
                d.last_port,
                observed_note(o)
            )
            .into(),
        );
        let fallback = format!("unknown-{}", d.mac.replace(':', ""));
        let name = naming::unique(o.said.host_name.as_deref(), &fallback, &mut taken);
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

/// The `notes` part that marks the inventory fields as observed, with the rest of the evidence.
fn observed_note(o: &Observed) -> String {
    let mut parts = Vec::new();
    if o.vendor.is_some() {
        parts.push("vendor from the MAC's OUI".to_owned());
    }
    if o.said.model.is_some() || o.said.firmware.is_some() {
        parts.push("model and firmware as announced".to_owned());
    }
    for (what, v) in [
        ("host name", &o.said.host_name),
        ("DHCP fingerprint", &o.said.fingerprint),
        ("vendor class", &o.said.vendor_class),
        ("MUD URL", &o.said.mud_url),
    ] {
        if let Some(v) = v {
            parts.push(format!("{what} {v}"));
        }
    }
    if o.randomised_mac {
        parts.push("randomised MAC: it may change".to_owned());
    }
    if parts.is_empty() {
        return String::new();
    }
    format!("; observed on the wire, not verified: {}", parts.join("; "))
}

pub fn run(unknown_only: bool, drift: bool, output: DevicesOutput, paths: &Paths) -> Result<u8> {
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
    if drift {
        return run_drift(&st, output, paths);
    }
    let maps = PinnedMaps::open(&paths.pin_dir)?;
    let now = (datapath::monotonic_ns(), crate::time::unix_now());
    let store = evidence(&paths.state_dir)?;
    let found = discovered(&maps, now, &store)?;
    let bound = bindings_by_device(&paths.pin_dir, &st, now)?;
    #[expect(clippy::print_stdout, reason = "CLI output")]
    match output {
        DevicesOutput::Yaml => {
            let taken = st.devices.iter().map(|d| d.name.clone()).collect();
            print!("{}", adoptable_yaml(&found, &st.unknown_zone, taken)?);
        }
        DevicesOutput::Json => {
            let listed = if unknown_only {
                Vec::new()
            } else {
                listed(&maps, &st, now, &store, &bound)?
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
                    listed_table(&listed(&maps, &st, now, &store, &bound)?)
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
            "IFACE",
            "VENDOR",
            "HOST NAME",
            "HINTS",
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
            observed_cell(d.observed.as_ref(), |o| o.interface.clone()),
            observed_cell(d.observed.as_ref(), |o| Some(o.vendor_cell())),
            observed_cell(d.observed.as_ref(), |o| o.said.host_name.clone()),
            observed_cell(d.observed.as_ref(), |o| Some(o.hints())),
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
            "VENDOR",
            "HOST NAME",
            "HINTS",
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
            d.observed.vendor_cell(),
            d.observed
                .said
                .host_name
                .clone()
                .unwrap_or_else(|| "-".into()),
            d.observed.hints(),
            d.last_seen.clone(),
            d.packets.to_string(),
            format!("{}:{}", d.last_destination, d.last_port),
        ]);
    }
    table::render(&t)
}

/// The inventory as `--output json` prints it (listed devices with their state and counters,
/// and the discovered unknown ones), for the daemon's status page.
pub(crate) fn inventory(
    pin_dir: &std::path::Path,
    state_dir: &std::path::Path,
    st: &Status,
) -> Result<serde_json::Value> {
    let maps = PinnedMaps::open(pin_dir)?;
    let store = evidence(state_dir)?;
    let now = (datapath::monotonic_ns(), crate::time::unix_now());
    Ok(serde_json::to_value(Inventoried {
        listed: listed(
            &maps,
            st,
            now,
            &store,
            &bindings_by_device(pin_dir, st, now)?,
        )?,
        unknown: discovered(&maps, now, &store)?,
    })?)
}

/// A table cell from a device's observed evidence, `-` when there is none.
fn observed_cell(o: Option<&Observed>, f: impl Fn(&Observed) -> Option<String>) -> String {
    o.and_then(f).unwrap_or_else(|| "-".into())
}

/// `enforcer devices --drift`: announcements that contradict the inventory, and MACs that
/// changed their vendor class or parameter list.
fn run_drift(st: &Status, output: DevicesOutput, paths: &Paths) -> Result<u8> {
    let store = evidence(&paths.state_dir)?;
    let drifts = drift::all(&st.devices, &store.snapshot().devices);
    #[expect(clippy::print_stdout, reason = "CLI output")]
    match output {
        DevicesOutput::Json | DevicesOutput::Yaml => {
            println!("{}", serde_json::to_string_pretty(&drifts)?);
        }
        DevicesOutput::Table => {
            let mut t = table::new(&["DEVICE", "MAC", "FIELD", "EXPECTED", "OBSERVED"], &[]);
            for d in &drifts {
                t.add_row(vec![
                    d.device.clone(),
                    d.mac.clone(),
                    d.field.clone(),
                    d.expected.clone(),
                    d.observed.clone(),
                ]);
            }
            println!("{}", table::render(&t));
        }
    }
    Ok(exit::OK)
}
