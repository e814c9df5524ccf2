//! Least privilege from observation (docs/learn.md), end to end: a zone in audit on a site in
//! network namespaces, real TCP, UDP and ICMP from it, the daemon's observation store, and
//! `enforcer learn` proposing the rules that then enforce exactly that traffic. GRE, which makes no
//! flow, is observed from the audit events.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly, with what it expected as the message"
)]

use std::{
    net::IpAddr,
    process::Command,
    time::{Duration, Instant},
};

use enforcer::observe::{Filter, STORE_FILE, Store};
use enforcer_tests::{
    netns::{
        self, CAMERA, DeviceSpec, OFFICE_PC, PRINTER, RECORDER, enforcer_bin, fetch_metrics,
        listen_tcp, listen_udp_echo, ping_within, require_root, send_ip_packets, tcp_connects,
        udp_echo,
    },
    world::{World, metrics_addr as addr},
};
// The crate's other dependencies, unused here (unused_crate_dependencies is per target).
use {anyhow as _, aya as _, enforcer_common as _, ipnet as _, libc as _};

const PROBE: Duration = Duration::from_secs(2);
const GRE: u8 = 47;

/// The printers in audit; nothing allows them anything. `{MODE}` switches them.
const POLICY: &str = r#"
zones:
  office: {}
  printers: {mode: {MODE}}
  recorders: {}
  cameras: {}
  quarantine: {}
devices:
  office-pc: {zone: office, mac: "02:00:00:00:03:10", addresses: ["10.1.3.10", "fd00:1:3::10"]}
  printer-1: {zone: printers, mac: "02:00:00:00:04:10", addresses: ["10.1.4.10", "fd00:1:4::10"]}
  nvr-1: {zone: recorders, mac: "02:00:00:00:02:10", addresses: ["10.1.2.10", "fd00:1:2::10"]}
  cam-1: {zone: cameras, mac: "02:00:00:00:01:10", addresses: ["10.1.1.10", "fd00:1:1::10"]}
defaults: {action: deny, mode: enforce, unknown: quarantine}
quarantine:
  zone: quarantine
  when:
    denied_packets: {count: 5, within: 10s}
"#;

fn policy(mode: &str) -> String {
    POLICY.replace("{MODE}", mode)
}

/// What these tests read of a world's daemon, beside the shared [`World`].
trait Learn {
    /// `learn --output json --since 1h ARGS`.
    fn learn_json(&self, args: &[&str]) -> serde_json::Value;
    fn store(&self) -> Store;
}

impl Learn for World {
    fn learn_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["learn", "--output", "json", "--since", "1h"];
        all.extend(args);
        let (code, out, err) = self.cli(&all);
        assert_eq!(code, 0, "learn: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("learn's JSON: {e}: {out}"))
    }

    fn store(&self) -> Store {
        Store::open(&self.state_dir.join(STORE_FILE)).expect("open the observation store")
    }
}

fn v4(d: &DeviceSpec) -> IpAddr {
    IpAddr::V4(d.v4)
}

/// Waits until `what` holds (bounded), for the observer's next scans.
fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The metrics' policy generation.
fn generation(w: &World) -> Option<String> {
    let text = fetch_metrics(w.site.router_ns(), addr()).ok()?;
    text.lines()
        .find(|l| l.starts_with("enforcer_policy_generation "))
        .map(str::to_owned)
}

/// The printer's traffic: TCP to three servers from random source ports (`count` connections to
/// the recorder), NTP (UDP/123) to the router, a ping to the recorder. Returns whether all passed.
fn drive(w: &World, count: usize) -> bool {
    let prn = w.ns("prn1");
    let mut ok = true;
    for _ in 0..count {
        ok &= tcp_connects(prn, v4(&RECORDER), 554, PROBE);
    }
    ok &= tcp_connects(prn, v4(&OFFICE_PC), 8080, PROBE);
    ok &= tcp_connects(prn, v4(&CAMERA), 443, PROBE);
    ok &= udp_echo(prn, IpAddr::V4(PRINTER.router_v4), 123, PROBE);
    ok &= ping_within(prn, v4(&RECORDER), PROBE);
    ok
}

