//! Packet parsing: a bounds-checked cursor and one small function per header, Ethernet to L4.
//!
//! Every read is checked against `data_end` right before it (the verifier insists, and a length
//! field from the packet is never trusted alone). The parser only describes the packet; it decides
//! nothing except "malformed", which is a verdict of its own (`Reject`).

use core::mem::size_of;

use aya_ebpf::programs::{TcContext, XdpContext};
use enforcer_common::{
    FAMILY_V4, FAMILY_V6, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, stats::Counter,
};
use enforcer_ebpf::scope::is_link_local_multicast;

/// Why a frame was not parsed into a [`Packet`]. Each maps to one counter and one verdict in `main`.
#[derive(Clone, Copy)]
pub enum Reject {
    /// Malformed: dropped and counted under this counter.
    Malformed(Counter),
    /// ARP: passed (a router needs it), counted, unless it is spoofed
    /// (`identity::arp_spoofed`). The sender's addresses are in `Packet::src` and
    /// `Packet::arp_sha`.
    Arp,
    /// IPv6 neighbour discovery, router solicitation, MLD: passed, counted.
    NeighbourDiscovery,
    /// Router advertisement or redirect from a device: dropped (a rogue router), counted.
    RogueRouter,
    /// Not IP and not ARP: dropped, counted.
    NonIp,
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

/// At most this many IPv6 extension headers are walked; a longer chain is dropped. Real traffic
/// carries one or two; the bound keeps the verifier's path count and the per-packet cost fixed.
const MAX_EXT_HEADERS: usize = 6;

/// Upper bound of where an ICMP error's quoted packet can start.
const MAX_QUOTE_OFFSET: usize = 4096;

#[repr(C)]
struct EthHdr {
    dst: [u8; 6],
    src: [u8; 6],
    proto: [u8; 2],
}

#[repr(C)]
struct VlanHdr {
    tci: [u8; 2],
    proto: [u8; 2],
}

// IP headers keep addresses as words of network-order bytes (see `identity::words`): a word copy
// is one instruction where sixteen byte copies would also spill registers onto the small BPF stack.
// Header fields may be misaligned in the frame (after a 14-byte Ethernet header); the kernel allows
// unaligned packet loads on the architectures XDP runs on, as every C XDP program relies on.

/// An Ethernet/IPv4 ARP packet (RFC 826) up to the sender's addresses, which are all the check
/// reads; addresses as bytes, since the header leaves them misaligned.
#[repr(C)]
struct ArpHdr {
    htype: [u8; 2],
    ptype: [u8; 2],
    hlen: u8,
    plen: u8,
    _oper: [u8; 2],
    sha: [u8; 6],
    spa: [u8; 4],
}

#[repr(C)]
struct Ipv4Hdr {
    version_ihl: u8,
    tos: u8,
    tot_len: [u8; 2],
    id: [u8; 2],
    frag_off: [u8; 2],
    ttl: u8,
    proto: u8,
    check: [u8; 2],
    src: u32,
    dst: u32,
}

#[repr(C)]
struct Ipv6Hdr {
    version_tc_flow: [u8; 4],
    payload_len: [u8; 2],
    next_header: u8,
    hop_limit: u8,
    src: [u32; 4],
    dst: [u32; 4],
}

/// The first two bytes every IPv6 extension header shares (RFC 8200 §4).
#[repr(C)]
struct ExtHdr {
    next_header: u8,
    len: u8,
}

#[repr(C)]
struct FragHdr {
    next_header: u8,
    reserved: u8,
    offset_flags: [u8; 2],
    id: [u8; 4],
}

#[repr(C)]
struct RoutingHdr {
    next_header: u8,
    len: u8,
    routing_type: u8,
    segments_left: u8,
}

#[repr(C)]
struct TcpHdr {
    sport: [u8; 2],
    dport: [u8; 2],
    seq: [u8; 4],
    ack: [u8; 4],
    doff_flags: [u8; 2],
    window: [u8; 2],
    check: [u8; 2],
    urg: [u8; 2],
}

#[repr(C)]
struct UdpHdr {
    sport: [u8; 2],
    dport: [u8; 2],
    len: [u8; 2],
    check: [u8; 2],
}

#[repr(C)]
struct IcmpHdr {
    ty: u8,
    code: u8,
    check: [u8; 2],
    id: [u8; 2],
    seq: [u8; 2],
}

/// What the L4 header says, as far as policy cares.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// TCP or UDP with ports.
    Ports,
    /// ICMP/ICMPv6 echo request: may start a flow (ports hold the identifier).
    EchoRequest,
    /// ICMP/ICMPv6 echo reply: only ever a reply, never a new flow.
    EchoReply,
    /// ICMP/ICMPv6 error quoting another packet; `inner_off` points at the quoted IP header.
    Error,
    /// Any other ICMP type, any other protocol, or a later fragment (no L4 header).
    Other,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    None,
    /// Offset 0 with more fragments: judged on its ports, and remembered when allowed.
    First,
    /// Offset > 0: carries no L4 header, passes only behind an allowed first fragment.
    Later,
}

