//! Classes: sets of endpoints every rule treats alike (each zone, each network, the router, and
//! each device a rule or tripwire names on its own).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::policy::{
    compiled::ClassInfo,
    model::{Endpoint, Located, Policy},
    names::NamePattern,
};

/// The class of `name`, a zone or network of the validated policy.
///
/// # Panics
/// When `name` has no class: `validate` rejects references to undefined zones and networks, so a
/// miss is a compiler bug. Class 0 is never a real class, so falling back to it would silently
/// drop the endpoint.
fn known_class(classes: &HashMap<String, u16>, kind: &str, name: &str) -> u16 {
    match classes.get(name) {
        Some(class) => *class,
        None => panic!("compiler bug: {kind} `{name}` has no class"),
    }
}

/// The classes: one per zone, network, the router, and each device a rule or tripwire names.
pub(super) struct Classes {
    pub(super) info: Vec<ClassInfo>,
    zones: HashMap<String, u16>,
    networks: HashMap<String, u16>,
    pub(super) router: u16,
    /// Devices with a class of their own.
    own: HashMap<String, u16>,
    /// Own classes of devices, by zone.
    zone_members: HashMap<String, Vec<u16>>,
    /// `dns:` name patterns, a class each (destinations only).
    pub(super) names: BTreeMap<NamePattern, u16>,
}

impl Classes {
    pub(super) fn new(p: &Policy) -> Self {
        let named: BTreeSet<&str> = p
            .rules
            .iter()
            .flat_map(|r| r.from.iter().chain(&r.to))
            .chain(p.quarantine.iter().flat_map(|q| &q.touches))
            .filter_map(|e| match &e.value {
                Endpoint::Device(d) => Some(d.as_str()),
                _ => None,
            })
            .collect();
        let mut info = Vec::new();
        // Ids past MAX_CLASSES are never used: `capacity` rejects the policy first.
        let mut add = |name: String| {
            let id = u16::try_from(info.len() + 1).unwrap_or(u16::MAX);
            info.push(ClassInfo { id, name });
            id
        };
        let zones = p
            .zones
            .keys()
            .map(|z| (z.clone(), add(format!("zone:{z}"))))
            .collect();
        let networks = p
            .networks
            .keys()
            .map(|n| (n.clone(), add(format!("network:{n}"))))
            .collect();
        let router = add("router".to_owned());
        let names = p
            .rules
            .iter()
            .flat_map(|r| &r.to)
            .filter_map(|e| match &e.value {
                Endpoint::Name(n) => Some(n.clone()),
                _ => None,
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|n| {
                let id = add(format!("dns:{n}"));
                (n, id)
            })
            .collect();
        let mut own = HashMap::new();
        let mut zone_members: HashMap<String, Vec<u16>> = HashMap::new();
        for d in named {
            let id = add(format!("device:{d}"));
            own.insert(d.to_owned(), id);
            if let Some(dev) = p.devices.get(d) {
                zone_members
                    .entry(dev.zone.value.clone())
                    .or_default()
                    .push(id);
            }
        }
        Self {
            info,
            zones,
            networks,
            router,
            own,
            zone_members,
            names,
        }
    }

    /// The class of zone `name` (validated to exist, so a miss is a bug; see [`known_class`]).
    pub(super) fn zone(&self, name: &str) -> u16 {
        known_class(&self.zones, "zone", name)
    }

    /// The class of network `name` (validated to exist).
    pub(super) fn network(&self, name: &str) -> u16 {
        known_class(&self.networks, "network", name)
    }

    pub(super) fn device(&self, name: &str, zone: &str) -> u16 {
        self.own
            .get(name)
            .copied()
            .unwrap_or_else(|| self.zone(zone))
    }

    /// The classes a rule endpoint stands for, sorted.
    pub(super) fn expand(&self, endpoints: &[Located<Endpoint>]) -> Vec<u16> {
        let mut out = Vec::new();
        for e in endpoints {
            match &e.value {
                Endpoint::Any => {
                    return (1..=self.info.len())
                        .filter_map(|c| u16::try_from(c).ok())
                        .collect();
                }
                Endpoint::Zone(z) => {
                    out.push(self.zone(z));
                    out.extend(self.zone_members.get(z).into_iter().flatten());
                }
                Endpoint::Device(d) => out.extend(self.own.get(d)),
                Endpoint::Network(n) => out.push(self.network(n)),
                Endpoint::Router => out.push(self.router),
                Endpoint::Name(n) => out.extend(self.names.get(n)),
            }
        }
        out.sort_unstable();
        out.dedup();
        out.retain(|c| *c != 0);
        out
    }
}

#[cfg(test)]
mod tests {
    use enforcer_common::{Action, Decision, PROTO_TCP};

    use super::super::test_support::{ZONES, class, compile_yaml, pair, port};
    use crate::policy::CompileOptions;

    #[test]
    fn zone_rule_expands_to_own_device_classes() {
        let yaml = format!(
            "{ZONES}devices: {{da: {{zone: a, addresses: [10.0.0.1]}}, db: {{zone: b, addresses: [10.0.0.2]}}}}\nrules:\n  - {{name: zones, from: zone:a, to: zone:b, allow: [tcp/443]}}\n  - {{name: one, from: device:da, to: router, allow: [icmp]}}\n"
        );
        let c = compile_yaml(&yaml, &CompileOptions::default());
        let own = class(&c, "device:da");
        assert_ne!(own, class(&c, "zone:a"));
        assert_eq!(pair(&c, "device:da", "zone:b").tcp, Decision::NONE);
        let p = pair(&c, "device:da", "zone:b");
        assert_eq!(
            port(&c, &p, PROTO_TCP, 443),
            Some(Decision::new(Action::Allow, 2))
        );
        assert!(pair(&c, "zone:a", "zone:b").pair != 0);
        assert_eq!(
            pair(&c, "device:da", "router").icmp,
            Decision::new(Action::Allow, 1)
        );
        assert_eq!(
            c.devices.iter().find(|d| d.name == "db").map(|d| d.class),
            Some(class(&c, "zone:b"))
        );
        assert_eq!(c.maps.addrs_v4[0].1.class, own);
    }
}
