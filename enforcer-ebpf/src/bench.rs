//! Benchmark baselines and drivers for `cargo xtask bench`. The daemon never attaches any of these;
//! they live in the same object only so the benchmark measures the very program the daemon loads,
//! next to its baselines, with one loader.
//!
//! - `bench_pass`, `bench_drop`: the empty programs the enforcer is compared with; `bench_tc_pass`,
//!   the empty TC program the egress program is compared with.
//! - `bench_spread`: rewrites the test frame's MAC, addresses and ports from the next entry of
//!   `BENCH_TABLE` (rotating through `n` entries), then tail-calls `BENCH_TARGET[0]` (the
//!   enforcer, or `bench_pass` to measure the driver itself). `BPF_PROG_TEST_RUN` repeats one frame,
//!   which keeps every lookup in cache; the driver spreads the keys over the policy's devices.
//! - `bench_gen`: the same rewrite, then `bpf_redirect` to `BENCH_CONFIG.ifindex`; run with live
//!   frames (`BPF_F_TEST_XDP_LIVE_FRAMES`) it is a bounded in-kernel packet generator.
//! - `bench_floor`: the least any stateful enforcer does for an allowed reply: read an untagged
//!   IPv4 TCP frame's 5-tuple and find its flow in `FLOWS`. No identity, no MAC check, no epoch,
//!   no counters: the floor under the allowed-reply class, measured beside it. `bench_floor_new`:
//!   the same lookup missing, then the flow inserted with an empty value: the floor under the
//!   new-flow classes. `bench_floor_denied`: what deciding to deny such a frame cannot do
//!   without: its flow missing from `FLOWS`, the live slot from `CONTROL`, the source's identity
//!   (`MACS`), the destination's (`ADDRS_V4`) and the class pair (`PAIRS`, where a miss is the
//!   default action), then the drop. No quarantine, counters or events: the floor under the
//!   denied class. `bench_floor_fragment`: what passing a later fragment cannot do without: read
//!   an untagged IPv4 header and find the datagram's first fragment in `FRAGS`, keyed as the
//!   enforcer keys it. No expiry, no sender check, no counters: the floor under the
//!   later-fragment class.
//!
//! Maps here are not pinned, and sized to one entry in the object: the benchmark raises
//! `BENCH_TABLE`'s capacity at load time, so the daemon pays nothing for them.

use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_UNSPEC, xdp_action},
    helpers::bpf_redirect,
    macros::{classifier, map, xdp},
    maps::{Array, ProgramArray},
    programs::{TcContext, XdpContext},
};
use enforcer_common::{
    FAMILY_V4, PROTO_TCP,
    bench::{BenchConfig, BenchEntry, F_ADDRS, F_CSUM, F_DPORT, F_MAC, F_ROTATE_SPORT, F_SPORT},
    control::slot_of,
    flow::{FlowKey, FlowValue, FragKey},
    identity::{AddrKeyV4, MacKey},
    rules::PairKey,
};

use crate::maps::{ADDRS_V4, CONTROL, FLOWS, FRAGS, MACS, PAIRS};

/// Ethernet header length: the floors read untagged frames only.
const ETH: usize = 14;

