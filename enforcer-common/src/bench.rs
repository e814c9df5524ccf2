//! The benchmark drivers' contract (`cargo xtask bench` only; the daemon never uses it): the
//! programs `enforcer-ebpf/src/bench.rs` adds beside the enforcer, their maps, and the rotation
//! table the spread driver and the packet generator write into test frames.

/// Empty program (returns `XDP_PASS`): the baseline.
pub const PASS: &str = "bench_pass";
/// Empty TC program (returns `TCX_NEXT`): the egress program's baseline.
pub const TC_PASS: &str = "bench_tc_pass";
/// Drops everything.
pub const DROP: &str = "bench_drop";
/// Rewrites the frame from `BENCH_TABLE`, then tail-calls `BENCH_TARGET[0]`.
pub const SPREAD: &str = "bench_spread";
/// Rewrites the frame from `BENCH_TABLE`, then redirects to `BenchConfig::ifindex` (live frames).
pub const GEN: &str = "bench_gen";
/// Finds an untagged IPv4 TCP frame's flow in `FLOWS` and nothing else (passes on a hit): the
/// floor under the allowed-reply class.
pub const FLOOR: &str = "bench_floor";
/// Finds an untagged IPv4 TCP frame's flow missing from `FLOWS` and inserts it (passes when it
/// did): the floor under the new-flow classes.
pub const FLOOR_NEW: &str = "bench_floor_new";
/// Finds an untagged IPv4 TCP frame's flow missing from `FLOWS`, both ends' identities in the
/// live slot and their class pair, then drops (passes anything else): the floor under the denied
/// class.
pub const FLOOR_DENIED: &str = "bench_floor_denied";
/// Finds an untagged IPv4 later fragment's entry in `FRAGS` and nothing else (passes on a hit):
/// the floor under the later-fragment class.
pub const FLOOR_FRAGMENT: &str = "bench_floor_fragment";

/// `Array<BenchConfig>`, one entry.
pub const CONFIG_MAP: &str = "BENCH_CONFIG";
/// `Array<BenchEntry>`, one entry in the object; the benchmark raises it at load time.
pub const TABLE_MAP: &str = "BENCH_TABLE";
/// `Array<u64>`, one entry: packets the driver rewrote, so userspace can restart the rotation.
pub const COUNTER_MAP: &str = "BENCH_COUNTER";
/// `ProgramArray`, one entry: where `bench_spread` tail-calls.
pub const TARGET_MAP: &str = "BENCH_TARGET";

/// One rotation step: what the driver writes into the frame. Byte arrays are wire order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BenchEntry {
    pub mac: [u8; 6],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    /// IPv4 header and L4 checksums of the rewritten frame (written with `F_CSUM`).
    pub ip_csum: [u8; 2],
    pub l4_csum: [u8; 2],
    pub _pad: [u8; 2],
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// Where the driver writes; offsets are from the frame start (at most 127).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BenchConfig {
    pub n: u32,
    pub mac_off: u32,
    pub src_off: u32,
    pub dst_off: u32,
    /// 4 or 16.
    pub addr_len: u32,
    pub sport_off: u32,
    pub dport_off: u32,
    pub flags: u32,
    pub ifindex: u32,
    pub ip_csum_off: u32,
    pub l4_csum_off: u32,
    /// With `F_CSUM`: the destination MAC and IPv4 TTL (at offset 22) the checksums assume. The
    /// stack rewrites both in place when it forwards, and live-frame pages are recycled as they
    /// come back, so a generator must restore them.
    pub dst_mac: [u8; 6],
    pub ttl: u8,
    pub _pad: u8,
}

pub const F_MAC: u32 = 1;
pub const F_ADDRS: u32 = 2;
pub const F_SPORT: u32 = 4;
pub const F_DPORT: u32 = 8;
/// Source port from the pass number, so every packet starts a new flow.
pub const F_ROTATE_SPORT: u32 = 16;
/// Write the entry's checksums too (live frames that the stack will check).
pub const F_CSUM: u32 = 32;

const _: () = assert!(core::mem::size_of::<BenchEntry>() == 48);
const _: () = assert!(core::mem::size_of::<BenchConfig>() == 52);
