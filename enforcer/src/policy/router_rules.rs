//! The router's own traffic is judged like any other source's (the egress program): a policy
//! whose rules never name `router` (or `any`) as a source leaves the router to `defaults.action`,
//! and under `deny` that cuts it off from upstream DNS, NTP and its updates. Valid, but almost
//! never meant: `enforcer check` says so.

use enforcer_common::Action;

use super::{Diagnostic, Policy, model::Endpoint};

/// A warning when no rule has the router as a source and the default would deny its traffic.
#[must_use]
pub fn warning(p: &Policy) -> Option<Diagnostic> {
    if p.defaults.action == Action::Allow {
        return None;
    }
    let names_router = p.rules.iter().any(|r| {
        r.from
            .iter()
            .any(|e| matches!(e.value, Endpoint::Router | Endpoint::Any))
    });
    if names_router {
        return None;
    }
    Some(
        Diagnostic::warning(
            &p.root,
            "no rule has `router` as its source: the router's own traffic gets `defaults.action` (deny) and the router cannot reach upstream DNS, NTP or its updates",
        )
        .hint(
            "add a rule such as `{name: router-upstream, from: router, to: network:internet, allow: [udp/53, tcp/53, udp/123, tcp/443, icmp]}`",
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "zones: {office: {}}\nnetworks: {internet: [\"0.0.0.0/0\"]}\n";

    fn policy(rules: &str, default: &str) -> Policy {
        let text =
            format!("{BASE}rules:\n{rules}defaults: {{action: {default}, unknown: office}}\n");
        crate::policy::parse_str("t.yaml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn warns_when_no_rule_has_the_router_as_source_under_a_deny_default() {
        let p = policy(
            "  - {name: web, from: zone:office, to: network:internet, allow: [tcp/443]}\n  - {name: dns, from: zone:office, to: router, allow: [udp/53]}\n",
            "deny",
        );
        let w = warning(&p).unwrap_or_else(|| panic!("a warning"));
        assert!(!w.is_error());
        assert!(
            w.message.contains("`router` as its source"),
            "{}",
            w.message
        );
        assert!(
            w.hint
                .as_deref()
                .is_some_and(|h| h.contains("from: router")),
            "{w}"
        );
    }

    #[test]
    fn a_router_or_any_source_or_an_allow_default_silences_it() {
        for (rules, default) in [
            (
                "  - {name: up, from: router, to: network:internet, allow: [udp/53]}\n",
                "deny",
            ),
            (
                "  - {name: all, from: any, to: network:internet, allow: [icmp]}\n",
                "deny",
            ),
            (
                "  - {name: web, from: zone:office, to: network:internet, allow: [tcp/443]}\n",
                "allow",
            ),
        ] {
            assert_eq!(warning(&policy(rules, default)), None, "{rules} {default}");
        }
    }
}
