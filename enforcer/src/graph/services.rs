//! Whether two rules' services (as written: `tcp/80`, `udp/8000-8010`, `tcp`, `icmp`, `any`) share
//! any traffic, to tell a deny that carves out of an allow from one that guards empty ground.

/// What one written service matches: a protocol and an inclusive port range (all ports for
/// `tcp`, `icmp`), or everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Match<'a> {
    Any,
    Proto(&'a str, u16, u16),
}

fn parse(service: &str) -> Match<'_> {
    if service == "any" {
        return Match::Any;
    }
    let (proto, ports) = service.split_once('/').unwrap_or((service, ""));
    let (lo, hi) = match ports.split_once('-') {
        _ if ports.is_empty() => (0, u16::MAX),
        Some((lo, hi)) => (lo.parse().unwrap_or(0), hi.parse().unwrap_or(u16::MAX)),
        None => {
            let p = ports.parse().unwrap_or(0);
            (p, p)
        }
    };
    Match::Proto(proto, lo, hi)
}

/// Do the two lists share any traffic?
pub(super) fn overlap(a: &[String], b: &[String]) -> bool {
    a.iter().any(|x| {
        b.iter().any(|y| match (parse(x), parse(y)) {
            (Match::Any, _) | (_, Match::Any) => true,
            (Match::Proto(p, lo, hi), Match::Proto(q, lo2, hi2)) => {
                p == q && lo <= hi2 && lo2 <= hi
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::overlap;

    fn list(s: &[&str]) -> Vec<String> {
        s.iter().map(|&x| x.to_owned()).collect()
    }

    #[test]
    fn services_overlap_on_shared_protocol_and_ports_or_any() {
        assert!(overlap(&list(&["tcp/443"]), &list(&["any"])));
        assert!(overlap(&list(&["tcp/8000-8010"]), &list(&["tcp/8005"])));
        assert!(overlap(&list(&["tcp"]), &list(&["tcp/22"])));
        assert!(overlap(&list(&["icmp"]), &list(&["udp/53", "icmp"])));
        assert!(!overlap(&list(&["tcp/443"]), &list(&["udp/443"])));
        assert!(!overlap(&list(&["tcp/80"]), &list(&["tcp/81-90"])));
    }
}
