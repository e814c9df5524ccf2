//! The policy model: what a policy says, names unresolved. The types are here; `schema` walks the
//! positioned YAML tree of a file into them, `scalars` parses single values (MAC, address, CIDR,
//! service, endpoint, duration).
//!
//! Every key is checked against the schema (an unknown key is an error: a typo such as `alow:`
//! must not silently widen or narrow access), and every value keeps the place it was written, so
//! later checks can point at it. Defaults for optional fields are documented on the fields and in
//! `docs/policy.md`. Cross-references (does that zone exist?) are checked in `validate`, once all
//! files are merged.

use std::{collections::BTreeMap, fmt, net::IpAddr, sync::Arc};

use enforcer_common::{Action, Mode};
use ipnet::IpNet;

pub use super::compiled::Inventory;
use super::diag::{Diagnostic, Loc};

mod probe;
mod scalars;
pub(crate) mod schema;

pub use probe::{ExpectedRule, Probe, ProbeEnd, ProbeKind, ProbeService};
pub use scalars::fmt_mac;
pub(crate) use scalars::{parse_duration, parse_mac};
pub(crate) use schema::{file_doc, parse_probe_end, parse_probe_service};

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
    /// Shared with the load cache's copy of each file's document (see [`FileDoc::devices`]).
    pub devices: BTreeMap<String, Arc<Device>>,
    /// In read order (order has no meaning for the verdict).
    pub rules: Vec<Rule>,
    pub defaults: Defaults,
    pub quarantine: Option<Quarantine>,
    pub limits: Limits,
    /// `interfaces:`: the interfaces this router enforces on, by name; empty when the policy
    /// does not say (then `enforcer run --iface` names them).
    pub interfaces: BTreeMap<String, Interface>,
    /// `tests:` of every file, in read order.
    pub tests: Vec<Probe>,
    /// `guards:` of every file, in read order.
    pub guards: Vec<Probe>,
    /// `dns:`: the router as the resolver of record; `None` when absent.
    pub dns: Option<crate::policy::names::DnsSettings>,
    /// Warnings found while loading (the compiler may add more).
    pub warnings: Vec<Diagnostic>,
    /// Where problems about the policy as a whole are reported (the first file, or the path).
    pub root: Loc,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    pub description: Option<String>,
    /// `mode:` of the zone's devices; `None` is `defaults.mode` (see [`Policy::mode_of_zone`]).
    pub mode: Option<Mode>,
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
    /// `mode:` of this device, over its zone's (see [`Policy::mode_of_device`]).
    pub mode: Option<Mode>,
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
    /// `dns:NAME` or `dns:*.NAME`: a destination only (`policy::names`).
    Name(crate::policy::names::NamePattern),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zone(n) => write!(f, "zone:{n}"),
            Self::Device(n) => write!(f, "device:{n}"),
            Self::Network(n) => write!(f, "network:{n}"),
            Self::Router => f.write_str("router"),
            Self::Any => f.write_str("any"),
            Self::Name(p) => write!(f, "dns:{p}"),
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

/// What an interface listed in `interfaces:` is to the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Devices live here: an address on its subnets that no device lists is an unknown device.
    Segment,
    /// Routed traffic arrives here: addresses on its subnets are judged by the policy's
    /// networks, not as devices.
    Uplink,
}

impl Role {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Segment => "segment",
            Self::Uplink => "uplink",
        }
    }
}

/// One entry of `interfaces:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// The Linux interface name (checked as the kernel checks it).
    pub name: String,
    pub role: Role,
    /// Where the name is.
    pub loc: Loc,
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

/// `limits:`: the datapath's resource limits. Absent fields take the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Most flows one device may hold in the flow table; the unknown sources share one such
    /// quota, and so does each network (`flows_per_device`, default
    /// [`enforcer_common::flow::DEFAULT_FLOWS_PER_DEVICE`]).
    pub flows_per_device: u32,
    /// The flow table's capacity (`flows`, default [`enforcer_common::flow::DEFAULT_FLOWS`]).
    pub flows: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            flows_per_device: enforcer_common::flow::DEFAULT_FLOWS_PER_DEVICE,
            flows: enforcer_common::flow::DEFAULT_FLOWS,
        }
    }
}

/// What one file declares, before merging.
#[derive(Clone, Debug, Default)]
pub(crate) struct FileDoc {
    pub zones: Vec<Zone>,
    pub networks: Vec<Network>,
    /// Shared, not copied: the load cache keeps every file's document for the next load while
    /// this one is merged, and copying 100,000 devices deep took a tenth of reading them.
    pub devices: Vec<Arc<Device>>,
    pub rules: Vec<Rule>,
    /// The section's key location and its fields.
    pub defaults: Option<(Loc, PartialDefaults)>,
    pub quarantine: Option<Quarantine>,
    /// The section's key location and its value.
    pub limits: Option<(Loc, Limits)>,
    pub interfaces: Vec<Interface>,
    /// `tests:` and `guards:`, in file order.
    pub tests: Vec<Probe>,
    pub guards: Vec<Probe>,
    /// Zones, networks and devices defined here whose body could not be read (errors reported).
    pub unreadable: Vec<Endpoint>,
    /// `dns:`.
    pub dns: Option<crate::policy::names::DnsSettings>,
}

#[derive(Clone, Debug, Default)]
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
