//! Prometheus metrics: one registry, typed families, refreshed from the kernel's counters at each
//! scrape. Label values come from the policy (device, zone and rule names) and from the shared
//! enums, never from traffic, so the series count is bounded by the policy.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use enforcer_common::{
    Mode, UNKNOWN_DEVICE, Verdict, network_device, state::QuarantineReason, stats::Counter,
};
use prometheus::{
    Encoder as _, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder, process_collector::ProcessCollector,
};
use tracing::warn;

use crate::{
    datapath::{self, Counters, DeviceCounters, MapSource},
    policy::CompiledPolicy,
};

/// Default of `--metrics-max-devices`.
pub const DEFAULT_MAX_DEVICES: usize = 10_000;

/// The daemon's metric families.
pub struct Metrics {
    registry: Registry,
    /// Listed devices with series of their own (`--metrics-max-devices`); the rest fold per zone.
    max_devices: usize,
    /// Digest of the last policy whose folding was logged.
    folded_warned_for: Mutex<String>,
    device_info: IntGaugeVec,
    packets: IntCounterVec,
    bytes: IntCounterVec,
    rule_packets: IntCounterVec,
    rule_bytes: IntCounterVec,
    spoofed: IntCounterVec,
    malformed: IntCounter,
    datapath: IntCounterVec,
    pub generation: IntGauge,
    pub reloads: IntCounterVec,
    /// Guarded flows a new policy denied (each refusing the switch).
    pub guard_failures: IntCounter,
    pub last_reload: Gauge,
    flows: IntGauge,
    events_dropped: IntCounter,
    pub deny_events: IntCounter,
    /// What the daemon declined to protect itself.
    pub shed: Shed,
    /// The resolver of `dns:` names.
    pub dns: DnsMetrics,
    pub confirm: ConfirmMetrics,
    pub interfaces: IntGaugeVec,
    quarantined: IntGauge,
    pub quarantine_events: IntCounterVec,
    unknown_devices: IntGauge,
    /// `enforcer_inventory_drift{device,field}`, set by the inventory task.
    pub inventory_drift: IntGaugeVec,
    /// `enforcer_audit_sources`: which sources are in audit (`mode:`), by zone.
    audit_sources: IntGaugeVec,
}

/// The resolver's families (`dns:` in the policy, docs/names.md): its queries by result, counted
/// by the resolver into [`Self::stats`], and the live name bindings by the rule they serve, read
/// from `BINDINGS` at each scrape. DNS that bypasses the resolver is a datapath outcome
/// (`enforcer_datapath_packets_total{kind="dns_bypass"}`).
pub struct DnsMetrics {
    pub stats: Arc<crate::daemon::resolver::Stats>,
    queries: IntCounterVec,
    bindings: IntGaugeVec,
}

impl DnsMetrics {
    fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let queries = counter_vec(
            r,
            "enforcer_dns_queries_total",
            "Queries the resolver received, by result (relayed, malformed, upstream_failed, dropped under load).",
            &["result"],
        )?;
        for q in crate::daemon::resolver::QueryResult::ALL {
            queries.with_label_values(&[q.as_str()]).inc_by(0);
        }
        Ok(Self {
            stats: Arc::default(),
            queries,
            bindings: gauge_vec(
                r,
                "enforcer_dns_bindings",
                "Live name bindings (device, address, name) in the datapath, by the rule whose dns: destination they serve.",
                &["rule"],
            )?,
        })
    }

    /// The resolver's counters, and the live bindings of `bindings` by rule of `policy`.
    pub fn refresh(&self, bindings: Option<&datapath::names::Bindings>, policy: &CompiledPolicy) {
        for (result, n) in self.stats.queries() {
            let c = self.queries.with_label_values(&[result.as_str()]);
            c.inc_by(n.saturating_sub(c.get()));
        }
        self.bindings.reset();
        let Some(bindings) = bindings.filter(|_| policy.dns.is_some()) else {
            return;
        };
        let patterns: BTreeMap<u32, String> = policy
            .names
            .iter()
            .map(|n| (n.id, format!("dns:{}", n.pattern)))
            .collect();
        let mut by_rule: BTreeMap<&str, i64> = BTreeMap::new();
        for b in bindings.live(datapath::monotonic_ns()) {
            let Some(dest) = patterns.get(&b.name) else {
                continue;
            };
            for rule in policy.rules.iter().filter(|r| names_dest(&r.to, dest)) {
                *by_rule.entry(rule.name.as_str()).or_default() += 1;
            }
        }
        for (rule, n) in by_rule {
            self.bindings.with_label_values(&[rule]).set(n);
        }
    }
}

