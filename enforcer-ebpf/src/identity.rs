//! Who sent the packet, and what it is addressed to, as the live policy slot says.
//!
//! Devices are exact-match lookups (MAC, then address); only networks use the LPM tries. The
//! resolution order for an address is the router's own, then listed devices, then the longest
//! network prefix, then unknown (the `defaults.unknown` zone).

use aya_ebpf::maps::lpm_trie::Key;
use enforcer_common::{
    Action, FAMILY_V4, Mode, UNKNOWN_DEVICE,
    control::{CONFIG_F_UNKNOWN_AUDIT, PolicyConfig},
    identity::{
        ADDR_KIND_ROUTER, AddrEntry, AddrKeyV4, AddrKeyV6, MAC_F_ANY_ADDR, MAC_F_AUDIT, MacKey,
        NET_F_ONLINK, NetEntry, SRC_F_AUDIT, net_key_v4, net_key_v6, octets,
    },
    network_device,
};
use enforcer_ebpf::{
    out_of_line,
    scope::{is_link_scoped_source, is_router_scoped_dest},
};

use crate::{
    maps::{ADDRS_V4, ADDRS_V6, MACS, NETS_V4, NETS_V6},
    parse::Packet,
};

/// The sender as the policy sees it.
#[derive(Clone, Copy)]
pub struct Source {
    /// Device id for accounting ([`UNKNOWN_DEVICE`] for network and unknown sources).
    pub device: u32,
    pub class: u16,
    /// MAC and address disagree with the policy.
    pub spoofed: bool,
    /// [`SRC_UNKNOWN`] and [`SRC_AUDIT`]: one byte, so the struct stays 8 bytes (it is in every
    /// frame that holds a judgement, and the program's deepest call chain is at the 512-byte
    /// limit).
    pub flags: u8,
}

/// Neither a listed device nor in a network: a candidate for discovery.
pub const SRC_UNKNOWN: u8 = 1;
/// In audit (`mode: audit` of the device, its zone, the unknown zone or `defaults.mode`): what it
/// sends that the policy denies passes as `audit`.
pub const SRC_AUDIT: u8 = 2;

/// [`Source::flags`] of a source that is `unknown` (or not) and in `audit` (or not).
#[inline(always)]
pub const fn src_flags(unknown: bool, audit: bool) -> u8 {
    (if unknown { SRC_UNKNOWN } else { 0 }) | if audit { SRC_AUDIT } else { 0 }
}

impl Source {
    /// Neither a listed device nor in a network.
    #[inline(always)]
    pub const fn unknown(&self) -> bool {
        self.flags & SRC_UNKNOWN != 0
    }

    /// In audit.
    #[inline(always)]
    pub const fn audit(&self) -> bool {
        self.flags & SRC_AUDIT != 0
    }
}

/// The destination as the policy sees it.
#[derive(Clone, Copy)]
pub struct Dest {
    /// Device id when it is a listed device, else [`UNKNOWN_DEVICE`].
    pub device: u32,
    pub class: u16,
    /// `DST_F_*` of the matched entry.
    pub flags: u8,
    /// The device's bound MAC (its replies must come from it), or zero.
    pub mac: [u8; 6],
}

/// Lookups here return references into the map, not copies: a copied `Option<T>` leaves its
/// payload undefined when `None`, and LLVM may then spill a register it never set, which the
/// verifier refuses to read back. A reference is a pointer, defined either way, and stays valid
/// for the run (RCU).
#[inline(always)]
fn lookup_addr(slot: u8, family: u8, addr: &[u32; 4]) -> Option<&'static AddrEntry> {
    if family == FAMILY_V4 {
        let key = AddrKeyV4 {
            addr: addr[0],
            slot,
            _pad: [0; 3],
        };
        // SAFETY: userspace never deletes a live slot's entries while packets can read them (it
        // waits past the flip before cleaning the old slot), and nothing here writes them.
        unsafe { ADDRS_V4.get(&key) }
    } else {
        let key = AddrKeyV6 {
            addr: *addr,
            slot,
            _pad: [0; 3],
        };
        // SAFETY: as above.
        unsafe { ADDRS_V6.get(&key) }
    }
}