/// Bits of the TCP flags byte ([`Packet::tcp_flags`]).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// A parsed packet: everything identity, verdict and accounting need.
pub struct Packet {
    pub src_mac: [u8; 6],
    /// Innermost VLAN id, 0 when untagged.
    pub vlan: u16,
    pub family: u8,
    pub proto: u8,
    /// Addresses as words of network-order bytes (`identity::words`); IPv4 in the first word.
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport: u16,
    pub dport: u16,
    pub l4: L4,
    pub frag: Fragment,
    /// IPv4 identification or IPv6 fragment identification.
    pub frag_id: u32,
    /// The protocol that keys the fragment table: IPv4's protocol field, or the next-header value
    /// of the IPv6 Fragment header. Every fragment of a datagram carries the same value there,
    /// while `proto` (the final L4 protocol) is only known in the first one when extension headers
    /// follow the Fragment header.
    pub frag_proto: u8,
    /// Offset of what follows the L4 header: the IP header an ICMP error quotes, or a UDP
    /// datagram's payload (read by `evidence::capture`).
    pub inner_off: usize,
    /// Frame length in bytes.
    pub len: u32,
    /// A TCP segment's flags byte (0 for anything else): a segment with SYN opens a connection,
    /// so it is never picked up as a reply (`flow::pickup`); FIN and RST close its flow
    /// (`flow::lookup`).
    pub tcp_flags: u8,
    /// ARP only: the sender hardware address the ARP body claims (its sender protocol address is
    /// in `src[0]`). Written, and read, only for a frame parsed as [`Reject::Arp`], so the IP
    /// paths never pay for it.
    pub arp_sha: [u8; 6],
}

/// A frame the parser can read: XDP's at ingress, TC's (a socket buffer) at egress.
pub trait Frame {
    /// Start of the directly readable bytes.
    fn data(&self) -> usize;
    /// End of the directly readable bytes.
    fn data_end(&self) -> usize;
    /// Length of the whole frame. For XDP that is the readable bytes; a socket buffer may hold
    /// more than its linear part (payload in pages, GSO), and lengths in headers are checked
    /// against the whole.
    fn len(&self) -> usize;
}

impl Frame for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }
    #[inline(always)]
    fn len(&self) -> usize {
        XdpContext::data_end(self) - XdpContext::data(self)
    }
}

impl Frame for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }
    #[inline(always)]
    fn len(&self) -> usize {
        TcContext::len(self) as usize
    }
}

/// A cursor over the frame.
pub struct Cursor<'a, F: Frame> {
    ctx: &'a F,
    pub off: usize,
}

impl<'a, F: Frame> Cursor<'a, F> {
    #[inline(always)]
    pub fn new(ctx: &'a F) -> Self {
        Self { ctx, off: 0 }
    }

    /// A pointer to a `T` at `off`, after checking it lies inside the frame.
    ///
    /// `T` must be `repr(C)` with alignment 1 (every header here is made of bytes).
    #[inline(always)]
    pub fn at<T>(&self, off: usize) -> Result<*const T, Reject> {
        let start = self.ctx.data();
        let end = self.ctx.data_end();
        // Verifier: the comparison must be between packet pointers, right before the access.
        if start + off + size_of::<T>() > end {
            return Err(Reject::Malformed(Counter::MalformedTruncated));
        }
        Ok((start + off) as *const T)
    }

    /// Reads a `T` at the cursor and advances past it.
    #[inline(always)]
    fn next<T>(&mut self) -> Result<*const T, Reject> {
        let p = self.at::<T>(self.off)?;
        self.off += size_of::<T>();
        Ok(p)
    }

