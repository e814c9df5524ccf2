//! The policy model (what a policy says, names unresolved) and its schema: the conversion from the
//! positioned YAML tree into typed values.
//!
//! Every key is checked against the schema (an unknown key is an error: a typo such as `alow:`
//! must not silently widen or narrow access), and every value keeps the place it was written, so
//! later checks can point at it. Defaults for optional fields are documented on the fields and in
//! `docs/policy.md`. Cross-references (does that zone exist?) are checked in `validate`, once all
//! files are merged.

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, Ipv4Addr},
};

use enforcer_common::{Action, Mode};
use ipnet::IpNet;

pub use super::compiled::Inventory;
use super::{
    diag::{Diagnostic, Diags, Loc},
    yaml::{Kind, Node},
};

/// A value and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub loc: Loc,
}

/// A loaded, merged and validated policy (names not yet turned into ids).
#[derive(Clone, Debug)]
pub struct Policy {
    /// Files read, in order (as given: the directory joined with the file name).
    pub sources: Vec<String>,
    /// sha256 over each file's name (relative to the policy path) and bytes, in read order; hex.
    pub digest: String,
    pub zones: BTreeMap<String, Zone>,
    pub networks: BTreeMap<String, Network>,
    pub devices: BTreeMap<String, Device>,
    /// In read order (order has no meaning for the verdict).
    pub rules: Vec<Rule>,
    pub defaults: Defaults,
    pub quarantine: Option<Quarantine>,
    /// Warnings found while loading (the compiler may add more).
    pub warnings: Vec<Diagnostic>,
    /// Where problems about the policy as a whole are reported (the first file, or the path).
    pub root: Loc,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    pub description: Option<String>,
    pub loc: Loc,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    /// Normalised CIDRs (host bits are an error, so these are exactly as written).
    pub cidrs: Vec<Located<IpNet>>,
    pub loc: Loc,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    pub zone: Located<String>,
    pub mac: Option<Located<[u8; 6]>>,
    pub addresses: Vec<Located<IpAddr>>,
    pub inventory: Inventory,
    pub loc: Loc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleAction {
    Allow,
    Deny,
}

impl RuleAction {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub action: RuleAction,
    pub from: Vec<Located<Endpoint>>,
    pub to: Vec<Located<Endpoint>>,
    pub services: Vec<Located<Service>>,
    /// Where the rule's `name` is.
    pub loc: Loc,
}

/// One side of a rule (or a quarantine tripwire).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    Zone(String),
    Device(String),
    Network(String),
    Router,
    Any,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zone(n) => write!(f, "zone:{n}"),
            Self::Device(n) => write!(f, "device:{n}"),
            Self::Network(n) => write!(f, "network:{n}"),
            Self::Router => f.write_str("router"),
            Self::Any => f.write_str("any"),
        }
    }
}

/// Destination ports of a TCP or UDP service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ports {
    /// `tcp`: the protocol as a whole (the pair's wildcard decision).
    All,
    /// `tcp/80` (lo == hi) or `tcp/8000-8010`, inclusive.
    Range(u16, u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Tcp(Ports),
    Udp(Ports),
    /// ICMPv4 and ICMPv6 echo.
    Icmp,
    /// Every protocol and port.
    Any,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (proto, ports) = match self {
            Self::Icmp => return f.write_str("icmp"),
            Self::Any => return f.write_str("any"),
            Self::Tcp(p) => ("tcp", p),
            Self::Udp(p) => ("udp", p),
        };
        match ports {
            Ports::All => f.write_str(proto),
            Ports::Range(lo, hi) if lo == hi => write!(f, "{proto}/{lo}"),
            Ports::Range(lo, hi) => write!(f, "{proto}/{lo}-{hi}"),
        }
    }
}

/// `defaults:`. Absent fields: action deny, mode enforce, unknown `quarantine`, spoofed deny.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defaults {
    pub action: Action,
    pub mode: Mode,
    /// Zone of sources that are no listed device and in no network.
    pub unknown: Located<String>,
    pub spoofed: Action,
}

