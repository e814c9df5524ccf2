//! Identity: the `MACS`, `ADDRS_*` and `NETS_*` images (who sent a packet, where it goes) and the
//! device list.

use std::{
    collections::{BTreeSet, HashSet},
    net::IpAddr,
};

use enforcer_common::{
    Mode,
    identity::{
        ADDR_KIND_DEVICE, ADDR_KIND_ROUTER, AddrEntry, DST_F_TRIPWIRE, MAC_F_ANY_ADDR, MAC_F_AUDIT,
        MacEntry, NET_F_ONLINK, NetEntry, SRC_F_AUDIT,
    },
};

use super::{classes::Classes, ids::assigned_id};
use crate::policy::{
    compiled::{CompileOptions, DeviceInfo, IdTable},
    diag::Diags,
    maps::{AddrsV4, AddrsV6, Image, Macs, NetsV4, NetsV6, PolicyMaps, Prefix},
    model::{Device, Endpoint, Policy},
};

/// The names `quarantine.touches` lists, by kind: a device or network is looked up by its name
/// alone, with no `Endpoint` built per device.
struct Tripwires<'a> {
    devices: HashSet<&'a str>,
    networks: HashSet<&'a str>,
}

impl<'a> Tripwires<'a> {
    fn of(p: &'a Policy) -> Self {
        let touches = p.quarantine.iter().flat_map(|q| &q.touches);
        let named = |kind: fn(&'a Endpoint) -> Option<&'a str>| {
            touches.clone().filter_map(|t| kind(&t.value)).collect()
        };
        Self {
            devices: named(|e| match e {
                Endpoint::Device(n) => Some(n),
                _ => None,
            }),
            networks: named(|e| match e {
                Endpoint::Network(n) => Some(n),
                _ => None,
            }),
        }
    }
}

/// The identity maps and the device list.
#[derive(Default)]
pub(super) struct Identity {
    macs: Image<Macs>,
    addrs_v4: Image<AddrsV4>,
    addrs_v6: Image<AddrsV6>,
    nets_v4: Image<NetsV4>,
    nets_v6: Image<NetsV6>,
    devices: Vec<DeviceInfo>,
}

impl Identity {
    /// Devices, the router's addresses, policy networks and the enforced segments; a device on a
    /// router address is an error at the address.
    pub(super) fn build(
        p: &Policy,
        ids: &IdTable,
        classes: &Classes,
        opts: &CompileOptions,
        diags: &mut Diags,
    ) -> Self {
        let tripwires = Tripwires::of(p);
        let router: BTreeSet<IpAddr> = opts.router_addrs.iter().copied().collect();
        // Sized for one entry of each kind per device, the common case: 100,000 devices' images
        // grown by doubling were copied over and over, into fresh pages each time. What a site
        // without IPv6 leaves unused is never touched.
        let n = p.devices.len();
        let mut out = Self {
            macs: Vec::with_capacity(n),
            addrs_v4: Vec::with_capacity(n),
            addrs_v6: Vec::with_capacity(n),
            devices: Vec::with_capacity(n),
            ..Self::default()
        };
        for d in p.devices.values() {
            out.add_device(d, ids, classes, &tripwires, &router, diags);
        }
        let router_entry = AddrEntry {
            device: enforcer_common::UNKNOWN_DEVICE,
            class: classes.router,
            kind: ADDR_KIND_ROUTER,
            flags: 0,
            mac: [0; 6],
            _pad: [0; 2],
        };
        for a in &router {
            out.push_addr(*a, router_entry);
        }
        out.add_networks(p, ids, classes, &tripwires);
        out.add_segments(p, classes, opts);
        out.mark_audited(p);
        out.sort();
        out.link_own_v4();
        out
    }

