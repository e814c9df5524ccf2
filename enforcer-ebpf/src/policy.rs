//! The verdict for a new flow: identity, quarantine, then at most two exact-match lookups
//! (class pair, then port), with deny precedence already compiled in.

use enforcer_common::{
    Action, Decision, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, ROUTER_DEVICE,
    UNKNOWN_DEVICE,
    control::PolicyConfig,
    event::DenyReason,
    is_listed_device,
    rules::{PairKey, PortKey},
};

use crate::{
    identity::{Dest, Source, resolve_dest, resolve_source, src_flags},
    maps::{DEVICE_STATE, PAIRS, PORTS},
    parse::{L4, Packet},
};

/// A packet as the policy judges it: the direction of a (possibly new) flow.
pub struct Tuple {
    pub family: u8,
    pub proto: u8,
    pub l4: L4,
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub dport: u16,
    pub src_mac: [u8; 6],
    /// 1 when a remembered flow is judged again (a name binding then counts for its grace too,
    /// `names::decide_bound`); 0 for a new flow.
    pub again: u8,
}

impl From<&Packet> for Tuple {
    /// The packet as the first packet of its own flow, in its own direction.
    #[inline(always)]
    fn from(pkt: &Packet) -> Self {
        Self {
            family: pkt.family,
            proto: pkt.proto,
            l4: pkt.l4,
            src: pkt.src,
            dst: pkt.dst,
            dport: pkt.dport,
            src_mac: pkt.src_mac,
            again: 0,
        }
    }
}

pub struct Judgement {
    pub allow: bool,
    pub rule: u32,
    /// Why it was denied (meaningless when allowed).
    pub reason: DenyReason,
    pub src: Source,
    pub dst: Dest,
}

/// The router as the sender of its own packets: its own class and row, never spoofed, unknown or
/// quarantined (`ROUTER_DEVICE` is no listed device). From outside, the router's address is a
/// spoofing sign (`identity::resolve_source`); only the egress program, which sees the router's
/// own packets, and a flow the router started, judged again, vouch for it.
#[inline(always)]
fn router_source(cfg: &PolicyConfig) -> Source {
    Source {
        device: ROUTER_DEVICE,
        class: cfg.router_class,
        spoofed: false,
        flags: src_flags(false, cfg.mode == enforcer_common::Mode::Audit as u8),
    }
}

/// Whether a device is in quarantine now; `now` is the datapath's coarse monotonic clock (`main.rs`).
#[inline(always)]
pub fn is_quarantined(device: u32, now: u64) -> bool {
    if !is_listed_device(device) {
        return false;
    }
    DEVICE_STATE
        .get(device)
        .is_some_and(|s| s.quarantine_until_ns > now)
}

/// The compiled decision for a class pair and service, or `Decision::NONE`.
#[inline(always)]
pub fn decide(slot: u8, src_class: u16, dst_class: u16, t: &Tuple) -> Decision {
    // SAFETY: userspace never deletes a live slot's entries while packets can read them; the
    // values are copied out at once.
    let Some(pair) = (unsafe { PAIRS.get(&PairKey::new(slot, src_class, dst_class)) }).copied()
    else {
        return Decision::NONE;
    };
    match (t.proto, t.l4) {
        (PROTO_TCP | PROTO_UDP, L4::Ports) => {
            if pair.pair != 0 {
                let key = PortKey::new(slot, pair.pair, t.proto, t.dport);
                // SAFETY: as above.
                if let Some(d) = unsafe { PORTS.get(&key) } {
                    return *d;
                }
            }
            if t.proto == PROTO_TCP {
                pair.tcp
            } else {
                pair.udp
            }
        }
        (PROTO_ICMP | PROTO_ICMPV6, L4::EchoRequest) => pair.icmp,
        _ => pair.other,
    }
}

/// Judges `t` as the first packet of a flow.
///
/// Not inlined: it is called from two places (new packets, and flows re-judged after a policy
/// switch), and two inlined copies would not fit the 512-byte BPF stack. A `Judgement` does not
/// fit the one word an out-of-line function may return (`enforcer_ebpf::out_of_line`), so it goes
/// through `out`, and r0 holds whether it allowed.
#[inline(never)]
pub fn judge_into(slot: u8, cfg: &PolicyConfig, now: u64, t: &Tuple, out: &mut Judgement) -> u32 {
    *out = judge_inline(slot, cfg, now, t);
    u32::from(out.allow)
}

