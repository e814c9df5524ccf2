//! The policy maps, described once: for each, its kernel name, per-slot capacity, the slot-free key
//! and value the compiler produces, and how the slot is stamped into the key the kernel stores.
//!
//! Everything that touches every policy map loops over [`policy_maps!`]: the images in
//! [`CompiledPolicy`](super::CompiledPolicy) ([`PolicyMaps`]), map sizes and capacity checks (the
//! compiler's and the datapath's), `plan`, and the datapath's write, delete and scan-clear of a
//! slot. Adding a policy map is its types in `enforcer-common`, its `#[map]` static in
//! `enforcer-ebpf/src/maps.rs`, and here one [`PolicyMap`] impl plus one line in [`policy_maps!`].

use std::fmt::Debug;

use aya::maps::lpm_trie::Key as LpmKey;
use enforcer_common::{
    Decision, MAX_ADDRS, MAX_MACS, MAX_NETS, MAX_PAIRS, MAX_PORTS,
    identity::{
        ADDRS_V4_MAP, ADDRS_V6_MAP, AddrEntry, AddrKeyV4, AddrKeyV6, MACS_MAP, MacEntry, MacKey,
        NETS_V4_MAP, NETS_V6_MAP, NetEntry, net_key_v4, net_key_v6,
    },
    names::{MAX_NAMES, NAMES_MAP, NameEntry, NameKey},
    rules::{PAIRS_MAP, PORTS_MAP, PairKey, PairValue, PortKey},
};

/// One policy map: what the compiler fills in and how it lies in the kernel.
pub trait PolicyMap {
    /// The map's name in the XDP object (and under the pin directory).
    const NAME: &'static str;
    /// Entries per slot; the `#[map]` static holds `SLOTS` times as many.
    const CAPACITY: u32;
    /// The key without its slot, as the compiler produces it. Images are sorted by it.
    type Key: Copy + Ord + Debug;
    /// The value, stored as is.
    type Value: aya::Pod + Copy + Debug + PartialEq + Sync;
    /// The key as the kernel stores it: a [`HashKey`] or an LPM trie key.
    type Stored: Copy;
    /// The stored key of `key` in slot `slot`.
    fn stamp(slot: u8, key: &Self::Key) -> Self::Stored;
}

/// A stored key of a policy hash map (written and deleted in batches): its slot, for scans.
pub trait HashKey: aya::Pod + Sync {
    fn slot(&self) -> u8;
}

/// The slot of a stored LPM key: the first data byte, always matched in full.
#[must_use]
pub fn lpm_slot<const N: usize>(key: &LpmKey<[u8; N]>) -> u8 {
    key.data()[0]
}

/// The image of one map: (slot-free key, value), sorted by key, no duplicate keys.
pub type Image<M> = Vec<(<M as PolicyMap>::Key, <M as PolicyMap>::Value)>;

/// A network prefix: address with host bits zero, and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix<A> {
    pub addr: A,
    pub len: u8,
}

/// Key of `PAIRS`: source class, destination class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClassPair {
    pub src: u16,
    pub dst: u16,
}

/// Key of `PORTS`: pair id (from [`PairValue::pair`]), protocol, destination port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PairPort {
    pub pair: u32,
    pub proto: u8,
    pub port: u16,
}

/// `MACS`: MAC -> device.
pub struct Macs;
impl PolicyMap for Macs {
    const NAME: &'static str = MACS_MAP;
    const CAPACITY: u32 = MAX_MACS;
    type Key = [u8; 6];
    type Value = MacEntry;
    type Stored = MacKey;
    fn stamp(slot: u8, mac: &[u8; 6]) -> MacKey {
        MacKey::new(slot, *mac)
    }
}

/// `ADDRS_V4`: device and router addresses.
pub struct AddrsV4;
impl PolicyMap for AddrsV4 {
    const NAME: &'static str = ADDRS_V4_MAP;
    const CAPACITY: u32 = MAX_ADDRS;
    type Key = [u8; 4];
    type Value = AddrEntry;
    type Stored = AddrKeyV4;
    fn stamp(slot: u8, addr: &[u8; 4]) -> AddrKeyV4 {
        AddrKeyV4::new(slot, *addr)
    }
}

