//! Connection state: the flow table that lets replies of allowed flows through, and the fragment
//! table that lets later fragments of an allowed first fragment through.

/// `FLOWS`: `HashMap<FlowKey, FlowValue>` (no eviction, allocated as flows come), capacity
/// `limits.flows` (default [`DEFAULT_FLOWS`]), set at load time. Written by the program only (userspace reads it for `status` and deletes it on
/// `detach`). A flow is inserted only after the policy allowed its first packet, and only within
/// the quota of the device that started it ([`FLOW_COUNT_MAP`]); it leaves the table only when
/// it has expired (the program's sweep, or a packet that finds it stale), never to make room.
pub const FLOWS_MAP: &str = "FLOWS";

/// The flow table's capacity when the policy sets none (`limits.flows`), and the size the maps
/// are declared with in the object (the loader sets the real one).
pub const DEFAULT_FLOWS: u32 = 262_144;
/// The range `limits.flows` may take: below, a busy site refuses new flows as `flow_table_full`;
/// above, `FLOW_RING` alone (preallocated) passes 160 MiB.
pub const MIN_FLOWS: u32 = 1_024;
pub const MAX_FLOWS: u32 = 4_194_304;

/// The program's load-time global holding the flow table's capacity (a `u32`), set by the loader
/// with the `max_entries` of `FLOWS` and `FLOW_RING`, so the sweep wraps the ring where it ends.
pub const FLOW_CAPACITY_GLOBAL: &str = "FLOW_CAPACITY";

/// The flow maps that are sized by `limits.flows` or count its entries: re-created together when
/// the capacity changes, so counts and the ring always match the table.
pub const FLOW_TABLE_MAPS: [&str; 4] = [FLOWS_MAP, FLOW_RING_MAP, FLOW_COUNT_MAP, FLOW_SWEEP_MAP];

/// `FLOW_RING`: `Array<FlowKey>`, one slot per flow of the table's capacity. Program only. Each flow occupies the slot
/// its value names ([`FlowValue::ring`]); the sweep walks the slots in order, so the program can
/// find and remove expired flows without the daemon.
pub const FLOW_RING_MAP: &str = "FLOW_RING";

/// `FLOW_COUNT`: `Array<u64>`, [`crate::MAX_DEVICES`] rows by device id (row 0 = unknown sources,
/// the last rows the policy networks): the device's live flows in `FLOWS`. Incremented by the
/// program on an insert, decremented when it removes the flow; never written elsewhere while the
/// program runs, so it does not drift.
pub const FLOW_COUNT_MAP: &str = "FLOW_COUNT";

/// `FLOW_SWEEP`: `Array<u32>` with one entry: the next `FLOW_RING` slot the sweep looks at.
pub const FLOW_SWEEP_MAP: &str = "FLOW_SWEEP";

/// How many ring slots a new flow looks at for a free one (reclaiming expired flows on the way).
/// The sweep goes in insertion order, so the slots ahead of it hold the oldest flows.
pub const FLOW_SWEEP_PROBES: u32 = 4;

/// Default per-device flow quota (`limits.flows_per_device`).
pub const DEFAULT_FLOWS_PER_DEVICE: u32 = 4_096;

/// `FRAGS`: `LruHashMap<FragKey, FragValue>`, capacity [`MAX_FRAGS`]. Program only. An entry is
/// made only by an allowed first fragment; a later fragment without one is dropped (fail closed).
pub const FRAGS_MAP: &str = "FRAGS";
pub const MAX_FRAGS: u32 = 8_192;

/// Idle timeouts, nanoseconds. A stale entry is ignored and the packet judged as a new flow.
pub const FLOW_TIMEOUT_TCP_NS: u64 = 1_800 * 1_000_000_000;
pub const FLOW_TIMEOUT_UDP_NS: u64 = 120 * 1_000_000_000;
pub const FLOW_TIMEOUT_ICMP_NS: u64 = 30 * 1_000_000_000;
/// How long a TCP flow lives after a RST (from either end) or a FIN from both ends, unless a
/// packet revives it: long enough for the last ACK and retransmitted FINs (conntrack's CLOSE and
/// TIME_WAIT serve the same purpose), short enough that a closed 4-tuple soon needs the policy
/// again.
pub const FLOW_TIMEOUT_CLOSING_NS: u64 = 10 * 1_000_000_000;