#[inline(always)]
fn lookup_net(slot: u8, family: u8, addr: &[u32; 4]) -> Option<&'static NetEntry> {
    if family == FAMILY_V4 {
        let key = Key::new(8 + 32, net_key_v4(slot, addr[0].to_ne_bytes()));
        NETS_V4.get(&key)
    } else {
        let key = Key::new(8 + 128, net_key_v6(slot, octets(*addr)));
        NETS_V6.get(&key)
    }
}

out_of_line! {
    /// Whether neighbour discovery addressed to `dst` (IPv6) is for this link: multicast,
    /// link-local, or one of the router's own addresses in the live slot. ND to anything else
    /// would be forwarded by the kernel into another segment.
    ///
    /// Out of line: it runs before the verdict path and keeps its key off the entry point's stack
    /// frame.
    pub fn nd_for_this_link(dst: &[u32; 4]) -> bool {
        if is_router_scoped_dest(enforcer_common::FAMILY_V6, dst) {
            return true;
        }
        let Some(control) = crate::maps::CONTROL.get(0) else {
            return false;
        };
        let key = AddrKeyV6 {
            addr: *dst,
            slot: crate::live_slot(control),
            _pad: [0; 3],
        };
        // SAFETY: as in `lookup_addr`.
        unsafe { ADDRS_V6.get(&key) }.is_some_and(|a| a.kind == ADDR_KIND_ROUTER)
    }
}

out_of_line! {
    /// Whether an ARP packet (`pkt` as `parse` leaves it for [`Reject::Arp`](crate::parse::Reject))
    /// claims an address for a MAC the live policy does not bind it to, which would poison the
    /// router's neighbour table: the router's own address; a listed device's bound address from
    /// another MAC (in the ARP body or the Ethernet header); or a listed device, bound to its own
    /// addresses, announcing one that is not. The same bindings as the IP spoofing verdict
    /// (`resolve_source`), and off under `defaults.spoofed: allow` as it is. An address no device
    /// holds, from a MAC no device has, passes: an unknown device needs ARP to be discovered and
    /// to get an address. A probe (sender address 0.0.0.0, RFC 5227) claims nothing; nor does an
    /// ARP sent before any policy is loaded.
    ///
    /// Out of line: only ARP frames pay for its lookups.
    pub fn arp_spoofed(pkt: &Packet) -> bool {
        let spa = pkt.src[0];
        if spa == 0 {
            return false;
        }
        let Some(control) = crate::maps::CONTROL.get(0) else {
            return false;
        };
        let slot = crate::live_slot(control);
        let Some(cfg) = crate::maps::CONFIG.get(u32::from(slot)) else {
            return false;
        };
        if cfg.generation == 0 || cfg.spoofed == Action::Allow as u8 {
            return false;
        }
        let by_addr = lookup_addr(slot, FAMILY_V4, &pkt.src);
        if let Some(a) = by_addr {
            if a.kind == ADDR_KIND_ROUTER {
                return true;
            }
            if a.has_mac() && (a.mac != pkt.arp_sha || a.mac != pkt.src_mac) {
                return true;
            }
        }
        announces_anothers(slot, pkt.src_mac, by_addr)
            || (pkt.arp_sha != pkt.src_mac && announces_anothers(slot, pkt.arp_sha, by_addr))
    }
}

/// Whether `mac` is a listed device bound to its own addresses and the address it announces
/// (`by_addr`, none when no device holds it) is not one of them.
#[inline(always)]
fn announces_anothers(slot: u8, mac: [u8; 6], by_addr: Option<&AddrEntry>) -> bool {
    // SAFETY: as in `lookup_addr`.
    match unsafe { MACS.get(&MacKey::new(slot, mac)) } {
        Some(m) if m.flags & MAC_F_ANY_ADDR == 0 => by_addr.is_none_or(|a| a.device != m.device),
        _ => false,
    }
}

