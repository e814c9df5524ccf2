//! Connection state: the flow table (replies of allowed flows pass) and the fragment table (later
//! fragments of an allowed first fragment pass).
//!
//! A flow entry is only ever created after the policy allowed a packet, so a miss or an expiry can
//! only make a packet be judged again: the tables fail closed.
//!
//! The flow table evicts nothing. Each flow counts against the quota of the device that started
//! it (`FLOW_COUNT`, `PolicyConfig::flows_per_device`); a device over its quota has its new flows
//! refused, so it cannot push out anyone's flows, its own included. Expired flows leave through a
//! sweep in the program itself: every new flow looks at the next few slots of a ring of flow keys
//! (`FLOW_RING`, in insertion order, so the oldest flows first) and removes the expired ones it
//! finds there, taking a free slot for itself. Counts move only with a successful insert or
//! delete, so they do not drift.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use enforcer_common::{
    Action, PROTO_TCP,
    control::{PolicyConfig, slot_of},
    event::DenyReason,
    flow::{
        DEFAULT_FLOWS, FLOW_CLOSING, FLOW_F_AUDIT, FLOW_FIN_INIT, FLOW_FIN_RESP, FLOW_SWEEP_PROBES,
        FRAG_TIMEOUT_NS, FlowKey, FlowValue, FragKey, FragValue, flow_timeout_ns,
    },
    identity::{MAC_F_ANY_ADDR, MacKey},
    stats::Counter,
};
pub use enforcer_ebpf::hit::Hit;
use enforcer_ebpf::{out_of_line, out_of_line::InRegister};

use crate::{
    account,
    maps::{FLOW_COUNT, FLOW_RING, FLOW_SWEEP, FLOWS, FRAGS, MACS},
    parse::{L4, Packet, Quoted, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    policy::{Judgement, Tuple, judge_in, judge_router_into},
};

/// `BPF_NOEXIST`: an insert that never replaces an entry (the count of its owner would drift).
const BPF_NOEXIST: u64 = 1;

/// The flow table's capacity (`FLOWS` and `FLOW_RING` entries), set by the loader
/// (`enforcer_common::flow::FLOW_CAPACITY_GLOBAL`) to the `max_entries` it gives both maps.
#[unsafe(no_mangle)]
static FLOW_CAPACITY: u32 = DEFAULT_FLOWS;

/// The capacity, read at run time (the compiler must not fold in the object's default).
#[inline(always)]
fn flow_capacity() -> u32 {
    // SAFETY: a plain read of a constant the loader wrote before the program was loaded.
    unsafe { core::ptr::read_volatile(&raw const FLOW_CAPACITY) }
}

/// Whether a flow was remembered, or why not.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Remembered {
    Yes,
    /// Its owner holds its quota of flows already.
    QuotaExceeded,
    /// No free place in the table (near the sweep).
    TableFull,
}

impl Remembered {
    /// The counter of a refusal.
    #[inline(always)]
    pub fn refusal(self) -> Option<Counter> {
        match self {
            Self::Yes => None,
            Self::QuotaExceeded => Some(Counter::FlowQuotaExceeded),
            Self::TableFull => Some(Counter::FlowTableFull),
        }
    }
}

impl InRegister for Remembered {
    #[inline(always)]
    fn into_word(self) -> u64 {
        match self {
            Self::Yes => 0,
            Self::QuotaExceeded => 1,
            Self::TableFull => 2,
        }
    }

    #[inline(always)]
    fn from_word(word: u64) -> Self {
        match word {
            0 => Self::Yes,
            1 => Self::QuotaExceeded,
            _ => Self::TableFull,
        }
    }
}

/// What loose pickup decided for a TCP segment without SYN that found no flow.
#[derive(Clone, Copy)]
pub enum Pickup {
    /// Neither direction is allowed: denied as `no_flow`.
    NoFlow,
    /// Allowed as a reply; the flow is remembered again.
    Passed(Hit),
    /// Allowed as a reply, but the flow could not be remembered.
    Refused(Remembered),
}

