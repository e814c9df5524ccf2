//! Per-device state the program keeps beyond counters: quarantine and the deny-event budget, and
//! the discovery table of sources the policy does not list.

/// `DEVICE_STATE`: `Array<DeviceState>`, [`crate::MAX_DEVICES`] rows by device id. Written by the
/// program (automatic quarantine) and by userspace (`enforcer quarantine` / `release`).
pub const DEVICE_STATE_MAP: &str = "DEVICE_STATE";
/// `EVENT_BUDGET`: `Array<EventBudget>`, [`crate::MAX_DEVICES`] rows by device id. Program only.
pub const EVENT_BUDGET_MAP: &str = "EVENT_BUDGET";
/// `DISCOVERED`: `LruHashMap<MacKey, DiscoveredDevice>` (key slot always 0), capacity
/// [`MAX_DISCOVERED`]. Program writes; userspace reads for `enforcer devices`.
pub const DISCOVERED_MAP: &str = "DISCOVERED";
pub const MAX_DISCOVERED: u32 = 16_384;

/// Deny events a device may cause per second before the rest are only counted.
pub const EVENTS_PER_DEVICE_PER_SEC: u32 = 10;

/// `EVENT_BUDGET_CPU`: `PerCpuArray<EventBudget>`, one row: the budget all devices share on each
/// CPU. Program only.
pub const EVENT_BUDGET_CPU_MAP: &str = "EVENT_BUDGET_CPU";
/// Deny events all devices together may cause per second on one CPU. The per-device budget alone
/// lets a scan from many sources (each with a fresh budget) write an event per packet: this bounds
/// the ring buffer's traffic, the daemon's work and the log at this times the CPU count.
pub const EVENTS_PER_CPU_PER_SEC: u32 = 100;

/// Why a device is quarantined.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuarantineReason {
    None = 0,
    DeniedPackets = 1,
    Spoofing = 2,
    Tripwire = 3,
    Operator = 4,
}

impl QuarantineReason {
    #[must_use]
    pub const fn from_u32(v: u32) -> Self {
        match v {
            1 => Self::DeniedPackets,
            2 => Self::Spoofing,
            3 => Self::Tripwire,
            4 => Self::Operator,
            _ => Self::None,
        }
    }

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::DeniedPackets => "denied_packets",
            Self::Spoofing => "spoofing",
            Self::Tripwire => "tripwire",
            Self::Operator => "operator",
        }
    }
}

/// `quarantine_until_ns` meaning "until released by hand".
pub const QUARANTINE_FOREVER: u64 = u64::MAX;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DeviceState {
    /// Coarse monotonic time (`bpf_ktime_get_coarse_ns`, CLOCK_MONOTONIC_COARSE) until which the device is quarantined; 0 = not.
    pub quarantine_until_ns: u64,
    /// Start of the current denied-packet window.
    pub deny_window_start_ns: u64,
    pub deny_count: u32,
    /// [`QuarantineReason`].
    pub quarantine_reason: u32,
}
const _: () = assert!(core::mem::size_of::<DeviceState>() == 24);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EventBudget {
    pub window_start_ns: u64,
    pub count: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<EventBudget>() == 16);

/// A source MAC the policy does not list, as the program saw it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DiscoveredDevice {
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub packets: u64,
    pub ifindex: u32,
    /// Innermost VLAN id, 0 when untagged.
    pub vlan: u16,
    /// Non-zero when `v4` / `v6` hold an address seen from it.
    pub has_v4: u8,
    pub has_v6: u8,
    /// Addresses as words (`identity::words`).
    pub v4: u32,
    pub v6: [u32; 4],
    /// Last destination it tried to reach (IPv4 in the first word), port and protocol.
    pub last_dst: [u32; 4],
    pub last_dport: u16,
    pub last_proto: u8,
    pub last_family: u8,
}
const _: () = assert!(core::mem::size_of::<DiscoveredDevice>() == 72);
