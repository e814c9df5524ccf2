//! Who sent a packet and where it goes: exact-match tables for devices and the router, LPM tries
//! for the few network prefixes.
//!
//! Identity is deliberately exact-match (hash) for devices: a hash lookup stays in the tens of
//! nanoseconds at 100,000 entries where an LPM trie costs hundreds. Networks (`networks:` in the
//! policy) are few and live in the tries.

/// `MACS`: `HashMap<MacKey, MacEntry>`, capacity `2 * MAX_MACS` (two slots), no prealloc.
/// Written by userspace only. One entry per listed device that declares a `mac`.
pub const MACS_MAP: &str = "MACS";
/// `ADDRS_V4`: `HashMap<AddrKeyV4, AddrEntry>`, capacity `2 * MAX_ADDRS`, no prealloc. Userspace only.
/// Device addresses and the router's own addresses.
pub const ADDRS_V4_MAP: &str = "ADDRS_V4";
/// `ADDRS_V6`: `HashMap<AddrKeyV6, AddrEntry>`, capacity `2 * MAX_ADDRS`, no prealloc. Userspace only.
pub const ADDRS_V6_MAP: &str = "ADDRS_V6";
/// `NETS_V4`: `LpmTrie<[u8; 5], NetEntry>`, capacity `2 * MAX_NETS`. Key data is `[slot, a, b, c, d]`
/// with prefix length `8 + cidr_len`, so the slot byte is always matched in full.
pub const NETS_V4_MAP: &str = "NETS_V4";
/// `NETS_V6`: `LpmTrie<[u8; 17], NetEntry>`, capacity `2 * MAX_NETS`, key data `[slot, addr..16]`.
pub const NETS_V6_MAP: &str = "NETS_V6";

/// Key of `MACS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MacKey {
    pub mac: [u8; 6],
    pub slot: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<MacKey>() == 8);

impl MacKey {
    #[must_use]
    #[inline(always)]
    pub const fn new(slot: u8, mac: [u8; 6]) -> Self {
        Self { mac, slot, _pad: 0 }
    }
}

/// Value of `MACS`: the device that owns the MAC.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MacEntry {
    pub device: u32,
    pub class: u16,
    /// `MAC_F_*`.
    pub flags: u16,
    /// One IPv4 address of the device, as `AddrKeyV4::addr` holds it, or 0. A packet from this MAC
    /// with this source address is the device itself, so the program resolves it without the
    /// `ADDRS_V4` lookup (one hash lookup per judged packet, a cache miss at 100,000 devices). The
    /// compiler sets it only where `ADDRS_V4` maps the address to this very device, so the answer
    /// is the one the lookup would give.
    pub v4: u32,
    pub _pad: u32,
}

/// The device lists no addresses: its MAC alone identifies it, whatever source address it uses.
pub const MAC_F_ANY_ADDR: u16 = 1;
/// The device is in audit (`mode: audit`, its own or its zone's): what it sends that the policy
/// would deny passes and is counted as `audit`. [`SRC_F_AUDIT`] says the same on its addresses.
pub const MAC_F_AUDIT: u16 = 2;
const _: () = assert!(core::mem::size_of::<MacEntry>() == 16);

/// Key of `ADDRS_V4`. `addr` holds the address's network-order bytes as they lie in memory
/// (`u32::from_ne_bytes(octets)`), so the program copies it from the header as one word.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AddrKeyV4 {
    pub addr: u32,
    pub slot: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<AddrKeyV4>() == 8);

impl AddrKeyV4 {
    #[must_use]
    #[inline(always)]
    pub const fn new(slot: u8, octets: [u8; 4]) -> Self {
        Self {
            addr: u32::from_ne_bytes(octets),
            slot,
            _pad: [0; 3],
        }
    }
}

/// Key of `ADDRS_V6`: the address's network-order bytes as four words (see [`words`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AddrKeyV6 {
    pub addr: [u32; 4],
    pub slot: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<AddrKeyV6>() == 20);

impl AddrKeyV6 {
    #[must_use]
    #[inline(always)]
    pub const fn new(slot: u8, octets: [u8; 16]) -> Self {
        Self {
            addr: words(octets),
            slot,
            _pad: [0; 3],
        }
    }
}