impl InRegister for Pickup {
    #[inline(always)]
    fn into_word(self) -> u64 {
        match self {
            Self::NoFlow => 0,
            // A hit's word has its top bit set (`Hit`); a refusal's is small and non-zero.
            Self::Passed(hit) => Some(hit).into_word(),
            Self::Refused(r) => 1 + r.into_word(),
        }
    }

    #[inline(always)]
    fn from_word(word: u64) -> Self {
        if word == 0 {
            return Self::NoFlow;
        }
        match Option::<Hit>::from_word(word) {
            Some(hit) => Self::Passed(hit),
            None => Self::Refused(Remembered::from_word(word - 1)),
        }
    }
}

/// The per-packet constants: the epoch read once from `CONTROL`, and the time.
#[derive(Clone, Copy)]
pub struct Clock {
    pub epoch: u64,
    pub now: u64,
}

#[inline(always)]
fn is_stale(v: &FlowValue, proto: u8, now: u64) -> bool {
    now.saturating_sub(v.last_seen_ns) > flow_timeout_ns(proto, v.tcp_state)
}

/// Adds `delta` (wrapping: -1 is `u64::MAX`) to `device`'s live-flow count, atomically: inserts
/// and removals of one device's flows run on any CPU. Through the intrinsic: the BPF target has
/// atomic add (`lock xadd`) but no compare-and-swap, so `core` offers no `fetch_add` for it.
#[inline(always)]
fn add_flow_count(device: u32, delta: u64) {
    if let Some(c) = FLOW_COUNT.get_ptr_mut(device) {
        // SAFETY: a valid, aligned array slot for this run; every access to it is atomic.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(c, delta) };
    }
}

/// Removes an expired flow and releases its place in its owner's quota. Only the CPU whose delete
/// succeeds releases it, so two CPUs finding the same stale entry count it once.
#[inline(always)]
fn expire(key: &FlowKey, owner: u32) {
    if FLOWS.remove(key).is_ok() {
        add_flow_count(owner, u64::MAX);
        account::count(Counter::FlowExpired);
    }
}

/// A free `FLOW_RING` slot for a new flow: the sweep looks at the next [`FLOW_SWEEP_PROBES`] slots,
/// removes the expired flows it finds there and stops at the first slot no live flow holds.
///
/// Two CPUs may race for one slot; the loser's flow is then not in the ring, and leaves the table
/// only when a packet finds it expired (or a new flow with its key replaces it).
#[inline(always)]
fn free_slot(now: u64) -> Option<u32> {
    let cursor = FLOW_SWEEP.get_ptr_mut(0)?;
    // SAFETY: a valid array slot; racing CPUs at worst look at the same slots.
    let mut next = unsafe { *cursor };
    let capacity = flow_capacity();
    let mut found = None;
    for _ in 0..FLOW_SWEEP_PROBES {
        // The ring ends where the table does; the cursor never passes it.
        let slot = if next >= capacity { 0 } else { next };
        next = slot + 1;
        let Some(key) = FLOW_RING.get(slot) else {
            break;
        };
        // SAFETY: the value is copied out at once.
        let free = match unsafe { FLOWS.get(key) }.copied() {
            None => true,
            // The key moved on to another slot (it expired and came back).
            Some(v) if v.ring != slot => true,
            Some(v) if is_stale(&v, key.proto, now) => {
                expire(key, v.owner);
                true
            }
            Some(_) => false,
        };
        if free {
            found = Some(slot);
            break;
        }
    }
    // SAFETY: as above.
    unsafe { *cursor = next };
    found
}