/// How long a flow of protocol `proto` in TCP close state `tcp_state` ([`FlowValue::tcp_state`])
/// lives after its `last_seen_ns`: the idle timeout, or once closed [`FLOW_TIMEOUT_CLOSING_NS`].
#[must_use]
#[inline(always)]
pub const fn flow_timeout_ns(proto: u8, tcp_state: u8) -> u64 {
    if tcp_state & FLOW_CLOSING != 0 {
        return FLOW_TIMEOUT_CLOSING_NS;
    }
    match proto {
        crate::PROTO_TCP => FLOW_TIMEOUT_TCP_NS,
        crate::PROTO_UDP => FLOW_TIMEOUT_UDP_NS,
        _ => FLOW_TIMEOUT_ICMP_NS,
    }
}

/// [`FlowValue::tcp_state`]: the initiator sent a FIN.
pub const FLOW_FIN_INIT: u8 = 1;
/// [`FlowValue::tcp_state`]: the responder sent a FIN.
pub const FLOW_FIN_RESP: u8 = 2;
/// [`FlowValue::tcp_state`]: closed (RST, or FIN both ways): the flow expires
/// [`FLOW_TIMEOUT_CLOSING_NS`] after the close, and a SYN reusing its 4-tuple is judged again.
pub const FLOW_CLOSING: u8 = 4;
/// How long later fragments may follow an allowed first fragment (RFC 791's reassembly timer is
/// of this order; Linux uses 30 s).
pub const FRAG_TIMEOUT_NS: u64 = 30 * 1_000_000_000;

/// Key of `FLOWS`: the 5-tuple in canonical order, so both directions of a flow find one entry.
/// The (address, port) endpoint that compares lower (as words; any total order will do) is `lo`.
/// Addresses are network-order bytes as words (`identity::words`); IPv4 uses the first word.
/// For ICMP echo both ports hold the echo identifier.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub lo_addr: [u32; 4],
    pub hi_addr: [u32; 4],
    pub lo_port: u16,
    pub hi_port: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

impl FlowKey {
    /// The canonical key of a packet from `(src, sport)` to `(dst, dport)`; the flag says whether
    /// the source is the `lo` side.
    #[must_use]
    #[inline(always)]
    pub fn canonical(
        family: u8,
        proto: u8,
        src: [u32; 4],
        sport: u16,
        dst: [u32; 4],
        dport: u16,
    ) -> (Self, bool) {
        let mut key = Self::default();
        let src_is_lo = key.set_canonical(family, proto, &src, sport, &dst, dport);
        (key, src_is_lo)
    }

    /// [`Self::canonical`] written in place: the datapath builds the key in its scratch map, and
    /// copying the endpoints straight from the packet there spares it holding ten words in
    /// registers across the comparison.
    #[inline(always)]
    pub fn set_canonical(
        &mut self,
        family: u8,
        proto: u8,
        src: &[u32; 4],
        sport: u16,
        dst: &[u32; 4],
        dport: u16,
    ) -> bool {
        // Word by word, not as slices: slice comparison lowers to `memcmp`, which BPF lacks.
        let src_is_lo = if src[0] != dst[0] {
            src[0] < dst[0]
        } else if src[1] != dst[1] {
            src[1] < dst[1]
        } else if src[2] != dst[2] {
            src[2] < dst[2]
        } else if src[3] != dst[3] {
            src[3] < dst[3]
        } else {
            sport <= dport
        };
        let (lo, lo_port, hi, hi_port) = if src_is_lo {
            (src, sport, dst, dport)
        } else {
            (dst, dport, src, sport)
        };
        self.lo_addr = *lo;
        self.hi_addr = *hi;
        self.lo_port = lo_port;
        self.hi_port = hi_port;
        self.proto = proto;
        self.family = family;
        self._pad = [0; 2];
        src_is_lo
    }
}

