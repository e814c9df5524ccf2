//! The enforcer's XDP program: for every packet entering an enforced interface, decide whether the
//! device that sent it may reach its destination.
//!
//! It reads like the packet: parse (`parse`), then identity (`identity`), then verdict (`policy`,
//! with connection state in `flow`), then accounting (`account`). The entry point turns each
//! [`Outcome`] into exactly one XDP action and counts it, in one place; there is no blanket error
//! arm, because for an enforcer "malformed", "no policy" and "denied" are security decisions with
//! their own counters.
#![no_std]
#![no_main]
// `atomic_xadd` for the per-device flow counts (`flow::add_flow_count`); the program is built
// with nightly.
#![feature(core_intrinsics)]
#![expect(
    internal_features,
    reason = "the BPF target has atomic add but no compare-and-swap, so `core` offers no `fetch_add`"
)]
#![expect(
    clippy::needless_borrows_for_generic_args,
    reason = "map keys go to the helpers by reference on purpose: by value they are copied onto the 512-byte stack first"
)]

mod account;
mod bench;
mod egress;
mod evidence;
mod explain;
mod flow;
mod identity;
mod maps;
mod names;
mod parse;
mod policy;
mod quarantine;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use enforcer_common::{
    Verdict,
    control::CONFIG_F_QUARANTINE_ON_SPOOF,
    event::DenyReason,
    identity::DST_F_TRIPWIRE,
    state::{DiscoveredDevice, QuarantineReason},
    stats::Counter,
};
use enforcer_ebpf as _;

use crate::{
    flow::Hit,
    maps::{CONFIG, CONTROL, SCRATCH},
    parse::{Fragment, L4, Packet, Quoted, Reject},
    policy::Tuple,
};

/// Per-CPU working memory (see `maps::SCRATCH`).
pub struct Scratch {
    pkt: Packet,
    /// The packet as a new flow.
    tuple: Tuple,
    /// The judgement of the packet as a new flow. Here, not on the stack: the entry point's
    /// frame is part of the deepest call chain (through `flow::pickup`), at the 512-byte limit.
    judgement: policy::Judgement,
    /// A remembered flow's original direction, when it is judged again.
    rejudge: flow::Rejudge,
    discovered: DiscoveredDevice,
    /// The packet an ICMP error quotes.
    quoted: Quoted,
}

/// What happened to a frame. Each outcome is exactly one XDP action and at most one global
/// counter, both decided in [`Outcome::conclude`] and nowhere else; per-device and per-rule
/// statistics are accounted in `enforce`, where the device and the rule are known.
#[derive(Clone, Copy)]
enum Outcome {
    /// Not an IP packet to judge (see [`Reject`]); neighbour discovery only when for this link.
    Rejected(Reject),
    /// An ARP packet claiming an address for a MAC the policy does not bind it to: dropped.
    ArpSpoofed,
    /// Passed: the first packet of a flow, allowed by a rule.
    Allowed,
    /// Passed: a packet of a remembered flow.
    FlowHit,
    /// Passed: a later fragment behind an allowed first fragment.
    FragmentPassed,
    /// Passed: an ICMP error quoting a remembered flow.
    IcmpRelated,
    /// Passed: a TCP segment without SYN of no remembered flow, allowed as a reply (loose pickup).
    PickedUp,
    /// Allowed, but dropped: the flow could not be remembered (its device's quota, or a full
    /// table; the counter says which). Its replies would be denied, so it is refused whole.
    FlowRefused(Counter),
    /// Denied and dropped.
    Denied,
    /// Denied, but passed because the policy is in audit mode.
    Audited,
    /// No policy loaded yet: dropped (fail closed).
    NoPolicy,
    /// A later fragment with no allowed first fragment: dropped.
    FragmentOrphan,
}

impl Outcome {
    /// The XDP action for this outcome, after counting it.
    #[inline(always)]
    fn conclude(self) -> u32 {
        use xdp_action::{XDP_DROP, XDP_PASS};
        let (action, counter) = match self {
            Self::Rejected(Reject::Arp) => (XDP_PASS, Some(Counter::ArpPassed)),
            Self::ArpSpoofed => (XDP_DROP, Some(Counter::ArpSpoofed)),
            Self::Rejected(Reject::NeighbourDiscovery) => (XDP_PASS, Some(Counter::NdPassed)),
            Self::Rejected(Reject::RogueRouter) => (XDP_DROP, Some(Counter::RogueRaDropped)),
            Self::Rejected(Reject::NonIp) => (XDP_DROP, Some(Counter::NonIpDropped)),
            Self::Rejected(Reject::Malformed(counter)) => (XDP_DROP, Some(counter)),
            Self::Allowed | Self::Audited => (XDP_PASS, None),
            Self::FlowHit => (XDP_PASS, Some(Counter::FlowHit)),
            Self::FragmentPassed => (XDP_PASS, Some(Counter::FragmentPassed)),
            Self::IcmpRelated => (XDP_PASS, Some(Counter::IcmpRelated)),
            Self::PickedUp => (XDP_PASS, Some(Counter::TcpPickedUp)),
            Self::FlowRefused(counter) => (XDP_DROP, Some(counter)),
            Self::Denied => (XDP_DROP, None),
            Self::NoPolicy => (XDP_DROP, Some(Counter::NoPolicy)),
            Self::FragmentOrphan => (XDP_DROP, Some(Counter::FragmentOrphan)),
        };
        if let Some(counter) = counter {
            account::count(counter);
        }
        action
    }
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
    enforce(&ctx, scratch).conclude()
}

