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
    evidence::{EVIDENCE_BYTES, MAX_EVIDENCE_SOURCES},
    explain::Explanation,
    flow::{DEFAULT_FLOWS, FlowKey, FlowValue, FragKey, FragValue, MAX_FRAGS},
    identity::{AddrEntry, AddrKeyV4, AddrKeyV6, MacEntry, MacKey, NetEntry},
    names::{BindingKey, BindingValue, MAX_BINDINGS, MAX_NAMES, NameEntry, NameKey},
    rules::{PairKey, PairValue, PortKey},
    state::{DeviceState, DiscoveredDevice, EventBudget, MAX_DISCOVERED},
    stats::{Counter, DeviceStats, RuleStats},
};

/// Hash maps that only userspace fills are allocated on demand, so memory follows the policy's
/// size instead of the capacity (lookups cost the same).
const NO_PREALLOC: u32 = 1;

/// The live slot and epoch: `enforcer_common::control::CONTROL_MAP`, value [`Control`].
#[map]
pub static CONTROL: Array<Control> = Array::pinned(1, 0);
/// Per-slot policy settings: `enforcer_common::control::CONFIG_MAP`, value [`PolicyConfig`].
#[map]
pub static CONFIG: Array<PolicyConfig> = Array::pinned(SLOTS, 0);

/// Devices by MAC: `enforcer_common::identity::MACS_MAP`, [`MacKey`] to [`MacEntry`].
#[map]
pub static MACS: HashMap<MacKey, MacEntry> = HashMap::pinned(SLOTS * MAX_MACS, NO_PREALLOC);
/// IPv4 addresses: `enforcer_common::identity::ADDRS_V4_MAP`, [`AddrKeyV4`] to [`AddrEntry`].
#[map]
pub static ADDRS_V4: HashMap<AddrKeyV4, AddrEntry> =
    HashMap::pinned(SLOTS * MAX_ADDRS, NO_PREALLOC);
/// IPv6 addresses: `enforcer_common::identity::ADDRS_V6_MAP`, [`AddrKeyV6`] to [`AddrEntry`].
#[map]
pub static ADDRS_V6: HashMap<AddrKeyV6, AddrEntry> =
    HashMap::pinned(SLOTS * MAX_ADDRS, NO_PREALLOC);
/// IPv4 networks: `enforcer_common::identity::NETS_V4_MAP`, slot-prefixed key to [`NetEntry`].
#[map]
pub static NETS_V4: LpmTrie<[u8; 5], NetEntry> = LpmTrie::pinned(SLOTS * MAX_NETS, NO_PREALLOC);
/// IPv6 networks: `enforcer_common::identity::NETS_V6_MAP`, slot-prefixed key to [`NetEntry`].
#[map]
pub static NETS_V6: LpmTrie<[u8; 17], NetEntry> = LpmTrie::pinned(SLOTS * MAX_NETS, NO_PREALLOC);

/// Class-pair decisions: `enforcer_common::rules::PAIRS_MAP`, [`PairKey`] to [`PairValue`].
#[map]
pub static PAIRS: HashMap<PairKey, PairValue> = HashMap::pinned(SLOTS * MAX_PAIRS, NO_PREALLOC);
/// Per-port decisions of a pair: `enforcer_common::rules::PORTS_MAP`, [`PortKey`] to [`Decision`].
#[map]
pub static PORTS: HashMap<PortKey, Decision> = HashMap::pinned(SLOTS * MAX_PORTS, NO_PREALLOC);

/// Name patterns' classes and the `dns:` settings: `enforcer_common::names::NAMES_MAP`,
/// [`NameKey`] to [`NameEntry`].
#[map]
pub static NAMES: HashMap<NameKey, NameEntry> = HashMap::pinned(SLOTS * MAX_NAMES, NO_PREALLOC);
/// Addresses the resolver bound to names, per device: `enforcer_common::names::BINDINGS_MAP`,
/// [`BindingKey`] to [`BindingValue`]. Least recently used evicted first when full.
#[map]
pub static BINDINGS: LruHashMap<BindingKey, BindingValue> = LruHashMap::pinned(MAX_BINDINGS, 0);
/// Per-CPU working memory of `names`: the binding key looked up (off the 512-byte stack) and the
/// deadline of the binding that allowed the flow being judged, for its flow entry. Not pinned:
/// it lives for one run.
#[map]
pub static NAME_SCRATCH: PerCpuArray<crate::names::NameScratch> =
    PerCpuArray::with_max_entries(1, 0);

