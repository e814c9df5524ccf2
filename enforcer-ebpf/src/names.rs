//! DNS-name destinations: for the sending device, an address its resolver answer bound to a name
//! rule is judged as `dns:NAME` before it is judged as what it otherwise is (a network, say).
//!
//! The resolver (userspace) writes `BINDINGS` before it relays an answer, so the first packet to
//! the address finds the binding. Nothing here learns anything from packets. Also here: DNS that
//! bypasses the resolver (`dns_bypass`), denied while the policy has a `dns:` section.

use enforcer_common::{
    Action, Decision, PROTO_TCP, PROTO_UDP,
    names::{BindingKey, NAMES_SETTINGS, NameEntry, NameKey},
    rules::{PairKey, PortKey},
};
use enforcer_ebpf::{out_of_line, out_of_line::InRegister};

use crate::{
    maps::{BINDINGS, NAME_DEADLINE, NAMES, PAIRS, PORTS},
    parse::L4,
    policy::{Tuple, decide},
};

/// `Dest::flags`: the verdict came from a name binding of the source (a flow it opens carries the
/// binding's deadline, `FlowValue::name_until_ns`). Apart from the policy's `DST_F_*` bits.
pub const DST_F_NAME: u8 = 0x80;

const NS_PER_S: u64 = 1_000_000_000;

/// The policy's `dns:` settings in `slot`, or `None` when it has no `dns:` section.
#[inline(always)]
pub fn settings(slot: u8) -> Option<NameEntry> {
    // SAFETY: userspace never deletes a live slot's entries while packets can read them; the
    // value is copied out at once.
    unsafe { NAMES.get(&NameKey::new(slot, NAMES_SETTINGS)) }.copied()
}

/// A [`Decision`] in one register (rule in the low word, action above it).
#[derive(Clone, Copy)]
pub struct Bound(pub Decision);

impl InRegister for Bound {
    #[inline(always)]
    fn into_word(self) -> u64 {
        u64::from(self.0.rule) | (u64::from(self.0.action) << 32)
    }

    #[inline(always)]
    fn from_word(word: u64) -> Self {
        let action = Action::from_u8((word >> 32) as u8);
        Self(Decision::new(action, word as u32))
    }
}

out_of_line! {
    /// What the names `device` has bound to `t`'s destination decide for `t` (source class
    /// `src_class`), with deny precedence across names; `Decision::NONE` when no live binding's
    /// name has a rule for this service. A binding is live until its expiry, or for a flow judged
    /// again (`t.again`) until its expiry plus `dns.grace`. When it allows, the latest deadline
    /// (expiry plus grace) of the allowing names is left in `NAME_DEADLINE` for the flow entry.
    pub fn decide_bound(slot: u8, device: u32, src_class: u16, t: &Tuple, now: u64) -> Bound {
        let Some(cfg) = settings(slot) else {
            return Bound(Decision::NONE);
        };
        let key = BindingKey::new(device, t.family, t.dst);
        // SAFETY: the value is copied out at once (the resolver may rewrite it concurrently).
        let Some(v) = (unsafe { BINDINGS.get(&key) }).copied() else {
            return Bound(Decision::NONE);
        };
        let grace = u64::from(cfg.grace_s) * NS_PER_S;
        let extra = if t.again != 0 { grace } else { 0 };
        let mut best = Decision::NONE;
        let mut deadline = 0;
        for b in &v.names {
            if b.name == NAMES_SETTINGS || now >= b.expires_ns.saturating_add(extra) {
                continue;
            }
            // SAFETY: as in `settings`.
            let Some(name) = (unsafe { NAMES.get(&NameKey::new(slot, b.name)) }).copied() else {
                // A name of an earlier policy that this one no longer has.
                continue;
            };
            let d = decide(slot, src_class, name.class, t);
            match d.action() {
                Action::None => {}
                Action::Deny => return Bound(d),
                Action::Allow => {
                    if !best.is_set() {
                        best = d;
                    }
                    deadline = deadline.max(b.expires_ns.saturating_add(grace));
                }
            }
        }
        if best.is_set()
            && let Some(slot) = NAME_DEADLINE.get_ptr_mut(0)
        {
            // SAFETY: this CPU's slot of a per-CPU map; read back by this same run.
            unsafe { *slot = deadline };
        }
        Bound(best)
    }
}

/// The deadline [`decide_bound`] left for the flow it just allowed.
#[inline(always)]
pub fn last_deadline() -> u64 {
    NAME_DEADLINE.get(0).copied().unwrap_or(0)
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