/// `ADDRS_V6`: device and router addresses.
pub struct AddrsV6;
impl PolicyMap for AddrsV6 {
    const NAME: &'static str = ADDRS_V6_MAP;
    const CAPACITY: u32 = MAX_ADDRS;
    type Key = [u8; 16];
    type Value = AddrEntry;
    type Stored = AddrKeyV6;
    fn stamp(slot: u8, addr: &[u8; 16]) -> AddrKeyV6 {
        AddrKeyV6::new(slot, *addr)
    }
}

/// `NETS_V4`: policy networks and enforced segments (prefix length 0..=32).
pub struct NetsV4;
impl PolicyMap for NetsV4 {
    const NAME: &'static str = NETS_V4_MAP;
    const CAPACITY: u32 = MAX_NETS;
    type Key = Prefix<[u8; 4]>;
    type Value = NetEntry;
    type Stored = LpmKey<[u8; 5]>;
    fn stamp(slot: u8, p: &Prefix<[u8; 4]>) -> LpmKey<[u8; 5]> {
        // The slot byte leads the key and is always matched in full.
        LpmKey::new(8 + u32::from(p.len), net_key_v4(slot, p.addr))
    }
}

/// `NETS_V6`: policy networks and enforced segments (prefix length 0..=128).
pub struct NetsV6;
impl PolicyMap for NetsV6 {
    const NAME: &'static str = NETS_V6_MAP;
    const CAPACITY: u32 = MAX_NETS;
    type Key = Prefix<[u8; 16]>;
    type Value = NetEntry;
    type Stored = LpmKey<[u8; 17]>;
    fn stamp(slot: u8, p: &Prefix<[u8; 16]>) -> LpmKey<[u8; 17]> {
        LpmKey::new(8 + u32::from(p.len), net_key_v6(slot, p.addr))
    }
}

/// `PAIRS`: (source class, destination class) -> per-protocol decisions and the pair id.
pub struct Pairs;
impl PolicyMap for Pairs {
    const NAME: &'static str = PAIRS_MAP;
    const CAPACITY: u32 = MAX_PAIRS;
    type Key = ClassPair;
    type Value = PairValue;
    type Stored = PairKey;
    fn stamp(slot: u8, k: &ClassPair) -> PairKey {
        PairKey::new(slot, k.src, k.dst)
    }
}

/// `PORTS`: (pair id, protocol, destination port) -> decision.
pub struct Ports;
impl PolicyMap for Ports {
    const NAME: &'static str = PORTS_MAP;
    const CAPACITY: u32 = MAX_PORTS;
    type Key = PairPort;
    type Value = Decision;
    type Stored = PortKey;
    fn stamp(slot: u8, k: &PairPort) -> PortKey {
        PortKey::new(slot, k.pair, k.proto, k.port)
    }
}

/// `NAMES`: name id -> the pattern's class; id 0 holds the `dns:` settings (`policy::names`).
pub struct Names;
impl PolicyMap for Names {
    const NAME: &'static str = NAMES_MAP;
    const CAPACITY: u32 = MAX_NAMES;
    type Key = u32;
    type Value = NameEntry;
    type Stored = NameKey;
    fn stamp(slot: u8, name: &u32) -> NameKey {
        NameKey::new(slot, *name)
    }
}

macro_rules! hash_keys {
    ($($t:ty),* $(,)?) => {
        $(impl HashKey for $t {
            fn slot(&self) -> u8 {
                self.slot
            }
        })*
    };
}
hash_keys!(MacKey, AddrKeyV4, AddrKeyV6, PairKey, PortKey, NameKey);

/// The table of policy maps: `field: Descriptor` per map, in the order they are written. Calls
/// `$then!` with the list, so each consumer expands it with the concrete types (and can require
/// of them what it needs, e.g. the datapath's storage trait).
macro_rules! policy_maps {
    ($then:ident) => {
        $then! {
            macs: $crate::policy::maps::Macs,
            addrs_v4: $crate::policy::maps::AddrsV4,
            addrs_v6: $crate::policy::maps::AddrsV6,
            nets_v4: $crate::policy::maps::NetsV4,
            nets_v6: $crate::policy::maps::NetsV6,
            pairs: $crate::policy::maps::Pairs,
            ports: $crate::policy::maps::Ports,
            names: $crate::policy::maps::Names,
        }
    };
}
pub(crate) use policy_maps;

