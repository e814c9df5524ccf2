//! The contract between the XDP program (`enforcer-ebpf`) and userspace (`enforcer`).
//!
//! Every map the program reads or writes is named, sized and typed here and nowhere else. Types are
//! plain `#[repr(C)]` structs of fixed-width integers and byte arrays, with explicit, zeroed padding
//! (uninitialised padding in a hash key makes lookups miss) and a size assertion each. Addresses and
//! other wire fields are kept in network byte order as byte arrays; the LPM tries need that anyway.
//!
//! Policy maps are double-buffered: every key carries a `slot` (0 or 1). The program reads the active
//! slot once per packet from [`control::Control`], so a reload writes the whole new policy into the
//! idle slot and then flips one word: a packet sees the old policy or the new one, never a mix.
//! The map layout is described for operators in `docs/datapath.md` (section 2, Maps).
#![no_std]

pub mod bench;
pub mod control;
pub mod event;
pub mod evidence;
pub mod explain;
pub mod flow;
pub mod identity;
pub mod names;
pub mod rules;
pub mod state;
pub mod stats;

/// Name of the XDP program symbol; aya finds programs by function name.
pub const PROGRAM: &str = "enforcer_xdp";
/// Name of the egress (TC) program symbol: judges the router's own packets on the way out
/// (`enforcer-ebpf/src/egress.rs`); it shares every map with [`PROGRAM`].
pub const EGRESS_PROGRAM: &str = "enforcer_egress";

/// Version of this map layout. Pinned maps carry it in [`control::Control::layout`]; a daemon never
/// adopts pins of another layout (it refuses and says how to detach), so a key-size change can't be
/// misread silently.
pub const LAYOUT_VERSION: u32 = 9;

/// Number of policy slots (double buffering).
pub const SLOTS: u32 = 2;

/// Device id 0 is every source that is no listed device: the "unknown" bucket. Listed devices get
/// ids `1..MAX_DEVICES`, stable across reloads while their name is unchanged.
pub const UNKNOWN_DEVICE: u32 = 0;
/// Rule id 0 is the default verdict; policy rules get ids `1..MAX_RULES`, stable by name.
pub const DEFAULT_RULE: u32 = 0;

/// Rows of the per-device arrays (`DEVICE_STATS`, `DEVICE_STATE`, `EVENT_BUDGET`): listed devices
/// take ids `1..NETWORK_DEVICE_BASE`, each policy network one of the last [`MAX_NETWORKS`] rows,
/// so traffic from a network (the internet's replies, say) is counted apart from unknown devices.
pub const MAX_DEVICES: u32 = 131_072;
/// Capacity in policy networks (ids `1..MAX_NETWORKS`).
pub const MAX_NETWORKS: u32 = 4_096;
/// First row of the per-device arrays that belongs to a network rather than a listed device.
pub const NETWORK_DEVICE_BASE: u32 = MAX_DEVICES - MAX_NETWORKS;

/// The per-device row that counts what network `network` sends.
#[must_use]
#[inline(always)]
pub const fn network_device(network: u32) -> u32 {
    if network != 0 && network < MAX_NETWORKS {
        NETWORK_DEVICE_BASE + network
    } else {
        UNKNOWN_DEVICE
    }
}

/// The per-device row of the router itself: what the egress program judges the router to send.
/// Network ids start at 1, so the first network row is free for it; it is never a listed device
/// (never quarantined).
pub const ROUTER_DEVICE: u32 = NETWORK_DEVICE_BASE;

