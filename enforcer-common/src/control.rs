//! The two small arrays every packet reads first: which policy slot is live, and that slot's settings.

use crate::Decision;

/// `CONTROL`: `Array<Control>` with one entry (index 0). Written by userspace on every policy switch
/// (one store of the whole entry); the program bumps `epoch` by 2 when it quarantines a device.
pub const CONTROL_MAP: &str = "CONTROL";

/// `CONFIG`: `Array<PolicyConfig>` with [`crate::SLOTS`] entries, indexed by slot. Userspace writes the
/// idle slot's entry before flipping [`Control::epoch`].
pub const CONFIG_MAP: &str = "CONFIG";

/// The live-policy word.
///
/// `epoch & 1` is the active slot. Every change that can alter a verdict (a policy switch, a
/// quarantine or a release) increases `epoch`, which invalidates every cached flow (their stored
/// epoch no longer matches) without touching the flow table. The kernel bumps it by 2 so the slot bit
/// is kept; userspace moves it to the next value whose low bit is the new slot.
///
/// A provisional policy (`enforcer apply --confirm`) is live in `epoch`'s slot while the other slot
/// keeps the last confirmed one, and `revert_at_ns` says when the kernel itself goes back to it:
/// from then on every packet is judged by [`Control::epoch_at`], one past `epoch`, so the other
/// slot and an epoch no flow opened under the candidate carries. The revert needs no process, so
/// it happens on time even when the daemon is dead; the daemon later makes it permanent (the
/// previous slot live in `epoch`, `revert_at_ns` 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Control {
    pub epoch: u64,
    /// [`crate::LAYOUT_VERSION`] of whoever created the pinned maps; 0 before the first policy.
    pub layout: u32,
    pub _pad: u32,
    /// When the provisional policy in `epoch`'s slot stops being enforced: `CLOCK_MONOTONIC`
    /// nanoseconds as the program reads them (`bpf_ktime_get_coarse_ns`); 0 = nothing pending.
    pub revert_at_ns: u64,
}
const _: () = assert!(core::mem::size_of::<Control>() == 24);

impl Control {
    /// The slot of `epoch` (the candidate's while one is pending; see [`Control::epoch_at`]).
    #[must_use]
    #[inline(always)]
    pub const fn slot(&self) -> u8 {
        slot_of(self.epoch)
    }

    /// The epoch that judges a packet at `now`: `epoch`, or once a pending candidate's deadline
    /// has passed, `epoch + 1`, whose low bit is the other slot (the last confirmed policy) and
    /// which no flow remembered under the candidate carries, so those flows are judged again.
    /// One compare: `0 - 1` wraps to the largest value, which no clock reaches.
    #[must_use]
    #[inline(always)]
    pub const fn epoch_at(&self, now: u64) -> u64 {
        self.epoch + (self.revert_at_ns.wrapping_sub(1) < now) as u64
    }

    /// Whether a provisional policy was pending and its deadline has passed at `now`.
    #[must_use]
    #[inline(always)]
    pub const fn reverted_at(&self, now: u64) -> bool {
        self.epoch_at(now) != self.epoch
    }

    /// The epoch that makes `slot` live: the next one after `self.epoch` with that low bit.
    #[must_use]
    #[inline(always)]
    pub const fn next_epoch_for(&self, slot: u8) -> u64 {
        let next = self.epoch + 1;
        if (next & 1) as u8 == slot {
            next
        } else {
            next + 1
        }
    }
}

/// The policy slot an epoch makes live: its low bit.
#[must_use]
#[inline(always)]
pub const fn slot_of(epoch: u64) -> u8 {
    (epoch & 1) as u8
}

/// Per-slot policy settings.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PolicyConfig {
    /// Policy generation (counts applied policies, shown in metrics); 0 means "no policy in this slot".
    pub generation: u64,
    /// `defaults.action` (rule 0).
    pub default: Decision,
    /// [`crate::Mode`] of `defaults.mode`: the mode of network sources and the router (zones and
    /// devices set their own, see [`CONFIG_F_UNKNOWN_AUDIT`]).
    pub mode: u8,
    /// `defaults.spoofed`: [`crate::Action::Allow`] or [`crate::Action::Deny`].
    pub spoofed: u8,
    /// Class of the sources and destinations that resolve to nothing (`defaults.unknown`).
    pub unknown_class: u16,
    /// Class of the router's own addresses (and of broadcast, multicast and link-local destinations).
    pub router_class: u16,
    /// Class a quarantined device is moved to; 0 when the policy has no quarantine zone.
    pub quarantine_class: u16,
    /// Quarantine trigger: this many denied packets within `quarantine_window_ms` (0 = off).
    pub quarantine_denied: u32,
    pub quarantine_window_ms: u32,
    /// How long an automatic quarantine lasts, in seconds (0 = until released by hand).
    pub quarantine_release_s: u32,
    /// Bit flags, `CONFIG_F_*`.
    pub flags: u32,
    /// Most flows one device (or the unknown sources together, or one network) may hold in
    /// `FLOWS` (`limits.flows_per_device`); 0 means no quota.
    pub flows_per_device: u32,
    /// `dns.grace` in seconds when [`CONFIG_F_NAMES`] is set. The same as the `NAMES` settings
    /// entry's, here so a judged packet learns whether name rules apply from the entry it has
    /// already read, not from a hash lookup.
    pub dns_grace_s: u32,
}
const _: () = assert!(core::mem::size_of::<PolicyConfig>() == 48);

/// Quarantine a listed device whose traffic is judged spoofed.
pub const CONFIG_F_QUARANTINE_ON_SPOOF: u32 = 1;
/// Sources the policy does not list are in audit (the `defaults.unknown` zone's `mode:`). Listed
/// devices carry their own mode on their identity entries (`identity::MAC_F_AUDIT`,
/// `identity::SRC_F_AUDIT`); networks and the router have `mode` (`defaults.mode`).
pub const CONFIG_F_UNKNOWN_AUDIT: u32 = 2;
/// The policy has a `dns:` section: name rules and the `dns_bypass` check apply.
pub const CONFIG_F_NAMES: u32 = 4;