/// [`judge_into`] for the router's own packets: `t` judged with `router` as the source, whatever
/// its source address. Its own function (not a flag in `Tuple`), so the XDP program's frames do
/// not grow: its deepest call chain is at the 512-byte limit.
#[inline(never)]
pub fn judge_router_into(
    slot: u8,
    cfg: &PolicyConfig,
    now: u64,
    t: &Tuple,
    out: &mut Judgement,
) -> u32 {
    *out = judge_from(slot, cfg, now, t, router_source(cfg));
    u32::from(out.allow)
}

/// [`judge_router_into`] with a returned value, for callers.
#[inline(always)]
pub fn judge_router(slot: u8, cfg: &PolicyConfig, now: u64, t: &Tuple) -> Judgement {
    let mut j = unjudged();
    // Consumed, so the compiler cannot drop the return value (`enforcer_ebpf::out_of_line`).
    core::hint::black_box(judge_router_into(slot, cfg, now, t, &mut j));
    j
}

#[inline(always)]
fn unjudged() -> Judgement {
    Judgement {
        allow: false,
        rule: 0,
        reason: DenyReason::Default,
        src: Source {
            device: UNKNOWN_DEVICE,
            class: 0,
            spoofed: false,
            flags: src_flags(false, false),
        },
        dst: Dest {
            device: UNKNOWN_DEVICE,
            class: 0,
            flags: 0,
            mac: [0; 6],
        },
    }
}

/// [`judge_into`] into `out`: for callers that keep the judgement off their stack (in a scratch
/// map), and for [`judge`].
#[inline(always)]
pub fn judge_in(slot: u8, cfg: &PolicyConfig, now: u64, t: &Tuple, out: &mut Judgement) {
    // Consumed, so the compiler cannot drop the return value (`enforcer_ebpf::out_of_line`).
    core::hint::black_box(judge_into(slot, cfg, now, t, out));
}

/// [`judge_into`] with a returned value, for callers.
#[inline(always)]
pub fn judge(slot: u8, cfg: &PolicyConfig, now: u64, t: &Tuple) -> Judgement {
    let mut j = unjudged();
    judge_in(slot, cfg, now, t, &mut j);
    j
}

#[inline(always)]
fn judge_inline(slot: u8, cfg: &PolicyConfig, now: u64, t: &Tuple) -> Judgement {
    judge_from(
        slot,
        cfg,
        now,
        t,
        resolve_source(slot, cfg, t.family, &t.src, t.src_mac),
    )
}

/// The verdict for `t` from the sender `src`.
#[inline(always)]
fn judge_from(slot: u8, cfg: &PolicyConfig, now: u64, t: &Tuple, mut src: Source) -> Judgement {
    let mut dst = resolve_dest(slot, cfg, t.family, &t.dst);
    let quarantined = cfg.quarantine_class != 0 && is_quarantined(src.device, now);
    if quarantined {
        src.class = cfg.quarantine_class;
    }
    if cfg.quarantine_class != 0 && is_quarantined(dst.device, now) {
        dst.class = cfg.quarantine_class;
    }
    let deny = |rule, reason| Judgement {
        allow: false,
        rule,
        reason,
        src,
        dst,
    };
    if src.spoofed && cfg.spoofed != Action::Allow as u8 {
        return deny(enforcer_common::DEFAULT_RULE, DenyReason::Spoofed);
    }
    // An echo reply is never the start of a flow: without a remembered request it is forged.
    if t.l4 == L4::EchoReply || t.l4 == L4::Error {
        return deny(enforcer_common::DEFAULT_RULE, DenyReason::NoFlow);
    }
    let d = decide(slot, src.class, dst.class, t);
    let (d, from_rule) = if d.is_set() {
        (d, true)
    } else {
        (cfg.default, false)
    };
    if d.action() == Action::Allow {
        return Judgement {
            allow: true,
            rule: d.rule,
            reason: DenyReason::Default,
            src,
            dst,
        };
    }
    let reason = if quarantined {
        DenyReason::Quarantined
    } else if from_rule {
        DenyReason::Rule
    } else {
        DenyReason::Default
    };
    deny(d.rule, reason)
}
