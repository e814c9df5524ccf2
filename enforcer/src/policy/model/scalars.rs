//! The scalar parsers: one policy value (a MAC, a CIDR, a service, a duration) from its text, or
//! a [`Problem`] saying what is wrong and what to write instead.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use macaddr::MacAddr6;

use super::{Endpoint, MAX_IDENT, Ports, Service};

pub(super) const SERVICE_HINT: &str = "services are tcp/PORT, udp/PORT, tcp/LOW-HIGH, udp/LOW-HIGH, tcp, udp, icmp or any (ports decimal, 1-65535)";
pub(super) const ENDPOINT_HINT: &str = "endpoints are zone:NAME, device:NAME, network:NAME, dns:NAME, router or any (no space after the colon)";
pub(super) const IDENT_HINT: &str =
    "names are lowercase ASCII: a letter, then letters, digits, - or _, at most 64 characters";

/// A value parser's complaint: the message and what to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pub message: String,
    pub hint: String,
}

fn problem(message: impl Into<String>, hint: impl Into<String>) -> Problem {
    Problem {
        message: message.into(),
        hint: hint.into(),
    }
}

/// Keep messages readable when someone pastes a megabyte into a name.
pub(super) fn truncate(s: &str) -> String {
    const SHOWN: usize = 70;
    if s.chars().count() <= SHOWN {
        s.to_owned()
    } else {
        format!("{}...", s.chars().take(SHOWN).collect::<String>())
    }
}

/// `^[a-z][a-z0-9_-]{0,63}$`.
pub(crate) fn check_ident(s: &str) -> Result<(), String> {
    let mut chars = s.chars();
    match chars.next() {
        None => return Err("it is empty".to_owned()),
        Some(c) if !c.is_ascii_lowercase() => {
            return Err("it must start with a lowercase letter a-z".to_owned());
        }
        Some(_) => {}
    }
    if let Some(bad) =
        chars.find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Err(format!("character {bad:?} is not allowed"));
    }
    if s.len() > MAX_IDENT {
        return Err(format!("it is longer than {MAX_IDENT} characters"));
    }
    Ok(())
}

