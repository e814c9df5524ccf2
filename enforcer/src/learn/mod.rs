//! The generaliser behind `enforcer learn`: observations in, least-privilege allow rules out,
//! written as an operator would write them.
//!
//! - Server ports only: observations carry the responder's port, never the ephemeral one, so a
//!   thousand connections from random source ports are one service.
//! - One rule `from: zone:Z` for a (peer, service) every device of `Z` needs; `from: device:D`
//!   for the devices that need it when not all do.
//! - Ports merge into a range only where every port of the range was observed.
//! - Peers as the policy resolves them (devices, networks, the router, `dns:` names); a peer known
//!   only by an address gets no rule, only a warning that suggests naming it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::observe::{Observation, Peer, Service};

mod render;

pub use render::{render_json, render_table, render_yaml};

/// Which sources to learn for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every listed device, zone by zone.
    All,
    Zone(String),
    Device(String),
}

/// Who is in which zone (the applied policy's devices).
#[derive(Clone, Debug, Default)]
pub struct Membership {
    zone_of: BTreeMap<String, String>,
    members: BTreeMap<String, BTreeSet<String>>,
}

impl Membership {
    /// From `(device, zone)` pairs.
    pub fn new<'a>(devices: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut m = Self::default();
        for (device, zone) in devices {
            m.zone_of.insert(device.to_owned(), zone.to_owned());
            m.members
                .entry(zone.to_owned())
                .or_default()
                .insert(device.to_owned());
        }
        m
    }

    fn in_scope(&self, device: &str, scope: &Scope) -> bool {
        match scope {
            Scope::All => self.zone_of.contains_key(device),
            Scope::Zone(z) => self.zone_of.get(device) == Some(z),
            Scope::Device(d) => d == device,
        }
    }
}

/// What `propose` needs besides the observations.
#[derive(Clone, Debug)]
pub struct Request {
    pub scope: Scope,
    /// The window asked for (`--since`), seconds, ending `now` (Unix seconds).
    pub since_s: u64,
    pub now: u64,
    /// When the store began observing (Unix seconds).
    pub observing_since: Option<u64>,
    /// Networks that cover everything (`0.0.0.0/0`, `::/0`): a peer there is known only by its
    /// address.
    pub wide_networks: BTreeSet<String>,
    /// Rule names the policy has already.
    pub taken_names: BTreeSet<String>,
}

/// Counts and first and last seen of what a rule allows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Seen {
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
    pub first_seen: u64,
    pub last_seen: u64,
}

impl Seen {
    fn add(&mut self, o: &Observation) {
        self.merge(&Self {
            flows: o.flows,
            packets: o.packets,
            bytes: o.bytes,
            first_seen: o.first_seen,
            last_seen: o.last_seen,
        });
    }

    fn merge(&mut self, other: &Self) {
        self.first_seen = if self.flows == 0 {
            other.first_seen
        } else {
            self.first_seen.min(other.first_seen)
        };
        self.last_seen = self.last_seen.max(other.last_seen);
        self.flows += other.flows;
        self.packets += other.packets;
        self.bytes += other.bytes;
    }
}

/// One proposed rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LearntRule {
    pub name: String,
    pub from: String,
    pub to: String,
    /// Services as the policy writes them (`tcp/443`, `tcp/8000-8002`, `icmp`).
    pub allow: Vec<String>,
    #[serde(flatten)]
    pub seen: Seen,
}

/// The rules and the warnings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Proposal {
    pub rules: Vec<LearntRule>,
    pub warnings: Vec<String>,
}

/// Per (peer, service): each device that needs it, and what it was seen doing.
type Needs = BTreeMap<(String, Service), BTreeMap<String, Seen>>;

/// Rules that allow exactly what `observations` show the scope's devices doing.
#[must_use]
pub fn propose(observations: &[Observation], m: &Membership, req: &Request) -> Proposal {
    let mut warnings = window_warning(req).into_iter().collect::<Vec<_>>();
    let needs = needs(observations, m, req, &mut warnings);
    // (from, to) -> service -> seen.
    let mut grouped: BTreeMap<(String, String), BTreeMap<Service, Seen>> = BTreeMap::new();
    for ((peer, service), devices) in &needs {
        for (from, seen) in sources(&devices_by_zone(devices, m), m, &req.scope) {
            let slot = grouped
                .entry((from, peer.clone()))
                .or_default()
                .entry(*service)
                .or_default();
            slot.merge(&seen);
        }
    }
    let mut names = req.taken_names.clone();
    let mut rules = Vec::new();
    for ((from, to), services) in grouped {
        let mut seen = Seen::default();
        for (service, s) in &services {
            seen.merge(s);
            if service.proto_name().is_none() {
                warnings.push(format!(
                    "{service} from {from} to {to} can only be allowed as `any`, which allows \
                     every protocol and port to {to}: keep it only if that is acceptable"
                ));
            }
            if s.flows == 1 {
                warnings.push(format!(
                    "{service} from {from} to {to} was seen once ({}): make sure it is needed",
                    crate::time::rfc3339(s.first_seen)
                ));
            }
        }
        let name = unique_name(
            &format!("learn-{}-to-{}", bare(&from), bare(&to)),
            &mut names,
        );
        rules.push(LearntRule {
            name,
            from,
            to,
            allow: services_text(services.keys().copied()),
            seen,
        });
    }
    Proposal { rules, warnings }
}