out_of_line! {
    /// Stores a flow the policy allowed, within the quota of its owner (`value.owner`).
    ///
    /// A live entry with the same key is updated in place, keeping its owner and slot (a flow
    /// judged again from its other end); an expired one is removed first.
    fn store(key: &FlowKey, value: &mut FlowValue, cfg: &PolicyConfig, now: u64) -> Remembered {
        if let Some(v) = FLOWS.get_ptr_mut(key) {
            // SAFETY: valid under RCU for this run; concurrent refreshes race harmlessly.
            let v = unsafe { &mut *v };
            if !is_stale(v, key.proto, now) {
                let (owner, ring) = (v.owner, v.ring);
                let (first_seen_ns, bytes, packets) = (v.first_seen_ns, v.bytes, v.packets);
                *v = *value;
                v.owner = owner;
                v.ring = ring;
                v.first_seen_ns = first_seen_ns;
                v.bytes = bytes.wrapping_add(value.bytes);
                v.packets = packets.wrapping_add(value.packets);
                return Remembered::Yes;
            }
            let owner = v.owner;
            expire(key, owner);
        }
        // The sweep runs first, also for a device over its quota: its own expired flows are
        // what frees its quota.
        let slot = free_slot(now);
        let limit = cfg.flows_per_device;
        if limit != 0 {
            let Some(count) = FLOW_COUNT.get_ptr_mut(value.owner) else {
                return Remembered::QuotaExceeded;
            };
            // SAFETY: a valid, aligned array slot; an aligned 8-byte load is one instruction, and
            // volatile keeps it one (the BPF target has no atomic load in `core`).
            if unsafe { core::ptr::read_volatile(count) } >= u64::from(limit) {
                return Remembered::QuotaExceeded;
            }
        }
        let Some(slot) = slot else {
            return Remembered::TableFull;
        };
        // In the caller's value, not a copy: the 512-byte stack has no room for a second one.
        value.ring = slot;
        let v = &*value;
        if FLOWS.insert(key, v, BPF_NOEXIST).is_err() {
            // The table is at capacity, or another CPU inserted the same key just now.
            return Remembered::TableFull;
        }
        add_flow_count(v.owner, 1);
        if let Some(r) = FLOW_RING.get_ptr_mut(slot) {
            // SAFETY: a valid array slot; a racing writer of the same slot is described at
            // `free_slot`.
            unsafe { *r = *key };
        }
        Remembered::Yes
    }
}

/// The device that speaks for one end of flow `v` (the initiator's end when `initiator` holds),
/// when a packet from `mac` may: the MAC the policy binds to that end, or, where it binds none,
/// any MAC not listed for another device ([`impersonates`]). `None` refuses the packet.
#[inline(always)]
fn speaker(
    v: &FlowValue,
    initiator: bool,
    mac: [u8; 6],
    slot: u8,
    cfg: &PolicyConfig,
) -> Option<u32> {
    let (want_mac, device) = if initiator {
        (v.init_mac, v.init_device)
    } else {
        (v.resp_mac, v.resp_device)
    };
    if want_mac != [0; 6] && want_mac != mac {
        return None;
    }
    if want_mac == [0; 6] && impersonates(slot, cfg, mac, device) {
        return None;
    }
    Some(device)
}

/// Whether `mac` belongs to a listed device, other than `owner`, that is bound to its own
/// addresses. Such a device sending from an address it does not own is spoofing (`identity`); the
/// fast paths below (remembered flows, related ICMP errors, later fragments) do not resolve the
/// sender, so without this a device could speak through another endpoint's open flow in that
/// endpoint's name, e.g. a camera answering for an internet server to the office. One exact
/// lookup, only where the endpoint is not itself bound to a MAC. `defaults.spoofed: allow` turns
/// it off, as it turns off the spoofing verdict.
#[inline(always)]
fn impersonates(slot: u8, cfg: &PolicyConfig, mac: [u8; 6], owner: u32) -> bool {
    if cfg.spoofed == Action::Allow as u8 {
        return false;
    }
    // SAFETY: userspace never deletes a live slot's entries while packets can read them; the
    // fields are read at once.
    match unsafe { MACS.get(&MacKey::new(slot, mac)) } {
        Some(m) => m.device != owner && m.flags & MAC_F_ANY_ADDR == 0,
        None => false,
    }
}