fn rules_of(v: &serde_json::Value) -> Vec<(String, String, Vec<String>)> {
    v["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                r["from"].as_str().expect("from").to_owned(),
                r["to"].as_str().expect("to").to_owned(),
                r["allow"]
                    .as_array()
                    .expect("allow")
                    .iter()
                    .map(|s| s.as_str().expect("service").to_owned())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn a_zone_in_audit_is_learnt_from_server_ports_only_and_its_rules_enforce_what_was_seen() {
    if !require_root("a_zone_in_audit_is_learnt") {
        return;
    }
    let w = World::new("lrn", &[OFFICE_PC, PRINTER, RECORDER, CAMERA]);
    w.write("policy.yaml", &policy("audit"));
    let _l = [
        listen_tcp(w.ns("nvr1"), 554).expect("listen"),
        listen_tcp(w.ns("pc1"), 8080).expect("listen"),
        listen_tcp(w.ns("pc1"), 9100).expect("listen"),
        listen_tcp(w.ns("cam1"), 443).expect("listen"),
        listen_udp_echo(w.site.router_ns(), 123).expect("listen"),
    ];
    let mut d = w.start();
    assert!(drive(&w, 20), "in audit, the printer's traffic passes");
    // A protocol the program makes no flow for: seen only in its audit events, which the
    // program budgets per device (`EVENTS_PER_DEVICE_PER_SEC`), and the burst above spent this
    // second's budget.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        send_ip_packets(w.ns("prn1"), CAMERA.v4, GRE, 3).expect("send GRE"),
        3
    );
    let (_, devices, _) = w.cli(&["devices", "--output", "json"]);
    assert!(
        devices.contains(r#""mode": "audit""#),
        "devices shows the audit: {devices}"
    );

    // The observer scans every few seconds; wait for all six services.
    eventually("the observations", Duration::from_secs(30), || {
        let rules = rules_of(&w.learn_json(&["--zone", "printers"]));
        rules.len() == 4 && rules.iter().map(|r| r.2.len()).sum::<usize>() == 6
    });
    let learnt = w.learn_json(&["--zone", "printers"]);
    let mut rules = rules_of(&learnt);
    rules.sort();
    // Server ports only: 20 connections from random source ports are one service, one rule.
    assert_eq!(
        rules,
        [
            (
                "zone:printers".into(),
                "device:cam-1".into(),
                vec!["tcp/443".to_owned(), "any".to_owned()]
            ),
            (
                "zone:printers".into(),
                "device:nvr-1".into(),
                vec!["tcp/554".to_owned(), "icmp".to_owned()]
            ),
            (
                "zone:printers".into(),
                "device:office-pc".into(),
                vec!["tcp/8080".to_owned()]
            ),
            (
                "zone:printers".into(),
                "router".into(),
                vec!["udp/123".to_owned()]
            ),
        ],
        "{learnt:#}"
    );
    let storm = &learnt["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["to"] == "device:nvr-1")
        .expect("the recorder's rule")["flows"];
    assert!(storm.as_u64().is_some_and(|n| n >= 20), "{learnt:#}");
    assert!(
        learnt["warnings"]
            .as_array()
            .expect("warnings")
            .iter()
            .any(|w| w
                .as_str()
                .is_some_and(|w| w.starts_with("proto/47 from zone:printers to device:cam-1"))),
        "GRE can only be allowed as `any`, and learn says so: {learnt:#}"
    );

    // The YAML beside the policy, the zone enforcing: it checks, the same traffic passes, and
    // a flow not seen before is denied.
    let (code, yaml, err) = w.cli(&["learn", "--zone", "printers", "--since", "1h"]);
    assert_eq!(code, 0, "{err}");
    w.write("learnt.yaml", &yaml);
    // A rule nothing uses, for the graph's overlay below.
    w.write(
        "unused.yaml",
        "rules:\n  - name: office-rtsp\n    from: zone:office\n    to: zone:recorders\n    allow: [tcp/554]\n",
    );
    w.write("policy.yaml", &policy("enforce"));
    let check = Command::new(enforcer_bin())
        .arg("check")
        .arg(&w.policy_dir)
        .output()
        .expect("run enforcer check");
    assert!(
        check.status.success(),
        "check: {}{}\n{yaml}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    eventually("the reload", Duration::from_secs(15), || {
        generation(&w).is_some_and(|g| !g.ends_with(" 1"))
    });
    assert!(
        drive(&w, 3),
        "with the learnt rules, the same traffic passes"
    );
    assert!(
        !tcp_connects(w.ns("prn1"), v4(&OFFICE_PC), 9100, PROBE),
        "a flow not seen before is denied"
    );

    // The policy as a graph with what was observed drawn over it: the learnt rule to the
    // recorder was used, the rule nothing used is a candidate to remove, and what audit let
    // through before the switch is drawn as would-deny.
    let to_nvr = learnt["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["to"] == "device:nvr-1")
        .and_then(|r| r["name"].as_str())
        .expect("the recorder rule's name")
        .to_owned();
    let graph = || {
        let policy_dir = w.policy_dir.display().to_string();
        let (code, dot, err) = w.cli_state(&[
            "graph",
            &policy_dir,
            "--observed",
            "--since",
            "1h",
            "--output",
            "dot",
        ]);
        assert_eq!(code, 0, "graph --observed: {err}");
        dot
    };
    let edge = |dot: &str, attr: &str| -> Option<String> {
        dot.lines()
            .find(|l| l.contains(" -> ") && l.contains(attr))
            .map(str::to_owned)
    };
    eventually(
        "the learnt rule's flows observed",
        Duration::from_secs(20),
        || {
            edge(&graph(), &format!("rule=\"{to_nvr}\""))
                .is_some_and(|e| e.contains("usage=\"used\""))
        },
    );
    let dot = graph();
    let unused = edge(&dot, "rule=\"office-rtsp\"").expect("the unused rule's edge");
    assert!(unused.contains("usage=\"never-used\""), "{unused}");
    let would = edge(&dot, "class=\"would-deny\"").expect("a would-deny edge");
    assert!(
        would.starts_with("  \"zone:printers\" -> "),
        "audit traffic is drawn from the zone: {would}"
    );
    let _ = d.stop(Duration::from_secs(5));
}

#[test]
fn observations_survive_a_restart_and_sigkills_during_writes() {
    if !require_root("observations_survive_a_restart_and_sigkills_during_writes") {
        return;
    }
    let w = World::new("lrk", &[PRINTER, RECORDER]);
    w.write(
        "policy.yaml",
        &policy("audit")
            .replace("  office-pc", "  # office-pc")
            .replace("  cam-1", "  # cam-1"),
    );
    let _l = listen_tcp(w.ns("nvr1"), 554).expect("listen");
    let prn = w.ns("prn1").to_owned();
    let flows_to_nvr = |s: &Store| -> u64 {
        s.observations(&Filter::default())
            .expect("read")
            .iter()
            .filter(|o| o.service.port == 554)
            .map(|o| o.flows)
            .sum()
    };
    let mut seen = 0;
    for round in 0..4u64 {
        let mut d = w.start();
        for _ in 0..5 {
            assert!(tcp_connects(&prn, v4(&RECORDER), 554, PROBE));
        }
        // Wait past one scan, then kill at a different moment of the next each round.
        std::thread::sleep(Duration::from_millis(5_000 + 1_300 * round));
        if round == 3 {
            let _ = d.stop(Duration::from_secs(5));
        } else {
            netns::signal_group(d.id(), "KILL");
            let _ = d.stop(Duration::from_secs(1));
        }
        let s = w.store();
        assert_eq!(s.integrity().expect("integrity_check"), "ok");
        let now = flows_to_nvr(&s);
        assert!(
            now >= seen,
            "round {round}: {now} flows, fewer than the {seen} before"
        );
        seen = now;
    }
    assert!(seen >= 5, "the flows were recorded: {seen}");
    let d = w.start();
    drop(d);
    assert!(flows_to_nvr(&w.store()) >= seen, "they survive a restart");
}
