//! The frame a probe sends: Ethernet, IPv4 or IPv6, then a TCP SYN, a UDP datagram or an ICMP echo
//! request, as the first packet of a new flow would look on the wire. Checksums are left zero:
//! the program reads no checksum (the kernel has checked them before XDP sees a real frame, and a
//! test run skips the stack).

use std::net::IpAddr;

/// What a probe frame carries beyond its addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeL4 {
    /// A TCP SYN to this port.
    Tcp(u16),
    /// A UDP datagram to this port.
    Udp(u16),
    /// An ICMP (or ICMPv6) echo request.
    Echo,
}

/// The source MAC of a probe from an address no device of the policy owns: locally administered,
/// so it names no real interface, and kept clear of the `02:00:00:…` range the tests use.
pub const PROBE_MAC: [u8; 6] = [0x02, 0x65, 0x6e, 0x66, 0x70, 0x72];
/// The destination MAC: the router's interface, which the program does not read.
const ROUTER_MAC: [u8; 6] = [0x02, 0x65, 0x6e, 0x66, 0x72, 0x74];
/// The probe's source port (an ephemeral one; the policy judges destination ports only).
const SOURCE_PORT: u16 = 49_152;
/// The echo identifier.
const ECHO_ID: u16 = 0x6e66;

/// Why a frame cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the probe's ends are {src} and {dst}, of two address families")]
pub struct MixedFamilies {
    pub src: IpAddr,
    pub dst: IpAddr,
}

/// The first packet of a flow from `src` (sent by `src_mac`) to `dst`.
///
/// # Errors
/// When `src` and `dst` are of two families.
pub fn probe_frame(
    src_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    l4: ProbeL4,
) -> Result<Vec<u8>, MixedFamilies> {
    let v4 = src.is_ipv4();
    let transport = transport(l4, v4);
    let mut f = Vec::with_capacity(14 + 40 + transport.len());
    f.extend_from_slice(&ROUTER_MAC);
    f.extend_from_slice(&src_mac);
    let proto = match l4 {
        ProbeL4::Tcp(_) => 6,
        ProbeL4::Udp(_) => 17,
        ProbeL4::Echo if v4 => 1,
        ProbeL4::Echo => 58,
    };
    let len = u16::try_from(transport.len()).unwrap_or(u16::MAX);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&(20 + len).to_be_bytes());
            // Identification 0, don't fragment, TTL 64.
            f.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&len.to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => return Err(MixedFamilies { src, dst }),
    }
    f.extend_from_slice(&transport);
    Ok(f)
}

fn transport(l4: ProbeL4, v4: bool) -> Vec<u8> {
    let sport = SOURCE_PORT.to_be_bytes();
    match l4 {
        ProbeL4::Tcp(port) => {
            let mut t = Vec::with_capacity(20);
            t.extend_from_slice(&sport);
            t.extend_from_slice(&port.to_be_bytes());
            // Sequence 1, acknowledgement 0, data offset 5 words, SYN, window 64240.
            t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0]);
            t
        }
        ProbeL4::Udp(port) => {
            let mut t = Vec::with_capacity(8);
            t.extend_from_slice(&sport);
            t.extend_from_slice(&port.to_be_bytes());
            t.extend_from_slice(&[0, 8, 0, 0]);
            t
        }
        ProbeL4::Echo => {
            let ty = if v4 { 8 } else { 128 };
            let mut t = vec![ty, 0, 0, 0];
            t.extend_from_slice(&ECHO_ID.to_be_bytes());
            t.extend_from_slice(&1u16.to_be_bytes());
            t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn an_ipv4_tcp_probe_is_a_syn_with_consistent_lengths() {
        let f = probe_frame(PROBE_MAC, ip("10.0.0.9"), ip("10.0.0.1"), ProbeL4::Tcp(554))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.len(), 14 + 20 + 20);
        assert_eq!(&f[6..12], &PROBE_MAC);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 40);
        assert_eq!(f[23], 6);
        assert_eq!(&f[26..30], &[10, 0, 0, 9]);
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 554);
        assert_eq!(f[47], 0x02, "SYN");
    }

    #[test]
    fn an_ipv6_echo_probe_is_an_echo_request() {
        let f = probe_frame(
            PROBE_MAC,
            ip("2001:db8::9"),
            ip("2001:db8::1"),
            ProbeL4::Echo,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.len(), 14 + 40 + 8);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(u16::from_be_bytes([f[18], f[19]]), 8);
        assert_eq!(f[20], 58);
        assert_eq!(f[54], 128);
    }

    #[test]
    fn ends_of_two_families_are_refused() {
        assert!(
            probe_frame(
                PROBE_MAC,
                ip("10.0.0.9"),
                ip("2001:db8::1"),
                ProbeL4::Udp(53)
            )
            .is_err()
        );
    }
}