    /// One listed device: its MAC, its addresses and its row in the device list.
    fn add_device(
        &mut self,
        d: &Device,
        ids: &IdTable,
        classes: &Classes,
        tripwires: &Tripwires<'_>,
        router: &BTreeSet<IpAddr>,
        diags: &mut Diags,
    ) {
        let id = assigned_id(&ids.devices, "device", &d.name);
        let class = classes.device(&d.name, &d.zone.value);
        let mac = d.mac.as_ref().map(|m| m.value);
        let flags = if tripwires.devices.contains(d.name.as_str()) {
            DST_F_TRIPWIRE
        } else {
            0
        };
        if let Some(mac) = mac {
            self.macs.push((
                mac,
                MacEntry {
                    device: id,
                    class,
                    // A device that lists no addresses is identified by its MAC alone.
                    flags: if d.addresses.is_empty() {
                        MAC_F_ANY_ADDR
                    } else {
                        0
                    },
                    // Checked against the address table once it is complete (`link_own_v4`).
                    v4: d
                        .addresses
                        .iter()
                        .find_map(|a| match a.value {
                            IpAddr::V4(v4) => Some(u32::from_ne_bytes(v4.octets())),
                            IpAddr::V6(_) => None,
                        })
                        .unwrap_or(0),
                    _pad: 0,
                },
            ));
        }
        let entry = AddrEntry {
            device: id,
            class,
            kind: ADDR_KIND_DEVICE,
            flags,
            mac: mac.unwrap_or([0; 6]),
            _pad: [0; 2],
        };
        for a in &d.addresses {
            if router.contains(&a.value) {
                diags.error(
                    &a.loc,
                    format!(
                        "address {} of device `{}` is one of the router's own addresses",
                        a.value, d.name
                    ),
                    "a device cannot share the router's address; fix the device's address",
                );
            }
            self.push_addr(a.value, entry);
        }
        self.devices.push(DeviceInfo {
            id,
            name: d.name.clone(),
            zone: d.zone.value.clone(),
            class,
            mac,
            addresses: d.addresses.iter().map(|a| a.value).collect(),
            inventory: d.inventory.clone(),
            audit: false,
        });
    }

    /// The policy's networks, each CIDR one trie entry.
    fn add_networks(
        &mut self,
        p: &Policy,
        ids: &IdTable,
        classes: &Classes,
        tripwires: &Tripwires<'_>,
    ) {
        for n in p.networks.values() {
            let flags = if tripwires.networks.contains(n.name.as_str()) {
                DST_F_TRIPWIRE
            } else {
                0
            };
            let entry = NetEntry {
                network: assigned_id(&ids.networks, "network", &n.name),
                class: classes.network(&n.name),
                flags,
                _pad: 0,
            };
            for c in &n.cidrs {
                match c.value {
                    ipnet::IpNet::V4(v4) => self.nets_v4.push((
                        Prefix {
                            addr: v4.network().octets(),
                            len: v4.prefix_len(),
                        },
                        entry,
                    )),
                    ipnet::IpNet::V6(v6) => self.nets_v6.push((
                        Prefix {
                            addr: v6.network().octets(),
                            len: v6.prefix_len(),
                        },
                        entry,
                    )),
                }
            }
        }
    }

    /// The enforced interfaces' own subnets, where an unlisted address is an unknown device on
    /// the segment, not a member of a wider network; a policy network naming the very same prefix
    /// is the operator's explicit word and wins.
    fn add_segments(&mut self, p: &Policy, classes: &Classes, opts: &CompileOptions) {
        let onlink = NetEntry {
            network: 0,
            class: classes.zone(&p.defaults.unknown.value),
            flags: NET_F_ONLINK,
            _pad: 0,
        };
        for prefix in &opts.local_prefixes {
            match prefix.trunc() {
                ipnet::IpNet::V4(v4) => {
                    let key = Prefix {
                        addr: v4.network().octets(),
                        len: v4.prefix_len(),
                    };
                    if !self.nets_v4.iter().any(|e| e.0 == key) {
                        self.nets_v4.push((key, onlink));
                    }
                }
                ipnet::IpNet::V6(v6) => {
                    let key = Prefix {
                        addr: v6.network().octets(),
                        len: v6.prefix_len(),
                    };
                    if !self.nets_v6.iter().any(|e| e.0 == key) {
                        self.nets_v6.push((key, onlink));
                    }
                }
            }
        }
    }