/// The window asked for, when the store has observed for less.
fn window_warning(req: &Request) -> Option<String> {
    let asked_from = req.now.saturating_sub(req.since_s);
    match req.observing_since {
        Some(start) if start > asked_from => Some(format!(
            "observations cover {} of the {} asked (since {}): traffic that is weekly or rarer \
             may be missing; run learn again later",
            human_span(req.now.saturating_sub(start)),
            human_span(req.since_s),
            crate::time::rfc3339(start)
        )),
        None => Some("nothing has been observed yet".to_owned()),
        Some(_) => None,
    }
}

/// What each in-scope device needs, by (peer, service); warns about peers no rule can name.
fn needs(obs: &[Observation], m: &Membership, req: &Request, warnings: &mut Vec<String>) -> Needs {
    let since = req.now.saturating_sub(req.since_s);
    let mut needs = Needs::new();
    let mut by_address: BTreeSet<(String, String)> = BTreeSet::new();
    for o in obs.iter().filter(|o| o.last_seen >= since) {
        let Peer::Device(device) = &o.source else {
            continue;
        };
        if !m.in_scope(device, &req.scope) {
            continue;
        }
        let to = match &o.peer {
            Peer::Address(a) => {
                by_address.insert((format!("{a}"), format!("{} from {}", o.service, o.source)));
                continue;
            }
            Peer::Network(n) if req.wide_networks.contains(n) => {
                by_address.insert((
                    format!("{} (network:{n})", o.peer_address),
                    format!("{} from {}", o.service, o.source),
                ));
                o.peer.to_string()
            }
            p => p.to_string(),
        };
        needs
            .entry((to, o.service))
            .or_default()
            .entry(device.clone())
            .or_default()
            .add(o);
    }
    for (addr, what) in by_address {
        warnings.push(format!(
            "{addr} is known only by its address ({what}): give it a name (a `dns:` name, or a \
             network of its own) so the rule allows no more than it"
        ));
    }
    needs
}

fn devices_by_zone<'a>(
    devices: &'a BTreeMap<String, Seen>,
    m: &Membership,
) -> BTreeMap<String, Vec<(&'a String, &'a Seen)>> {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for (d, s) in devices {
        if let Some(z) = m.zone_of.get(d) {
            out.entry(z.clone()).or_default().push((d, s));
        }
    }
    out
}

/// The `from:` of each rule: the zone when all its devices need it (and the scope is no single
/// device), else each device that does.
fn sources(
    by_zone: &BTreeMap<String, Vec<(&String, &Seen)>>,
    m: &Membership,
    scope: &Scope,
) -> Vec<(String, Seen)> {
    let mut out = Vec::new();
    for (zone, devices) in by_zone {
        let all = m.members.get(zone).map_or(0, BTreeSet::len);
        if !matches!(scope, Scope::Device(_)) && devices.len() == all {
            let mut seen = Seen::default();
            for (_, s) in devices {
                seen.merge(s);
            }
            out.push((format!("zone:{zone}"), seen));
        } else {
            out.extend(devices.iter().map(|(d, s)| (format!("device:{d}"), **s)));
        }
    }
    out
}

/// Services as a rule writes them, ports of one protocol merged into ranges where contiguous.
fn services_text(services: impl Iterator<Item = Service>) -> Vec<String> {
    let mut ports: BTreeMap<&'static str, Vec<u16>> = BTreeMap::new();
    let mut out = Vec::new();
    for s in services {
        match (s.proto_name(), s.has_port()) {
            (Some(p), true) => ports.entry(p).or_default().push(s.port),
            (Some(p), false) => out.push(p.to_owned()),
            // A protocol a rule cannot name but with `any`.
            (None, _) => out.push("any".to_owned()),
        }
    }
    let mut text = Vec::new();
    for (proto, mut list) in ports {
        list.sort_unstable();
        list.dedup();
        let mut i = 0;
        while i < list.len() {
            let start = list[i];
            let mut end = start;
            while i + 1 < list.len() && list[i + 1] == end.wrapping_add(1) {
                i += 1;
                end = list[i];
            }
            text.push(if start == end {
                format!("{proto}/{start}")
            } else {
                format!("{proto}/{start}-{end}")
            });
            i += 1;
        }
    }
    out.sort();
    out.dedup();
    text.extend(out);
    text
}

/// An endpoint's name without its kind, as a rule name's part.
fn bare(endpoint: &str) -> String {
    endpoint
        .split_once(':')
        .map_or(endpoint, |(_, n)| n)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// `base` as a rule name (`^[a-z][a-z0-9_-]{0,63}$`) no other rule has.
fn unique_name(base: &str, taken: &mut BTreeSet<String>) -> String {
    let base: String = base.chars().take(56).collect();
    let base = base.trim_end_matches('-').to_owned();
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    taken.insert(name.clone());
    name
}

/// A span of seconds for people: `3d 4h`, `5h`, `12m`, `40s`.
#[must_use]
pub fn human_span(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3_600),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests;