/// A TCP segment with SYN, FIN or RST on a live flow `v`; false when it is no part of the flow
/// (the caller judges it as a new flow).
///
/// - SYN without ACK opens a connection. From the responder it is a connection back, a new flow
///   its sender's policy decides; from the initiator on a closed flow it reuses the 4-tuple, and
///   the policy decides again (allowed, the new flow replaces the closed one). A repeated SYN on
///   an open flow (a retransmission) is part of it.
/// - RST from either end, or FIN from both, closes the flow: it then expires
///   [`enforcer_common::flow::FLOW_TIMEOUT_CLOSING_NS`] from now, not after the idle timeout, and its packets no longer
///   extend it (`FlowValue::last_seen_ns`).
#[inline(always)]
fn tcp_control(v: &mut FlowValue, from_initiator: bool, flags: u8, now: u64) -> bool {
    if flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        return from_initiator && v.tcp_state & FLOW_CLOSING == 0;
    }
    let mut state = v.tcp_state;
    if flags & TCP_FIN != 0 {
        state |= if from_initiator {
            FLOW_FIN_INIT
        } else {
            FLOW_FIN_RESP
        };
    }
    if flags & TCP_RST != 0
        || state & (FLOW_FIN_INIT | FLOW_FIN_RESP) == FLOW_FIN_INIT | FLOW_FIN_RESP
    {
        state |= FLOW_CLOSING;
    }
    if state & FLOW_CLOSING != 0 && v.tcp_state & FLOW_CLOSING == 0 {
        // The closing timeout counts from the close.
        v.last_seen_ns = now;
    }
    v.tcp_state = state;
    true
}

/// A new flow's value: judged `j`, its initiator sending from `init_mac` on the key's `lo` side
/// when `init_is_lo`, its first packet `len` bytes; it counts against the initiator's quota.
#[inline(always)]
fn new_flow(
    j: &Judgement,
    init_mac: [u8; 6],
    init_is_lo: bool,
    len: u32,
    clock: &Clock,
) -> FlowValue {
    FlowValue {
        epoch: clock.epoch,
        last_seen_ns: clock.now,
        rule: j.rule,
        init_device: j.src.device,
        resp_device: j.dst.device,
        init_mac,
        resp_mac: j.dst.mac,
        init_is_lo: u8::from(init_is_lo),
        tcp_state: 0,
        _pad: [0; 2],
        owner: j.src.device,
        ring: 0,
        name_until_s: name_deadline(j),
        first_seen_ns: clock.now,
        bytes: u64::from(len),
        packets: 1,
        observed: if j.allow { 0 } else { FLOW_F_AUDIT },
    }
}

/// The deadline of a flow `j` allowed (`FlowValue::name_until_s`, whole seconds rounded up): 0
/// unless a name binding allowed it.
#[inline(always)]
fn name_deadline(j: &Judgement) -> u32 {
    if j.dst.flags & crate::names::DST_F_NAME != 0 {
        crate::names::last_deadline_s()
    } else {
        0
    }
}

/// Per-CPU working memory (in the program's scratch map, not on the 512-byte stack) for a flow
/// judged again: the key looked up, its original direction and the judgement on it; and for
/// loose pickup, the reply's judgement and the flow value it stores.
pub struct Rejudge {
    /// The key [`lookup`] looks for: here, not in the entry frame, which `lookup` is inlined into
    /// and which is part of the deepest call chain (through loose pickup).
    pub key: FlowKey,
    pub tuple: Tuple,
    pub judgement: Judgement,
    pub flow: FlowValue,
}

/// Whether a packet of this kind can start or continue a flow.
#[inline(always)]
pub fn is_stateful(l4: L4) -> bool {
    matches!(l4, L4::Ports | L4::EchoRequest | L4::EchoReply)
}