/// A decimal number without sign, leading zeros, separators or fraction (reviewers must see the
/// real value: `0x50`, `0o120`, `010`, `8_080` and `80.0` are all rejected).
fn decimal(s: &str) -> Option<u64> {
    let canonical = !s.is_empty()
        && s.len() <= 10
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

/// A device MAC as policies write it: six two-digit hex bytes separated by colons, unicast and not
/// all zeros.
pub(crate) fn parse_mac(s: &str) -> Result<[u8; 6], Problem> {
    let hint = "write six two-digit hex bytes separated by colons, e.g. 02:00:00:00:01:10";
    // `macaddr` also reads dashes and Cisco dots; a policy keeps the one spelling reviewers and
    // grep expect, so the form is checked here and the crate only turns the bytes into a value.
    let colons = s.len() == 17
        && s.split(':')
            .all(|byte| byte.len() == 2 && byte.bytes().all(|b| b.is_ascii_hexdigit()));
    let mac: MacAddr6 = colons
        .then(|| s.parse().ok())
        .flatten()
        .ok_or_else(|| problem(format!("invalid MAC address `{}`", truncate(s)), hint))?;
    if mac.is_nil() {
        return Err(problem(
            "MAC address 00:00:00:00:00:00 cannot identify a device",
            "use the device's real MAC",
        ));
    }
    if mac.is_multicast() {
        return Err(problem(
            format!("MAC address `{s}` is a multicast or broadcast address"),
            "a device MAC has the lowest bit of its first byte clear",
        ));
    }
    Ok(mac.into_array())
}

/// A MAC as every output of enforcer shows it: lowercase hex bytes separated by colons.
#[must_use]
pub fn fmt_mac(mac: [u8; 6]) -> String {
    // `macaddr` prints uppercase; policies, `ip link` and enforcer's outputs have always been
    // lowercase, and scripts compare these strings.
    MacAddr6::from(mac).to_string().to_ascii_lowercase()
}

pub(crate) fn parse_addr(s: &str) -> Result<IpAddr, Problem> {
    if s.contains('/') {
        return Err(problem(
            format!(
                "`{}` is a CIDR; a device address is a single address",
                truncate(s)
            ),
            "write the address without /LEN",
        ));
    }
    let addr: IpAddr = s.parse().map_err(|_| {
        problem(
            format!("invalid IP address `{}`", truncate(s)),
            "write an IPv4 (10.1.1.10) or IPv6 (fd00:1:1::10) address",
        )
    })?;
    let bad = match addr {
        IpAddr::V4(a) => {
            (a.is_unspecified() || a.is_multicast() || a == Ipv4Addr::BROADCAST || a.is_loopback())
                .then_some("unspecified, loopback, multicast or broadcast")
        }
        IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => {
            Some("IPv4-mapped (packets carry the IPv4 address itself)")
        }
        IpAddr::V6(a) => (a.is_unspecified() || a.is_multicast() || a.is_loopback())
            .then_some("unspecified, loopback or multicast"),
    };
    match bad {
        Some(why) => Err(problem(
            format!("address {addr} cannot belong to a device: it is {why}"),
            "use the device's unicast address",
        )),
        None => Ok(addr),
    }
}

pub(crate) fn parse_cidr(s: &str) -> Result<IpNet, Problem> {
    let hint = "write a network address and prefix length, e.g. 10.1.99.0/24 or fd00:1:99::/64";
    let Some((addr, len)) = s.split_once('/') else {
        return Err(problem(
            format!("`{}` is not a CIDR (no /LEN)", truncate(s)),
            hint,
        ));
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| problem(format!("invalid address in CIDR `{}`", truncate(s)), hint))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = decimal(len).filter(|l| *l <= max).ok_or_else(|| {
        problem(
            format!("invalid prefix length in `{}` (0-{max})", truncate(s)),
            hint,
        )
    })?;
    let net =
        IpNet::new(addr, len as u8).map_err(|_| problem(format!("invalid CIDR `{s}`"), hint))?;
    if net.trunc() != net {
        return Err(problem(
            format!(
                "CIDR `{s}` has host bits set; the network address is {}",
                net.trunc()
            ),
            format!("write {}", net.trunc()),
        ));
    }
    Ok(net)
}

fn parse_port(s: &str, service: &str) -> Result<u16, Problem> {
    match decimal(s) {
        Some(0) => Err(problem(
            format!("port 0 in `{service}` is not a port"),
            SERVICE_HINT,
        )),
        Some(p) => u16::try_from(p).map_err(|_| {
            problem(
                format!("port {p} in `{service}` is out of range 1-65535"),
                SERVICE_HINT,
            )
        }),
        None => Err(problem(
            format!(
                "port `{}` in `{}` must be a decimal number",
                truncate(s),
                truncate(service)
            ),
            SERVICE_HINT,
        )),
    }
}

pub(crate) fn parse_service(s: &str) -> Result<Service, Problem> {
    let (proto, ports) = match s.split_once('/') {
        Some((proto, ports)) => (proto, Some(ports)),
        None => (s, None),
    };
    let ports = match ports {
        None => Ports::All,
        Some(p) => {
            let (lo, hi) = p.split_once('-').unwrap_or((p, p));
            let (lo, hi) = (parse_port(lo, s)?, parse_port(hi, s)?);
            if lo > hi {
                return Err(problem(
                    format!("port range {lo}-{hi} in `{s}` is inverted"),
                    format!("write {hi}-{lo}"),
                ));
            }
            Ports::Range(lo, hi)
        }
    };
    match (proto, ports) {
        ("tcp", p) => Ok(Service::Tcp(p)),
        ("udp", p) => Ok(Service::Udp(p)),
        ("icmp", Ports::All) => Ok(Service::Icmp),
        ("any", Ports::All) => Ok(Service::Any),
        ("icmp" | "any", Ports::Range(..)) => Err(problem(
            format!("`{proto}` takes no port (in `{s}`)"),
            SERVICE_HINT,
        )),
        _ => Err(problem(
            format!("unknown service `{}`", truncate(s)),
            SERVICE_HINT,
        )),
    }
}

pub(crate) fn parse_endpoint(s: &str) -> Result<Endpoint, Problem> {
    match s {
        "router" => return Ok(Endpoint::Router),
        "any" => return Ok(Endpoint::Any),
        _ => {}
    }
    if let Some(name) = s.strip_prefix("dns:") {
        return crate::policy::names::NamePattern::parse(name)
            .map(Endpoint::Name)
            .map_err(|why| {
                problem(
                    format!("invalid name in endpoint `{}`: {why}", truncate(s)),
                    "write dns:NAME or dns:*.NAME (`*` only as the whole leftmost label)",
                )
            });
    }
    let Some((kind, name)) = s.split_once(':') else {
        return Err(problem(
            format!("invalid endpoint `{}`", truncate(s)),
            ENDPOINT_HINT,
        ));
    };
    check_ident(name).map_err(|why| {
        problem(
            format!("invalid name in endpoint `{}`: {why}", truncate(s)),
            IDENT_HINT,
        )
    })?;
    match kind {
        "zone" => Ok(Endpoint::Zone(name.to_owned())),
        "device" => Ok(Endpoint::Device(name.to_owned())),
        "network" => Ok(Endpoint::Network(name.to_owned())),
        _ => Err(problem(
            format!("invalid endpoint `{}`", truncate(s)),
            ENDPOINT_HINT,
        )),
    }
}

/// `10s`, `30m`, `1h`, `2d`, or several of them from the largest unit down, each unit once
/// (`1h30m`, `2d12h`): whole decimal numbers, no spaces, a positive total; in seconds.
pub(crate) fn parse_duration(s: &str) -> Result<u32, Problem> {
    let hint = "write whole numbers followed by d, h, m or s, largest unit first, e.g. 10s, 30m, 1h30m, 2d12h";
    if !duration_grammar(s) {
        return Err(problem(format!("invalid duration `{}`", truncate(s)), hint));
    }
    // The grammar above is a subset of humantime's (which also takes spaces, `ms`, `1hour`, ...),
    // so the crate does only the arithmetic; an overflow there is a duration too long as well.
    let seconds = humantime::parse_duration(s).map(|d| d.as_secs()).ok();
    match seconds {
        Some(0) => Err(problem(format!("duration `{s}` is zero"), hint)),
        Some(n) => u32::try_from(n).map_err(|_| too_long(s)),
        None => Err(too_long(s)),
    }
}

fn too_long(s: &str) -> Problem {
    problem(
        format!("duration `{}` is too long", truncate(s)),
        "at most about 136 years",
    )
}

/// `(DECIMAL UNIT)+` with units d, h, m, s strictly in that order.
fn duration_grammar(s: &str) -> bool {
    const UNITS: &[u8] = b"dhms";
    let mut rest = s;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, tail) = rest.split_at(digits);
        let Some(unit) = tail.bytes().next() else {
            return false;
        };
        let Some(rank) = UNITS[next_unit..].iter().position(|u| *u == unit) else {
            return false;
        };
        if decimal(number).is_none() {
            return false;
        }
        next_unit += rank + 1;
        rest = &tail[1..];
    }
    !s.is_empty()
}

