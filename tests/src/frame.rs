//! A small builder for crafted Ethernet frames, for `BPF_PROG_TEST_RUN` tests and benchmarks.
//!
//! ```text
//! let f = Frame::eth(CAM_MAC).vlan(10).ipv4("10.1.1.10", "10.1.2.10").tcp(40000, 554).syn().build();
//! ```
//! Lengths and checksums are filled in by `build`; knobs such as `ihl`, `frag` or `truncate` let a
//! test break exactly one thing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The router-side MAC the frames are sent to (any unicast MAC: the program does not check it).
pub const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

#[derive(Clone, Debug)]
enum L3 {
    None {
        ethertype: u16,
        payload: Vec<u8>,
    },
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ihl: u8,
        frag: u16,
        id: u16,
        proto: Option<u8>,
        tot_len: Option<u16>,
        options: Vec<u8>,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        ext: Vec<(u8, Vec<u8>)>,
        hop_limit: u8,
        payload_len: Option<u16>,
    },
}

#[derive(Clone, Debug)]
enum L4 {
    None,
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        doff: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    Icmp {
        ty: u8,
        code: u8,
        id: u16,
        body: Vec<u8>,
    },
    Raw {
        proto: u8,
        bytes: Vec<u8>,
    },
}

/// A frame under construction.
#[derive(Clone, Debug)]
pub struct Frame {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    tags: Vec<(u16, u16)>,
    l3: L3,
    l4: L4,
    payload: Vec<u8>,
    /// Bytes after the IP packet (Ethernet padding), not counted in any IP length.
    trailer: Vec<u8>,
    truncate: Option<usize>,
}

fn v4(a: &str) -> Ipv4Addr {
    a.parse()
        .unwrap_or_else(|e| panic!("bad IPv4 address {a:?} in a test: {e}"))
}

fn v6(a: &str) -> Ipv6Addr {
    a.parse()
        .unwrap_or_else(|e| panic!("bad IPv6 address {a:?} in a test: {e}"))
}

