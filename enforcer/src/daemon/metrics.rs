//! Prometheus metrics: one registry, typed families, refreshed from the kernel's counters at each
//! scrape. Label values come from the policy (device, zone and rule names) and from the shared
//! enums, never from traffic, so the series count is bounded by the policy.

use enforcer_common::{
    UNKNOWN_DEVICE, Verdict, network_device, state::QuarantineReason, stats::Counter,
};
use prometheus::{
    Encoder as _, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::{
    datapath::{self, Counters, MapSource},
    policy::CompiledPolicy,
};

/// The daemon's metric families.
pub struct Metrics {
    registry: Registry,
    packets: IntCounterVec,
    bytes: IntCounterVec,
    rule_packets: IntCounterVec,
    rule_bytes: IntCounterVec,
    spoofed: IntCounterVec,
    malformed: IntCounter,
    datapath: IntCounterVec,
    pub generation: IntGauge,
    pub reloads: IntCounterVec,
    pub last_reload: Gauge,
    flows: IntGauge,
    events_dropped: IntCounter,
    pub deny_events: IntCounter,
    /// What the daemon declined to protect itself.
    pub shed: Shed,
    pub interfaces: IntGaugeVec,
    quarantined: IntGauge,
    pub quarantine_events: IntCounterVec,
    unknown_devices: IntGauge,
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

impl Metrics {
    pub fn register() -> Result<Self, MetricsError> {
        let r = Registry::new();
        Ok(Self {
            packets: counter_vec(
                &r,
                "enforcer_packets_total",
                "Packets sent by each listed device, each network (device=\"network:NAME\"), the router itself (device=\"router\") and everything else (device=\"unknown\"), by verdict.",
                &["device", "zone", "verdict"],
            )?,
            bytes: counter_vec(
                &r,
                "enforcer_bytes_total",
                "Bytes sent by each device, by verdict.",
                &["device", "zone", "verdict"],
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
            interfaces: gauge_vec(
                &r,
                "enforcer_interfaces",
                "Interfaces the program is attached to (1), by XDP mode.",
                &["iface", "mode"],
            )?,
            quarantined: gauge(
                &r,
                "enforcer_quarantined_devices",
                "Listed devices in quarantine now.",
            )?,
            quarantine_events: counter_vec(
                &r,
                "enforcer_quarantine_events_total",
                "Devices put into quarantine, by reason.",
                &["reason"],
            )?,
            unknown_devices: gauge(
                &r,
                "enforcer_unknown_devices",
                "Sources the policy does not list, seen by the datapath (bounded by its table).",
            )?,
            registry: r,
        })
    }

    /// Reads the kernel's counters into the families.
    pub fn refresh(
        &self,
        src: &impl MapSource,
        policy: &CompiledPolicy,
    ) -> Result<(), MetricsError> {
        let unknown_zone = policy
            .zones
            .iter()
            .find(|z| z.class == policy.unknown_class)
            .map_or("unknown", |z| z.name.as_str());
        // Rows: unknown devices, each listed device, each network (routed traffic, such as the
        // internet's replies, counted apart from unknown devices).
        let mut rows: Vec<(u32, String, &str)> =
            vec![(UNKNOWN_DEVICE, "unknown".to_owned(), unknown_zone)];
        rows.extend(
            policy
                .devices
                .iter()
                .map(|d| (d.id, d.name.clone(), d.zone.as_str())),
        );
        rows.extend(
            policy
                .networks
                .iter()
                .map(|n| (network_device(n.id), format!("network:{}", n.name), "")),
        );
        // What the router itself sends (judged by the egress program).
        rows.push((enforcer_common::ROUTER_DEVICE, "router".to_owned(), ""));
        self.packets.reset();
        self.bytes.reset();
        self.spoofed.reset();
        let counters = datapath::device_counters(src, rows.iter().map(|r| r.0))?;
        for ((_, name, zone), (_, c)) in rows.iter().zip(counters) {
            for v in Verdict::ALL {
                let i = v as usize;
                self.packets
                    .with_label_values(&[name.as_str(), zone, v.as_str()])
                    .inc_by(c.packets[i]);
                self.bytes
                    .with_label_values(&[name.as_str(), zone, v.as_str()])
                    .inc_by(c.bytes[i]);
            }
            self.spoofed
                .with_label_values(&[name.as_str()])
                .inc_by(c.spoofed);
        }
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