    /// Duplicates were rejected by `validate` (and router clashes in `add_device`); sorting by key
    /// is all that is left.
    fn sort(&mut self) {
        self.macs.sort_unstable_by_key(|e| e.0);
        self.addrs_v4.sort_unstable_by_key(|e| e.0);
        self.addrs_v6.sort_unstable_by_key(|e| e.0);
        self.addrs_v4.dedup_by_key(|e| e.0);
        self.addrs_v6.dedup_by_key(|e| e.0);
        self.nets_v4.sort_unstable_by_key(|e| e.0);
        self.nets_v6.sort_unstable_by_key(|e| e.0);
    }

    /// Keeps a MAC entry's `v4` (the program's shortcut past `ADDRS_V4`) only where `ADDRS_V4`
    /// maps that address to the same device as one of its own: then the shortcut and the lookup
    /// give the same answer, whatever the policy (a clash with the router's address, say).
    fn link_own_v4(&mut self) {
        let addrs = &self.addrs_v4;
        for (_, m) in &mut self.macs {
            if m.v4 == 0 {
                continue;
            }
            let own = addrs
                .binary_search_by_key(&m.v4.to_ne_bytes(), |e| e.0)
                .ok()
                .is_some_and(|i| {
                    let a = addrs[i].1;
                    a.device == m.device && a.kind == ADDR_KIND_DEVICE
                });
            if !own {
                m.v4 = 0;
            }
        }
    }

    /// Moves the identity images into `maps`; returns the device list.
    pub(super) fn into_maps(self, maps: &mut PolicyMaps) -> Vec<DeviceInfo> {
        maps.macs = self.macs;
        maps.addrs_v4 = self.addrs_v4;
        maps.addrs_v6 = self.addrs_v6;
        maps.nets_v4 = self.nets_v4;
        maps.nets_v6 = self.nets_v6;
        self.devices
    }

    /// Flags what devices in audit send (`mode: audit`, their own or their zone's): the program
    /// lets their would-be denials pass as `audit`. Destinations are unaffected: the flag is read
    /// only when the entry resolves a source.
    fn mark_audited(&mut self, p: &Policy) {
        // Without an audited zone (nor an audit default) only a device's own `mode:` can make it
        // audited: no zone is looked up per device.
        let zones_audit =
            p.defaults.mode == Mode::Audit || p.zones.values().any(|z| z.mode == Some(Mode::Audit));
        // The device list was built from `p.devices` in its order (`build`), so the two walk
        // together: no lookup by name per device.
        let audited: HashSet<u32> = self
            .devices
            .iter_mut()
            .zip(p.devices.values())
            .filter(|(d, m)| {
                debug_assert_eq!(d.name, m.name);
                if zones_audit {
                    p.mode_of_device(m) == Mode::Audit
                } else {
                    m.mode == Some(Mode::Audit)
                }
            })
            .map(|(d, _)| {
                d.audit = true;
                d.id
            })
            .collect();
        for (_, m) in &mut self.macs {
            if audited.contains(&m.device) {
                m.flags |= MAC_F_AUDIT;
            }
        }
        let addrs = self.addrs_v4.iter_mut().map(|e| &mut e.1);
        for a in addrs.chain(self.addrs_v6.iter_mut().map(|e| &mut e.1)) {
            if a.kind == ADDR_KIND_DEVICE && audited.contains(&a.device) {
                a.flags |= SRC_F_AUDIT;
            }
        }
    }

    fn push_addr(&mut self, addr: IpAddr, entry: AddrEntry) {
        match addr {
            IpAddr::V4(a) => self.addrs_v4.push((a.octets(), entry)),
            IpAddr::V6(a) => self.addrs_v6.push((a.octets(), entry)),
        }
    }
}

#[cfg(test)]
mod tests {
    use enforcer_common::identity::{ADDR_KIND_ROUTER, DST_F_TRIPWIRE, NET_F_ONLINK, NetEntry};

    use super::super::test_support::{ZONES, class, compile_yaml};
    use crate::policy::{CompileOptions, compile, maps::Prefix, parse_str};