/// Resolves the sender from its MAC and source address.
///
/// Spoofed: a listed MAC with an address that is not its own, a listed address (of a device bound
/// to a MAC) from another MAC, or the router's own address arriving from outside.
#[inline(always)]
pub fn resolve_source(
    slot: u8,
    cfg: &PolicyConfig,
    family: u8,
    src: &[u32; 4],
    mac: [u8; 6],
) -> Source {
    let unknown_audit = cfg.flags & CONFIG_F_UNKNOWN_AUDIT != 0;
    let unknown = Source {
        device: UNKNOWN_DEVICE,
        class: cfg.unknown_class,
        spoofed: false,
        flags: src_flags(true, unknown_audit),
    };
    // SAFETY: as in `lookup_addr`.
    let by_mac = unsafe { MACS.get(&MacKey::new(slot, mac)) };
    if is_link_scoped_source(family, src) {
        return match by_mac {
            Some(m) => Source {
                device: m.device,
                class: m.class,
                spoofed: false,
                flags: src_flags(false, m.flags & MAC_F_AUDIT != 0),
            },
            None => unknown,
        };
    }
    // The device's own MAC and (one of) its own IPv4 address: what the address lookup below would
    // confirm (`MacEntry::v4`), without it.
    if let Some(m) = by_mac
        && family == FAMILY_V4
        && m.v4 != 0
        && m.v4 == src[0]
    {
        return Source {
            device: m.device,
            class: m.class,
            spoofed: false,
            flags: src_flags(false, m.flags & MAC_F_AUDIT != 0),
        };
    }
    let by_addr = lookup_addr(slot, family, src);
    match (by_mac, by_addr) {
        (_, Some(a)) if a.kind == ADDR_KIND_ROUTER => Source {
            device: by_mac.map_or(UNKNOWN_DEVICE, |m| m.device),
            class: cfg.unknown_class,
            spoofed: true,
            flags: src_flags(
                false,
                by_mac.map_or(unknown_audit, |m| m.flags & MAC_F_AUDIT != 0),
            ),
        },
        (Some(m), Some(a)) => Source {
            device: m.device,
            class: m.class,
            spoofed: a.device != m.device,
            flags: src_flags(false, m.flags & MAC_F_AUDIT != 0),
        },
        (Some(m), None) => Source {
            device: m.device,
            class: m.class,
            spoofed: m.flags & MAC_F_ANY_ADDR == 0,
            flags: src_flags(false, m.flags & MAC_F_AUDIT != 0),
        },
        // A listed address from a MAC the policy does not know. When the address's device is bound
        // to a MAC, the sender is not that device but an unlisted host forging its address: it is
        // accounted (and quarantined, and discovered) as unknown, never as the device it
        // impersonates, or any host could get a victim quarantined by forging its address. It
        // keeps the address's class, which only matters under `defaults.spoofed: allow`.
        (None, Some(a)) if a.has_mac() => Source {
            device: UNKNOWN_DEVICE,
            class: a.class,
            spoofed: true,
            flags: src_flags(true, unknown_audit),
        },
        (None, Some(a)) => Source {
            device: a.device,
            class: a.class,
            spoofed: false,
            flags: src_flags(false, a.flags & SRC_F_AUDIT != 0),
        },
        // An unlisted address on an enforced segment (the interface's own subnet) is a device the
        // policy does not list, whatever wider network (`internet: 0.0.0.0/0`) also covers it.
        (None, None) => match lookup_net(slot, family, src) {
            Some(n) if n.flags & NET_F_ONLINK == 0 => Source {
                device: network_device(n.network),
                class: n.class,
                spoofed: false,
                flags: src_flags(false, cfg.mode == Mode::Audit as u8),
            },
            _ => unknown,
        },
    }
}

/// Resolves the destination address.
#[inline(always)]
pub fn resolve_dest(slot: u8, cfg: &PolicyConfig, family: u8, dst: &[u32; 4]) -> Dest {
    if is_router_scoped_dest(family, dst) {
        return Dest {
            device: UNKNOWN_DEVICE,
            class: cfg.router_class,
            flags: 0,
            mac: [0; 6],
        };
    }
    if let Some(a) = lookup_addr(slot, family, dst) {
        return Dest {
            device: a.device,
            class: a.class,
            flags: a.flags,
            mac: a.mac,
        };
    }
    match lookup_net(slot, family, dst) {
        Some(n) => Dest {
            device: network_device(n.network),
            class: n.class,
            flags: n.flags,
            mac: [0; 6],
        },
        None => Dest {
            device: UNKNOWN_DEVICE,
            class: cfg.unknown_class,
            flags: 0,
            mac: [0; 6],
        },
    }
}
