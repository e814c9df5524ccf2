//! Every map of the program, in one place. Keys, values, capacities and writers are documented
//! beside the types in `enforcer-common`; the names here match its `*_MAP` constants, which is how
//! userspace finds them.
//!
//! All maps are pinned by name (`pinned`): the daemon loads with a pin directory, so a restarted
//! daemon adopts the live maps (and their counters) instead of starting from nothing.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use enforcer_common::{
    Decision, MAX_ADDRS, MAX_DEVICES, MAX_MACS, MAX_NETS, MAX_PAIRS, MAX_PORTS, MAX_RULES, SLOTS,
    control::{Control, PolicyConfig},
    event::EVENTS_BYTES,
    flow::{FlowKey, FlowValue, FragKey, FragValue, MAX_FLOWS, MAX_FRAGS},
    identity::{AddrEntry, AddrKeyV4, AddrKeyV6, MacEntry, MacKey, NetEntry},
    rules::{PairKey, PairValue, PortKey},
    state::{DeviceState, DiscoveredDevice, EventBudget, MAX_DISCOVERED},
    stats::{Counter, DeviceStats, RuleStats},
};

/// Hash maps that only userspace fills are allocated on demand, so memory follows the policy's
/// size instead of the capacity (lookups cost the same).
const NO_PREALLOC: u32 = 1;

#[map]
pub static CONTROL: Array<Control> = Array::pinned(1, 0);
#[map]
pub static CONFIG: Array<PolicyConfig> = Array::pinned(SLOTS, 0);

#[map]
pub static MACS: HashMap<MacKey, MacEntry> = HashMap::pinned(SLOTS * MAX_MACS, NO_PREALLOC);
#[map]
pub static ADDRS_V4: HashMap<AddrKeyV4, AddrEntry> =
    HashMap::pinned(SLOTS * MAX_ADDRS, NO_PREALLOC);
#[map]
pub static ADDRS_V6: HashMap<AddrKeyV6, AddrEntry> =
    HashMap::pinned(SLOTS * MAX_ADDRS, NO_PREALLOC);
#[map]
pub static NETS_V4: LpmTrie<[u8; 5], NetEntry> = LpmTrie::pinned(SLOTS * MAX_NETS, NO_PREALLOC);
#[map]
pub static NETS_V6: LpmTrie<[u8; 17], NetEntry> = LpmTrie::pinned(SLOTS * MAX_NETS, NO_PREALLOC);

#[map]
pub static PAIRS: HashMap<PairKey, PairValue> = HashMap::pinned(SLOTS * MAX_PAIRS, NO_PREALLOC);
#[map]
pub static PORTS: HashMap<PortKey, Decision> = HashMap::pinned(SLOTS * MAX_PORTS, NO_PREALLOC);

#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::pinned(MAX_FLOWS, 0);
#[map]
pub static FRAGS: LruHashMap<FragKey, FragValue> = LruHashMap::pinned(MAX_FRAGS, 0);

#[map]
pub static DEVICE_STATS: PerCpuArray<DeviceStats> = PerCpuArray::pinned(MAX_DEVICES, 0);
#[map]
pub static RULE_STATS: PerCpuArray<RuleStats> = PerCpuArray::pinned(MAX_RULES, 0);
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(Counter::COUNT, 0);

#[map]
pub static DEVICE_STATE: Array<DeviceState> = Array::pinned(MAX_DEVICES, 0);
#[map]
pub static EVENT_BUDGET: Array<EventBudget> = Array::pinned(MAX_DEVICES, 0);
#[map]
pub static DISCOVERED: LruHashMap<MacKey, DiscoveredDevice> = LruHashMap::pinned(MAX_DISCOVERED, 0);

#[map]
pub static EVENTS: RingBuf = RingBuf::pinned(EVENTS_BYTES, 0);

/// Per-CPU scratch space for what does not fit the 512-byte BPF stack: the parsed packet, the
/// judged tuples and a discovery record. One entry; each run overwrites what it uses.
#[map]
pub static SCRATCH: PerCpuArray<crate::Scratch> = PerCpuArray::with_max_entries(1, 0);
