//! Automatic quarantine, decided in the kernel: a listed device that keeps probing, forges another's
//! address or touches a tripwire is moved to the quarantine class from its next packet on, without
//! a round trip through userspace.

use enforcer_common::{
    control::PolicyConfig,
    is_listed_device,
    state::{QUARANTINE_FOREVER, QuarantineReason},
    stats::Counter,
};

use crate::{
    account,
    maps::{CONTROL, DEVICE_STATE},
    parse::Packet,
};

const MS_NS: u64 = 1_000_000;
const SECOND_NS: u64 = 1_000_000_000;

/// Quarantines `device` now (unless it already is); `pkt`, arrived on `ifindex`, tripped it.
#[inline(always)]
pub fn trip(
    cfg: &PolicyConfig,
    device: u32,
    reason: QuarantineReason,
    ifindex: u32,
    pkt: &Packet,
    now: u64,
) {
    if !is_listed_device(device) || cfg.quarantine_class == 0 {
        return;
    }
    let Some(s) = DEVICE_STATE.get_ptr_mut(device) else {
        return;
    };
    // SAFETY: a valid array slot; two CPUs tripping the same device at once write the same thing.
    let s = unsafe { &mut *s };
    if s.quarantine_until_ns > now {
        return;
    }
    s.quarantine_until_ns = if cfg.quarantine_release_s == 0 {
        QUARANTINE_FOREVER
    } else {
        now + u64::from(cfg.quarantine_release_s) * SECOND_NS
    };
    s.quarantine_reason = reason as u32;
    s.deny_count = 0;
    // Invalidate every cached flow so the device's open flows are judged again (and lost) at
    // their next packet. +2 keeps the slot bit (see `Control`). The BPF target has no atomic
    // fetch-add in `core`; a bump lost to a racing CPU or to a userspace switch still leaves the
    // epoch changed, which is all the flow cache needs.
    if let Some(c) = CONTROL.get_ptr_mut(0) {
        // SAFETY: a valid array slot for this run.
        unsafe { (*c).epoch += 2 };
    }
    account::count(Counter::QuarantineTrips);
    account::quarantine_event(ifindex, pkt, device, reason, now);
}

/// Counts a denied packet (`pkt`, arrived on `ifindex`) against the device's window and trips the
/// quarantine past the threshold.
#[inline(always)]
pub fn on_denied(cfg: &PolicyConfig, device: u32, ifindex: u32, pkt: &Packet, now: u64) {
    if !is_listed_device(device) || cfg.quarantine_denied == 0 || cfg.quarantine_class == 0 {
        return;
    }
    let Some(s) = DEVICE_STATE.get_ptr_mut(device) else {
        return;
    };
    // SAFETY: a valid array slot; racing CPUs may lose a count, which only delays the trip.
    let s = unsafe { &mut *s };
    if now.saturating_sub(s.deny_window_start_ns) > u64::from(cfg.quarantine_window_ms) * MS_NS {
        s.deny_window_start_ns = now;
        s.deny_count = 0;
    }
    s.deny_count += 1;
    if s.deny_count >= cfg.quarantine_denied {
        trip(
            cfg,
            device,
            QuarantineReason::DeniedPackets,
            ifindex,
            pkt,
            now,
        );
    }
}
