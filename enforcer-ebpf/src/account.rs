//! Accounting: per-CPU counters, per-device and per-rule statistics, rate-limited deny events and
//! the discovery record of unlisted sources. Nothing here changes a verdict.

use aya_ebpf::helpers::bpf_get_smp_processor_id;
use enforcer_common::{
    DEFAULT_RULE, MAX_DEVICES, Verdict,
    event::{DenyEvent, EVENT_DENY, EVENT_NO_VERDICT, EVENT_QUARANTINE},
    identity::MacKey,
    state::{
        DiscoveredDevice, EVENTS_PER_CPU_PER_SEC, EVENTS_PER_DEVICE_PER_SEC, EventBudget,
        QuarantineReason,
    },
    stats::{Counter, device_stats_row},
};
use enforcer_ebpf::out_of_line;

use crate::{
    maps::{
        COUNTERS, DEVICE_STATS, DISCOVERED, EVENT_BUDGET, EVENT_BUDGET_CPU, EVENTS, RULE_STATS,
    },
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
    // An id past the rows of one CPU would count on the next CPU's rows.
    if device >= MAX_DEVICES {
        return;
    }
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    if let Some(s) = DEVICE_STATS.get_ptr_mut(device_stats_row(cpu, device)) {
        // SAFETY: this CPU's row of the device: only this CPU writes it, and not concurrently
        // (a program runs to completion on its CPU).
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

/// Takes one event from a budget of `per_sec` a second; whether there was one left.
#[inline(always)]
pub fn spend(b: &mut EventBudget, per_sec: u32, now: u64) -> bool {
    if now.saturating_sub(b.window_start_ns) >= SECOND_NS {
        b.window_start_ns = now;
        b.count = 0;
    }
    if b.count >= per_sec {
        return false;
    }
    b.count += 1;
    true
}

/// Whether the device may still send an event this second. A flooding device spends only its own
/// budget, so it cannot starve the reader of other devices' events.
#[inline(always)]
fn device_may_send(device: u32, now: u64) -> bool {
    let Some(b) = EVENT_BUDGET.get_ptr_mut(device) else {
        return false;
    };
    // SAFETY: a valid array slot; concurrent CPUs may race on it, which only blurs the budget.
    spend(unsafe { &mut *b }, EVENTS_PER_DEVICE_PER_SEC, now)
}

/// Whether this CPU may still send an event this second, whoever the device. Asked after the
/// device's own budget, so a flooding device exhausts its own budget, not the shared one.
#[inline(always)]
fn cpu_may_send(now: u64) -> bool {
    let Some(b) = EVENT_BUDGET_CPU.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's slot; nothing else writes it while this program runs here.
    spend(unsafe { &mut *b }, EVENTS_PER_CPU_PER_SEC, now)
}

/// Sends a deny (or audit) event to userspace, within the device's budget. A device past its
/// budget (a flood) is counted here, without the call that sending takes.
#[inline(always)]
pub fn deny_event(ifindex: u32, pkt: &Packet, j: &Judgement, verdict: Verdict, now: u64) {
    if device_may_send(j.src.device, now) {
        send_deny_event(ifindex, pkt, j, verdict, now);
    } else {
        count(Counter::EventsRateLimited);
    }
}

out_of_line! {
    /// [`deny_event`] within the device's budget: within the CPU's too, sends it.
    fn send_deny_event(ifindex: u32, pkt: &Packet, j: &Judgement, verdict: Verdict, now: u64) {
        let device = j.src.device;
        if !cpu_may_send(now) {
            count(Counter::EventsGlobalLimited);
            return;
        }
        let about = EventAbout {
            kind: EVENT_DENY,
            device,
            rule: j.rule,
            reason: j.reason as u8,
            verdict: verdict as u8,
        };
        if send_event(ifindex, pkt, &about, now) {
            count(Counter::EventsSent);
        }
    }
}

out_of_line! {
    /// Tells the daemon a device was quarantined, with the packet that tripped it (not budgeted:
    /// a device trips at most once until it is released).
    pub fn quarantine_event(
        ifindex: u32,
        pkt: &Packet,
        device: u32,
        reason: QuarantineReason,
        now: u64,
    ) {
        let about = EventAbout {
            kind: EVENT_QUARANTINE,
            device,
            rule: DEFAULT_RULE,
            reason: reason as u8,
            verdict: EVENT_NO_VERDICT,
        };
        send_event(ifindex, pkt, &about, now);
    }
}

/// What an event says beyond the packet it is about (see `DenyEvent`).
struct EventAbout {
    kind: u8,
    device: u32,
    rule: u32,
    reason: u8,
    verdict: u8,
}

/// Writes one event, every field of it, about `pkt` into the ring buffer; whether it was sent
/// (a full buffer is counted, never waited for). The one writer of `DenyEvent`: a reserved slot
/// holds whatever an earlier event left there, so a field this skipped would be stale data.
#[inline(always)]
fn send_event(ifindex: u32, pkt: &Packet, about: &EventAbout, now: u64) -> bool {
    let Some(mut entry) = EVENTS.reserve::<DenyEvent>(0) else {
        count(Counter::EventsDropped);
        return false;
    };
    // Filled in place, one field at a time: a 72-byte event built on the stack would not fit
    // beside the rest. The struct literal makes the compiler check that no field is left out.
    let event = DenyEvent {
        timestamp_ns: now,
        device: about.device,
        rule: about.rule,
        src: pkt.src,
        dst: pkt.dst,
        sport: pkt.sport,
        dport: pkt.dport,
        ifindex,
        proto: pkt.proto,
        family: pkt.family,
        reason: about.reason,
        verdict: about.verdict,
        src_mac: pkt.src_mac,
        vlan: pkt.vlan,
        kind: about.kind,
        _pad: [0; 3],
    };
    entry.write(event);
    entry.submit(0);
    true
}

out_of_line! {
    /// Records a source the policy does not list, keyed by its MAC.
    ///
    /// `fresh` is scratch space for a first sighting (too large for the stack).
    pub fn discovered(ifindex: u32, pkt: &Packet, now: u64, fresh: &mut DiscoveredDevice) {
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
                count(Counter::DiscoveredNew);
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
}