    #[inline(always)]
    pub fn frame_len(&self) -> usize {
        self.ctx.len()
    }
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// Parses the whole frame into `pkt` (a per-CPU scratch slot: every field is written here, so
/// nothing from an earlier packet survives).
#[inline(always)]
pub fn parse<F: Frame>(ctx: &F, pkt: &mut Packet) -> Result<(), Reject> {
    let mut c = Cursor::new(ctx);
    pkt.src_mac = [0; 6];
    pkt.vlan = 0;
    pkt.family = 0;
    pkt.proto = 0;
    pkt.src = [0; 4];
    pkt.dst = [0; 4];
    pkt.sport = 0;
    pkt.dport = 0;
    pkt.l4 = L4::Other;
    pkt.frag = Fragment::None;
    pkt.frag_id = 0;
    pkt.frag_proto = 0;
    pkt.tcp_flags = 0;
    pkt.inner_off = 0;
    pkt.len = c.frame_len() as u32;
    let ethertype = parse_ethernet(&mut c, pkt)?;
    let l3_end = match ethertype {
        ETH_P_IP => parse_ipv4(&mut c, pkt)?,
        ETH_P_IPV6 => parse_ipv6(&mut c, pkt)?,
        ETH_P_ARP => return Err(parse_arp(&c, pkt)),
        _ => return Err(Reject::NonIp),
    };
    if pkt.frag == Fragment::Later {
        return Ok(());
    }
    parse_l4(&mut c, pkt, l3_end)
}

/// Ethernet and up to two VLAN tags (802.1Q, 802.1ad). The packet is classified on what follows the
/// innermost tag, so a tag can never hide a packet from policy; a third tag is refused rather than
/// walked (nothing legitimate stacks three on an access port).
#[inline(always)]
fn parse_ethernet<F: Frame>(c: &mut Cursor<'_, F>, pkt: &mut Packet) -> Result<u16, Reject> {
    let eth = c.next::<EthHdr>()?;
    // SAFETY: `next` checked that the header lies inside the frame.
    let (src, proto) = unsafe { ((*eth).src, (*eth).proto) };
    pkt.src_mac = src;
    let mut ethertype = be16(proto);
    for _ in 0..2 {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            return Ok(ethertype);
        }
        let tag = c.next::<VlanHdr>()?;
        // SAFETY: bounds checked by `next`.
        let (tci, proto) = unsafe { ((*tag).tci, (*tag).proto) };
        pkt.vlan = be16(tci) & 0x0fff;
        ethertype = be16(proto);
    }
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        return Err(Reject::Malformed(Counter::MalformedVlan));
    }
    Ok(ethertype)
}

/// ARP: records the sender's claimed addresses for `identity::arp_spoofed`. Anything but a whole
/// Ethernet/IPv4 ARP body leaves the sender address zero, which the check reads as claiming
/// nothing (the kernel ignores such frames itself).
#[inline(always)]
fn parse_arp<F: Frame>(c: &Cursor<'_, F>, pkt: &mut Packet) -> Reject {
    pkt.arp_sha = [0; 6];
    let Ok(a) = c.at::<ArpHdr>(c.off) else {
        return Reject::Arp;
    };
    // SAFETY: bounds checked by `at`.
    let a = unsafe { &*a };
    if be16(a.htype) == 1 && be16(a.ptype) == ETH_P_IP && a.hlen == 6 && a.plen == 4 {
        pkt.family = FAMILY_V4;
        pkt.src[0] = u32::from_ne_bytes(a.spa);
        pkt.arp_sha = a.sha;
    }
    Reject::Arp
}