/// Looks the packet up in the flow table.
///
/// A hit needs a fresh entry and, where the policy binds one, the MAC the sender must use. An
/// entry made under an older epoch (the policy or a quarantine changed since) is judged again in
/// its original direction ([`judged_again`]): still allowed, it is refreshed and the packet passes;
/// no longer allowed, the packet is judged as the start of a new flow by the caller.
///
/// Inline: this is every reply's path, and a call (with its return through the return thunk) and
/// the result packed into a word cost an allowed reply more than its checks. Judging again, rare and
/// deep, stays out of line (`out_of_line!`), so the program's deepest call chain keeps within the
/// 512-byte BPF stack.
#[inline(always)]
pub fn lookup(pkt: &Packet, cfg: &PolicyConfig, clock: &Clock, work: &mut Rejudge) -> Option<Hit> {
    let Clock { epoch, now } = *clock;
    let slot = slot_of(epoch);
    let src_is_lo = work.key.set_canonical(
        pkt.family, pkt.proto, &pkt.src, pkt.sport, &pkt.dst, pkt.dport,
    );
    let key = &work.key;
    let entry = FLOWS.get_ptr_mut(key)?;
    // SAFETY: the pointer comes from a successful lookup and stays valid under RCU for this run;
    // concurrent writers on other CPUs only race on refresh fields, which is harmless.
    let v = unsafe { &mut *entry };
    if is_stale(v, pkt.proto, now) {
        let owner = v.owner;
        expire(key, owner);
        return None;
    }
    let from_initiator = src_is_lo == (v.init_is_lo != 0);
    // Both directions of a ping share one key (the identifier is both "ports"), but only the
    // initiator asks and only the responder answers: a request back along the flow is a new ping
    // the policy must allow on its own, and a "reply" from the initiator is forged.
    if (pkt.l4 == L4::EchoRequest && !from_initiator) || (pkt.l4 == L4::EchoReply && from_initiator)
    {
        return None;
    }
    speaker(v, from_initiator, pkt.src_mac, slot, cfg)?;
    if pkt.tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0
        && !tcp_control(v, from_initiator, pkt.tcp_flags, now)
    {
        return None;
    }
    // A flow a name binding allowed is judged again at the binding's deadline: it goes on only if
    // the binding was renewed (or another rule allows it).
    if v.epoch != epoch || crate::names::flow_due(v.name_until_s, now) {
        let (init, resp, resp_port) = if v.init_is_lo != 0 {
            (key.lo_addr, key.hi_addr, key.hi_port)
        } else {
            (key.hi_addr, key.lo_addr, key.lo_port)
        };
        let t = &mut work.tuple;
        t.family = pkt.family;
        t.proto = pkt.proto;
        t.l4 = if pkt.l4 == L4::Ports {
            L4::Ports
        } else {
            L4::EchoRequest
        };
        t.src = init;
        t.dst = resp;
        t.dport = resp_port;
        t.src_mac = v.init_mac;
        t.again = 1;
        if !judged_again(v, cfg, epoch, now, work) {
            return None;
        }
    }
    // A closing flow keeps the expiry its close set.
    if v.tcp_state & FLOW_CLOSING == 0 {
        v.last_seen_ns = now;
    }
    v.packets = v.packets.wrapping_add(1);
    v.bytes = v.bytes.wrapping_add(u64::from(pkt.len));
    Some(Hit {
        device: if from_initiator {
            v.init_device
        } else {
            v.resp_device
        },
        rule: v.rule,
        // Only the audited initiator's own packets are its audit; the replies are the
        // responder's, which its mode does not touch.
        audit: from_initiator && v.observed & FLOW_F_AUDIT != 0,
    })
}

