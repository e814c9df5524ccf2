//! A flow-table entry as an observation: who started it, whom it reached (as the policy resolves
//! both), on which server port, and how much.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use enforcer_common::{
    NETWORK_DEVICE_BASE, PROTO_TCP, PROTO_UDP, ROUTER_DEVICE, UNKNOWN_DEVICE,
    event::DenyEvent,
    flow::{FLOW_F_AUDIT, FlowKey, FlowValue},
    identity::{ADDR_KIND_DEVICE, ADDR_KIND_ROUTER, ip_addr},
    is_listed_device,
};
use ipnet::IpNet;

use super::{Peer, Seen, Service};
use crate::policy::CompiledPolicy;

/// One flow as the observer records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowSample {
    /// The flow's identity across scans: its key and when it was first stored (a key reused by a
    /// later flow is another flow).
    pub id: (FlowKey, u64),
    pub source: Peer,
    pub peer: Peer,
    pub peer_address: IpAddr,
    pub service: Service,
    pub seen: Seen,
    /// The name of the rule the flow holds (`default` for the default verdict).
    pub rule: String,
    pub packets: u64,
    pub bytes: u64,
    /// Monotonic nanoseconds, as the datapath keeps them.
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
}

/// The names behind the datapath's ids for one compiled policy.
pub struct Resolver {
    devices: HashMap<u32, String>,
    networks: HashMap<u32, String>,
    rules: HashMap<u32, String>,
    /// Every network's CIDRs, longest first (the datapath's longest-prefix match).
    cidrs: Vec<(IpNet, String)>,
    router: Vec<IpAddr>,
    /// Listed devices' addresses to their ids (the datapath's `ADDRS`), for a peer known only by
    /// its address (an audit event names the source's device, not the destination's).
    device_addrs: HashMap<IpAddr, u32>,
    /// `dns:` name patterns by id.
    names: HashMap<u32, String>,
    /// Live name bindings: (device id, address) to the ids of the names bound (`BINDINGS`).
    bound: HashMap<(u32, IpAddr), Vec<u32>>,
}

impl Resolver {
    #[must_use]
    pub fn new(p: &CompiledPolicy) -> Self {
        let mut cidrs: Vec<(IpNet, String)> = p
            .networks
            .iter()
            .flat_map(|n| {
                n.cidrs
                    .iter()
                    .filter_map(|c| c.parse::<IpNet>().ok())
                    .map(|c| (c, n.name.clone()))
            })
            .collect();
        cidrs.sort_by_key(|(c, _)| std::cmp::Reverse(c.prefix_len()));
        let addrs = p
            .maps
            .addrs_v4
            .iter()
            .map(|(a, e)| (IpAddr::V4(Ipv4Addr::from(*a)), e))
            .chain(
                p.maps
                    .addrs_v6
                    .iter()
                    .map(|(a, e)| (IpAddr::V6(Ipv6Addr::from(*a)), e)),
            );
        let (mut router, mut device_addrs) = (Vec::new(), HashMap::new());
        for (addr, e) in addrs {
            match e.kind {
                ADDR_KIND_ROUTER => router.push(addr),
                ADDR_KIND_DEVICE => {
                    device_addrs.insert(addr, e.device);
                }
                _ => {}
            }
        }
        Self {
            devices: p.devices.iter().map(|d| (d.id, d.name.clone())).collect(),
            networks: p.networks.iter().map(|n| (n.id, n.name.clone())).collect(),
            rules: p.rules.iter().map(|r| (r.id, r.name.clone())).collect(),
            cidrs,
            router,
            device_addrs,
            names: p
                .names
                .iter()
                .map(|n| (n.id, n.pattern.to_string()))
                .collect(),
            bound: HashMap::new(),
        }
    }

    /// With the live name bindings (the datapath's `BINDINGS`, read at the scan), so a peer a
    /// source reached at an address its resolver answer bound is recorded as that `dns:` name.
    #[must_use]
    pub fn with_bindings(mut self, live: &[crate::datapath::names::Binding]) -> Self {
        for b in live {
            self.bound
                .entry((b.device, b.addr))
                .or_default()
                .push(b.name);
        }
        for names in self.bound.values_mut() {
            names.sort_unstable();
        }
        self
    }

