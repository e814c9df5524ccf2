//! Connection state: the flow table (replies of allowed flows pass) and the fragment table (later
//! fragments of an allowed first fragment pass).
//!
//! A flow entry is only ever created after the policy allowed a packet, so a miss, an eviction or
//! an expiry can only make a packet be judged again: the tables fail closed.

use enforcer_common::{
    Action, PROTO_TCP, PROTO_UDP,
    control::PolicyConfig,
    flow::{
        FLOW_TIMEOUT_ICMP_NS, FLOW_TIMEOUT_TCP_NS, FLOW_TIMEOUT_UDP_NS, FRAG_TIMEOUT_NS, FlowKey,
        FlowValue, FragKey, FragValue,
    },
    identity::{MAC_F_ANY_ADDR, MacKey},
    stats::Counter,
};
pub use enforcer_ebpf::hit::Hit;
use enforcer_ebpf::out_of_line;

use crate::{
    account,
    maps::{FLOWS, FRAGS, MACS},
    parse::{L4, Packet, Quoted},
    policy::{Judgement, Tuple, judge, judge_router},
};

/// The per-packet constants: the epoch read once from `CONTROL`, and the time.
#[derive(Clone, Copy)]
pub struct Clock {
    pub epoch: u64,
    pub now: u64,
}

