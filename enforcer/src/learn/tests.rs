use super::*;
use crate::observe::Seen as Verdict;

const NOW: u64 = 1_800_000_000;
const DAY: u64 = 86_400;

fn obs(source: &str, peer: Peer, proto: u8, port: u16, flows: u64) -> Observation {
    Observation {
        source: Peer::Device(source.to_owned()),
        peer,
        service: Service { proto, port },
        seen: Verdict::Audit,
        peer_address: "10.1.2.10".parse().expect("addr"),
        flows,
        packets: flows * 10,
        bytes: flows * 1000,
        first_seen: NOW - 3 * DAY,
        last_seen: NOW - 60,
        rule: "default".to_owned(),
    }
}

fn site() -> Membership {
    Membership::new([
        ("cam-1", "cameras"),
        ("cam-2", "cameras"),
        ("cam-3", "cameras"),
        ("prn-1", "printers"),
    ])
}

fn req(scope: Scope) -> Request {
    Request {
        scope,
        since_s: 7 * DAY,
        now: NOW,
        observing_since: Some(NOW - 30 * DAY),
        wide_networks: ["internet".to_owned()].into(),
        taken_names: BTreeSet::new(),
    }
}

fn nvr() -> Peer {
    Peer::Device("nvr-1".into())
}

#[test]
fn a_service_every_device_of_the_zone_needs_is_one_zone_rule() {
    let o: Vec<_> = ["cam-1", "cam-2", "cam-3"]
        .iter()
        .map(|c| obs(c, nvr(), 6, 554, 4))
        .collect();
    let p = propose(&o, &site(), &req(Scope::Zone("cameras".into())));
    assert_eq!(p.rules.len(), 1, "{p:?}");
    let r = &p.rules[0];
    assert_eq!(
        (r.from.as_str(), r.to.as_str()),
        ("zone:cameras", "device:nvr-1")
    );
    assert_eq!(r.allow, ["tcp/554"]);
    assert_eq!(r.seen.flows, 12);
}

#[test]
fn a_service_only_some_devices_need_is_a_rule_per_device() {
    let o = vec![
        obs("cam-1", nvr(), 6, 554, 2),
        obs("cam-2", nvr(), 6, 554, 2),
    ];
    let p = propose(&o, &site(), &req(Scope::Zone("cameras".into())));
    let froms: Vec<_> = p.rules.iter().map(|r| r.from.as_str()).collect();
    assert_eq!(froms, ["device:cam-1", "device:cam-2"]);
}

#[test]
fn contiguous_observed_ports_become_a_range_and_gaps_stay_apart() {
    let o: Vec<_> = [8000, 8001, 8002, 8005, 443]
        .iter()
        .map(|&port| obs("prn-1", nvr(), 6, port, 2))
        .collect();
    let p = propose(&o, &site(), &req(Scope::Device("prn-1".into())));
    assert_eq!(p.rules[0].allow, ["tcp/443", "tcp/8000-8002", "tcp/8005"]);
}

#[test]
fn tcp_udp_and_icmp_to_one_peer_are_one_rule() {
    let o = vec![
        obs("prn-1", Peer::Router, 17, 123, 3),
        obs("prn-1", Peer::Router, 1, 0, 3),
        obs("prn-1", Peer::Router, 6, 53, 3),
    ];
    let p = propose(&o, &site(), &req(Scope::Device("prn-1".into())));
    assert_eq!(p.rules.len(), 1);
    assert_eq!(p.rules[0].to, "router");
    assert_eq!(p.rules[0].allow, ["tcp/53", "udp/123", "icmp"]);
    assert_eq!(p.rules[0].name, "learn-prn-1-to-router");
}

#[test]
fn only_the_scopes_devices_are_learnt() {
    let o = vec![
        obs("cam-1", nvr(), 6, 554, 2),
        obs("prn-1", nvr(), 6, 9100, 2),
    ];
    let p = propose(&o, &site(), &req(Scope::Device("prn-1".into())));
    assert_eq!(p.rules.len(), 1);
    assert_eq!(p.rules[0].from, "device:prn-1");
}

