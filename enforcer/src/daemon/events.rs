//! Deny events from the program's ring buffer, turned into log lines. The program limits each
//! device to a few events a second (so one flooding device cannot starve the others' events), and
//! the ring buffer's size bounds what waits in the kernel; here [`DenyLog`] caps the lines of all
//! devices together, so a thousand flooding devices cost the log a bounded number of lines a
//! second plus one summary line.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use enforcer_common::{
    FAMILY_V4, Verdict,
    event::{DenyEvent, DenyReason, EVENT_QUARANTINE},
    identity::ip_addr,
    state::QuarantineReason,
};
use tokio::{io::unix::AsyncFd, sync::broadcast};

use super::control::WatchEvent;

/// Names behind the ids in events, replaced at each reload.
#[derive(Clone, Debug, Default)]
pub struct Labels {
    /// Device id -> (name, zone).
    pub devices: std::collections::HashMap<u32, (String, String)>,
    /// Rule id -> name.
    pub rules: std::collections::HashMap<u32, String>,
    pub unknown_zone: String,
}

impl Labels {
    pub fn of(p: &crate::policy::CompiledPolicy) -> Self {
        Self {
            devices: p
                .devices
                .iter()
                .map(|d| (d.id, (d.name.clone(), d.zone.clone())))
                .chain(p.networks.iter().map(|n| {
                    (
                        enforcer_common::network_device(n.id),
                        (format!("network:{}", n.name), String::new()),
                    )
                }))
                .chain(std::iter::once((
                    enforcer_common::ROUTER_DEVICE,
                    ("router".to_owned(), String::new()),
                )))
                .collect(),
            rules: p.rules.iter().map(|r| (r.id, r.name.clone())).collect(),
            unknown_zone: p.unknown_zone().to_owned(),
        }
    }
}

fn decode(bytes: &[u8]) -> Option<DenyEvent> {
    if bytes.len() < size_of::<DenyEvent>() {
        return None;
    }
    // SAFETY: the length is checked; DenyEvent is plain data valid for any bit pattern, and the
    // unaligned read copies it out of the ring buffer.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<DenyEvent>()) })
}

fn proto_name(p: u8) -> String {
    match p {
        enforcer_common::PROTO_TCP => "tcp".into(),
        enforcer_common::PROTO_UDP => "udp".into(),
        enforcer_common::PROTO_ICMP => "icmp".into(),
        enforcer_common::PROTO_ICMPV6 => "icmpv6".into(),
        other => other.to_string(),
    }
}

/// An event by name: the one place its ids become names, for the log line and for watchers.
fn describe(e: &DenyEvent, labels: &Labels) -> WatchEvent {
    let (device, zone) = labels
        .devices
        .get(&e.device)
        .map_or(("unknown", labels.unknown_zone.as_str()), |(n, z)| {
            (n.as_str(), z.as_str())
        });
    let (kind, rule, reason) = if e.kind == EVENT_QUARANTINE {
        let reason = QuarantineReason::from_u32(u32::from(e.reason));
        ("quarantine", None, reason.as_str())
    } else {
        let rule = if e.rule == enforcer_common::DEFAULT_RULE {
            "default"
        } else {
            labels.rules.get(&e.rule).map_or("unknown", String::as_str)
        };
        let reason = DenyReason::from_u8(e.reason).map_or("unknown", DenyReason::as_str);
        let verdict = if e.verdict == Verdict::Audit as u8 {
            "audit"
        } else {
            "deny"
        };
        (verdict, Some(rule.to_owned()), reason)
    };
    WatchEvent {
        time: crate::time::rfc3339(crate::time::unix_now()),
        kind: kind.to_owned(),
        device: device.to_owned(),
        zone: zone.to_owned(),
        proto: Some(proto_name(e.proto)),
        src: Some(ip_addr(e.family, e.src).to_string()),
        dst: Some(ip_addr(e.family, e.dst).to_string()),
        sport: Some(e.sport),
        dport: Some(e.dport),
        rule,
        reason: Some(reason.to_owned()),
        iface: ifname(e.ifindex),
        vlan: e.vlan,
        mac: crate::policy::model::fmt_mac(e.src_mac),
        missed: None,
    }
}