/// `quarantine:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantine {
    pub zone: Located<String>,
    /// (count, window in seconds).
    pub denied_packets: Option<(u32, u32)>,
    pub spoofing: bool,
    /// `network:NAME` or `device:NAME` only.
    pub touches: Vec<Located<Endpoint>>,
    pub release_after_s: Option<u32>,
    pub loc: Loc,
}

/// What one file declares, before merging.
#[derive(Debug, Default)]
pub(crate) struct FileDoc {
    pub zones: Vec<Zone>,
    pub networks: Vec<Network>,
    pub devices: Vec<Device>,
    pub rules: Vec<Rule>,
    /// The section's key location and its fields.
    pub defaults: Option<(Loc, PartialDefaults)>,
    pub quarantine: Option<Quarantine>,
}

#[derive(Debug, Default)]
pub(crate) struct PartialDefaults {
    pub action: Option<Action>,
    pub mode: Option<Mode>,
    pub unknown: Option<Located<String>>,
    pub spoofed: Option<Action>,
}

/// Longest free-text value (descriptions, inventory fields).
pub const MAX_TEXT: usize = 1024;
/// Longest identifier (`^[a-z][a-z0-9_-]{0,63}$`).
pub const MAX_IDENT: usize = 64;

const TOP_KEYS: &[&str] = &[
    "zones",
    "networks",
    "devices",
    "rules",
    "defaults",
    "quarantine",
];
const ZONE_KEYS: &[&str] = &["description"];
const DEVICE_KEYS: &[&str] = &[
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
];
const RULE_KEYS: &[&str] = &["name", "from", "to", "allow", "deny"];
const DEFAULT_KEYS: &[&str] = &["action", "mode", "unknown", "spoofed"];
const QUARANTINE_KEYS: &[&str] = &["zone", "when", "release_after"];
const WHEN_KEYS: &[&str] = &["denied_packets", "spoofing", "touches"];
const DENIED_KEYS: &[&str] = &["count", "within"];

const SERVICE_HINT: &str = "services are tcp/PORT, udp/PORT, tcp/LOW-HIGH, udp/LOW-HIGH, tcp, udp, icmp or any (ports decimal, 1-65535)";
const ENDPOINT_HINT: &str =
    "endpoints are zone:NAME, device:NAME, network:NAME, router or any (no space after the colon)";
const IDENT_HINT: &str =
    "names are lowercase ASCII: a letter, then letters, digits, - or _, at most 64 characters";

/// Convert one file's tree. Problems go to `diags`; what could be read is returned anyway, so
/// later checks still run and one pass reports everything.
pub(crate) fn file_doc(root: &Node, diags: &mut Diags) -> FileDoc {
    let mut cx = Cx { diags };
    let mut doc = FileDoc::default();
    let Some(top) = cx.fields(root, "the policy file", TOP_KEYS) else {
        return doc;
    };
    for (key, knode, value) in top {
        match key {
            "zones" => cx.named(value, "zones", |cx, name, loc, body| {
                let f = cx.fields(body, &format!("zone `{name}`"), ZONE_KEYS)?;
                let description = get(&f, "description").and_then(|n| cx.text(n, "a description"));
                doc.zones.push(Zone {
                    name,
                    description,
                    loc,
                });
                Some(())
            }),
            "networks" => cx.named(value, "networks", |cx, name, loc, body| {
                let cidrs = cx
                    .list(body, "a list of CIDRs")
                    .into_iter()
                    .filter_map(|n| cx.parsed(n, parse_cidr))
                    .collect();
                doc.networks.push(Network { name, cidrs, loc });
                Some(())
            }),
            "devices" => cx.named(value, "devices", |cx, name, loc, body| {
                doc.devices.extend(cx.device(name, loc, body));
                Some(())
            }),
            "rules" => {
                for item in cx.list(value, "a list of rules") {
                    doc.rules.extend(cx.rule(item));
                }
            }
            "defaults" => doc.defaults = cx.defaults(value).map(|d| (knode.loc.clone(), d)),
            "quarantine" => doc.quarantine = cx.quarantine(knode, value),
            _ => {}
        }
    }
    doc
}

