//! Checks across the merged policy: references resolve, no address, MAC or CIDR is claimed twice,
//! rules can match something, and the policy is not empty.
//!
//! Per-value checks (syntax of a MAC, a port) are done while reading (`model`); checks that need the
//! router's addresses or the compiled maps (capacity, shadowed rules) are done by `compile`.

use std::collections::{HashMap, HashSet, hash_map::Entry};

pub(crate) use super::model::fmt_mac;
use super::{
    diag::{Diags, Loc, did_you_mean, nearest},
    model::{Endpoint, Located, Policy},
};

mod probes;

/// What could not be read, so that its absence is not reported again as a missing name: the
/// root cause only.
#[derive(Debug, Default)]
pub(crate) struct Gaps {
    /// A file failed to parse: any name may have been defined there, so no reference is checked
    /// and no zone is known to be empty.
    pub unread_file: bool,
    /// Names defined with a body that could not be read.
    pub unreadable: HashSet<Endpoint>,
}

pub(crate) fn validate(p: &Policy, gaps: &Gaps, diags: &mut Diags) {
    if p.rules.is_empty() && p.devices.is_empty() && !diags.has_errors() {
        diags.error(
            &p.root,
            "policy is empty: it has no rules and no devices",
            "an empty policy denies everything; add devices and rules",
        );
    }
    // The two walks over every device are independent, so the claims take a thread of their own
    // (at 100,000 devices the two took some 100 ms, the claims 30 of them); their findings are
    // added after the references'.
    let claims = std::thread::scope(|scope| {
        let claims = scope.spawn(|| {
            let mut found = Diags::default();
            check_claims(p, &mut found);
            found
        });
        if !gaps.unread_file {
            check_references(p, gaps, diags);
        }
        claims
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    diags.absorb(claims);
    crate::policy::names::validate(p, diags);
    probes::check(p, gaps, diags);
    for r in &p.rules {
        let router_only = |side: &[Located<Endpoint>]| {
            !side.is_empty() && side.iter().all(|e| e.value == Endpoint::Router)
        };
        if router_only(&r.from) && router_only(&r.to) {
            diags.error(&r.loc, format!("rule `{}` can never match: traffic from the router to itself never crosses the enforced interfaces", r.name), "remove the rule");
        }
    }
}

/// Every name used is defined, and every zone a rule names has devices (a warning).
fn check_references(p: &Policy, gaps: &Gaps, diags: &mut Diags) {
    check_zone_ref(p, gaps, &p.defaults.unknown, &"defaults.unknown", diags);
    if let Some(q) = &p.quarantine {
        check_zone_ref(p, gaps, &q.zone, &"quarantine.zone", diags);
        for t in &q.touches {
            check_endpoint(p, gaps, t, diags);
        }
    }
    for d in p.devices.values() {
        check_zone_ref(
            p,
            gaps,
            &d.zone,
            &format_args!("device `{}`", d.name),
            diags,
        );
    }
    let populated: HashSet<&str> = p.devices.values().map(|d| d.zone.value.as_str()).collect();
    // A device that could not be read may have been the one in the zone.
    let unreadable_device = gaps
        .unreadable
        .iter()
        .any(|e| matches!(e, Endpoint::Device(_)));
    for r in &p.rules {
        for ep in r.from.iter().chain(&r.to) {
            check_endpoint(p, gaps, ep, diags);
            if let Endpoint::Zone(z) = &ep.value {
                let special = *z == p.defaults.unknown.value
                    || p.quarantine.as_ref().is_some_and(|q| q.zone.value == *z);
                if p.zones.contains_key(z)
                    && !special
                    && !unreadable_device
                    && !populated.contains(z.as_str())
                {
                    diags.warning(&ep.loc, format!("rule `{}`: zone `{z}` has no devices, so this side matches nothing yet", r.name), "add devices to the zone, or remove the rule");
                }
            }
        }
    }
}

/// No address, MAC or CIDR is claimed twice.
fn check_claims(p: &Policy, diags: &mut Diags) {
    let mut addrs = Claims::with_capacity(p.devices.len());
    let mut macs = Claims::with_capacity(p.devices.len());
    for d in p.devices.values() {
        for a in &d.addresses {
            addrs.claim(a.value, &d.name, &a.loc, diags, |other, at| {
                (
                    format!(
                        "address {} is claimed by devices `{other}` ({at}) and `{}`",
                        a.value, d.name
                    ),
                    "an address identifies one device; remove one",
                )
            });
        }
        if let Some(m) = &d.mac {
            macs.claim(m.value, &d.name, &m.loc, diags, |other, at| {
                (
                    format!(
                        "MAC {} is claimed by devices `{other}` ({at}) and `{}`",
                        fmt_mac(m.value),
                        d.name
                    ),
                    "a MAC identifies one device; remove one",
                )
            });
        }
    }
    let mut cidrs = Claims::with_capacity(p.networks.len());
    for n in p.networks.values() {
        for c in &n.cidrs {
            cidrs.claim(c.value, &n.name, &c.loc, diags, |other, at| {
                (
                    format!(
                        "CIDR {} is listed by networks `{other}` ({at}) and `{}`",
                        c.value, n.name
                    ),
                    "a prefix belongs to one network; remove one",
                )
            });
        }
    }
}

/// Who claimed each key first (an address, a MAC, a CIDR) and where, so a second claim is
/// reported citing the first: one hash per claim.
struct Claims<'a, K>(HashMap<K, (&'a str, &'a Loc)>);

impl<'a, K: std::hash::Hash + Eq> Claims<'a, K> {
    fn with_capacity(n: usize) -> Self {
        Self(HashMap::with_capacity(n))
    }

    /// `owner` claims `key` at `at`; when another claimed it first, the error `report(first
    /// owner, first place)` gives (message, hint) is reported at `at`.
    fn claim(
        &mut self,
        key: K,
        owner: &'a str,
        at: &'a Loc,
        diags: &mut Diags,
        report: impl FnOnce(&str, &Loc) -> (String, &'static str),
    ) {
        match self.0.entry(key) {
            Entry::Occupied(first) => {
                let (other, first_at) = *first.get();
                let (message, hint) = report(other, first_at);
                diags.error(at, message, hint);
            }
            Entry::Vacant(v) => {
                v.insert((owner, at));
            }
        }
    }
}

/// `whose` is only formatted for an error: this runs once per device.
fn check_zone_ref(
    p: &Policy,
    gaps: &Gaps,
    zone: &Located<String>,
    whose: &dyn std::fmt::Display,
    diags: &mut Diags,
) {
    if !p.zones.contains_key(&zone.value)
        && !gaps
            .unreadable
            .contains(&Endpoint::Zone(zone.value.clone()))
    {
        diags.error(
            &zone.loc,
            format!("{whose}: unknown zone `{}`", zone.value),
            hint_names(&zone.value, "zones", p.zones.keys()),
        );
    }
}

fn check_endpoint(p: &Policy, gaps: &Gaps, ep: &Located<Endpoint>, diags: &mut Diags) {
    let (kind, names): (&str, Vec<&String>) = match &ep.value {
        Endpoint::Zone(n) if !p.zones.contains_key(n) => ("zone", p.zones.keys().collect()),
        Endpoint::Device(n) if !p.devices.contains_key(n) => ("device", p.devices.keys().collect()),
        Endpoint::Network(n) if !p.networks.contains_key(n) => {
            ("network", p.networks.keys().collect())
        }
        _ => return,
    };
    if gaps.unreadable.contains(&ep.value) {
        return;
    }
    let (Endpoint::Zone(name) | Endpoint::Device(name) | Endpoint::Network(name)) = &ep.value
    else {
        return;
    };
    diags.error(
        &ep.loc,
        format!("`{}` refers to an undefined {kind}", ep.value),
        nearest(name, names.into_iter().map(String::as_str)).map_or_else(
            || format!("define it under `{kind}s:` or fix the name"),
            |near| format!("did you mean `{kind}:{near}`?"),
        ),
    );
}

/// "did you mean `cameras`?" for a near defined name, else where to define it.
fn hint_names<'a>(name: &str, section: &str, names: impl Iterator<Item = &'a String>) -> String {
    did_you_mean(name, names.map(String::as_str), || {
        format!("define it under `{section}:` or fix the name")
    })
}

#[cfg(test)]
mod tests {
    use crate::policy::parse_str;

    /// Zones and one device every case can build on (3 lines).
    const BASE: &str = "zones: {a: {}, b: {}, quarantine: {}}\ndevices:\n  d1: {zone: a, mac: \"02:00:00:00:00:01\", addresses: [10.0.0.1]}\n";

    /// (behaviour, text after BASE, expected message substring, line, col)
    const CASES: &[(&str, &str, &str, usize, usize)] = &[
        (
            "unknown_top_level_key",
            "rule: []\n",
            "unknown key `rule` in the policy file",
            4,
            1,
        ),
        (
            "unknown_rule_key_alow",
            "rules: [{name: r, from: zone:a, to: zone:b, alow: [tcp]}]\n",
            "unknown key `alow` in a rule",
            4,
            45,
        ),
        (
            "unknown_device_key",
            "  d2: {zone: a, addresses: [10.0.0.2], colour: red}\n",
            "unknown key `colour` in device `d2`",
            4,
            40,
        ),
        (
            "unknown_zone_in_device",
            "  d2: {zone: c, addresses: [10.0.0.2]}\n",
            "device `d2`: unknown zone `c`",
            4,
            14,
        ),
        (
            "unknown_zone_in_rule",
            "rules: [{name: r, from: zone:c, to: zone:b, allow: [tcp]}]\n",
            "`zone:c` refers to an undefined zone",
            4,
            25,
        ),
        (
            "unknown_device_in_rule",
            "rules: [{name: r, from: device:x, to: zone:b, allow: [tcp]}]\n",
            "`device:x` refers to an undefined device",
            4,
            25,
        ),
        (
            "unknown_network_in_rule",
            "rules: [{name: r, from: zone:a, to: network:x, allow: [tcp]}]\n",
            "`network:x` refers to an undefined network",
            4,
            37,
        ),
        (
            "bad_mac",
            "  d2: {zone: a, mac: \"02:00:00:00:01\"}\n",
            "invalid MAC address",
            4,
            22,
        ),
        (
            "bad_ip",
            "  d2: {zone: a, addresses: [10.0.0.300]}\n",
            "invalid IP address",
            4,
            29,
        ),
        (
            "bad_cidr_prefix",
            "networks: {n: [10.0.0.0/33]}\n",
            "invalid prefix length",
            4,
            16,
        ),
        (
            "cidr_with_host_bits",
            "networks: {n: [10.1.1.1/24]}\n",
            "the network address is 10.1.1.0/24",
            4,
            16,
        ),
        (
            "port_zero",
            "rules: [{name: r, from: zone:a, to: zone:b, allow: [tcp/0]}]\n",
            "port 0",
            4,
            53,
        ),
        (
            "port_too_big",
            "rules: [{name: r, from: zone:a, to: zone:b, allow: [udp/65536]}]\n",
            "out of range 1-65535",
            4,
            53,
        ),
        (
            "inverted_range",
            "rules: [{name: r, from: zone:a, to: zone:b, allow: [tcp/9000-80]}]\n",
            "inverted",
            4,
            53,
        ),
        (
            "hex_port",
            "rules: [{name: r, from: zone:a, to: zone:b, allow: [tcp/0x50]}]\n",
            "must be a decimal number",
            4,
            53,
        ),
        (
            "address_on_two_devices",
            "  d2: {zone: b, addresses: [10.0.0.1]}\n",
            "address 10.0.0.1 is claimed by devices `d1` (t.yaml:3:55) and `d2`",
            4,
            29,
        ),
        (
            "mac_on_two_devices",
            "  d2: {zone: b, mac: \"02:00:00:00:00:01\"}\n",
            "MAC 02:00:00:00:00:01 is claimed by devices `d1`",
            4,
            22,
        ),
        (
            "duplicate_device_key",
            "  d1: {zone: b, addresses: [10.0.0.9]}\n",
            "duplicate key `d1` (first defined at t.yaml:3:3)",
            4,
            3,
        ),
        (
            "duplicate_rule_name",
            "rules:\n  - {name: r, from: zone:a, to: zone:b, allow: [tcp]}\n  - {name: r, from: zone:b, to: zone:a, allow: [tcp]}\n",
            "rule `r` is defined twice (first at t.yaml:5:12)",
            6,
            12,
        ),
        (
            "both_allow_and_deny",
            "rules: [{name: r, from: zone:a, to: zone:b, allow: [tcp], deny: [udp]}]\n",
            "has both `allow` and `deny`",
            4,
            65,
        ),
        (
            "neither_allow_nor_deny",
            "rules: [{name: r, from: zone:a, to: zone:b}]\n",
            "has neither `allow` nor `deny`",
            4,
            16,
        ),
        (
            "empty_allow",
            "rules: [{name: r, from: zone:a, to: zone:b, allow: []}]\n",
            "`allow` is empty",
            4,
            52,
        ),
        (
            "empty_from",
            "rules: [{name: r, from: [], to: zone:b, allow: [tcp]}]\n",
            "`from` is empty, so the rule can never match",
            4,
            25,
        ),
        (
            "router_to_router",
            "rules: [{name: r, from: router, to: router, allow: [tcp]}]\n",
            "can never match",
            4,
            16,
        ),
        (
            "bad_identifier",
            "  D2: {zone: a, addresses: [10.0.0.2]}\n",
            "invalid device name `D2`",
            4,
            3,
        ),
        (
            "null_name",
            "rules: [{name: ~, from: zone:a, to: zone:b, allow: [tcp]}]\n",
            "expected a rule name, found null",
            4,
            16,
        ),
        (
            "boolean_yes",
            "quarantine: {zone: quarantine, when: {spoofing: yes}}\n",
            "expected true or false",
            4,
            49,
        ),
        (
            "bad_duration",
            "quarantine: {zone: quarantine, release_after: 1.5h}\n",
            "invalid duration `1.5h`",
            4,
            47,
        ),
        (
            "count_out_of_range",
            "quarantine: {zone: quarantine, when: {denied_packets: {count: 0, within: 10s}}}\n",
            "invalid count `0`",
            4,
            63,
        ),
        (
            "quarantine_zone_undefined",
            "quarantine: {zone: jail}\n",
            "quarantine.zone: unknown zone `jail`",
            4,
            20,
        ),
        (
            "tripwire_not_network_or_device",
            "quarantine: {zone: quarantine, when: {touches: [zone:a]}}\n",
            "cannot be a tripwire",
            4,
            49,
        ),
        (
            "unknown_default_zone",
            "defaults: {unknown: nowhere}\n",
            "defaults.unknown: unknown zone `nowhere`",
            4,
            21,
        ),
        (
            "bad_default_action",
            "defaults: {action: drop}\n",
            "invalid defaults.action `drop`",
            4,
            20,
        ),
        (
            "cidr_in_two_networks",
            "networks: {n1: [10.9.0.0/16], n2: [10.9.0.0/16]}\n",
            "CIDR 10.9.0.0/16 is listed by networks `n1`",
            4,
            36,
        ),
        (
            "device_without_identity",
            "  d2: {zone: a}\n",
            "has neither a mac nor addresses",
            4,
            3,
        ),
        (
            "risk_out_of_set",
            "  d2: {zone: a, addresses: [10.0.0.2], risk: extreme}\n",
            "invalid risk `extreme`",
            4,
            46,
        ),
        (
            "endpoint_with_space",
            "rules: [{name: r, from: [zone: a], to: zone:b, allow: [tcp]}]\n",
            "`zone: a` is a mapping, not an endpoint (a space follows the colon)",
            4,
            26,
        ),
    ];

    #[test]
    fn every_validation_error_is_reported_at_its_place() {
        let mut failures = Vec::new();
        for (name, tail, want, line, col) in CASES {
            // Cases that add devices continue the `devices:` mapping of BASE.
            let text = format!("{BASE}{tail}");
            let err = parse_str("t.yaml", &text).map(|_| ()).expect_err(name);
            let errors = err.errors();
            let found = errors.iter().find(|d| d.message.contains(want));
            match found {
                None => failures.push(format!("{name}: no error containing {want:?} in:\n{err}")),
                Some(d) if (d.line, d.col) != (*line, *col) => {
                    failures.push(format!("{name}: want {line}:{col}, got {d}"))
                }
                Some(d) if d.hint.is_none() => failures.push(format!("{name}: no hint in {d}")),
                Some(_) => {}
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn all_errors_are_reported_at_once() {
        let text = format!(
            "{BASE}  d2: {{zone: c, addresses: [10.0.0.300]}}\nrules: [{{name: r, from: zone:x, to: zone:b, allow: [tcp/0]}}]\n"
        );
        let err = parse_str("t.yaml", &text).map(|_| ()).expect_err("invalid");
        assert_eq!(err.errors().len(), 4, "{err}");
    }

    #[test]
    fn empty_policy_is_rejected() {
        for text in ["", "# only a comment\n", "zones: {a: {}}\n"] {
            let err = parse_str("t.yaml", text).map(|_| ()).expect_err("empty");
            assert!(
                err.to_string().contains("policy is empty"),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn empty_zone_in_a_rule_is_a_warning() {
        let text = format!("{BASE}rules: [{{name: r, from: zone:b, to: zone:a, allow: [tcp]}}]\n");
        let p = parse_str("t.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.warnings.len(), 1);
        assert_eq!((p.warnings[0].line, p.warnings[0].col), (4, 25));
    }

    #[test]
    fn quadratic_alias_input_is_rejected_without_expansion() {
        // One 40 KiB anchor referenced thousands of times: expanded, 10^8 nodes. Never expanded
        // here: each alias is one error (its cost is measured by `cargo xtask bench`, not here).
        let mut text = format!("{BASE}x: &big [{}]\ny: [", vec!["aaaaaaa"; 5000].join(","));
        text.push_str(&vec!["*big"; 2000].join(","));
        text.push_str("]\n");
        assert!(text.len() > 48 * 1024);
        let err = parse_str("t.yaml", &text).map(|_| ()).expect_err("aliases");
        assert!(
            err.to_string()
                .contains("YAML aliases (*name) are not supported"),
            "{err}"
        );
        // 2,000 aliases, the anchor and the keys `x` and `y`: 100 reported, the rest counted.
        assert_eq!(err.errors().len(), crate::policy::MAX_REPORTED);
        assert_eq!(err.errors().len() + err.omitted().errors, 2_003);
    }
}