pub(super) fn parse_count(s: &str) -> Result<u32, Problem> {
    decimal(s)
        .filter(|n| (1..=1_000_000).contains(n))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            problem(
                format!("invalid count `{}`", truncate(s)),
                "write a decimal number from 1 to 1000000",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_parse() {
        let ok: &[(&str, Service)] = &[
            ("tcp/80", Service::Tcp(Ports::Range(80, 80))),
            ("udp/8000-8010", Service::Udp(Ports::Range(8000, 8010))),
            ("tcp", Service::Tcp(Ports::All)),
            ("udp", Service::Udp(Ports::All)),
            ("icmp", Service::Icmp),
            ("any", Service::Any),
            ("tcp/65535", Service::Tcp(Ports::Range(65535, 65535))),
        ];
        for (s, want) in ok {
            assert_eq!(parse_service(s).as_ref(), Ok(want), "{s}");
            assert_eq!(&want.to_string(), s);
        }
    }

    #[test]
    fn bad_services_are_rejected_with_the_reason() {
        let bad: &[(&str, &str)] = &[
            ("tcp/0", "port 0"),
            ("tcp/65536", "out of range"),
            ("tcp/70000", "out of range"),
            ("tcp/9000-80", "inverted"),
            ("tcp/0x50", "decimal"),
            ("tcp/0o120", "decimal"),
            ("tcp/010", "decimal"),
            ("tcp/8_080", "decimal"),
            ("tcp/80.0", "decimal"),
            ("tcp/-1", "decimal"),
            ("tcp/", "decimal"),
            ("sctp/80", "unknown service"),
            ("TCP/80", "unknown service"),
            ("icmp/8", "takes no port"),
            ("80", "unknown service"),
        ];
        for (s, want) in bad {
            let err = parse_service(s).expect_err(s);
            assert!(err.message.contains(want), "{s}: {}", err.message);
        }
    }

    #[test]
    fn cidr_with_host_bits_names_the_network() {
        let err = parse_cidr("10.1.1.1/24").expect_err("host bits");
        assert!(
            err.message.contains("the network address is 10.1.1.0/24"),
            "{}",
            err.message
        );
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("::/129").is_err());
        assert!(parse_cidr("10.0.0.0").is_err());
        assert_eq!(parse_cidr("::/0").map(|n| n.prefix_len()), Ok(0));
    }

    #[test]
    fn macs_parse_in_colon_form_and_print_lowercase() {
        assert_eq!(parse_mac("02:00:00:00:01:10"), Ok([2, 0, 0, 0, 1, 0x10]));
        assert_eq!(
            parse_mac("02:AB:cd:00:01:10"),
            Ok([2, 0xab, 0xcd, 0, 1, 0x10])
        );
        assert_eq!(fmt_mac([2, 0xab, 0xcd, 0, 1, 0x10]), "02:ab:cd:00:01:10");
    }

    #[test]
    fn bad_macs_are_rejected_with_the_reason() {
        let bad: &[(&str, &str)] = &[
            ("02:00:00:00:01", "invalid MAC address `02:00:00:00:01`"),
            (
                "02-00-00-00-01-10",
                "invalid MAC address `02-00-00-00-01-10`",
            ),
            ("0200.0000.0110", "invalid MAC address"),
            ("zz:00:00:00:01:10", "invalid MAC address"),
            ("2:00:00:00:01:100", "invalid MAC address"),
            ("00:00:00:00:00:00", "cannot identify a device"),
            ("01:00:5e:00:00:01", "is a multicast or broadcast address"),
            ("ff:ff:ff:ff:ff:ff", "is a multicast or broadcast address"),
        ];
        for (s, want) in bad {
            let err = parse_mac(s).expect_err(s);
            assert!(err.message.contains(want), "{s}: {}", err.message);
        }
    }

    #[test]
    fn bad_addresses_are_rejected_with_the_reason() {
        let bad: &[(&str, &str)] = &[
            ("10.1.1", "invalid IP address"),
            ("010.1.1.1", "invalid IP address"),
            ("10.1.1.0/24", "is a CIDR"),
            ("0.0.0.0", "unspecified, loopback, multicast or broadcast"),
            ("224.0.0.1", "unspecified, loopback, multicast or broadcast"),
            (
                "255.255.255.255",
                "unspecified, loopback, multicast or broadcast",
            ),
            ("::", "unspecified, loopback or multicast"),
            ("::ffff:10.1.1.1", "IPv4-mapped"),
        ];
        for (s, want) in bad {
            let err = parse_addr(s).expect_err(s);
            assert!(err.message.contains(want), "{s}: {}", err.message);
        }
    }

    #[test]
    fn durations_take_one_unit_or_a_compound_from_the_largest_unit_down() {
        let ok: &[(&str, u32)] = &[
            ("10s", 10),
            ("30m", 1800),
            ("1h", 3600),
            ("2d", 172_800),
            ("1h30m", 5400),
            ("2d12h", 216_000),
            ("1d2h3m4s", 93_784),
            ("1h0m", 3600),
        ];
        for (s, want) in ok {
            assert_eq!(parse_duration(s), Ok(*want), "{s}");
        }
    }

    #[test]
    fn durations_refuse_spaces_fractions_unknown_units_zero_and_overflow() {
        let bad: &[(&str, &str)] = &[
            ("10", "invalid duration"),
            ("1.5h", "invalid duration"),
            ("1w", "invalid duration"),
            ("h", "invalid duration"),
            ("01h", "invalid duration"),
            ("10 s", "invalid duration"),
            ("1h 30m", "invalid duration"),
            ("30m1h", "invalid duration"),
            ("1h1h", "invalid duration"),
            ("1ms", "invalid duration"),
            ("1hour", "invalid duration"),
            ("", "invalid duration"),
            ("0s", "is zero"),
            ("0h0m", "is zero"),
            ("99999999999d", "invalid duration"),
            ("9999999999d", "too long"),
            ("50000d", "too long"),
        ];
        for (s, want) in bad {
            let err = parse_duration(s).expect_err(s);
            assert!(err.message.contains(want), "{s:?}: {}", err.message);
        }
    }

    #[test]
    fn identifiers() {
        for good in ["a", "cam-1", "z_9", &"a".repeat(64)] {
            assert!(check_ident(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Cam",
            "1cam",
            "cam.1",
            "іot",
            "a b",
            &"a".repeat(65),
            "null"[..0].as_ref(),
        ] {
            assert!(check_ident(bad).is_err(), "{bad}");
        }
    }
}