out_of_line! {
    /// Judges flow `v` again in its original direction (`work.tuple`, which the caller fills)
    /// under `epoch`; whether it goes on. Going on, its entry takes the new judgement's rule,
    /// devices and name deadline.
    fn judged_again(
        v: &mut FlowValue,
        cfg: &PolicyConfig,
        epoch: u64,
        now: u64,
        work: &mut Rejudge,
    ) -> bool {
        let slot = slot_of(epoch);
        let Rejudge {
            tuple: t,
            judgement: j,
            ..
        } = work;
        // A flow the router started is the router's again, not a packet forging its address. The
        // judgement is written to the scratch map, not this frame: with the name rules' frame
        // below it, this is the program's deepest call chain.
        if v.init_device == enforcer_common::ROUTER_DEVICE {
            core::hint::black_box(judge_router_into(slot, cfg, now, t, j));
        } else {
            judge_in(slot, cfg, now, t, j);
            crate::names::apply_again(slot, cfg, now, t, j);
        }
        let j = &*j;
        if !j.allow && !audits(j) {
            return false;
        }
        v.observed = if j.allow {
            v.observed & !FLOW_F_AUDIT
        } else {
            v.observed | FLOW_F_AUDIT
        };
        v.epoch = epoch;
        v.rule = j.rule;
        v.init_device = j.src.device;
        v.resp_device = j.dst.device;
        v.resp_mac = j.dst.mac;
        v.name_until_s = name_deadline(j);
        true
    }
}

out_of_line! {
    /// Remembers a flow the policy just allowed (or denied, from a source in audit: [`audits`]),
    /// so its replies pass; says why not when it cannot (the caller then refuses the flow).
    pub fn remember(
        pkt: &Packet,
        j: &Judgement,
        cfg: &PolicyConfig,
        epoch: u64,
        now: u64,
    ) -> Remembered {
        if !matches!(pkt.l4, L4::Ports | L4::EchoRequest) {
            return Remembered::Yes;
        }
        let (key, src_is_lo) = FlowKey::canonical(
            pkt.family, pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport,
        );
        let mut value = new_flow(j, pkt.src_mac, src_is_lo, pkt.len, &Clock { epoch, now });
        store(&key, &mut value, cfg, now)
    }
}

/// Whether a denied new flow passes as `audit` and is remembered: its source is in audit (`mode:
/// audit`) and a rule or the default denied it (not a packet that continues no flow, nor a
/// spoofed or quarantined sender, which pass in audit but start nothing).
#[inline(always)]
pub fn audits(j: &Judgement) -> bool {
    j.src.audit() && matches!(j.reason, DenyReason::Rule | DenyReason::Default)
}

/// Whether a packet the policy denied as a new flow may be judged as a reply (loose pickup): a TCP
/// segment without SYN, denied by a rule or the default (not for spoofing or quarantine, and not
/// a fragment continuing something else).
#[inline(always)]
pub fn may_pick_up(pkt: &Packet, j: &Judgement) -> bool {
    pkt.proto == PROTO_TCP
        && pkt.l4 == L4::Ports
        && pkt.tcp_flags & TCP_SYN == 0
        && matches!(j.reason, DenyReason::Rule | DenyReason::Default)
}

out_of_line! {
    /// Loose pickup: a TCP segment without SYN of no remembered flow, which the policy denied as
    /// a new flow (`fwd`), judged as a reply: its reverse direction as a new flow. Allowed, the
    /// flow is remembered again in that direction (within the initiator's quota) and the segment
    /// passes, so a connection open before the program was attached, or whose entry was lost,
    /// keeps working. `work` is working memory for the reverse tuple and the new flow's value.
    ///
    /// The initiator (the segment's destination) is judged from the MAC the policy binds to that
    /// address, if any (`fwd.dst.mac`), and later packets of the flow must come from it.
    pub fn pickup(
        pkt: &Packet,
        cfg: &PolicyConfig,
        clock: &Clock,
        fwd: &Judgement,
        work: &mut Rejudge,
    ) -> Pickup {
        let Clock { epoch, now } = *clock;
        let Rejudge {
            tuple: t,
            judgement: j,
            flow: value,
            ..
        } = work;
        let slot = slot_of(epoch);
        t.family = pkt.family;
        t.proto = pkt.proto;
        t.l4 = L4::Ports;
        t.src = pkt.dst;
        t.dst = pkt.src;
        t.dport = pkt.sport;
        t.src_mac = fwd.dst.mac;
        t.again = 0;
        // Into the scratch map, not this frame, which sits between the entry's and
        // `judge_into`'s on the program's deepest call chain.
        judge_in(slot, cfg, now, t, j);
        let j = &*j;
        if !j.allow {
            return Pickup::NoFlow;
        }
        let (key, src_is_lo) = FlowKey::canonical(
            pkt.family, pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport,
        );
        *value = new_flow(j, fwd.dst.mac, !src_is_lo, pkt.len, clock);
        match store(&key, value, cfg, now) {
            Remembered::Yes => Pickup::Passed(Hit {
                device: j.dst.device,
                rule: j.rule,
                audit: false,
            }),
            refused => Pickup::Refused(refused),
        }
    }
}