/// IPv4, honouring IHL (options are skipped, never read as L4) and total length (Ethernet padding
/// beyond it is ignored; a frame shorter than it is cut short). Returns the end of the IP packet.
///
/// Options are not inspected: source-routed packets are dropped by Linux itself unless
/// `accept_source_route` is set, and other options do not change where a packet goes.
#[inline(always)]
fn parse_ipv4<F: Frame>(c: &mut Cursor<'_, F>, pkt: &mut Packet) -> Result<usize, Reject> {
    const BAD: Reject = Reject::Malformed(Counter::MalformedIpv4);
    let l3 = c.off;
    let ip = c.at::<Ipv4Hdr>(l3)?;
    // SAFETY: bounds checked by `at`.
    let h = unsafe { &*ip };
    if h.version_ihl >> 4 != 4 {
        return Err(BAD);
    }
    let ihl = usize::from(h.version_ihl & 0x0f) * 4;
    if ihl < 20 {
        return Err(BAD);
    }
    let tot_len = usize::from(be16(h.tot_len));
    if tot_len < ihl {
        return Err(BAD);
    }
    if l3 + tot_len > c.frame_len() {
        return Err(Reject::Malformed(Counter::MalformedTruncated));
    }
    let frag = be16(h.frag_off);
    let reserved = frag & 0x8000 != 0;
    let dont_fragment = frag & 0x4000 != 0;
    let more = frag & 0x2000 != 0;
    let offset = usize::from(frag & 0x1fff) * 8;
    // The reserved bit must be zero (RFC 791); DF with MF is a contradiction no stack sends.
    if reserved || (dont_fragment && more) {
        return Err(BAD);
    }
    // Ping of death: the reassembled datagram would exceed 65535 bytes.
    if offset + (tot_len - ihl) > 65_535 {
        return Err(Reject::Malformed(Counter::MalformedFragment));
    }
    pkt.family = FAMILY_V4;
    pkt.proto = h.proto;
    pkt.src[0] = h.src;
    pkt.dst[0] = h.dst;
    pkt.frag_id = u32::from(be16(h.id));
    pkt.frag_proto = h.proto;
    if offset > 0 {
        // RFC 1858: an offset of 8 bytes into TCP can rewrite the flags and ports of the first
        // fragment's header; no legitimate sender produces it.
        if offset == 8 && h.proto == PROTO_TCP {
            return Err(Reject::Malformed(Counter::MalformedFragment));
        }
        pkt.frag = Fragment::Later;
    } else if more {
        pkt.frag = Fragment::First;
    }
    c.off = l3 + ihl;
    Ok(l3 + tot_len)
}

/// IPv6 and its extension-header chain, bounded at [`MAX_EXT_HEADERS`]. Returns the end of the
/// IP packet.
#[inline(always)]
fn parse_ipv6<F: Frame>(c: &mut Cursor<'_, F>, pkt: &mut Packet) -> Result<usize, Reject> {
    const BAD: Reject = Reject::Malformed(Counter::MalformedIpv6);
    let l3 = c.off;
    let ip = c.next::<Ipv6Hdr>()?;
    // SAFETY: bounds checked by `next`.
    let h = unsafe { &*ip };
    if h.version_tc_flow[0] >> 4 != 6 {
        return Err(BAD);
    }
    let payload = usize::from(be16(h.payload_len));
    // A zero payload length means a jumbogram (RFC 2675), which no IoT link carries.
    if payload == 0 {
        return Err(BAD);
    }
    let end = l3 + 40 + payload;
    if end > c.frame_len() {
        return Err(Reject::Malformed(Counter::MalformedTruncated));
    }
    pkt.family = FAMILY_V6;
    pkt.src = h.src;
    pkt.dst = h.dst;
    let mut next = h.next_header;
    let mut seen_fragment = false;
    for i in 0..MAX_EXT_HEADERS {
        // An extension header whose length runs past the IPv6 payload: the chain is invalid
        // (without this it would surface later, miscounted as a cut-short L4 header or not at all).
        if c.off > end {
            return Err(BAD);
        }
        match next {
            // Hop-by-hop options: only allowed first (RFC 8200 §4.1).
            0 if i == 0 => next = skip_ext(c, 8)?,
            0 => return Err(BAD),
            // Destination options.
            60 => next = skip_ext(c, 8)?,
            // Routing: a header with segments left would bounce the packet through another host,
            // and type 0 is deprecated (RFC 5095): neither may cross a zone.
            43 => {
                let rh = c.at::<RoutingHdr>(c.off)?;
                // SAFETY: bounds checked by `at`.
                let (ty, left) = unsafe { ((*rh).routing_type, (*rh).segments_left) };
                if ty == 0 || left != 0 {
                    return Err(BAD);
                }
                next = skip_ext(c, 8)?;
            }
            44 => {
                // A second fragment header is never legitimate.
                if seen_fragment {
                    return Err(BAD);
                }
                seen_fragment = true;
                let fh = c.next::<FragHdr>()?;
                // SAFETY: bounds checked by `next`.
                let f = unsafe { &*fh };
                let of = be16(f.offset_flags);
                if f.reserved != 0 || of & 0x0006 != 0 {
                    return Err(BAD);
                }
                pkt.frag_id = u32::from_be_bytes(f.id);
                pkt.frag_proto = f.next_header;
                next = f.next_header;
                let offset = of & 0xfff8;
                let more = of & 1 != 0;
                if offset != 0 {
                    // RFC 1858 for IPv6: a later piece that starts inside the first fragment's
                    // headers rewrites what the verdict read (TCP flags at offset 8; with an
                    // extension header after this one, the L4 header itself, which the shortest
                    // such chain, 8 bytes of options and 20 of TCP, ends at 28). No sender cuts a
                    // first fragment that short; a destination that lets the later piece win
                    // would see other ports or flags than were judged.
                    if (next == PROTO_TCP && offset == 8)
                        || (matches!(next, 43 | 51 | 60) && offset < 32)
                    {
                        return Err(Reject::Malformed(Counter::MalformedFragment));
                    }
                    pkt.frag = Fragment::Later;
                    pkt.proto = next;
                    return Ok(end);
                }
                // An atomic fragment (offset 0, no more) is an unfragmented packet (RFC 6946).
                if more {
                    pkt.frag = Fragment::First;
                }
            }
            // Authentication header: length in 4-octet units, plus 2 (RFC 4302).
            51 => next = skip_ext(c, 4)?,
            // No next header: nothing to judge.
            59 => return Err(BAD),
            _ => {
                pkt.proto = next;
                return Ok(end);
            }
        }
    }
    if c.off > end {
        return Err(BAD);
    }
    // Still an extension header after the bound.
    match next {
        0 | 43 | 44 | 51 | 59 | 60 => Err(BAD),
        _ => {
            pkt.proto = next;
            Ok(end)
        }
    }
}