#[test]
fn a_window_longer_than_what_was_observed_is_warned_about() {
    let mut r = req(Scope::All);
    r.observing_since = Some(NOW - 2 * DAY);
    let p = propose(&[obs("prn-1", nvr(), 6, 9100, 2)], &site(), &r);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("cover 2d 0h of the 7d 0h")),
        "{:?}",
        p.warnings
    );
    let p = propose(
        &[obs("prn-1", nvr(), 6, 9100, 2)],
        &site(),
        &req(Scope::All),
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn a_flow_seen_once_is_warned_about() {
    let p = propose(
        &[obs("prn-1", nvr(), 6, 9100, 1)],
        &site(),
        &req(Scope::All),
    );
    assert!(
        p.warnings.iter().any(|w| w.contains("seen once")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn a_peer_known_only_by_address_gets_a_warning_and_no_rule() {
    let stranger = Peer::Address("203.0.113.9".parse().expect("addr"));
    let p = propose(
        &[obs("prn-1", stranger, 6, 443, 5)],
        &site(),
        &req(Scope::All),
    );
    assert!(p.rules.is_empty());
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("203.0.113.9") && w.contains("name"))
    );
    // A peer reached in a network that covers everything: the rule, and the suggestion.
    let internet = Peer::Network("internet".into());
    let p = propose(
        &[obs("prn-1", internet, 6, 443, 5)],
        &site(),
        &req(Scope::All),
    );
    assert_eq!(p.rules.len(), 1);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("known only by its address"))
    );
}

#[test]
fn observations_older_than_the_window_are_left_out() {
    let mut old = obs("prn-1", nvr(), 6, 9100, 5);
    old.last_seen = NOW - 10 * DAY;
    let p = propose(&[old], &site(), &req(Scope::All));
    assert!(p.rules.is_empty());
}

#[test]
fn rule_names_are_unique_and_valid() {
    let mut r = req(Scope::Device("prn-1".into()));
    r.taken_names.insert("learn-prn-1-to-nvr-1".to_owned());
    let p = propose(&[obs("prn-1", nvr(), 6, 9100, 5)], &site(), &r);
    assert_eq!(p.rules[0].name, "learn-prn-1-to-nvr-1-2");
}

#[test]
fn the_yaml_passes_check_beside_the_policy() {
    let o: Vec<_> = ["cam-1", "cam-2", "cam-3"]
        .iter()
        .map(|c| obs(c, nvr(), 6, 554, 4))
        .chain([obs("prn-1", Peer::Network("internet".into()), 17, 123, 1)])
        .collect();
    let p = propose(&o, &site(), &req(Scope::All));
    let yaml = render_yaml(&p, "all zones, last 7d");
    let policy = "zones:\n  cameras: {}\n  printers: {}\n  recorders: {}\n  quarantine: {}\n\
        networks:\n  internet: [\"0.0.0.0/0\"]\n\
        devices:\n  cam-1: {zone: cameras, addresses: [\"10.1.1.10\"]}\n  \
        cam-2: {zone: cameras, addresses: [\"10.1.1.11\"]}\n  \
        cam-3: {zone: cameras, addresses: [\"10.1.1.12\"]}\n  \
        prn-1: {zone: printers, addresses: [\"10.1.4.10\"]}\n  \
        nvr-1: {zone: recorders, addresses: [\"10.1.2.10\"]}\n";
    let merged = format!("{policy}{}", yaml);
    let parsed = crate::policy::parse_str("learnt.yaml", &merged)
        .unwrap_or_else(|e| panic!("{e:?}\n{merged}"));
    assert_eq!(parsed.rules.len(), 2, "{merged}");
    assert!(
        yaml.contains("# 12 flows, 120 packets, 12000 bytes; first seen"),
        "{yaml}"
    );
}

#[test]
fn a_protocol_no_rule_can_name_is_allowed_as_any_with_a_warning() {
    const GRE: u8 = 47;
    let o = vec![
        obs("prn-1", nvr(), 6, 9100, 3),
        obs("prn-1", nvr(), GRE, 0, 3),
    ];
    let p = propose(&o, &site(), &req(Scope::Zone("printers".into())));
    assert_eq!(p.rules.len(), 1, "{p:?}");
    assert_eq!(p.rules[0].allow, ["tcp/9100", "any"]);
    assert!(
        p.warnings.iter().any(|w| w.starts_with(
            "proto/47 from zone:printers to device:nvr-1 can only be allowed as `any`"
        )),
        "{:?}",
        p.warnings
    );
}