    /// A device is audited by its own `mode:`, or else by its zone's, or else by the default's;
    /// each row names which. Its MAC entry, its address entries and its device row say so, and
    /// nothing else's does.
    #[test]
    fn what_an_audited_device_sends_is_flagged_whichever_mode_made_it_audited() {
        use enforcer_common::identity::{MAC_F_AUDIT, SRC_F_AUDIT};
        let devices = "devices:\n  da: {zone: a, mac: '02:00:00:00:00:01', addresses: [10.0.0.1]}\n  db: {zone: b, mac: '02:00:00:00:00:02', addresses: [10.0.0.2]}\nrules: [{name: r, from: zone:a, to: zone:b, allow: [tcp/443]}]\n";
        let cases = [
            (
                "the device's own mode",
                "zones: {a: {}, b: {}, quarantine: {}}\n",
                "da: {zone: a,",
                "da: {zone: a, mode: audit,",
                [true, false],
            ),
            (
                "its zone's mode",
                "zones: {a: {}, b: {mode: audit}, quarantine: {}}\n",
                "",
                "",
                [false, true],
            ),
            (
                "the default, over a device's own enforce",
                "zones: {a: {}, b: {}, quarantine: {}}\ndefaults: {mode: audit}\n",
                "db: {zone: b,",
                "db: {zone: b, mode: enforce,",
                [true, false],
            ),
        ];
        for (why, zones, from, to, want) in cases {
            let yaml = format!("{zones}{devices}").replace(from, to);
            let c = compile_yaml(&yaml, &CompileOptions::default());
            // (name, last byte of its MAC and address)
            for ((name, last), audited) in [("da", 1u8), ("db", 2)].into_iter().zip(want) {
                let mac = c.maps.macs.iter().find(|e| e.0 == [2, 0, 0, 0, 0, last]);
                let addr = c.maps.addrs_v4.iter().find(|e| e.0 == [10, 0, 0, last]);
                let row = c.devices.iter().find(|d| d.name == name);
                let flags = (
                    mac.map(|e| e.1.flags & MAC_F_AUDIT != 0),
                    addr.map(|e| e.1.flags & SRC_F_AUDIT != 0),
                    row.map(|d| d.audit),
                );
                assert_eq!(
                    flags,
                    (Some(audited), Some(audited), Some(audited)),
                    "{why}: {name}"
                );
            }
        }
    }

    #[test]
    fn a_mac_entry_names_its_devices_own_ipv4_address_and_nothing_else() {
        let yaml = format!(
            "{ZONES}devices:\n  both: {{zone: a, mac: '02:00:00:00:00:01', addresses: ['fd00::1', 10.1.0.5, 10.1.0.6]}}\n  v6only: {{zone: a, mac: '02:00:00:00:00:02', addresses: ['fd00::2']}}\n  anyaddr: {{zone: b, mac: '02:00:00:00:00:03'}}\nrules: [{{name: r, from: zone:a, to: zone:b, allow: [tcp/443]}}]\n"
        );
        let c = compile_yaml(&yaml, &CompileOptions::default());
        let v4 = |last: u8| {
            c.maps
                .macs
                .iter()
                .find(|e| e.0 == [2, 0, 0, 0, 0, last])
                .map(|e| e.1.v4)
                .unwrap_or_else(|| panic!("MAC entry {last}: {:?}", c.maps.macs))
        };
        assert_eq!(
            v4(1),
            u32::from_ne_bytes([10, 1, 0, 5]),
            "its first IPv4 address"
        );
        let by_addr = c
            .maps
            .addrs_v4
            .iter()
            .find(|e| e.0 == [10, 1, 0, 5])
            .map(|e| e.1.device);
        let mac_device = c.maps.macs.iter().find(|e| e.0[5] == 1).map(|e| e.1.device);
        assert_eq!(
            by_addr, mac_device,
            "the address table agrees with the shortcut"
        );
        assert_eq!(v4(2), 0, "no IPv4 address, no shortcut");
        assert_eq!(v4(3), 0, "identified by its MAC alone");
    }