fn log_event(w: &WatchEvent) {
    let opt = |s: &Option<String>| s.as_deref().unwrap_or_default().to_owned();
    // Addresses, protocol, MAC and interface as they print (`dst=10.1.4.10`); names quoted.
    tracing::info!(
        target: "enforcer::deny",
        device = w.device,
        zone = w.zone,
        src = %opt(&w.src),
        dst = %opt(&w.dst),
        sport = w.sport.unwrap_or(0),
        dport = w.dport.unwrap_or(0),
        proto = %opt(&w.proto),
        rule = opt(&w.rule),
        reason = opt(&w.reason),
        verdict = w.kind,
        mac = %w.mac,
        iface = %w.iface,
        vlan = w.vlan,
        "packet denied"
    );
}

fn log_quarantine(w: &WatchEvent) {
    tracing::warn!(
        target: "enforcer::quarantine",
        device = w.device,
        zone = w.zone,
        reason = w.reason.as_deref().unwrap_or_default(),
        iface = w.iface,
        "device quarantined by the datapath"
    );
}

/// Deny lines logged a second, all devices together; the rest are counted
/// (`enforcer_deny_events_suppressed_total`) and summed in one summary line a second.
pub const MAX_DENY_LOGS_PER_SECOND: u32 = 100;
/// How many of the most suppressed devices a summary line names.
const SUMMARY_TOP_DEVICES: usize = 5;
const WINDOW: Duration = Duration::from_secs(1);

/// The daemon-wide cap on deny lines: the first [`MAX_DENY_LOGS_PER_SECOND`] events of each
/// one-second window are logged, the rest only counted by device. Its memory is bounded by the
/// device ids the program can send (one counter per device with suppressed events).
#[derive(Debug)]
pub struct DenyLog {
    window_start: Instant,
    logged: u32,
    suppressed: HashMap<u32, u64>,
}

/// What a window suppressed: the summary line's fields.
#[derive(Debug, PartialEq, Eq)]
pub struct Suppressed {
    pub events: u64,
    pub devices: usize,
    /// The devices with the most suppressed events (most first, then by id), with their counts.
    pub top: Vec<(u32, u64)>,
}

impl DenyLog {
    #[must_use]
    pub fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            logged: 0,
            suppressed: HashMap::new(),
        }
    }

    /// Whether a deny event of `device` at `now` may be logged; when not, it is counted. A
    /// window that has ended is closed first: its summary is returned with the answer.
    pub fn admit(&mut self, device: u32, now: Instant) -> (bool, Option<Suppressed>) {
        let summary = self.roll(now);
        if self.logged < MAX_DENY_LOGS_PER_SECOND {
            self.logged += 1;
            return (true, summary);
        }
        *self.suppressed.entry(device).or_default() += 1;
        (false, summary)
    }

    /// Closes the window if it has ended; returns what it suppressed, if anything.
    pub fn roll(&mut self, now: Instant) -> Option<Suppressed> {
        if now.saturating_duration_since(self.window_start) < WINDOW {
            return None;
        }
        self.window_start = now;
        self.logged = 0;
        if self.suppressed.is_empty() {
            return None;
        }
        let by_device = std::mem::take(&mut self.suppressed);
        let mut top: Vec<(u32, u64)> = by_device.iter().map(|(d, n)| (*d, *n)).collect();
        top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(SUMMARY_TOP_DEVICES);
        Some(Suppressed {
            events: by_device.values().sum(),
            devices: by_device.len(),
            top,
        })
    }
}

fn log_suppressed(s: &Suppressed, labels: &Labels) {
    let top = s
        .top
        .iter()
        .map(|(d, n)| {
            let name = labels.devices.get(d).map_or("unknown", |(n, _)| n.as_str());
            format!("{name}:{n}")
        })
        .collect::<Vec<_>>()
        .join(",");
    tracing::warn!(
        target: "enforcer::deny",
        suppressed = s.events,
        devices = s.devices,
        top = %top,
        "suppressed {} deny events from {} devices (over {MAX_DENY_LOGS_PER_SECOND} deny lines a second)",
        s.events,
        s.devices,
    );
}

/// Where an event goes besides the log: the metrics, and whoever watches (`enforcer watch`).
pub struct Sinks {
    pub metrics: Arc<super::metrics::Metrics>,
    pub watchers: broadcast::Sender<WatchEvent>,
    /// Audit events, for the observer (`enforcer learn`).
    pub audits: super::observe::AuditEvents,
}

