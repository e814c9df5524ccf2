//! DNS-name destinations: the `dns:` section and `dns:NAME` / `dns:*.NAME` endpoints.
//!
//! A name pattern is a class of its own (`dns:NAME`), a destination only. The resolver
//! (`daemon::resolver`) binds the addresses of its answers to the patterns the question matches,
//! per asking device; the datapath judges a bound address as the name first (`docs/names.md`).

use std::{fmt, net::SocketAddr};

use serde::Serialize;

use super::{
    Diagnostic, Policy,
    diag::Loc,
    model::{Endpoint, Located, Service},
};

/// Longest name (RFC 1035: 253 characters without the trailing dot).
pub const MAX_NAME: usize = 253;

/// `dns:NAME` (exact) or `dns:*.NAME` (any name below NAME, one or more labels; not NAME itself).
/// Lower case, without the trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct NamePattern {
    pub wildcard: bool,
    /// The name (for a wildcard, the part after `*.`).
    pub base: String,
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            write!(f, "*.{}", self.base)
        } else {
            f.write_str(&self.base)
        }
    }
}

/// Why a label is invalid, or `None`.
fn invalid_label(label: &str) -> Option<&'static str> {
    if label.is_empty() {
        Some("it has an empty label")
    } else if label.len() > 63 {
        Some("a label is longer than 63 characters")
    } else if label == "*" {
        Some("`*` may only be the whole leftmost label")
    } else if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Some("labels hold letters, digits, `-` and `_` only")
    } else if label.starts_with('-') || label.ends_with('-') {
        Some("a label starts or ends with `-`")
    } else {
        None
    }
}

impl NamePattern {
    /// Parses what follows `dns:`. Case-insensitive, trailing dot optional, `*` only as the whole
    /// leftmost label.
    ///
    /// # Errors
    /// Why it is no valid name pattern.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let s = s.strip_suffix('.').unwrap_or(s);
        if s.len() > MAX_NAME {
            return Err("it is longer than 253 characters");
        }
        let (wildcard, base) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        if base.is_empty() {
            return Err("it is empty");
        }
        if let Some(why) = base.split('.').find_map(invalid_label) {
            return Err(why);
        }
        Ok(Self {
            wildcard,
            base: base.to_ascii_lowercase(),
        })
    }

    /// Whether `name` (any case, trailing dot optional) matches.
    #[must_use]
    pub fn matches(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name);
        if !self.wildcard {
            return name.eq_ignore_ascii_case(&self.base);
        }
        name.len() > self.base.len() + 1
            && name
                .get(name.len() - self.base.len()..)
                .is_some_and(|tail| tail.eq_ignore_ascii_case(&self.base))
            && name.as_bytes()[name.len() - self.base.len() - 1] == b'.'
    }
}

/// `dns.listen`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Listen {
    /// Port 53 on the router's addresses on the enforced interfaces that are not uplinks.
    Router,
    /// These addresses (port 53 when none is written).
    Addrs(Vec<SocketAddr>),
}

/// `dns:`: the router as the resolver of record. Absent: no name rules, no `dns_bypass`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsSettings {
    /// Where the resolver forwards queries (port 53 when none is written).
    pub upstream: Vec<SocketAddr>,
    pub listen: Listen,
    /// Clamp on a binding's life, seconds (default 30 s and 1 h).
    pub ttl_min_s: u32,
    pub ttl_max_s: u32,
    /// How long flows opened under an expired binding go on, seconds (default 2 min).
    pub grace_s: u32,
    /// Where the section is.
    #[serde(skip)]
    pub loc: Loc,
}

pub const DEFAULT_TTL_MIN_S: u32 = 30;
pub const DEFAULT_TTL_MAX_S: u32 = 3_600;
pub const DEFAULT_GRACE_S: u32 = 120;

/// `ADDRESS` or `ADDRESS:PORT` (`[V6]:PORT`); port 53 when none is written.
///
/// # Errors
/// Why it is no socket address.
pub fn parse_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
    bare.unwrap_or(s)
        .parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("invalid address `{s}`"))
}

/// Whether the rule names a DNS service to the router (`udp/53` or `tcp/53`, or `any`).
fn reaches_resolver(services: &[Located<Service>]) -> bool {
    services.iter().any(|s| match s.value {
        Service::Udp(p) | Service::Tcp(p) => match p {
            super::model::Ports::All => true,
            super::model::Ports::Range(lo, hi) => (lo..=hi).contains(&53),
        },
        Service::Any => true,
        Service::Icmp => false,
    })
}

