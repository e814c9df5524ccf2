//! Per-CPU counters. The program only ever adds; userspace sums the CPUs when it reads.

/// `DEVICE_STATS`: `Array<DeviceStats>` of [`crate::MAX_DEVICES`] rows per CPU, CPU-major: the row
/// of device `id` on CPU `c` is [`device_stats_row`]`(c, id)` (device row 0 = unknown sources); its
/// capacity, `MAX_DEVICES` times the possible CPUs, is set at load. Each CPU writes only its own
/// rows, as in a per-CPU array, but reaching one is a single access where a per-CPU array's first
/// reads the row's per-CPU pointer: at 100,000 devices that pointer is itself a cache miss on every
/// packet (the per-packet cost issue; BENCHMARKS.md). Program writes, userspace sums the CPUs'
/// rows when it reads (and zeroes a device's rows when its id is reused for a new device name).
pub const DEVICE_STATS_MAP: &str = "DEVICE_STATS";

/// The `DEVICE_STATS` row of device `id` on CPU `cpu` (`id < MAX_DEVICES`).
#[must_use]
#[inline(always)]
pub const fn device_stats_row(cpu: u32, id: u32) -> u32 {
    cpu.wrapping_mul(crate::MAX_DEVICES).wrapping_add(id)
}
/// `RULE_STATS`: `PerCpuArray<RuleStats>`, [`crate::MAX_RULES`] rows indexed by rule id (row 0 =
/// the default verdict).
pub const RULE_STATS_MAP: &str = "RULE_STATS";
/// `COUNTERS`: `PerCpuArray<u64>`, [`Counter::COUNT`] rows indexed by [`Counter`].
pub const COUNTERS_MAP: &str = "COUNTERS";

/// Packets and bytes a device sent, by [`crate::Verdict`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DeviceStats {
    pub packets: [u64; 3],
    pub bytes: [u64; 3],
    /// Packets judged spoofed (whatever their final verdict).
    pub spoofed: u64,
    /// The datapath's coarse monotonic time (`bpf_ktime_get_coarse_ns`) of the last packet (userspace takes the maximum over CPUs).
    pub last_seen_ns: u64,
}
const _: () = assert!(core::mem::size_of::<DeviceStats>() == 64);

/// Packets and bytes a rule decided (first packets of flows, and every packet of a cached flow).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RuleStats {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<RuleStats>() == 16);

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident = $label:literal,)*) => {
        /// Global datapath counters (`COUNTERS` rows). The `Malformed*` ones sum to
        /// `enforcer_malformed_packets_total`.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Counter { $($(#[$doc])* $name,)* }

        impl Counter {
            pub const ALL: &'static [Counter] = &[$(Counter::$name,)*];
            pub const COUNT: u32 = Self::ALL.len() as u32;

            /// Label value used in metrics.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self { $(Counter::$name => $label,)* }
            }
        }
    };
}

counters! {
    /// Frame shorter than an Ethernet header, or a header runs past the end.
    MalformedTruncated = "truncated",
    /// More than two VLAN tags.
    MalformedVlan = "vlan",
    /// IPv4 header invalid: IHL < 5, total length inconsistent, version mismatch, reserved flag.
    MalformedIpv4 = "ipv4_header",
    /// IPv6 header or extension-header chain invalid, too long, or out of order.
    MalformedIpv6 = "ipv6_header",
    /// TCP/UDP/ICMP header missing, cut short, or TCP data offset < 5.
    MalformedL4 = "l4_header",
    /// Fragment invalid: tiny first fragment (RFC 1858), offset past 65535, overlap of a header.
    MalformedFragment = "fragment",
    /// Non-IP, non-ARP frames dropped.
    NonIpDropped = "non_ip",
    /// ARP passed.
    ArpPassed = "arp",
    /// IPv6 neighbour discovery, router solicitation and MLD passed.
    NdPassed = "nd",
    /// Router advertisements and redirects arriving on an enforced interface (rogue router).
    RogueRaDropped = "rogue_ra",
    /// Later fragments passed on an allowed first fragment.
    FragmentPassed = "fragment_passed",
    /// Later fragments with no allowed first fragment (dropped).
    FragmentOrphan = "fragment_orphan",
    /// Packets of a remembered flow (fast path).
    FlowHit = "flow_hit",
    /// Flow-table inserts that failed (the packet was still judged; its replies will be judged too).
    FlowInsertFailed = "flow_insert_failed",
    /// ICMP errors passed because they quote a remembered flow.
    IcmpRelated = "icmp_related",
    /// Packets dropped because no policy is loaded (fail closed).
    NoPolicy = "no_policy",
    /// Deny events written to the ring buffer.
    EventsSent = "events_sent",
    /// Deny events lost because the ring buffer was full.
    EventsDropped = "events_dropped",
    /// Deny events not sent because the device exceeded its per-second budget.
    EventsRateLimited = "events_rate_limited",
    /// Deny events not sent because all devices together exceeded this CPU's per-second budget
    /// (`state::EVENTS_PER_CPU_PER_SEC`).
    EventsGlobalLimited = "events_global_limited",
    /// Devices quarantined by the datapath.
    QuarantineTrips = "quarantine_trips",
    /// New flows refused (dropped) because their device already holds its quota of flows.
    FlowQuotaExceeded = "flow_quota_exceeded",
    /// New flows refused (dropped) because the flow table had no free place near its sweep.
    FlowTableFull = "flow_table_full",
    /// Expired flows removed from the flow table (by the sweep or by a packet that found them).
    FlowExpired = "flow_expired",
    /// TCP segments without SYN of no remembered flow that passed as replies (loose pickup).
    TcpPickedUp = "tcp_picked_up",
    /// Packets denied because they continue no remembered flow (`no_flow`).
    NoFlow = "no_flow",
    /// ARP packets dropped because they claim an address for a MAC the policy does not bind it to
    /// (the router's own address, a listed device's from another MAC, or a listed device's
    /// announcement of an address not its own): neighbour-table poisoning.
    ArpSpoofed = "arp_spoofed",
    /// Unlisted MACs recorded in `DISCOVERED` for the first time. The table is an LRU of
    /// `MAX_DISCOVERED`: this minus the entries it holds is how many were recycled for newer ones.
    DiscoveredNew = "discovered_new",
    /// Evidence frames (DHCP, mDNS, SSDP a device sent about itself) copied to `EVIDENCE`.
    EvidenceSent = "evidence_sent",
    /// Evidence frames lost because the `EVIDENCE` ring buffer was full.
    EvidenceDropped = "evidence_dropped",
    /// Evidence frames not copied because their MAC exceeded its per-second budget
    /// (`evidence::EVIDENCE_PER_MAC_PER_SEC`).
    EvidenceRateLimited = "evidence_rate_limited",
    /// Evidence frames not copied because all sources together exceeded this CPU's per-second
    /// budget (`evidence::EVIDENCE_PER_CPU_PER_SEC`).
    EvidenceGlobalLimited = "evidence_global_limited",
    /// DNS to a server other than the router's resolver, denied (`DenyReason::DnsBypass`).
    DnsBypass = "dns_bypass",
}

impl Counter {
    /// The counters of malformed packets, each a kind of `enforcer_malformed_packets_total`.
    pub const MALFORMED: [Counter; 6] = [
        Counter::MalformedTruncated,
        Counter::MalformedVlan,
        Counter::MalformedIpv4,
        Counter::MalformedIpv6,
        Counter::MalformedL4,
        Counter::MalformedFragment,
    ];
}