/// Whether a rule's destinations (as written) name `dest` (`dns:PATTERN`, as compiled: lower
/// case, no trailing dot).
fn names_dest(to: &[String], dest: &str) -> bool {
    to.iter()
        .any(|t| t.trim_end_matches('.').eq_ignore_ascii_case(dest))
}

/// Work the daemon declines under load, so a flood costs it a bounded amount (each counted).
pub struct Shed {
    /// Deny events not logged: over `events::MAX_DENY_LOGS_PER_SECOND`.
    pub deny_events_suppressed: IntCounter,
    /// Metrics connections closed at once: over `http::MAX_CONNECTIONS`.
    pub connections_rejected: IntCounter,
}

impl Shed {
    fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        Ok(Self {
            deny_events_suppressed: counter(
                r,
                "enforcer_deny_events_suppressed_total",
                "Deny events received but not logged: over the daemon's cap on deny lines a second (summed in summary lines).",
            )?,
            connections_rejected: counter(
                r,
                "enforcer_metrics_connections_rejected_total",
                "Connections to the metrics server closed at once: the cap on open connections was reached.",
            )?,
        })
    }
}

/// A provisional policy (`enforcer apply --confirm`, `run --confirm-window`): whether one is
/// pending, until when, and how many reverted.
pub struct ConfirmMetrics {
    pub pending: IntGauge,
    /// Unix time of the pending candidate's deadline; 0 when none.
    pub deadline: Gauge,
    pub reverts: IntCounter,
}

