//! Address scopes that decide identity before any table lookup. Addresses are words of
//! network-order bytes (`enforcer_common::identity::words`); IPv4 in the first word.

use enforcer_common::FAMILY_V4;

/// Addresses a host uses before it has one of its own (DHCP's 0.0.0.0, DAD's ::) or that are
/// derived per link (fe80::/10): the MAC alone identifies such a sender.
#[inline(always)]
#[must_use]
pub fn is_link_scoped_source(family: u8, a: &[u32; 4]) -> bool {
    if family == FAMILY_V4 {
        return a[0] == 0;
    }
    let b = a[0].to_ne_bytes();
    let unspecified = a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == 0;
    unspecified || (b[0] == 0xfe && b[1] & 0xc0 == 0x80)
}

/// Destinations only the router itself can be meant by: limited broadcast, multicast, IPv6
/// link-local. The kernel never forwards them, so they are judged as `router`.
#[inline(always)]
#[must_use]
pub fn is_router_scoped_dest(family: u8, a: &[u32; 4]) -> bool {
    let b = a[0].to_ne_bytes();
    if family == FAMILY_V4 {
        return a[0] == u32::MAX || b[0] & 0xf0 == 0xe0;
    }
    b[0] == 0xff || (b[0] == 0xfe && b[1] & 0xc0 == 0x80)
}

/// ff02::/16 (link-local scope multicast), from the first address word.
#[inline(always)]
#[must_use]
pub fn is_link_local_multicast(first_word: u32) -> bool {
    let b = first_word.to_ne_bytes();
    b[0] == 0xff && b[1] & 0x0f == 0x02
}

/// Link-local multicast destinations: 224.0.0.0/24 and ff02::/16. Routers never forward them; the
/// router's own (OSPF, VRRP, mDNS, MLD, all-nodes) stay on the link and always pass at egress.
#[inline(always)]
#[must_use]
pub fn is_link_local_multicast_dest(family: u8, a: &[u32; 4]) -> bool {
    if family == FAMILY_V4 {
        let b = a[0].to_ne_bytes();
        return b[0] == 224 && b[1] == 0 && b[2] == 0;
    }
    is_link_local_multicast(a[0])
}

/// A DHCP (67 to 68) or DHCPv6 (547 to 546) server reply. The router's DHCP server answers
/// devices that have no address yet (or to broadcast), so the reply matches no remembered flow;
/// it always passes at egress.
#[inline(always)]
#[must_use]
pub fn is_dhcp_server_reply(family: u8, proto: u8, sport: u16, dport: u16) -> bool {
    if proto != enforcer_common::PROTO_UDP {
        return false;
    }
    if family == FAMILY_V4 {
        sport == 67 && dport == 68
    } else {
        sport == 547 && dport == 546
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv6Addr};

    use enforcer_common::{FAMILY_V4, FAMILY_V6, identity::words};

    use super::*;

    fn w(a: &str) -> (u8, [u32; 4]) {
        match a.parse::<IpAddr>().unwrap_or_else(|e| panic!("{a}: {e}")) {
            IpAddr::V4(v4) => {
                let mut o = [0u8; 16];
                o[..4].copy_from_slice(&v4.octets());
                (FAMILY_V4, words(o))
            }
            IpAddr::V6(v6) => (FAMILY_V6, words(v6.octets())),
        }
    }

    #[test]
    fn only_unconfigured_and_link_local_sources_are_identified_by_mac_alone() {
        for (addr, scoped) in [
            ("0.0.0.0", true),
            ("10.1.1.10", false),
            ("::", true),
            ("fe80::1", true),
            ("febf::1", true),
            ("fec0::1", false),
            ("fd00:1::10", false),
            ("2001:db8::1", false),
        ] {
            let (f, a) = w(addr);
            assert_eq!(is_link_scoped_source(f, &a), scoped, "{addr}");
        }
    }

    #[test]
    fn broadcast_multicast_and_link_local_destinations_mean_the_router() {
        for (addr, router) in [
            ("255.255.255.255", true),
            ("224.0.0.251", true),
            ("239.255.255.250", true),
            ("10.1.1.255", false),
            ("223.255.255.255", false),
            ("ff02::1:2", true),
            ("ff05::2", true),
            ("fe80::1", true),
            ("fd00:1::1", false),
        ] {
            let (f, a) = w(addr);
            assert_eq!(is_router_scoped_dest(f, &a), router, "{addr}");
        }
    }

    #[test]
    fn only_link_local_multicast_destinations_always_pass_at_egress() {
        for (addr, link) in [
            ("224.0.0.5", true),
            ("224.0.0.251", true),
            ("224.0.1.1", false),
            ("239.255.255.250", false),
            ("255.255.255.255", false),
            ("10.1.1.255", false),
            ("ff02::1", true),
            ("ff02::1:2", true),
            ("ff05::1:3", false),
            ("fe80::1", false),
            ("2001:db8::1", false),
        ] {
            let (f, a) = w(addr);
            assert_eq!(is_link_local_multicast_dest(f, &a), link, "{addr}");
        }
    }

    #[test]
    fn dhcp_server_replies_are_udp_from_the_server_port_to_the_client_port() {
        use enforcer_common::{PROTO_TCP, PROTO_UDP};
        assert!(is_dhcp_server_reply(FAMILY_V4, PROTO_UDP, 67, 68));
        assert!(is_dhcp_server_reply(FAMILY_V6, PROTO_UDP, 547, 546));
        assert!(
            !is_dhcp_server_reply(FAMILY_V4, PROTO_UDP, 68, 67),
            "a request"
        );
        assert!(
            !is_dhcp_server_reply(FAMILY_V4, PROTO_TCP, 67, 68),
            "not UDP"
        );
        assert!(
            !is_dhcp_server_reply(FAMILY_V6, PROTO_UDP, 67, 68),
            "DHCPv4 ports in IPv6"
        );
        assert!(
            !is_dhcp_server_reply(FAMILY_V4, PROTO_UDP, 547, 546),
            "DHCPv6 ports in IPv4"
        );
        assert!(!is_dhcp_server_reply(FAMILY_V4, PROTO_UDP, 67, 53));
    }

    #[test]
    fn only_link_local_scope_multicast_counts_for_mld() {
        let first = |a: Ipv6Addr| words(a.octets())[0];
        assert!(is_link_local_multicast(first(
            "ff02::16".parse().unwrap_or(Ipv6Addr::UNSPECIFIED)
        )));
        assert!(!is_link_local_multicast(first(
            "ff05::16".parse().unwrap_or(Ipv6Addr::UNSPECIFIED)
        )));
        assert!(!is_link_local_multicast(first(
            "fe80::16".parse().unwrap_or(Ipv6Addr::UNSPECIFIED)
        )));
    }
}