    /// The flow `(k, v)` as an observation, or `None` for one no rule could be learnt from (an
    /// endpoint the current policy no longer names by the id the flow holds).
    #[must_use]
    pub fn sample(&self, k: &FlowKey, v: &FlowValue) -> Option<FlowSample> {
        let addr = |w| ip_addr(k.family, w);
        // The responder's port is the server's; the initiator's is ephemeral and never kept.
        let (init, resp, resp_port) = if v.init_is_lo != 0 {
            (addr(k.lo_addr), addr(k.hi_addr), k.hi_port)
        } else {
            (addr(k.hi_addr), addr(k.lo_addr), k.lo_port)
        };
        let source = self.endpoint(v.init_device, init)?;
        let peer = self.endpoint(v.resp_device, resp)?;
        let peer = self
            .bound_name(v.init_device, resp)
            .map_or(peer, Peer::Name);
        let port = if matches!(k.proto, PROTO_TCP | PROTO_UDP) {
            resp_port
        } else {
            0
        };
        Some(FlowSample {
            id: (*k, v.first_seen_ns),
            source,
            peer,
            peer_address: resp,
            service: Service {
                proto: k.proto,
                port,
            },
            seen: if v.observed & FLOW_F_AUDIT != 0 {
                Seen::Audit
            } else {
                Seen::Allow
            },
            rule: if v.rule == enforcer_common::DEFAULT_RULE {
                "default".to_owned()
            } else {
                self.rules
                    .get(&v.rule)
                    .cloned()
                    .unwrap_or_else(|| "unknown".to_owned())
            },
            packets: u64::from(v.packets),
            bytes: v.bytes,
            first_seen_ns: v.first_seen_ns,
            last_seen_ns: v.last_seen_ns,
        })
    }

    /// An audit event (a packet the policy would have denied, passed because its source is in
    /// audit) as a one-packet observation of its own, for a packet the flow table does not hold:
    /// protocols without flows (GRE, ICMP other than echo), or a flow the table refused or already
    /// dropped. The event carries no length, so it adds no bytes. `None` for a denial, a
    /// quarantine, or an audit of what starts nothing (a sender passed for spoofing or while
    /// quarantined, a packet continuing no flow).
    #[must_use]
    pub fn audit_sample(&self, e: &DenyEvent) -> Option<FlowSample> {
        use enforcer_common::event::{DenyReason, EVENT_DENY};
        if e.kind != EVENT_DENY
            || e.verdict != enforcer_common::Verdict::Audit as u8
            || !matches!(
                DenyReason::from_u8(e.reason),
                Some(DenyReason::Rule | DenyReason::Default)
            )
        {
            return None;
        }
        let (key, src_is_lo) =
            FlowKey::canonical(e.family, e.proto, e.src, e.sport, e.dst, e.dport);
        let dst = ip_addr(e.family, e.dst);
        let value = FlowValue {
            rule: e.rule,
            init_device: e.device,
            resp_device: self
                .device_addrs
                .get(&dst)
                .copied()
                .unwrap_or(UNKNOWN_DEVICE),
            init_is_lo: u8::from(src_is_lo),
            first_seen_ns: e.timestamp_ns,
            last_seen_ns: e.timestamp_ns,
            packets: 1,
            observed: FLOW_F_AUDIT,
            ..FlowValue::default()
        };
        self.sample(&key, &value)
    }

    /// The `dns:` name bound, for the device with id `device`, to `addr` (the lowest name id
    /// when several are), as its pattern: the peer as the name rules see it.
    fn bound_name(&self, device: u32, addr: IpAddr) -> Option<String> {
        let ids = self.bound.get(&(device, addr))?;
        ids.iter().find_map(|id| self.names.get(id).cloned())
    }

