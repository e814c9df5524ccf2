//! Synthetic policies for benchmarks and scale tests: valid, deterministic, and shaped like a large
//! site (many general zones, a few server zones whose devices have rules of their own, networks,
//! port ranges, some denies).
//!
//! Address scheme of device `dev-{i}` (`i` from 0), with `j = i + 1`:
//! - MAC `02:00:00:JJ:JJ:JJ`: the low 24 bits of `j`, big-endian (locally administered, unicast);
//! - IPv4 `10.A.B.C` with `A.B.C` the low 24 bits of `j` (`10.0.0.1` for `dev-0`);
//! - IPv6 `fd00::X:Y` with `X = j >> 16`, `Y = j & 0xffff` in hex (`fd00::0:1` for `dev-0`);
//! - zone `servers-{(i / 50) % 4}` when `i % 50 == 0`, else `zone-{i % Z}` where
//!   `Z = clamp(devices / 800, 8, 128)`.
//!
//! Networks: `internet` (`0.0.0.0/0`, `::/0`), `honeypot` (`10.255.99.0/24`, never a device
//! address below 2^24 - 65,536 devices) and `partner-{k}` (`198.18.k.0/24`, `2001:db8:k::/48`) for
//! k in 0..8. Rule `k` is `r{k}`; see [`generate`] for the mix.

use std::fmt::Write as _;

/// Number of `servers-*` zones.
const SERVER_ZONES: usize = 4;
/// Every this-many devices, one is a server (which rules may name).
const SERVER_EVERY: usize = 50;
const PARTNERS: usize = 8;
const SERVICES: &[&str] = &[
    "tcp/443",
    "tcp/80",
    "udp/53",
    "tcp/8000-8007",
    "icmp",
    "tcp/22",
    "udp/123",
    "udp/5683",
    "tcp/1883",
    "tcp/8883",
    "tcp/554",
    "udp/5000-5003",
];

/// General (non-server) zone count for a device count.
fn zone_count(devices: usize) -> usize {
    (devices / 800).clamp(8, 128)
}

/// Device `i`'s `j = i + 1`, the number its addresses are built from.
#[must_use]
pub fn host_number(i: usize) -> u32 {
    u32::try_from(i + 1).unwrap_or(u32::MAX) & 0x00ff_ffff
}

/// IPv4 address of device `i` (see the module docs).
#[must_use]
pub fn ipv4(i: usize) -> std::net::Ipv4Addr {
    let j = host_number(i);
    std::net::Ipv4Addr::from(0x0a00_0000 | j)
}

/// IPv6 address of device `i`.
#[must_use]
pub fn ipv6(i: usize) -> std::net::Ipv6Addr {
    std::net::Ipv6Addr::from((0xfd00_u128 << 112) | u128::from(host_number(i)))
}

/// MAC address of device `i`.
#[must_use]
pub fn mac(i: usize) -> [u8; 6] {
    let j = host_number(i).to_be_bytes();
    [0x02, 0, 0, j[1], j[2], j[3]]
}

/// A small, fixed pseudo-random sequence (so output is identical on every run and platform).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % bound.max(1)
    }
}

/// A valid policy with `devices` devices (at most 2^24 - 1) and `rules` rules, as one YAML file.
///
/// Rules (`k` in 0..rules): 70% zone-to-zone allows between general zones, 10% zone to a network,
/// 10% `device:` rules from a server to a general zone, 10% zone-to-zone denies; the first four
/// rules (when there are that many) let each server zone reach the internet.
#[must_use]
pub fn generate(devices: usize, rules: usize) -> String {
    let mut y = String::with_capacity(devices * 130 + rules * 120 + 4096);
    write_site(&mut y, devices, rules);
    write_devices(&mut y, 0..devices, zone_count(devices));
    y
}

/// Everything but `devices:`: zones, networks, rules, defaults and quarantine.
fn write_site(y: &mut String, devices: usize, rules: usize) {
    let zones = zone_count(devices);
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(
        y,
        "# Synthetic policy: {devices} devices, {rules} rules (enforcer::policy::synth)."
    );
    write_zones_and_networks(y, zones);
    write_rules(y, devices, rules, zones);
    y.push_str(DEFAULTS);
}

/// `zones:` (quarantine, the server racks, `zones` plain zones) and `networks:`.
fn write_zones_and_networks(y: &mut String, zones: usize) {
    y.push_str("zones:\n  quarantine: {description: unknown or isolated devices}\n");
    for s in 0..SERVER_ZONES {
        let _ = writeln!(y, "  servers-{s}: {{description: server rack {s}}}");
    }
    for z in 0..zones {
        let _ = writeln!(y, "  zone-{z}: {{}}");
    }
    y.push_str(
        "networks:\n  internet: [\"0.0.0.0/0\", \"::/0\"]\n  honeypot: [\"10.255.99.0/24\"]\n",
    );
    for k in 0..PARTNERS {
        let _ = writeln!(
            y,
            "  partner-{k}: [\"198.18.{k}.0/24\", \"2001:db8:{k}::/48\"]"
        );
    }
}

/// Devices per file of [`generate_files`]: some 3.5 MB, well under the loader's 8 MiB a file.
pub const DEVICES_PER_FILE: usize = 25_000;

