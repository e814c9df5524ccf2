//! The enforcer's XDP program: for every packet entering an enforced interface, decide whether the
//! device that sent it may reach its destination.
//!
//! It reads like the packet: parse (`parse`), then identity (`identity`), then verdict (`policy`,
//! with connection state in `flow`), then accounting (`account`). The entry point turns each
//! outcome into exactly one XDP action and counts it; there is no blanket error arm, because for an
//! enforcer "malformed", "no policy" and "denied" are security decisions with their own counters.
#![no_std]
#![no_main]
#![expect(
    clippy::needless_borrows_for_generic_args,
    reason = "map keys go to the helpers by reference on purpose: by value they are copied onto the 512-byte stack first"
)]

mod account;
mod bench;
mod egress;
mod flow;
mod identity;
mod maps;
mod parse;
mod policy;
mod quarantine;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use enforcer_common::{
    Mode, Verdict,
    control::CONFIG_F_QUARANTINE_ON_SPOOF,
    event::DenyReason,
    identity::DST_F_TRIPWIRE,
    state::{DiscoveredDevice, QuarantineReason},
    stats::Counter,
};
use enforcer_ebpf as _;

use crate::{
    maps::{CONFIG, CONTROL, SCRATCH},
    parse::{Fragment, L4, Packet, Quoted, Reject},
    policy::{Tuple, judge},
};

/// Per-CPU working memory (see `maps::SCRATCH`).
pub struct Scratch {
    pkt: Packet,
    /// The packet as a new flow.
    tuple: Tuple,
    /// A remembered flow's original direction, when it is judged again.
    rejudge: Tuple,
    discovered: DiscoveredDevice,
    /// The packet an ICMP error quotes.
    quoted: Quoted,
}

/// What happened to an IP packet.
enum Outcome {
    /// Passed: allowed by a rule, a remembered flow or fragment, or a related ICMP error.
    Allowed,
    /// Denied and dropped.
    Denied,
    /// Denied, but passed because the policy is in audit mode.
    Audited,
    /// No policy loaded yet: dropped (fail closed).
    NoPolicy,
    /// A later fragment with no allowed first fragment: dropped.
    FragmentOrphan,
}

#[xdp]
pub fn enforcer_xdp(ctx: XdpContext) -> u32 {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        // Cannot happen (a one-entry array always has entry 0); fail closed if it ever does.
        return xdp_action::XDP_DROP;
    };
    // SAFETY: this CPU's slot of a per-CPU map, used by nothing else while this program runs here
    // (XDP runs with preemption and bottom halves disabled).
    let scratch = unsafe { &mut *scratch };
    match parse::parse(&ctx, &mut scratch.pkt) {
        Ok(()) => {}
        Err(Reject::Arp) => {
            account::count(Counter::ArpPassed);
            return xdp_action::XDP_PASS;
        }
        Err(Reject::NeighbourDiscovery) => {
            if identity::nd_for_this_link(&scratch.pkt.dst) != 0 {
                account::count(Counter::NdPassed);
                return xdp_action::XDP_PASS;
            }
            // Addressed beyond this link (another segment's unicast address): an ordinary
            // packet, judged as protocol 58 / `other` like any other, so it cannot cross zones.
        }
        Err(Reject::RogueRouter) => {
            account::count(Counter::RogueRaDropped);
            return xdp_action::XDP_DROP;
        }
        Err(Reject::NonIp) => {
            account::count(Counter::NonIpDropped);
            return xdp_action::XDP_DROP;
        }
        Err(Reject::Malformed(counter)) => {
            account::count(counter);
            return xdp_action::XDP_DROP;
        }
    };
    match enforce(&ctx, scratch) {
        Outcome::Allowed | Outcome::Audited => xdp_action::XDP_PASS,
        Outcome::Denied => xdp_action::XDP_DROP,
        Outcome::NoPolicy => {
            account::count(Counter::NoPolicy);
            xdp_action::XDP_DROP
        }
        Outcome::FragmentOrphan => {
            account::count(Counter::FragmentOrphan);
            xdp_action::XDP_DROP
        }
    }
}

#[inline(always)]
fn ifindex(ctx: &XdpContext) -> u32 {
    ctx.ingress_ifindex() as u32
}