fn get<'n>(fields: &[(&str, &'n Node, &'n Node)], key: &str) -> Option<&'n Node> {
    fields
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, _, v)| *v)
}

struct Cx<'d> {
    diags: &'d mut Diags,
}

type Fields<'n> = Vec<(&'n str, &'n Node, &'n Node)>;

impl Cx<'_> {
    fn err(&mut self, loc: &Loc, message: impl Into<String>, hint: impl Into<String>) {
        self.diags.error(loc, message, hint);
    }

    /// A mapping with only `allowed` keys (null counts as an empty mapping).
    fn fields<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        if node.is_null() {
            return Some(Vec::new());
        }
        let Kind::Map(entries) = &node.kind else {
            self.err(
                &node.loc,
                format!("expected a mapping for {what}, found {}", node.describe()),
                "write it as `key: value` lines",
            );
            return None;
        };
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let key = k.scalar().unwrap_or_default();
            if allowed.contains(&key) {
                out.push((key, k, v));
            } else {
                self.err(
                    &k.loc,
                    format!("unknown key `{key}` in {what}"),
                    format!("expected one of: {}", allowed.join(", ")),
                );
            }
        }
        Some(out)
    }

    fn require<'n>(&mut self, f: &Fields<'n>, key: &str, at: &Loc, what: &str) -> Option<&'n Node> {
        let found = get(f, key);
        if found.is_none() {
            self.err(
                at,
                format!("{what} has no `{key}`"),
                format!("add `{key}:`"),
            );
        }
        found
    }

    /// A `name: body` mapping section; `each` gets the checked name, its place and the body.
    fn named(
        &mut self,
        node: &Node,
        what: &str,
        mut each: impl FnMut(&mut Self, String, Loc, &Node) -> Option<()>,
    ) {
        if node.is_null() {
            return;
        }
        let Kind::Map(entries) = &node.kind else {
            self.err(
                &node.loc,
                format!(
                    "expected a mapping of names for `{what}`, found {}",
                    node.describe()
                ),
                "write `name: {...}` entries",
            );
            return;
        };
        for (k, v) in entries {
            if let Some(name) = self.ident(k, &what[..what.len() - 1]) {
                each(self, name, k.loc.clone(), v);
            }
        }
    }

    /// A non-null scalar.
    fn text(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            Kind::Scalar { value, .. } if !node.is_null() => {
                if value.chars().count() > MAX_TEXT {
                    self.err(
                        &node.loc,
                        format!("value longer than {MAX_TEXT} characters"),
                        "shorten it",
                    );
                    return None;
                }
                Some(value.clone())
            }
            _ => {
                self.err(
                    &node.loc,
                    format!("expected {what}, found {}", node.describe()),
                    format!("write {what} here"),
                );
                None
            }
        }
    }

    fn ident(&mut self, node: &Node, what: &str) -> Option<String> {
        let text = self.text(node, &format!("a {what} name"))?;
        match check_ident(&text) {
            Ok(()) => Some(text),
            Err(message) => {
                self.err(
                    &node.loc,
                    format!("invalid {what} name `{}`: {message}", truncate(&text)),
                    IDENT_HINT,
                );
                None
            }
        }
    }

    /// A list; a single scalar counts as a list of one, null as an empty list.
    fn list<'n>(&mut self, node: &'n Node, what: &str) -> Vec<&'n Node> {
        match &node.kind {
            _ if node.is_null() => Vec::new(),
            Kind::Seq(items) => items.iter().collect(),
            Kind::Scalar { .. } => vec![node],
            Kind::Map(_) => {
                self.err(
                    &node.loc,
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
        node: &Node,
        parse: fn(&str) -> Result<T, Problem>,
    ) -> Option<Located<T>> {
        let Some(raw) = node.scalar().filter(|_| !node.is_null()) else {
            self.err(
                &node.loc,
                format!("expected a value, found {}", node.describe()),
                "write a single value here",
            );
            return None;
        };
        match parse(raw) {
            Ok(value) => Some(Located {
                value,
                loc: node.loc.clone(),
            }),
            Err(Problem { message, hint }) => {
                self.err(&node.loc, message, hint);
                None
            }
        }
    }

    /// One of `choices`, written plain.
    fn choice<T: Copy>(&mut self, node: &Node, what: &str, choices: &[(&str, T)]) -> Option<T> {
        let raw = node
            .scalar()
            .filter(|_| !node.is_null())
            .unwrap_or_default();
        if let Some((_, v)) = choices.iter().find(|(name, _)| *name == raw) {
            return Some(*v);
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        self.err(
            &node.loc,
            format!("invalid {what} `{}`", truncate(raw)),
            format!("expected one of: {}", names.join(", ")),
        );
        None
    }

    fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match &node.kind {
            Kind::Scalar { value, plain: true } if value == "true" => Some(true),
            Kind::Scalar { value, plain: true } if value == "false" => Some(false),
            _ => {
                let raw = node.scalar().unwrap_or_default();
                self.err(
                    &node.loc,
                    format!("invalid {what} `{}`: expected true or false", truncate(raw)),
                    "write true or false, unquoted",
                );
                None
            }
        }
    }

    fn device(&mut self, name: String, loc: Loc, body: &Node) -> Option<Device> {
        let f = self.fields(body, &format!("device `{name}`"), DEVICE_KEYS)?;
        let what = format!("device `{name}`");
        let zone = self.require(&f, "zone", &loc, &what).and_then(|n| {
            let zone = self.ident(n, "zone")?;
            Some(Located {
                value: zone,
                loc: n.loc.clone(),
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
            && get(&f, "addresses")
                .is_none_or(|n| n.is_null() || matches!(&n.kind, Kind::Seq(v) if v.is_empty()))
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
            loc,
        })
    }

    fn rule(&mut self, node: &Node) -> Option<Rule> {
        let f = self.fields(node, "a rule", RULE_KEYS)?;
        let name_node = self.require(&f, "name", &node.loc, "this rule");
        let name = name_node.and_then(|n| self.ident(n, "rule"));
        let what = format!("rule `{}`", name.as_deref().unwrap_or("?"));
        let loc = name_node.map_or_else(|| node.loc.clone(), |n| n.loc.clone());
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
                    &n.loc,
                    format!("{what} has both `allow` and `deny`"),
                    "split it into two rules",
                );
                return None;
            }
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
                &services.loc,
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

    fn endpoints(&mut self, node: &Node, what: &str, side: &str) -> Vec<Located<Endpoint>> {
        let items = self.list(node, "an endpoint or a list of endpoints");
        if items.is_empty() && !matches!(node.kind, Kind::Map(_)) {
            self.err(
                &node.loc,
                format!("{what}: `{side}` is empty, so the rule can never match"),
                ENDPOINT_HINT,
            );
        }
        items
            .into_iter()
            .filter_map(|n| self.parsed(n, parse_endpoint))
            .collect()
    }

    fn defaults(&mut self, node: &Node) -> Option<PartialDefaults> {
        let f = self.fields(node, "defaults", DEFAULT_KEYS)?;
        let actions = [("deny", Action::Deny), ("allow", Action::Allow)];
        Some(PartialDefaults {
            action: get(&f, "action").and_then(|n| self.choice(n, "defaults.action", &actions)),
            mode: get(&f, "mode").and_then(|n| {
                self.choice(
                    n,
                    "defaults.mode",
                    &[("enforce", Mode::Enforce), ("audit", Mode::Audit)],
                )
            }),
            unknown: get(&f, "unknown").and_then(|n| {
                Some(Located {
                    value: self.ident(n, "zone")?,
                    loc: n.loc.clone(),
                })
            }),
            spoofed: get(&f, "spoofed").and_then(|n| self.choice(n, "defaults.spoofed", &actions)),
        })
    }

    fn quarantine(&mut self, key: &Node, node: &Node) -> Option<Quarantine> {
        let f = self.fields(node, "quarantine", QUARANTINE_KEYS)?;
        let zone = self
            .require(&f, "zone", &key.loc, "quarantine")
            .and_then(|n| {
                Some(Located {
                    value: self.ident(n, "zone")?,
                    loc: n.loc.clone(),
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
                    .require(&d, "count", &n.loc, "denied_packets")
                    .and_then(|c| self.parsed(c, parse_count));
                let within = self
                    .require(&d, "within", &n.loc, "denied_packets")
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
            loc: key.loc.clone(),
        })
    }
}

/// A value parser's complaint: the message and what to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pub message: String,
    pub hint: String,
}

fn problem(message: impl Into<String>, hint: impl Into<String>) -> Problem {
    Problem {
        message: message.into(),
        hint: hint.into(),
    }
}

/// Keep messages readable when someone pastes a megabyte into a name.
fn truncate(s: &str) -> String {
    const SHOWN: usize = 70;
    if s.chars().count() <= SHOWN {
        s.to_owned()
    } else {
        format!("{}...", s.chars().take(SHOWN).collect::<String>())
    }
}

/// `^[a-z][a-z0-9_-]{0,63}$`.
pub(crate) fn check_ident(s: &str) -> Result<(), String> {
    let mut chars = s.chars();
    match chars.next() {
        None => return Err("it is empty".to_owned()),
        Some(c) if !c.is_ascii_lowercase() => {
            return Err("it must start with a lowercase letter a-z".to_owned());
        }
        Some(_) => {}
    }
    if let Some(bad) =
        chars.find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Err(format!("character {bad:?} is not allowed"));
    }
    if s.len() > MAX_IDENT {
        return Err(format!("it is longer than {MAX_IDENT} characters"));
    }
    Ok(())
}

/// A decimal number without sign, leading zeros, separators or fraction (reviewers must see the
/// real value: `0x50`, `0o120`, `010`, `8_080` and `80.0` are all rejected).
fn decimal(s: &str) -> Option<u64> {
    let canonical = !s.is_empty()
        && s.len() <= 10
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

pub(crate) fn parse_mac(s: &str) -> Result<[u8; 6], Problem> {
    let hint = "write six two-digit hex bytes separated by colons, e.g. 02:00:00:00:01:10";
    let parts: Vec<&str> = s.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(problem(
            format!("invalid MAC address `{}`", truncate(s)),
            hint,
        ));
    }
    for (byte, part) in mac.iter_mut().zip(&parts) {
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(problem(
                format!("invalid MAC address `{}`", truncate(s)),
                hint,
            ));
        }
        *byte = u8::from_str_radix(part, 16)
            .map_err(|_| problem(format!("invalid MAC address `{s}`"), hint))?;
    }
    if mac == [0; 6] {
        return Err(problem(
            "MAC address 00:00:00:00:00:00 cannot identify a device",
            "use the device's real MAC",
        ));
    }
    if mac[0] & 1 == 1 {
        return Err(problem(
            format!("MAC address `{s}` is a multicast or broadcast address"),
            "a device MAC has the lowest bit of its first byte clear",
        ));
    }
    Ok(mac)
}

pub(crate) fn parse_addr(s: &str) -> Result<IpAddr, Problem> {
    if s.contains('/') {
        return Err(problem(
            format!(
                "`{}` is a CIDR; a device address is a single address",
                truncate(s)
            ),
            "write the address without /LEN",
        ));
    }
    let addr: IpAddr = s.parse().map_err(|_| {
        problem(
            format!("invalid IP address `{}`", truncate(s)),
            "write an IPv4 (10.1.1.10) or IPv6 (fd00:1:1::10) address",
        )
    })?;
    let bad = match addr {
        IpAddr::V4(a) => {
            (a.is_unspecified() || a.is_multicast() || a == Ipv4Addr::BROADCAST || a.is_loopback())
                .then_some("unspecified, loopback, multicast or broadcast")
        }
        IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => {
            Some("IPv4-mapped (packets carry the IPv4 address itself)")
        }
        IpAddr::V6(a) => (a.is_unspecified() || a.is_multicast() || a.is_loopback())
            .then_some("unspecified, loopback or multicast"),
    };
    match bad {
        Some(why) => Err(problem(
            format!("address {addr} cannot belong to a device: it is {why}"),
            "use the device's unicast address",
        )),
        None => Ok(addr),
    }
}

pub(crate) fn parse_cidr(s: &str) -> Result<IpNet, Problem> {
    let hint = "write a network address and prefix length, e.g. 10.1.99.0/24 or fd00:1:99::/64";
    let Some((addr, len)) = s.split_once('/') else {
        return Err(problem(
            format!("`{}` is not a CIDR (no /LEN)", truncate(s)),
            hint,
        ));
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| problem(format!("invalid address in CIDR `{}`", truncate(s)), hint))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = decimal(len).filter(|l| *l <= max).ok_or_else(|| {
        problem(
            format!("invalid prefix length in `{}` (0-{max})", truncate(s)),
            hint,
        )
    })?;
    let net =
        IpNet::new(addr, len as u8).map_err(|_| problem(format!("invalid CIDR `{s}`"), hint))?;
    if net.trunc() != net {
        return Err(problem(
            format!(
                "CIDR `{s}` has host bits set; the network address is {}",
                net.trunc()
            ),
            format!("write {}", net.trunc()),
        ));
    }
    Ok(net)
}

fn parse_port(s: &str, service: &str) -> Result<u16, Problem> {
    match decimal(s) {
        Some(0) => Err(problem(
            format!("port 0 in `{service}` is not a port"),
            SERVICE_HINT,
        )),
        Some(p) => u16::try_from(p).map_err(|_| {
            problem(
                format!("port {p} in `{service}` is out of range 1-65535"),
                SERVICE_HINT,
            )
        }),
        None => Err(problem(
            format!(
                "port `{}` in `{}` must be a decimal number",
                truncate(s),
                truncate(service)
            ),
            SERVICE_HINT,
        )),
    }
}

pub(crate) fn parse_service(s: &str) -> Result<Service, Problem> {
    let (proto, ports) = match s.split_once('/') {
        Some((proto, ports)) => (proto, Some(ports)),
        None => (s, None),
    };
    let ports = match ports {
        None => Ports::All,
        Some(p) => {
            let (lo, hi) = p.split_once('-').unwrap_or((p, p));
            let (lo, hi) = (parse_port(lo, s)?, parse_port(hi, s)?);
            if lo > hi {
                return Err(problem(
                    format!("port range {lo}-{hi} in `{s}` is inverted"),
                    format!("write {hi}-{lo}"),
                ));
            }
            Ports::Range(lo, hi)
        }
    };
    match (proto, ports) {
        ("tcp", p) => Ok(Service::Tcp(p)),
        ("udp", p) => Ok(Service::Udp(p)),
        ("icmp", Ports::All) => Ok(Service::Icmp),
        ("any", Ports::All) => Ok(Service::Any),
        ("icmp" | "any", Ports::Range(..)) => Err(problem(
            format!("`{proto}` takes no port (in `{s}`)"),
            SERVICE_HINT,
        )),
        _ => Err(problem(
            format!("unknown service `{}`", truncate(s)),
            SERVICE_HINT,
        )),
    }
}

pub(crate) fn parse_endpoint(s: &str) -> Result<Endpoint, Problem> {
    match s {
        "router" => return Ok(Endpoint::Router),
        "any" => return Ok(Endpoint::Any),
        _ => {}
    }
    let Some((kind, name)) = s.split_once(':') else {
        return Err(problem(
            format!("invalid endpoint `{}`", truncate(s)),
            ENDPOINT_HINT,
        ));
    };
    check_ident(name).map_err(|why| {
        problem(
            format!("invalid name in endpoint `{}`: {why}", truncate(s)),
            IDENT_HINT,
        )
    })?;
    match kind {
        "zone" => Ok(Endpoint::Zone(name.to_owned())),
        "device" => Ok(Endpoint::Device(name.to_owned())),
        "network" => Ok(Endpoint::Network(name.to_owned())),
        _ => Err(problem(
            format!("invalid endpoint `{}`", truncate(s)),
            ENDPOINT_HINT,
        )),
    }
}

/// `10s`, `30m`, `1h`, `2d`: a positive decimal integer and one unit; in seconds.
pub(crate) fn parse_duration(s: &str) -> Result<u32, Problem> {
    let hint = "write a whole number followed by s, m, h or d, e.g. 10s, 30m, 1h, 2d";
    let unit = match s.as_bytes().last() {
        Some(b's') => 1,
        Some(b'm') => 60,
        Some(b'h') => 3600,
        Some(b'd') => 86_400,
        _ => return Err(problem(format!("invalid duration `{}`", truncate(s)), hint)),
    };
    let n = decimal(&s[..s.len() - 1])
        .ok_or_else(|| problem(format!("invalid duration `{}`", truncate(s)), hint))?;
    if n == 0 {
        return Err(problem(format!("duration `{s}` is zero"), hint));
    }
    n.checked_mul(unit)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| {
            problem(
                format!("duration `{s}` is too long"),
                "at most about 136 years",
            )
        })
}