/// Whether a per-device row is a listed device (not unknown, not a network): only those are
/// quarantined.
#[must_use]
#[inline(always)]
pub const fn is_listed_device(device: u32) -> bool {
    device != UNKNOWN_DEVICE && device < NETWORK_DEVICE_BASE
}
/// Capacity in rules (ids), rows of the per-rule counters.
pub const MAX_RULES: u32 = 16_384;
/// Per-slot capacity of the MAC table.
pub const MAX_MACS: u32 = 131_072;
/// Per-slot capacity of each exact-address table (one for IPv4, one for IPv6).
pub const MAX_ADDRS: u32 = 262_144;
/// Per-slot capacity of each network LPM trie.
pub const MAX_NETS: u32 = 4_096;
/// Per-slot capacity of the class-pair table.
pub const MAX_PAIRS: u32 = 131_072;
/// Per-slot capacity of the port table.
pub const MAX_PORTS: u32 = 262_144;
/// Classes are `u16`; 0 is never used, so a zeroed value is recognisably empty.
pub const MAX_CLASSES: u32 = 65_535;

/// What a rule or a default says about a packet.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// No rule says anything: fall through to the next, more general, decision.
    None = 0,
    Allow = 1,
    Deny = 2,
}

impl Action {
    #[must_use]
    #[inline(always)]
    pub const fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Allow,
            2 => Self::Deny,
            _ => Self::None,
        }
    }
}

/// A compiled decision: the action and the rule that made it (for accounting and logs).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Decision {
    pub rule: u32,
    pub action: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<Decision>() == 8);

impl Decision {
    pub const NONE: Self = Self {
        rule: 0,
        action: Action::None as u8,
        _pad: [0; 3],
    };

    #[must_use]
    #[inline(always)]
    pub const fn new(action: Action, rule: u32) -> Self {
        Self {
            rule,
            action: action as u8,
            _pad: [0; 3],
        }
    }

    #[must_use]
    #[inline(always)]
    pub const fn action(&self) -> Action {
        Action::from_u8(self.action)
    }

    #[must_use]
    #[inline(always)]
    pub const fn is_set(&self) -> bool {
        self.action != Action::None as u8
    }
}

/// What finally happened to a packet, as counted. `Audit` is a would-be drop let through in audit mode.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Allow = 0,
    Deny = 1,
    Audit = 2,
}

impl Verdict {
    pub const COUNT: usize = 3;
    pub const ALL: [Self; Self::COUNT] = [Self::Allow, Self::Deny, Self::Audit];

    /// Metric label value.
    #[must_use]
    #[inline(always)]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Audit => "audit",
        }
    }
}

/// Enforcement mode, per policy.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Enforce = 0,
    Audit = 1,
}

/// IP family as stored in keys.
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// IP protocol numbers the policy speaks of.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

#[cfg(feature = "user")]
mod pod {
    //! `aya::Pod` for every map key and value.
    //!
    //! SAFETY (for every impl below): each type is `#[repr(C)]`, built only from integers and byte
    //! arrays, has no implicit padding (checked by the size assertions beside each type), and every
    //! bit pattern is a valid value.
    macro_rules! pod {
        ($($t:ty),* $(,)?) => {
            $(
                // SAFETY: see the module comment.
                unsafe impl aya::Pod for $t {}
            )*
        };
    }
    pod!(
        crate::Decision,
        crate::bench::BenchEntry,
        crate::bench::BenchConfig,
        crate::control::Control,
        crate::control::PolicyConfig,
        crate::identity::MacKey,
        crate::identity::MacEntry,
        crate::identity::AddrKeyV4,
        crate::identity::AddrKeyV6,
        crate::identity::AddrEntry,
        crate::identity::NetEntry,
        crate::rules::PairKey,
        crate::rules::PairValue,
        crate::rules::PortKey,
        crate::flow::FlowKey,
        crate::flow::FlowValue,
        crate::flow::FragKey,
        crate::flow::FragValue,
        crate::stats::DeviceStats,
        crate::stats::RuleStats,
        crate::state::DeviceState,
        crate::state::EventBudget,
        crate::state::DiscoveredDevice,
        crate::event::DenyEvent,
        crate::evidence::EvidenceFrame,
        crate::explain::Explanation,
        crate::names::NameKey,
        crate::names::NameEntry,
        crate::names::BindingKey,
        crate::names::BindingValue,
    );
}