fn handle(e: &DenyEvent, labels: &Labels, sinks: &Sinks, cap: &mut DenyLog) {
    let w = describe(e, labels);
    // Quarantine lines are never capped: at most one per device until it is released.
    if e.kind == EVENT_QUARANTINE {
        sinks
            .metrics
            .quarantine_event(QuarantineReason::from_u32(u32::from(e.reason)));
        log_quarantine(&w);
    } else {
        sinks.metrics.deny_events.inc();
        let (log, summary) = cap.admit(e.device, Instant::now());
        if let Some(s) = summary {
            log_suppressed(&s, labels);
        }
        if log {
            log_event(&w);
        } else {
            sinks.metrics.shed.deny_events_suppressed.inc();
        }
        // A full backlog drops the event: the observer says how many it got per scan.
        if e.verdict == Verdict::Audit as u8 {
            let _full = sinks.audits.try_send(*e);
        }
    }
    // Nobody watching is the common case: then this is a no-op (an error, ignored).
    let _no_watcher = sinks.watchers.send(w);
}

/// Takes a ring buffer out of the loaded program, for one task to own and read.
pub(crate) fn take_ring(
    dp: &mut crate::datapath::Datapath,
    name: &'static str,
) -> Result<RingBuf<MapData>, crate::datapath::DatapathError> {
    RingBuf::try_from(dp.take_map(name)?)
        .map_err(|source| crate::datapath::DatapathError::Map { name, source })
}

/// What a ring buffer's reader does with each record, and on a timer between records.
pub(crate) trait RingReader {
    fn record(&mut self, bytes: &[u8]);
    fn tick(&mut self);
}

/// Reads `ring` until the task is dropped: every record as it arrives, and `tick` every `every`
/// even when no record follows. The one ring-buffer loop of the daemon (deny events, evidence).
pub(crate) async fn read_ring(
    ring: RingBuf<MapData>,
    every: std::time::Duration,
    reader: &mut impl RingReader,
) -> std::io::Result<()> {
    // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd owns the ring buffer,
    // and `as_raw_fd` always returns that same fd.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                let ring = guard.get_inner_mut();
                while let Some(item) = ring.next() {
                    reader.record(&item);
                }
                guard.clear_ready();
            }
            _ = tick.tick() => reader.tick(),
        }
    }
}

/// The deny-event reader's state: the names to log with, where events go, the global cap.
struct DenyReader {
    labels: Arc<RwLock<Labels>>,
    sinks: Sinks,
    cap: DenyLog,
}

impl RingReader for DenyReader {
    fn record(&mut self, bytes: &[u8]) {
        if let Some(e) = decode(bytes) {
            with_labels(&self.labels, |l| handle(&e, l, &self.sinks, &mut self.cap));
        }
    }

    fn tick(&mut self) {
        if let Some(s) = self.cap.roll(Instant::now()) {
            with_labels(&self.labels, |l| log_suppressed(&s, l));
        }
    }
}

/// Reads events until the task is dropped; a window's summary is logged within a second of its
/// end even when no event follows.
pub async fn run(
    ring: RingBuf<MapData>,
    labels: Arc<RwLock<Labels>>,
    sinks: Sinks,
) -> std::io::Result<()> {
    let mut reader = DenyReader {
        labels,
        sinks,
        cap: DenyLog::new(Instant::now()),
    };
    read_ring(ring, WINDOW, &mut reader).await
}

/// Runs `f` with the labels in force (a poisoned lock still holds the last good ones).
fn with_labels<T>(labels: &RwLock<Labels>, f: impl FnOnce(&Labels) -> T) -> T {
    match labels.read() {
        Ok(l) => f(&l),
        Err(poisoned) => f(&poisoned.into_inner()),
    }
}

