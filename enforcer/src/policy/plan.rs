//! [`PlanView`]: a compiled policy as an operator reads it (names, classes, map sizes against
//! capacity), serialisable so the daemon can record what it applied (`applied.json`), and
//! [`diff`] between two of them for `enforcer plan`.

use std::collections::BTreeMap;

use enforcer_common::{Action, Mode};
use serde::{Deserialize, Serialize};

use super::{
    compiled::{CompiledPolicy, Inventory},
    validate::fmt_mac,
};

/// What the datapath will see, by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanView {
    pub digest: String,
    pub sources: Vec<String>,
    /// "enforce" or "audit".
    pub mode: String,
    /// "allow" or "deny".
    pub default_action: String,
    pub spoofed_action: String,
    pub unknown_class: u16,
    pub router_class: u16,
    pub classes: Vec<PlanClass>,
    pub zones: Vec<PlanZone>,
    pub networks: Vec<PlanNetwork>,
    pub devices: Vec<PlanDevice>,
    pub rules: Vec<PlanRule>,
    /// Map name -> entries and capacity (per slot).
    pub maps: BTreeMap<String, PlanMap>,
    pub quarantine: Option<PlanQuarantine>,
    /// `limits:` (the flow table's capacity and the per-device quota). Absent in a record made
    /// before it was kept: the defaults.
    #[serde(default)]
    pub limits: super::model::Limits,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanClass {
    pub id: u16,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanZone {
    pub name: String,
    pub description: Option<String>,
    pub class: u16,
    pub devices: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanNetwork {
    pub name: String,
    pub id: u32,
    pub class: u16,
    pub cidrs: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanDevice {
    pub name: String,
    pub id: u32,
    pub zone: String,
    pub class: u16,
    pub mac: Option<String>,
    pub addresses: Vec<String>,
    #[serde(default)]
    pub inventory: Inventory,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRule {
    pub name: String,
    pub id: u32,
    pub action: String,
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub services: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanMap {
    pub entries: usize,
    pub capacity: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanQuarantine {
    pub zone: String,
    pub denied_packets: Option<(u32, u32)>,
    pub spoofing: bool,
    pub touches: Vec<String>,
    pub release_after_s: Option<u32>,
}

fn action_name(a: Action) -> String {
    match a {
        Action::Allow => "allow",
        Action::Deny => "deny",
        Action::None => "none",
    }
    .to_owned()
}

impl From<&CompiledPolicy> for PlanView {
    fn from(c: &CompiledPolicy) -> Self {
        let mut members: BTreeMap<&str, usize> = BTreeMap::new();
        for d in &c.devices {
            *members.entry(d.zone.as_str()).or_default() += 1;
        }
        Self {
            digest: c.digest.clone(),
            sources: c.sources.clone(),
            mode: match c.mode {
                Mode::Enforce => "enforce",
                Mode::Audit => "audit",
            }
            .to_owned(),
            default_action: action_name(c.default_action),
            spoofed_action: action_name(c.spoofed_action),
            unknown_class: c.unknown_class,
            router_class: c.router_class,
            classes: c
                .classes
                .iter()
                .map(|k| PlanClass {
                    id: k.id,
                    name: k.name.clone(),
                })
                .collect(),
            zones: c
                .zones
                .iter()
                .map(|z| PlanZone {
                    name: z.name.clone(),
                    description: z.description.clone(),
                    class: z.class,
                    devices: members.get(z.name.as_str()).copied().unwrap_or(0),
                })
                .collect(),
            networks: c
                .networks
                .iter()
                .map(|n| PlanNetwork {
                    name: n.name.clone(),
                    id: n.id,
                    class: n.class,
                    cidrs: n.cidrs.clone(),
                })
                .collect(),
            devices: c
                .devices
                .iter()
                .map(|d| PlanDevice {
                    name: d.name.clone(),
                    id: d.id,
                    zone: d.zone.clone(),
                    class: d.class,
                    mac: d.mac.map(fmt_mac),
                    addresses: d.addresses.iter().map(ToString::to_string).collect(),
                    inventory: d.inventory.clone(),
                })
                .collect(),
            rules: c
                .rules
                .iter()
                .map(|r| PlanRule {
                    name: r.name.clone(),
                    id: r.id,
                    action: r.action.clone(),
                    from: r.from.clone(),
                    to: r.to.clone(),
                    services: r.services.clone(),
                })
                .collect(),
            maps: c
                .maps
                .usage()
                .into_iter()
                .map(|u| {
                    (
                        u.name.to_owned(),
                        PlanMap {
                            entries: u.entries,
                            capacity: u.capacity as usize,
                        },
                    )
                })
                .collect(),
            limits: c.limits,
            quarantine: c.quarantine.as_ref().map(|q| PlanQuarantine {
                zone: q.zone.clone(),
                denied_packets: q.denied_packets,
                spoofing: q.spoofing,
                touches: q.touches.clone(),
                release_after_s: q.release_after_s,
            }),
        }
    }
}

/// Names added, removed, and present in both but different.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Changes {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// What applying `new` over `old` would change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanDiff {
    pub old_digest: String,
    pub new_digest: String,
    pub zones: Changes,
    pub networks: Changes,
    pub devices: Changes,
    pub rules: Changes,
    /// Settings (mode, defaults, quarantine) that differ, as `name: old -> new`.
    pub settings: Vec<String>,
    /// Map name -> new entries minus old entries (only maps that change).
    pub maps: BTreeMap<String, i64>,
}

impl PlanDiff {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
            && self.networks.is_empty()
            && self.devices.is_empty()
            && self.rules.is_empty()
            && self.settings.is_empty()
            && self.maps.is_empty()
    }
}

/// Compare by name; an entry "changed" when anything but its class number differs (classes are
/// renumbered freely between compiles and mean nothing to an operator).
fn changes<T: PartialEq>(
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &str,
    same: impl Fn(&T, &T) -> bool,
) -> Changes {
    let old: BTreeMap<&str, &T> = old.iter().map(|t| (name(t), t)).collect();
    let new: BTreeMap<&str, &T> = new.iter().map(|t| (name(t), t)).collect();
    let mut out = Changes::default();
    for (n, t) in &new {
        match old.get(n) {
            None => out.added.push((*n).to_owned()),
            Some(o) if !same(o, t) => out.changed.push((*n).to_owned()),
            Some(_) => {}
        }
    }
    out.removed = old
        .keys()
        .filter(|n| !new.contains_key(*n))
        .map(|n| (*n).to_owned())
        .collect();
    out
}

/// What would change from `old` (applied) to `new` (planned).
#[must_use]
pub fn diff(old: &PlanView, new: &PlanView) -> PlanDiff {
    let mut settings = Vec::new();
    let mut setting = |name: &str, o: String, n: String| {
        if o != n {
            settings.push(format!("{name}: {o} -> {n}"));
        }
    };
    setting("mode", old.mode.clone(), new.mode.clone());
    setting(
        "defaults.action",
        old.default_action.clone(),
        new.default_action.clone(),
    );
    setting(
        "defaults.spoofed",
        old.spoofed_action.clone(),
        new.spoofed_action.clone(),
    );
    setting(
        "quarantine",
        format!("{:?}", old.quarantine),
        format!("{:?}", new.quarantine),
    );
    let mut maps = BTreeMap::new();
    for name in old.maps.keys().chain(new.maps.keys()) {
        let entries = |v: &PlanView| v.maps.get(name).map_or(0, |m| m.entries as i64);
        let delta = entries(new) - entries(old);
        if delta != 0 {
            maps.insert(name.clone(), delta);
        }
    }
    PlanDiff {
        old_digest: old.digest.clone(),
        new_digest: new.digest.clone(),
        zones: changes(
            &old.zones,
            &new.zones,
            |z| &z.name,
            |a, b| a.description == b.description && a.devices == b.devices,
        ),
        networks: changes(
            &old.networks,
            &new.networks,
            |n| &n.name,
            |a, b| a.cidrs == b.cidrs && a.id == b.id,
        ),
        devices: changes(
            &old.devices,
            &new.devices,
            |d| &d.name,
            |a, b| {
                (&a.zone, &a.mac, &a.addresses, &a.inventory, a.id)
                    == (&b.zone, &b.mac, &b.addresses, &b.inventory, b.id)
            },
        ),
        rules: changes(
            &old.rules,
            &new.rules,
            |r| &r.name,
            |a, b| {
                (&a.action, &a.from, &a.to, &a.services, a.id)
                    == (&b.action, &b.from, &b.to, &b.services, b.id)
            },
        ),
        settings,
        maps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{CompileOptions, compile, parse_str};

    fn view(yaml: &str) -> PlanView {
        let p = parse_str("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
        PlanView::from(&compile(&p, &CompileOptions::default()).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn diff_names_added_removed_and_changed_and_survives_json() {
        let base =
            "zones: {a: {}, quarantine: {}}\ndevices:\n  d1: {zone: a, addresses: [10.0.0.1]}\n";
        let old = view(&format!(
            "{base}  d2: {{zone: a, addresses: [10.0.0.2]}}\nrules: [{{name: r1, from: zone:a, to: router, allow: [udp/53]}}]\n"
        ));
        let new = view(&format!(
            "{base}  d3: {{zone: a, addresses: [10.0.0.3]}}\nrules: [{{name: r1, from: zone:a, to: router, allow: [udp/53, tcp/53]}}]\n"
        ));
        let json = serde_json::to_string(&old).unwrap_or_else(|e| panic!("{e}"));
        let old: PlanView = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        let d = diff(&old, &new);
        assert_eq!(d.devices.added, ["d3"]);
        assert_eq!(d.devices.removed, ["d2"]);
        assert_eq!(d.rules.changed, ["r1"]);
        assert_eq!(d.maps.get("PORTS"), Some(&1));
        assert!(diff(&new, &new).is_empty());
    }

    /// Three rules whose ids, after this history, are not the ones a fresh compile hands out
    /// (fresh ids follow the names' order): `zeta` came first, then `alpha` and `mid`.
    const SITE: &str = "zones: {a: {}, b: {}, quarantine: {}}\ndevices:\n  d1: {zone: a, addresses: [10.0.0.10]}\n  d2: {zone: b, addresses: [10.0.1.10]}\n";

    fn rules(rules: &[(&str, &str)]) -> String {
        let mut y = format!("{SITE}rules:\n");
        for (name, allow) in rules {
            y.push_str(&format!(
                "  - {{name: {name}, from: zone:a, to: zone:b, allow: [{allow}]}}\n"
            ));
        }
        y
    }

    fn compiled(yaml: &str, opts: &CompileOptions) -> crate::policy::CompiledPolicy {
        let p = parse_str("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
        compile(&p, opts).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The running policy as the daemon compiled it: with its host context, and ids kept over a
    /// history in which `zeta` was first.
    fn running(host: &CompileOptions) -> crate::policy::CompiledPolicy {
        let first = compiled(&rules(&[("zeta", "tcp/1")]), host);
        compiled(
            &rules(&[("zeta", "tcp/1"), ("alpha", "tcp/2"), ("mid", "tcp/3")]),
            &CompileOptions {
                previous_ids: Some(first.ids),
                ..host.clone()
            },
        )
    }

    fn host() -> CompileOptions {
        CompileOptions {
            router_addrs: vec!["10.0.0.1".parse().expect("literal")],
            local_prefixes: vec!["10.0.0.0/24".parse().expect("literal")],
            previous_ids: None,
        }
    }

    #[test]
    fn the_running_policy_compiled_with_its_host_and_ids_plans_to_no_change() {
        let live = running(&host());
        let applied = PlanView::from(&live);
        let same = rules(&[("zeta", "tcp/1"), ("alpha", "tcp/2"), ("mid", "tcp/3")]);
        let as_daemon = CompileOptions {
            previous_ids: Some(live.ids.clone()),
            ..host()
        };
        let d = diff(&applied, &PlanView::from(&compiled(&same, &as_daemon)));
        assert!(d.is_empty(), "{d:?}");

        // What plan did before: no host context, fresh ids. The router's address and segment go
        // missing from the maps, and rules whose fresh id differs read as changed.
        let bare = diff(
            &applied,
            &PlanView::from(&compiled(&same, &CompileOptions::default())),
        );
        assert!(
            bare.maps.values().any(|delta| *delta < 0),
            "the host's entries are missing without it: {bare:?}"
        );
        assert!(!bare.rules.changed.is_empty(), "{bare:?}");
    }

    #[test]
    fn a_one_rule_edit_plans_to_exactly_that_rule_and_its_entries() {
        let live = running(&host());
        let applied = PlanView::from(&live);
        let edited = rules(&[
            ("zeta", "tcp/1"),
            ("alpha", "tcp/2"),
            ("mid", "tcp/3, tcp/4"),
        ]);
        let d = diff(
            &applied,
            &PlanView::from(&compiled(
                &edited,
                &CompileOptions {
                    previous_ids: Some(live.ids.clone()),
                    ..host()
                },
            )),
        );
        assert_eq!(d.rules.changed, ["mid"]);
        assert!(
            d.rules.added.is_empty() && d.rules.removed.is_empty(),
            "{d:?}"
        );
        assert!(
            d.zones.is_empty() && d.devices.is_empty() && d.networks.is_empty(),
            "{d:?}"
        );
        assert!(d.settings.is_empty(), "{d:?}");
        assert!(
            d.maps.keys().all(|m| m == "PORTS") && !d.maps.is_empty(),
            "only the port entries of the pair change: {:?}",
            d.maps
        );
    }
}
