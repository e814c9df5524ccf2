//! DNS-name destinations: for the sending device, an address its resolver answer bound to a name
//! rule is judged as `dns:NAME` before it is judged as what it otherwise is (a network, say).
//!
//! The resolver (userspace) writes `BINDINGS` before it relays an answer, so the first packet to
//! the address finds the binding. Nothing here learns anything from packets. Also here: DNS that
//! bypasses the resolver (`dns_bypass`), denied while the policy has a `dns:` section.

use enforcer_common::{
    Action, Decision, PROTO_TCP, PROTO_UDP, ROUTER_DEVICE,
    control::{CONFIG_F_NAMES, PolicyConfig},
    event::DenyReason,
    names::{BindingKey, NAMES_PER_BINDING, NAMES_SETTINGS, NameKey},
    rules::{PairKey, PortKey},
};
use enforcer_ebpf::out_of_line;

use crate::{
    maps::{BINDINGS, NAME_SCRATCH, NAMES, PAIRS, PORTS},
    parse::L4,
    policy::{Judgement, Tuple, decide},
};

/// `Dest::flags`: the verdict came from a name binding of the source (a flow it opens carries the
/// binding's deadline, `FlowValue::name_until_s`). Apart from the policy's `DST_F_*` bits.
pub const DST_F_NAME: u8 = 0x80;

const NS_PER_S: u64 = 1_000_000_000;

/// `maps::NAME_SCRATCH`'s entry.
pub struct NameScratch {
    key: BindingKey,
    deadline: u64,
}

/// Whether the name rules have no say on `j`: no `dns:` section (`None`), the router's own
/// packets, a quarantined sender, or a packet denied as spoofed or as no flow; else `dns.grace`.
#[inline(always)]
fn grace_for(cfg: &PolicyConfig, j: &Judgement) -> Option<u32> {
    // From the slot's settings, already read: not a `NAMES` lookup on every judged packet.
    if cfg.flags & CONFIG_F_NAMES == 0 {
        return None;
    }
    let grace_s = cfg.dns_grace_s;
    let quarantined = cfg.quarantine_class != 0 && j.src.class == cfg.quarantine_class;
    if j.src.device == ROUTER_DEVICE
        || quarantined
        || (!j.allow && matches!(j.reason, DenyReason::Spoofed | DenyReason::NoFlow))
    {
        return None;
    }
    Some(grace_s)
}

/// `j` judged by the name `decide_bound` found, if any.
#[inline(always)]
fn judge_bound(slot: u8, now: u64, t: &Tuple, j: &mut Judgement, grace_s: u32) {
    let d = decide_bound(slot, j.src.device, j.src.class, t, now, grace_s);
    if d.is_set() {
        j.allow = d.action() == Action::Allow;
        j.rule = d.rule;
        j.reason = DenyReason::Rule;
        j.dst.flags |= DST_F_NAME;
    }
}

/// The name rules' say on a new flow's judgement `j` (of tuple `t`), when the policy has a `dns:`
/// section: DNS past the resolver is denied as `dns_bypass`, and for its own sender an address
/// bound to a name is judged as that name first (`decide_bound`). Applied by the callers of
/// `policy::judge` rather than inside it: `judge` is at the bottom of the program's deepest call
/// chain, which has no stack left for another frame.
///
/// Without a `dns:` section nothing is called: every new flow and every denied packet comes here.
#[inline(always)]
pub fn apply(slot: u8, cfg: &PolicyConfig, now: u64, t: &Tuple, j: &mut Judgement) {
    if cfg.flags & CONFIG_F_NAMES != 0 {
        apply_names(slot, cfg, now, t, j);
    }
}

out_of_line! {
    /// [`apply`]'s work, in a frame of its own.
    fn apply_names(slot: u8, cfg: &PolicyConfig, now: u64, t: &Tuple, j: &mut Judgement) {
        let Some(grace_s) = grace_for(cfg, j) else {
            return;
        };
        if is_dns(t)
            && j.dst.class != cfg.router_class
            && !names_service(slot, j.src.class, j.dst.class, t)
        {
            j.allow = false;
            j.rule = enforcer_common::DEFAULT_RULE;
            j.reason = DenyReason::DnsBypass;
            return;
        }
        judge_bound(slot, now, t, j, grace_s);
    }
}