/// The policy of [`generate`] as the files of a policy directory, as a site this big must keep it
/// (the loader caps a file at 8 MiB): `00-site.yaml` with zones, networks, rules and defaults,
/// then `10-devices-NNN.yaml` of [`DEVICES_PER_FILE`] devices each. `(name, text)` in name order.
#[must_use]
pub fn generate_files(devices: usize, rules: usize) -> Vec<(String, String)> {
    let zones = zone_count(devices);
    let mut site = String::with_capacity(rules * 120 + 4096);
    write_site(&mut site, devices, rules);
    let mut files = vec![("00-site.yaml".to_owned(), site)];
    for (n, start) in (0..devices).step_by(DEVICES_PER_FILE).enumerate() {
        let end = (start + DEVICES_PER_FILE).min(devices);
        let mut y = String::with_capacity((end - start) * 130);
        write_devices(&mut y, start..end, zones);
        files.push((format!("10-devices-{n:03}.yaml"), y));
    }
    files
}

const DEFAULTS: &str = "defaults:\n  action: deny\n  mode: enforce\n  unknown: quarantine\n  spoofed: deny\nquarantine:\n  zone: quarantine\n  when:\n    denied_packets: {count: 50, within: 10s}\n    spoofing: true\n    touches: [network:honeypot]\n  release_after: 1h\n";

/// `devices:` for the devices numbered `range`: every `SERVER_EVERY`th a server, the rest spread
/// over the plain zones.
fn write_devices(y: &mut String, range: std::ops::Range<usize>, zones: usize) {
    y.push_str("devices:\n");
    let vendors = [
        "Axis",
        "Bosch",
        "Honeywell",
        "Siemens",
        "Hikvision",
        "Philips",
    ];
    let risks = ["low", "medium", "high", "critical"];
    for i in range {
        let zone = if i % SERVER_EVERY == 0 {
            format!("servers-{}", (i / SERVER_EVERY) % SERVER_ZONES)
        } else {
            format!("zone-{}", i % zones)
        };
        let m = mac(i);
        let _ = write!(
            y,
            "  dev-{i}:\n    zone: {zone}\n    mac: \"{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\"\n    addresses: [\"{}\", \"{}\"]\n    vendor: {}\n    risk: {}\n",
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[5],
            ipv4(i),
            ipv6(i),
            vendors[i % vendors.len()],
            risks[i % risks.len()],
        );
    }
}

/// `rules:`: the server racks' egress first, then a seeded mix of zone, partner, server and deny
/// rules.
fn write_rules(y: &mut String, devices: usize, rules: usize, zones: usize) {
    y.push_str("rules:\n");
    let mut rng = Lcg(0x5eed);
    let servers = devices.div_ceil(SERVER_EVERY);
    for k in 0..rules {
        let (from, to, verb, svc) = if k < SERVER_ZONES.min(rules) {
            (
                format!("zone:servers-{k}"),
                "network:internet".to_owned(),
                "allow",
                "tcp/443, udp/123".to_owned(),
            )
        } else {
            random_rule(k, zones, servers, &mut rng)
        };
        let _ = write!(
            y,
            "  - name: r{k}\n    from: {from}\n    to: {to}\n    {verb}: [{svc}]\n"
        );
    }
}

/// Rule `k` after the server racks': (from, to, verb, services).
fn random_rule(
    k: usize,
    zones: usize,
    servers: usize,
    rng: &mut Lcg,
) -> (String, String, &'static str, String) {
    let services = |n: usize, rng: &mut Lcg| -> String {
        let mut picked: Vec<&str> = (0..n).map(|_| SERVICES[rng.next(SERVICES.len())]).collect();
        picked.sort_unstable();
        picked.dedup();
        picked.join(", ")
    };
    match k % 10 {
        0..=6 => {
            let n = 1 + rng.next(3);
            (
                format!("zone:zone-{}", rng.next(zones)),
                format!("zone:zone-{}", rng.next(zones)),
                "allow",
                services(n, rng),
            )
        }
        7 => {
            let to = match rng.next(PARTNERS + 1) {
                0 => "network:internet".to_owned(),
                p => format!("network:partner-{}", p - 1),
            };
            (
                format!("zone:zone-{}", rng.next(zones)),
                to,
                "allow",
                services(2, rng),
            )
        }
        8 if servers > 0 => {
            let server = rng.next(servers) * SERVER_EVERY;
            (
                format!("device:dev-{server}"),
                format!("zone:zone-{}", rng.next(zones)),
                "allow",
                services(2, rng),
            )
        }
        _ => {
            let svc = if rng.next(4) == 0 {
                "any".to_owned()
            } else {
                services(1, rng)
            };
            (
                format!("zone:zone-{}", rng.next(zones)),
                format!("zone:zone-{}", rng.next(zones)),
                "deny",
                svc,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{CompileOptions, compile, parse_str};

    #[test]
    fn generated_policy_is_valid_and_deterministic() {
        let text = generate(2_000, 300);
        assert_eq!(text, generate(2_000, 300));
        let policy = parse_str("synth.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(policy.devices.len(), 2_000);
        assert_eq!(policy.rules.len(), 300);
        let compiled =
            compile(&policy, &CompileOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(compiled.maps.macs.len(), 2_000);
        assert_eq!(compiled.maps.addrs_v4[0].0, [10, 0, 0, 1]);
        assert_eq!(ipv4(255), std::net::Ipv4Addr::new(10, 0, 1, 0));
        assert_eq!(mac(0), [2, 0, 0, 0, 0, 1]);
        assert_eq!(ipv6(0).to_string(), "fd00::1");
    }

    #[test]
    fn tiny_sizes_are_valid() {
        for (d, r) in [(1, 1), (1, 0), (0, 1), (10, 10)] {
            let text = generate(d, r);
            parse_str("synth.yaml", &text).unwrap_or_else(|e| panic!("{d}/{r}: {e}"));
        }
    }
}