/// `dns:NAME` is a destination only, and needs the `dns:` section (without a resolver nothing
/// would ever be bound to it).
pub(crate) fn validate(p: &Policy, diags: &mut super::diag::Diags) {
    for r in &p.rules {
        for ep in &r.from {
            if let Endpoint::Name(_) = ep.value {
                diags.error(
                    &ep.loc,
                    format!(
                        "rule `{}`: `{}` can only be a destination",
                        r.name, ep.value
                    ),
                    "a name says where traffic goes; write the sending devices in `from`",
                );
            }
        }
        if p.dns.is_none() {
            for ep in &r.to {
                if let Endpoint::Name(_) = ep.value {
                    diags.error(
                        &ep.loc,
                        format!("rule `{}`: `{}` needs a `dns:` section", r.name, ep.value),
                        "add `dns: {upstream: [ADDRESS]}`: the router's resolver is what binds names to addresses",
                    );
                }
            }
        }
    }
}

/// `enforcer check`'s warnings about the `dns:` section: no rule lets devices query the resolver,
/// or no rule lets the router (the resolver) query upstream.
#[must_use]
pub fn warnings(p: &Policy) -> Vec<Diagnostic> {
    let Some(dns) = &p.dns else {
        return Vec::new();
    };
    let allows = |from: &dyn Fn(&Endpoint) -> bool, to: &dyn Fn(&Endpoint) -> bool| {
        p.rules.iter().any(|r| {
            r.action == super::model::RuleAction::Allow
                && r.from.iter().any(|e| from(&e.value))
                && r.to.iter().any(|e| to(&e.value))
                && reaches_resolver(&r.services)
        })
    };
    let mut out = Vec::new();
    let is_router = |e: &Endpoint| matches!(e, Endpoint::Router | Endpoint::Any);
    let not_router = |e: &Endpoint| !matches!(e, Endpoint::Router);
    if !allows(&not_router, &is_router) {
        out.push(
            Diagnostic::warning(
                &dns.loc,
                "`dns:` is set but no rule lets devices query the router's resolver: names will never resolve for them",
            )
            .hint("add a rule such as `{name: dns, from: zone:cameras, to: router, allow: [udp/53, tcp/53]}`"),
        );
    }
    let upstream_ok = allows(&is_router, &|e| !matches!(e, Endpoint::Router));
    if !upstream_ok {
        out.push(
            Diagnostic::warning(
                &dns.loc,
                "`dns:` is set but no rule lets the router query its upstream: the resolver's queries are denied",
            )
            .hint("add a rule such as `{name: router-dns, from: router, to: network:internet, allow: [udp/53, tcp/53]}`"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> NamePattern {
        NamePattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn names_are_case_insensitive_and_the_trailing_dot_is_optional() {
        assert_eq!(pat("Updates.AXIS.example."), pat("updates.axis.example"));
        assert!(pat("updates.axis.example").matches("UPDATES.axis.example."));
        assert!(!pat("updates.axis.example").matches("x.updates.axis.example"));
    }

    #[test]
    fn a_wildcard_matches_one_or_more_labels_below_but_not_the_name_itself() {
        let p = pat("*.pool.ntp.org");
        assert!(p.matches("0.pool.ntp.org"));
        assert!(p.matches("a.b.Pool.NTP.org."));
        assert!(!p.matches("pool.ntp.org"));
        assert!(!p.matches("evilpool.ntp.org"));
        assert!(!p.matches("ntp.org"));
    }

    #[test]
    fn star_only_as_the_whole_leftmost_label() {
        for bad in [
            "a.*.example",
            "*x.example",
            "x*.example",
            "*",
            "*.",
            "",
            "a..b",
            "-a.b",
        ] {
            assert!(NamePattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_server_without_port_gets_53() {
        assert_eq!(
            parse_server("192.0.2.53").ok(),
            "192.0.2.53:53".parse().ok()
        );
        assert_eq!(
            parse_server("[2001:db8::53]:53").ok(),
            "[2001:db8::53]:53".parse().ok()
        );
        assert_eq!(
            parse_server("2001:db8::53").ok(),
            "[2001:db8::53]:53".parse().ok()
        );
        assert!(parse_server("resolver.example").is_err());
    }
}

#[cfg(test)]
mod policy_tests {
    use enforcer_common::{Action, Decision, PROTO_TCP, PROTO_UDP};

    use crate::policy::{CompileOptions, compile, parse_str};

    const SITE: &str = "zones: {cameras: {}, quarantine: {}}\nnetworks: {internet: [\"0.0.0.0/0\"]}\ndevices:\n  cam-1: {zone: cameras, addresses: [10.0.0.2]}\ndefaults: {unknown: quarantine}\n";
    const DNS: &str = "dns:\n  upstream: [\"192.0.2.53\", \"[2001:db8::53]:53\"]\n  listen: router\n  ttl: {min: 30s, max: 1h}\n  grace: 2m\n";

    fn messages(yaml: &str) -> Vec<String> {
        match parse_str("p.yaml", yaml) {
            Ok(_) => Vec::new(),
            Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn the_issue_format_parses_with_its_settings() {
        let yaml = format!(
            "{SITE}{DNS}rules:\n  - name: cams-ntp\n    from: zone:cameras\n    to: [dns:pool.ntp.org, \"dns:*.pool.ntp.org\"]\n    allow: [udp/123]\n"
        );
        let p = parse_str("p.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
        let dns = p.dns.unwrap_or_else(|| panic!("a dns section"));
        assert_eq!(dns.upstream.len(), 2);
        assert_eq!((dns.ttl_min_s, dns.ttl_max_s, dns.grace_s), (30, 3600, 120));
        assert_eq!(p.rules[0].to[1].value.to_string(), "dns:*.pool.ntp.org");
    }

    #[test]
    fn a_bad_name_is_an_error_at_its_place() {
        for bad in ["dns:a.*.example", "dns:x*.example", "dns:a..b"] {
            let yaml = format!(
                "{SITE}{DNS}rules:\n  - {{name: r, from: zone:cameras, to: \"{bad}\", allow: [tcp/443]}}\n"
            );
            let got = messages(&yaml);
            assert_eq!(got.len(), 1, "{bad}: {got:?}");
            assert!(got[0].contains("p.yaml:12:"), "{bad}: {got:?}");
            assert!(
                got[0].contains("invalid name in endpoint"),
                "{bad}: {got:?}"
            );
        }
    }

    #[test]
    fn a_name_as_source_or_without_a_dns_section_is_an_error() {
        let got = messages(&format!(
            "{SITE}{DNS}rules:\n  - {{name: r, from: dns:a.example, to: zone:cameras, allow: [tcp/443]}}\n"
        ));
        assert!(
            got.iter().any(|m| m.contains("can only be a destination")),
            "{got:?}"
        );
        let got = messages(&format!(
            "{SITE}rules:\n  - {{name: r, from: zone:cameras, to: dns:a.example, allow: [tcp/443]}}\n"
        ));
        assert!(
            got.iter().any(|m| m.contains("needs a `dns:` section")),
            "{got:?}"
        );
    }

    #[test]
    fn check_warns_without_rules_for_the_resolver_and_its_upstream() {
        let yaml = format!(
            "{SITE}{DNS}rules:\n  - {{name: r, from: zone:cameras, to: dns:a.example, allow: [tcp/443]}}\n"
        );
        let p = parse_str("p.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
        let w = super::warnings(&p);
        assert_eq!(w.len(), 2, "{w:?}");
        let yaml = format!(
            "{yaml}  - {{name: q, from: zone:cameras, to: router, allow: [udp/53]}}\n  - {{name: up, from: router, to: network:internet, allow: [udp/53]}}\n"
        );
        let p = parse_str("p.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
        assert!(super::warnings(&p).is_empty());
    }

    #[test]
    fn names_compile_to_classes_with_stable_ids_and_the_settings_entry() {
        let yaml = format!(
            "{SITE}{DNS}rules:\n  - {{name: web, from: zone:cameras, to: [dns:Updates.axis.example., \"dns:*.pool.ntp.org\"], allow: [tcp/443, udp/123]}}\n  - {{name: no, from: zone:cameras, to: \"dns:*.pool.ntp.org\", deny: [udp/123]}}\n"
        );
        let p = parse_str("p.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
        let c = compile(&p, &CompileOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.names.len(), 2);
        assert_eq!(c.maps.names.len(), 3);
        assert_eq!(c.maps.names[0].1.grace_s, 120);
        let exact = c
            .names
            .iter()
            .find(|n| n.pattern.to_string() == "updates.axis.example")
            .unwrap_or_else(|| panic!("{:?}", c.names));
        let cams = c
            .zones
            .iter()
            .find(|z| z.name == "cameras")
            .map(|z| z.class);
        let pair = c
            .maps
            .pairs
            .iter()
            .find(|(k, _)| Some(k.src) == cams && k.dst == exact.class)
            .unwrap_or_else(|| panic!("a pair to the name"));
        let port = c
            .maps
            .ports
            .iter()
            .find(|(k, _)| k.pair == pair.1.pair && k.proto == PROTO_TCP && k.port == 443)
            .map(|(_, d)| *d);
        assert_eq!(port, Some(Decision::new(Action::Allow, c.ids.rules["web"])));
        let wild = c.names.iter().find(|n| n.pattern.wildcard).map(|n| n.class);
        let wpair = c
            .maps
            .pairs
            .iter()
            .find(|(k, _)| Some(k.src) == cams && Some(k.dst) == wild)
            .unwrap_or_else(|| panic!("a pair to the wildcard"));
        let deny = c
            .maps
            .ports
            .iter()
            .find(|(k, _)| k.pair == wpair.1.pair && k.proto == PROTO_UDP && k.port == 123)
            .map(|(_, d)| d.action());
        assert_eq!(deny, Some(Action::Deny));
        let again = compile(
            &p,
            &CompileOptions {
                previous_ids: Some(c.ids.clone()),
                ..CompileOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.ids.names, c.ids.names);
    }
}