fn parse_count(s: &str) -> Result<u32, Problem> {
    decimal(s)
        .filter(|n| (1..=1_000_000).contains(n))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            problem(
                format!("invalid count `{}`", truncate(s)),
                "write a decimal number from 1 to 1000000",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_parse() {
        let ok: &[(&str, Service)] = &[
            ("tcp/80", Service::Tcp(Ports::Range(80, 80))),
            ("udp/8000-8010", Service::Udp(Ports::Range(8000, 8010))),
            ("tcp", Service::Tcp(Ports::All)),
            ("udp", Service::Udp(Ports::All)),
            ("icmp", Service::Icmp),
            ("any", Service::Any),
            ("tcp/65535", Service::Tcp(Ports::Range(65535, 65535))),
        ];
        for (s, want) in ok {
            assert_eq!(parse_service(s).as_ref(), Ok(want), "{s}");
            assert_eq!(&want.to_string(), s);
        }
    }

    #[test]
    fn bad_services_are_rejected_with_the_reason() {
        let bad: &[(&str, &str)] = &[
            ("tcp/0", "port 0"),
            ("tcp/65536", "out of range"),
            ("tcp/70000", "out of range"),
            ("tcp/9000-80", "inverted"),
            ("tcp/0x50", "decimal"),
            ("tcp/0o120", "decimal"),
            ("tcp/010", "decimal"),
            ("tcp/8_080", "decimal"),
            ("tcp/80.0", "decimal"),
            ("tcp/-1", "decimal"),
            ("tcp/", "decimal"),
            ("sctp/80", "unknown service"),
            ("TCP/80", "unknown service"),
            ("icmp/8", "takes no port"),
            ("80", "unknown service"),
        ];
        for (s, want) in bad {
            let err = parse_service(s).expect_err(s);
            assert!(err.message.contains(want), "{s}: {}", err.message);
        }
    }

    #[test]
    fn cidr_with_host_bits_names_the_network() {
        let err = parse_cidr("10.1.1.1/24").expect_err("host bits");
        assert!(
            err.message.contains("the network address is 10.1.1.0/24"),
            "{}",
            err.message
        );
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("::/129").is_err());
        assert!(parse_cidr("10.0.0.0").is_err());
        assert_eq!(parse_cidr("::/0").map(|n| n.prefix_len()), Ok(0));
    }

    #[test]
    fn macs_and_addresses() {
        assert_eq!(parse_mac("02:00:00:00:01:10"), Ok([2, 0, 0, 0, 1, 0x10]));
        for bad in [
            "02:00:00:00:01",
            "02-00-00-00-01-10",
            "zz:00:00:00:01:10",
            "00:00:00:00:00:00",
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
        for bad in [
            "10.1.1",
            "10.1.1.0/24",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::ffff:10.1.1.1",
            "010.1.1.1",
        ] {
            assert!(parse_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(10));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        for bad in ["10", "1.5h", "0s", "1w", "h", "01h", "10 s", "99999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identifiers() {
        for good in ["a", "cam-1", "z_9", &"a".repeat(64)] {
            assert!(check_ident(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Cam",
            "1cam",
            "cam.1",
            "іot",
            "a b",
            &"a".repeat(65),
            "null"[..0].as_ref(),
        ] {
            assert!(check_ident(bad).is_err(), "{bad}");
        }
    }
}