    /// An endpoint by the device row the datapath resolved it to, or by its address where the
    /// row says no more than "unknown" (the router's own addresses, networks, strangers).
    fn endpoint(&self, device: u32, addr: IpAddr) -> Option<Peer> {
        if is_listed_device(device) {
            return self.devices.get(&device).cloned().map(Peer::Device);
        }
        if device == ROUTER_DEVICE {
            return Some(Peer::Router);
        }
        if device > NETWORK_DEVICE_BASE {
            return self
                .networks
                .get(&(device - NETWORK_DEVICE_BASE))
                .cloned()
                .map(Peer::Network);
        }
        if self.router.contains(&addr) || addr.is_multicast() || is_broadcast(addr) {
            return Some(Peer::Router);
        }
        Some(
            self.cidrs
                .iter()
                .find(|(c, _)| c.contains(&addr))
                .map_or(Peer::Address(addr), |(_, n)| Peer::Network(n.clone())),
        )
    }
}

fn is_broadcast(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V4(a) if a.is_broadcast() || a.octets()[3] == 255)
}

#[cfg(test)]
mod tests {
    use enforcer_common::{FAMILY_V4, PROTO_TCP, identity::words};

    use super::*;
    use crate::{
        datapath::names::Binding,
        policy::{CompileOptions, compile, parse_str},
    };

    const POLICY: &str = r#"
zones: {cameras: {}, quarantine: {}}
networks: {internet: ["0.0.0.0/0"]}
devices:
  cam-1: {zone: cameras, addresses: [10.1.1.10]}
  cam-2: {zone: cameras, addresses: [10.1.1.11]}
dns: {upstream: [192.0.2.53]}
rules:
  - {name: cams-cloud, from: zone:cameras, to: dns:updates.axis.example, allow: [tcp/443]}
defaults: {unknown: quarantine}
"#;

    fn v4(a: [u8; 4]) -> [u32; 4] {
        let mut o = [0; 16];
        o[..4].copy_from_slice(&a);
        words(o)
    }

    /// cam-1's flow to 198.51.100.7:443 as the flow table holds it.
    fn flow(p: &CompiledPolicy, device: &str) -> (FlowKey, FlowValue) {
        let id = p
            .devices
            .iter()
            .find(|d| d.name == device)
            .map(|d| d.id)
            .unwrap_or_else(|| panic!("no {device}"));
        let (key, src_is_lo) = FlowKey::canonical(
            FAMILY_V4,
            PROTO_TCP,
            v4([10, 1, 1, 10]),
            40000,
            v4([198, 51, 100, 7]),
            443,
        );
        let value = FlowValue {
            init_device: id,
            init_is_lo: u8::from(src_is_lo),
            packets: 3,
            ..FlowValue::default()
        };
        (key, value)
    }

    #[test]
    fn a_peer_the_source_resolved_is_recorded_by_its_name_and_for_no_other_source() {
        let p = compile(
            &parse_str("names.yaml", POLICY).unwrap_or_else(|e| panic!("{e}")),
            &CompileOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let name = p
            .names
            .first()
            .map(|n| n.id)
            .unwrap_or_else(|| panic!("no name"));
        let (key, value) = flow(&p, "cam-1");
        let unbound = Resolver::new(&p).sample(&key, &value).map(|s| s.peer);
        assert_eq!(unbound, Some(Peer::Network("internet".into())));
        let bound = Resolver::new(&p).with_bindings(&[Binding {
            device: value.init_device,
            addr: "198.51.100.7".parse().unwrap_or_else(|e| panic!("{e}")),
            name,
            expires_ns: u64::MAX,
        }]);
        assert_eq!(
            bound.sample(&key, &value).map(|s| s.peer),
            Some(Peer::Name("updates.axis.example".into()))
        );
        let (key2, value2) = flow(&p, "cam-2");
        assert_eq!(
            bound.sample(&key2, &value2).map(|s| s.peer),
            Some(Peer::Network("internet".into())),
            "cam-1's binding names nothing for cam-2"
        );
    }
}
