//! Evidence: frames in which devices describe themselves (DHCP, mDNS, SSDP), copied by the program
//! for the daemon's inventory. Evidence is for people, never identity: nothing here is read by a
//! verdict, and capturing a frame never changes what happens to it.
//!
//! The program only recognises the frames by their UDP ports ([`EvidenceKind::of`]) and copies a
//! bounded prefix of the UDP payload; the daemon parses them (`enforcer/src/inventory/`).

/// `EVIDENCE`: `RingBuf` of [`EVIDENCE_BYTES`], records of [`EvidenceFrame`]. Its own ring, so a
/// chatty network's announcements never crowd out deny events (and the other way round). Full: the
/// frame is counted in `Counter::EvidenceDropped`, never waited for.
pub const EVIDENCE_MAP: &str = "EVIDENCE";
/// Room for about 240 whole frames between two reads by the daemon.
pub const EVIDENCE_BYTES: u32 = 256 * 1024;

/// `EVIDENCE_BUDGET`: `LruHashMap<MacKey, state::EventBudget>` (key slot always 0), capacity
/// [`MAX_EVIDENCE_SOURCES`]: each source MAC's evidence budget. An LRU, so a flood of made-up MACs
/// recycles budgets instead of filling the map; the per-CPU budget bounds that flood.
pub const EVIDENCE_BUDGET_MAP: &str = "EVIDENCE_BUDGET";
pub const MAX_EVIDENCE_SOURCES: u32 = 4_096;
/// Evidence frames one MAC may send per second; the rest are only counted
/// (`Counter::EvidenceRateLimited`). A booting device sends a handful of DHCP messages, a burst
/// of mDNS probes and announcements and a few SSDP NOTIFYs per service: 16 lets a start-up burst
/// through, and a device that repeats itself loses nothing the inventory needs.
pub const EVIDENCE_PER_MAC_PER_SEC: u32 = 16;
/// `EVIDENCE_BUDGET_CPU`: `PerCpuArray<state::EventBudget>`, one row: the evidence budget all
/// MACs share on each CPU.
pub const EVIDENCE_BUDGET_CPU_MAP: &str = "EVIDENCE_BUDGET_CPU";
/// Evidence frames all sources together may send per second on one CPU
/// (`Counter::EvidenceGlobalLimited` counts the rest): bounds the daemon's parsing work under a
/// flood of spoofed MACs.
pub const EVIDENCE_PER_CPU_PER_SEC: u32 = 200;

/// Bytes of UDP payload copied per frame. A DHCP message with its options is about 300 to 600
/// bytes, an SSDP NOTIFY about 400, an mDNS announcement of a few services under 1,000; what lies
/// beyond is cut ([`EvidenceFrame::len`] says how much was kept, `udp_len` how much there was).
pub const MAX_EVIDENCE_PAYLOAD: usize = 1_024;

/// What kind of self-description a frame is, by its UDP ports.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EvidenceKind {
    /// A DHCPv4 client message (68 to 67): host name, parameter list, vendor class, MUD URL.
    Dhcpv4 = 1,
    /// A DHCPv6 client message (546 to 547): vendor class, FQDN, MUD URL.
    Dhcpv6 = 2,
    /// An mDNS message from a responder (source port 5353, RFC 6762 §6: responses always are).
    Mdns = 3,
    /// SSDP (RFC-less UPnP discovery): a NOTIFY to 1900, or a search response from 1900.
    Ssdp = 4,
}

/// UDP ports of the messages [`EvidenceKind`] recognises.
pub const DHCPV4_CLIENT_PORT: u16 = 68;
pub const DHCPV4_SERVER_PORT: u16 = 67;
pub const DHCPV6_CLIENT_PORT: u16 = 546;
pub const DHCPV6_SERVER_PORT: u16 = 547;
pub const MDNS_PORT: u16 = 5353;
pub const SSDP_PORT: u16 = 1900;

impl EvidenceKind {
    /// The kind of a UDP datagram from `sport` to `dport`, or `None` for ordinary traffic.
    #[must_use]
    #[inline(always)]
    pub const fn of(sport: u16, dport: u16) -> Option<Self> {
        match (sport, dport) {
            (DHCPV4_CLIENT_PORT, DHCPV4_SERVER_PORT) => Some(Self::Dhcpv4),
            (DHCPV6_CLIENT_PORT, DHCPV6_SERVER_PORT) => Some(Self::Dhcpv6),
            (MDNS_PORT, _) => Some(Self::Mdns),
            (SSDP_PORT, _) | (_, SSDP_PORT) => Some(Self::Ssdp),
            _ => None,
        }
    }

    #[must_use]
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Dhcpv4),
            2 => Some(Self::Dhcpv6),
            3 => Some(Self::Mdns),
            4 => Some(Self::Ssdp),
            _ => None,
        }
    }

    /// Label value (logs, metrics).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Dhcpv4 => "dhcpv4",
            Self::Dhcpv6 => "dhcpv6",
            Self::Mdns => "mdns",
            Self::Ssdp => "ssdp",
        }
    }
}

/// One frame in `EVIDENCE`: who sent it, where, and the start of its UDP payload. Every header
/// field is written for every frame; `payload` beyond `len` is whatever the slot held before.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvidenceFrame {
    pub timestamp_ns: u64,
    pub ifindex: u32,
    /// Source address as words (`identity::words`); IPv4 in the first.
    pub src: [u32; 4],
    pub src_mac: [u8; 6],
    /// Innermost VLAN id, 0 when untagged.
    pub vlan: u16,
    pub family: u8,
    /// [`EvidenceKind`].
    pub kind: u8,
    /// Bytes of `payload` that hold the frame's UDP payload.
    pub len: u16,
    /// The UDP payload's length as its header gives it (more than `len` when cut).
    pub udp_len: u16,
    pub _pad: [u8; 6],
    pub payload: [u8; MAX_EVIDENCE_PAYLOAD],
}
const _: () = assert!(core::mem::size_of::<EvidenceFrame>() == 48 + MAX_EVIDENCE_PAYLOAD);

impl EvidenceFrame {
    /// The copied payload (empty when `len` claims more than there is room for).
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        self.payload.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::EvidenceKind;

    #[test]
    fn only_client_dhcp_and_announcement_ports_are_evidence() {
        assert_eq!(EvidenceKind::of(68, 67), Some(EvidenceKind::Dhcpv4));
        assert_eq!(
            EvidenceKind::of(67, 68),
            None,
            "a server's offer describes no client"
        );
        assert_eq!(EvidenceKind::of(546, 547), Some(EvidenceKind::Dhcpv6));
        assert_eq!(EvidenceKind::of(547, 546), None);
        assert_eq!(EvidenceKind::of(5353, 5353), Some(EvidenceKind::Mdns));
        assert_eq!(
            EvidenceKind::of(40000, 5353),
            None,
            "a one-shot query announces nothing"
        );
        assert_eq!(EvidenceKind::of(40000, 1900), Some(EvidenceKind::Ssdp));
        assert_eq!(EvidenceKind::of(1900, 40000), Some(EvidenceKind::Ssdp));
        assert_eq!(EvidenceKind::of(40000, 443), None);
        for k in [1, 2, 3, 4] {
            let kind = EvidenceKind::from_u8(k).expect("a kind");
            assert_eq!(kind as u8, k);
        }
        assert_eq!(EvidenceKind::from_u8(0), None);
    }
}
