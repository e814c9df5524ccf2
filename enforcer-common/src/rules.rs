//! The verdict tables: (source class, destination class) to a pair, then (pair, protocol, port).
//!
//! A *class* is a set of endpoints that every rule treats alike: each zone, each network, the
//! router, and each device that a rule names on its own. The compiler expands rules into
//! class-pair entries with deny precedence already resolved, so the program does at most two
//! exact-match lookups whatever the number of rules.

use crate::Decision;

/// `PAIRS`: `HashMap<PairKey, PairValue>`, capacity `2 * MAX_PAIRS`, no prealloc. Userspace only.
pub const PAIRS_MAP: &str = "PAIRS";
/// `PORTS`: `HashMap<PortKey, Decision>`, capacity `2 * MAX_PORTS`, no prealloc. Userspace only.
/// Entries for single ports and expanded port ranges; an absent port falls back to the pair's
/// per-protocol decision.
pub const PORTS_MAP: &str = "PORTS";

/// Key of `PAIRS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct PairKey {
    pub src_class: u16,
    pub dst_class: u16,
    pub slot: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<PairKey>() == 8);

impl PairKey {
    #[must_use]
    #[inline(always)]
    pub const fn new(slot: u8, src_class: u16, dst_class: u16) -> Self {
        Self {
            src_class,
            dst_class,
            slot,
            _pad: [0; 3],
        }
    }
}

/// Value of `PAIRS`. Each per-protocol decision already has deny precedence applied.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PairValue {
    /// Pair id, unique within a slot; the first word of [`PortKey`]. 0 = no port entries.
    pub pair: u32,
    pub _pad: u32,
    /// TCP, any port not listed in `PORTS`.
    pub tcp: Decision,
    /// UDP, any port not listed in `PORTS`.
    pub udp: Decision,
    /// ICMP / ICMPv6 echo request (the `icmp` service).
    pub icmp: Decision,
    /// Every other protocol and ICMP type (only the `any` service sets it).
    pub other: Decision,
}
const _: () = assert!(core::mem::size_of::<PairValue>() == 40);

/// Key of `PORTS`. `port` is the destination port in host order (it is only hashed, never matched
/// by prefix).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct PortKey {
    pub pair: u32,
    pub port: u16,
    pub proto: u8,
    pub slot: u8,
}
const _: () = assert!(core::mem::size_of::<PortKey>() == 8);

impl PortKey {
    #[must_use]
    #[inline(always)]
    pub const fn new(slot: u8, pair: u32, proto: u8, port: u16) -> Self {
        Self {
            pair,
            port,
            proto,
            slot,
        }
    }
}
