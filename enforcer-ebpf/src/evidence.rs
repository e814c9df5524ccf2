//! Evidence capture: DHCP, mDNS and SSDP frames, in which devices describe themselves, copied to
//! the daemon through their own ring buffer (`enforcer_common::evidence`).
//!
//! Capture runs before the verdict and changes nothing about it: it reads the frame, never writes
//! it, and returns nothing the verdict reads. Every source is captured, listed or not, within its
//! MAC's budget and this CPU's. Only UDP datagrams on the ports of [`EvidenceKind::of`] reach the
//! out-of-line part: the common path pays two compares.

use aya_ebpf::{helpers::generated::bpf_xdp_load_bytes, programs::XdpContext};
use enforcer_common::{
    PROTO_UDP,
    evidence::{
        EVIDENCE_PER_CPU_PER_SEC, EVIDENCE_PER_MAC_PER_SEC, EvidenceFrame, EvidenceKind,
        MAX_EVIDENCE_PAYLOAD,
    },
    identity::MacKey,
    state::EventBudget,
    stats::Counter,
};
use enforcer_ebpf::out_of_line;

use crate::{
    account::{count, spend},
    maps::{EVIDENCE, EVIDENCE_BUDGET, EVIDENCE_BUDGET_CPU},
    parse::{Fragment, L4, Packet},
};

/// Bytes of the UDP header before the payload.
const UDP_HEADER: u32 = 8;

/// Whether `pkt` may be evidence: a whole UDP datagram on one of the evidence ports.
#[inline(always)]
pub fn is_candidate(pkt: &Packet) -> bool {
    pkt.proto == PROTO_UDP
        && pkt.l4 == L4::Ports
        && pkt.frag == Fragment::None
        && EvidenceKind::of(pkt.sport, pkt.dport).is_some()
}

/// Whether the MAC may still send evidence this second. A MAC seen for the first time starts a
/// budget; a full table recycles the least recently used one.
#[inline(always)]
fn mac_may_send(mac: [u8; 6], now: u64) -> bool {
    let key = MacKey::new(0, mac);
    if let Some(b) = EVIDENCE_BUDGET.get_ptr_mut(&key) {
        // SAFETY: pointer from a successful lookup; racing CPUs only blur the budget.
        return spend(unsafe { &mut *b }, EVIDENCE_PER_MAC_PER_SEC, now);
    }
    let fresh = EventBudget {
        window_start_ns: now,
        count: 1,
        _pad: 0,
    };
    // A failed insert (another CPU raced us to it) still lets this one frame through.
    let _raced = EVIDENCE_BUDGET.insert(&key, &fresh, 0);
    true
}

/// Whether this CPU may still send evidence this second, whoever the source.
#[inline(always)]
fn cpu_may_send(now: u64) -> bool {
    let Some(b) = EVIDENCE_BUDGET_CPU.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's slot; nothing else writes it while this program runs here.
    spend(unsafe { &mut *b }, EVIDENCE_PER_CPU_PER_SEC, now)
}

/// Copies `len` bytes of the frame at `off` to `dst`; whether the kernel did. The helper checks
/// the range against the frame itself, so `off` need not be known to the verifier.
#[inline(always)]
fn load_bytes(ctx: &XdpContext, off: u32, dst: *mut u8, len: u32) -> bool {
    // SAFETY: `dst` points at `len` writable bytes (the caller's ring-buffer slot or stack array).
    unsafe { bpf_xdp_load_bytes(ctx.ctx, off, dst.cast(), len) == 0 }
}

out_of_line! {
    /// Copies an evidence frame (its UDP payload from `payload_off`, at most
    /// [`MAX_EVIDENCE_PAYLOAD`] bytes) to `EVIDENCE`, within the budgets.
    pub fn capture(ctx: &XdpContext, pkt: &Packet, ifindex: u32) {
        let Some(kind) = EvidenceKind::of(pkt.sport, pkt.dport) else {
            return;
        };
        let now = crate::now_ns();
        if !mac_may_send(pkt.src_mac, now) {
            count(Counter::EvidenceRateLimited);
            return;
        }
        if !cpu_may_send(now) {
            count(Counter::EvidenceGlobalLimited);
            return;
        }
        // The payload offset comes back from scratch memory; bounding it keeps the sums below
        // in range (the headers before a UDP payload never reach this far).
        let Ok(payload_off) = u32::try_from(pkt.inner_off) else {
            return;
        };
        if !(UDP_HEADER..=4096).contains(&payload_off) {
            return;
        }
        let mut udp_len = [0u8; 2];
        if !load_bytes(ctx, payload_off - 4, udp_len.as_mut_ptr(), 2) {
            return;
        }
        // The parser checked the length against the IP packet, so the datagram is all there.
        let payload_len = u32::from(u16::from_be_bytes(udp_len)).saturating_sub(UDP_HEADER);
        if payload_len == 0 {
            return;
        }
        let Some(mut entry) = EVIDENCE.reserve::<EvidenceFrame>(0) else {
            count(Counter::EvidenceDropped);
            return;
        };
        // Verifier: the helper's length must be known to lie in 1..=MAX. Checked on a value the
        // compiler cannot trace back to `payload_len` (it would move the check there, where the
        // verifier does not link it to the length passed).
        let copy = core::hint::black_box(payload_len.min(MAX_EVIDENCE_PAYLOAD as u32));
        if copy == 0 || copy > MAX_EVIDENCE_PAYLOAD as u32 {
            entry.discard(0);
            return;
        }
        let e = entry.as_mut_ptr();
        // SAFETY: `e` is the reserved slot, large enough for an `EvidenceFrame`; every header
        // field is written in place (a 1 KiB frame does not fit the 512-byte stack).
        let copied = unsafe {
            (*e).timestamp_ns = now;
            (*e).ifindex = ifindex;
            (*e).src = pkt.src;
            (*e).src_mac = pkt.src_mac;
            (*e).vlan = pkt.vlan;
            (*e).family = pkt.family;
            (*e).kind = kind as u8;
            (*e).len = copy as u16;
            (*e).udp_len = payload_len as u16;
            (*e)._pad = [0; 6];
            load_bytes(ctx, payload_off, (*e).payload.as_mut_ptr(), copy)
        };
        if copied {
            entry.submit(0);
            count(Counter::EvidenceSent);
        } else {
            entry.discard(0);
        }
    }
}
