//! The schema walker: the positioned YAML tree of one file in, a [`FileDoc`] out.
//!
//! Every key is checked against the schema (an unknown key is an error: a typo such as `alow:`
//! must not silently widen or narrow access), and every value keeps the place it was written.

use enforcer_common::{Action, Mode};

use super::{
    Device, Endpoint, FileDoc, Inventory, Limits, Located, MAX_TEXT, Network, PartialDefaults,
    ProbeKind, Quarantine, Rule, RuleAction, Zone,
    scalars::{
        ENDPOINT_HINT, IDENT_HINT, Problem, check_ident, parse_addr, parse_cidr, parse_count,
        parse_duration, parse_endpoint, parse_mac, parse_service, truncate,
    },
};
use crate::policy::{
    diag::{Diags, Loc, did_you_mean},
    yaml::{Kind, Node},
};

pub(crate) const TOP_KEYS: &[&str] = &[
    "zones",
    "networks",
    "devices",
    "rules",
    "defaults",
    "quarantine",
    "limits",
    "interfaces",
    "tests",
    "guards",
    "dns",
];
pub(crate) const ZONE_KEYS: &[&str] = &["description", "mode"];
pub(crate) const DEVICE_KEYS: &[&str] = &[
    "zone",
    "mac",
    "addresses",
    "vendor",
    "model",
    "serial",
    "firmware",
    "os",
    "owner",
    "location",
    "notes",
    "risk",
    "mode",
];
pub(crate) const RULE_KEYS: &[&str] = &["name", "from", "to", "allow", "deny"];
pub(crate) const DEFAULT_KEYS: &[&str] = &["action", "mode", "unknown", "spoofed"];
pub(crate) const QUARANTINE_KEYS: &[&str] = &["zone", "when", "release_after"];
pub(crate) const WHEN_KEYS: &[&str] = &["denied_packets", "spoofing", "touches"];
pub(crate) const DENIED_KEYS: &[&str] = &["count", "within"];
/// `defaults.mode`, and a zone's or a device's `mode:`.
const MODES: &[(&str, Mode)] = &[("enforce", Mode::Enforce), ("audit", Mode::Audit)];
pub(crate) const LIMITS_KEYS: &[&str] = &["flows", "flows_per_device"];
pub(crate) const INTERFACE_KEYS: &[&str] = &["role"];
pub(crate) const DNS_KEYS: &[&str] = &["upstream", "listen", "ttl", "grace"];
pub(crate) const TTL_KEYS: &[&str] = &["min", "max"];

mod dns;
mod interfaces;
pub(crate) mod probes;

pub(crate) use probes::{parse_probe_end, parse_probe_service};