/// Entries and capacity of one map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapUsage {
    pub name: &'static str,
    pub entries: usize,
    /// Per slot.
    pub capacity: u32,
}

impl MapUsage {
    #[must_use]
    pub const fn over_capacity(&self) -> bool {
        self.entries > self.capacity as usize
    }
}

macro_rules! define_images {
    ($($field:ident: $map:ty),* $(,)?) => {
        /// The image of every policy map, without slots.
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct PolicyMaps {
            $(
                #[doc = concat!("The `", stringify!($field), "` image; see [`", stringify!($map), "`].")]
                pub $field: Image<$map>,
            )*
        }

        impl PolicyMaps {
            /// Entries and capacity of every map, in table order.
            #[must_use]
            pub fn usage(&self) -> Vec<MapUsage> {
                vec![$(MapUsage {
                    name: <$map as PolicyMap>::NAME,
                    entries: self.$field.len(),
                    capacity: <$map as PolicyMap>::CAPACITY,
                }),*]
            }
        }
    };
}
policy_maps!(define_images);

/// What turns a slot holding image `held` into one holding image `new` (both sorted by key with no
/// duplicate key, as every image is): the keys `new` lacks, to remove, and the entries `new` adds
/// or gives another value, to write. One merge of the two sorted images; an entry both hold alike
/// is in neither list.
pub fn image_diff<K: Ord + Copy, V: PartialEq + Copy>(
    held: &[(K, V)],
    new: &[(K, V)],
) -> (Vec<K>, Vec<(K, V)>) {
    let (mut stale, mut fresh) = (Vec::new(), Vec::new());
    let (mut h, mut n) = (held.iter().peekable(), new.iter().peekable());
    loop {
        match (h.peek(), n.peek()) {
            (Some((hk, hv)), Some((nk, nv))) => match hk.cmp(nk) {
                std::cmp::Ordering::Less => {
                    stale.push(*hk);
                    h.next();
                }
                std::cmp::Ordering::Greater => {
                    fresh.push((*nk, *nv));
                    n.next();
                }
                std::cmp::Ordering::Equal => {
                    if hv != nv {
                        fresh.push((*nk, *nv));
                    }
                    h.next();
                    n.next();
                }
            },
            (Some((hk, _)), None) => {
                stale.push(*hk);
                h.next();
            }
            (None, Some(entry)) => {
                fresh.push(**entry);
                n.next();
            }
            (None, None) => return (stale, fresh),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::image_diff;

    #[test]
    fn an_image_diff_removes_what_is_gone_and_writes_only_what_is_new_or_changed() {
        let held = [(1, 'a'), (3, 'c'), (5, 'e'), (7, 'g')];
        let new = [(2, 'b'), (3, 'c'), (5, 'E'), (8, 'h'), (9, 'i')];
        let (stale, fresh) = image_diff(&held, &new);
        assert_eq!(stale, [1, 7]);
        assert_eq!(fresh, [(2, 'b'), (5, 'E'), (8, 'h'), (9, 'i')]);
    }

    #[test]
    fn an_image_diff_from_or_to_nothing_is_the_whole_image() {
        let image = [(1, 'a'), (2, 'b')];
        assert_eq!(image_diff(&[], &image), (vec![], image.to_vec()));
        assert_eq!(image_diff(&image, &[]), (vec![1, 2], vec![]));
        assert_eq!(image_diff(&image, &image), (vec![], vec![]));
    }

    /// Applying the diff to `held` as a map gives `new`, for images drawn from a small key space
    /// (so that keys are often shared, added and removed).
    #[test]
    fn applying_an_image_diff_to_the_held_image_gives_the_new_one() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let mut image = || {
                let mut m = std::collections::BTreeMap::new();
                for _ in 0..next() % 24 {
                    m.insert(next() % 32, next() % 3);
                }
                m.into_iter().collect::<Vec<_>>()
            };
            let (held, new) = (image(), image());
            let (stale, fresh) = image_diff(&held, &new);
            let mut slot: std::collections::BTreeMap<_, _> = held.iter().copied().collect();
            for k in &stale {
                assert!(slot.remove(k).is_some(), "{k} removed but not held");
            }
            for (k, v) in &fresh {
                assert_ne!(slot.insert(*k, *v), Some(*v), "{k} written unchanged");
            }
            assert_eq!(slot.into_iter().collect::<Vec<_>>(), new);
        }
    }
}