out_of_line! {
    /// Whether an ICMP error (`pkt`) quotes a packet of a remembered flow (`q`, parsed from the
    /// packet by the caller); returns the flow when it does. The error travels back towards the
    /// quoted packet's sender, so it is accounted to the other end.
    ///
    /// An error is related only when it goes to the quoted packet's sender and, where the policy
    /// binds one, comes from the MAC a reply in that direction must come from (as `lookup` demands
    /// of replies). Without both checks any device could reach any other across zones by "reporting
    /// an error" about some unrelated flow.
    pub fn related(
        q: &Quoted,
        pkt: &Packet,
        cfg: &PolicyConfig,
        slot: u8,
        now: u64,
    ) -> Option<Hit> {
        if pkt.dst != q.src {
            return None;
        }
        let (key, quoted_src_is_lo) =
            FlowKey::canonical(pkt.family, q.proto, q.src, q.sport, q.dst, q.dport);
        // SAFETY: the value is copied out at once.
        let v = unsafe { FLOWS.get(&key) }?;
        if is_stale(v, q.proto, now) {
            return None;
        }
        let quoted_from_initiator = quoted_src_is_lo == (v.init_is_lo != 0);
        // The error comes from the far end of the quoted packet (or a router on its way there).
        let device = speaker(v, !quoted_from_initiator, pkt.src_mac, slot, cfg)?;
        Some(Hit {
            device,
            rule: v.rule,
            audit: false,
        })
    }
}

#[inline(always)]
fn frag_key(pkt: &Packet) -> FragKey {
    FragKey::new(pkt.family, pkt.frag_proto, pkt.src, pkt.dst, pkt.frag_id)
}

out_of_line! {
    /// Remembers an allowed first fragment so the rest of the datagram may follow.
    pub fn remember_fragment(pkt: &Packet, device: u32, rule: u32, now: u64) {
        let value = FragValue {
            expires_ns: now + FRAG_TIMEOUT_NS,
            device,
            rule,
            mac: pkt.src_mac,
            _pad: [0; 2],
        };
        if FRAGS.insert(&frag_key(pkt), &value, 0).is_err() {
            account::count(Counter::FlowInsertFailed);
        }
    }
}

out_of_line! {
    /// A later fragment passes only behind a remembered, unexpired first fragment of the same
    /// (source, destination, protocol, id).
    ///
    /// A fragment from the first fragment's MAC is its sender's; from another MAC, the sender is
    /// checked by device: a listed device other than the first fragment's sender may not
    /// continue it.
    pub fn later_fragment(pkt: &Packet, cfg: &PolicyConfig, slot: u8, now: u64) -> Option<Hit> {
        // SAFETY: the value is copied out at once.
        let v = unsafe { FRAGS.get(&frag_key(pkt)) }?;
        if v.expires_ns < now {
            return None;
        }
        if v.mac != pkt.src_mac && impersonates(slot, cfg, pkt.src_mac, v.device) {
            return None;
        }
        Some(Hit {
            device: v.device,
            rule: v.rule,
            audit: false,
        })
    }
}
