//! Accounting: per-CPU counters, per-device and per-rule statistics, rate-limited deny events and
//! the discovery record of unlisted sources. Nothing here changes a verdict.

use aya_ebpf::maps::ring_buf::RingBufEntry;
use enforcer_common::{
    Verdict,
    event::{DenyEvent, EVENT_DENY, EVENT_QUARANTINE},
    identity::MacKey,
    state::{DiscoveredDevice, EVENTS_PER_DEVICE_PER_SEC, QuarantineReason},
    stats::Counter,
};

use crate::{
    maps::{COUNTERS, DEVICE_STATS, DISCOVERED, EVENT_BUDGET, EVENTS, RULE_STATS},
    parse::Packet,
    policy::Judgement,
};

const SECOND_NS: u64 = 1_000_000_000;

#[inline(always)]
pub fn count(c: Counter) {
    if let Some(v) = COUNTERS.get_ptr_mut(c as u32) {
        // SAFETY: per-CPU slot of this CPU; nothing else writes it while this program runs here.
        unsafe { *v += 1 };
    }
}

/// Counts one packet a device sent, by verdict.
#[inline(always)]
pub fn device(device: u32, verdict: Verdict, bytes: u32, spoofed: bool, now: u64) {
    if let Some(s) = DEVICE_STATS.get_ptr_mut(device) {
        // SAFETY: per-CPU slot of this CPU.
        let s = unsafe { &mut *s };
        let i = verdict as usize;
        if i < Verdict::COUNT {
            s.packets[i] += 1;
            s.bytes[i] += u64::from(bytes);
        }
        if spoofed {
            s.spoofed += 1;
        }
        s.last_seen_ns = now;
    }
}

/// Counts one packet a rule (or, for rule 0, the default) decided.
#[inline(always)]
pub fn rule(rule: u32, bytes: u32) {
    if let Some(s) = RULE_STATS.get_ptr_mut(rule) {
        // SAFETY: per-CPU slot of this CPU.
        let s = unsafe { &mut *s };
        s.packets += 1;
        s.bytes += u64::from(bytes);
    }
}

/// Whether the device may still send an event this second. A flooding device spends only its own
/// budget, so it cannot starve the reader of other devices' events.
#[inline(always)]
fn event_allowed(device: u32, now: u64) -> bool {
    let Some(b) = EVENT_BUDGET.get_ptr_mut(device) else {
        return false;
    };
    // SAFETY: a valid array slot; concurrent CPUs may race on it, which only blurs the budget.
    let b = unsafe { &mut *b };
    if now.saturating_sub(b.window_start_ns) >= SECOND_NS {
        b.window_start_ns = now;
        b.count = 0;
    }
    if b.count >= EVENTS_PER_DEVICE_PER_SEC {
        return false;
    }
    b.count += 1;
    true
}

/// Sends a deny (or audit) event to userspace, within the device's budget.
/// Out of line, returning a scalar the caller consumes: see `policy::judge_into` for why r0
/// must hold one.
#[inline(never)]
pub fn deny_event(ifindex: u32, pkt: &Packet, j: &Judgement, verdict: Verdict, now: u64) -> u32 {
    deny_event_body(ifindex, pkt, j, verdict, now);
    0
}

#[inline(always)]
fn deny_event_body(ifindex: u32, pkt: &Packet, j: &Judgement, verdict: Verdict, now: u64) {
    let (device, rule, reason) = (j.src.device, j.rule, j.reason);
    if !event_allowed(device, now) {
        count(Counter::EventsRateLimited);
        return;
    }
    let Some(mut entry) = reserve_event() else {
        return;
    };
    // Filled in place: a 72-byte event built on the stack would not fit beside the rest.
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points at reserved ring-buffer memory sized and aligned for a `DenyEvent`; every
    // field is written before `submit`.
    unsafe {
        (*e).timestamp_ns = now;
        (*e).device = device;
        (*e).rule = rule;
        (*e).src = pkt.src;
        (*e).dst = pkt.dst;
        (*e).sport = pkt.sport;
        (*e).dport = pkt.dport;
        (*e).ifindex = ifindex;
        (*e).proto = pkt.proto;
        (*e).family = pkt.family;
        (*e).reason = reason as u8;
        (*e).verdict = verdict as u8;
        (*e).src_mac = pkt.src_mac;
        (*e).vlan = pkt.vlan;
        (*e).kind = EVENT_DENY;
        (*e)._pad = [0; 3];
    }
    entry.submit(0);
    count(Counter::EventsSent);
}

/// Records a source the policy does not list, keyed by its MAC.
///
/// `fresh` is scratch space for a first sighting (too large for the stack).
/// Out of line, returning a scalar the caller consumes: see `policy::judge_into` for why r0
/// must hold one.
#[inline(never)]
pub fn discovered(ifindex: u32, pkt: &Packet, now: u64, fresh: &mut DiscoveredDevice) -> u32 {
    discovered_body(ifindex, pkt, now, fresh);
    0
}

#[inline(always)]
fn discovered_body(ifindex: u32, pkt: &Packet, now: u64, fresh: &mut DiscoveredDevice) {
    let key = MacKey::new(0, pkt.src_mac);
    *fresh = DiscoveredDevice {
        first_seen_ns: now,
        ..DiscoveredDevice::default()
    };
    let d = match DISCOVERED.get_ptr_mut(&key) {
        Some(d) => d,
        None => {
            if DISCOVERED.insert(&key, fresh, 0).is_err() {
                return;
            }
            match DISCOVERED.get_ptr_mut(&key) {
                Some(d) => d,
                None => return,
            }
        }
    };
    // SAFETY: pointer from a successful lookup; racing CPUs only blur the last-seen fields.
    let d = unsafe { &mut *d };
    d.last_seen_ns = now;
    d.packets += 1;
    d.ifindex = ifindex;
    d.vlan = pkt.vlan;
    if pkt.family == enforcer_common::FAMILY_V4 {
        d.has_v4 = 1;
        d.v4 = pkt.src[0];
    } else if pkt.src[0].to_ne_bytes()[0] != 0xfe {
        // Link-local addresses say nothing about where the device lives; keep a routable one.
        d.has_v6 = 1;
        d.v6 = pkt.src;
    }
    d.last_dst = pkt.dst;
    d.last_dport = pkt.dport;
    d.last_proto = pkt.proto;
    d.last_family = pkt.family;
}

/// A ring-buffer slot for one event; a full buffer is counted, never waited for.
#[inline(always)]
fn reserve_event() -> Option<RingBufEntry<DenyEvent>> {
    let entry = EVENTS.reserve::<DenyEvent>(0);
    if entry.is_none() {
        count(Counter::EventsDropped);
    }
    entry
}

/// Tells the daemon a device was quarantined (not budgeted: a device trips at most once until it
/// is released). Only the device, reason and time are meaningful in such an event.
#[inline(always)]
pub fn quarantine_event(device: u32, reason: QuarantineReason, now: u64) {
    let Some(mut entry) = reserve_event() else {
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points at reserved ring-buffer memory sized and aligned for a `DenyEvent`; the
    // fields a quarantine event carries are written before `submit`, the daemon reads no others.
    unsafe {
        (*e).timestamp_ns = now;
        (*e).device = device;
        (*e).rule = 0;
        (*e).reason = reason as u8;
        (*e).kind = EVENT_QUARANTINE;
    }
    entry.submit(0);
}