/// Skips one extension header whose length byte counts `unit`-octet units beyond the first 8
/// (or, for AH, 4-octet units plus 2). Returns its next-header value.
#[inline(always)]
fn skip_ext<F: Frame>(c: &mut Cursor<'_, F>, unit: usize) -> Result<u8, Reject> {
    let eh = c.at::<ExtHdr>(c.off)?;
    // SAFETY: bounds checked by `at`.
    let (next, len) = unsafe { ((*eh).next_header, usize::from((*eh).len)) };
    c.off += if unit == 8 {
        (len + 1) * 8
    } else {
        (len + 2) * 4
    };
    Ok(next)
}

/// TCP, UDP, ICMP and ICMPv6. Ports are read only within the IP packet (`l3_end`); a first
/// fragment must carry the whole L4 header (RFC 1858 / RFC 7112).
#[inline(always)]
fn parse_l4<F: Frame>(
    c: &mut Cursor<'_, F>,
    pkt: &mut Packet,
    l3_end: usize,
) -> Result<(), Reject> {
    const BAD: Reject = Reject::Malformed(Counter::MalformedL4);
    let bad = if pkt.frag == Fragment::First {
        Reject::Malformed(Counter::MalformedFragment)
    } else {
        BAD
    };
    let off = c.off;
    match pkt.proto {
        PROTO_TCP => {
            if off + size_of::<TcpHdr>() > l3_end {
                return Err(bad);
            }
            let t = c.at::<TcpHdr>(off).map_err(|_| bad)?;
            // SAFETY: bounds checked by `at`.
            let t = unsafe { &*t };
            let doff = usize::from(t.doff_flags[0] >> 4) * 4;
            if doff < 20 || off + doff > l3_end {
                return Err(bad);
            }
            pkt.sport = be16(t.sport);
            pkt.dport = be16(t.dport);
            pkt.l4 = L4::Ports;
            pkt.tcp_flags = t.doff_flags[1];
        }
        PROTO_UDP => {
            if off + size_of::<UdpHdr>() > l3_end {
                return Err(bad);
            }
            let u = c.at::<UdpHdr>(off).map_err(|_| bad)?;
            // SAFETY: bounds checked by `at`.
            let u = unsafe { &*u };
            // The length field covers header and payload (RFC 768): below 8 it is no UDP header,
            // and beyond the IP payload it claims bytes that are not there (Linux drops both). A
            // first fragment's field counts the whole datagram, so only its floor is checked.
            let udp_len = usize::from(be16(u.len));
            if udp_len < size_of::<UdpHdr>()
                || (pkt.frag != Fragment::First && off + udp_len > l3_end)
            {
                return Err(bad);
            }
            pkt.sport = be16(u.sport);
            pkt.dport = be16(u.dport);
            pkt.l4 = L4::Ports;
            pkt.inner_off = off + size_of::<UdpHdr>();
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            // ICMP rides on the matching family only.
            if (pkt.proto == PROTO_ICMP) != (pkt.family == FAMILY_V4) {
                pkt.l4 = L4::Other;
                return Ok(());
            }
            if off + size_of::<IcmpHdr>() > l3_end {
                return Err(bad);
            }
            let i = c.at::<IcmpHdr>(off).map_err(|_| bad)?;
            // SAFETY: bounds checked by `at`.
            let i = unsafe { &*i };
            let id = be16(i.id);
            pkt.l4 = classify_icmp(pkt, i.ty)?;
            if matches!(pkt.l4, L4::EchoRequest | L4::EchoReply) {
                pkt.sport = id;
                pkt.dport = id;
            }
            pkt.inner_off = off + size_of::<IcmpHdr>();
        }
        _ => pkt.l4 = L4::Other,
    }
    Ok(())
}