#[inline(always)]
fn ifindex(ctx: &XdpContext) -> u32 {
    ctx.ingress_ifindex() as u32
}

/// This CPU's last reading of the coarse clock (`maps::CLOCK`).
pub struct TickClock {
    /// `jiffies_64` when `ns` was read; 0 before the first reading (jiffies start near 2^32).
    jiffies: u64,
    ns: u64,
}

/// CLOCK_MONOTONIC at tick resolution. Every timer here (flow and fragment timeouts, the one-second
/// event budget, quarantine windows and their end, last seen) is in milliseconds or more, and the
/// coarse clock is a memory read where the precise one reads the clock source: the difference is
/// most of a hash lookup on every packet in a VM. Same time base as userspace's CLOCK_MONOTONIC,
/// which writes quarantine deadlines.
///
/// The coarse clock moves only when the tick moves `jiffies_64` too (`tick_do_update_jiffies64`
/// bumps jiffies, then advances timekeeping), so it is read once per jiffy on each CPU and kept.
/// `bpf_jiffies64` the verifier turns into one load, where `bpf_ktime_get_coarse_ns` is a call
/// (and a return through the return thunk): on the allowed reply path that call was about a tenth
/// of the program. A reading taken between the two updates lags by a tick until the next jiffy,
/// as one after a time set or a clock source switch can: a tick or two, where the shortest timer
/// here (the one-second event budget) is a second.
#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: helpers without arguments: `bpf_jiffies64` since Linux 5.5, the coarse clock since
    // 5.11.
    let jiffies = unsafe { aya_ebpf::helpers::bpf_jiffies64() };
    let Some(clock) = maps::CLOCK.get_ptr_mut(0) else {
        // SAFETY: as above.
        return unsafe { aya_ebpf::helpers::bpf_ktime_get_coarse_ns() };
    };
    // SAFETY: this CPU's slot. Programs run to completion on a CPU with bottom halves off, so no
    // other program writes it meanwhile.
    let clock = unsafe { &mut *clock };
    if clock.jiffies != jiffies {
        clock.jiffies = jiffies;
        // SAFETY: as above.
        clock.ns = unsafe { aya_ebpf::helpers::bpf_ktime_get_coarse_ns() };
    }
    clock.ns
}

/// The epoch that judges a packet now (`Control::epoch_at`): with nothing pending, one compare
/// on the entry already read; the clock is read only while a provisional policy is pending (and
/// so is not held across the policy lookups, where the 512-byte stack has no room for it).
#[inline(always)]
fn live_epoch(control: &enforcer_common::control::Control) -> u64 {
    if control.revert_at_ns == 0 {
        control.epoch
    } else {
        control.epoch_at(now_ns())
    }
}

/// The policy slot that judges a packet now: [`live_epoch`]'s.
#[inline(always)]
fn live_slot(control: &enforcer_common::control::Control) -> u8 {
    enforcer_common::control::slot_of(live_epoch(control))
}

/// Accounts a packet that passed on connection state (`how`) to its device and rule.
#[inline(always)]
fn passed(how: Outcome, hit: &Hit, pkt: &Packet, now: u64) -> Outcome {
    let verdict = if hit.audit {
        Verdict::Audit
    } else {
        Verdict::Allow
    };
    account::device(hit.device, verdict, pkt.len, false, now);
    account::rule(hit.rule, pkt.len);
    how
}

