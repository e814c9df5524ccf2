//! `BPF_PROG_TEST_RUN` tests of the read-only explain entry point (`enforcer_explain`, issue 14):
//! for the same frame it says what the enforcing program (`enforcer_xdp`) does to a new flow, and
//! it writes nothing the enforcing program keeps.
//!
//! Run with `cargo test -p enforcer-tests --test explain -- --test-threads=1`, as root.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly, with what it expected as the message"
)]

use anyhow as _;
use aya::maps::RingBuf;
use enforcer::{
    datapath::{self, Datapath},
    policy::{
        CompiledPolicy,
        model::{ProbeEnd, ProbeService},
    },
    probe::{Answer, Labels, Site},
};
use enforcer_common::{
    event::EVENTS_MAP,
    explain::{EXPLAIN_F_AUDIT, EXPLAIN_F_SRC_QUARANTINED, EXPLAIN_REQ_ROUTER_SOURCE, Explanation},
};
use enforcer_tests::kernel::{compile_site, require_root};
use libc as _;
use serde_json as _;

const DROP: u32 = 1;
const PASS: u32 = 2;

const SITE: &str = r#"
zones:
  cameras: {}
  recorders: {}
  office: {}
  building: {}
  quarantine: {}
networks:
  internet: ["0.0.0.0/0", "::/0"]
  honeypot: ["10.1.99.0/24"]
devices:
  cam-1: {zone: cameras, mac: "02:00:00:00:01:10", addresses: ["10.1.1.10", "fd00:1:1::10"]}
  nvr-1: {zone: recorders, mac: "02:00:00:00:02:10", addresses: ["10.1.2.10", "fd00:1:2::10"]}
  office-pc: {zone: office, mac: "02:00:00:00:03:10", addresses: ["10.1.3.10", "fd00:1:3::10"]}
  fishtank: {zone: building, mac: "02:00:00:00:05:10", addresses: ["10.1.5.10"]}
rules:
  - {name: cams-stream, from: zone:cameras, to: zone:recorders, allow: [tcp/554]}
  - {name: office-internet, from: zone:office, to: network:internet, allow: [tcp/443, udp/53, icmp]}
  - {name: building-cloud, from: zone:building, to: network:internet, allow: [tcp/443]}
  - {name: fishtank-no-egress, from: device:fishtank, to: network:internet, deny: [any]}
  - {name: no-lateral-cameras, from: zone:cameras, to: zone:office, deny: [any]}
  - {name: office-admin, from: zone:office, to: router, allow: [tcp/22]}
defaults:
  mode: enforce
  unknown: quarantine
quarantine:
  zone: quarantine
  when:
    denied_packets: {count: 3, within: 10s}
    spoofing: true
    touches: [network:honeypot]
"#;

fn compiled(yaml: &str) -> CompiledPolicy {
    compile_site("site.yaml", yaml, &["10.1.1.1", "10.1.3.1", "fd00:1:3::1"])
}

fn loaded(yaml: &str) -> (Datapath, CompiledPolicy) {
    let policy = compiled(yaml);
    let mut dp = Datapath::load(None).expect("load the program");
    dp.apply(&policy, 1).expect("apply the site");
    (dp, policy)
}

fn end(s: &str) -> ProbeEnd {
    if s == "router" {
        ProbeEnd::Router
    } else if let Some(d) = s.strip_prefix("device:") {
        ProbeEnd::Device(d.to_owned())
    } else {
        ProbeEnd::Addr(s.parse().expect("address"))
    }
}

fn service(s: &str) -> ProbeService {
    match s.split_once('/') {
        Some(("tcp", p)) => ProbeService::Tcp(p.parse().expect("port")),
        Some(("udp", p)) => ProbeService::Udp(p.parse().expect("port")),
        _ => ProbeService::Icmp,
    }
}

