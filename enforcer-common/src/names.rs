//! DNS-name destinations (`dns:NAME` in a policy): which addresses a device may reach under a name
//! rule, because the enforcer's resolver answered that device's question with them.
//!
//! Two maps. `NAMES` is a policy map (double-buffered by slot, written with the policy): each name
//! pattern's class in that slot, plus the policy's `dns:` settings. `BINDINGS` is not a policy
//! map: the resolver writes it at run time, one entry per (device, address), before it relays the
//! answer, and entries outlive reloads (they hold stable name ids, not classes).

/// `NAMES`: `HashMap<NameKey, NameEntry>`, capacity `2 * MAX_NAMES` (two slots), no prealloc.
/// Written by userspace only, with the policy. Key name id [`NAMES_SETTINGS`] holds the policy's
/// `dns:` settings; without that entry the policy has no `dns:` section and nothing here applies.
pub const NAMES_MAP: &str = "NAMES";
/// `BINDINGS`: `LruHashMap<BindingKey, BindingValue>`, capacity [`MAX_BINDINGS`]. Written by the
/// resolver (userspace) before it relays an answer; read by the program. When full, the least
/// recently used binding is evicted first; expired bindings allow nothing but stay until evicted
/// or overwritten.
pub const BINDINGS_MAP: &str = "BINDINGS";

/// Per-slot capacity of `NAMES` in name patterns (ids `1..MAX_NAMES`).
pub const MAX_NAMES: u32 = 4_096;
/// Capacity of `BINDINGS` in (device, address) pairs: 64 bytes of value each, 4 MiB at most.
pub const MAX_BINDINGS: u32 = 65_536;
/// Name patterns one (device, address) binding can hold at once; a further name evicts the one
/// that expires first.
pub const NAMES_PER_BINDING: usize = 4;
/// Most addresses the resolver binds from one answer (NPEP-133 asks for at least 100).
pub const MAX_ADDRS_PER_ANSWER: usize = 100;
/// Name id of the `NAMES` entry that holds the policy's `dns:` settings.
pub const NAMES_SETTINGS: u32 = 0;

/// Key of `NAMES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct NameKey {
    /// Stable name id, or [`NAMES_SETTINGS`].
    pub name: u32,
    pub slot: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<NameKey>() == 8);

impl NameKey {
    #[must_use]
    #[inline(always)]
    pub const fn new(slot: u8, name: u32) -> Self {
        Self {
            name,
            slot,
            _pad: [0; 3],
        }
    }
}

/// Value of `NAMES`: a pattern's class (the destination class rules with `to: dns:PATTERN`
/// compile against); for [`NAMES_SETTINGS`], `grace_s` is `dns.grace` and `class` is 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct NameEntry {
    pub class: u16,
    pub _pad: u16,
    /// Seconds flows opened under a binding outlive its expiry (settings entry only).
    pub grace_s: u32,
}
const _: () = assert!(core::mem::size_of::<NameEntry>() == 8);

/// Key of `BINDINGS`: the device that asked and an address its answer held. `addr` is the
/// address's network-order bytes as words (`identity::words`); IPv4 in the first word, the rest 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct BindingKey {
    pub addr: [u32; 4],
    /// Device id (`UNKNOWN_DEVICE` for every unlisted source: they share one set).
    pub device: u32,
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<BindingKey>() == 24);

impl BindingKey {
    #[must_use]
    #[inline(always)]
    pub const fn new(device: u32, family: u8, addr: [u32; 4]) -> Self {
        Self {
            addr,
            device,
            family,
            _pad: [0; 3],
        }
    }
}

/// One name an address is bound to for a device, until `expires_ns` (`CLOCK_MONOTONIC`, as the
/// program reads it with `bpf_ktime_get_coarse_ns`). `name` 0 marks an unused entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct NameBinding {
    pub expires_ns: u64,
    pub name: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<NameBinding>() == 16);

/// Value of `BINDINGS`: the names the address is bound to for the device.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct BindingValue {
    pub names: [NameBinding; NAMES_PER_BINDING],
}
const _: () = assert!(core::mem::size_of::<BindingValue>() == 64);

impl BindingValue {
    /// This binding with `name` bound until `expires_ns`: its entry extended (never shortened),
    /// else an unused entry, else the entry that expires first replaced.
    #[must_use]
    pub fn with(mut self, name: u32, expires_ns: u64) -> Self {
        let same = self.names.iter().position(|b| b.name == name);
        let unused = self.names.iter().position(|b| b.name == 0);
        let mut first = 0;
        for (i, b) in self.names.iter().enumerate() {
            if b.expires_ns < self.names[first].expires_ns {
                first = i;
            }
        }
        let target = same.or(unused).unwrap_or(first);
        let keep = if same.is_some() {
            self.names[target].expires_ns
        } else {
            0
        };
        self.names[target] = NameBinding {
            expires_ns: expires_ns.max(keep),
            name,
            _pad: 0,
        };
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_bound_again_is_extended_not_shortened() {
        let v = BindingValue::default().with(3, 100).with(3, 50);
        assert_eq!(v.names[0].expires_ns, 100);
        assert_eq!(v.with(3, 200).names[0].expires_ns, 200);
        assert_eq!(v.names.iter().filter(|b| b.name == 3).count(), 1);
    }

    #[test]
    fn a_full_binding_replaces_the_name_that_expires_first() {
        let v = BindingValue::default()
            .with(1, 40)
            .with(2, 10)
            .with(3, 30)
            .with(4, 20)
            .with(5, 50);
        let names: [u32; 4] = core::array::from_fn(|i| v.names[i].name);
        assert_eq!(names, [1, 5, 3, 4]);
    }
}