/// Remembered flows: `enforcer_common::flow::FLOWS_MAP`, [`FlowKey`] to [`FlowValue`]. A plain
/// hash, not an LRU: nothing is evicted to make room, so no device can push out another's flows
/// (`flow::remember` enforces the per-device quota; the sweep removes expired flows). Allocated as
/// flows come, so memory follows the live flows rather than the capacity. Declared at the default
/// capacity; the loader sets `limits.flows` here and on `FLOW_RING` (and `flow::FLOW_CAPACITY`).
#[map]
pub static FLOWS: HashMap<FlowKey, FlowValue> = HashMap::pinned(DEFAULT_FLOWS, NO_PREALLOC);
/// The sweep's ring of flow keys: `enforcer_common::flow::FLOW_RING_MAP`.
#[map]
pub static FLOW_RING: Array<FlowKey> = Array::pinned(DEFAULT_FLOWS, 0);
/// Live flows per device: `enforcer_common::flow::FLOW_COUNT_MAP`.
#[map]
pub static FLOW_COUNT: Array<u64> = Array::pinned(MAX_DEVICES, 0);
/// The sweep's next ring slot: `enforcer_common::flow::FLOW_SWEEP_MAP`.
#[map]
pub static FLOW_SWEEP: Array<u32> = Array::pinned(1, 0);
/// Allowed first fragments: `enforcer_common::flow::FRAGS_MAP`, [`FragKey`] to [`FragValue`].
#[map]
pub static FRAGS: LruHashMap<FragKey, FragValue> = LruHashMap::pinned(MAX_FRAGS, 0);

/// Per-device packets and bytes: `enforcer_common::stats::DEVICE_STATS_MAP`, [`DeviceStats`], one
/// row per (CPU, device) (`stats::device_stats_row`). One row in the object: userspace sets the
/// capacity (`MAX_DEVICES` per possible CPU) at load.
#[map]
pub static DEVICE_STATS: Array<DeviceStats> = Array::pinned(1, 0);
/// Per-rule packets and bytes: `enforcer_common::stats::RULE_STATS_MAP`, [`RuleStats`].
#[map]
pub static RULE_STATS: PerCpuArray<RuleStats> = PerCpuArray::pinned(MAX_RULES, 0);
/// Global datapath counters: `enforcer_common::stats::COUNTERS_MAP`, rows by [`Counter`].
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(Counter::COUNT, 0);

/// Quarantine state by device: `enforcer_common::state::DEVICE_STATE_MAP`, [`DeviceState`].
#[map]
pub static DEVICE_STATE: Array<DeviceState> = Array::pinned(MAX_DEVICES, 0);
/// Deny-event budget by device: `enforcer_common::state::EVENT_BUDGET_MAP`, [`EventBudget`].
#[map]
pub static EVENT_BUDGET: Array<EventBudget> = Array::pinned(MAX_DEVICES, 0);
/// The deny-event budget every device shares, per CPU:
/// `enforcer_common::state::EVENT_BUDGET_CPU_MAP`, one [`EventBudget`].
#[map]
pub static EVENT_BUDGET_CPU: PerCpuArray<EventBudget> = PerCpuArray::pinned(1, 0);
/// Unlisted sources by MAC: `enforcer_common::state::DISCOVERED_MAP`, [`MacKey`] to
/// [`DiscoveredDevice`].
#[map]
pub static DISCOVERED: LruHashMap<MacKey, DiscoveredDevice> = LruHashMap::pinned(MAX_DISCOVERED, 0);

/// Deny and quarantine events for the daemon: `enforcer_common::event::EVENTS_MAP`, records of
/// [`DenyEvent`](enforcer_common::event::DenyEvent).
#[map]
pub static EVENTS: RingBuf = RingBuf::pinned(EVENTS_BYTES, 0);

/// Evidence frames for the daemon's inventory: `enforcer_common::evidence::EVIDENCE_MAP`, records
/// of [`EvidenceFrame`](enforcer_common::evidence::EvidenceFrame).
#[map]
pub static EVIDENCE: RingBuf = RingBuf::pinned(EVIDENCE_BYTES, 0);
/// Evidence budget by source MAC: `enforcer_common::evidence::EVIDENCE_BUDGET_MAP`, [`MacKey`] to
/// [`EventBudget`].
#[map]
pub static EVIDENCE_BUDGET: LruHashMap<MacKey, EventBudget> =
    LruHashMap::pinned(MAX_EVIDENCE_SOURCES, 0);
/// The evidence budget every source shares, per CPU:
/// `enforcer_common::evidence::EVIDENCE_BUDGET_CPU_MAP`, one [`EventBudget`].
#[map]
pub static EVIDENCE_BUDGET_CPU: PerCpuArray<EventBudget> = PerCpuArray::pinned(1, 0);

/// Per-CPU scratch space for what does not fit the 512-byte BPF stack: the parsed packet, the
/// judged tuples and a discovery record. One entry; each run overwrites what it uses.
#[map]
pub static SCRATCH: PerCpuArray<crate::Scratch> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's last reading of the coarse clock, and the jiffy it was read in (`crate::now_ns`).
/// Not pinned: a program that starts with it empty reads the clock once.
#[map]
pub static CLOCK: PerCpuArray<crate::TickClock> = PerCpuArray::with_max_entries(1, 0);

/// The explain program's answer: `enforcer_common::explain::EXPLAIN_MAP`, one [`Explanation`].
/// Not pinned: each loaded instance has its own, so no probe ever reads another's answer and the
/// pin directory holds nothing of it.
#[map]
pub static EXPLAIN: Array<Explanation> = Array::with_max_entries(1, 0);