    #[test]
    fn enforced_segments_become_onlink_entries_unless_a_network_names_them() {
        let yaml = format!(
            "{ZONES}networks: {{internet: [0.0.0.0/0, \"::/0\"], lab: [10.2.0.0/24]}}\ndevices: {{da: {{zone: a, addresses: [10.1.0.5]}}}}\nrules: [{{name: r, from: zone:a, to: network:internet, allow: [tcp/443]}}]\n"
        );
        let prefixes = ["10.1.0.1/24", "10.2.0.1/24", "fd00:1::1/64"];
        let opts = CompileOptions {
            local_prefixes: prefixes
                .iter()
                .map(|p| p.parse::<ipnet::IpNet>().unwrap_or_else(|e| panic!("{e}")))
                .collect(),
            ..CompileOptions::default()
        };
        let c = compile_yaml(&yaml, &opts);
        let onlink = |a: [u8; 4], len: u8| {
            c.maps
                .nets_v4
                .iter()
                .find(|e| e.0 == Prefix { addr: a, len })
                .map(|e| e.1)
        };
        let seg = onlink([10, 1, 0, 0], 24)
            .unwrap_or_else(|| panic!("segment entry: {:?}", c.maps.nets_v4));
        assert_eq!(seg.flags & NET_F_ONLINK, NET_F_ONLINK);
        assert_eq!(
            seg.class, c.unknown_class,
            "an unlisted address on a segment is unknown"
        );
        assert_eq!(seg.network, 0);
        let lab = onlink([10, 2, 0, 0], 24).unwrap_or_else(|| panic!("lab entry"));
        assert_eq!(
            lab.flags & NET_F_ONLINK,
            0,
            "the policy's own network for that prefix wins"
        );
        assert_eq!(lab.class, class(&c, "network:lab"));
        assert!(
            c.maps
                .nets_v6
                .iter()
                .any(|e| e.0.len == 64 && e.1.flags & NET_F_ONLINK != 0),
            "IPv6 segment too"
        );
        assert_eq!(
            c.maps.nets_v4.len(),
            3,
            "0/0, lab and the one segment, no duplicates"
        );
    }
    #[test]
    fn router_addresses_and_tripwires_are_in_the_identity_maps() {
        let yaml = format!(
            "{ZONES}networks: {{pot: [10.9.0.0/16, \"fd00:9::/32\"]}}\ndevices: {{da: {{zone: a, mac: \"02:00:00:00:00:01\", addresses: [10.0.0.1]}}}}\nrules: [{{name: r, from: zone:a, to: router, allow: [udp/53]}}]\nquarantine: {{zone: quarantine, when: {{touches: [network:pot, device:da]}}}}\n"
        );
        let opts = CompileOptions {
            router_addrs: vec!["10.0.0.254".parse().unwrap_or_else(|e| panic!("{e}"))],
            ..Default::default()
        };
        let c = compile_yaml(&yaml, &opts);
        let router = c
            .maps
            .addrs_v4
            .iter()
            .find(|a| a.0 == [10, 0, 0, 254])
            .map(|a| a.1);
        assert_eq!(
            router.map(|r| (r.kind, r.class, r.device)),
            Some((ADDR_KIND_ROUTER, c.router_class, 0))
        );
        let dev = c
            .maps
            .addrs_v4
            .iter()
            .find(|a| a.0 == [10, 0, 0, 1])
            .map(|a| a.1);
        assert_eq!(
            dev.map(|d| (d.flags, d.mac)),
            Some((DST_F_TRIPWIRE, [2, 0, 0, 0, 0, 1]))
        );
        assert_eq!(
            c.maps.nets_v4,
            vec![(
                Prefix {
                    addr: [10, 9, 0, 0],
                    len: 16
                },
                NetEntry {
                    network: 1,
                    class: class(&c, "network:pot"),
                    flags: DST_F_TRIPWIRE,
                    _pad: 0
                }
            )]
        );
        assert_eq!(c.maps.nets_v6.len(), 1);
        assert_eq!(c.maps.macs.len(), 1);
        assert_eq!(c.unknown_class, class(&c, "zone:quarantine"));
        assert_eq!(c.quarantine.as_ref().map(|q| q.touches.len()), Some(2));
    }
    #[test]
    fn device_on_a_router_address_is_an_error_at_the_address() {
        let yaml = format!("{ZONES}devices:\n  da: {{zone: a, addresses: [10.0.0.1]}}\n");
        let policy = parse_str("t.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
        let opts = CompileOptions {
            router_addrs: vec!["10.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"))],
            ..Default::default()
        };
        let err = compile(&policy, &opts)
            .map(|_| ())
            .expect_err("router clash");
        let text = err.to_string();
        assert!(text.contains("t.yaml:3:29: error: address 10.0.0.1 of device `da` is one of the router's own addresses"), "{text}");
    }
}