#[inline(always)]
fn classify_icmp(pkt: &Packet, ty: u8) -> Result<L4, Reject> {
    if pkt.family == FAMILY_V4 {
        return Ok(match ty {
            8 => L4::EchoRequest,
            0 => L4::EchoReply,
            // Destination unreachable, time exceeded, parameter problem.
            3 | 11 | 12 => L4::Error,
            _ => L4::Other,
        });
    }
    Ok(match ty {
        128 => L4::EchoRequest,
        129 => L4::EchoReply,
        // Unreachable, packet too big (PMTU discovery needs it), time exceeded, parameter problem.
        1..=4 => L4::Error,
        // Router solicitation, neighbour solicitation and advertisement: the link needs them.
        133 | 135 | 136 => return Err(Reject::NeighbourDiscovery),
        // MLD queries and reports, link-local only.
        130..=132 | 143 if is_link_local_multicast(pkt.dst[0]) => {
            return Err(Reject::NeighbourDiscovery);
        }
        // Router advertisements and redirects come from routers; this router does not learn
        // from the segments it enforces, so one arriving here is a rogue (Calico CVE-2020-13597).
        134 | 137 => return Err(Reject::RogueRouter),
        _ => L4::Other,
    })
}

/// The 5-tuple quoted inside an ICMP error: the offending packet's source, destination, protocol
/// and ports, as the packet's original sender sent it. `None` when the quote is cut short or
/// carries no ports we can match.
pub struct Quoted {
    pub proto: u8,
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport: u16,
    pub dport: u16,
}

/// Parses the IP header and first 8 L4 bytes quoted by an ICMP error (RFC 792 / RFC 4443) into
/// `q` (scratch space). Returns whether the quote was complete enough to match.
#[inline(always)]
pub fn parse_quoted<F: Frame>(ctx: &F, pkt: &Packet, q: &mut Quoted) -> bool {
    parse_quoted_inner(ctx, pkt, q).is_some()
}

#[inline(always)]
fn parse_quoted_inner<F: Frame>(ctx: &F, pkt: &Packet, q: &mut Quoted) -> Option<()> {
    let c = Cursor::new(ctx);
    let off = pkt.inner_off;
    // The offset comes back from scratch memory, where the verifier has forgotten its range; the
    // headers before an ICMP error (Ethernet, two tags, IPv6 and its bounded extension chain)
    // never reach this far.
    if off > MAX_QUOTE_OFFSET {
        return None;
    }
    q.proto = 0;
    q.src = [0; 4];
    q.dst = [0; 4];
    q.sport = 0;
    q.dport = 0;
    let l4_off = if pkt.family == FAMILY_V4 {
        let ip = c.at::<Ipv4Hdr>(off).ok()?;
        // SAFETY: bounds checked by `at`.
        let h = unsafe { &*ip };
        let ihl = usize::from(h.version_ihl & 0x0f) * 4;
        if h.version_ihl >> 4 != 4 || ihl < 20 {
            return None;
        }
        q.proto = h.proto;
        q.src[0] = h.src;
        q.dst[0] = h.dst;
        off + ihl
    } else {
        let ip = c.at::<Ipv6Hdr>(off).ok()?;
        // SAFETY: bounds checked by `at`.
        let h = unsafe { &*ip };
        // Quoted extension headers are not walked: only a plain header is matched.
        q.proto = h.next_header;
        q.src = h.src;
        q.dst = h.dst;
        off + size_of::<Ipv6Hdr>()
    };
    let p = c.at::<UdpHdr>(l4_off).ok()?;
    // SAFETY: bounds checked by `at`.
    let p = unsafe { &*p };
    match q.proto {
        PROTO_TCP | PROTO_UDP => {
            q.sport = be16(p.sport);
            q.dport = be16(p.dport);
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            // Echo request quoted: identifier at bytes 4..6 of the ICMP header.
            let id = be16([p.len[0], p.len[1]]);
            q.sport = id;
            q.dport = id;
        }
        _ => return None,
    }
    Some(())
}
