//! Deny events from the program's ring buffer, turned into log lines. The program already limits
//! each device to a few events a second, so a flood costs the log a bounded number of lines.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{Arc, RwLock},
};

use aya::maps::{MapData, RingBuf};
use enforcer_common::{
    FAMILY_V4, Verdict,
    event::{DenyEvent, DenyReason, EVENT_QUARANTINE},
    identity::octets,
    state::QuarantineReason,
};
use tokio::io::unix::AsyncFd;

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
            unknown_zone: p
                .zones
                .iter()
                .find(|z| z.class == p.unknown_class)
                .map_or_else(|| "unknown".to_owned(), |z| z.name.clone()),
        }
    }
}

/// An event's address as an `IpAddr`.
#[must_use]
pub fn event_addr(family: u8, words: [u32; 4]) -> IpAddr {
    let o = octets(words);
    if family == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(o))
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

fn log_event(e: &DenyEvent, labels: &Labels) {
    let (device, zone) = labels
        .devices
        .get(&e.device)
        .map_or(("unknown", labels.unknown_zone.as_str()), |(n, z)| {
            (n.as_str(), z.as_str())
        });
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
    let mac = crate::policy::model::fmt_mac(e.src_mac);
    tracing::info!(
        target: "enforcer::deny",
        device,
        zone,
        src = %event_addr(e.family, e.src),
        dst = %event_addr(e.family, e.dst),
        sport = e.sport,
        dport = e.dport,
        proto = %proto_name(e.proto),
        rule,
        reason,
        verdict,
        mac = %mac,
        ifindex = e.ifindex,
        vlan = e.vlan,
        "packet denied"
    );
}

fn log_quarantine(e: &DenyEvent, labels: &Labels, metrics: &super::metrics::Metrics) {
    let reason = QuarantineReason::from_u32(u32::from(e.reason));
    let (device, zone) = labels
        .devices
        .get(&e.device)
        .map_or(("unknown", ""), |(n, z)| (n.as_str(), z.as_str()));
    metrics.quarantine_event(reason);
    tracing::warn!(
        target: "enforcer::quarantine",
        device,
        zone,
        reason = reason.as_str(),
        "device quarantined by the datapath"
    );
}

fn handle(e: &DenyEvent, labels: &Labels, metrics: &super::metrics::Metrics) {
    if e.kind == EVENT_QUARANTINE {
        log_quarantine(e, labels, metrics);
    } else {
        metrics.deny_events.inc();
        log_event(e, labels);
    }
}

/// Reads events until the task is dropped.
pub async fn run(
    ring: RingBuf<MapData>,
    labels: Arc<RwLock<Labels>>,
    metrics: Arc<super::metrics::Metrics>,
) -> std::io::Result<()> {
    // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd owns the ring buffer,
    // and `as_raw_fd` always returns that same fd.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    loop {
        let mut guard = fd.readable_mut().await?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            if let Some(e) = decode(&item) {
                match labels.read() {
                    Ok(l) => handle(&e, &l, &metrics),
                    Err(poisoned) => handle(&e, &poisoned.into_inner(), &metrics),
                }
            }
        }
        guard.clear_ready();
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
pub(crate) async fn watch_discoveries(shared: Arc<std::sync::Mutex<super::Inner>>) {
    let mut known: std::collections::HashSet<[u8; 6]> = std::collections::HashSet::new();
    let mut first = true;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let found = {
            let Ok(inner) = shared.lock() else { return };
            crate::datapath::discovered(&inner.dp)
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
            if logged == MAX_DISCOVERY_LOGS_PER_SECOND {
                more += 1;
                continue;
            }
            logged += 1;
            let mac_s = crate::policy::model::fmt_mac(mac);
            let v4 = (d.has_v4 != 0).then(|| event_addr(FAMILY_V4, [d.v4, 0, 0, 0]).to_string());
            let v6 =
                (d.has_v6 != 0).then(|| event_addr(enforcer_common::FAMILY_V6, d.v6).to_string());
            tracing::warn!(
                target: "enforcer::discovery",
                mac = %mac_s,
                ipv4 = v4.as_deref().unwrap_or("-"),
                ipv6 = v6.as_deref().unwrap_or("-"),
                iface = %ifname(d.ifindex),
                vlan = d.vlan,
                tried = %event_addr(d.last_family, d.last_dst),
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
