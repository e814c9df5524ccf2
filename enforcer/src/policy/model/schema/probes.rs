//! `tests:` and `guards:`: lists of flows (`from`, `to`, `service`), a test with the verdict it
//! expects (`expect`, optionally the deciding `rule`) and an optional `name`. Names are checked
//! against the policy in `validate::probes`, once all files are merged.

use super::{Cx, get};
use crate::policy::{
    model::{
        ExpectedRule, Ports, Probe, ProbeEnd, ProbeKind, ProbeService, RuleAction, Service,
        scalars::{Problem, check_ident, parse_addr, parse_service, truncate},
    },
    yaml::Node,
};

pub(crate) const TEST_KEYS: &[&str] = &["name", "from", "to", "service", "expect", "rule"];
pub(crate) const GUARD_KEYS: &[&str] = &["from", "to", "service"];

const END_HINT: &str = "write device:NAME, router, or an IPv4 or IPv6 address";
const SERVICE_HINT: &str = "write tcp/PORT, udp/PORT or icmp (one port: a test is one flow)";

/// `device:NAME`, `router` or an address.
pub(crate) fn parse_probe_end(s: &str) -> Result<ProbeEnd, Problem> {
    if s == "router" {
        return Ok(ProbeEnd::Router);
    }
    if let Some(name) = s.strip_prefix("device:") {
        return check_ident(name)
            .map(|()| ProbeEnd::Device(name.to_owned()))
            .map_err(|why| Problem {
                message: format!("invalid device name in `{}`: {why}", truncate(s)),
                hint: END_HINT.to_owned(),
            });
    }
    if s.contains(':') && !s.contains("::") && s.split(':').count() == 2 {
        // `zone:cameras`, `network:internet`: rule endpoints, but a test is one flow.
        return Err(Problem {
            message: format!(
                "`{}` is no end of a single flow: a test starts and ends at one address",
                truncate(s)
            ),
            hint: END_HINT.to_owned(),
        });
    }
    parse_addr(s)
        .map(ProbeEnd::Addr)
        .map_err(|Problem { message, .. }| Problem {
            message,
            hint: END_HINT.to_owned(),
        })
}

/// `tcp/PORT`, `udp/PORT` or `icmp`.
pub(crate) fn parse_probe_service(s: &str) -> Result<ProbeService, Problem> {
    let one_port = |what: &str| Problem {
        message: format!("`{}` is {what}, not one flow's service", truncate(s)),
        hint: SERVICE_HINT.to_owned(),
    };
    match parse_service(s).map_err(|p| Problem {
        message: p.message,
        hint: SERVICE_HINT.to_owned(),
    })? {
        Service::Tcp(Ports::Range(lo, hi)) if lo == hi => Ok(ProbeService::Tcp(lo)),
        Service::Udp(Ports::Range(lo, hi)) if lo == hi => Ok(ProbeService::Udp(lo)),
        Service::Icmp => Ok(ProbeService::Icmp),
        Service::Tcp(Ports::Range(..)) | Service::Udp(Ports::Range(..)) => {
            Err(one_port("a port range"))
        }
        Service::Tcp(Ports::All) | Service::Udp(Ports::All) => Err(one_port("a whole protocol")),
        Service::Any => Err(one_port("every service")),
    }
}

/// `rule:` of a test: a rule name, or `default`.
fn parse_expected_rule(s: &str) -> Result<ExpectedRule, Problem> {
    if s == "default" {
        return Ok(ExpectedRule::Default);
    }
    check_ident(s)
        .map(|()| ExpectedRule::Named(s.to_owned()))
        .map_err(|why| Problem {
            message: format!("invalid rule name `{}`: {why}", truncate(s)),
            hint: "write the name of a rule, or `default` for the default action".to_owned(),
        })
}

