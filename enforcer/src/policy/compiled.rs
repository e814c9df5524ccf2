//! The compiled policy: an in-memory image of every policy map, slot-free, plus the names behind
//! the ids so userspace can label metrics, logs and `plan` output.
//!
//! The compiler (`policy::compile`) is the only producer; the datapath facade (`datapath`) is the
//! only consumer that writes it into the kernel, stamping each key with the idle slot. Everything
//! here is already resolved: deny precedence is applied, classes are expanded, ports of ranges are
//! listed one by one. The datapath does no policy reasoning.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use enforcer_common::{Action, Decision, Mode};
use serde::{Deserialize, Serialize};

use super::{diag::Diagnostic, maps::PolicyMaps};

/// Stable ids: names to ids, kept across reloads (and restarts, through the daemon's state file) so
/// counters indexed by id keep meaning the same device or rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTable {
    /// Device name -> device id (`1..MAX_DEVICES`).
    pub devices: BTreeMap<String, u32>,
    /// Rule name -> rule id (`1..MAX_RULES`).
    pub rules: BTreeMap<String, u32>,
    /// Network name -> network id (`1..`).
    pub networks: BTreeMap<String, u32>,
    /// Name pattern (`updates.axis.example`, `*.pool.ntp.org`) -> name id (`1..MAX_NAMES`), the
    /// id DNS-name bindings hold, so bindings outlive reloads (`policy::names`).
    #[serde(default)]
    pub names: BTreeMap<String, u32>,
}

/// What the compiler needs besides the policy files.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// The router's own addresses (every address of the enforced interfaces). Empty for `check`.
    pub router_addrs: Vec<IpAddr>,
    /// The subnets of the enforced interfaces. An unlisted address in one of them is an unknown
    /// device on that segment, not a member of a wider policy network (a network naming exactly
    /// the same prefix still wins). Empty for `check`.
    pub local_prefixes: Vec<ipnet::IpNet>,
    /// Ids of the running policy, to keep them stable.
    pub previous_ids: Option<IdTable>,
}

/// One class (a set of endpoints every rule treats alike).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClassInfo {
    pub id: u16,
    /// `zone:NAME`, `device:NAME`, `network:NAME` or `router`.
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ZoneInfo {
    pub name: String,
    pub description: Option<String>,
    /// The class its member devices (without rules of their own) and unknown sources have.
    pub class: u16,
}

/// Inventory fields, all optional strings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    pub id: u32,
    pub name: String,
    pub zone: String,
    pub class: u16,
    pub mac: Option<[u8; 6]>,
    pub addresses: Vec<IpAddr>,
    pub inventory: Inventory,
    /// In audit (`mode:` of the device or its zone): its would-be denials pass, counted as `audit`.
    pub audit: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleInfo {
    pub id: u32,
    pub name: String,
    /// "allow" or "deny".
    pub action: String,
    /// The rule's `from`, `to` and services as written, for display.
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub services: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetworkInfo {
    pub id: u32,
    pub name: String,
    pub class: u16,
    pub cidrs: Vec<String>,
}

/// One `dns:` name pattern of the policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NameInfo {
    pub id: u32,
    pub pattern: super::names::NamePattern,
    pub class: u16,
}

/// Automatic quarantine settings (`quarantine:` in the policy); absent = off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuarantineSettings {
    pub zone: String,
    pub class: u16,
    /// `(count, within_seconds)`: this many denied packets within that many seconds trip it;
    /// `None` = this trigger is off.
    pub denied_packets: Option<(u32, u32)>,
    pub spoofing: bool,
    /// Destinations (network or device names as written) that are tripwires.
    pub touches: Vec<String>,
    /// Seconds; `None` = until released by hand.
    pub release_after_s: Option<u32>,
}

/// Everything the datapath needs for one policy, and the names behind its ids.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    /// sha256 of the source files (name and bytes, in read order), hex.
    pub digest: String,
    /// Files read, in order.
    pub sources: Vec<String>,

    // Settings (the `CONFIG` entry, less the generation the datapath assigns).
    pub mode: Mode,
    /// Rule 0.
    pub default_action: Action,
    pub spoofed_action: Action,
    pub unknown_class: u16,
    /// The mode of unknown sources (the `defaults.unknown` zone's `mode:`, else `mode`).
    pub unknown_mode: Mode,
    pub router_class: u16,
    pub quarantine: Option<QuarantineSettings>,
    /// `limits:` (the per-device flow quota goes to `CONFIG`).
    pub limits: super::model::Limits,

    /// The image of every policy map, without slots (see [`super::maps`]). Shared with the
    /// datapath, which keeps the image each slot holds to rewrite only what the next policy
    /// changes: a pointer, not a copy of the 100,000-device policy's 340,000 entries.
    pub maps: Arc<PolicyMaps>,

    // Names behind the ids.
    pub ids: IdTable,
    pub classes: Vec<ClassInfo>,
    pub zones: Vec<ZoneInfo>,
    pub devices: Vec<DeviceInfo>,
    pub rules: Vec<RuleInfo>,
    pub networks: Vec<NetworkInfo>,
    /// `dns:NAME` patterns the rules name, and the `dns:` section (`policy::names`).
    pub names: Vec<NameInfo>,
    pub dns: Option<super::names::DnsSettings>,
    /// Warnings the compiler found (shadowed rules and the like), located.
    pub warnings: Vec<Diagnostic>,
}

impl CompiledPolicy {
    /// Default decision as the `CONFIG` map stores it.
    #[must_use]
    pub fn default_decision(&self) -> Decision {
        Decision::new(self.default_action, enforcer_common::DEFAULT_RULE)
    }

    /// Number of entries per map, for `plan` and capacity checks.
    #[must_use]
    pub fn map_sizes(&self) -> BTreeMap<&'static str, usize> {
        self.maps
            .usage()
            .into_iter()
            .map(|u| (u.name, u.entries))
            .collect()
    }

    /// Device name by id (`"unknown"` for id 0 and ids not in this policy).
    #[must_use]
    pub fn device_name(&self, id: u32) -> &str {
        self.devices
            .iter()
            .find(|d| d.id == id)
            .map_or("unknown", |d| d.name.as_str())
    }

    /// The zone unlisted sources are in (`"unknown"` if no zone has its class).
    #[must_use]
    pub fn unknown_zone(&self) -> &str {
        self.zones
            .iter()
            .find(|z| z.class == self.unknown_class)
            .map_or("unknown", |z| z.name.as_str())
    }

    /// Rule name by id (`"default"` for rule 0).
    #[must_use]
    pub fn rule_name(&self, id: u32) -> &str {
        if id == enforcer_common::DEFAULT_RULE {
            return "default";
        }
        self.rules
            .iter()
            .find(|r| r.id == id)
            .map_or("unknown", |r| r.name.as_str())
    }
}