#[map]
static BENCH_CONFIG: Array<BenchConfig> = Array::with_max_entries(1, 0);
#[map]
static BENCH_TABLE: Array<BenchEntry> = Array::with_max_entries(1, 0);
/// Packets the driver has rewritten (entry 0), so userspace can restart the rotation.
#[map]
static BENCH_COUNTER: Array<u64> = Array::with_max_entries(1, 0);
#[map]
static BENCH_TARGET: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Benchmark baseline (never attached by the daemon): the empty XDP program.
#[xdp]
pub fn bench_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Benchmark baseline (never attached by the daemon): the empty TC program, against which the
/// egress program's cost on a forwarded packet is measured.
#[classifier]
pub fn bench_tc_pass(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

/// Benchmark baseline (never attached by the daemon): drops everything.
#[xdp]
pub fn bench_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// Benchmark driver (never attached by the daemon): rewrite from the table, then tail-call.
#[xdp]
pub fn bench_spread(ctx: XdpContext) -> u32 {
    if rewrite(&ctx) != 0 {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: a tail call either jumps away or returns (empty slot); nothing is left to clean.
    unsafe { BENCH_TARGET.tail_call(&ctx, 0) };
    xdp_action::XDP_ABORTED
}

/// Benchmark generator (never attached by the daemon): rewrite, then redirect to the configured
/// interface. Used with live frames only.
#[xdp]
pub fn bench_gen(ctx: XdpContext) -> u32 {
    if rewrite(&ctx) != 0 {
        return xdp_action::XDP_ABORTED;
    }
    let Some(cfg) = BENCH_CONFIG.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: a helper taking plain integers.
    unsafe { bpf_redirect(cfg.ifindex, 0) as u32 }
}

/// Benchmark floor (never attached by the daemon): an untagged IPv4 TCP frame's flow lookup and
/// nothing else. Passes a frame whose flow is in `FLOWS`, drops any other (so the benchmark can
/// check that it measured hits).
#[xdp]
pub fn bench_floor(ctx: XdpContext) -> u32 {
    let Some(key) = flow_key(&ctx) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: the value is only tested for presence.
    if unsafe { FLOWS.get(&key) }.is_some() {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}

/// Benchmark floor (never attached by the daemon): what remembering a new flow cannot do without:
/// the frame's flow looked up (a miss) and inserted, with an empty value. Passes when it inserted.
#[xdp]
pub fn bench_floor_new(ctx: XdpContext) -> u32 {
    let Some(key) = flow_key(&ctx) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: the value is only tested for presence.
    if unsafe { FLOWS.get(&key) }.is_some() {
        return xdp_action::XDP_DROP;
    }
    if FLOWS
        .insert(&key, &FlowValue::default(), u64::from(BPF_NOEXIST))
        .is_ok()
    {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}

/// Benchmark floor (never attached by the daemon): what denying an untagged IPv4 TCP frame cannot
/// do without, and nothing more: the flow lookup (a packet of an open flow must pass), both ends'
/// identities in the live slot and their class pair. Drops only a frame of no open flow between
/// two listed devices; passes any other, so the benchmark can check that it measured lookups that
/// found their devices (on the veth path a pass is forwarded, and shows).
#[xdp]
pub fn bench_floor_denied(ctx: XdpContext) -> u32 {
    let Some(f) = v4_tcp(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: the value is only tested for presence.
    if unsafe { FLOWS.get(&f.flow_key()) }.is_some() {
        return xdp_action::XDP_PASS;
    }
    let Some(control) = CONTROL.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let slot = slot_of(control.epoch);
    // SAFETY: as in `identity::lookup_addr`: userspace never deletes a live slot's entries while
    // packets can read them, and the class is copied out at once.
    let Some(src) = (unsafe { MACS.get(&MacKey::new(slot, f.src_mac)) }).map(|m| m.class) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: as above.
    let Some(dst) =
        (unsafe { ADDRS_V4.get(&AddrKeyV4::new(slot, f.dst.to_ne_bytes())) }).map(|a| a.class)
    else {
        return xdp_action::XDP_PASS;
    };
    // Found or not (a miss is the default action), the lookup is what a verdict costs; consumed so
    // the compiler keeps it.
    // SAFETY: the value is only tested for presence.
    core::hint::black_box(unsafe { PAIRS.get(&PairKey::new(slot, src, dst)) }.is_some());
    xdp_action::XDP_DROP
}

/// Benchmark floor (never attached by the daemon): what passing a later IPv4 fragment cannot do
/// without, and nothing more: its datagram's entry in `FRAGS`. Passes a fragment whose entry is
/// there, drops any other frame (so the benchmark can check that it measured hits).
#[xdp]
pub fn bench_floor_fragment(ctx: XdpContext) -> u32 {
    let Some(key) = later_fragment_key(&ctx) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: the value is only tested for presence.
    if unsafe { FRAGS.get(&key) }.is_some() {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}

/// An untagged IPv4 later fragment's key, as the enforcer keys `FRAGS`; `None` for any other
/// frame.
#[inline(always)]
fn later_fragment_key(ctx: &XdpContext) -> Option<FragKey> {
    let (start, end) = (ctx.data(), ctx.data_end());
    // Ethernet and a 20-byte IPv4 header (the benchmark's frames have no options).
    if start + ETH + 20 > end {
        return None;
    }
    // SAFETY: every read below lies inside `[start, start + ETH + 20)`, checked above.
    let (ethertype, ip_head, id, frag, proto, src, dst) = unsafe {
        let at = |off: usize| start + off;
        (
            core::ptr::read_unaligned(at(12) as *const [u8; 2]),
            *(at(ETH) as *const u8),
            u16::from_be_bytes(core::ptr::read_unaligned(at(ETH + 4) as *const [u8; 2])),
            u16::from_be_bytes(core::ptr::read_unaligned(at(ETH + 6) as *const [u8; 2])),
            *(at(ETH + 9) as *const u8),
            core::ptr::read_unaligned(at(ETH + 12) as *const u32),
            core::ptr::read_unaligned(at(ETH + 16) as *const u32),
        )
    };
    // A later fragment has a non-zero offset (the low 13 bits); a first one is judged on its ports.
    if ethertype != [0x08, 0x00] || ip_head != 0x45 || frag & 0x1fff == 0 {
        return None;
    }
    Some(FragKey::new(
        FAMILY_V4,
        proto,
        [src, 0, 0, 0],
        [dst, 0, 0, 0],
        u32::from(id),
    ))
}

/// What the floors read of an untagged IPv4 TCP frame; addresses as the enforcer keeps them (wire
/// order in a native `u32`).
struct V4Tcp {
    src_mac: [u8; 6],
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
}

impl V4Tcp {
    /// The frame's flow key, as the enforcer keys `FLOWS`.
    #[inline(always)]
    fn flow_key(&self) -> FlowKey {
        let (key, _) = FlowKey::canonical(
            FAMILY_V4,
            PROTO_TCP,
            [self.src, 0, 0, 0],
            self.sport,
            [self.dst, 0, 0, 0],
            self.dport,
        );
        key
    }
}

/// An untagged IPv4 TCP frame's flow key; `None` for any other frame.
#[inline(always)]
fn flow_key(ctx: &XdpContext) -> Option<FlowKey> {
    v4_tcp(ctx).map(|f| f.flow_key())
}

/// The fields of an untagged IPv4 TCP frame; `None` for any other frame.
#[inline(always)]
fn v4_tcp(ctx: &XdpContext) -> Option<V4Tcp> {
    let (start, end) = (ctx.data(), ctx.data_end());
    // Ethernet, a 20-byte IPv4 header (the benchmark's frames have no options), the TCP ports.
    if start + ETH + 20 + 4 > end {
        return None;
    }
    // SAFETY: every read below lies inside `[start, start + ETH + 24)`, checked above.
    let (src_mac, ethertype, ip_head, proto, src, dst, sport, dport) = unsafe {
        let at = |off: usize| start + off;
        (
            core::ptr::read_unaligned(at(6) as *const [u8; 6]),
            core::ptr::read_unaligned(at(12) as *const [u8; 2]),
            *(at(ETH) as *const u8),
            *(at(ETH + 9) as *const u8),
            core::ptr::read_unaligned(at(ETH + 12) as *const u32),
            core::ptr::read_unaligned(at(ETH + 16) as *const u32),
            u16::from_be_bytes(core::ptr::read_unaligned(at(ETH + 20) as *const [u8; 2])),
            u16::from_be_bytes(core::ptr::read_unaligned(at(ETH + 22) as *const [u8; 2])),
        )
    };
    if ethertype != [0x08, 0x00] || ip_head != 0x45 || proto != PROTO_TCP {
        return None;
    }
    Some(V4Tcp {
        src_mac,
        src,
        dst,
        sport,
        dport,
    })
}

#[inline(always)]
fn put<const L: usize>(ctx: &XdpContext, off: u32, bytes: &[u8; L]) {
    // Bounded for the verifier, then checked against the frame's end.
    let off = (off & 0x7f) as usize;
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + off + L > end {
        return;
    }
    // SAFETY: `[start + off, start + off + L)` lies inside the frame (checked above).
    unsafe { core::ptr::write_unaligned((start + off) as *mut [u8; L], *bytes) };
}

/// Out of line with a scalar result (the verifier wants r0 to hold one; see
/// `enforcer_ebpf::out_of_line`).
#[inline(never)]
fn rewrite(ctx: &XdpContext) -> u32 {
    let Some(cfg) = BENCH_CONFIG.get(0) else {
        return 1;
    };
    let Some(counter) = BENCH_COUNTER.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: entry 0 of a one-entry array; the benchmark runs one packet at a time.
    let c = unsafe { *counter };
    // SAFETY: as above.
    unsafe { *counter = c + 1 };
    let n = u64::from(cfg.n.max(1));
    let idx = (c % n) as u32;
    let Some(e) = BENCH_TABLE.get(idx) else {
        return 1;
    };
    let flags = cfg.flags;
    if flags & F_MAC != 0 {
        put(ctx, cfg.mac_off, &e.mac);
    }
    if flags & F_ADDRS != 0 {
        if cfg.addr_len == 4 {
            put(ctx, cfg.src_off, &[e.src[0], e.src[1], e.src[2], e.src[3]]);
            put(ctx, cfg.dst_off, &[e.dst[0], e.dst[1], e.dst[2], e.dst[3]]);
        } else {
            put(ctx, cfg.src_off, &e.src);
            put(ctx, cfg.dst_off, &e.dst);
        }
    }
    if flags & F_ROTATE_SPORT != 0 {
        let port = 1024 + ((c / n) % 64_000) as u16;
        put(ctx, cfg.sport_off, &port.to_be_bytes());
    } else if flags & F_SPORT != 0 {
        put(ctx, cfg.sport_off, &e.sport);
    }
    if flags & F_DPORT != 0 {
        put(ctx, cfg.dport_off, &e.dport);
    }
    if flags & F_CSUM != 0 {
        put(ctx, 0, &cfg.dst_mac);
        put(ctx, 22, &[cfg.ttl]);
        put(ctx, cfg.ip_csum_off, &e.ip_csum);
        put(ctx, cfg.l4_csum_off, &e.l4_csum);
    }
    0
}