out_of_line! {
    /// [`apply`] for a remembered flow judged again: only the bindings (the flow passed the
    /// `dns_bypass` check when it began), in a smaller frame, since it runs below the flow
    /// lookup's.
    pub fn apply_again(slot: u8, cfg: &PolicyConfig, now: u64, t: &Tuple, j: &mut Judgement) {
        let Some(grace_s) = grace_for(cfg, j) else {
            return;
        };
        judge_bound(slot, now, t, j, grace_s);
    }
}

/// What the names `device` has bound to `t`'s destination decide for `t` (source class
/// `src_class`), with deny precedence across names; `Decision::NONE` when no live binding's name
/// has a rule for this service. A binding is live until its expiry, or for a flow judged again
/// (`t.again`) until its expiry plus `dns.grace`. When it allows, the latest deadline (expiry plus
/// grace) of the allowing names is left in `NAME_DEADLINE` for the flow entry.
#[inline(always)]
fn decide_bound(
    slot: u8,
    device: u32,
    src_class: u16,
    t: &Tuple,
    now: u64,
    grace_s: u32,
) -> Decision {
    let Some(scratch) = NAME_SCRATCH.get_ptr_mut(0) else {
        return Decision::NONE;
    };
    // SAFETY: this CPU's slot of a per-CPU map, used by nothing else during this run.
    let scratch = unsafe { &mut *scratch };
    // The key lives in the scratch map, not on the stack: this runs at the bottom of the
    // program's deepest call chain.
    scratch.key = BindingKey::new(device, t.family, t.dst);
    // SAFETY: the entry stays valid under RCU for this run; the resolver may rewrite it
    // concurrently, which at worst mixes an old and a new name entry.
    let Some(v) = (unsafe { BINDINGS.get(&scratch.key) }) else {
        return Decision::NONE;
    };
    let grace = u64::from(grace_s) * NS_PER_S;
    let extra = if t.again != 0 { grace } else { 0 };
    let mut best = Decision::NONE;
    let mut deadline = 0;
    for i in 0..NAMES_PER_BINDING {
        let b = &v.names[i];
        let (name, expires) = (b.name, b.expires_ns);
        if name == NAMES_SETTINGS || now >= expires + extra {
            continue;
        }
        // SAFETY: as in `settings`.
        let Some(entry) = (unsafe { NAMES.get(&NameKey::new(slot, name)) }) else {
            // A name of an earlier policy that this one no longer has.
            continue;
        };
        let d = decide(slot, src_class, entry.class, t);
        if d.action() == Action::Deny {
            return d;
        }
        if d.action() == Action::Allow {
            if !best.is_set() {
                best = d;
            }
            if expires + grace > deadline {
                deadline = expires + grace;
            }
        }
    }
    if best.is_set() {
        scratch.deadline = deadline;
    }
    best
}

/// The deadline [`decide_bound`] left for the flow it just allowed, in whole seconds rounded up
/// (`FlowValue::name_until_s`).
#[inline(always)]
pub fn last_deadline_s() -> u32 {
    let ns = NAME_SCRATCH.get(0).map_or(0, |s| s.deadline);
    // Truncation is impossible before 136 years of uptime; saturate rather than wrap anyway.
    u32::try_from(ns.div_ceil(NS_PER_S)).unwrap_or(u32::MAX)
}

/// Whether a flow whose name deadline is `until_s` (0: none) must be judged again at `now` (ns).
#[inline(always)]
pub fn flow_due(until_s: u32, now: u64) -> bool {
    until_s != 0 && now >= u64::from(until_s) * NS_PER_S
}

/// Whether `t` is DNS (udp/53, tcp/53, DNS over TLS on tcp/853).
#[inline(always)]
pub fn is_dns(t: &Tuple) -> bool {
    t.l4 == L4::Ports
        && match t.proto {
            PROTO_UDP => t.dport == 53,
            PROTO_TCP => t.dport == 53 || t.dport == 853,
            _ => false,
        }
}

out_of_line! {
    /// Whether a rule names `t`'s service (protocol and port) for this class pair: only such a
    /// rule lets DNS go past the resolver (`udp`, `tcp` or `any` alone do not).
    pub fn names_service(slot: u8, src_class: u16, dst_class: u16, t: &Tuple) -> bool {
        // SAFETY: as in `settings`.
        let Some(pair) = (unsafe { PAIRS.get(&PairKey::new(slot, src_class, dst_class)) }).copied()
        else {
            return false;
        };
        if pair.pair == 0 {
            return false;
        }
        // SAFETY: as in `settings`.
        unsafe { PORTS.get(&PortKey::new(slot, pair.pair, t.proto, t.dport)) }.is_some()
    }
}