/// Convert one file's tree. Problems go to `diags`; what could be read is returned anyway, so
/// later checks still run and one pass reports everything.
pub(crate) fn file_doc(root: Node<'_>, diags: &mut Diags) -> FileDoc {
    let mut cx = Cx { diags };
    let mut doc = FileDoc::default();
    let Some(top) = cx.fields(root, "the policy file", TOP_KEYS) else {
        return doc;
    };
    for (key, knode, value) in top.entries {
        match key {
            "zones" => cx.named(
                value,
                "zones",
                &mut doc.unreadable,
                |cx, name, loc, body| {
                    let f = cx.fields(body, &format!("zone `{name}`"), ZONE_KEYS)?;
                    let description =
                        get(&f, "description").and_then(|n| cx.text(n, "a description"));
                    let mode = get(&f, "mode").and_then(|n| cx.choice(n, "mode", MODES));
                    doc.zones.push(Zone {
                        name,
                        description,
                        mode,
                        loc,
                    });
                    Some(())
                },
            ),
            "networks" => cx.named(
                value,
                "networks",
                &mut doc.unreadable,
                |cx, name, loc, body| {
                    let cidrs = cx
                        .list(body, "a list of CIDRs")
                        .into_iter()
                        .filter_map(|n| cx.parsed(n, parse_cidr))
                        .collect();
                    doc.networks.push(Network { name, cidrs, loc });
                    Some(())
                },
            ),
            "devices" => {
                // Sized once: the device list is the bulk of a large policy, and doubling
                // growth would leave up to half of it unused.
                if let Kind::Map(entries) = value.kind() {
                    doc.devices.reserve_exact(entries.len());
                }
                cx.named(
                    value,
                    "devices",
                    &mut doc.unreadable,
                    |cx, name, loc, body| {
                        doc.devices
                            .push(std::sync::Arc::new(cx.device(name, loc, body)?));
                        Some(())
                    },
                );
            }
            "rules" => {
                for item in cx.list(value, "a list of rules") {
                    doc.rules.extend(cx.rule(item));
                }
            }
            "defaults" => doc.defaults = cx.defaults(value).map(|d| (knode.loc(), d)),
            "quarantine" => doc.quarantine = cx.quarantine(knode, value),
            "limits" => doc.limits = cx.limits(value).map(|l| (knode.loc(), l)),
            "interfaces" => doc.interfaces = cx.interfaces(value),
            "tests" => doc.tests = cx.probes(value, ProbeKind::Test),
            "guards" => doc.guards = cx.probes(value, ProbeKind::Guard),
            "dns" => doc.dns = cx.dns(knode, value),
            _ => {}
        }
    }
    doc
}

fn get<'n>(fields: &Fields<'n>, key: &str) -> Option<Node<'n>> {
    fields
        .entries
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, _, v)| *v)
}

struct Cx<'d> {
    diags: &'d mut Diags,
}

/// The known keys of a mapping, in file order.
struct Fields<'n> {
    entries: Vec<(&'n str, Node<'n>, Node<'n>)>,
    /// A key was not in the schema. It is most likely the misspelling of a key the mapping then
    /// lacks, so "has no `allow`" is not reported on top of "unknown key `alow`": the root cause
    /// only.
    misspelt: bool,
}