/// The name of an interface by index, or the index as text.
#[must_use]
pub fn ifname(index: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return index.to_string();
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Discovery log lines per second at most; the rest are summed in one line.
const MAX_DISCOVERY_LOGS_PER_SECOND: usize = 20;

/// Logs every newly discovered unlisted source once. The sources already in the table when the
/// daemon starts were logged by the daemon that saw them first.
pub(crate) async fn watch_discoveries(
    shared: Arc<std::sync::Mutex<super::Inner>>,
    watchers: broadcast::Sender<WatchEvent>,
) {
    let mut known: std::collections::HashSet<[u8; 6]> = std::collections::HashSet::new();
    let mut first = true;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let (found, zone) = {
            let Ok(inner) = shared.lock() else { return };
            (
                crate::datapath::discovered(&inner.dp),
                inner.policy.unknown_zone().to_owned(),
            )
        };
        let Ok(found) = found else { continue };
        // A MAC flood must cost neither unbounded memory nor an unbounded log.
        if known.len() > 4 * enforcer_common::state::MAX_DISCOVERED as usize {
            known.clear();
            first = true;
        }
        let mut logged = 0usize;
        let mut more = 0usize;
        for (mac, d) in found {
            if !known.insert(mac) || first {
                continue;
            }
            let mac_s = crate::policy::model::fmt_mac(mac);
            let v4 = (d.has_v4 != 0).then(|| ip_addr(FAMILY_V4, [d.v4, 0, 0, 0]).to_string());
            let v6 = (d.has_v6 != 0).then(|| ip_addr(enforcer_common::FAMILY_V6, d.v6).to_string());
            if watchers.receiver_count() > 0 {
                let _gone = watchers.send(WatchEvent {
                    time: crate::time::rfc3339(crate::time::unix_now()),
                    kind: "discovery".to_owned(),
                    device: "unknown".to_owned(),
                    zone: zone.clone(),
                    src: v4.clone().or_else(|| v6.clone()),
                    dst: Some(ip_addr(d.last_family, d.last_dst).to_string()),
                    dport: Some(d.last_dport),
                    reason: Some("new unknown device".to_owned()),
                    iface: ifname(d.ifindex),
                    vlan: d.vlan,
                    mac: mac_s.clone(),
                    ..WatchEvent::default()
                });
            }
            if logged == MAX_DISCOVERY_LOGS_PER_SECOND {
                more += 1;
                continue;
            }
            logged += 1;
            tracing::warn!(
                target: "enforcer::discovery",
                mac = %mac_s,
                ipv4 = v4.as_deref().unwrap_or("-"),
                ipv6 = v6.as_deref().unwrap_or("-"),
                iface = %ifname(d.ifindex),
                vlan = d.vlan,
                tried = %ip_addr(d.last_family, d.last_dst),
                dport = d.last_dport,
                "new unknown device: in the unknown zone until the policy lists it"
            );
        }
        if more > 0 {
            tracing::warn!(target: "enforcer::discovery", more, "more new unknown devices this second (see `enforcer devices --unknown`)");
        }
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_thousand_devices_get_the_cap_of_lines_a_second_and_the_rest_summed_by_device() {
        let t0 = Instant::now();
        let mut cap = DenyLog::new(t0);
        let mut logged = 0u64;
        // 1,000 devices, 10 events each (the program's budget), all within the first second.
        for round in 0..10u32 {
            for device in 1..=1_000u32 {
                let (log, summary) = cap.admit(device, t0 + MS * round);
                assert!(summary.is_none(), "the window has not ended");
                logged += u64::from(log);
            }
        }
        assert_eq!(logged, u64::from(MAX_DENY_LOGS_PER_SECOND));
        let s = cap
            .roll(t0 + WINDOW)
            .expect("a summary at the window's end");
        assert_eq!(s.events + logged, 10_000, "logged + suppressed = events");
        // The first 100 events were devices 1..=100 of the first round.
        assert_eq!(s.devices, 1_000);
        assert_eq!(s.top.len(), SUMMARY_TOP_DEVICES);
        assert_eq!(s.top[0], (101, 10), "most suppressed first, then by id");
        assert_eq!(s.top[4], (105, 10));
        // A new window logs again, and a quiet one has nothing to say.
        assert_eq!(cap.admit(7, t0 + WINDOW + MS), (true, None));
        assert_eq!(cap.roll(t0 + WINDOW * 3), None);
    }

    #[test]
    fn an_event_after_the_window_ends_closes_it_with_its_summary() {
        let t0 = Instant::now();
        let mut cap = DenyLog::new(t0);
        for _ in 0..=MAX_DENY_LOGS_PER_SECOND {
            let _ = cap.admit(3, t0);
        }
        let (log, summary) = cap.admit(4, t0 + WINDOW);
        assert!(log, "the new window's first event is logged");
        assert_eq!(
            summary,
            Some(Suppressed {
                events: 1,
                devices: 1,
                top: vec![(3, 1)],
            })
        );
    }
}