impl ConfirmMetrics {
    fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        Ok(Self {
            pending: gauge(
                r,
                "enforcer_confirm_pending",
                "1 while a provisional policy is enforced and waits for `enforcer confirm`.",
            )?,
            deadline: float_gauge(
                r,
                "enforcer_confirm_deadline_seconds",
                "Unix time at which the pending provisional policy reverts; 0 when none is pending.",
            )?,
            reverts: counter(
                r,
                "enforcer_confirm_reverts_total",
                "Provisional policies reverted to the last confirmed policy at their deadline.",
            )?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("register metric")]
    Register(#[from] prometheus::Error),
    #[error("read counters from the datapath")]
    Datapath(#[from] datapath::DatapathError),
}

/// Registers `c` with `r` and returns it (families are cheap handles onto the registered one).
fn registered<C: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    c: C,
) -> Result<C, prometheus::Error> {
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

/// `enforcer_guard_failures_total` (`docs/safe-change.md`).
fn guard_failures(r: &Registry) -> Result<IntCounter, prometheus::Error> {
    counter(
        r,
        "enforcer_guard_failures_total",
        "Guarded flows a new policy denied on the real program; each refused the switch and the running policy stayed.",
    )
}

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    registered(r, IntCounterVec::new(Opts::new(name, help), labels)?)
}

fn gauge(r: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    registered(r, IntGauge::new(name, help)?)
}

fn gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, prometheus::Error> {
    registered(r, IntGaugeVec::new(Opts::new(name, help), labels)?)
}

fn float_gauge(r: &Registry, name: &str, help: &str) -> Result<Gauge, prometheus::Error> {
    registered(r, Gauge::new(name, help)?)
}

fn counter(r: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    registered(r, IntCounter::new(name, help)?)
}

/// `enforcer_build_info`: the version and map layout, always 1.
fn register_build_info(r: &Registry) -> Result<(), prometheus::Error> {
    let build_info = gauge_vec(
        r,
        "enforcer_build_info",
        "Always 1: the running enforcer's version and its map layout.",
        &["version", "layout"],
    )?;
    build_info
        .with_label_values(&[
            env!("CARGO_PKG_VERSION"),
            &enforcer_common::LAYOUT_VERSION.to_string(),
        ])
        .set(1);
    Ok(())
}

/// `enforcer_device_info`: the zone and inventory of each device label, always 1.
fn device_info(r: &Registry) -> Result<IntGaugeVec, prometheus::Error> {
    gauge_vec(
        r,
        "enforcer_device_info",
        "Always 1: each device label of the per-device series, with its zone, kind (device, folded, network, router, unknown) and inventory vendor and model. Join on `device` to sum by zone.",
        &["device", "zone", "kind", "vendor", "model"],
    )
}

/// `enforcer_inventory_drift`: set by the inventory task (`crate::inventory::collect`).
fn inventory_drift(r: &Registry) -> Result<IntGaugeVec, prometheus::Error> {
    gauge_vec(
        r,
        "enforcer_inventory_drift",
        "MACs whose announcements contradict the inventory (field vendor, model, firmware) or changed their vendor class or parameter list, by listed device (device=\"unknown\": every unlisted MAC). Evidence, never identity.",
        &["device", "field"],
    )
}

/// `enforcer_interfaces`: set by the daemon as it attaches.
fn interfaces(r: &Registry) -> Result<IntGaugeVec, prometheus::Error> {
    gauge_vec(
        r,
        "enforcer_interfaces",
        "Interfaces the program is attached to (1), by XDP mode.",
        &["iface", "mode"],
    )
}

/// `enforcer_audit_sources`: which sources are in audit, by zone.
fn audit_sources(r: &Registry) -> Result<IntGaugeVec, prometheus::Error> {
    gauge_vec(
        r,
        "enforcer_audit_sources",
        "Sources in audit (`mode: audit`), by zone: kind=\"device\" counts its listed devices in audit, kind=\"unknown\" is 1 when unknown sources (the unknown zone) are.",
        &["zone", "kind"],
    )
}

/// `enforcer_quarantine_events_total`, every datapath reason at 0 from the start.
fn quarantine_events(r: &Registry) -> Result<IntCounterVec, prometheus::Error> {
    let events = counter_vec(
        r,
        "enforcer_quarantine_events_total",
        "Devices put into quarantine, by reason.",
        &["reason"],
    )?;
    for reason in DATAPATH_QUARANTINES {
        events.with_label_values(&[reason.as_str()]).inc_by(0);
    }
    Ok(events)
}

impl Metrics {
    /// Registers every family; `max_devices` listed devices get series of their own.
    pub fn register(max_devices: usize) -> Result<Self, MetricsError> {
        let r = Registry::new();
        r.register(Box::new(ProcessCollector::for_self()))?;
        register_build_info(&r)?;
        Ok(Self {
            max_devices,
            folded_warned_for: Mutex::new(String::new()),
            device_info: device_info(&r)?,
            packets: counter_vec(
                &r,
                "enforcer_packets_total",
                "Packets sent by each listed device, each network (device=\"network:NAME\"), the router itself (device=\"router\"), listed devices beyond --metrics-max-devices (device=\"zone:NAME\") and everything else (device=\"unknown\"), by verdict.",
                &["device", "verdict"],
            )?,
            bytes: counter_vec(
                &r,
                "enforcer_bytes_total",
                "Bytes sent by each device, by verdict.",
                &["device", "verdict"],
            )?,
            rule_packets: counter_vec(
                &r,
                "enforcer_rule_packets_total",
                "Packets decided by each rule (rule=\"default\": no rule matched).",
                &["rule"],
            )?,
            rule_bytes: counter_vec(
                &r,
                "enforcer_rule_bytes_total",
                "Bytes decided by each rule.",
                &["rule"],
            )?,
            spoofed: counter_vec(
                &r,
                "enforcer_spoofed_packets_total",
                "Packets whose MAC and source address disagree with the policy.",
                &["device"],
            )?,
            malformed: counter(
                &r,
                "enforcer_malformed_packets_total",
                "Malformed or truncated packets dropped.",
            )?,
            datapath: counter_vec(
                &r,
                "enforcer_datapath_packets_total",
                "Datapath outcomes outside policy verdicts (ARP, ND, fragments, flow hits, malformed by kind...).",
                &["kind"],
            )?,
            generation: gauge(
                &r,
                "enforcer_policy_generation",
                "Generation of the policy being enforced.",
            )?,
            reloads: counter_vec(
                &r,
                "enforcer_policy_reloads_total",
                "Policy reload attempts, by result.",
                &["result"],
            )?,
            guard_failures: guard_failures(&r)?,
            last_reload: float_gauge(
                &r,
                "enforcer_policy_last_reload_timestamp_seconds",
                "Unix time of the last successful policy apply.",
            )?,
            flows: gauge(&r, "enforcer_flows", "Live entries in the flow table.")?,
            events_dropped: counter(
                &r,
                "enforcer_events_dropped_total",
                "Deny events lost because the ring buffer was full.",
            )?,
            deny_events: counter(
                &r,
                "enforcer_deny_events_total",
                "Deny events received from the datapath.",
            )?,
            shed: Shed::register(&r)?,
            dns: DnsMetrics::register(&r)?,
            confirm: ConfirmMetrics::register(&r)?,
            interfaces: interfaces(&r)?,
            quarantined: gauge(
                &r,
                "enforcer_quarantined_devices",
                "Listed devices in quarantine now.",
            )?,
            quarantine_events: quarantine_events(&r)?,
            unknown_devices: gauge(
                &r,
                "enforcer_unknown_devices",
                "Sources the policy does not list, seen by the datapath (bounded by its table).",
            )?,
            inventory_drift: inventory_drift(&r)?,
            audit_sources: audit_sources(&r)?,
            registry: r,
        })
    }

    /// The metrics that describe the policy just applied at start-up; both reload outcomes exist
    /// from the start, at 0, so `increase()` sees the first one.
    pub fn init(&self, generation: u64) {
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
        #[expect(
            clippy::cast_precision_loss,
            reason = "a Unix timestamp fits an f64 exactly"
        )]
        self.last_reload.set(crate::time::unix_now() as f64);
        self.reloads.with_label_values(&["success"]).inc_by(0);
        self.reloads.with_label_values(&["failure"]).inc_by(0);
    }