impl Cx<'_> {
    fn err(&mut self, loc: &Loc, message: impl Into<String>, hint: impl Into<String>) {
        self.diags.error(loc, message, hint);
    }

    /// A mapping with only `allowed` keys (null counts as an empty mapping).
    fn fields<'n>(&mut self, node: Node<'n>, what: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        if node.is_null() {
            return Some(Fields {
                entries: Vec::new(),
                misspelt: false,
            });
        }
        let Kind::Map(entries) = node.kind() else {
            self.err(
                &node.loc(),
                format!("expected a mapping for {what}, found {}", node.describe()),
                "write it as `key: value` lines",
            );
            return None;
        };
        let mut out = Fields {
            // Each allowed key at most once (the reader refuses duplicates); a mapping of a
            // million unknown keys reserves nothing for them.
            entries: Vec::with_capacity(allowed.len().min(entries.len())),
            misspelt: false,
        };
        for (k, v) in entries {
            let key = k.scalar().unwrap_or_default();
            if allowed.contains(&key) {
                out.entries.push((key, k, v));
            } else if key == "<<" {
                // The reader reported the merge key already.
                out.misspelt = true;
            } else {
                out.misspelt = true;
                let at = k.loc();
                if self.diags.may_report_error(&at) {
                    self.err(
                        &at,
                        format!("unknown key `{}` in {what}", truncate(key)),
                        did_you_mean(key, allowed.iter().copied(), || {
                            format!("expected one of: {}", allowed.join(", "))
                        }),
                    );
                } else {
                    self.diags.omit_error();
                }
            }
        }
        Some(out)
    }

    fn require<'n>(&mut self, f: &Fields<'n>, key: &str, at: &Loc, what: &str) -> Option<Node<'n>> {
        let found = get(f, key);
        if found.is_none() && !f.misspelt {
            self.err(
                at,
                format!("{what} has no `{key}`"),
                format!("add `{key}:`"),
            );
        }
        found
    }

    /// A `name: body` mapping section; `each` gets the checked name, its place and the body.
    /// Names whose body could not be read go to `unreadable`: they are defined, only broken, and
    /// a reference to them is no second error.
    fn named(
        &mut self,
        node: Node<'_>,
        what: &str,
        unreadable: &mut Vec<Endpoint>,
        mut each: impl FnMut(&mut Self, String, Loc, Node<'_>) -> Option<()>,
    ) {
        if node.is_null() {
            return;
        }
        let Kind::Map(entries) = node.kind() else {
            self.err(
                &node.loc(),
                format!(
                    "expected a mapping of names for `{what}`, found {}",
                    node.describe()
                ),
                "write `name: {...}` entries",
            );
            return;
        };
        let mut seen = std::collections::HashSet::new();
        for (k, v) in entries {
            // A name twice in one mapping was reported by the reader as a duplicate key.
            if !seen.insert(k.scalar()) {
                continue;
            }
            if let Some(name) = self.ident(k, &what[..what.len() - 1])
                && each(self, name.clone(), k.loc(), v).is_none()
            {
                unreadable.push(match what {
                    "zones" => Endpoint::Zone(name),
                    "networks" => Endpoint::Network(name),
                    _ => Endpoint::Device(name),
                });
            }
        }
    }

    /// A non-null scalar.
    fn text(&mut self, node: Node<'_>, what: &str) -> Option<String> {
        match node.kind() {
            Kind::Scalar { value, .. } if !node.is_null() => {
                if value.chars().count() > MAX_TEXT {
                    self.err(
                        &node.loc(),
                        format!("value longer than {MAX_TEXT} characters"),
                        "shorten it",
                    );
                    return None;
                }
                Some(value.to_owned())
            }
            _ => {
                self.err(
                    &node.loc(),
                    format!("expected {what}, found {}", node.describe()),
                    format!("write {what} here"),
                );
                None
            }
        }
    }

    fn ident(&mut self, node: Node<'_>, what: &str) -> Option<String> {
        let text = self.text(node, &format!("a {what} name"))?;
        match check_ident(&text) {
            Ok(()) => Some(text),
            Err(message) => {
                self.err(
                    &node.loc(),
                    format!("invalid {what} name `{}`: {message}", truncate(&text)),
                    IDENT_HINT,
                );
                None
            }
        }
    }

    /// A list; a single scalar counts as a list of one, null as an empty list.
    fn list<'n>(&mut self, node: Node<'n>, what: &str) -> Vec<Node<'n>> {
        match node.kind() {
            _ if node.is_null() => Vec::new(),
            Kind::Seq(items) => items.collect(),
            Kind::Scalar { .. } => vec![node],
            Kind::Map(_) => {
                self.err(
                    &node.loc(),
                    format!("expected {what}, found {}", node.describe()),
                    "write a list: [a, b]",
                );
                Vec::new()
            }
        }
    }

    /// A scalar run through a value parser; its error becomes a located diagnostic.
    fn parsed<T>(
        &mut self,
        node: Node<'_>,
        parse: fn(&str) -> Result<T, Problem>,
    ) -> Option<Located<T>> {
        let Some(raw) = node.scalar().filter(|_| !node.is_null()) else {
            self.err(
                &node.loc(),
                format!("expected a value, found {}", node.describe()),
                "write a single value here",
            );
            return None;
        };
        match parse(raw) {
            Ok(value) => Some(Located {
                value,
                loc: node.loc(),
            }),
            Err(Problem { message, hint }) => {
                self.err(&node.loc(), message, hint);
                None
            }
        }
    }

    /// One of `choices`, written plain.
    fn choice<T: Copy>(&mut self, node: Node<'_>, what: &str, choices: &[(&str, T)]) -> Option<T> {
        let raw = node
            .scalar()
            .filter(|_| !node.is_null())
            .unwrap_or_default();
        if let Some((_, v)) = choices.iter().find(|(name, _)| *name == raw) {
            return Some(*v);
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        self.err(
            &node.loc(),
            format!("invalid {what} `{}`", truncate(raw)),
            did_you_mean(raw, names.iter().copied(), || {
                format!("expected one of: {}", names.join(", "))
            }),
        );
        None
    }

    fn boolean(&mut self, node: Node<'_>, what: &str) -> Option<bool> {
        match node.kind() {
            Kind::Scalar {
                value: "true",
                plain: true,
            } => Some(true),
            Kind::Scalar {
                value: "false",
                plain: true,
            } => Some(false),
            _ => {
                let raw = node.scalar().unwrap_or_default();
                self.err(
                    &node.loc(),
                    format!("invalid {what} `{}`: expected true or false", truncate(raw)),
                    "write true or false, unquoted",
                );
                None
            }
        }
    }

    fn device(&mut self, name: String, loc: Loc, body: Node<'_>) -> Option<Device> {
        let f = self.fields(body, &format!("device `{name}`"), DEVICE_KEYS)?;
        let what = format!("device `{name}`");
        let zone = self.require(&f, "zone", &loc, &what).and_then(|n| {
            let zone = self.ident(n, "zone")?;
            Some(Located {
                value: zone,
                loc: n.loc(),
            })
        });
        let mac = get(&f, "mac").and_then(|n| self.parsed(n, parse_mac));
        let addresses: Vec<_> = match get(&f, "addresses") {
            Some(n) => self
                .list(n, "a list of addresses")
                .into_iter()
                .filter_map(|a| self.parsed(a, parse_addr))
                .collect(),
            None => Vec::new(),
        };
        if get(&f, "mac").is_none()
            && !f.misspelt
            && get(&f, "addresses")
                .is_none_or(|n| n.is_null() || matches!(n.kind(), Kind::Seq(v) if v.len() == 0))
        {
            self.err(
                &loc,
                format!(
                    "device `{name}` has neither a mac nor addresses, so it can never be recognised"
                ),
                "add `mac:` or `addresses:`",
            );
        }
        let mut inv = Inventory::default();
        let slots: [(&str, &mut Option<String>); 8] = [
            ("vendor", &mut inv.vendor),
            ("model", &mut inv.model),
            ("serial", &mut inv.serial),
            ("firmware", &mut inv.firmware),
            ("os", &mut inv.os),
            ("owner", &mut inv.owner),
            ("location", &mut inv.location),
            ("notes", &mut inv.notes),
        ];
        for (key, slot) in slots {
            if let Some(n) = get(&f, key) {
                *slot = self.text(n, &format!("the {key}"));
            }
        }
        if let Some(n) = get(&f, "risk") {
            const RISKS: &[(&str, &str)] = &[
                ("low", "low"),
                ("medium", "medium"),
                ("high", "high"),
                ("critical", "critical"),
            ];
            inv.risk = self.choice(n, "risk", RISKS).map(str::to_owned);
        }
        Some(Device {
            name,
            zone: zone?,
            mac,
            addresses,
            inventory: inv,
            mode: get(&f, "mode").and_then(|n| self.choice(n, "mode", MODES)),
            loc,
        })
    }

    fn rule(&mut self, node: Node<'_>) -> Option<Rule> {
        let f = self.fields(node, "a rule", RULE_KEYS)?;
        let name_node = self.require(&f, "name", &node.loc(), "this rule");
        let name = name_node.and_then(|n| self.ident(n, "rule"));
        let what = format!("rule `{}`", name.as_deref().unwrap_or("?"));
        let loc = name_node.map_or_else(|| node.loc(), |n| n.loc());
        let from = self
            .require(&f, "from", &loc, &what)
            .map(|n| self.endpoints(n, &what, "from"));
        let to = self
            .require(&f, "to", &loc, &what)
            .map(|n| self.endpoints(n, &what, "to"));
        let (action, services) = match (get(&f, "allow"), get(&f, "deny")) {
            (Some(n), None) => (RuleAction::Allow, n),
            (None, Some(n)) => (RuleAction::Deny, n),
            (Some(_), Some(n)) => {
                self.err(
                    &n.loc(),
                    format!("{what} has both `allow` and `deny`"),
                    "split it into two rules",
                );
                return None;
            }
            // A misspelt key (`alow:`) was reported already; that is the root cause.
            (None, None) if f.misspelt => return None,
            (None, None) => {
                self.err(
                    &loc,
                    format!("{what} has neither `allow` nor `deny`"),
                    "add `allow: [...]` or `deny: [...]`",
                );
                return None;
            }
        };
        let items = self.list(services, "a list of services");
        if items.is_empty() {
            self.err(
                &services.loc(),
                format!("{what}: `{}` is empty", action.as_str()),
                "list at least one service, e.g. tcp/443 or any",
            );
        }
        let services: Vec<_> = items
            .into_iter()
            .filter_map(|n| self.parsed(n, parse_service))
            .collect();
        Some(Rule {
            name: name?,
            action,
            from: from?,
            to: to?,
            services,
            loc,
        })
    }

    fn endpoints(&mut self, node: Node<'_>, what: &str, side: &str) -> Vec<Located<Endpoint>> {
        let items = self.list(node, "an endpoint or a list of endpoints");
        if items.is_empty() && !matches!(node.kind(), Kind::Map(_)) {
            self.err(
                &node.loc(),
                format!("{what}: `{side}` is empty, so the rule can never match"),
                ENDPOINT_HINT,
            );
        }
        items
            .into_iter()
            .filter_map(|n| {
                if self.spaced_endpoint(n) {
                    None
                } else {
                    self.parsed(n, parse_endpoint)
                }
            })
            .collect()
    }

    /// `[zone: office]`: a space after the colon makes YAML read a mapping. Said in those words
    /// (rather than "expected a value, found a mapping"); true when reported.
    fn spaced_endpoint(&mut self, node: Node<'_>) -> bool {
        let Kind::Map(mut entries) = node.kind() else {
            return false;
        };
        let (1, Some((key, value))) = (entries.len(), entries.next()) else {
            return false;
        };
        let (Some(kind @ ("zone" | "device" | "network")), Some(name)) =
            (key.scalar(), value.scalar())
        else {
            return false;
        };
        self.err(
            &node.loc(),
            format!(
                "`{kind}: {}` is a mapping, not an endpoint (a space follows the colon)",
                truncate(name)
            ),
            format!("write `{kind}:{}`, without the space", truncate(name)),
        );
        true
    }

    fn defaults(&mut self, node: Node<'_>) -> Option<PartialDefaults> {
        let f = self.fields(node, "defaults", DEFAULT_KEYS)?;
        let actions = [("deny", Action::Deny), ("allow", Action::Allow)];
        Some(PartialDefaults {
            action: get(&f, "action").and_then(|n| self.choice(n, "defaults.action", &actions)),
            mode: get(&f, "mode").and_then(|n| self.choice(n, "defaults.mode", MODES)),
            unknown: get(&f, "unknown").and_then(|n| {
                Some(Located {
                    value: self.ident(n, "zone")?,
                    loc: n.loc(),
                })
            }),
            spoofed: get(&f, "spoofed").and_then(|n| self.choice(n, "defaults.spoofed", &actions)),
        })
    }

    fn limits(&mut self, node: Node<'_>) -> Option<Limits> {
        let f = self.fields(node, "limits", LIMITS_KEYS)?;
        let mut limits = Limits::default();
        if let Some(n) = get(&f, "flows") {
            limits.flows = self.parsed(n, parse_flow_capacity)?.value;
        }
        match get(&f, "flows_per_device") {
            Some(n) => {
                let quota = self.parsed(n, parse_flow_quota)?.value;
                if quota > limits.flows {
                    self.err(
                        &n.loc(),
                        format!(
                            "flows_per_device {quota} is more than the flow table holds ({})",
                            limits.flows
                        ),
                        "a device's quota cannot exceed `limits.flows`; lower it or raise `flows`",
                    );
                    return None;
                }
                limits.flows_per_device = quota;
            }
            // The default quota never exceeds a small table.
            None => limits.flows_per_device = limits.flows_per_device.min(limits.flows),
        }
        Some(limits)
    }

    fn quarantine(&mut self, key: Node<'_>, node: Node<'_>) -> Option<Quarantine> {
        let f = self.fields(node, "quarantine", QUARANTINE_KEYS)?;
        let zone = self
            .require(&f, "zone", &key.loc(), "quarantine")
            .and_then(|n| {
                Some(Located {
                    value: self.ident(n, "zone")?,
                    loc: n.loc(),
                })
            });
        let release_after_s = get(&f, "release_after")
            .and_then(|n| self.parsed(n, parse_duration))
            .map(|d| d.value);
        let (mut denied_packets, mut spoofing, mut touches) = (None, false, Vec::new());
        if let Some(when) =
            get(&f, "when").and_then(|n| self.fields(n, "quarantine.when", WHEN_KEYS))
        {
            if let Some(n) = get(&when, "denied_packets")
                && let Some(d) = self.fields(n, "quarantine.when.denied_packets", DENIED_KEYS)
            {
                let count = self
                    .require(&d, "count", &n.loc(), "denied_packets")
                    .and_then(|c| self.parsed(c, parse_count));
                let within = self
                    .require(&d, "within", &n.loc(), "denied_packets")
                    .and_then(|w| self.parsed(w, parse_duration));
                denied_packets = count.zip(within).map(|(c, w)| (c.value, w.value));
            }
            spoofing = get(&when, "spoofing")
                .and_then(|n| self.boolean(n, "quarantine.when.spoofing"))
                .unwrap_or(false);
            if let Some(n) = get(&when, "touches") {
                for t in self.list(n, "a list of network:NAME or device:NAME") {
                    let Some(ep) = self.parsed(t, parse_endpoint) else {
                        continue;
                    };
                    if matches!(ep.value, Endpoint::Network(_) | Endpoint::Device(_)) {
                        touches.push(ep);
                    } else {
                        self.err(
                            &ep.loc,
                            format!("`{}` cannot be a tripwire", ep.value),
                            "touches lists network:NAME or device:NAME",
                        );
                    }
                }
            }
        }
        Some(Quarantine {
            zone: zone?,
            denied_packets,
            spoofing,
            touches,
            release_after_s,
            loc: key.loc(),
        })
    }
}

