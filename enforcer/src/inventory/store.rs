//! Evidence kept per MAC: the latest of each field a device announced, where it was seen, and the
//! changes of the fields that should not change (vendor class, parameter lists, firmware, model).
//!
//! Bounded: at most [`MAX_DEVICES`] MACs (the least recently seen goes first), bounded lists and
//! texts per MAC, at most [`MAX_CHANGES`] changes each. The daemon writes it to the state directory
//! ([`INVENTORY_FILE`]), where `enforcer devices` reads it and a restarted daemon takes it up.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{MAX_NAMES, Observation};

/// `inventory.json` in the state directory: a [`Snapshot`].
pub const INVENTORY_FILE: &str = "inventory.json";
/// MACs kept. A flood of made-up MACs pushes out the least recently seen, never grows the store.
pub const MAX_DEVICES: usize = 4_096;
/// Changes kept per MAC, newest last.
pub const MAX_CHANGES: usize = 8;

/// One field's change, as seen from one frame to a later one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    pub from: String,
    pub to: String,
    /// Seconds since the Unix epoch.
    pub at: u64,
}

/// Everything a MAC said about itself, and where.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Evidence {
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The interface its last evidence arrived on, and the VLAN.
    pub interface: String,
    pub vlan: u16,
    /// Seconds since the Unix epoch.
    pub first_seen: u64,
    pub last_seen: u64,
    /// Which protocols it spoke: `dhcpv4`, `dhcpv6`, `mdns`, `ssdp`.
    pub sources: Vec<String>,
    /// The latest of each field it announced.
    #[serde(flatten)]
    pub said: Observation,
    pub changes: Vec<Change>,
}

/// Fields whose change is recorded: the identity hints (a known MAC that sends another vendor
/// class or parameter list may be another device using its MAC) and what the inventory names.
pub const WATCHED: [&str; 5] = [
    "vendor_class",
    "fingerprint",
    "fingerprint_v6",
    "model",
    "firmware",
];

/// Where and when a frame was seen.
#[derive(Clone, Debug)]
pub struct Sighting {
    pub mac: [u8; 6],
    pub interface: String,
    pub vlan: u16,
    pub source: &'static str,
    pub at: u64,
}

/// The file's form.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub devices: Vec<Evidence>,
}

/// The store.
#[derive(Clone, Debug, Default)]
pub struct Store {
    by_mac: BTreeMap<[u8; 6], Evidence>,
}

impl Store {
    /// A store holding what a snapshot held (entries with an unreadable MAC are dropped).
    #[must_use]
    pub fn from_snapshot(s: Snapshot) -> Self {
        let by_mac = s
            .devices
            .into_iter()
            .filter_map(|e| Some((parse_mac(&e.mac)?, e)))
            .take(MAX_DEVICES)
            .collect();
        Self { by_mac }
    }

    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            devices: self.by_mac.values().cloned().collect(),
        }
    }

    #[must_use]
    pub fn get(&self, mac: [u8; 6]) -> Option<&Evidence> {
        self.by_mac.get(&mac)
    }

    pub fn len(&self) -> usize {
        self.by_mac.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_mac.is_empty()
    }

    /// Takes in what one frame said; returns the watched fields it changed.
    pub fn record(&mut self, seen: &Sighting, o: Observation) -> Vec<Change> {
        if !self.by_mac.contains_key(&seen.mac) && self.by_mac.len() >= MAX_DEVICES {
            self.evict_oldest();
        }
        let e = self.by_mac.entry(seen.mac).or_insert_with(|| Evidence {
            mac: crate::policy::model::fmt_mac(seen.mac),
            first_seen: seen.at,
            ..Evidence::default()
        });
        e.interface.clone_from(&seen.interface);
        e.vlan = seen.vlan;
        e.last_seen = seen.at;
        if !e.sources.iter().any(|s| s == seen.source) {
            e.sources.push(seen.source.to_owned());
            e.sources.sort();
        }
        let mut changes = Vec::new();
        let mut watch = |field: &str, slot: &mut Option<String>, new: Option<String>| {
            let Some(new) = new else { return };
            if let Some(old) = slot.as_ref()
                && *old != new
                && WATCHED.contains(&field)
            {
                changes.push(Change {
                    field: field.to_owned(),
                    from: old.clone(),
                    to: new.clone(),
                    at: seen.at,
                });
            }
            *slot = Some(new);
        };
        let s = &mut e.said;
        watch("host_name", &mut s.host_name, o.host_name);
        watch("fqdn", &mut s.fqdn, o.fqdn);
        watch("fingerprint", &mut s.fingerprint, o.fingerprint);
        watch("fingerprint_v6", &mut s.fingerprint_v6, o.fingerprint_v6);
        watch("vendor_class", &mut s.vendor_class, o.vendor_class);
        watch("client_id", &mut s.client_id, o.client_id);
        watch("mud_url", &mut s.mud_url, o.mud_url);
        watch("model", &mut s.model, o.model);
        watch("firmware", &mut s.firmware, o.firmware);
        watch("ssdp_server", &mut s.ssdp_server, o.ssdp_server);
        watch("ssdp_usn", &mut s.ssdp_usn, o.ssdp_usn);
        watch("ssdp_location", &mut s.ssdp_location, o.ssdp_location);
        merge(&mut s.services, o.services);
        merge(&mut s.instances, o.instances);
        e.changes.extend(changes.iter().cloned());
        let over = e.changes.len().saturating_sub(MAX_CHANGES);
        e.changes.drain(..over);
        changes
    }

    fn evict_oldest(&mut self) {
        if let Some(mac) = self
            .by_mac
            .iter()
            .min_by_key(|(_, e)| e.last_seen)
            .map(|(mac, _)| *mac)
        {
            self.by_mac.remove(&mac);
        }
    }
}

