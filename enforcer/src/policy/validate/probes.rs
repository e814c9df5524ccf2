//! `tests:` and `guards:` against the merged policy: every device and rule they name exists, each
//! end has an address to send from or to, and the two ends share an address family.

use super::{Gaps, hint_names};
use crate::policy::{
    diag::Diags,
    model::{Endpoint, ExpectedRule, Located, Policy, Probe, ProbeEnd},
};

/// The address families an end can take: (IPv4, IPv6).
type Families = (bool, bool);

pub(super) fn check(p: &Policy, gaps: &Gaps, diags: &mut Diags) {
    for probe in p.tests.iter().chain(&p.guards) {
        let from = end_families(p, gaps, probe, &probe.from, "from", diags);
        let to = end_families(p, gaps, probe, &probe.to, "to", diags);
        if probe.from.value == ProbeEnd::Router && probe.to.value == ProbeEnd::Router {
            diags.error(
                &probe.loc,
                format!(
                    "{} `{}` goes from the router to itself, which never crosses the enforced interfaces",
                    probe.kind.as_str(),
                    probe.label()
                ),
                "give it a device or an address at one end",
            );
        } else if let (Some(f), Some(t)) = (from, to)
            && !((f.0 && t.0) || (f.1 && t.1))
        {
            diags.error(
                &probe.to.loc,
                format!(
                    "{} `{}`: `{}` and `{}` have no address family in common",
                    probe.kind.as_str(),
                    probe.label(),
                    probe.from.value,
                    probe.to.value
                ),
                "a flow is IPv4 or IPv6 end to end; give both ends addresses of one family",
            );
        }
        if let Some(Located {
            value: ExpectedRule::Named(name),
            loc,
        }) = &probe.rule
            && !p.rules.iter().any(|r| r.name == *name)
            && !gaps.unread_file
        {
            diags.error(
                loc,
                format!("test `{}`: unknown rule `{name}`", probe.label()),
                hint_names(name, "rules", p.rules.iter().map(|r| &r.name)),
            );
        }
    }
}

/// The families `end` can take, or `None` when it names no usable device (reported here).
fn end_families(
    p: &Policy,
    gaps: &Gaps,
    probe: &Probe,
    end: &Located<ProbeEnd>,
    side: &str,
    diags: &mut Diags,
) -> Option<Families> {
    match &end.value {
        ProbeEnd::Router => Some((true, true)),
        ProbeEnd::Addr(a) => Some((a.is_ipv4(), a.is_ipv6())),
        ProbeEnd::Device(name) => {
            let Some(d) = p.devices.get(name) else {
                if !gaps.unread_file && !gaps.unreadable.contains(&Endpoint::Device(name.clone())) {
                    diags.error(
                        &end.loc,
                        format!(
                            "{} `{}`: `{side}: device:{name}` refers to an undefined device",
                            probe.kind.as_str(),
                            probe.label()
                        ),
                        hint_names(name, "devices", p.devices.keys()),
                    );
                }
                return None;
            };
            if d.addresses.is_empty() {
                diags.error(
                    &end.loc,
                    format!(
                        "{} `{}`: device `{name}` has no address, so no probe can be sent {}",
                        probe.kind.as_str(),
                        probe.label(),
                        if side == "from" { "from it" } else { "to it" }
                    ),
                    format!("add `addresses:` to device `{name}`, or use its address's device"),
                );
                return None;
            }
            Some((
                d.addresses.iter().any(|a| a.value.is_ipv4()),
                d.addresses.iter().any(|a| a.value.is_ipv6()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::parse_str;

    const SITE: &str = "zones: {office: {}, quarantine: {}}\ndevices:\n  pc: {zone: office, addresses: [10.0.0.9]}\n  tv: {zone: office, mac: \"02:00:00:00:00:02\"}\n  nas: {zone: office, addresses: [\"2001:db8::5\"]}\nrules:\n  - {name: web, from: zone:office, to: router, allow: [tcp/443]}\n";

    fn messages(extra: &str) -> Vec<String> {
        match parse_str("p.yaml", &format!("{SITE}{extra}")) {
            Ok(_) => Vec::new(),
            // With the hint, where the did-you-mean is.
            Err(e) => e
                .diagnostics()
                .iter()
                .map(|d| format!("{d} | {}", d.hint.as_deref().unwrap_or_default()))
                .collect(),
        }
    }

    #[test]
    fn an_unknown_device_in_a_test_is_an_error_with_a_did_you_mean() {
        let got = messages(
            "tests:\n  - {from: device:pcc, to: router, service: tcp/443, expect: allow}\n",
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("p.yaml:9:"), "{got:?}");
        assert!(got[0].contains("undefined device"), "{got:?}");
        assert!(got[0].contains("`pc`"), "{got:?}");
    }

    #[test]
    fn an_unknown_rule_in_a_test_is_an_error_with_a_did_you_mean() {
        let got = messages(
            "tests:\n  - {from: device:pc, to: router, service: tcp/443, expect: allow, rule: wbe}\n",
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("unknown rule `wbe`"), "{got:?}");
        assert!(got[0].contains("`web`"), "{got:?}");
        let ok = messages(
            "tests:\n  - {from: device:pc, to: router, service: tcp/443, expect: allow, rule: web}\n  - {from: device:pc, to: 10.0.0.1, service: tcp/443, expect: deny, rule: default}\n",
        );
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn a_test_from_a_device_without_an_address_is_an_error() {
        let got = messages(
            "tests:\n  - {from: device:tv, to: router, service: tcp/443, expect: allow}\n",
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].contains("device `tv` has no address, so no probe can be sent from it"),
            "{got:?}"
        );
        assert!(got[0].starts_with("p.yaml:9:"), "{got:?}");
    }

    #[test]
    fn a_guard_across_address_families_or_router_to_router_is_an_error() {
        let got = messages("guards:\n  - {from: device:pc, to: device:nas, service: tcp/22}\n");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("no address family in common"), "{got:?}");
        let got = messages("guards:\n  - {from: router, to: router, service: tcp/22}\n");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("from the router to itself"), "{got:?}");
        let ok = messages(
            "guards:\n  - {from: device:nas, to: \"2001:db8::1\", service: tcp/22}\n  - {from: router, to: device:nas, service: icmp}\n",
        );
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn tests_and_guards_of_several_files_add_up() {
        let dir = std::env::temp_dir().join(format!("enforcer-probes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("{e}"));
        };
        write("00-site.yaml", SITE);
        write(
            "10-a.yaml",
            "tests:\n  - {from: device:pc, to: router, service: tcp/443, expect: allow}\nguards:\n  - {from: device:pc, to: router, service: tcp/443}\n",
        );
        write(
            "20-b.yaml",
            "tests:\n  - {from: device:pc, to: 10.0.0.1, service: udp/53, expect: deny}\n",
        );
        let p = crate::policy::load(&dir).unwrap_or_else(|e| panic!("{e}"));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(p.tests.len(), 2);
        assert_eq!(p.guards.len(), 1);
        assert!(
            p.tests[1].loc.to_string().contains("20-b.yaml:2:"),
            "{}",
            p.tests[1].loc
        );
    }
}