/// `limits.flows_per_device`: from 1 to the largest flow table (the section checks it against
/// the table it sets).
fn parse_flow_quota(s: &str) -> Result<u32, Problem> {
    let max = enforcer_common::flow::MAX_FLOWS;
    decimal_in(s, 1, max).ok_or_else(|| Problem {
        message: format!("invalid flows_per_device `{}`", truncate(s)),
        hint: format!("write a decimal number from 1 to the flow table's capacity (at most {max})"),
    })
}

/// `limits.flows`: the flow table's capacity.
fn parse_flow_capacity(s: &str) -> Result<u32, Problem> {
    use enforcer_common::flow::{MAX_FLOWS, MIN_FLOWS};
    decimal_in(s, MIN_FLOWS, MAX_FLOWS).ok_or_else(|| Problem {
        message: format!("invalid flows `{}`", truncate(s)),
        hint: format!("write a decimal number from {MIN_FLOWS} to {MAX_FLOWS}"),
    })
}

/// A plain decimal (no sign, no leading zero) from `min` to `max`.
fn decimal_in(s: &str, min: u32, max: u32) -> Option<u32> {
    s.parse::<u32>()
        .ok()
        .filter(|n| (min..=max).contains(n) && !s.starts_with(['0', '+']))
}

#[cfg(test)]
mod tests;
