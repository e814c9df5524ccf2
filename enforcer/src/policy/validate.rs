//! Checks across the merged policy: references resolve, no address, MAC or CIDR is claimed twice,
//! rules can match something, and the policy is not empty.
//!
//! Per-value checks (syntax of a MAC, a port) are done while reading (`model`); checks that need the
//! router's addresses or the compiled maps (capacity, shadowed rules) are done by `compile`.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use super::{
    diag::{Diags, Loc},
    model::{Endpoint, Located, Policy},
};

pub(crate) fn validate(p: &Policy, diags: &mut Diags) {
    if p.rules.is_empty() && p.devices.is_empty() && !diags.has_errors() {
        diags.error(
            &p.root,
            "policy is empty: it has no rules and no devices",
            "an empty policy denies everything; add devices and rules",
        );
    }
    check_zone_ref(p, &p.defaults.unknown, "defaults.unknown", diags);
    if let Some(q) = &p.quarantine {
        check_zone_ref(p, &q.zone, "quarantine.zone", diags);
        for t in &q.touches {
            check_endpoint(p, t, diags);
        }
    }
    let mut addrs: HashMap<IpAddr, (&str, &Loc)> = HashMap::new();
    let mut macs: HashMap<[u8; 6], (&str, &Loc)> = HashMap::new();
    for d in p.devices.values() {
        check_zone_ref(p, &d.zone, &format!("device `{}`", d.name), diags);
        for a in &d.addresses {
            if let Some((other, at)) = addrs.get(&a.value) {
                diags.error(
                    &a.loc,
                    format!(
                        "address {} is claimed by devices `{other}` ({at}) and `{}`",
                        a.value, d.name
                    ),
                    "an address identifies one device; remove one",
                );
            } else {
                addrs.insert(a.value, (&d.name, &a.loc));
            }
        }
        if let Some(m) = &d.mac {
            if let Some((other, at)) = macs.get(&m.value) {
                diags.error(
                    &m.loc,
                    format!(
                        "MAC {} is claimed by devices `{other}` ({at}) and `{}`",
                        fmt_mac(m.value),
                        d.name
                    ),
                    "a MAC identifies one device; remove one",
                );
            } else {
                macs.insert(m.value, (&d.name, &m.loc));
            }
        }
    }
    let mut cidrs: HashMap<ipnet::IpNet, (&str, &Loc)> = HashMap::new();
    for n in p.networks.values() {
        for c in &n.cidrs {
            if let Some((other, at)) = cidrs.get(&c.value) {
                diags.error(
                    &c.loc,
                    format!(
                        "CIDR {} is listed by networks `{other}` ({at}) and `{}`",
                        c.value, n.name
                    ),
                    "a prefix belongs to one network; remove one",
                );
            } else {
                cidrs.insert(c.value, (&n.name, &c.loc));
            }
        }
    }
    let populated: HashSet<&str> = p.devices.values().map(|d| d.zone.value.as_str()).collect();
    for r in &p.rules {
        for ep in r.from.iter().chain(&r.to) {
            check_endpoint(p, ep, diags);
            if let Endpoint::Zone(z) = &ep.value {
                let special = *z == p.defaults.unknown.value
                    || p.quarantine.as_ref().is_some_and(|q| q.zone.value == *z);
                if p.zones.contains_key(z) && !special && !populated.contains(z.as_str()) {
                    diags.warning(&ep.loc, format!("rule `{}`: zone `{z}` has no devices, so this side matches nothing yet", r.name), "add devices to the zone, or remove the rule");
                }
            }
        }
        let router_only = |side: &[Located<Endpoint>]| {
            !side.is_empty() && side.iter().all(|e| e.value == Endpoint::Router)
        };
        if router_only(&r.from) && router_only(&r.to) {
            diags.error(&r.loc, format!("rule `{}` can never match: traffic from the router to itself never crosses the enforced interfaces", r.name), "remove the rule");
        }
    }
}

pub(crate) fn fmt_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn check_zone_ref(p: &Policy, zone: &Located<String>, whose: &str, diags: &mut Diags) {
    if !p.zones.contains_key(&zone.value) {
        diags.error(
            &zone.loc,
            format!("{whose}: unknown zone `{}`", zone.value),
            hint_names("zones", p.zones.keys()),
        );
    }
}

fn check_endpoint(p: &Policy, ep: &Located<Endpoint>, diags: &mut Diags) {
    let (kind, known) = match &ep.value {
        Endpoint::Zone(n) => ("zones", p.zones.contains_key(n)),
        Endpoint::Device(n) => ("devices", p.devices.contains_key(n)),
        Endpoint::Network(n) => ("networks", p.networks.contains_key(n)),
        Endpoint::Router | Endpoint::Any => return,
    };
    if !known {
        let names: Box<dyn Iterator<Item = &String>> = match kind {
            "zones" => Box::new(p.zones.keys()),
            "devices" => Box::new(p.devices.keys()),
            _ => Box::new(p.networks.keys()),
        };
        diags.error(
            &ep.loc,
            format!(
                "`{}` refers to an undefined {}",
                ep.value,
                &kind[..kind.len() - 1]
            ),
            hint_names(kind, names),
        );
    }
}

/// "define it under `zones:` (defined: a, b, c)", listing a few names.
fn hint_names<'a>(section: &str, names: impl Iterator<Item = &'a String>) -> String {
    let shown: Vec<&str> = names.take(8).map(String::as_str).collect();
    if shown.is_empty() {
        format!("define it under `{section}:`")
    } else {
        format!(
            "define it under `{section}:` or fix the name (defined: {})",
            shown.join(", ")
        )
    }
}