/// An address's network-order bytes as the four words they occupy in memory. Keys hold addresses
/// this way (aligned words copy and compare in four instructions where bytes take sixteen); IPv4
/// uses the first word and leaves the rest zero.
#[must_use]
#[inline(always)]
pub const fn words(o: [u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([o[0], o[1], o[2], o[3]]),
        u32::from_ne_bytes([o[4], o[5], o[6], o[7]]),
        u32::from_ne_bytes([o[8], o[9], o[10], o[11]]),
        u32::from_ne_bytes([o[12], o[13], o[14], o[15]]),
    ]
}

/// The inverse of [`words`].
#[must_use]
#[inline(always)]
pub const fn octets(w: [u32; 4]) -> [u8; 16] {
    let (a, b, c, d) = (
        w[0].to_ne_bytes(),
        w[1].to_ne_bytes(),
        w[2].to_ne_bytes(),
        w[3].to_ne_bytes(),
    );
    [
        a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1], d[2],
        d[3],
    ]
}

/// An address kept as [`words`] as the `IpAddr` it is: `family` is `FAMILY_V4` (the first word)
/// or `FAMILY_V6`. For userspace; the programs compare words.
#[must_use]
pub fn ip_addr(family: u8, w: [u32; 4]) -> core::net::IpAddr {
    let o = octets(w);
    if family == crate::FAMILY_V4 {
        core::net::IpAddr::V4(core::net::Ipv4Addr::new(o[0], o[1], o[2], o[3]))
    } else {
        core::net::IpAddr::V6(core::net::Ipv6Addr::from(o))
    }
}

/// The address belongs to a listed device.
pub const ADDR_KIND_DEVICE: u8 = 0;
/// The address is one of the router's own.
pub const ADDR_KIND_ROUTER: u8 = 1;

/// Destination flag: any packet to it is a tripwire (`quarantine.when.touches`).
pub const DST_F_TRIPWIRE: u8 = 1;
/// Network-trie flag: the subnet of an enforced interface (not a policy network). An address there
/// that the policy does not list is a device on the segment, so it is unknown (discovered,
/// quarantined), never a member of a wider network such as `internet: 0.0.0.0/0`.
pub const NET_F_ONLINK: u8 = 2;
/// Address flag (`AddrEntry::flags`, read only when the entry resolves a source): the device is in
/// audit, as [`MAC_F_AUDIT`] says on its MAC.
pub const SRC_F_AUDIT: u8 = 4;

/// Value of `ADDRS_V4` and `ADDRS_V6`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AddrEntry {
    /// Device id ([`crate::UNKNOWN_DEVICE`] for router addresses).
    pub device: u32,
    pub class: u16,
    /// [`ADDR_KIND_DEVICE`] or [`ADDR_KIND_ROUTER`].
    pub kind: u8,
    /// `DST_F_*`.
    pub flags: u8,
    /// The device's MAC when the policy binds one, else all zero (address-only identity).
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<AddrEntry>() == 16);

impl AddrEntry {
    #[must_use]
    #[inline(always)]
    pub fn has_mac(&self) -> bool {
        self.mac != [0; 6]
    }
}

/// Value of `NETS_V4` and `NETS_V6`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct NetEntry {
    /// Network id (stable by name), for display.
    pub network: u32,
    pub class: u16,
    /// `DST_F_*`.
    pub flags: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<NetEntry>() == 8);

/// LPM key data for `NETS_V4`: the slot byte then the address.
#[must_use]
#[inline(always)]
pub const fn net_key_v4(slot: u8, addr: [u8; 4]) -> [u8; 5] {
    [slot, addr[0], addr[1], addr[2], addr[3]]
}

/// LPM key data for `NETS_V6`: the slot byte then the address.
#[must_use]
#[inline(always)]
pub const fn net_key_v6(slot: u8, addr: [u8; 16]) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = slot;
    let mut i = 0;
    while i < 16 {
        k[i + 1] = addr[i];
        i += 1;
    }
    k
}