/// (from, to, service, verdict, rule, reason): flows of the site, as the policy judges them.
const ROWS: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "device:cam-1",
        "device:nvr-1",
        "tcp/554",
        "allow",
        "cams-stream",
        "rule",
    ),
    (
        "device:cam-1",
        "device:nvr-1",
        "tcp/22",
        "deny",
        "default",
        "default",
    ),
    (
        "device:cam-1",
        "device:office-pc",
        "tcp/80",
        "deny",
        "no-lateral-cameras",
        "rule",
    ),
    (
        "device:fishtank",
        "198.51.100.10",
        "tcp/443",
        "deny",
        "fishtank-no-egress",
        "rule",
    ),
    (
        "device:office-pc",
        "2001:db8::10",
        "tcp/443",
        "allow",
        "office-internet",
        "rule",
    ),
    (
        "device:office-pc",
        "198.51.100.10",
        "icmp",
        "allow",
        "office-internet",
        "rule",
    ),
    (
        "device:office-pc",
        "router",
        "tcp/22",
        "allow",
        "office-admin",
        "rule",
    ),
    (
        "10.1.3.77",
        "device:nvr-1",
        "tcp/554",
        "deny",
        "default",
        "default",
    ),
    (
        "device:cam-1",
        "10.1.99.5",
        "tcp/80",
        "deny",
        "default",
        "default",
    ),
];

fn ask(dp: &mut Datapath, site: &Site, from: &str, to: &str, svc: &str) -> (Vec<u8>, Explanation) {
    let flow = site
        .flow(&end(from), &end(to), service(svc))
        .unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
    let e = dp
        .explain(&flow.frame, flow.request)
        .unwrap_or_else(|e| panic!("explain {from} -> {to}: {e:?}"));
    (flow.frame, e)
}

#[test]
fn explain_gives_the_enforcing_programs_verdict_and_rule_for_each_row() {
    if !require_root("explain_gives_the_enforcing_programs_verdict_and_rule_for_each_row") {
        return;
    }
    for (from, to, svc, verdict, rule, reason) in ROWS {
        // A fresh instance per row: the enforcing program's run below leaves flows and quarantine
        // counts behind, and each row is judged as a new flow.
        let (mut dp, policy) = loaded(SITE);
        let (site, labels) = (Site::of(&policy), Labels::of(&policy));
        let (frame, e) = ask(&mut dp, &site, from, to, svc);
        let a = Answer::of(&e, &labels);
        let row = format!("{from} -> {to} {svc}");
        assert_eq!(a.verdict, *verdict, "{row}: {a:?}");
        assert_eq!(a.rule, *rule, "{row}: {a:?}");
        assert_eq!(a.reason, *reason, "{row}: {a:?}");
        // The enforcing program on the same frame: the same action, decided by the same rule.
        let rules_before = datapath::rule_counters(&dp, [e.rule]).expect("rule counters");
        let (action, _) = dp.test_run(&frame).expect("run the enforcing program");
        let rules_after = datapath::rule_counters(&dp, [e.rule]).expect("rule counters");
        let want = if *verdict == "allow" { PASS } else { DROP };
        assert_eq!(action, want, "{row}: the enforcing program disagrees");
        if *reason == "rule" || *reason == "default" {
            assert_eq!(
                rules_after[0].1.packets,
                rules_before[0].1.packets + 1,
                "{row}: the enforcing program counted another rule than {rule}"
            );
        }
    }
}

/// Everything the enforcing program keeps that a probe could touch.
fn snapshot(dp: &Datapath, policy: &CompiledPolicy) -> String {
    let mut ids: Vec<u32> = policy.devices.iter().map(|d| d.id).collect();
    ids.extend([0, enforcer_common::ROUTER_DEVICE]);
    ids.extend(
        policy
            .networks
            .iter()
            .map(|n| enforcer_common::network_device(n.id)),
    );
    let rules: Vec<u32> = std::iter::once(0)
        .chain(policy.rules.iter().map(|r| r.id))
        .collect();
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        datapath::counters(dp).expect("counters").0,
        datapath::device_counters(dp, ids.clone()).expect("device counters"),
        datapath::rule_counters(dp, rules).expect("rule counters"),
        datapath::flows(dp).expect("flows"),
        datapath::device_states(dp, ids).expect("device states"),
        datapath::discovered(dp).expect("discovered"),
        datapath::live_config(dp).expect("control"),
    )
}

