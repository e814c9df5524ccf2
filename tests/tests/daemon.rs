//! `enforcer run` as a router runs it: a site in network namespaces, the daemon in the router's
//! namespace (`nsenter --net`, so its bpffs pins are the host's), real TCP, UDP and ICMP through it.
//!
//! Pins the daemon's promises: reloads change verdicts, a broken policy changes nothing and is
//! counted, SIGKILL leaves enforcement on, a restart adopts the counters, detach removes everything,
//! a TCP stream survives 100 reloads, `/metrics` parses as Prometheus text, and the discovery and
//! quarantine behaviour of issue 6.
//!
//! Each test builds its own site (own namespaces, pin directory and state directory), so they may
//! run in parallel; `cargo xtask test` runs them one at a time to keep the 2-core CI machine calm.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly, with what it expected as the message"
)]

use std::{
    fs,
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr},
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use enforcer_tests::{
    netns::{
        self, CAMERA, DeviceSpec, OFFICE_PC, PRINTER, RECORDER, UNKNOWN, WAN, enforcer_bin,
        fetch_metrics, listen_tcp, ping_within, require_root, spawn_daemon, tcp_connects,
    },
    world::{World, metrics_addr as addr},
};

const PROBE: Duration = Duration::from_secs(2);

/// The small policy these tests enforce: the office may print (tcp/9100, ping) and nothing else.
/// `{PORT}` is replaced to make variants; `{EXTRA}` appends rules.
const POLICY: &str = r#"
zones:
  office: {}
  printers: {}
  quarantine: {description: unknown or isolated devices}
devices:
  office-pc:
    zone: office
    mac: "02:00:00:00:03:10"
    addresses: ["10.1.3.10", "fd00:1:3::10"]
  printer-1:
    zone: printers
    mac: "02:00:00:00:04:10"
    addresses: ["10.1.4.10", "fd00:1:4::10"]
    vendor: Brother
rules:
  - name: office-print
    from: zone:office
    to: zone:printers
    allow: [tcp/{PORT}, icmp]
defaults:
  action: deny
  mode: enforce
  unknown: quarantine
  spoofed: deny
quarantine:
  zone: quarantine
  when:
    denied_packets: {count: 20, within: 10s}
"#;

fn policy(port: u16) -> String {
    POLICY.replace("{PORT}", &port.to_string())
}

/// What these tests read of a world's daemon, beside the shared [`World`].
trait Watch {
    fn write_policy(&self, text: &str);
    fn scrape(&self) -> prometheus_parse::Scrape;
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64;
    /// Waits until `enforcer_policy_generation` reaches `generation`.
    fn wait_generation(&self, generation: f64);
    fn router_xdp_attached(&self, iface: &str) -> bool;
}

impl Watch for World {
    fn write_policy(&self, text: &str) {
        self.write("policy.yaml", text);
    }