fn merge(into: &mut Vec<String>, new: Vec<String>) {
    for n in new {
        if into.len() >= MAX_NAMES {
            return;
        }
        if !into.contains(&n) {
            into.push(n);
        }
    }
}

/// `aa:bb:cc:dd:ee:ff` (any case, `:` or `-`) as bytes.
#[must_use]
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    text.parse::<macaddr::MacAddr6>()
        .ok()
        .map(|m| m.into_array())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(mac: u8, at: u64) -> Sighting {
        Sighting {
            mac: [0, 0x40, 0x8c, 0, 0, mac],
            interface: "veth-cam".into(),
            vlan: 0,
            source: "dhcpv4",
            at,
        }
    }

    fn dhcp(vendor_class: &str, fingerprint: &str) -> Observation {
        Observation {
            host_name: Some("cam".into()),
            vendor_class: Some(vendor_class.into()),
            fingerprint: Some(fingerprint.into()),
            ..Observation::default()
        }
    }

    #[test]
    fn repeating_itself_changes_nothing_and_another_vendor_class_is_a_change() {
        let mut s = Store::default();
        assert!(
            s.record(&seen(1, 10), dhcp("udhcp 1.30", "1,3,6"))
                .is_empty()
        );
        assert!(
            s.record(&seen(1, 11), dhcp("udhcp 1.30", "1,3,6"))
                .is_empty()
        );
        let changes = s.record(&seen(1, 12), dhcp("MSFT 5.0", "1,3,6,15,31"));
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["fingerprint", "vendor_class"]);
        let e = s.get([0, 0x40, 0x8c, 0, 0, 1]).expect("kept");
        assert_eq!(e.said.vendor_class.as_deref(), Some("MSFT 5.0"));
        assert_eq!((e.first_seen, e.last_seen), (10, 12));
        assert_eq!(e.changes.len(), 2);
    }

    #[test]
    fn the_store_is_bounded_and_pushes_out_the_least_recently_seen() {
        let mut s = Store::default();
        for i in 0..=MAX_DEVICES {
            let mac = [0, 0x40, 0x8c, (i >> 16) as u8, (i >> 8) as u8, i as u8];
            let at = if i == 0 { 1_000_000 } else { i as u64 };
            s.record(&Sighting { mac, ..seen(0, at) }, Observation::default());
        }
        assert_eq!(s.len(), MAX_DEVICES);
        assert!(
            s.get([0, 0x40, 0x8c, 0, 0, 0]).is_some(),
            "the newest stays"
        );
        assert!(s.get([0, 0x40, 0x8c, 0, 0, 1]).is_none(), "the oldest went");
    }

    #[test]
    fn a_snapshot_round_trips() {
        let mut s = Store::default();
        s.record(&seen(1, 10), dhcp("udhcp", "1,3"));
        let json = serde_json::to_string(&s.snapshot()).expect("json");
        let back = Store::from_snapshot(serde_json::from_str(&json).expect("parse"));
        assert_eq!(back.snapshot().devices, s.snapshot().devices);
    }
}