    /// Reads the kernel's counters into the families.
    pub fn refresh(
        &self,
        src: &impl MapSource,
        policy: &CompiledPolicy,
    ) -> Result<(), MetricsError> {
        self.refresh_devices(src, policy)?;
        self.refresh_rules(src, policy)?;
        let counters: Counters = datapath::counters(src)?;
        self.malformed.reset();
        self.malformed.inc_by(counters.malformed());
        self.datapath.reset();
        for c in Counter::ALL {
            self.datapath
                .with_label_values(&[c.as_str()])
                .inc_by(counters.get(*c));
        }
        self.events_dropped.reset();
        self.events_dropped
            .inc_by(counters.get(Counter::EventsDropped));
        let now = datapath::monotonic_ns();
        self.flows
            .set(i64::try_from(datapath::flow_count(src, now)?).unwrap_or(i64::MAX));
        let states = datapath::device_states(src, policy.devices.iter().map(|d| d.id))?;
        let quarantined = states
            .iter()
            .filter(|(_, s)| s.quarantine_until_ns > now)
            .count();
        self.quarantined
            .set(i64::try_from(quarantined).unwrap_or(i64::MAX));
        self.unknown_devices
            .set(i64::try_from(datapath::discovered(src)?.len()).unwrap_or(i64::MAX));
        self.refresh_audit(policy);
        Ok(())
    }

    /// `enforcer_audit_sources` from the policy in force.
    fn refresh_audit(&self, policy: &CompiledPolicy) {
        self.audit_sources.reset();
        for d in policy.devices.iter().filter(|d| d.audit) {
            self.audit_sources
                .with_label_values(&[d.zone.as_str(), "device"])
                .inc();
        }
        if policy.unknown_mode == enforcer_common::Mode::Audit {
            self.audit_sources
                .with_label_values(&[policy.unknown_zone(), "unknown"])
                .set(1);
        }
    }

    /// Per-device packets, bytes and spoofed packets, one series per [`Series`], and the
    /// `enforcer_device_info` row that names each series' zone and inventory.
    fn refresh_devices(
        &self,
        src: &impl MapSource,
        policy: &CompiledPolicy,
    ) -> Result<(), MetricsError> {
        let plan = series(policy, self.max_devices);
        self.warn_folded_once(policy, &plan);
        let counters = datapath::device_counters(src, plan.iter().map(|(id, _)| *id))?;
        let mut totals: BTreeMap<&str, DeviceCounters> = BTreeMap::new();
        for ((_, s), (_, c)) in plan.iter().zip(counters) {
            let t = totals.entry(s.device.as_str()).or_default();
            for i in 0..Verdict::COUNT {
                t.packets[i] += c.packets[i];
                t.bytes[i] += c.bytes[i];
            }
            t.spoofed += c.spoofed;
        }
        self.packets.reset();
        self.bytes.reset();
        self.spoofed.reset();
        self.device_info.reset();
        let audit = policy.mode == Mode::Audit;
        for (_, s) in &plan {
            let Some(t) = totals.remove(s.device.as_str()) else {
                // A folded series: its first member wrote it.
                continue;
            };
            for v in Verdict::ALL {
                let i = v as usize;
                // `audit` series only where something runs (or ran) in audit mode.
                if v == Verdict::Audit && !audit && t.packets[i] == 0 {
                    continue;
                }
                self.packets
                    .with_label_values(&[s.device.as_str(), v.as_str()])
                    .inc_by(t.packets[i]);
                self.bytes
                    .with_label_values(&[s.device.as_str(), v.as_str()])
                    .inc_by(t.bytes[i]);
            }
            self.spoofed
                .with_label_values(&[s.device.as_str()])
                .inc_by(t.spoofed);
            self.device_info
                .with_label_values(&[
                    s.device.as_str(),
                    s.zone.as_str(),
                    s.kind,
                    s.vendor.as_str(),
                    s.model.as_str(),
                ])
                .set(1);
        }
        Ok(())
    }