#[test]
fn explain_writes_no_counter_flow_quarantine_discovery_or_event() {
    if !require_root("explain_writes_no_counter_flow_quarantine_discovery_or_event") {
        return;
    }
    let (mut dp, policy) = loaded(SITE);
    let site = Site::of(&policy);
    let events = dp.take_map(EVENTS_MAP).expect("events map");
    let mut events = RingBuf::try_from(events).expect("ring buffer");
    let before = snapshot(&dp, &policy);
    // Denied flows (events, quarantine windows), a tripwire, an unknown sender (discovery), a
    // spoofed one (quarantine on spoofing), and allowed ones (flows, counters), several times.
    let mut frames = Vec::new();
    for _ in 0..5 {
        for (from, to, svc, ..) in ROWS {
            frames.push(ask(&mut dp, &site, from, to, svc).0);
        }
    }
    let spoofed = enforcer::datapath::probe_frame::probe_frame(
        [0x02, 0, 0, 0, 0x01, 0x10],
        "10.1.3.10".parse().expect("address"),
        "10.1.2.10".parse().expect("address"),
        enforcer::datapath::probe_frame::ProbeL4::Tcp(554),
    )
    .expect("frame");
    for _ in 0..5 {
        let e = dp.explain(&spoofed, 0).expect("explain a spoofed frame");
        assert_eq!(e.reason, enforcer_common::event::DenyReason::Spoofed as u8);
    }
    assert_eq!(snapshot(&dp, &policy), before, "explain changed a map");
    assert!(events.next().is_none(), "explain wrote an event");
    // The control: the enforcing program, on the same frames, changes all of that.
    for f in &frames {
        dp.test_run(f).expect("run the enforcing program");
    }
    assert_ne!(
        snapshot(&dp, &policy),
        before,
        "the snapshot sees no change at all"
    );
    assert!(
        events.next().is_some(),
        "the enforcing program wrote no event"
    );
}

#[test]
fn explain_reflects_a_live_quarantine_and_audit_mode() {
    if !require_root("explain_reflects_a_live_quarantine_and_audit_mode") {
        return;
    }
    let (mut dp, policy) = loaded(SITE);
    let (site, labels) = (Site::of(&policy), Labels::of(&policy));
    let (_, e) = ask(&mut dp, &site, "device:cam-1", "device:nvr-1", "tcp/554");
    assert_eq!(Answer::of(&e, &labels).verdict, "allow");
    // Three denied packets through the enforcing program quarantine cam-1 (count: 3).
    let (denied, _) = ask(&mut dp, &site, "device:cam-1", "device:office-pc", "tcp/80");
    for _ in 0..3 {
        dp.test_run(&denied).expect("run the enforcing program");
    }
    let (_, e) = ask(&mut dp, &site, "device:cam-1", "device:nvr-1", "tcp/554");
    let a = Answer::of(&e, &labels);
    assert_eq!(a.verdict, "deny", "{a:?}");
    assert_eq!(a.reason, "quarantined", "{a:?}");
    assert!(
        e.has(EXPLAIN_F_SRC_QUARANTINED) && a.src.quarantined,
        "{a:?}"
    );

    // Audit mode: judged as enforced (deny), said to be in audit; the enforcing program passes it.
    let (mut dp, policy) = loaded(&SITE.replace("mode: enforce", "mode: audit"));
    let (site, labels) = (Site::of(&policy), Labels::of(&policy));
    let (frame, e) = ask(&mut dp, &site, "device:cam-1", "device:office-pc", "tcp/80");
    let a = Answer::of(&e, &labels);
    assert_eq!(
        (a.verdict.as_str(), a.rule.as_str()),
        ("deny", "no-lateral-cameras")
    );
    assert!(a.audit && e.has(EXPLAIN_F_AUDIT), "{a:?}");
    assert_eq!(dp.test_run(&frame).expect("enforcing run").0, PASS);
}

#[test]
fn explain_judges_a_probe_from_the_router_as_the_routers_own_packet() {
    if !require_root("explain_judges_a_probe_from_the_router_as_the_routers_own_packet") {
        return;
    }
    let yaml = SITE.replace(
        "defaults:",
        "  - {name: router-dns, from: router, to: network:internet, allow: [udp/53]}\ndefaults:",
    );
    let (mut dp, policy) = loaded(&yaml);
    let (site, labels) = (Site::of(&policy), Labels::of(&policy));
    let (_, e) = ask(&mut dp, &site, "router", "198.51.100.53", "udp/53");
    assert_ne!(e.request & EXPLAIN_REQ_ROUTER_SOURCE, 0);
    let a = Answer::of(&e, &labels);
    assert_eq!(
        (a.verdict.as_str(), a.rule.as_str()),
        ("allow", "router-dns"),
        "{a:?}"
    );
    assert!(!a.src.spoofed, "{a:?}");
    let (_, e) = ask(&mut dp, &site, "router", "198.51.100.53", "tcp/25");
    assert_eq!(Answer::of(&e, &labels).verdict, "deny");
}