/// Value of `FLOWS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowValue {
    /// [`crate::control::Control::epoch`] when the flow was last judged. A different epoch means the
    /// policy or a quarantine changed since: the flow is judged again in its original direction.
    pub epoch: u64,
    /// When its timeout ([`flow_timeout_ns`]) counts from: the last packet's time, or, once the
    /// flow is [`FLOW_CLOSING`], the close's (no longer moved by its packets). Every reader judges
    /// expiry by that one rule.
    pub last_seen_ns: u64,
    /// The rule that allowed it.
    pub rule: u32,
    /// Device ids of the two ends, for accounting the packets each one sends.
    pub init_device: u32,
    pub resp_device: u32,
    /// MAC the initiator sent from.
    pub init_mac: [u8; 6],
    /// MAC the responder must send from when it is a listed device with a MAC, else zero (any).
    pub resp_mac: [u8; 6],
    /// 1 when the initiator is the key's `lo` side.
    pub init_is_lo: u8,
    /// TCP close tracking: [`FLOW_FIN_INIT`], [`FLOW_FIN_RESP`], [`FLOW_CLOSING`]; 0 otherwise.
    pub tcp_state: u8,
    pub _pad: [u8; 2],
    /// The device whose quota the flow counts against (`FLOW_COUNT`): the initiator when the
    /// flow was made. Fixed for the entry's life, unlike `init_device` (re-judging updates it).
    pub owner: u32,
    /// The `FLOW_RING` slot that holds this key.
    pub ring: u32,
    /// Names (`names.rs`): when a flow a DNS-name binding allowed must be judged again, in whole
    /// seconds of `CLOCK_MONOTONIC` (the binding's expiry plus `dns.grace`, rounded up); 0 when no
    /// name binding allowed it. Judged again then, it goes on only if the binding was renewed (or
    /// another rule allows it). Seconds keep the entry at 80 bytes and last 136 years of uptime.
    pub name_until_s: u32,

    // --- Observation (`enforcer learn`, docs/learn.md): what the daemon's observer reads when it
    // scans the table. Written when the flow is stored and on each packet's lookup, which touches
    // the entry anyway; nothing else per packet. Racing CPUs may lose an increment: these are
    // observations, not accounting (`DEVICE_STATS` and `RULE_STATS` are).
    /// When the flow was first stored (the program's monotonic clock, as `last_seen_ns`).
    pub first_seen_ns: u64,
    /// Bytes of the flow's packets, both directions.
    pub bytes: u64,
    /// Packets of the flow, both directions.
    pub packets: u32,
    /// `FLOW_F_*`.
    pub observed: u32,
}
const _: () = assert!(core::mem::size_of::<FlowValue>() == 80);

/// [`FlowValue::observed`]: the policy denies the flow, but its initiator is in audit (`mode:
/// audit`), so it was let through and remembered (its replies pass). Judged again, like any flow,
/// when the policy changes: allowed then, the flag goes; denied with its initiator enforcing, the
/// flow ends.
pub const FLOW_F_AUDIT: u32 = 1;

/// Key of `FRAGS`. The protocol is part of the key (Suricata CVE-2017-7177): a fragment of another
/// protocol with the same id must not ride on an allowed first fragment.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FragKey {
    /// Addresses as words (`identity::words`).
    pub src: [u32; 4],
    pub dst: [u32; 4],
    /// IPv4 identification (16 bits) or IPv6 fragment identification (32 bits).
    pub id: u32,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FragKey>() == 40);

impl FragKey {
    /// The key of a fragment of the datagram `id` from `src` to `dst`; `proto` is the protocol
    /// every fragment carries (IPv4's protocol field, the IPv6 Fragment header's next header).
    #[must_use]
    #[inline(always)]
    pub const fn new(family: u8, proto: u8, src: [u32; 4], dst: [u32; 4], id: u32) -> Self {
        Self {
            src,
            dst,
            id,
            proto,
            family,
            _pad: [0; 2],
        }
    }
}

/// Value of `FRAGS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FragValue {
    pub expires_ns: u64,
    pub device: u32,
    pub rule: u32,
    /// The MAC the first fragment came from: a later fragment from it continues the datagram
    /// without the sender check's `MACS` lookup (one from another MAC still gets the check).
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FragValue>() == 24);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_of_a_flow_share_one_canonical_key() {
        let a = crate::identity::words([10, 1, 3, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let b = crate::identity::words([10, 1, 4, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let (k1, a_lo) = FlowKey::canonical(4, 6, a, 40000, b, 9100);
        let (k2, b_lo) = FlowKey::canonical(4, 6, b, 9100, a, 40000);
        assert_eq!(k1, k2);
        assert!(a_lo);
        assert!(!b_lo);
    }

    #[test]
    fn same_address_pair_orders_by_port() {
        let a = [0xfdfd_fdfd; 4];
        let (k, src_lo) = FlowKey::canonical(6, 17, a, 53, a, 40000);
        assert!(src_lo);
        assert_eq!((k.lo_port, k.hi_port), (53, 40000));
    }

    #[test]
    fn a_key_written_in_place_keeps_nothing_of_the_key_before() {
        let (a, b) = ([0x0a00_0001, 0, 0, 0], [0xc0a8_0102, 0, 0, 0]);
        for (src, sport, dst, dport) in [(a, 40000, b, 9100), (b, 9100, a, 40000)] {
            let mut key = FlowKey {
                lo_addr: [u32::MAX; 4],
                hi_addr: [u32::MAX; 4],
                lo_port: u16::MAX,
                hi_port: u16::MAX,
                proto: u8::MAX,
                family: u8::MAX,
                _pad: [u8::MAX; 2],
            };
            let src_lo = key.set_canonical(4, 6, &src, sport, &dst, dport);
            assert_eq!(
                (key, src_lo),
                FlowKey::canonical(4, 6, src, sport, dst, dport)
            );
            assert_eq!(key._pad, [0; 2]);
        }
    }
}