#[inline(always)]
fn timeout_ns(proto: u8) -> u64 {
    match proto {
        PROTO_TCP => FLOW_TIMEOUT_TCP_NS,
        PROTO_UDP => FLOW_TIMEOUT_UDP_NS,
        _ => FLOW_TIMEOUT_ICMP_NS,
    }
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

/// Whether a packet of this kind can start or continue a flow.
#[inline(always)]
pub fn is_stateful(l4: L4) -> bool {
    matches!(l4, L4::Ports | L4::EchoRequest | L4::EchoReply)
}

out_of_line! {
    /// Looks the packet up in the flow table.
    ///
    /// A hit needs a fresh entry and, where the policy binds one, the MAC the sender must use. An
    /// entry made under an older epoch (the policy or a quarantine changed since) is judged again
    /// in its original direction: still allowed, it is refreshed and the packet passes; no longer
    /// allowed, the packet is judged as the start of a new flow by the caller.
    ///
    /// Out of line, as are the other table operations here (`out_of_line!`): each gets its own
    /// stack frame, so the program's deepest call chain stays within the 512-byte BPF stack.
    pub fn lookup(pkt: &Packet, cfg: &PolicyConfig, clock: &Clock, t: &mut Tuple) -> Option<Hit> {
        let Clock { epoch, now } = *clock;
        let slot = (epoch & 1) as u8;
        let (key, src_is_lo) = FlowKey::canonical(
            pkt.family, pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport,
        );
        let entry = FLOWS.get_ptr_mut(&key)?;
        // SAFETY: the pointer comes from a successful lookup and stays valid under RCU for this
        // run; concurrent writers on other CPUs only race on refresh fields, which is harmless.
        let v = unsafe { &mut *entry };
        if now.saturating_sub(v.last_seen_ns) > timeout_ns(pkt.proto) {
            return None;
        }
        let from_initiator = src_is_lo == (v.init_is_lo != 0);
        // Both directions of a ping share one key (the identifier is both "ports"), but only the
        // initiator asks and only the responder answers: a request back along the flow is a new
        // ping the policy must allow on its own, and a "reply" from the initiator is forged.
        if (pkt.l4 == L4::EchoRequest && !from_initiator)
            || (pkt.l4 == L4::EchoReply && from_initiator)
        {
            return None;
        }
        let want_mac = if from_initiator {
            v.init_mac
        } else {
            v.resp_mac
        };
        if want_mac != [0; 6] && want_mac != pkt.src_mac {
            return None;
        }
        let owner = if from_initiator {
            v.init_device
        } else {
            v.resp_device
        };
        if want_mac == [0; 6] && impersonates(slot, cfg, pkt.src_mac, owner) {
            return None;
        }
        if v.epoch != epoch {
            let (init, resp, resp_port) = if v.init_is_lo != 0 {
                (key.lo_addr, key.hi_addr, key.hi_port)
            } else {
                (key.hi_addr, key.lo_addr, key.lo_port)
            };
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
            // A flow the router started is the router's again, not a packet forging its address.
            let j = if v.init_device == enforcer_common::ROUTER_DEVICE {
                judge_router(slot, cfg, now, t)
            } else {
                judge(slot, cfg, now, t)
            };
            if !j.allow {
                return None;
            }
            v.epoch = epoch;
            v.rule = j.rule;
            v.init_device = j.src.device;
            v.resp_device = j.dst.device;
            v.resp_mac = j.dst.mac;
        }
        v.last_seen_ns = now;
        Some(Hit {
            device: if from_initiator {
                v.init_device
            } else {
                v.resp_device
            },
            rule: v.rule,
        })
    }
}

out_of_line! {
    /// Remembers a flow the policy just allowed, so its replies pass.
    pub fn remember(pkt: &Packet, j: &Judgement, epoch: u64, now: u64) {
        if !matches!(pkt.l4, L4::Ports | L4::EchoRequest) {
            return;
        }
        let (key, src_is_lo) = FlowKey::canonical(
            pkt.family, pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport,
        );
        let value = FlowValue {
            epoch,
            last_seen_ns: now,
            rule: j.rule,
            init_device: j.src.device,
            resp_device: j.dst.device,
            init_mac: pkt.src_mac,
            resp_mac: j.dst.mac,
            init_is_lo: u8::from(src_is_lo),
            _pad: [0; 3],
        };
        if FLOWS.insert(&key, &value, 0).is_err() {
            account::count(Counter::FlowInsertFailed);
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
        if now.saturating_sub(v.last_seen_ns) > timeout_ns(q.proto) {
            return None;
        }
        let quoted_from_initiator = quoted_src_is_lo == (v.init_is_lo != 0);
        // The error comes from the far end of the quoted packet (or a router on its way there).
        let want_mac = if quoted_from_initiator {
            v.resp_mac
        } else {
            v.init_mac
        };
        if want_mac != [0; 6] && want_mac != pkt.src_mac {
            return None;
        }
        let device = if quoted_from_initiator {
            v.resp_device
        } else {
            v.init_device
        };
        if want_mac == [0; 6] && impersonates(slot, cfg, pkt.src_mac, device) {
            return None;
        }
        Some(Hit {
            device,
            rule: v.rule,
        })
    }
}

#[inline(always)]
fn frag_key(pkt: &Packet) -> FragKey {
    FragKey {
        src: pkt.src,
        dst: pkt.dst,
        id: pkt.frag_id,
        proto: pkt.frag_proto,
        family: pkt.family,
        _pad: [0; 2],
    }
}

out_of_line! {
    /// Remembers an allowed first fragment so the rest of the datagram may follow.
    pub fn remember_fragment(pkt: &Packet, device: u32, rule: u32, now: u64) {
        let value = FragValue {
            expires_ns: now + FRAG_TIMEOUT_NS,
            device,
            rule,
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
    /// The entry holds no MAC (its layout is shared with userspace), so the sender is checked by
    /// device: a listed device other than the first fragment's sender may not continue it.
    pub fn later_fragment(pkt: &Packet, cfg: &PolicyConfig, slot: u8, now: u64) -> Option<Hit> {
        // SAFETY: the value is copied out at once.
        let v = unsafe { FRAGS.get(&frag_key(pkt)) }?;
        if v.expires_ns < now {
            return None;
        }
        if impersonates(slot, cfg, pkt.src_mac, v.device) {
            return None;
        }
        Some(Hit {
            device: v.device,
            rule: v.rule,
        })
    }
}