/// Parses the frame and decides what happens to it.
#[inline(always)]
fn enforce(ctx: &XdpContext, scratch: &mut Scratch) -> Outcome {
    match parse::parse(ctx, &mut scratch.pkt) {
        Ok(()) => {}
        // Addressed beyond this link (another segment's unicast address): an ordinary packet,
        // judged as protocol 58 / `other` like any other, so it cannot cross zones.
        Err(Reject::NeighbourDiscovery) if !identity::nd_for_this_link(&scratch.pkt.dst) => {}
        Err(Reject::Arp) if identity::arp_spoofed(&scratch.pkt) => return Outcome::ArpSpoofed,
        Err(reject) => return Outcome::Rejected(reject),
    }
    // Evidence is copied whatever the verdict will be, and changes nothing about it.
    if evidence::is_candidate(&scratch.pkt) {
        evidence::capture(ctx, &scratch.pkt, ifindex(ctx));
    }
    let Scratch {
        pkt,
        tuple: t,
        judgement: j,
        rejudge,
        discovered,
        quoted,
    } = scratch;
    let pkt = &*pkt;
    // One read of the live-policy word per packet: every lookup below uses this slot, so a packet
    // sees one policy whole even while userspace switches. Past a provisional policy's deadline
    // the epoch, and with it the slot, is the last confirmed policy's (`Control::epoch_at`).
    let Some(control) = CONTROL.get(0) else {
        return Outcome::NoPolicy;
    };
    let epoch = live_epoch(control);
    let slot = enforcer_common::control::slot_of(epoch);
    let Some(cfg) = CONFIG.get(u32::from(slot)) else {
        return Outcome::NoPolicy;
    };
    if cfg.generation == 0 {
        return Outcome::NoPolicy;
    }
    let now = now_ns();

    if pkt.frag == Fragment::Later {
        return match flow::later_fragment(pkt, cfg, slot, now) {
            Some(hit) => passed(Outcome::FragmentPassed, &hit, pkt, now),
            None => Outcome::FragmentOrphan,
        };
    }
    if pkt.l4 == L4::Error
        && parse::parse_quoted(ctx, pkt, quoted)
        && let Some(hit) = flow::related(quoted, pkt, cfg, slot, now)
    {
        return passed(Outcome::IcmpRelated, &hit, pkt, now);
    }
    if flow::is_stateful(pkt.l4)
        && let Some(hit) = flow::lookup(pkt, cfg, &flow::Clock { epoch, now }, rejudge)
    {
        if pkt.frag == Fragment::First {
            flow::remember_fragment(pkt, hit.device, hit.rule, now);
        }
        return passed(Outcome::FlowHit, &hit, pkt, now);
    }

    *t = Tuple::from(pkt);
    policy::judge_in(slot, cfg, now, t, j);
    names::apply(slot, cfg, now, t, j);
    let device = j.src.device;
    if j.src.unknown() {
        account::discovered(ifindex(ctx), pkt, now, discovered);
    }
    if j.dst.flags & DST_F_TRIPWIRE != 0 {
        quarantine::trip(
            cfg,
            device,
            QuarantineReason::Tripwire,
            ifindex(ctx),
            pkt,
            now,
        );
    }
    if j.src.spoofed && cfg.flags & CONFIG_F_QUARANTINE_ON_SPOOF != 0 {
        quarantine::trip(
            cfg,
            device,
            QuarantineReason::Spoofing,
            ifindex(ctx),
            pkt,
            now,
        );
    }

    if j.allow {
        if let Some(refused) = flow::remember(pkt, j, cfg, epoch, now).refusal() {
            account::device(device, Verdict::Deny, pkt.len, j.src.spoofed, now);
            return Outcome::FlowRefused(refused);
        }
        if pkt.frag == Fragment::First {
            flow::remember_fragment(pkt, device, j.rule, now);
        }
        account::device(device, Verdict::Allow, pkt.len, j.src.spoofed, now);
        account::rule(j.rule, pkt.len);
        return Outcome::Allowed;
    }

    if flow::may_pick_up(pkt, j) {
        match flow::pickup(pkt, cfg, &flow::Clock { epoch, now }, j, rejudge) {
            flow::Pickup::Passed(hit) => {
                if pkt.frag == Fragment::First {
                    flow::remember_fragment(pkt, hit.device, hit.rule, now);
                }
                return passed(Outcome::PickedUp, &hit, pkt, now);
            }
            flow::Pickup::Refused(refused) => {
                account::device(device, Verdict::Deny, pkt.len, j.src.spoofed, now);
                return Outcome::FlowRefused(refused.refusal().unwrap_or(Counter::FlowTableFull));
            }
            flow::Pickup::NoFlow => j.reason = DenyReason::NoFlow,
        }
    }

    // A packet that continues no flow is no probe of the policy (a reply whose flow was lost, or
    // a late segment): it never counts towards its sender's quarantine window. Nor does anything
    // a source in audit sends: audit is for learning what it needs.
    let audit = j.src.audit();
    if j.reason == DenyReason::NoFlow {
        account::count(Counter::NoFlow);
    } else {
        if j.reason == DenyReason::DnsBypass {
            account::count(Counter::DnsBypass);
        }
        if !audit {
            quarantine::on_denied(cfg, device, ifindex(ctx), pkt, now);
        }
    }
    // A denied new flow from a source in audit is remembered as such (`FLOW_F_AUDIT`), so its
    // replies pass and the observer sees it; one the table cannot hold still passes.
    if flow::audits(j) {
        let _ = flow::remember(pkt, j, cfg, epoch, now);
    }
    let verdict = if audit { Verdict::Audit } else { Verdict::Deny };
    account::device(device, verdict, pkt.len, j.src.spoofed, now);
    if matches!(
        j.reason,
        DenyReason::Rule | DenyReason::Default | DenyReason::Quarantined
    ) {
        account::rule(j.rule, pkt.len);
    }
    account::deny_event(ifindex(ctx), pkt, j, verdict, now);
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