/// The Internet checksum (RFC 1071).
#[must_use]
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl Frame {
    /// An Ethernet frame from `src_mac` to the router.
    #[must_use]
    pub fn eth(src_mac: [u8; 6]) -> Self {
        Self {
            src_mac,
            dst_mac: ROUTER_MAC,
            tags: Vec::new(),
            l3: L3::None {
                ethertype: 0x88b5,
                payload: vec![0; 46],
            },
            l4: L4::None,
            payload: Vec::new(),
            trailer: Vec::new(),
            truncate: None,
        }
    }

    #[must_use]
    pub fn dst_mac(mut self, mac: [u8; 6]) -> Self {
        self.dst_mac = mac;
        self
    }

    /// Adds an 802.1Q tag (outermost first).
    #[must_use]
    pub fn vlan(mut self, vid: u16) -> Self {
        self.tags.push((0x8100, vid));
        self
    }

    /// Adds an 802.1ad (QinQ service) tag.
    #[must_use]
    pub fn qinq(mut self, vid: u16) -> Self {
        self.tags.push((0x88a8, vid));
        self
    }

    /// A non-IP frame with this ethertype.
    #[must_use]
    pub fn ethertype(mut self, ethertype: u16, payload: &[u8]) -> Self {
        self.l3 = L3::None {
            ethertype,
            payload: payload.to_vec(),
        };
        self
    }

    #[must_use]
    pub fn ipv4(mut self, src: &str, dst: &str) -> Self {
        self.l3 = L3::V4 {
            src: v4(src),
            dst: v4(dst),
            ihl: 5,
            frag: 0,
            id: 0x1234,
            proto: None,
            tot_len: None,
            options: Vec::new(),
        };
        self
    }

    #[must_use]
    pub fn ipv6(mut self, src: &str, dst: &str) -> Self {
        self.l3 = L3::V6 {
            src: v6(src),
            dst: v6(dst),
            ext: Vec::new(),
            hop_limit: 64,
            payload_len: None,
        };
        self
    }

    /// An IP header of the address family of `src` and `dst`.
    #[must_use]
    pub fn ip(self, src: IpAddr, dst: IpAddr) -> Self {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => self.ipv4(&s.to_string(), &d.to_string()),
            (IpAddr::V6(s), IpAddr::V6(d)) => self.ipv6(&s.to_string(), &d.to_string()),
            _ => panic!("mixed address families in a test frame"),
        }
    }

    /// IPv4 header length in 32-bit words; words beyond 5 are filled with NOP options.
    #[must_use]
    pub fn ihl(mut self, words: u8) -> Self {
        if let L3::V4 { ihl, .. } = &mut self.l3 {
            *ihl = words;
        }
        self
    }

    /// IPv4 option bytes, written right after the fixed header and padded with NOPs up to the
    /// header length (set that with [`Frame::ihl`]; the options are never inspected, only skipped).
    #[must_use]
    pub fn ip_options(mut self, bytes: &[u8]) -> Self {
        if let L3::V4 { options, .. } = &mut self.l3 {
            *options = bytes.to_vec();
        }
        self
    }

    /// IPv4 flags and fragment offset field (as on the wire: `0x2000` = MF, low 13 bits = offset/8).
    #[must_use]
    pub fn frag(mut self, field: u16) -> Self {
        if let L3::V4 { frag, .. } = &mut self.l3 {
            *frag = field;
        }
        self
    }

    #[must_use]
    pub fn ip_id(mut self, value: u16) -> Self {
        if let L3::V4 { id, .. } = &mut self.l3 {
            *id = value;
        }
        self
    }

    /// Overrides the IPv4 total length.
    #[must_use]
    pub fn tot_len(mut self, value: u16) -> Self {
        if let L3::V4 { tot_len, .. } = &mut self.l3 {
            *tot_len = Some(value);
        }
        self
    }

    /// Overrides the IPv6 payload length.
    #[must_use]
    pub fn payload_len(mut self, value: u16) -> Self {
        if let L3::V6 { payload_len, .. } = &mut self.l3 {
            *payload_len = Some(value);
        }
        self
    }

    #[must_use]
    pub fn hop_limit(mut self, value: u8) -> Self {
        if let L3::V6 { hop_limit, .. } = &mut self.l3 {
            *hop_limit = value;
        }
        self
    }

    /// Appends an IPv6 extension header: `kind` is its own protocol number (0 hop-by-hop, 43
    /// routing, 44 fragment, 60 destination options, 51 AH) and `body` its bytes after the
    /// next-header field (padded to the header's unit by the builder).
    #[must_use]
    pub fn ext(mut self, kind: u8, body: &[u8]) -> Self {
        if let L3::V6 { ext, .. } = &mut self.l3 {
            ext.push((kind, body.to_vec()));
        }
        self
    }

    /// An IPv6 fragment header with this offset (in 8-byte units), M flag and identification.
    #[must_use]
    pub fn v6_frag(self, offset_units: u16, more: bool, id: u32) -> Self {
        let of = (offset_units << 3) | u16::from(more);
        let mut body = vec![0u8];
        body.extend_from_slice(&of.to_be_bytes());
        body.extend_from_slice(&id.to_be_bytes());
        self.ext(44, &body)
    }

    #[must_use]
    pub fn tcp(mut self, sport: u16, dport: u16) -> Self {
        self.l4 = L4::Tcp {
            sport,
            dport,
            flags: 0x10,
            doff: 5,
        };
        self
    }

    /// Sets the TCP flags to SYN.
    #[must_use]
    pub fn syn(mut self) -> Self {
        if let L4::Tcp { flags, .. } = &mut self.l4 {
            *flags = 0x02;
        }
        self
    }

    /// Sets the TCP flags to SYN+ACK.
    #[must_use]
    pub fn syn_ack(mut self) -> Self {
        if let L4::Tcp { flags, .. } = &mut self.l4 {
            *flags = 0x12;
        }
        self
    }

    /// TCP data offset in 32-bit words.
    #[must_use]
    pub fn doff(mut self, words: u8) -> Self {
        if let L4::Tcp { doff, .. } = &mut self.l4 {
            *doff = words;
        }
        self
    }

    #[must_use]
    pub fn udp(mut self, sport: u16, dport: u16) -> Self {
        self.l4 = L4::Udp { sport, dport };
        self
    }

    /// ICMP echo request (ICMPv6 128 on IPv6).
    #[must_use]
    pub fn echo_request(mut self, id: u16) -> Self {
        let ty = if matches!(self.l3, L3::V6 { .. }) {
            128
        } else {
            8
        };
        self.l4 = L4::Icmp {
            ty,
            code: 0,
            id,
            body: Vec::new(),
        };
        self
    }

    /// ICMP echo reply (ICMPv6 129 on IPv6).
    #[must_use]
    pub fn echo_reply(mut self, id: u16) -> Self {
        let ty = if matches!(self.l3, L3::V6 { .. }) {
            129
        } else {
            0
        };
        self.l4 = L4::Icmp {
            ty,
            code: 0,
            id,
            body: Vec::new(),
        };
        self
    }

    /// Any ICMP/ICMPv6 message; `body` follows the 8-byte header (for errors: the quoted packet).
    #[must_use]
    pub fn icmp(mut self, ty: u8, code: u8, body: &[u8]) -> Self {
        self.l4 = L4::Icmp {
            ty,
            code,
            id: 0,
            body: body.to_vec(),
        };
        self
    }

    /// A raw L4 protocol number and bytes.
    #[must_use]
    pub fn proto(mut self, proto: u8, bytes: &[u8]) -> Self {
        self.l4 = L4::Raw {
            proto,
            bytes: bytes.to_vec(),
        };
        self
    }

    #[must_use]
    pub fn payload(mut self, bytes: &[u8]) -> Self {
        self.payload = bytes.to_vec();
        self
    }

    /// Bytes after the IP packet, outside its total/payload length (Ethernet padding).
    #[must_use]
    pub fn trailer(mut self, bytes: &[u8]) -> Self {
        self.trailer = bytes.to_vec();
        self
    }

    /// Sets the TCP flags byte as on the wire (`0x02` SYN, `0x10` ACK, `0x01` FIN, ...).
    #[must_use]
    pub fn tcp_flags(mut self, value: u8) -> Self {
        if let L4::Tcp { flags, .. } = &mut self.l4 {
            *flags = value;
        }
        self
    }

    /// Cuts the finished frame to `len` bytes.
    #[must_use]
    pub fn truncate(mut self, len: usize) -> Self {
        self.truncate = Some(len);
        self
    }

    fn l4_bytes(&self) -> (u8, Vec<u8>) {
        let mut out = Vec::new();
        let proto = match &self.l4 {
            L4::None => 59,
            L4::Tcp {
                sport,
                dport,
                flags,
                doff,
            } => {
                out.extend_from_slice(&sport.to_be_bytes());
                out.extend_from_slice(&dport.to_be_bytes());
                out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
                out.push(doff << 4);
                out.push(*flags);
                out.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
                let opts = usize::from(*doff).saturating_sub(5) * 4;
                out.extend(std::iter::repeat_n(1u8, opts));
                6
            }
            L4::Udp { sport, dport } => {
                out.extend_from_slice(&sport.to_be_bytes());
                out.extend_from_slice(&dport.to_be_bytes());
                let len = (8 + self.payload.len()) as u16;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                17
            }
            L4::Icmp { ty, code, id, body } => {
                out.extend_from_slice(&[*ty, *code, 0, 0]);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&[0, 1]);
                out.extend_from_slice(body);
                if matches!(self.l3, L3::V6 { .. }) {
                    58
                } else {
                    1
                }
            }
            L4::Raw { proto, bytes } => {
                out.extend_from_slice(bytes);
                *proto
            }
        };
        out.extend_from_slice(&self.payload);
        if let (L4::Icmp { .. }, L3::V4 { .. }) = (&self.l4, &self.l3) {
            let c = checksum(&out);
            out[2..4].copy_from_slice(&c.to_be_bytes());
        }
        (proto, out)
    }

    /// The IP packet alone (for quoting inside ICMP errors).
    #[must_use]
    pub fn ip_bytes(&self) -> Vec<u8> {
        let full = self.build();
        let l2 = 14 + 4 * self.tags.len();
        full[l2.min(full.len())..].to_vec()
    }

    /// The finished frame.
    #[must_use]
    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        let ethertype = match &self.l3 {
            L3::None { ethertype, .. } => *ethertype,
            L3::V4 { .. } => 0x0800,
            L3::V6 { .. } => 0x86dd,
        };
        for (tpid, vid) in &self.tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        let (proto, l4) = self.l4_bytes();
        match &self.l3 {
            L3::None { payload, .. } => f.extend_from_slice(payload),
            L3::V4 {
                src,
                dst,
                ihl,
                frag,
                id,
                proto: p,
                tot_len,
                options,
            } => {
                let hlen = usize::from(*ihl) * 4;
                let total = tot_len.unwrap_or((hlen.max(20) + l4.len()) as u16);
                let mut h = vec![0x40 | (ihl & 0x0f), 0];
                h.extend_from_slice(&total.to_be_bytes());
                h.extend_from_slice(&id.to_be_bytes());
                h.extend_from_slice(&frag.to_be_bytes());
                h.push(64);
                h.push(p.unwrap_or(proto));
                h.extend_from_slice(&[0, 0]);
                h.extend_from_slice(&src.octets());
                h.extend_from_slice(&dst.octets());
                // Options as given, then NOPs (type 1) up to the header length.
                h.extend_from_slice(options);
                while h.len() < hlen {
                    h.push(1);
                }
                let c = checksum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&h);
                f.extend_from_slice(&l4);
            }
            L3::V6 {
                src,
                dst,
                ext,
                hop_limit,
                payload_len,
            } => {
                let mut chain = Vec::new();
                for (i, (_, body)) in ext.iter().enumerate() {
                    let next = ext.get(i + 1).map_or(proto, |(k, _)| *k);
                    let kind = ext[i].0;
                    let mut h = vec![next];
                    if kind == 44 {
                        h.extend_from_slice(body);
                    } else {
                        let unit = if kind == 51 { 4 } else { 8 };
                        let mut b = body.clone();
                        while (b.len() + 2) % unit != 0 || b.len() + 2 < 8 {
                            b.push(0);
                        }
                        let len = if kind == 51 {
                            (b.len() + 2) / 4 - 2
                        } else {
                            (b.len() + 2) / 8 - 1
                        };
                        h.push(len as u8);
                        h.extend_from_slice(&b);
                    }
                    chain.extend_from_slice(&h);
                }
                let first = ext.first().map_or(proto, |(k, _)| *k);
                let plen = payload_len.unwrap_or((chain.len() + l4.len()) as u16);
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&plen.to_be_bytes());
                f.push(first);
                f.push(*hop_limit);
                f.extend_from_slice(&src.octets());
                f.extend_from_slice(&dst.octets());
                f.extend_from_slice(&chain);
                f.extend_from_slice(&l4);
            }
        }
        f.extend_from_slice(&self.trailer);
        if let Some(len) = self.truncate {
            f.truncate(len);
        }
        f
    }
}

/// Parses a MAC written `02:00:00:00:01:10`.
#[must_use]
pub fn mac(s: &str) -> [u8; 6] {
    let mut out = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    assert_eq!(parts.len(), 6, "bad MAC {s:?} in a test");
    for (o, p) in out.iter_mut().zip(parts) {
        *o = u8::from_str_radix(p, 16).unwrap_or_else(|e| panic!("bad MAC {s:?} in a test: {e}"));
    }
    out
}