    /// Logs, once per policy, that devices beyond `--metrics-max-devices` share per-zone series.
    fn warn_folded_once(&self, policy: &CompiledPolicy, plan: &[(u32, Series)]) {
        let folded = plan.iter().filter(|(_, s)| s.kind == KIND_FOLDED).count();
        if folded == 0 {
            return;
        }
        let Ok(mut warned) = self.folded_warned_for.lock() else {
            return;
        };
        if *warned != policy.digest {
            warn!(
                listed = policy.devices.len(),
                max = self.max_devices,
                folded,
                "more listed devices than --metrics-max-devices: the rest are counted per zone (device=\"zone:NAME\")"
            );
            warned.clone_from(&policy.digest);
        }
    }

    /// Packets and bytes each rule decided.
    fn refresh_rules(
        &self,
        src: &impl MapSource,
        policy: &CompiledPolicy,
    ) -> Result<(), MetricsError> {
        self.rule_packets.reset();
        self.rule_bytes.reset();
        let rule_ids =
            std::iter::once(enforcer_common::DEFAULT_RULE).chain(policy.rules.iter().map(|r| r.id));
        for (id, c) in datapath::rule_counters(src, rule_ids)? {
            let name = policy.rule_name(id);
            self.rule_packets
                .with_label_values(&[name])
                .inc_by(c.packets);
            self.rule_bytes.with_label_values(&[name]).inc_by(c.bytes);
        }
        Ok(())
    }

    /// Counts a quarantine the daemon noticed.
    pub fn quarantine_event(&self, reason: QuarantineReason) {
        self.quarantine_events
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// The text exposition of every family.
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

/// The reasons the datapath quarantines for (an operator's quarantine is not an event).
const DATAPATH_QUARANTINES: [QuarantineReason; 3] = [
    QuarantineReason::DeniedPackets,
    QuarantineReason::Spoofing,
    QuarantineReason::Tripwire,
];

/// `kind` of a series of listed devices beyond `--metrics-max-devices`, summed per zone.
const KIND_FOLDED: &str = "folded";

/// What one device id is counted as: its series' `device` label and the info row of that label.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Series {
    device: String,
    zone: String,
    kind: &'static str,
    vendor: String,
    model: String,
}

impl Series {
    fn new(device: String, zone: &str, kind: &'static str) -> Self {
        Self {
            device,
            zone: zone.to_owned(),
            kind,
            vendor: String::new(),
            model: String::new(),
        }
    }
}

/// Every device id whose counters are exported, with the series it counts towards: unknown
/// sources, the first `max_devices` listed devices (by id, so a device keeps its series across
/// reloads) each alone, the rest summed per zone (`zone:NAME`), each network, and the router.
/// Labels come from the policy only, never from traffic, so the series count is bounded.
fn series(policy: &CompiledPolicy, max_devices: usize) -> Vec<(u32, Series)> {
    let unknown_zone = policy.unknown_zone();
    let mut out = vec![(
        UNKNOWN_DEVICE,
        Series::new("unknown".to_owned(), unknown_zone, "unknown"),
    )];
    let mut devices: Vec<_> = policy.devices.iter().collect();
    devices.sort_by_key(|d| d.id);
    for (i, d) in devices.into_iter().enumerate() {
        let s = if i < max_devices {
            Series {
                vendor: d.inventory.vendor.clone().unwrap_or_default(),
                model: d.inventory.model.clone().unwrap_or_default(),
                ..Series::new(d.name.clone(), &d.zone, "device")
            }
        } else {
            Series::new(format!("zone:{}", d.zone), &d.zone, KIND_FOLDED)
        };
        out.push((d.id, s));
    }
    out.extend(policy.networks.iter().map(|n| {
        (
            network_device(n.id),
            Series::new(format!("network:{}", n.name), "", "network"),
        )
    }));
    // What the router itself sends (judged by the egress program).
    out.push((
        enforcer_common::ROUTER_DEVICE,
        Series::new("router".to_owned(), "", "router"),
    ));
    out
}

#[cfg(test)]
mod tests;