    fn scrape(&self) -> prometheus_parse::Scrape {
        let text = fetch_metrics(self.site.router_ns(), addr()).expect("GET /metrics");
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("/metrics is Prometheus text")
    }

    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        value(&self.scrape(), name, labels)
    }

    fn wait_generation(&self, generation: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.metric("enforcer_policy_generation", &[]) < generation {
            assert!(
                Instant::now() < deadline,
                "{}: generation {generation} never applied",
                self.name
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn router_xdp_attached(&self, iface: &str) -> bool {
        let out = Command::new("ip")
            .args(["-n", self.site.router_ns(), "-d", "link", "show", iface])
            .output();
        out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("prog/xdp"))
    }
}

fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn v4(d: &DeviceSpec) -> IpAddr {
    IpAddr::V4(d.v4)
}

fn v6(d: &DeviceSpec) -> IpAddr {
    IpAddr::V6(d.v6)
}

#[test]
fn reload_on_file_change_switches_verdicts() {
    if !require_root("reload_on_file_change_switches_verdicts") {
        return;
    }
    let w = World::new("rld", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy(9100));
    let _l1 = listen_tcp(w.ns("prn1"), 9100).expect("listen 9100");
    let _l2 = listen_tcp(w.ns("prn1"), 631).expect("listen 631");
    let _d = w.start();
    assert!(
        tcp_connects(w.ns("pc1"), v4(&PRINTER), 9100, PROBE),
        "9100 allowed under policy 1"
    );
    assert!(
        !tcp_connects(w.ns("pc1"), v4(&PRINTER), 631, PROBE),
        "631 denied under policy 1"
    );
    assert!(
        tcp_connects(w.ns("pc1"), v6(&PRINTER), 9100, PROBE),
        "9100 allowed over IPv6 too"
    );
    let generation = w.metric("enforcer_policy_generation", &[]);

    // `plan` against the running enforcer shows what the edit would change, before it is made.
    let next = w.policy_dir.parent().expect("base").join("next");
    fs::create_dir_all(&next).expect("next dir");
    fs::write(next.join("policy.yaml"), policy(631)).expect("write next");
    let out = Command::new(enforcer_bin())
        .args(["plan", "--output", "json", "--state-dir"])
        .arg(&w.state_dir)
        .arg(&next)
        .output()
        .expect("plan");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan json");
    assert_eq!(
        plan["changes"]["rules"]["changed"],
        serde_json::json!(["office-print"]),
        "{plan}"
    );
    assert!(
        plan["changes"]["devices"]["added"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );

    w.write_policy(&policy(631));
    w.wait_generation(generation + 1.0);
    assert!(
        tcp_connects(w.ns("pc1"), v4(&PRINTER), 631, PROBE),
        "631 allowed under policy 2"
    );
    assert!(
        !tcp_connects(w.ns("pc1"), v4(&PRINTER), 9100, PROBE),
        "9100 denied under policy 2"
    );
    assert_eq!(
        w.metric("enforcer_policy_reloads_total", &[("result", "success")]),
        1.0
    );
}

#[test]
fn broken_policy_keeps_the_old_verdicts_and_counts_the_failure() {
    if !require_root("broken_policy_keeps_the_old_verdicts_and_counts_the_failure") {
        return;
    }
    let w = World::new("brk", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy(9100));
    let _l = listen_tcp(w.ns("prn1"), 9100).expect("listen");
    let mut d = w.start();
    let generation = w.metric("enforcer_policy_generation", &[]);
    // A typo'd key: must be refused, never half-applied.
    w.write_policy(&policy(631).replace("allow: [tcp/631", "alow: [tcp/631"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.metric("enforcer_policy_reloads_total", &[("result", "failure")]) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the failed reload was never counted"
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        w.metric("enforcer_policy_generation", &[]),
        generation,
        "generation unchanged"
    );
    assert!(
        tcp_connects(w.ns("pc1"), v4(&PRINTER), 9100, PROBE),
        "old policy still allows 9100"
    );
    assert!(
        d.try_wait().expect("wait").is_none(),
        "the daemon keeps running"
    );
    assert!(
        d.output().contains("policy.yaml:"),
        "the error names the file and position:\n{}",
        d.output()
    );
    let (code, out, _) = w.cli(&["status", "--output", "json"]);
    assert_eq!(code, 0);
    let st: serde_json::Value = serde_json::from_str(&out).expect("status json");
    assert_eq!(st["last_reload"]["result"], "failure");
}

/// The policy with a guard: the office PC must always reach the printer on tcp/9100.
fn guarded_policy(port: u16) -> String {
    format!(
        "{}guards:\n  - from: device:office-pc\n    to: device:printer-1\n    service: tcp/9100\n",
        policy(port)
    )
}

#[test]
fn a_guard_blocks_a_reload_that_would_deny_it_and_the_failure_is_counted() {
    if !require_root("a_guard_blocks_a_reload_that_would_deny_it_and_the_failure_is_counted") {
        return;
    }
    let w = World::new("grd", &[OFFICE_PC, PRINTER]);
    w.write_policy(&guarded_policy(9100));
    let _l = listen_tcp(w.ns("prn1"), 9100).expect("listen");
    let mut d = w.start();
    let generation = w.metric("enforcer_policy_generation", &[]);
    assert_eq!(
        w.metric("enforcer_guard_failures_total", &[]),
        0.0,
        "the guard failure counter is exported from the start"
    );
    // Valid, but it denies the guarded flow: refused like a broken policy.
    w.write_policy(&guarded_policy(631));
    let deadline = Instant::now() + Duration::from_secs(15);
    while w.metric("enforcer_guard_failures_total", &[]) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the guard failure was never counted"
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        w.metric("enforcer_policy_reloads_total", &[("result", "failure")]),
        1.0
    );
    assert_eq!(w.metric("enforcer_policy_generation", &[]), generation);
    assert!(
        tcp_connects(w.ns("pc1"), v4(&PRINTER), 9100, PROBE),
        "the old policy still allows 9100"
    );
    assert!(
        d.try_wait().expect("wait").is_none(),
        "the daemon keeps running"
    );
    let out = d.output();
    assert!(
        out.contains("denies a guarded flow") && out.contains("policy.yaml:"),
        "the refusal names the guard's place:\n{out}"
    );
    // A policy that keeps the guarded flow is applied.
    w.write_policy(&guarded_policy(9100).replace("icmp]", "icmp, tcp/631]"));
    w.wait_generation(generation + 1.0);
}

#[test]
fn enforcer_test_fails_a_test_the_program_fails_and_passes_a_good_one() {
    if !require_root("enforcer_test_fails_a_test_the_program_fails_and_passes_a_good_one") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("enforcer-test-cmd-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("dir");
    let run = |tests: &str| {
        let path = dir.join("policy.yaml");
        fs::write(&path, format!("{}tests:\n{tests}", policy(9100))).expect("write");
        let out = Command::new(enforcer_bin())
            .args(["test", "--output", "json"])
            .arg(&path)
            .output()
            .expect("run enforcer test");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let good = "  - {name: pc prints, from: device:office-pc, to: device:printer-1, service: tcp/9100, expect: allow, rule: office-print}\n  - {from: device:office-pc, to: device:printer-1, service: tcp/22, expect: deny, rule: default}\n";
    let (code, out) = run(good);
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["passed"], true, "{out}");
    assert_eq!(
        report["results"][0]["answer"]["rule"], "office-print",
        "{out}"
    );
    // The compiled program allows 9100 only: a test expecting 631 fails.
    let bad = "  - {name: pc uses ipp, from: device:office-pc, to: device:printer-1, service: tcp/631, expect: allow}\n";
    let (code, out) = run(bad);
    assert_eq!(code, 1, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["results"][0]["passed"], false, "{out}");
    assert_eq!(report["results"][0]["answer"]["verdict"], "deny", "{out}");
    let (code, out) = run("  - {from: device:nobody, to: router, service: tcp/22, expect: deny}\n");
    assert_eq!(code, 1, "a broken policy: {out}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        report["valid"], false,
        "reported as `check` reports it: {out}"
    );
    assert!(out.contains("nobody"), "the unknown device is named: {out}");
    let _ = fs::remove_dir_all(&dir);
}

/// Every pinned map under `dir`, dumped by bpftool (keys and values as bytes, every CPU's).
fn dump_pinned_maps(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut names: Vec<_> = fs::read_dir(dir)
        .expect("pin dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let o = Command::new("bpftool")
            .args(["map", "dump", "pinned"])
            .arg(dir.join(&name))
            .output()
            .expect("run bpftool");
        // bpftool cannot dump a ring buffer (deny events, evidence); their contents are checked
        // through the daemon's log and `enforcer devices`.
        let text = if matches!(name.as_str(), "EVENTS" | "EVIDENCE") {
            String::from("ring buffer")
        } else {
            assert!(
                o.status.success(),
                "dump {name}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        out.push((name, text));
    }
    out
}

#[test]
fn explain_leaves_every_pinned_map_byte_for_byte_as_it_was() {
    if !require_root("explain_leaves_every_pinned_map_byte_for_byte_as_it_was") {
        return;
    }
    let w = World::new("xpl", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy(9100));
    let d = w.start();
    let questions: [&[&str]; 4] = [
        &[
            "--from",
            "device:office-pc",
            "--to",
            "device:printer-1",
            "--service",
            "tcp/9100",
        ],
        &[
            "--from",
            "device:office-pc",
            "--to",
            "device:printer-1",
            "--service",
            "tcp/22",
        ],
        &[
            "--from",
            "10.1.3.99",
            "--to",
            "device:printer-1",
            "--service",
            "udp/161",
        ],
        &[
            "--from",
            "device:printer-1",
            "--to",
            "router",
            "--service",
            "icmp",
        ],
    ];
    let (code, out, err) = w.cli(&[&["explain", "--output", "json"], questions[0]].concat());
    assert_eq!(code, 0, "{out}{err}");
    let answer: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(answer["verdict"], "allow", "{out}");
    assert_eq!(answer["rule"], "office-print", "{out}");
    assert_eq!(answer["src"]["device"], "office-pc", "{out}");
    let (_, out, _) = w.cli(&[&["explain", "--output", "json"], questions[1]].concat());
    let answer: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        (answer["verdict"].as_str(), answer["reason"].as_str()),
        (Some("deny"), Some("default")),
        "{out}"
    );
    // Stray packets of the site (neighbour discovery, MLD) are counted by the live program at
    // any time; explain writing anything would show in every attempt.
    let mut last = String::new();
    let unchanged = (0..5).any(|_| {
        let before = dump_pinned_maps(&w.pin_dir);
        for _ in 0..3 {
            for q in questions {
                let (code, out, err) = w.cli(&[&["explain"], q].concat());
                assert_eq!(code, 0, "{out}{err}");
            }
        }
        let after = dump_pinned_maps(&w.pin_dir);
        last = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b != a)
            .map(|(b, _)| b.0.clone())
            .collect::<Vec<_>>()
            .join(", ");
        before == after
    });
    assert!(unchanged, "explain changed pinned maps: {last}");
    // The control: real traffic through the program shows in the dump.
    let before = dump_pinned_maps(&w.pin_dir);
    assert!(
        ping_within(w.ns("pc1"), v4(&PRINTER), PROBE),
        "the office pings the printer"
    );
    assert_ne!(
        dump_pinned_maps(&w.pin_dir),
        before,
        "the dump sees no traffic at all"
    );
    thread::sleep(Duration::from_millis(500));
    assert!(
        !d.output()
            .lines()
            .any(|l| l.contains("packet denied") && l.contains("dport=22")),
        "explain wrote a deny event:\n{}",
        d.output()
    );
}

#[test]
fn sigkill_leaves_enforcement_on_and_a_restart_adopts_the_counters() {
    if !require_root("sigkill_leaves_enforcement_on_and_a_restart_adopts_the_counters") {
        return;
    }
    let w = World::new("kil", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy(9100));
    let _l1 = listen_tcp(w.ns("prn1"), 9100).expect("listen");
    let _l2 = listen_tcp(w.ns("prn1"), 22).expect("listen");
    let mut d = w.start();
    assert!(tcp_connects(w.ns("pc1"), v4(&PRINTER), 9100, PROBE));
    assert!(!tcp_connects(w.ns("pc1"), v4(&PRINTER), 22, PROBE));
    let labels = [("device", "office-pc"), ("verdict", "deny")];
    let denied_before = w.metric("enforcer_packets_total", &labels);
    let generation = w.metric("enforcer_policy_generation", &[]);
    assert!(denied_before >= 1.0);

    netns::signal_group(d.id(), "KILL");
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "daemon survived SIGKILL");
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        w.router_xdp_attached("r-pc1"),
        "XDP stays attached after SIGKILL"
    );
    assert!(
        !tcp_connects(w.ns("pc1"), v4(&PRINTER), 22, PROBE),
        "still denied with no daemon"
    );
    assert!(
        tcp_connects(w.ns("pc1"), v4(&PRINTER), 9100, PROBE),
        "still allowed with no daemon"
    );

    let _d2 = w.start();
    assert_eq!(
        w.metric("enforcer_policy_generation", &[]),
        generation + 1.0,
        "the new daemon continues the generation"
    );
    let denied_after = w.metric("enforcer_packets_total", &labels);
    assert!(
        denied_after > denied_before,
        "counters adopted and the packets denied while no daemon ran are counted: {denied_before} then {denied_after}"
    );
}

#[test]
fn detach_removes_everything_it_attached_and_pinned() {
    if !require_root("detach_removes_everything_it_attached_and_pinned") {
        return;
    }
    let w = World::new("det", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy(9100));
    let _l = listen_tcp(w.ns("prn1"), 22).expect("listen");
    let mut d = w.start();
    assert!(!tcp_connects(w.ns("pc1"), v4(&PRINTER), 22, PROBE));
    d.stop(Duration::from_secs(5));
    assert!(
        w.router_xdp_attached("r-prn1"),
        "a stopped daemon leaves enforcement on"
    );
    let (code, out, err) = w.cli(&["detach"]);
    assert_eq!(code, 0, "detach: {out}{err}");
    assert!(
        out.contains("detached r-pc1") && out.contains("detached r-prn1"),
        "{out}"
    );
    assert!(
        !w.router_xdp_attached("r-pc1") && !w.router_xdp_attached("r-prn1"),
        "no XDP left"
    );
    assert!(
        !w.pin_dir.exists(),
        "no pins left in {}",
        w.pin_dir.display()
    );
    assert!(
        tcp_connects(w.ns("pc1"), v4(&PRINTER), 22, PROBE),
        "nothing enforces any more"
    );
}

/// One TCP connection from the office PC to the printer's echo server on tcp/9100 (socat relays
/// our pipe): the client, its input, and a reader that counts the bytes echoed until the end.
fn echo_stream(
    w: &World,
) -> (
    std::process::Child,
    std::process::ChildStdin,
    thread::JoinHandle<usize>,
) {
    let mut client = netns::in_ns(w.ns("pc1"), "socat")
        .args(["-", &format!("TCP:{}:9100", PRINTER.v4)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat client");
    let tx = client.stdin.take().expect("stdin");
    let mut rx = client.stdout.take().expect("stdout");
    let reader = thread::spawn(move || {
        let mut got = 0usize;
        let mut buf = [0u8; 4096];
        while let Ok(n) = rx.read(&mut buf) {
            if n == 0 {
                break;
            }
            got += n;
        }
        got
    });
    (client, tx, reader)
}

/// Streams bytes over one TCP connection while the policy is reloaded 100 times; the stream must
/// never stall or reset, and every byte sent arrives.
#[test]
fn tcp_stream_keeps_flowing_across_100_reloads() {
    if !require_root("tcp_stream_keeps_flowing_across_100_reloads") {
        return;
    }
    let w = World::new("strm", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy(9100));
    let d = w.start();
    let _echo = listen_tcp(w.ns("prn1"), 9100).expect("listen");
    // A client inside the office namespace: socat relays our pipe to the printer's echo server.
    let (mut client, mut tx, reader) = echo_stream(&w);
    let generation = w.metric("enforcer_policy_generation", &[]);
    let chunk = [b'x'; 1000];
    let mut sent = 0usize;
    for i in 0..100u32 {
        netns::signal_group(d.id(), "HUP");
        tx.write_all(&chunk).expect("the stream stays writable");
        sent += chunk.len();
        // Each reload must land before the next, so all 100 really happen under traffic.
        w.wait_generation(generation + f64::from(i) + 1.0);
    }
    drop(tx);
    let got = reader.join().expect("reader");
    let _ = client.wait();
    assert_eq!(got, sent, "every byte echoed back across 100 reloads");
    assert_eq!(
        w.metric("enforcer_policy_reloads_total", &[("result", "success")]),
        100.0
    );
    assert_eq!(
        w.metric("enforcer_policy_reloads_total", &[("result", "failure")]),
        0.0
    );
}

#[test]
fn metrics_parse_and_count_real_traffic_per_device_rule_and_verdict() {
    if !require_root("metrics_parse_and_count_real_traffic_per_device_rule_and_verdict") {
        return;
    }
    let w = World::new("met", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy(9100));
    let _l = listen_tcp(w.ns("prn1"), 9100).expect("listen");
    let _d = w.start();
    assert!(
        ping_within(w.ns("pc1"), v4(&PRINTER), PROBE),
        "ping allowed"
    );
    assert!(tcp_connects(w.ns("pc1"), v4(&PRINTER), 9100, PROBE));
    assert!(
        !tcp_connects(w.ns("prn1"), v4(&OFFICE_PC), 22, PROBE),
        "printer may not reach the office"
    );
    let s = w.scrape();
    assert!(
        value(
            &s,
            "enforcer_packets_total",
            &[("device", "office-pc"), ("verdict", "allow")]
        ) >= 2.0
    );
    assert!(
        value(
            &s,
            "enforcer_packets_total",
            &[("device", "printer-1"), ("verdict", "deny")]
        ) >= 1.0
    );
    // The zone is on the info row, once per device, not on every traffic series.
    for (device, zone) in [("office-pc", "office"), ("printer-1", "printers")] {
        assert_eq!(
            value(
                &s,
                "enforcer_device_info",
                &[("device", device), ("zone", zone), ("kind", "device")]
            ),
            1.0,
            "{device} info row"
        );
    }
    assert!(
        s.samples
            .iter()
            .filter(|x| x.metric == "enforcer_packets_total")
            .all(|x| x.labels.get("zone").is_none() && x.labels.get("verdict") != Some("audit")),
        "no zone label, and no audit series in enforce mode"
    );
    assert_eq!(value(&s, "enforcer_build_info", &[]), 1.0);
    assert!(value(&s, "process_resident_memory_bytes", &[]) > 0.0);
    assert!(
        s.samples
            .iter()
            .any(|x| x.metric == "enforcer_quarantine_events_total"
                && x.labels.get("reason") == Some("tripwire")),
        "every quarantine reason is there before the first quarantine"
    );
    assert!(
        value(
            &s,
            "enforcer_bytes_total",
            &[("device", "office-pc"), ("verdict", "allow")]
        ) > 0.0
    );
    assert!(
        value(
            &s,
            "enforcer_rule_packets_total",
            &[("rule", "office-print")]
        ) >= 2.0
    );
    assert!(value(&s, "enforcer_rule_packets_total", &[("rule", "default")]) >= 1.0);
    assert!(value(&s, "enforcer_flows", &[]) >= 1.0);
    assert_eq!(
        value(
            &s,
            "enforcer_interfaces",
            &[("iface", "r-prn1"), ("mode", "native")]
        ),
        1.0
    );
    for family in [
        "enforcer_spoofed_packets_total",
        "enforcer_malformed_packets_total",
        "enforcer_policy_generation",
        "enforcer_policy_reloads_total",
        "enforcer_policy_last_reload_timestamp_seconds",
        "enforcer_events_dropped_total",
        "enforcer_quarantined_devices",
        "enforcer_unknown_devices",
    ] {
        assert!(
            s.samples.iter().any(|x| x.metric == family),
            "{family} is exported"
        );
    }
    // Label values come from the policy only (and the router's own row): a device the policy does
    // not know never becomes one.
    assert!(
        s.samples
            .iter()
            .filter(|x| x.metric == "enforcer_packets_total")
            .all(|x| {
                matches!(
                    x.labels.get("device"),
                    Some("office-pc" | "printer-1" | "unknown" | "router")
                )
            }),
        "device labels bounded by the policy"
    );
}

#[test]
fn unknown_device_is_quarantined_discovered_and_adoptable() {
    if !require_root("unknown_device_is_quarantined_discovered_and_adoptable") {
        return;
    }
    let w = World::new("unk", &[OFFICE_PC, PRINTER, UNKNOWN]);
    w.write_policy(&policy(9100));
    let _l = listen_tcp(w.ns("prn1"), 9100).expect("listen");
    let d = w.start();
    assert!(
        !tcp_connects(w.ns("unk"), v4(&PRINTER), 9100, PROBE),
        "an unknown device is denied from its first packet"
    );
    let (code, out, err) = w.cli(&["devices", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let inv: serde_json::Value = serde_json::from_str(&out).expect("devices json");
    let unknown = inv["unknown"].as_array().expect("unknown list");
    let me = unknown
        .iter()
        .find(|u| u["mac"] == UNKNOWN.mac)
        .unwrap_or_else(|| panic!("the unknown device is listed: {out}"));
    assert_eq!(me["ipv4"], UNKNOWN.v4.to_string());
    assert_eq!(me["last_destination"], PRINTER.v4.to_string());
    assert_eq!(me["last_port"], 9100);
    assert!(inv["listed"].as_array().is_some_and(|l| {
        l.iter()
            .any(|x| x["name"] == "printer-1" && x["vendor"] == "Brother")
    }));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !d.output().contains("new unknown device") {
        assert!(
            Instant::now() < deadline,
            "discovery logged:\n{}",
            d.output()
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert!(w.metric("enforcer_unknown_devices", &[]) >= 1.0);

    // `--output yaml` pasted into the policy repo passes `enforcer check`, and then the device is
    // listed (and so allowed what its zone is allowed).
    let (code, yaml, err) = w.cli(&["devices", "--output", "yaml"]);
    assert_eq!(code, 0, "{err}");
    fs::write(w.policy_dir.join("50-adopted.yaml"), &yaml).expect("paste");
    let check = Command::new(enforcer_bin())
        .arg("check")
        .arg(&w.policy_dir)
        .output()
        .expect("check");
    assert!(
        check.status.success(),
        "adopted YAML passes check:\n{yaml}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn device_that_keeps_probing_is_quarantined_and_release_restores_it() {
    if !require_root("device_that_keeps_probing_is_quarantined_and_release_restores_it") {
        return;
    }
    let w = World::new("qrn", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy(9100));
    let _l = listen_tcp(w.ns("prn1"), 9100).expect("listen");
    let mut d = w.start();
    assert!(
        tcp_connects(w.ns("pc1"), v4(&PRINTER), 9100, PROBE),
        "allowed before"
    );
    // 30 denied echo requests to the router (no rule allows them) in about 1.5 s: over the
    // threshold of 20 denied packets in 10 s.
    let started = Instant::now();
    let _ = netns::in_ns(w.ns("pc1"), "ping")
        .args([
            "-q",
            "-c",
            "30",
            "-i",
            "0.05",
            "-W",
            "1",
            &OFFICE_PC.router_v4.to_string(),
        ])
        .output()
        .expect("ping");
    assert!(
        !tcp_connects(w.ns("pc1"), v4(&PRINTER), 9100, PROBE),
        "quarantined: its allowed flows are gone; devices: {}\nmetrics: {}",
        w.cli(&["devices", "--output", "json"]).1,
        fetch_metrics(w.site.router_ns(), addr())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("enforcer_") && !l.ends_with(" 0"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(5);
    while w.metric(
        "enforcer_quarantine_events_total",
        &[("reason", "denied_packets")],
    ) < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "quarantine counted:\n{}",
            d.output()
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(w.metric("enforcer_quarantined_devices", &[]), 1.0);
    assert!(d.output().contains("device quarantined by the datapath"));

    // Survives a daemon restart.
    d.stop(Duration::from_secs(5));
    let _d2 = w.start();
    let (code, out, _) = w.cli(&["devices", "--output", "json"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("\"quarantined\""),
        "still quarantined after a restart: {out}"
    );
    assert!(!tcp_connects(w.ns("pc1"), v4(&PRINTER), 9100, PROBE));

    let (code, out, err) = w.cli(&["release", "office-pc", "--output", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let done: serde_json::Value = serde_json::from_str(&out).expect("release json");
    assert_eq!(
        (&done["quarantined"], &done["changed"]),
        (&false.into(), &true.into()),
        "{out}"
    );
    assert!(
        tcp_connects(w.ns("pc1"), v4(&PRINTER), 9100, PROBE),
        "released: allowed again"
    );
    assert_eq!(w.metric("enforcer_quarantined_devices", &[]), 0.0);
    // Releasing it again changes nothing, and says so.
    let (code, out, err) = w.cli(&["release", "office-pc"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "office-pc is not in quarantine; nothing changed"
    );

    let (code, _, _) = w.cli(&["quarantine", "printer-1", "--for", "1h"]);
    assert_eq!(code, 0);
    assert!(
        !ping_within(w.ns("pc1"), v4(&PRINTER), PROBE),
        "the operator's quarantine applies at once"
    );
    let (code, _, err) = w.cli(&["quarantine", "no-such-device"]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn status_reports_interfaces_generation_and_top_denied() {
    if !require_root("status_reports_interfaces_generation_and_top_denied") {
        return;
    }
    let w = World::new("sta", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy(9100));
    let _l = listen_tcp(w.ns("pc1"), 22).expect("listen");
    let _d = w.start();
    assert!(!tcp_connects(w.ns("prn1"), v4(&OFFICE_PC), 22, PROBE));
    let (code, out, err) = w.cli(&["status", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(st["running"], true);
    assert_eq!(st["mode"], "enforce");
    assert_eq!(st["devices"], 2);
    assert!(st["generation"].as_u64().is_some_and(|g| g >= 1));
    assert_eq!(st["digest"].as_str().map(str::len), Some(64));
    let ifaces: Vec<&str> = st["interfaces"]
        .as_array()
        .expect("ifaces")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(ifaces, ["r-pc1", "r-prn1"]);
    assert_eq!(st["top_denied"][0]["device"], "printer-1");
    let (code, text, _) = w.cli(&["status"]);
    assert_eq!(code, 0);
    assert!(text.contains("r-prn1 (native)"), "{text}");

    // A second daemon on the same state directory refuses to start, naming the first.
    let mut second = spawn_daemon(w.site.router_ns(), &w.args()).expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = second.try_wait().expect("wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "the second daemon kept running");
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        status.code(),
        Some(3),
        "environment error: {}",
        second.output()
    );
    assert!(
        second.output().contains("another enforcer (pid"),
        "{}",
        second.output()
    );
}

/// With a catch-all `internet: 0.0.0.0/0` and the router's default route out through the WAN, the
/// WAN's segment is the internet's (routed traffic), while an unlisted device on a guarded segment
/// is an unknown device: denied, discovered, never `internet`.
#[test]
fn uplink_segment_is_the_internet_and_an_unlisted_lan_device_is_unknown() {
    if !require_root("uplink_segment_is_the_internet_and_an_unlisted_lan_device_is_unknown") {
        return;
    }
    let w = World::new("upl", &[OFFICE_PC, UNKNOWN, WAN]);
    let policy = r#"
zones:
  office: {}
  quarantine: {}
networks:
  internet: ["0.0.0.0/0", "::/0"]
devices:
  office-pc: {zone: office, mac: "02:00:00:00:03:10", addresses: ["10.1.3.10", "fd00:1:3::10"]}
rules:
  - {name: office-web, from: zone:office, to: network:internet, allow: [tcp/443]}
  - {name: anyone-web, from: network:internet, to: network:internet, allow: [tcp/443]}
defaults: {action: deny, unknown: quarantine}
"#;
    w.write_policy(policy);
    for (family, via) in [("-4", WAN.v4.to_string()), ("-6", WAN.v6.to_string())] {
        let ok = Command::new("ip")
            .args([
                family,
                "-n",
                w.site.router_ns(),
                "route",
                "add",
                "default",
                "via",
                &via,
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "default route via the WAN");
    }
    let _l = listen_tcp(w.ns("wan"), 443).expect("listen");
    let d = w.start();
    assert!(
        d.output().contains("uplinks"),
        "the uplink is detected:\n{}",
        d.output()
    );
    assert!(
        tcp_connects(w.ns("pc1"), v4(&WAN), 443, PROBE),
        "office -> internet over the uplink"
    );
    assert!(
        tcp_connects(w.ns("pc1"), v6(&WAN), 443, PROBE),
        "and over IPv6"
    );
    assert!(
        !tcp_connects(w.ns("unk"), v4(&WAN), 443, PROBE),
        "an unlisted LAN device is unknown, not `internet` (which may reach the web here)"
    );
    let (code, out, err) = w.cli(&["devices", "--unknown", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(UNKNOWN.mac),
        "the LAN stranger is discovered: {out}"
    );
    assert!(
        !out.contains(WAN.mac),
        "the internet behind the uplink is no device: {out}"
    );
}

#[test]
fn json_logs_are_one_object_per_line_with_the_deny_fields() {
    if !require_root("json_logs_are_one_object_per_line_with_the_deny_fields") {
        return;
    }
    let w = World::new("jsn", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy(9100));
    let _l = listen_tcp(w.ns("prn1"), 22).expect("listen");
    let d = w.start_with(&["--log-format", "json"]);
    assert!(!tcp_connects(w.ns("pc1"), v4(&PRINTER), 22, PROBE));
    let deadline = Instant::now() + Duration::from_secs(5);
    let deny = loop {
        let found = d
            .output()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["target"] == "enforcer::deny");
        if let Some(v) = found {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "no deny event logged:\n{}",
            d.output()
        );
        thread::sleep(Duration::from_millis(100));
    };
    for line in d.output().lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not one JSON object: {line}"
        );
    }
    assert_eq!(deny["device"], "office-pc");
    assert_eq!(deny["zone"], "office");
    assert_eq!(deny["dst"], PRINTER.v4.to_string());
    assert_eq!(deny["dport"], 22);
    assert_eq!(deny["proto"], "tcp");
    assert_eq!(deny["rule"], "default");
    assert_eq!(deny["reason"], "default");
    assert_eq!(deny["verdict"], "deny");
}

/// A start that cannot serve metrics (the port is taken) fails before the first attach: exit 3,
/// no program on any interface, no link pinned, so under `Restart=` it cannot crash-loop while
/// enforcing with no daemon.
#[test]
fn a_metrics_port_clash_is_refused_before_anything_is_attached() {
    if !require_root("a_metrics_port_clash_is_refused_before_anything_is_attached") {
        return;
    }
    let w = World::new("clash", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy(9100));
    let _squatter = listen_tcp(w.site.router_ns(), addr().port()).expect("occupy the metrics port");
    let out = netns::nsenter_net(w.site.router_ns(), enforcer_bin())
        .args(w.args())
        .output()
        .expect("run the daemon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "exit code; stderr: {stderr}");
    assert!(
        stderr.contains(enforcer_tests::world::METRICS),
        "the error names the address: {stderr}"
    );
    for iface in w.site.router_ifaces() {
        assert!(!w.router_xdp_attached(&iface), "{iface} got a program");
    }
    assert!(
        enforcer::datapath::pinned_interfaces(&w.pin_dir).is_empty(),
        "links were pinned"
    );
}

/// Every command that reads the running enforcer, run without privileges, exits 3 with a message
/// saying it needs root (docs/cli.md), and the state files are not readable by other users.
#[test]
fn commands_without_root_exit_3_and_state_files_are_private() {
    if !require_root("commands_without_root_exit_3_and_state_files_are_private") {
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let w = World::new("noroot", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy(9100));
    let _d = w.start();
    let mode = |p: &std::path::Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&w.state_dir), 0o700);
    for f in ["ids.json", "applied.json", "status.json", "lock"] {
        assert_eq!(mode(&w.state_dir.join(f)), 0o600, "{f}");
    }
    let (pin_dir, state_dir) = (
        w.pin_dir.display().to_string(),
        w.state_dir.display().to_string(),
    );
    let policy_dir = w.policy_dir.display().to_string();
    let dirs = ["--pin-dir", &pin_dir, "--state-dir", &state_dir];
    let commands: [Vec<&str>; 6] = [
        [&["status"][..], &dirs].concat(),
        [&["status", "--output", "json"][..], &dirs].concat(),
        [&["devices"][..], &dirs].concat(),
        [&["release", "office-pc"][..], &dirs].concat(),
        [&["detach"][..], &dirs].concat(),
        vec!["plan", &policy_dir, "--state-dir", &state_dir],
    ];
    for args in commands {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(enforcer_bin())
            .args(&args)
            .output()
            .expect("run as nobody");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: stderr {stderr}");
        assert!(stderr.contains("root"), "{args:?}: {stderr}");
        if args.contains(&"json") {
            // A script reading stdout still gets one JSON document that says why.
            let doc: serde_json::Value =
                serde_json::from_slice(&out.stdout).expect("json on stdout");
            assert_eq!(
                (&doc["running"], &doc["exit"]),
                (&false.into(), &3.into()),
                "{doc}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 11: the router's own traffic, judged at egress.
// ---------------------------------------------------------------------------------------------

/// The office and the internet behind the uplink; `{ROUTER}` is replaced by the router's rules.
const ROUTER_POLICY: &str = r#"
zones:
  office: {}
  quarantine: {}
networks:
  internet: ["0.0.0.0/0", "::/0"]
devices:
  office-pc: {zone: office, mac: "02:00:00:00:03:10", addresses: ["10.1.3.10", "fd00:1:3::10"]}
rules:
  - {name: office-web, from: zone:office, to: network:internet, allow: [tcp/443, udp/5300]}
  - {name: office-admin, from: zone:office, to: router, allow: [icmp, udp/67, udp/547]}
{ROUTER}defaults: {action: deny, unknown: quarantine}
"#;

const ROUTER_UPSTREAM: &str = "  - {name: router-upstream, from: router, to: network:internet, allow: [tcp/443, udp/5300, icmp]}\n";

fn router_policy(router_rules: &str) -> String {
    ROUTER_POLICY.replace("{ROUTER}", router_rules)
}

/// Makes the WAN the router's uplink (its default route), as on a real router.
fn route_out_through_the_wan(w: &World) {
    for (family, via) in [("-4", WAN.v4.to_string()), ("-6", WAN.v6.to_string())] {
        let ok = Command::new("ip")
            .args([
                family,
                "-n",
                w.site.router_ns(),
                "route",
                "add",
                "default",
                "via",
                &via,
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "default route via the WAN");
    }
}

/// Whether one UDP datagram sent by `send` (a shell command run in `from_ns`) arrives at `to_ns`
/// on `port`.
fn udp_arrives(from_ns: &str, send: &str, to_ns: &str, port: u16) -> bool {
    let file = std::env::temp_dir().join(format!(
        "enforcer-udp-{to_ns}-{port}-{}",
        std::process::id()
    ));
    let _ = fs::remove_file(&file);
    let mut rx = netns::in_ns(to_ns, "timeout")
        .args([
            "8",
            "socat",
            "-u",
            &format!("UDP6-RECV:{port},reuseaddr,ipv6only=0"),
            &format!("CREATE:{}", file.display()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group, killed whole below: socat must not outlive the test (it would
        // hold whatever the test inherited, such as the kernel-test lock).
        .process_group(0)
        .spawn()
        .expect("start the receiver");
    thread::sleep(Duration::from_millis(500));
    let sent = netns::in_ns(from_ns, "sh")
        .args(["-c", send])
        .stdin(Stdio::null())
        .output()
        .expect("send");
    assert!(
        sent.status.success(),
        "{send}: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut arrived = false;
    while Instant::now() < deadline && !arrived {
        arrived = fs::metadata(&file).is_ok_and(|m| m.len() > 0);
        thread::sleep(Duration::from_millis(100));
    }
    netns::signal_group(rx.id(), "KILL");
    let _ = rx.wait();
    let _ = fs::remove_file(&file);
    arrived
}

/// Waits for a deny event of `device` in the daemon's log; returns the line.
fn deny_line(d: &netns::Daemon, device: &str, dport: u16) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = d
            .output()
            .lines()
            .find(|l| {
                l.contains("packet denied")
                    && l.contains(&format!("device=\"{device}\""))
                    && l.contains(&format!("dport={dport}"))
            })
            .map(str::to_owned);
        if found.is_some() || Instant::now() > deadline {
            return found;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// With a `from: router` rule the router's own TCP, UDP and ICMP reach the internet and their
/// replies come back, over IPv4 and IPv6; what no rule allows is dropped at egress, logged with
/// `device=router` and counted on the router's row; forwarded verdicts are unchanged.
#[test]
fn router_own_traffic_is_judged_at_egress_and_its_replies_come_back() {
    if !require_root("router_own_traffic_is_judged_at_egress_and_its_replies_come_back") {
        return;
    }
    let w = World::new("rtr", &[OFFICE_PC, WAN]);
    w.write_policy(&router_policy(ROUTER_UPSTREAM));
    route_out_through_the_wan(&w);
    let _web = listen_tcp(w.ns("wan"), 443).expect("listen");
    let _ssh = listen_tcp(w.ns("wan"), 22).expect("listen");
    let _udp = netns::listen_udp_echo(w.ns("wan"), 5300).expect("listen");
    let d = w.start();
    let router = w.site.router_ns();
    for to in [v4(&WAN), v6(&WAN)] {
        assert!(
            tcp_connects(router, to, 443, PROBE),
            "router -> {to} tcp/443"
        );
        assert!(
            netns::udp_echo(router, to, 5300, PROBE),
            "router -> {to} udp/5300 and back"
        );
        assert!(ping_within(router, to, PROBE), "router pings {to}");
        assert!(
            !tcp_connects(router, to, 22, PROBE),
            "router -> {to} tcp/22: no rule"
        );
    }
    let line = deny_line(&d, "router", 22)
        .unwrap_or_else(|| panic!("no deny event for the router:\n{}", d.output()));
    assert!(
        line.contains(&format!("dst={}", WAN.v4)) || line.contains(&format!("dst={}", WAN.v6)),
        "{line}"
    );
    let s = w.scrape();
    assert!(
        value(
            &s,
            "enforcer_packets_total",
            &[("device", "router"), ("verdict", "deny")]
        ) >= 2.0
    );
    assert!(
        value(
            &s,
            "enforcer_packets_total",
            &[("device", "router"), ("verdict", "allow")]
        ) >= 6.0
    );
    assert!(
        value(
            &s,
            "enforcer_rule_packets_total",
            &[("rule", "router-upstream")]
        ) >= 6.0
    );
    // Forwarded traffic keeps its verdicts.
    assert!(
        tcp_connects(w.ns("pc1"), v4(&WAN), 443, PROBE),
        "office -> internet tcp/443"
    );
    assert!(
        tcp_connects(w.ns("pc1"), v6(&WAN), 443, PROBE),
        "and over IPv6"
    );
    assert!(
        !tcp_connects(w.ns("pc1"), v4(&WAN), 22, PROBE),
        "office -> internet tcp/22 denied"
    );
    assert!(
        deny_line(&d, "office-pc", 22).is_some(),
        "denied at ingress as the office's:\n{}",
        d.output()
    );
}

/// With no rule for the router: its DHCP server replies and neighbour discovery still pass, its
/// own connections do not, and a forwarded packet that a masquerade rule gives the router's
/// address on the uplink still leaves (judged at ingress, not mistaken for the router's own).
#[test]
fn without_router_rules_dhcp_nd_and_masqueraded_forwarding_still_pass() {
    if !require_root("without_router_rules_dhcp_nd_and_masqueraded_forwarding_still_pass") {
        return;
    }
    let w = World::new("rtn", &[OFFICE_PC, WAN]);
    w.write_policy(&router_policy(""));
    route_out_through_the_wan(&w);
    let router = w.site.router_ns();
    let nft = "add table ip enforcer_test_nat\n\
               add chain ip enforcer_test_nat post { type nat hook postrouting priority 100; }\n\
               add rule ip enforcer_test_nat post oifname \"r-wan\" masquerade\n";
    let mut nft_cmd = netns::in_ns(router, "nft");
    nft_cmd.args(["-f", "-"]).stdin(Stdio::piped());
    let mut child = nft_cmd.spawn().expect("nft");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(nft.as_bytes())
        .expect("write nft rules");
    assert!(
        child.wait().is_ok_and(|s| s.success()),
        "nft masquerade rule"
    );
    let _web = listen_tcp(w.ns("wan"), 443).expect("listen");
    let _d = w.start();

    assert!(
        !tcp_connects(router, v4(&WAN), 443, PROBE),
        "the router's own connection gets the default (deny)"
    );
    let dhcp = format!(
        "echo offer | socat -u - UDP4-SENDTO:{}:68,sourceport=67,reuseaddr",
        OFFICE_PC.v4
    );
    assert!(
        udp_arrives(router, &dhcp, w.ns("pc1"), 68),
        "DHCP server reply to the office"
    );
    let dhcp6 = format!(
        "echo reply | socat -u - 'UDP6-SENDTO:[{}]:546,sourceport=547,reuseaddr'",
        OFFICE_PC.v6
    );
    assert!(
        udp_arrives(router, &dhcp6, w.ns("pc1"), 546),
        "DHCPv6 server reply to the office"
    );
    // Resolving the router's IPv6 address needs its neighbour advertisement (and its echo reply
    // is a reply on a flow judged at ingress).
    let _ = Command::new("ip")
        .args(["-n", w.ns("pc1"), "-6", "neigh", "flush", "all"])
        .status();
    assert!(
        ping_within(w.ns("pc1"), IpAddr::V6(OFFICE_PC.router_v6), PROBE),
        "office pings the router over IPv6"
    );
    // Masqueraded: the datagram leaves with the router's address; it must still arrive.
    let masq = format!("echo hi | socat -u - UDP4-SENDTO:{}:5300", WAN.v4);
    assert!(
        udp_arrives(w.ns("pc1"), &masq, w.ns("wan"), 5300),
        "masqueraded forwarded datagram"
    );
}

/// The egress links outlive a SIGKILLed daemon, are adopted by the next one and go with `detach`.
#[test]
fn egress_links_survive_sigkill_are_adopted_and_go_with_detach() {
    if !require_root("egress_links_survive_sigkill_are_adopted_and_go_with_detach") {
        return;
    }
    let w = World::new("rtk", &[OFFICE_PC, WAN]);
    w.write_policy(&router_policy(ROUTER_UPSTREAM));
    route_out_through_the_wan(&w);
    let _web = listen_tcp(w.ns("wan"), 443).expect("listen");
    let _ssh = listen_tcp(w.ns("wan"), 22).expect("listen");
    let router = w.site.router_ns();
    let pin = w.pin_dir.join("egress-links").join("r-wan");
    let mut d = w.start();
    assert!(pin.exists(), "egress link pinned at {}", pin.display());
    assert!(!tcp_connects(router, v4(&WAN), 22, PROBE));

    netns::signal_group(d.id(), "KILL");
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "daemon survived SIGKILL");
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !tcp_connects(router, v4(&WAN), 22, PROBE),
        "still denied at egress with no daemon"
    );
    assert!(
        tcp_connects(router, v4(&WAN), 443, PROBE),
        "still allowed with no daemon"
    );

    let mut d2 = w.start();
    assert!(
        d2.output().contains("egress=\"adopted\"") || d2.output().contains("egress=adopted"),
        "{}",
        d2.output()
    );
    assert!(
        !tcp_connects(router, v4(&WAN), 22, PROBE),
        "denied by the adopted link"
    );
    d2.stop(Duration::from_secs(5));

    let (code, out, err) = w.cli(&["detach"]);
    assert_eq!(code, 0, "detach: {out}{err}");
    assert!(!pin.exists(), "egress pin removed");
    assert!(
        tcp_connects(router, v4(&WAN), 22, PROBE),
        "nothing judges the router any more"
    );
}

/// The metric names a file in `deploy/` uses (`enforcer_...`), sorted and unique.
fn deploy_metric_names(rel: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut names: Vec<String> = text
        .match_indices("enforcer_")
        .filter(|(i, _)| {
            // A name starts a token: not `enforcer_` inside another word.
            !text[..*i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(|(i, _)| {
            text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The dashboard and the alert rules only query metrics a freshly started daemon serves (an alert
/// on a name that does not exist never fires, and nobody notices).
#[test]
fn every_metric_the_dashboard_and_alert_rules_use_is_on_a_live_metrics_page() {
    if !require_root("every_metric_the_dashboard_and_alert_rules_use_is_on_a_live_metrics_page") {
        return;
    }
    let mut used = deploy_metric_names("deploy/grafana/enforcer.json");
    let rules = deploy_metric_names("deploy/prometheus/enforcer.rules.yml");
    assert!(
        used.len() >= 8 && rules.len() >= 4,
        "too few names found: {used:?} {rules:?}"
    );
    used.extend(rules);
    used.sort();
    used.dedup();
    let w = World::new("depm", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy(9100));
    let _d = w.start();
    let text = fetch_metrics(w.site.router_ns(), addr()).expect("GET /metrics");
    let missing: Vec<&String> = used
        .iter()
        .filter(|name| !text.contains(&format!("# TYPE {name} ")))
        .collect();
    assert!(missing.is_empty(), "not on /metrics: {missing:?}\n{text}");
}

/// Under systemd (`Type=notify`, `WatchdogSec=`): READY=1 only once the policy is enforced and
/// `/metrics` answers, WATCHDOG=1 pings at half the watchdog interval, STOPPING=1 on SIGTERM.
#[test]
fn systemd_hears_ready_once_enforcing_then_watchdog_pings_and_stopping() {
    use std::os::unix::{net::UnixDatagram, process::CommandExt as _};

    if !require_root("systemd_hears_ready_once_enforcing_then_watchdog_pings_and_stopping") {
        return;
    }
    let w = World::new("sdn", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy(9100));
    let sock_path = w.policy_dir.with_file_name("notify.sock");
    let _ = fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).expect("bind the notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    // systemd names the watched process in WATCHDOG_PID: the shell's pid, which `exec` hands to
    // nsenter and nsenter (without --pid) to the daemon.
    let mut child = Command::new("sh")
        .args(["-c", "export WATCHDOG_PID=$$; exec \"$@\"", "sh", "nsenter"])
        .arg(format!("--net=/var/run/netns/{}", w.site.router_ns()))
        .arg("--")
        .arg(enforcer_bin())
        .args(w.args())
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn the daemon");
    struct Reap(u32);
    impl Drop for Reap {
        fn drop(&mut self) {
            netns::signal_group(self.0, "KILL");
        }
    }
    let _reap = Reap(child.id());
    let mut buf = [0u8; 256];
    let mut recv = || {
        let n = sock.recv(&mut buf).expect("a notification within 20 s");
        String::from_utf8_lossy(&buf[..n]).trim_end().to_owned()
    };
    assert_eq!(recv(), "READY=1");
    // Ready means enforcing: the metrics are served and the program is attached now.
    let text = fetch_metrics(w.site.router_ns(), addr()).expect("/metrics answers at READY=1");
    assert!(text.contains("enforcer_policy_generation"), "{text}");
    for iface in w.site.router_ifaces() {
        assert!(w.router_xdp_attached(&iface), "{iface} attached at READY=1");
    }
    let started = Instant::now();
    assert_eq!(recv(), "WATCHDOG=1");
    assert_eq!(recv(), "WATCHDOG=1");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "two pings at 0.2 s intervals took {:?}",
        started.elapsed()
    );
    netns::signal_group(child.id(), "TERM");
    let mut last = recv();
    while last == "WATCHDOG=1" {
        last = recv();
    }
    assert_eq!(last, "STOPPING=1");
    let status = child.wait().expect("daemon exits");
    assert!(status.success(), "{status}");
}

// ----- Flow-table exhaustion (issue 12, finding 1) ---------------------------------------------

/// The attack site's policy: the recorder pulls the camera's stream, the office may resolve names
/// on the internet, and a camera denied a few packets would be quarantined.
const FLOOD_POLICY: &str = r#"
zones:
  cameras: {}
  recorders: {}
  office: {}
  quarantine: {}
networks:
  internet: ["0.0.0.0/0"]
devices:
  cam-1: {zone: cameras, mac: "02:00:00:00:01:10", addresses: ["10.1.1.10"]}
  nvr-1: {zone: recorders, mac: "02:00:00:00:02:10", addresses: ["10.1.2.10"]}
  office-pc: {zone: office, mac: "02:00:00:00:03:10", addresses: ["10.1.3.10"]}
rules:
  - name: nvr-pull
    from: zone:recorders
    to: zone:cameras
    allow: [tcp/554]
  - name: office-dns
    from: zone:office
    to: network:internet
    allow: [udp/53]
defaults:
  unknown: quarantine
quarantine:
  zone: quarantine
  when:
    denied_packets: {count: 5, within: 10s}
"#;

/// New flows the office sends, two frames each.
const FLOOD_FLOWS: u32 = 200_000;

#[test]
fn an_idle_connection_survives_a_flood_of_new_flows_from_another_device() {
    if !require_root("an_idle_connection_survives_a_flood_of_new_flows_from_another_device") {
        return;
    }
    let w = World::new("flood", &[CAMERA, RECORDER, OFFICE_PC]);
    w.write_policy(FLOOD_POLICY);
    let _d = w.start();

    // nvr-1 opens the camera's stream; then it idles, and the camera speaks first after it.
    let listener = netns::in_netns(w.ns("cam1"), || {
        std::net::TcpListener::bind(("0.0.0.0", 554))
    })
    .expect("cam1 namespace")
    .expect("listen on 554");
    let camera = v4(&CAMERA);
    let mut client = netns::in_netns(w.ns("nvr1"), || {
        std::net::TcpStream::connect_timeout(&SocketAddr::new(camera, 554), PROBE)
    })
    .expect("nvr1 namespace")
    .expect("nvr-1 connects to cam-1");
    let (mut server, _) = listener.accept().expect("accept");

    // office-pc: 200,000 new udp/53 flows to internet addresses (100.64.0.0/10), each sent twice.
    let started = Instant::now();
    let sent = netns::in_netns(w.ns("pc1"), || {
        let socket = std::net::UdpSocket::bind(("0.0.0.0", 0)).expect("udp socket");
        let mut sent = 0u32;
        for i in 0..FLOOD_FLOWS {
            let dst = std::net::Ipv4Addr::from(0x6440_0000 + i);
            for _ in 0..2 {
                // A full socket buffer drops a frame now and then; the count says how many left.
                if socket.send_to(&[0u8; 32], (dst, 53)).is_ok() {
                    sent += 1;
                }
            }
        }
        sent
    })
    .expect("pc1 namespace");
    let flood = started.elapsed();
    assert!(
        sent >= FLOOD_FLOWS,
        "the flood left the office: {sent} frames sent in {flood:?}"
    );

    // The camera speaks: every line reaches the recorder.
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut got = Vec::new();
    for i in 0..20 {
        server
            .write_all(format!("frame {i}\n").as_bytes())
            .expect("camera writes");
        let mut buf = [0u8; 64];
        let n = client.read(&mut buf).unwrap_or(0);
        got.extend_from_slice(&buf[..n]);
    }
    // Whatever is still in flight arrives within the timeout.
    while got.iter().filter(|b| **b == b'\n').count() < 20 {
        let mut buf = [0u8; 256];
        match client.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let lines = got.iter().filter(|b| **b == b'\n').count();
    let s = w.scrape();
    let kind = |k: &str| value(&s, "enforcer_datapath_packets_total", &[("kind", k)]);
    let camera_denied = value(
        &s,
        "enforcer_packets_total",
        &[("device", "cam-1"), ("verdict", "deny")],
    );
    assert_eq!(
        lines,
        20,
        "the idle connection survived the flood ({sent} frames in {flood:?}; \
         flow_quota_exceeded {}, flow_table_full {}, cam-1 denied {camera_denied})",
        kind("flow_quota_exceeded"),
        kind("flow_table_full"),
    );
    eprintln!(
        "flood: {sent} frames in {flood:?}; flow_quota_exceeded {}, flow_table_full {}, \
         flow_hit {}",
        kind("flow_quota_exceeded"),
        kind("flow_table_full"),
        kind("flow_hit"),
    );
    assert_eq!(camera_denied, 0.0, "nothing of the camera's was denied");
    assert!(
        kind("flow_quota_exceeded") >= f64::from(FLOOD_FLOWS - 4_096),
        "the office's flows beyond its quota were refused: {}",
        kind("flow_quota_exceeded")
    );
    assert_eq!(
        kind("flow_table_full"),
        0.0,
        "the table itself never filled"
    );
}

// ----- A crowd flooding denied packets (issue 12, catalogue: log and event volume bounded) ------

/// Listed devices that flood at once, frames each sends in one round (beyond the program's 10
/// events a second per device), and rounds, one a second.
const CROWD: u16 = 1_000;
const CROWD_FRAMES: u16 = 15;
const CROWD_ROUNDS: u32 = 3;

fn crowd_mac(i: u16) -> [u8; 6] {
    let [hi, lo] = i.to_be_bytes();
    [0x02, 0x10, 0, 0, hi, lo]
}

fn crowd_addr(i: u16) -> std::net::Ipv4Addr {
    let [hi, lo] = i.to_be_bytes();
    std::net::Ipv4Addr::new(10, 3, hi, lo)
}

/// 1,000 listed devices in one zone that may send nothing, quarantined after 5 denied packets.
fn crowd_policy() -> String {
    let mut p = String::from(
        "zones:\n  crowd: {}\n  printers: {}\n  quarantine: {}\ndevices:\n  printer-1: {zone: printers, mac: \"02:00:00:00:04:10\", addresses: [\"10.1.4.10\"]}\n",
    );
    for i in 0..CROWD {
        p.push_str(&format!(
            "  d{i:04}: {{zone: crowd, mac: \"{}\", addresses: [\"{}\"]}}\n",
            enforcer::policy::model::fmt_mac(crowd_mac(i)),
            crowd_addr(i)
        ));
    }
    p.push_str(
        "rules:\n  - {name: print-to-crowd, from: zone:printers, to: zone:crowd, allow: [tcp/9]}\n\
         defaults:\n  unknown: quarantine\nquarantine:\n  zone: quarantine\n  when:\n    denied_packets: {count: 5, within: 10s}\n",
    );
    p
}

/// The `suppressed=N` of a deny summary line.
fn suppressed_of(line: &str) -> Option<u64> {
    let rest = &line[line.find(" suppressed=")? + " suppressed=".len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// 1,000 listed devices each flood denied packets in the same seconds: the program sends at most
/// its shared budget of events a second per CPU; the log gets at most the daemon's cap of deny
/// lines a second plus a summary line naming how many were suppressed from how many devices;
/// every event delivered is either logged or counted as suppressed; the quarantines happen all
/// the same (the kernel decides them, not the log); `/metrics` answers.
#[test]
fn a_thousand_devices_flooding_denied_packets_cost_a_bounded_log_and_a_summary() {
    if !require_root("a_thousand_devices_flooding_denied_packets_cost_a_bounded_log_and_a_summary")
    {
        return;
    }
    let cap = f64::from(enforcer::daemon::events::MAX_DENY_LOGS_PER_SECOND);
    let w = World::new("crowd", &[OFFICE_PC]);
    w.write_policy(&crowd_policy());
    let d = w.start();
    // Every device of the crowd sends udp/9999 to the printer's address (no rule allows it) out
    // of the office's namespace, from its own MAC and address.
    let round: Vec<Vec<u8>> = (0..CROWD_FRAMES)
        .flat_map(|n| {
            (0..CROWD).map(move |i| {
                enforcer_tests::frame::Frame::eth(crowd_mac(i))
                    .ipv4(&crowd_addr(i).to_string(), "10.1.4.10")
                    .udp(40_000 + n, 9999)
                    .payload(&[0u8; 18])
                    .build()
            })
        })
        .collect();
    let started = Instant::now();
    let mut sent = 0;
    for r in 0..CROWD_ROUNDS {
        // Each round in a new second of every device's budget.
        let due = started + Duration::from_millis(1_100) * r;
        thread::sleep(due.saturating_duration_since(Instant::now()));
        sent += netns::send_raw_frames(w.ns("pc1"), netns::DEVICE_IFACE, &round)
            .expect("send the crowd's frames");
        // The daemon answers a scrape in the middle of the flood.
        let _ = w.scrape();
    }
    let flood = started.elapsed();
    assert_eq!(
        sent,
        round.len() * CROWD_ROUNDS as usize,
        "every frame left"
    );

    // Every delivered event is read, and every suppressed one summed in a summary line.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (lines, summaries, s) = loop {
        let s = w.scrape();
        let out = d.output();
        let lines: Vec<String> = out
            .lines()
            .filter(|l| l.contains("packet denied"))
            .map(str::to_owned)
            .collect();
        let summaries: Vec<String> = out
            .lines()
            .filter(|l| l.contains("deny events from"))
            .map(str::to_owned)
            .collect();
        let received = value(&s, "enforcer_deny_events_total", &[]);
        let sent_events = value(
            &s,
            "enforcer_datapath_packets_total",
            &[("kind", "events_sent")],
        );
        let suppressed = value(&s, "enforcer_deny_events_suppressed_total", &[]);
        #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
        let summed = summaries
            .iter()
            .filter_map(|l| suppressed_of(l))
            .sum::<u64>() as f64;
        if received == sent_events && summed == suppressed {
            break (lines, summaries, s);
        }
        assert!(
            Instant::now() < deadline,
            "events never settled: received {received}, sent {sent_events}, suppressed {suppressed}, summed {summed}"
        );
        thread::sleep(Duration::from_millis(300));
    };
    let settled = started.elapsed();
    let received = value(&s, "enforcer_deny_events_total", &[]);
    let suppressed = value(&s, "enforcer_deny_events_suppressed_total", &[]);
    let kind = |k: &str| value(&s, "enforcer_datapath_packets_total", &[("kind", k)]);
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    let logged = lines.len() as f64;
    eprintln!(
        "crowd: {sent} frames in {flood:?}; events sent {}, rate-limited {}, held by the shared budget {}, dropped (ring full) {}; \
         received {received}: logged {logged}, suppressed {suppressed} in {} summary lines; settled after {settled:?}",
        kind("events_sent"),
        kind("events_rate_limited"),
        kind("events_global_limited"),
        kind("events_dropped"),
        summaries.len()
    );
    assert_eq!(
        logged + suppressed,
        received,
        "every event received is logged or counted as suppressed"
    );
    // The cap holds for every window the flood touched (one more for a window cut in two).
    let windows = settled.as_secs_f64().ceil() + 1.0;
    // The program's shared budget bounds the events themselves: a crowd with fresh device
    // budgets costs no more than 100 a second per CPU.
    #[expect(clippy::cast_precision_loss, reason = "a CPU count")]
    let cpus = thread::available_parallelism().map_or(1, std::num::NonZero::get) as f64;
    let per_cpu = f64::from(enforcer_common::state::EVENTS_PER_CPU_PER_SEC);
    assert!(received > 0.0, "the crowd's events reached the daemon");
    assert!(
        kind("events_sent") <= per_cpu * cpus * windows,
        "{} events in {settled:?} from {cpus} CPUs",
        kind("events_sent")
    );
    assert!(
        kind("events_global_limited") > 0.0,
        "the shared budget held the crowd back"
    );
    assert!(
        logged <= cap * windows,
        "{logged} deny lines in {settled:?}: more than {cap} a second"
    );
    // No second of the log holds more than two windows' lines.
    let mut per_second: std::collections::BTreeMap<&str, f64> = std::collections::BTreeMap::new();
    for l in &lines {
        *per_second
            .entry(l.get(..19).unwrap_or_default())
            .or_default() += 1.0;
    }
    assert!(
        per_second.values().all(|n| *n <= 2.0 * cap),
        "deny lines a second: {per_second:?}"
    );
    assert!(
        suppressed == 0.0 || !summaries.is_empty(),
        "what the log suppressed is summed in summary lines"
    );
    // The kernel quarantined every device, whatever the log kept.
    assert_eq!(
        value(&s, "enforcer_quarantined_devices", &[]),
        f64::from(CROWD)
    );
    assert_eq!(kind("quarantine_trips"), f64::from(CROWD));
}

// ----- Slowloris on the metrics port (issue 12, catalogue FLT-24) -------------------------------

/// Idle connections the attacker opens; more than the daemon's open-file limit of 1,024.
const SLOW_CONNECTIONS: usize = 1_200;

/// Open descriptors of process `pid`.
fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// The calling thread's namespace's `TcpExtListenOverflows`: connections its listeners' full
/// accept queues refused (dropped SYNs or handshake ACKs, retransmitted seconds later).
fn listen_overflows() -> u64 {
    let netstat = fs::read_to_string("/proc/thread-self/net/netstat").unwrap_or_default();
    let mut lines = netstat.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if let Some(at) = names
            .split_whitespace()
            .position(|n| n == "ListenOverflows")
        {
            return values
                .split_whitespace()
                .nth(at)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
    }
    0
}

/// The generation `status.json` records.
fn status_generation(w: &World) -> u64 {
    fs::read_to_string(w.state_dir.join("status.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["generation"].as_u64())
        .unwrap_or(0)
}

/// This test process needs more descriptors than the attack's connections.
fn allow_open_files(n: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct on our stack.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) };
    assert_eq!(rc, 0, "getrlimit");
    if limit.rlim_cur >= n {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: n,
        rlim_max: limit.rlim_max.max(n),
    };
    // SAFETY: setrlimit reads the struct on our stack.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

/// With an open-file limit of 1,024 and 1,200 idle connections to the metrics port, a policy
/// change still reloads (and switches verdicts) at once, the daemon's descriptors stay within
/// the connection cap, every idle connection is closed (beyond the cap at once, the others after
/// the header timeout), and a scrape succeeds after that.
#[test]
fn slowloris_on_the_metrics_port_with_1024_open_files_does_not_stop_reloads() {
    if !require_root("slowloris_on_the_metrics_port_with_1024_open_files_does_not_stop_reloads") {
        return;
    }
    use enforcer::daemon::http::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS};
    let w = World::new("slow", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy(9100));
    let _l1 = listen_tcp(w.ns("prn1"), 9100).expect("listen 9100");
    let _l2 = listen_tcp(w.ns("prn1"), 631).expect("listen 631");
    let d = w.start();
    let pid = d.id();
    // A small router's limit: 1,024, soft and hard (the daemon raised its soft limit at start).
    let ok = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--nofile=1024:1024"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "prlimit the daemon");
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).expect("daemon limits");
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.split_whitespace().nth(3) == Some("1024")),
        "{limits}"
    );
    let before = fd_count(pid);
    allow_open_files(4_096);

    let target = addr();
    let opened_at = Instant::now();
    let conns = netns::in_netns(w.site.router_ns(), || {
        (0..SLOW_CONNECTIONS)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(&target, Duration::from_secs(5)).ok()
            })
            .collect::<Vec<_>>()
    })
    .expect("router namespace");
    assert_eq!(conns.len(), SLOW_CONNECTIONS, "every connection opened");
    let mut peak = fd_count(pid);

    w.write_policy(&policy(631));
    let changed = Instant::now();
    let reload_deadline = changed + Duration::from_secs(10);
    while status_generation(&w) < 2 {
        peak = peak.max(fd_count(pid));
        assert!(
            Instant::now() < reload_deadline,
            "no reload under slowloris:\n{}",
            d.output()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let reload_latency = changed.elapsed();
    assert!(
        tcp_connects(w.ns("pc1"), v4(&PRINTER), 631, PROBE),
        "631 allowed after the reload"
    );
    assert!(
        !tcp_connects(w.ns("pc1"), v4(&PRINTER), 9100, PROBE),
        "9100 denied after the reload"
    );
    peak = peak.max(fd_count(pid));

    // The daemon closes every idle connection by the header timeout (and a little slack).
    let closed_by = opened_at + HEADER_READ_TIMEOUT + Duration::from_secs(5);
    let mut still_open = 0;
    for mut c in conns {
        let left = closed_by
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(10));
        c.set_read_timeout(Some(left)).expect("read timeout");
        let mut buf = [0u8; 1];
        if let Err(e) = c.read(&mut buf)
            && matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )
        {
            still_open += 1;
        }
    }
    let closed_after = opened_at.elapsed();
    // A connection the kernel's full accept queue held back is accepted late, and its header
    // timeout starts late: name that cause if it ever shows.
    let overflows =
        netns::in_netns(w.site.router_ns(), listen_overflows).expect("router namespace");
    assert_eq!(
        still_open, 0,
        "idle connections the daemon kept open ({overflows} listen-queue overflows in the router namespace)"
    );
    let s = w.scrape();
    let rejected = value(&s, "enforcer_metrics_connections_rejected_total", &[]);
    let after = fd_count(pid);
    eprintln!(
        "slowloris: fds before {before}, peak {peak}, after {after}; reload in {reload_latency:?}; \
         all {SLOW_CONNECTIONS} closed after {closed_after:?}; rejected at once {rejected}"
    );
    #[expect(clippy::cast_precision_loss, reason = "small counts")]
    let beyond_cap = (SLOW_CONNECTIONS - MAX_CONNECTIONS) as f64;
    assert!(rejected >= beyond_cap, "rejected {rejected}");
    assert!(
        peak <= before + MAX_CONNECTIONS + 8,
        "descriptors: {before} before, {peak} at the peak"
    );
    assert!(
        after <= before + 2,
        "descriptors: {before} before, {after} after"
    );
}

// ----- enforcer watch (issue 15 item 6) ---------------------------------------------------------

/// Starts `enforcer watch ARGS --output json --control-socket ...` and returns it with its stdout.
fn spawn_watch(w: &World, args: &[&str]) -> std::process::Child {
    Command::new(enforcer_bin())
        .arg("watch")
        .args(args)
        .args(["--output", "json", "--control-socket"])
        .arg(&w.control_socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn enforcer watch")
}

/// `enforcer watch` streams the daemon's deny events live, filtered by device, with interface
/// names; the control socket is root's alone (0600 in a 0700 directory) and a watch without a
/// daemon exits 3.
#[test]
fn watch_streams_a_devices_denied_packets_with_interface_names() {
    if !require_root("watch_streams_a_devices_denied_packets_with_interface_names") {
        return;
    }
    use std::{io::BufRead as _, os::unix::fs::PermissionsExt as _};
    let w = World::new("watch", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy(9100));
    let d = w.start();
    let mode = |p: &std::path::Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&w.control_socket), 0o600);
    assert_eq!(mode(w.control_socket.parent().expect("socket dir")), 0o700);

    // The printer's denied packets only: office-pc's are filtered out by the daemon.
    let mut watch = spawn_watch(&w, &["--device", "printer-1", "--count", "1"]);
    // Let the watch subscribe before anything is denied.
    thread::sleep(Duration::from_millis(500));
    assert!(
        !tcp_connects(w.ns("pc1"), v4(&PRINTER), 22, PROBE),
        "office-pc may not ssh to the printer"
    );
    assert!(
        !tcp_connects(w.ns("prn1"), v4(&OFFICE_PC), 22, PROBE),
        "printer may not reach the office"
    );
    let stdout = watch.stdout.take().expect("stdout");
    let line = std::io::BufReader::new(stdout)
        .lines()
        .next()
        .expect("one event")
        .expect("read the event");
    let status = watch.wait().expect("watch exits after --count 1");
    assert!(status.success(), "watch exit {status:?}: {}", d.output());
    let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON event");
    assert_eq!(event["kind"], "deny", "{event}");
    assert_eq!(event["device"], "printer-1", "{event}");
    assert_eq!(event["zone"], "printers", "{event}");
    assert_eq!(event["dst"], OFFICE_PC.v4.to_string(), "{event}");
    assert_eq!(event["dport"], 22, "{event}");
    assert_eq!(event["rule"], "default", "{event}");
    let iface = event["iface"].as_str().unwrap_or_default();
    assert!(
        w.site.router_ifaces().iter().any(|i| i == iface),
        "the interface by name, one of the router's: {event}"
    );

    // No daemon on that socket: said plainly, exit 3.
    let (code, out, err) = {
        let o = Command::new(enforcer_bin())
            .args([
                "watch",
                "--verdict",
                "audit",
                "--count",
                "1",
                "--control-socket",
            ])
            .arg(w.control_socket.with_file_name("missing.sock"))
            .output()
            .expect("run enforcer watch");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_eq!(code, 3, "no daemon on that socket: {out}{err}");
    assert!(err.contains("no enforcer daemon listens"), "{err}");

    // Operator actions reach the daemon's log, with who did them (the socket's peer credentials).
    let socket = w.control_socket.display().to_string();
    for args in [
        [
            "quarantine",
            "printer-1",
            "--for",
            "1m",
            "--control-socket",
            &socket,
        ],
        [
            "release",
            "printer-1",
            "--control-socket",
            &socket,
            "--output",
            "text",
        ],
    ] {
        let (code, out, err) = w.cli(&args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    }
    let audit: Vec<String> = d
        .output()
        .lines()
        .filter(|l| l.contains("operator action"))
        .map(str::to_owned)
        .collect();
    assert_eq!(audit.len(), 2, "{audit:#?}");
    assert!(
        audit[0].contains("action=\"quarantine\"")
            && audit[0].contains("on=\"printer-1\"")
            && audit[0].contains("uid=0"),
        "{}",
        audit[0]
    );
    assert!(audit[1].contains("action=\"release\""), "{}", audit[1]);
}

/// The policy with a flow table of `flows` entries.
fn policy_with_flows(flows: u32) -> String {
    format!("{}limits: {{flows: {flows}}}\n", policy(9100))
}

/// The `max_entries` of the `FLOWS` map pinned in `w`'s pin directory.
fn pinned_flows_capacity(w: &World) -> u32 {
    let map = aya::maps::MapData::from_pin(w.pin_dir.join("FLOWS")).expect("pinned FLOWS");
    map.info().expect("FLOWS info").max_entries()
}

/// `enforcer status`'s flow-table capacity.
fn status_flow_capacity(w: &World) -> u64 {
    let (code, out, err) = w.cli(&["status", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).expect("json");
    st["flow_capacity"].as_u64().expect("flow_capacity")
}

/// The flow table is pinned at `new` capacity (the daemon re-creates it after the policy is
/// applied, so within a few seconds), the daemon logged the change from `old`, `status` says so,
/// and new connections still pass.
fn assert_resized(w: &World, d: &netns::Daemon, (old, new): (u32, u32)) {
    let logged = |log: &str| {
        log.contains(&format!("old_capacity={old}")) && log.contains(&format!("new_capacity={new}"))
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !logged(&d.output()) {
        assert!(
            Instant::now() < deadline,
            "the flow table was never re-created at {new}: {}",
            d.output()
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(pinned_flows_capacity(w), new);
    assert_eq!(status_flow_capacity(w), u64::from(new));
    assert!(
        tcp_connects(w.ns("pc1"), v4(&PRINTER), 9100, PROBE),
        "new connections at {new}"
    );
}

/// A changed `limits.flows` re-creates the pinned flow maps at the new size (a pinned map keeps
/// its size when adopted), on a reload and at a start, with one log line saying so, and an open
/// TCP stream keeps flowing through both: its flow is learned again.
#[test]
fn a_changed_flow_capacity_recreates_the_pinned_flow_table_on_reload_and_at_start() {
    if !require_root(
        "a_changed_flow_capacity_recreates_the_pinned_flow_table_on_reload_and_at_start",
    ) {
        return;
    }
    let w = World::new("fcap", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy_with_flows(2_048));
    let mut d = w.start();
    assert_eq!(pinned_flows_capacity(&w), 2_048);
    assert_eq!(status_flow_capacity(&w), 2_048);
    let _echo = listen_tcp(w.ns("prn1"), 9100).expect("listen");
    let (mut client, mut tx, reader) = echo_stream(&w);
    let chunk = [b'x'; 1000];
    tx.write_all(&chunk).expect("write before");

    // A reload with another capacity.
    let generation = w.metric("enforcer_policy_generation", &[]);
    w.write_policy(&policy_with_flows(4_096));
    w.wait_generation(generation + 1.0);
    assert_resized(&w, &d, (2_048, 4_096));
    tx.write_all(&chunk).expect("write after the reload");

    // A restart with another capacity.
    d.stop(Duration::from_secs(5));
    w.write_policy(&policy_with_flows(1_024));
    let d2 = w.start();
    assert_resized(&w, &d2, (4_096, 1_024));
    tx.write_all(&chunk).expect("write after the restart");
    assert!(
        !tcp_connects(w.ns("pc1"), v4(&PRINTER), 22, PROBE),
        "and the policy still denies"
    );
    drop(tx);
    let got = reader.join().expect("reader");
    let _ = client.wait();
    assert_eq!(
        got,
        3 * chunk.len(),
        "the open stream kept flowing through both"
    );
}

/// `World::args` with no `--iface` (the policy's `interfaces:` names them) and `more` added.
fn args_without_iface(w: &World, more: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut args = w.args().into_iter();
    while let Some(a) = args.next() {
        if a == "--iface" {
            let _name = args.next();
        } else {
            out.push(a);
        }
    }
    out.extend(more.iter().cloned());
    out
}

/// The fleet layout of docs/fleet.md: zones and rules common to every router, and a directory of
/// this router's own (its interfaces and devices).
const FLEET_COMMON: &str = r#"
zones:
  office: {}
  printers: {}
  quarantine: {}
networks:
  internet: ["0.0.0.0/0", "::/0"]
rules:
  - {name: office-print, from: zone:office, to: zone:printers, allow: [tcp/9100, icmp]}
  - {name: internet-to-office-8080, from: network:internet, to: zone:office, allow: [tcp/8080]}
defaults: {action: deny, unknown: quarantine}
"#;

/// A site run from two `--policy` directories and an `interfaces:` key, no `--iface`: every
/// listed interface is enforced, allowed traffic passes, denied is dropped, and the interface the
/// policy calls an uplink is one although no default route leaves through it (a guess would make
/// it a segment, its host an unknown device, and the internet rule would never match).
#[test]
fn a_site_runs_from_an_interfaces_key_and_two_policy_directories() {
    if !require_root("a_site_runs_from_an_interfaces_key_and_two_policy_directories") {
        return;
    }
    let w = World::new("ifk", &[OFFICE_PC, PRINTER, WAN]);
    w.write_policy(FLEET_COMMON);
    let router_dir = w.policy_dir.parent().expect("base").join("branch-7");
    fs::create_dir_all(&router_dir).expect("router dir");
    let mut interfaces = String::from("interfaces:\n");
    for node in w.site.nodes() {
        let role = if node.spec.name == WAN.name {
            "uplink"
        } else {
            "segment"
        };
        interfaces.push_str(&format!("  {}: {{role: {role}}}\n", node.router_iface));
    }
    fs::write(router_dir.join("interfaces.yaml"), interfaces).expect("interfaces");
    let devices = r#"
devices:
  office-pc: {zone: office, mac: "02:00:00:00:03:10", addresses: ["10.1.3.10", "fd00:1:3::10"]}
  printer-1: {zone: printers, mac: "02:00:00:00:04:10", addresses: ["10.1.4.10", "fd00:1:4::10"]}
"#;
    fs::write(router_dir.join("devices.yaml"), devices).expect("devices");

    let _print = listen_tcp(w.ns("prn1"), 9100).expect("listen 9100");
    let _ssh = listen_tcp(w.ns("prn1"), 22).expect("listen 22");
    let _web = listen_tcp(w.ns("pc1"), 8080).expect("listen 8080");
    let args = args_without_iface(
        &w,
        &["--policy".to_owned(), router_dir.display().to_string()],
    );
    let mut d = spawn_daemon(w.site.router_ns(), &args).expect("spawn daemon");
    d.wait_ready(w.site.router_ns(), addr(), Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("daemon not ready: {e:#}"));
    for iface in w.site.router_ifaces() {
        assert!(w.router_xdp_attached(&iface), "{iface} is not enforced");
    }
    assert!(
        tcp_connects(w.ns("pc1"), v4(&PRINTER), 9100, PROBE),
        "office -> printer tcp/9100 is allowed by the common rules"
    );
    assert!(
        !tcp_connects(w.ns("pc1"), v4(&PRINTER), 22, PROBE),
        "office -> printer tcp/22 is denied"
    );
    assert!(
        tcp_connects(w.ns("wan"), v4(&OFFICE_PC), 8080, PROBE),
        "the declared uplink's host is the internet, allowed to the office on 8080"
    );
    assert!(
        !d.output().contains("uplinks are guessed"),
        "no guessing with interfaces: listed:\n{}",
        d.output()
    );
    let (code, out, err) = w.cli(&["status", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).expect("status json");
    assert_eq!(
        st["sources"].as_array().map(Vec::len),
        Some(3),
        "every file of both directories: {st}"
    );

    // The second path is watched too: a rule added there is applied without a signal.
    let generation = w.metric("enforcer_policy_generation", &[]);
    let tmp = router_dir.join(".rules.yaml.tmp");
    let rule =
        "rules:\n  - {name: office-ssh, from: zone:office, to: zone:printers, allow: [tcp/22]}\n";
    fs::write(&tmp, rule).expect("write rule");
    fs::rename(&tmp, router_dir.join("rules.yaml")).expect("rename rule");
    w.wait_generation(generation + 1.0);
    assert!(
        tcp_connects(w.ns("pc1"), v4(&PRINTER), 22, PROBE),
        "the rule added in the router's directory allows tcp/22"
    );
    d.stop(Duration::from_secs(5));
}

/// `--iface` together with a policy that lists `interfaces:` is a usage error (exit 2), said
/// before anything is attached or pinned.
#[test]
fn iface_with_an_interfaces_key_is_refused_before_anything_is_attached() {
    if !require_root("iface_with_an_interfaces_key_is_refused_before_anything_is_attached") {
        return;
    }
    let w = World::new("ifx", &[OFFICE_PC, PRINTER]);
    let mut text = policy(9100);
    text.push_str("interfaces:\n");
    for iface in w.site.router_ifaces() {
        text.push_str(&format!("  {iface}: {{role: segment}}\n"));
    }
    w.write_policy(&text);
    let out = netns::nsenter_net(w.site.router_ns(), enforcer_bin())
        .args(w.args())
        .output()
        .expect("run the daemon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {stderr}");
    assert!(
        stderr.contains("--iface cannot be used with a policy that lists `interfaces:`"),
        "{stderr}"
    );
    assert!(stderr.contains("policy.yaml:"), "names where: {stderr}");
    for iface in w.site.router_ifaces() {
        assert!(!w.router_xdp_attached(&iface), "{iface} got a program");
    }
    assert!(
        enforcer::datapath::pinned_interfaces(&w.pin_dir).is_empty(),
        "links were pinned"
    );
}

// ----- A change that reverts by itself (`enforcer apply --confirm`, `enforcer confirm`) -------

/// A world's daemon driven through its control socket.
trait Control {
    /// `enforcer apply`/`confirm` against this world's daemon: (status, stdout, stderr).
    fn ctl(&self, args: &[&str]) -> (i32, String, String);
    /// A candidate policy directory beside the policy directory.
    fn candidate(&self, name: &str, text: &str) -> PathBuf;
    fn status_json(&self) -> serde_json::Value;
    /// Whether the metrics page has a sample of `name` (at any value).
    fn has_metric(&self, name: &str) -> bool;
}

impl Control for World {
    fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        let socket = self.control_socket.display().to_string();
        let mut all = args.to_vec();
        all.extend(["--control-socket", &socket]);
        enforcer_tests::world::run(&all)
    }

    fn candidate(&self, name: &str, text: &str) -> PathBuf {
        let dir = self.policy_dir.parent().expect("base").join(name);
        fs::create_dir_all(&dir).expect("candidate dir");
        fs::write(dir.join("policy.yaml"), text).expect("write candidate");
        dir
    }

    fn status_json(&self) -> serde_json::Value {
        let (code, out, err) = self.cli(&["status", "--output", "json"]);
        assert_eq!(code, 0, "status: {err}");
        serde_json::from_str(&out).expect("status json")
    }

    fn has_metric(&self, name: &str) -> bool {
        self.scrape().samples.iter().any(|s| s.metric == name)
    }
}

/// Kills the daemon's process group and waits until it is gone.
fn kill(d: &mut netns::Daemon) {
    netns::signal_group(d.id(), "KILL");
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "daemon survived SIGKILL");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `ok` holds, checking every 200 ms for `within`.
fn eventually(within: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if ok() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_confirmed_apply_reverts_on_time_with_the_daemon_killed_and_every_start_enforces_the_confirmed_policy()
 {
    let name = "a_confirmed_apply_reverts_on_time_with_the_daemon_killed_and_every_start_enforces_the_confirmed_policy";
    if !require_root(name) {
        return;
    }
    let w = World::new("cfk", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy(9100));
    let _l1 = listen_tcp(w.ns("prn1"), 9100).expect("listen 9100");
    let _l2 = listen_tcp(w.ns("prn1"), 631).expect("listen 631");
    let mut d = w.start();
    for m in [
        "enforcer_confirm_pending",
        "enforcer_confirm_deadline_seconds",
        "enforcer_confirm_reverts_total",
    ] {
        assert!(w.has_metric(m), "{m} is on the page from the start");
    }
    assert_eq!(w.metric("enforcer_confirm_pending", &[]), 0.0);

    // A broken candidate is refused with its diagnostics, and changes nothing.
    let broken = w.candidate(
        "broken",
        &policy(631).replace("allow: [tcp/631", "alow: [tcp/631"),
    );
    let (code, _, err) = w.ctl(&["apply", "--confirm", "5s", &broken.display().to_string()]);
    assert_eq!(code, 1, "a broken candidate: {err}");
    assert!(err.contains("policy.yaml:"), "names where: {err}");
    assert_eq!(w.metric("enforcer_confirm_pending", &[]), 0.0);

    let candidate = w.candidate("candidate", &policy(631));
    let (code, out, err) = w.ctl(&[
        "apply",
        "--confirm",
        "6s",
        "--output",
        "json",
        &candidate.display().to_string(),
    ]);
    assert_eq!(code, 0, "apply: {out}{err}");
    let answer: serde_json::Value = serde_json::from_str(&out).expect("apply json");
    assert!(answer["deadline"].is_string(), "{answer}");
    let applied_at = Instant::now();
    // A second candidate while one is pending is refused.
    let (code, _, err) = w.ctl(&["apply", "--confirm", "5s", &candidate.display().to_string()]);
    assert_eq!(code, 4, "a second apply: {err}");
    assert!(err.contains("pending"), "{err}");
    assert_eq!(w.metric("enforcer_confirm_pending", &[]), 1.0);
    assert!(w.metric("enforcer_confirm_deadline_seconds", &[]) > 0.0);
    let st = w.status_json();
    assert_eq!(st["pending"]["origin"], "apply", "{st}");
    assert!(st["pending"]["deadline"].is_string(), "{st}");
    assert!(
        tcp_connects(w.ns("pc1"), v4(&PRINTER), 631, PROBE),
        "the candidate enforces at once"
    );
    assert!(
        d.output().contains("enforcer::audit") && d.output().contains("action=\"apply\""),
        "the apply is in the audit trail:\n{}",
        d.output()
    );

    // The daemon dies right after the apply: the program reverts by itself at the deadline.
    kill(&mut d);
    assert!(
        tcp_connects(w.ns("pc1"), v4(&PRINTER), 631, PROBE),
        "still the candidate before the deadline"
    );
    let left = Duration::from_secs(6).saturating_sub(applied_at.elapsed());
    thread::sleep(left + Duration::from_millis(500));
    assert!(
        !tcp_connects(w.ns("pc1"), v4(&PRINTER), 631, PROBE),
        "denied again after the deadline, with no daemon"
    );
    assert!(
        tcp_connects(w.ns("pc1"), v4(&PRINTER), 9100, PROBE),
        "the confirmed policy's verdicts are back"
    );

    // A daemon started after the window enforces the last confirmed policy, nothing pending.
    let mut d2 = w.start();
    assert!(!tcp_connects(w.ns("pc1"), v4(&PRINTER), 631, PROBE));
    assert!(tcp_connects(w.ns("pc1"), v4(&PRINTER), 9100, PROBE));
    assert_eq!(w.metric("enforcer_confirm_pending", &[]), 0.0);
    assert!(w.status_json().get("pending").is_none());
    d2.stop(Duration::from_secs(5));

    // Pull-based: a file change under --confirm-window is provisional; a reboot (detach, then a
    // start from scratch) during its window starts from the last confirmed policy, and the files
    // that hold the candidate are a new provisional candidate with a fresh window.
    let mut d3 = w.start_with(&["--confirm-window", "6s"]);
    let generation = w.metric("enforcer_policy_generation", &[]);
    w.write_policy(&policy(631));
    w.wait_generation(generation + 1.0);
    assert_eq!(w.metric("enforcer_confirm_pending", &[]), 1.0);
    assert!(tcp_connects(w.ns("pc1"), v4(&PRINTER), 631, PROBE));
    kill(&mut d3);
    w.detach();
    let _d4 = w.start_with(&["--confirm-window", "4s"]);
    let started = Instant::now();
    let st = w.status_json();
    assert_eq!(st["pending"]["origin"], "start", "{st}");
    assert!(
        tcp_connects(w.ns("pc1"), v4(&PRINTER), 631, PROBE),
        "the files' candidate, provisionally"
    );
    assert!(
        eventually(Duration::from_secs(8), || w
            .metric("enforcer_confirm_reverts_total", &[])
            >= 1.0),
        "the candidate reverts at its deadline"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "not before its window"
    );
    assert_eq!(w.metric("enforcer_confirm_pending", &[]), 0.0);
    assert!(
        !tcp_connects(w.ns("pc1"), v4(&PRINTER), 631, PROBE),
        "the confirmed policy again"
    );
    assert!(tcp_connects(w.ns("pc1"), v4(&PRINTER), 9100, PROBE));
}

#[test]
fn confirm_keeps_an_applied_candidate_past_its_window() {
    if !require_root("confirm_keeps_an_applied_candidate_past_its_window") {
        return;
    }
    let w = World::new("cfm", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy(9100));
    let _l = listen_tcp(w.ns("prn1"), 631).expect("listen 631");
    let d = w.start();
    let (code, out, _) = w.ctl(&["confirm"]);
    assert_eq!(code, 4, "nothing to confirm: {out}");
    let candidate = w.candidate("candidate", &policy(631));
    let (code, out, err) = w.ctl(&["apply", "--confirm", "3s", &candidate.display().to_string()]);
    assert_eq!(code, 0, "apply: {out}{err}");
    let (code, out, err) = w.ctl(&["confirm", "--output", "json"]);
    assert_eq!(code, 0, "confirm: {out}{err}");
    let answer: serde_json::Value = serde_json::from_str(&out).expect("confirm json");
    assert!(answer["generation"].is_u64(), "{answer}");
    assert!(
        d.output().contains("action=\"confirm\""),
        "the confirm is in the audit trail:\n{}",
        d.output()
    );
    thread::sleep(Duration::from_secs(4));
    assert!(
        tcp_connects(w.ns("pc1"), v4(&PRINTER), 631, PROBE),
        "kept past the window"
    );
    assert_eq!(w.metric("enforcer_confirm_pending", &[]), 0.0);
    assert_eq!(w.metric("enforcer_confirm_reverts_total", &[]), 0.0);
    assert!(w.status_json().get("pending").is_none());
}

// ---------------------------------------------------------------------------------------------
// Interfaces that come and go (issue 15: netlink, not only at reload)

/// [`POLICY`] with its `interfaces:` listing every router-side interface of `w` as a segment, and
/// `rule` added first to its rules.
fn policy_listing(w: &World, rule: &str) -> String {
    policy_with_interfaces(rule, &w.site.router_ifaces())
}

/// [`POLICY`] with `rule` added first to its rules and `interfaces:` listing `ifaces` as segments.
fn policy_with_interfaces(rule: &str, ifaces: &[String]) -> String {
    let mut text = policy(9100).replace("rules:\n", &format!("rules:\n{rule}"));
    text.push_str("interfaces:\n");
    for iface in ifaces {
        text.push_str(&format!("  {iface}: {{role: segment}}\n"));
    }
    text
}

/// Starts the daemon on the policy's `interfaces:` (no `--iface`) and waits until it serves.
fn start_listed(w: &World) -> netns::Daemon {
    let mut d =
        spawn_daemon(w.site.router_ns(), &args_without_iface(w, &[])).expect("spawn daemon");
    d.wait_ready(w.site.router_ns(), addr(), Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{}: daemon not ready: {e:#}", w.name));
    d
}

/// Waits until `iface` in the router namespace has (`true`) or has not an XDP program.
fn wait_xdp(w: &World, d: &netns::Daemon, iface: &str, attached: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.router_xdp_attached(iface) != attached {
        assert!(
            Instant::now() < deadline,
            "{iface}: XDP attached should be {attached}; daemon output:\n{}",
            d.output()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The status record's `absent_interfaces`.
fn absent_interfaces(w: &World) -> Vec<String> {
    let (code, out, err) = w.cli(&["status", "--output", "json"]);
    assert_eq!(code, 0, "status: {err}");
    let st: serde_json::Value = serde_json::from_str(&out).expect("status json");
    st["absent_interfaces"]
        .as_array()
        .expect("absent_interfaces")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// The rule that lets the printers reach the router on tcp/2223 (and nothing else).
const PRINTER_ROUTER: &str =
    "  - {name: printer-router, from: zone:printers, to: router, allow: [tcp/2223]}\n";

/// The printer's interface enforces, with its address the router's: the office reaches the
/// printer on tcp/9100 (the reply crosses the printer's interface through its flow), the printer
/// reaches the router's address on its segment on tcp/2223 (allowed `to: router`), and not on
/// tcp/2222: a packet to the router itself is judged only at the interface it arrives on (the
/// router's replies always pass), so that deny is the printer's interface enforcing.
/// The router namespace must listen on 2222 and 2223, the printer on 9100.
fn assert_printer_interface_enforces(w: &World, d: &netns::Daemon, when: &str) {
    let router = IpAddr::V4(PRINTER.router_v4);
    assert!(
        eventually(Duration::from_secs(10), || tcp_connects(
            w.ns("pc1"),
            v4(&PRINTER),
            9100,
            PROBE
        )),
        "{when}: office -> printer tcp/9100 is allowed; daemon output:\n{}",
        d.output()
    );
    assert!(
        eventually(Duration::from_secs(10), || tcp_connects(
            w.ns("prn1"),
            router,
            2223,
            PROBE
        )),
        "{when}: printer -> router tcp/2223 is allowed; daemon output:\n{}",
        d.output()
    );
    assert!(
        !tcp_connects(w.ns("prn1"), router, 2222, PROBE),
        "{when}: printer -> router tcp/2222 is denied at the printer's interface; daemon output:\n{}",
        d.output()
    );
}

/// Listeners in the router namespace for [`assert_printer_interface_enforces`].
fn router_listeners(w: &World) -> [netns::Proc; 2] {
    [2222, 2223].map(|p| listen_tcp(w.site.router_ns(), p).expect("listen on the router"))
}

/// A listed interface that does not exist when the daemon starts does not stop it: `status`
/// shows it absent, and it is attached, and enforces, as soon as it is created.
#[test]
fn a_listed_interface_absent_at_start_is_attached_when_it_appears() {
    if !require_root("a_listed_interface_absent_at_start_is_attached_when_it_appears") {
        return;
    }
    let w = World::new("late", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy_listing(&w, PRINTER_ROUTER));
    let _router = router_listeners(&w);
    w.site
        .unwire(PRINTER.name)
        .expect("remove the printer's link");
    let mut d = start_listed(&w);
    assert_eq!(absent_interfaces(&w), ["r-prn1"]);
    let (_, text, _) = w.cli(&["status"]);
    assert!(
        text.contains("r-prn1 (listed, absent: attached when it appears)"),
        "{text}"
    );

    w.site
        .rewire(PRINTER.name)
        .expect("create the printer's link");
    let _print = listen_tcp(w.ns("prn1"), 9100).expect("listen 9100");
    wait_xdp(&w, &d, "r-prn1", true);
    assert_printer_interface_enforces(&w, &d, "after the interface appeared");
    assert!(absent_interfaces(&w).is_empty());
    assert!(
        enforcer::datapath::pinned_interfaces(&w.pin_dir).contains(&"r-prn1".to_owned()),
        "its link is pinned"
    );
    let log = d.output();
    assert!(
        log.contains("listed interface appeared") && log.contains("r-prn1"),
        "{log}"
    );
    d.stop(Duration::from_secs(5));
}

/// An enforced interface deleted and created again (a new device under the same name) is
/// attached again: its stale pinned links are dropped, new ones made, and a denied flow is
/// denied again while an allowed one passes.
#[test]
fn a_deleted_and_recreated_interface_is_attached_again() {
    if !require_root("a_deleted_and_recreated_interface_is_attached_again") {
        return;
    }
    let w = World::new("recr", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy_listing(&w, PRINTER_ROUTER));
    let _router = router_listeners(&w);
    let mut d = start_listed(&w);
    {
        let _print = listen_tcp(w.ns("prn1"), 9100).expect("listen 9100");
        assert_printer_interface_enforces(&w, &d, "at start");
    }

    w.site
        .unwire(PRINTER.name)
        .expect("delete the printer's link");
    let deadline = Instant::now() + Duration::from_secs(10);
    while absent_interfaces(&w) != ["r-prn1"] {
        assert!(
            Instant::now() < deadline,
            "the deleted interface is not shown absent; daemon output:\n{}",
            d.output()
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !enforcer::datapath::pinned_interfaces(&w.pin_dir).contains(&"r-prn1".to_owned()),
        "the dead link's pin is dropped"
    );

    w.site
        .rewire(PRINTER.name)
        .expect("create the printer's link again");
    wait_xdp(&w, &d, "r-prn1", true);
    let _print = listen_tcp(w.ns("prn1"), 9100).expect("listen 9100");
    assert_printer_interface_enforces(&w, &d, "after it was re-created");
    let log = d.output();
    assert!(log.contains("enforced interface deleted"), "{log}");
    assert!(log.contains("listed interface appeared"), "{log}");
    d.stop(Duration::from_secs(5));
}

/// A reload that changes `interfaces:` takes effect without a restart: an interface added is
/// attached, with its addresses the router's, and enforces; one removed is detached and unpinned.
#[test]
fn a_reload_that_changes_interfaces_attaches_the_new_and_detaches_the_removed() {
    if !require_root("a_reload_that_changes_interfaces_attaches_the_new_and_detaches_the_removed") {
        return;
    }
    let w = World::new("relist", &[OFFICE_PC, PRINTER]);
    let (pc, prn) = ("r-pc1".to_owned(), "r-prn1".to_owned());
    w.write_policy(&policy_with_interfaces(
        PRINTER_ROUTER,
        std::slice::from_ref(&pc),
    ));
    let _router = router_listeners(&w);
    let _print = listen_tcp(w.ns("prn1"), 9100).expect("listen 9100");
    let mut d = start_listed(&w);
    assert!(w.router_xdp_attached(&pc));
    assert!(!w.router_xdp_attached(&prn), "not listed yet");

    let generation = w.metric("enforcer_policy_generation", &[]);
    w.write_policy(&policy_with_interfaces(
        PRINTER_ROUTER,
        &[pc.clone(), prn.clone()],
    ));
    w.wait_generation(generation + 1.0);
    wait_xdp(&w, &d, &prn, true);
    assert_printer_interface_enforces(&w, &d, "after the reload listed it");

    w.write_policy(&policy_with_interfaces(
        PRINTER_ROUTER,
        std::slice::from_ref(&prn),
    ));
    w.wait_generation(generation + 2.0);
    wait_xdp(&w, &d, &pc, false);
    assert!(
        !enforcer::datapath::pinned_interfaces(&w.pin_dir).contains(&pc),
        "the interface no longer listed is unpinned"
    );
    assert!(w.router_xdp_attached(&prn), "the one still listed stays");
    let log = d.output();
    assert!(log.contains("no longer listed"), "{log}");
    assert!(!log.contains("until the daemon restarts"), "{log}");
    d.stop(Duration::from_secs(5));
}

/// An address added to an enforced interface is the router's at once, without a reload: the
/// policy is compiled again with it (a rule `to: router` then covers it).
#[test]
fn an_address_added_to_the_router_is_picked_up_without_a_reload() {
    if !require_root("an_address_added_to_the_router_is_picked_up_without_a_reload") {
        return;
    }
    let w = World::new("addr", &[OFFICE_PC, PRINTER]);
    w.write_policy(&policy_listing(
        &w,
        "  - {name: office-router, from: zone:office, to: router, allow: [tcp/2222]}\n",
    ));
    let _ssh = listen_tcp(w.site.router_ns(), 2222).expect("listen on the router");
    let mut d = start_listed(&w);
    let generation = w.metric("enforcer_policy_generation", &[]);
    let reloads = w.metric("enforcer_policy_reloads_total", &[("result", "success")]);
    // In the office's segment and unlisted: an unknown device's address, until the router has it.
    let extra: IpAddr = "10.1.3.2".parse().expect("literal");
    netns::run(Command::new("ip").args([
        "-n",
        w.site.router_ns(),
        "addr",
        "add",
        "10.1.3.2/24",
        "dev",
        "r-pc1",
    ]))
    .expect("add an address");
    w.wait_generation(generation + 1.0);
    assert!(
        tcp_connects(w.ns("pc1"), extra, 2222, PROBE),
        "the new address is the router's: office -> router tcp/2222 is allowed; daemon output:\n{}",
        d.output()
    );
    let log = d.output();
    assert!(
        log.contains("addresses changed") && log.contains("10.1.3.2/24"),
        "{log}"
    );
    assert!(
        w.metric("enforcer_policy_reloads_total", &[("result", "success")]) > reloads,
        "counted as a reload"
    );
    d.stop(Duration::from_secs(5));
}

// ---------------------------------------------------------------------------------------------
// `enforcer plan` against the running daemon (issue 14)

/// `enforcer plan PATH --output json` with this world's state directory: the report.
fn plan_json(w: &World, path: &std::path::Path) -> serde_json::Value {
    let out = Command::new(enforcer_bin())
        .args(["plan", "--output", "json", "--state-dir"])
        .arg(&w.state_dir)
        .arg(path)
        .output()
        .expect("run plan");
    assert_eq!(
        out.status.code(),
        Some(0),
        "plan: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("plan json")
}

/// The names a plan's changes list for `what` ("rules", "devices", ...), as "+name", "-name" and
/// "~name".
fn planned(report: &serde_json::Value, what: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (key, sign) in [("added", "+"), ("removed", "-"), ("changed", "~")] {
        for n in report["changes"][what][key].as_array().expect(key) {
            out.push(format!("{sign}{}", n.as_str().unwrap_or_default()));
        }
    }
    out
}

/// `plan` of the exact policy the daemon runs reports no change (it compiles with the daemon's
/// host context and ids), and a one-rule edit reports exactly that rule.
#[test]
fn plan_of_the_running_policy_reports_no_change_and_an_edit_only_its_rule() {
    if !require_root("plan_of_the_running_policy_reports_no_change_and_an_edit_only_its_rule") {
        return;
    }
    let w = World::new("plan", &[OFFICE_PC, PRINTER, WAN]);
    // Rules added over time, so the daemon's ids are not the ones a fresh compile hands out.
    w.write_policy(&policy(9100).replace(
        "rules:\n",
        "rules:\n  - {name: zz-office-ping, from: zone:office, to: router, allow: [icmp]}\n",
    ));
    let d = w.start();
    let generation = w.metric("enforcer_policy_generation", &[]);
    let running = policy(9100).replace(
        "rules:\n",
        "rules:\n  - {name: zz-office-ping, from: zone:office, to: router, allow: [icmp]}\n  - {name: a-printer-dns, from: zone:printers, to: router, allow: [udp/53]}\n",
    );
    w.write_policy(&running);
    w.wait_generation(generation + 1.0);

    let same = plan_json(&w, &w.policy_dir);
    assert_eq!(same["host"]["from"], "daemon", "{same}");
    assert!(
        same["host"]["addresses"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some("r-pc1 10.1.3.1/24"))),
        "{same}"
    );
    for what in ["zones", "networks", "devices", "rules"] {
        assert!(planned(&same, what).is_empty(), "{what}: {same}");
    }
    assert_eq!(same["changes"]["maps"], serde_json::json!({}), "{same}");
    assert_eq!(same["changes"]["settings"], serde_json::json!([]), "{same}");
    let text = Command::new(enforcer_bin())
        .args(["plan", "--state-dir"])
        .arg(&w.state_dir)
        .arg(&w.policy_dir)
        .output()
        .expect("plan");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("changes: none (same policy as applied)"),
        "{text}"
    );
    assert!(
        text.contains("host context: the running daemon's"),
        "{text}"
    );

    // One rule edited, in a copy the daemon does not watch.
    let candidate = w.policy_dir.parent().expect("base").join("candidate");
    fs::create_dir_all(&candidate).expect("candidate dir");
    fs::write(
        candidate.join("policy.yaml"),
        running.replace(
            "allow: [tcp/9100, icmp]",
            "allow: [tcp/9100, tcp/631, icmp]",
        ),
    )
    .expect("candidate");
    let edit = plan_json(&w, &candidate);
    assert_eq!(planned(&edit, "rules"), ["~office-print"], "{edit}");
    for what in ["zones", "networks", "devices"] {
        assert!(planned(&edit, what).is_empty(), "{what}: {edit}");
    }
    assert_eq!(
        edit["changes"]["maps"],
        serde_json::json!({"PORTS": 1}),
        "{edit}"
    );
    drop(d);

    // No daemon: said plainly.
    let none = plan_json(&w, &w.policy_dir);
    assert_eq!(none["host"]["from"], "none", "{none}");
    assert!(
        none["host"]["note"]
            .as_str()
            .is_some_and(|n| n.contains("compiled without host context")),
        "{none}"
    );
}