impl Cx<'_> {
    /// A `tests:` or `guards:` list.
    pub(super) fn probes(&mut self, node: Node<'_>, kind: ProbeKind) -> Vec<Probe> {
        let what = match kind {
            ProbeKind::Test => "a list of tests",
            ProbeKind::Guard => "a list of guards",
        };
        self.list(node, what)
            .into_iter()
            .filter_map(|item| self.probe(item, kind))
            .collect()
    }

    fn probe(&mut self, node: Node<'_>, kind: ProbeKind) -> Option<Probe> {
        let (keys, what) = match kind {
            ProbeKind::Test => (TEST_KEYS, "a test"),
            ProbeKind::Guard => (GUARD_KEYS, "a guard"),
        };
        let f = self.fields(node, what, keys)?;
        let at = node.loc();
        let name = get(&f, "name").and_then(|n| self.text(n, "a test name"));
        let from = self
            .require(&f, "from", &at, what)
            .and_then(|n| self.parsed(n, parse_probe_end));
        let to = self
            .require(&f, "to", &at, what)
            .and_then(|n| self.parsed(n, parse_probe_end));
        let service = self
            .require(&f, "service", &at, what)
            .and_then(|n| self.parsed(n, parse_probe_service));
        let expect = match kind {
            ProbeKind::Guard => Some(RuleAction::Allow),
            ProbeKind::Test => self.require(&f, "expect", &at, what).and_then(|n| {
                self.choice(
                    n,
                    "expect",
                    &[("allow", RuleAction::Allow), ("deny", RuleAction::Deny)],
                )
            }),
        };
        let rule = get(&f, "rule").and_then(|n| self.parsed(n, parse_expected_rule));
        let (from, to, service, expect) = (from?, to?, service?, expect?);
        Some(Probe {
            kind,
            name,
            from,
            to,
            service,
            expect,
            rule,
            loc: at,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::super::tests::{SITE, messages};
    use crate::policy::{
        model::{ExpectedRule, ProbeEnd, ProbeKind, ProbeService, RuleAction},
        parse_str,
    };

    #[test]
    fn tests_and_guards_are_read_in_the_contract_format() {
        let yaml = format!(
            "{SITE}tests:\n  - name: pc reaches the web\n    from: device:pc\n    to: 198.51.100.10\n    service: tcp/443\n    expect: deny\n    rule: default\n  - {{from: router, to: device:pc, service: icmp, expect: allow}}\nguards:\n  - from: device:pc\n    to: router\n    service: udp/53\n"
        );
        let p = parse_str("p.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.tests.len(), 2);
        let t = &p.tests[0];
        assert_eq!(t.kind, ProbeKind::Test);
        assert_eq!(t.name.as_deref(), Some("pc reaches the web"));
        assert_eq!(t.from.value, ProbeEnd::Device("pc".into()));
        let web: IpAddr = "198.51.100.10".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.to.value, ProbeEnd::Addr(web));
        assert_eq!(t.service.value, ProbeService::Tcp(443));
        assert_eq!(t.expect, RuleAction::Deny);
        assert_eq!(
            t.rule.as_ref().map(|r| &r.value),
            Some(&ExpectedRule::Default)
        );
        assert_eq!(t.loc.to_string(), "p.yaml:5:5");
        assert_eq!(p.tests[1].from.value, ProbeEnd::Router);
        assert_eq!(p.tests[1].service.value, ProbeService::Icmp);
        assert_eq!(p.guards.len(), 1);
        assert_eq!(p.guards[0].kind, ProbeKind::Guard);
        assert_eq!(p.guards[0].expect, RuleAction::Allow);
        assert_eq!(p.guards[0].to.value, ProbeEnd::Router);
        assert_eq!(p.guards[0].loc.to_string(), "p.yaml:13:5");
    }

    #[test]
    fn a_probe_service_is_one_port_or_icmp() {
        for (bad, why) in [
            ("tcp", "a whole protocol"),
            ("udp/1-9", "a port range"),
            ("any", "every service"),
            ("tcp/0", "port 0"),
            ("sctp/9", "unknown service"),
        ] {
            let got = messages(&format!(
                "{SITE}tests:\n  - {{from: device:pc, to: 10.0.0.1, service: {bad}, expect: allow}}\n"
            ));
            assert_eq!(got.len(), 1, "{bad}: {got:?}");
            assert!(got[0].contains(why), "{bad}: {got:?}");
        }
    }

    #[test]
    fn a_probe_end_is_a_device_the_router_or_an_address() {
        for (bad, why) in [
            ("zone:office", "no end of a single flow"),
            ("any", "invalid IP address"),
            ("device:Bad", "invalid device name"),
            ("10.0.0.0/8", "is a CIDR"),
        ] {
            let got = messages(&format!(
                "{SITE}guards:\n  - {{from: device:pc, to: \"{bad}\", service: tcp/22}}\n"
            ));
            assert_eq!(got.len(), 1, "{bad}: {got:?}");
            assert!(got[0].contains(why), "{bad}: {got:?}");
            assert!(got[0].starts_with("p.yaml:5:"), "{bad}: {got:?}");
        }
    }

    #[test]
    fn a_test_without_expect_and_a_guard_with_expect_are_errors() {
        let got = messages(&format!(
            "{SITE}tests:\n  - {{from: device:pc, to: 10.0.0.1, service: tcp/22}}\n"
        ));
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("a test has no `expect`"), "{got:?}");
        let got = messages(&format!(
            "{SITE}guards:\n  - {{from: device:pc, to: 10.0.0.1, service: tcp/22, expect: allow}}\n"
        ));
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].contains("unknown key `expect` in a guard"),
            "{got:?}"
        );
        let got = messages(&format!(
            "{SITE}tests:\n  - {{from: device:pc, to: 10.0.0.1, service: tcp/22, expect: alow}}\n"
        ));
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("invalid expect `alow`"), "{got:?}");
    }
}
