//! Deny events from the program's ring buffer, turned into log lines. The program already limits
//! each device to a few events a second, so a flood costs the log a bounded number of lines.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{Arc, RwLock},
};

use aya::maps::{MapData, RingBuf};
use enforcer_common::{
    FAMILY_V4, Verdict,
    event::{DenyEvent, DenyReason},
    identity::octets,
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
            devices: p.devices.iter().map(|d| (d.id, (d.name.clone(), d.zone.clone()))).collect(),
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
        .map_or(("unknown", labels.unknown_zone.as_str()), |(n, z)| (n.as_str(), z.as_str()));
    let rule = if e.rule == enforcer_common::DEFAULT_RULE {
        "default"
    } else {
        labels.rules.get(&e.rule).map_or("unknown", String::as_str)
    };
    let reason = DenyReason::from_u8(e.reason).map_or("unknown", DenyReason::as_str);
    let verdict = if e.verdict == Verdict::Audit as u8 { "audit" } else { "deny" };
    let mac = e.src_mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
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

/// Reads events until the task is dropped.
pub async fn run(
    ring: RingBuf<MapData>,
    labels: Arc<RwLock<Labels>>,
    received: prometheus::IntCounter,
) -> std::io::Result<()> {
    let mut fd = AsyncFd::new(ring)?;
    loop {
        let mut guard = fd.readable_mut().await?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            if let Some(e) = decode(&item) {
                received.inc();
                match labels.read() {
                    Ok(l) => log_event(&e, &l),
                    Err(poisoned) => log_event(&e, &poisoned.into_inner()),
                }
            }
        }
        guard.clear_ready();
    }
}