/// CLOCK_MONOTONIC at tick resolution. Every timer here (flow and fragment timeouts, the one-second
/// event budget, quarantine windows and their end, last seen) is in milliseconds or more, and the
/// coarse clock is a memory read where the precise one reads the clock source: the difference is
/// most of a hash lookup on every packet in a VM. Same time base as userspace's CLOCK_MONOTONIC,
/// which writes quarantine deadlines.
#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: a helper without arguments, available to every program type since Linux 5.11.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_coarse_ns() }
}

#[inline(always)]
fn allowed(device: u32, rule: u32, pkt: &Packet, now: u64) -> Outcome {
    account::device(device, Verdict::Allow, pkt.len, false, now);
    account::rule(rule, pkt.len);
    Outcome::Allowed
}

#[inline(always)]
fn enforce(ctx: &XdpContext, scratch: &mut Scratch) -> Outcome {
    let Scratch {
        pkt,
        tuple: t,
        rejudge,
        discovered,
        quoted,
    } = scratch;
    let pkt = &*pkt;
    // One read of the live-policy word per packet: every lookup below uses this slot, so a packet
    // sees one policy whole even while userspace switches.
    let Some(control) = CONTROL.get(0) else {
        return Outcome::NoPolicy;
    };
    let epoch = control.epoch;
    let slot = control.slot();
    let Some(cfg) = CONFIG.get(u32::from(slot)) else {
        return Outcome::NoPolicy;
    };
    if cfg.generation == 0 {
        return Outcome::NoPolicy;
    }
    let now = now_ns();

    if pkt.frag == Fragment::Later {
        return match flow::later_fragment(pkt, cfg, slot, now) {
            Some(hit) => {
                account::count(Counter::FragmentPassed);
                allowed(hit.device, hit.rule, pkt, now)
            }
            None => Outcome::FragmentOrphan,
        };
    }
    if pkt.l4 == L4::Error
        && parse::parse_quoted(ctx, pkt, quoted)
        && let Some(hit) = flow::related(quoted, pkt, cfg, slot, now)
    {
        account::count(Counter::IcmpRelated);
        return allowed(hit.device, hit.rule, pkt, now);
    }
    if flow::is_stateful(pkt.l4)
        && let Some(hit) = flow::lookup(pkt, cfg, &flow::Clock { epoch, now }, rejudge)
    {
        account::count(Counter::FlowHit);
        if pkt.frag == Fragment::First {
            core::hint::black_box(flow::remember_fragment(pkt, hit.device, hit.rule, now));
        }
        return allowed(hit.device, hit.rule, pkt, now);
    }

    t.family = pkt.family;
    t.proto = pkt.proto;
    t.l4 = pkt.l4;
    t.src = pkt.src;
    t.dst = pkt.dst;
    t.dport = pkt.dport;
    t.src_mac = pkt.src_mac;
    let j = judge(slot, cfg, now, t);
    let device = j.src.device;
    if j.src.unknown {
        core::hint::black_box(account::discovered(ifindex(ctx), pkt, now, discovered));
    }
    if j.dst.flags & DST_F_TRIPWIRE != 0 {
        quarantine::trip(cfg, device, QuarantineReason::Tripwire, now);
    }
    if j.src.spoofed && cfg.flags & CONFIG_F_QUARANTINE_ON_SPOOF != 0 {
        quarantine::trip(cfg, device, QuarantineReason::Spoofing, now);
    }

    if j.allow {
        core::hint::black_box(flow::remember(pkt, &j, epoch, now));
        if pkt.frag == Fragment::First {
            core::hint::black_box(flow::remember_fragment(pkt, device, j.rule, now));
        }
        account::device(device, Verdict::Allow, pkt.len, j.src.spoofed, now);
        account::rule(j.rule, pkt.len);
        return Outcome::Allowed;
    }

    quarantine::on_denied(cfg, device, now);
    let audit = cfg.mode == Mode::Audit as u8;
    let verdict = if audit { Verdict::Audit } else { Verdict::Deny };
    account::device(device, verdict, pkt.len, j.src.spoofed, now);
    if matches!(
        j.reason,
        DenyReason::Rule | DenyReason::Default | DenyReason::Quarantined
    ) {
        account::rule(j.rule, pkt.len);
    }
    core::hint::black_box(account::deny_event(ifindex(ctx), pkt, &j, verdict, now));
    if audit {
        Outcome::Audited
    } else {
        Outcome::Denied
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never executed.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
