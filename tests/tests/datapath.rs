//! Table-driven `BPF_PROG_TEST_RUN` tests of the XDP datapath (issue 4).
//!
//! Each case is one behaviour, named after it: a policy (YAML, compiled by the real compiler and
//! written by the real `Datapath::apply`), a sequence of frames with the XDP action each must get,
//! and the counters that prove *why* (device packets by verdict, rule hits, global counters).
//! Every run also checks that the program never returns `XDP_ABORTED` and never rewrites a frame.
//!
//! Every case loads its own unpinned `Datapath`, so no map state leaks between cases; they can run
//! in parallel, but the machine is small, so run them with
//! `cargo test -p enforcer-tests --test datapath -- --test-threads=1`.
//! Needs root (CAP_BPF, CAP_NET_ADMIN); without it each case says so and skips (fails under CI=true).

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly, with what it expected as the message"
)]

// Dependencies of the test crate that this test binary does not use itself.
use anyhow as _;
use aya as _;
use enforcer::{
    datapath::{self, Datapath, DeviceCounters, RuleCounters},
    policy::CompiledPolicy,
};
use enforcer_common::{
    DEFAULT_RULE, UNKNOWN_DEVICE, Verdict,
    state::{DeviceState, DiscoveredDevice, QuarantineReason},
    stats::Counter,
};
use enforcer_tests::{
    frame::{Frame, mac},
    kernel::{compile_site_with_ids, require_root},
};

const DROP: u32 = 1;
const PASS: u32 = 2;

// ---------------------------------------------------------------------------------------------
// The fixture: the demo site of `policies/`, with IPv6 for every device and the router's own
// addresses given to the compiler.
// ---------------------------------------------------------------------------------------------

const CAM1_MAC: &str = "02:00:00:00:01:10";
const CAM2_MAC: &str = "02:00:00:00:01:11";
const NVR_MAC: &str = "02:00:00:00:02:10";
const OFFICE_MAC: &str = "02:00:00:00:03:10";
const PRINTER_MAC: &str = "02:00:00:00:04:10";
const FISHTANK_MAC: &str = "02:00:00:00:05:10";
const HVAC_MAC: &str = "02:00:00:00:05:11";
/// A MAC no policy lists.
const STRANGER_MAC: &str = "02:00:00:00:99:99";
/// The upstream router, through which the internet's packets arrive.
const ROUTER_MAC_UPSTREAM: &str = "02:00:00:00:0f:01";

const CAM1: &str = "10.1.1.10";
const CAM1_6: &str = "fd00:1:1::10";
const CAM2: &str = "10.1.1.11";
const CAM2_6: &str = "fd00:1:1::11";
const NVR: &str = "10.1.2.10";
const NVR_6: &str = "fd00:1:2::10";
const OFFICE: &str = "10.1.3.10";
const OFFICE_6: &str = "fd00:1:3::10";
const PRINTER: &str = "10.1.4.10";
const PRINTER_6: &str = "fd00:1:4::10";
const FISHTANK: &str = "10.1.5.10";
const FISHTANK_6: &str = "fd00:1:5::10";
const HVAC: &str = "10.1.5.11";
const HVAC_6: &str = "fd00:1:5::11";
/// Somewhere on the internet.
const WEB: &str = "93.184.216.34";
const WEB_6: &str = "2606:2800:220:1::1";
/// The router's own addresses.
const ROUTER_CAMS: &str = "10.1.1.1";
const ROUTER_OFFICE: &str = "10.1.3.1";
const ROUTER_CAMS_6: &str = "fd00:1:1::1";
const ROUTER_ADDRS: &[&str] = &[
    "10.1.1.1",
    "10.1.2.1",
    "10.1.3.1",
    "10.1.4.1",
    "10.1.5.1",
    "fd00:1:1::1",
    "fd00:1:3::1",
];

const FIXTURE: &str = r#"
zones:
  cameras: {description: "IP cameras"}
  recorders: {description: "video recorders"}
  office: {description: "workstations"}
  printers: {description: "printers"}
  building: {description: "building automation"}
  guests: {description: "guest Wi-Fi"}
  quarantine: {description: "unknown or isolated devices"}
networks:
  internet: ["0.0.0.0/0", "::/0"]
  honeypot: ["10.1.99.0/24", "fd00:99::/64"]
devices:
  cam-1: {zone: cameras, mac: "02:00:00:00:01:10", addresses: ["10.1.1.10", "fd00:1:1::10"]}
  cam-2: {zone: cameras, mac: "02:00:00:00:01:11", addresses: ["10.1.1.11", "fd00:1:1::11"]}
  nvr-1: {zone: recorders, mac: "02:00:00:00:02:10", addresses: ["10.1.2.10", "fd00:1:2::10"]}
  office-pc: {zone: office, mac: "02:00:00:00:03:10", addresses: ["10.1.3.10", "fd00:1:3::10"]}
  printer-1: {zone: printers, mac: "02:00:00:00:04:10", addresses: ["10.1.4.10", "fd00:1:4::10"]}
  fishtank: {zone: building, mac: "02:00:00:00:05:10", addresses: ["10.1.5.10", "fd00:1:5::10"]}
  hvac-1: {zone: building, mac: "02:00:00:00:05:11", addresses: ["10.1.5.11", "fd00:1:5::11"]}
rules:
  - name: cams-stream
    from: zone:cameras
    to: zone:recorders
    allow: [tcp/554, tcp/8000-8010]
  - name: nvr-pull
    from: zone:recorders
    to: zone:cameras
    allow: [tcp/554, icmp]
  - name: office-print
    from: zone:office
    to: zone:printers
    allow: [tcp/9100, tcp/631, icmp]
  - name: office-internet
    from: zone:office
    to: network:internet
    allow: [tcp/80, tcp/443, udp/53, icmp]
  - name: office-admin
    from: zone:office
    to: router
    allow: [tcp/22, icmp]
  - name: building-cloud
    from: zone:building
    to: network:internet
    allow: [tcp/443]
  - name: fishtank-no-egress
    from: device:fishtank
    to: network:internet
    deny: [any]
  - name: dhcp-dns
    from: any
    to: router
    allow: [udp/67, udp/547, udp/53, tcp/53]
  - name: no-lateral-cameras
    from: zone:cameras
    to: zone:office
    deny: [any]
defaults:
  action: deny
  mode: enforce
  unknown: quarantine
  spoofed: deny
quarantine:
  zone: quarantine
  when:
    denied_packets: {count: 50, within: 10s}
    spoofing: true
    touches: [network:honeypot]
  release_after: 1h
"#;

/// The fixture with the printers' zone in audit (`mode:` per zone).
fn printers_audit_fixture() -> String {
    FIXTURE.replace(
        "printers: {description: \"printers\"}",
        "printers: {description: \"printers\", mode: audit}",
    )
}

/// The fixture in audit mode.
fn audit_fixture() -> String {
    FIXTURE.replace("mode: enforce", "mode: audit")
}

/// The fixture with `defaults.spoofed: allow` and no quarantine on spoofing.
fn spoof_allow_fixture() -> String {
    FIXTURE
        .replace("spoofed: deny", "spoofed: allow")
        .replace("spoofing: true", "spoofing: false")
}

/// The fixture without the rule that lets everyone reach DHCP and DNS on the router.
fn no_dhcp_fixture() -> String {
    FIXTURE.replace(
        "allow: [udp/67, udp/547, udp/53, tcp/53]",
        "allow: [udp/53, tcp/53]",
    )
}

/// The fixture with a low denied-packet trigger (3 within 10 s).
fn quick_quarantine_fixture() -> String {
    FIXTURE.replace("count: 50", "count: 3")
}

/// The fixture where cameras may send anything (`any`) to the recorders.
fn any_service_fixture() -> String {
    FIXTURE.replace("allow: [tcp/554, tcp/8000-8010]", "allow: [any]")
}

/// A site without a catch-all network, so an unlisted address resolves to nothing (the unknown zone).
const LAN_ONLY: &str = r#"
zones:
  cameras: {}
  recorders: {}
  quarantine: {}
devices:
  cam-1: {zone: cameras, mac: "02:00:00:00:01:10", addresses: ["10.1.1.10", "fd00:1:1::10"]}
  nvr-1: {zone: recorders, mac: "02:00:00:00:02:10", addresses: ["10.1.2.10", "fd00:1:2::10"]}
rules:
  - name: cams-stream
    from: zone:cameras
    to: zone:recorders
    allow: [tcp/554]
  - name: dhcp-dns
    from: any
    to: router
    allow: [udp/67]
defaults:
  unknown: quarantine
"#;

/// Policy switch: P1 allows the stream; P2 still allows it (plus an unrelated rule); P3 drops it.
const SWITCH_P1: &str = r#"
zones:
  cameras: {}
  recorders: {}
  quarantine: {}
devices:
  cam-1: {zone: cameras, mac: "02:00:00:00:01:10", addresses: ["10.1.1.10", "fd00:1:1::10"]}
  nvr-1: {zone: recorders, mac: "02:00:00:00:02:10", addresses: ["10.1.2.10", "fd00:1:2::10"]}
rules:
  - name: cams-stream
    from: zone:cameras
    to: zone:recorders
    allow: [tcp/554]
defaults:
  unknown: quarantine
"#;

fn switch_p2() -> String {
    SWITCH_P1.replace(
        "defaults:",
        "  - name: nvr-ping\n    from: zone:recorders\n    to: zone:cameras\n    allow: [icmp]\ndefaults:",
    )
}

fn switch_p3() -> String {
    SWITCH_P1.replace("allow: [tcp/554]", "allow: [tcp/8000]")
}

// ---------------------------------------------------------------------------------------------
// The harness.
// ---------------------------------------------------------------------------------------------

fn compile_yaml(yaml: &str) -> CompiledPolicy {
    compile_yaml_with_ids(yaml, None)
}

/// As [`compile_yaml`], with the ids of a policy in force kept (as the daemon compiles).
fn compile_yaml_with_ids(
    yaml: &str,
    previous_ids: Option<enforcer::policy::IdTable>,
) -> CompiledPolicy {
    compile_site_with_ids("test.yaml", yaml, ROUTER_ADDRS, previous_ids)
}

/// Anything that becomes frame bytes.
trait Wire {
    fn wire(&self) -> Vec<u8>;
}

impl Wire for Frame {
    fn wire(&self) -> Vec<u8> {
        self.build()
    }
}

impl Wire for Vec<u8> {
    fn wire(&self) -> Vec<u8> {
        self.clone()
    }
}

/// How a row starts: the program loaded and a policy applied, or loaded with none (the policy then
/// only names the ids the row's checks use).
enum Setup {
    Applied(String),
    Unapplied(String),
}

impl From<&str> for Setup {
    fn from(yaml: &str) -> Self {
        Self::Applied(yaml.to_owned())
    }
}

impl From<String> for Setup {
    fn from(yaml: String) -> Self {
        Self::Applied(yaml)
    }
}

/// The program loaded with no policy applied; `yaml` names the devices and rules for the checks.
fn no_policy_yet(yaml: &str) -> Setup {
    Setup::Unapplied(yaml.to_owned())
}

/// One counter a row can name, as the snapshot labels it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Count {
    /// A global [`Counter`].
    Global(&'static str),
    /// Packets a rule decided, by rule name (`default` for the default verdict).
    Rule(String),
    /// Packets a device (a name, `unknown` or `network:NAME`) sent, by verdict index.
    Device(String, usize),
    /// Spoofed packets a device sent.
    Spoofed(String),
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Global(c) => write!(f, "counter `{c}`"),
            Self::Rule(r) => write!(f, "rule(\"{r}\")"),
            Self::Device(d, v) => {
                let verdict = ["allowed", "denied", "audited"][*v];
                write!(f, "{verdict}(\"{d}\")")
            }
            Self::Spoofed(d) => write!(f, "spoofed(\"{d}\")"),
        }
    }
}

/// Why a frame got its action: the counters that must each move by exactly one on that frame.
#[derive(Clone, Debug)]
struct Proof(Vec<Count>);

impl From<Counter> for Proof {
    fn from(c: Counter) -> Self {
        Self(vec![Count::Global(c.as_str())])
    }
}

/// Both proofs: `rule("default") & Counter::EventsSent`.
impl<T: Into<Proof>> std::ops::BitAnd<T> for Proof {
    type Output = Proof;

    fn bitand(mut self, other: T) -> Proof {
        self.0.extend(other.into().0);
        self
    }
}

/// The rule that decided (a new flow judged by the rules; `default` for the default verdict).
fn rule(name: &str) -> Proof {
    Proof(vec![Count::Rule(name.to_owned())])
}

/// The device's packets counted as allowed.
fn allowed(device: &str) -> Proof {
    Proof(vec![Count::Device(
        device.to_owned(),
        Verdict::Allow as usize,
    )])
}

/// The device's packets counted as denied (judged and dropped, whichever the reason).
fn denied(device: &str) -> Proof {
    Proof(vec![Count::Device(
        device.to_owned(),
        Verdict::Deny as usize,
    )])
}

/// The device's packets counted as audited (a would-be drop passed in audit mode).
fn audited(device: &str) -> Proof {
    Proof(vec![Count::Device(
        device.to_owned(),
        Verdict::Audit as usize,
    )])
}

/// The device's packets judged spoofed.
fn spoofed(device: &str) -> Proof {
    Proof(vec![Count::Spoofed(device.to_owned())])
}

/// Every counter a row can name, read at one moment.
type Snapshot = std::collections::BTreeMap<Count, u64>;

/// A freshly loaded datapath with (optionally) a policy applied.
struct Harness {
    name: &'static str,
    dp: Datapath,
    compiled: CompiledPolicy,
    generation: u64,
    step: usize,
}

impl Harness {
    /// Loads the program and sets it up; `None` when the test must skip (not root).
    fn new(name: &'static str, setup: Setup) -> Option<Self> {
        Self::with_flows(name, setup, enforcer_common::flow::DEFAULT_FLOWS)
    }

    /// As [`Harness::new`], with a flow table of `flows` entries (`limits.flows`).
    fn with_flows(name: &'static str, setup: Setup, flows: u32) -> Option<Self> {
        if !require_root(name) {
            return None;
        }
        let dp = Datapath::load_with_flows(None, flows)
            .unwrap_or_else(|e| panic!("{name}: load: {e:?}"));
        let (yaml, apply) = match setup {
            Setup::Applied(yaml) => (yaml, true),
            Setup::Unapplied(yaml) => (yaml, false),
        };
        let mut h = Self {
            name,
            dp,
            compiled: compile_yaml(&yaml),
            generation: 0,
            step: 0,
        };
        if apply {
            h.apply(&yaml);
        }
        Some(h)
    }

    /// As if `secs` had passed since every remembered flow's last packet.
    fn age(&mut self, secs: u64) {
        let name = self.name;
        self.dp
            .age_flows(secs * 1_000_000_000)
            .unwrap_or_else(|e| panic!("{name}: age the flows: {e:?}"));
    }

    fn apply(&mut self, yaml: &str) {
        self.step += 1;
        self.compiled = compile_yaml(yaml);
        self.generation += 1;
        let name = self.name;
        let step = self.step;
        self.dp
            .apply(&self.compiled, self.generation)
            .unwrap_or_else(|e| panic!("{name}: step {step} (apply): {e:?}"));
    }

    /// Runs one frame; checks it is neither aborted nor rewritten; returns the action.
    fn send(&mut self, what: &str, frame: &impl Wire) -> u32 {
        let bytes = frame.wire();
        let (action, out) = self.dp.test_run(&bytes).unwrap_or_else(|e| {
            panic!(
                "{}: step {} ({what}): test_run: {e:?}",
                self.name, self.step
            )
        });
        assert_ne!(
            action, 0,
            "{}: step {} ({what}): XDP_ABORTED",
            self.name, self.step
        );
        assert_eq!(
            out, bytes,
            "{}: step {} ({what}): the program rewrote the frame",
            self.name, self.step
        );
        action
    }

    /// Runs one frame and checks its action and its reason: every counter `why` names moves by
    /// exactly one, and no malformed-frame counter moves unless `why` names it.
    fn expect(&mut self, what: &str, frame: &impl Wire, want: u32, why: &Proof) {
        self.step += 1;
        let before = self.snapshot();
        let got = self.send(what, frame);
        let after = self.snapshot();
        let moved: Vec<String> = after
            .iter()
            .filter_map(|(k, v)| {
                let was = before.get(k).copied().unwrap_or(0);
                (*v != was).then(|| format!("{k} +{}", v.wrapping_sub(was)))
            })
            .collect();
        assert!(
            !why.0.is_empty(),
            "{}: step {} ({what}): names no counter",
            self.name,
            self.step
        );
        let action = |a| match a {
            1 => "DROP",
            2 => "PASS",
            _ => "other",
        };
        let at = format!(
            "{}: step {} ({what}): {} by {}; moved: [{}]",
            self.name,
            self.step,
            action(want),
            why.0
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" & "),
            moved.join(", ")
        );
        assert_eq!(got, want, "{at}: got {}", action(got));
        for m in Counter::MALFORMED {
            let c = Count::Global(m.as_str());
            assert!(
                after.get(&c) == before.get(&c) || why.0.contains(&c),
                "{at}: the malformed counter `{}` moved and the row does not name it",
                m.as_str()
            );
        }
        for c in &why.0 {
            let delta = after
                .get(c)
                .copied()
                .unwrap_or_else(|| panic!("{at}: no such counter {c}"))
                .wrapping_sub(before.get(c).copied().unwrap_or(0));
            assert_eq!(delta, 1, "{at}: {c} moved by {delta}, not 1");
        }
    }

    /// Every global counter, every rule and every device (and network) of the current policy.
    fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::new();
        let globals = datapath::counters(&self.dp).expect("counters");
        for c in Counter::ALL {
            s.insert(Count::Global(c.as_str()), globals.get(*c));
        }
        let ids = &self.compiled.ids;
        let rules: Vec<(String, u32)> = std::iter::once(("default".to_owned(), DEFAULT_RULE))
            .chain(ids.rules.iter().map(|(n, id)| (n.clone(), *id)))
            .collect();
        let counted = datapath::rule_counters(&self.dp, rules.iter().map(|(_, id)| *id))
            .expect("rule counters");
        for ((name, _), (_, c)) in rules.iter().zip(counted) {
            s.insert(Count::Rule(name.clone()), c.packets);
        }
        let devices: Vec<(String, u32)> = std::iter::once(("unknown".to_owned(), UNKNOWN_DEVICE))
            .chain(ids.devices.iter().map(|(n, id)| (n.clone(), *id)))
            .chain(
                ids.networks
                    .iter()
                    .map(|(n, id)| (format!("network:{n}"), enforcer_common::network_device(*id))),
            )
            .collect();
        let counted = datapath::device_counters(&self.dp, devices.iter().map(|(_, id)| *id))
            .expect("device counters");
        for ((name, _), (_, c)) in devices.iter().zip(counted) {
            for (verdict, packets) in c.packets.iter().enumerate() {
                s.insert(Count::Device(name.clone(), verdict), *packets);
            }
            s.insert(Count::Spoofed(name.clone()), c.spoofed);
        }
        s
    }

    fn counter(&self, c: Counter) -> u64 {
        datapath::counters(&self.dp).expect("counters").get(c)
    }

    fn assert_counter(&self, c: Counter, want: u64) {
        assert_eq!(
            self.counter(c),
            want,
            "{}: global counter `{}`",
            self.name,
            c.as_str()
        );
    }

    fn malformed(&self) -> u64 {
        datapath::counters(&self.dp).expect("counters").malformed()
    }

    fn rule_id(&self, rule: &str) -> u32 {
        if rule == "default" {
            return DEFAULT_RULE;
        }
        *self
            .compiled
            .ids
            .rules
            .get(rule)
            .unwrap_or_else(|| panic!("{}: no rule `{rule}`", self.name))
    }

    /// The ids of the current policy's rules (without the default verdict).
    fn rule_ids(&self) -> Vec<u32> {
        self.compiled.ids.rules.values().copied().collect()
    }

    fn rule_counters(&self, rule: &str) -> RuleCounters {
        let id = self.rule_id(rule);
        datapath::rule_counters(&self.dp, [id]).expect("rule counters")[0].1
    }

    fn assert_rule(&self, rule: &str, want: u64) {
        assert_eq!(
            self.rule_counters(rule).packets,
            want,
            "{}: packets counted for rule `{rule}`",
            self.name
        );
    }

    /// A listed device by name, `unknown`, or a network's row as `network:NAME`.
    fn device_id(&self, device: &str) -> u32 {
        if device == "unknown" {
            return UNKNOWN_DEVICE;
        }
        if let Some(net) = device.strip_prefix("network:") {
            let id = *self
                .compiled
                .ids
                .networks
                .get(net)
                .unwrap_or_else(|| panic!("{}: no network `{net}`", self.name));
            return enforcer_common::network_device(id);
        }
        *self
            .compiled
            .ids
            .devices
            .get(device)
            .unwrap_or_else(|| panic!("{}: no device `{device}`", self.name))
    }

    fn device(&self, device: &str) -> DeviceCounters {
        let id = self.device_id(device);
        datapath::device_counters(&self.dp, [id]).expect("device counters")[0].1
    }

    /// Asserts a device's packets by verdict: `[allow, deny, audit]`.
    fn assert_device(&self, device: &str, packets: [u64; 3]) {
        assert_eq!(
            self.device(device).packets,
            packets,
            "{}: packets of `{device}` [allow, deny, audit]",
            self.name
        );
    }

    fn assert_spoofed(&self, device: &str, want: u64) {
        assert_eq!(
            self.device(device).spoofed,
            want,
            "{}: spoofed packets of `{device}`",
            self.name
        );
    }

    fn state(&self, device: &str) -> DeviceState {
        let id = self.device_id(device);
        datapath::device_states(&self.dp, [id]).expect("device states")[0].1
    }

    /// Asserts the device is quarantined now, for `reason`.
    fn assert_quarantined(&self, device: &str, reason: QuarantineReason) {
        let s = self.state(device);
        assert!(
            s.quarantine_until_ns > datapath::monotonic_ns(),
            "{}: `{device}` is quarantined: {s:?}",
            self.name
        );
        assert_eq!(
            s.quarantine_reason, reason as u32,
            "{}: `{device}` is quarantined for {reason:?}: {s:?}",
            self.name
        );
    }

    fn assert_not_quarantined(&self, device: &str) {
        let s = self.state(device);
        assert_eq!(
            s.quarantine_until_ns, 0,
            "{}: `{device}` is not quarantined: {s:?}",
            self.name
        );
    }

    /// The discovery record of the source MAC `m`, if the program recorded one.
    fn discovered(&self, m: &str) -> Option<DiscoveredDevice> {
        datapath::discovered(&self.dp)
            .expect("discovered")
            .into_iter()
            .find_map(|(found, d)| (found == mac(m)).then_some(d))
    }
}

// ---------------------------------------------------------------------------------------------
// Frames.
// ---------------------------------------------------------------------------------------------

fn from(m: &str) -> Frame {
    Frame::eth(mac(m))
}

/// The first 8 bytes of an L4 header that `bytes` would be, as a raw L4 payload (ports first).
fn ports(sport: u16, dport: u16) -> Vec<u8> {
    let mut v = sport.to_be_bytes().to_vec();
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    v
}

/// An ICMP error body quoting `quoted`'s IP header and the first 8 bytes after it (IPv4: RFC 792),
/// or as much as fits (IPv6: RFC 4443).
fn quote(quoted: &Frame, ip_header_len: usize) -> Vec<u8> {
    let ip = quoted.ip_bytes();
    ip[..(ip_header_len + 8).min(ip.len())].to_vec()
}

/// A frame with one byte changed.
fn poke(f: &Frame, at: usize, value: u8) -> Vec<u8> {
    let mut b = f.build();
    b[at] = value;
    b
}

/// A TCP segment with 420 bytes of data (cam-1's 40000 -> 554) from the IP header given.
fn long_segment(ip: Frame) -> Frame {
    ip.tcp(40000, 554).payload(&[0xaa; 420])
}

/// An ICMP error body as RFC 4884 lays it out: the quote cut or zero-padded to 128 bytes, then an
/// extension structure (version 2) with one MPLS label-stack object.
fn with_rfc_4884_extension(quoted: &[u8]) -> Vec<u8> {
    let mut body = quoted[..quoted.len().min(128)].to_vec();
    body.resize(128, 0);
    body.extend_from_slice(&[0x20, 0, 0, 0, 0, 8, 1, 1, 0, 0x3e, 0x81, 0xff]);
    body
}

/// A UDP header and payload as raw bytes, with the length field set to `len` whatever follows.
fn udp_with_length(sport: u16, dport: u16, len: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = sport.to_be_bytes().to_vec();
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    v
}

/// `n` destination-options headers, then TCP.
fn dest_opts_chain(mut f: Frame, n: usize) -> Frame {
    for _ in 0..n {
        f = f.ext(60, &[1, 4, 0, 0, 0, 0]);
    }
    f
}

// ---------------------------------------------------------------------------------------------
// The table.
// ---------------------------------------------------------------------------------------------

/// `name: setup, [step, ...];` — one `#[test]` per row, named by the row (and by nothing else).
///
/// `setup` is a policy (YAML, applied) or `no_policy_yet(yaml)`. A step is one of
/// - `frame => ACTION by proof`: the frame gets `ACTION`, and every counter `proof` names moves by
///   exactly one on it (`rule("name")`, `allowed("device")`, `denied(..)`, `audited(..)`,
///   `spoofed(..)`, a `Counter`, or several joined with `&`);
/// - `for x in (iter) frame => ACTION by proof`: that step once for each `x`;
/// - `apply(policy)`: a policy switch;
/// - `age(secs)`: as if `secs` had passed since every flow's last packet (the harness cannot move
///   the kernel's clock, so it moves the flows' clocks back);
/// - `check |h| { ... }`: assertions on totals, device state, flows or discoveries.
///
/// Every frame step also fails if the program aborts or rewrites the frame, or if a malformed-frame
/// counter moves that the proof does not name.
macro_rules! cases {
    ($(
        $(#[$meta:meta])*
        $name:ident: $setup:expr, [ $($steps:tt)* ];
    )*) => {$(
        $(#[$meta])*
        #[test]
        fn $name() {
            let Some(mut h) = Harness::new(stringify!($name), Setup::from($setup)) else { return };
            steps!(h; $($steps)*);
        }
    )*};
}

/// The steps of one row (see [`cases!`]).
macro_rules! steps {
    ($h:ident; $(,)?) => {};
    ($h:ident; apply($policy:expr) $(, $($rest:tt)*)?) => {
        $h.apply(&$policy);
        steps!($h; $($($rest)*)?);
    };
    ($h:ident; age($secs:expr) $(, $($rest:tt)*)?) => {
        $h.age($secs);
        steps!($h; $($($rest)*)?);
    };
    ($h:ident; check |$c:ident| $body:block $(, $($rest:tt)*)?) => {
        {
            let $c = &$h;
            $body
        }
        steps!($h; $($($rest)*)?);
    };
    ($h:ident; for $x:pat in ($iter:expr) $frame:expr => $want:ident by $why:expr $(, $($rest:tt)*)?) => {
        for $x in $iter {
            $h.expect(stringify!($frame), &$frame, $want, &Proof::from($why));
        }
        steps!($h; $($($rest)*)?);
    };
    ($h:ident; $frame:expr => $want:ident by $why:expr $(, $($rest:tt)*)?) => {
        $h.expect(stringify!($frame), &$frame, $want, &Proof::from($why));
        steps!($h; $($($rest)*)?);
    };
}

// ----- Allow, deny, deny precedence, protocols and ports (IPv4 and IPv6) ---------------------

cases! {
    camera_to_recorder_rtsp_new_flow_is_allowed_v4: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        check |h| {
            h.assert_rule("cams-stream", 1);
            h.assert_device("cam-1", [1, 0, 0]);
            h.assert_rule("default", 0);
        },
    ];
    camera_to_recorder_rtsp_new_flow_is_allowed_v6: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        check |h| {
            h.assert_rule("cams-stream", 1);
            h.assert_device("cam-1", [1, 0, 0]);
        },
    ];
    camera_to_printer_is_denied_by_default_v4: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, PRINTER).tcp(40000, 9100).syn() => DROP by rule("default"),
        check |h| {
            h.assert_rule("default", 1);
            h.assert_device("cam-1", [0, 1, 0]);
            h.assert_counter(Counter::EventsSent, 1);
        },
    ];
    camera_to_printer_is_denied_by_default_v6: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, PRINTER_6).tcp(40000, 9100).syn() => DROP by rule("default"),
        check |h| {
            h.assert_rule("default", 1);
            h.assert_device("cam-1", [0, 1, 0]);
        },
    ];
    fishtank_explicit_deny_beats_building_allow_to_internet_v4: FIXTURE, [
        from(FISHTANK_MAC).ipv4(FISHTANK, WEB).tcp(40000, 443).syn() => DROP by rule("fishtank-no-egress"),
        from(HVAC_MAC).ipv4(HVAC, WEB).tcp(40000, 443).syn() => PASS by rule("building-cloud"),
        check |h| {
            h.assert_rule("fishtank-no-egress", 1);
            h.assert_rule("building-cloud", 1);
            h.assert_rule("default", 0);
            h.assert_device("fishtank", [0, 1, 0]);
            h.assert_device("hvac-1", [1, 0, 0]);
        },
    ];
    fishtank_explicit_deny_beats_building_allow_to_internet_v6: FIXTURE, [
        from(FISHTANK_MAC).ipv6(FISHTANK_6, WEB_6).tcp(40000, 443).syn()
            => DROP by rule("fishtank-no-egress"),
        from(HVAC_MAC).ipv6(HVAC_6, WEB_6).tcp(40000, 443).syn() => PASS by rule("building-cloud"),
        check |h| {
            h.assert_rule("fishtank-no-egress", 1);
            h.assert_rule("building-cloud", 1);
        },
    ];
    camera_to_office_hits_the_explicit_lateral_deny_rule: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, OFFICE).tcp(40000, 445).syn() => DROP by rule("no-lateral-cameras"),
        from(CAM1_MAC).ipv6(CAM1_6, OFFICE_6).udp(40000, 53) => DROP by rule("no-lateral-cameras"),
        check |h| {
            h.assert_rule("no-lateral-cameras", 2);
            h.assert_rule("default", 0);
        },
    ];
    udp_on_an_allowed_tcp_port_is_denied_v4: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).udp(40000, 554) => DROP by rule("default"),
        check |h| { h.assert_rule("default", 1); h.assert_rule("cams-stream", 0); },
    ];
    udp_on_an_allowed_tcp_port_is_denied_v6: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).udp(40000, 554) => DROP by rule("default"),
        check |h| { h.assert_rule("default", 1); },
    ];
    ports_inside_a_range_are_allowed_v4: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40001, 8000).syn() => PASS by rule("cams-stream"),
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40002, 8005).syn() => PASS by rule("cams-stream"),
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40003, 8010).syn() => PASS by rule("cams-stream"),
        check |h| { h.assert_rule("cams-stream", 3); },
    ];
    ports_inside_a_range_are_allowed_v6: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).tcp(40001, 8000).syn() => PASS by rule("cams-stream"),
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).tcp(40003, 8010).syn() => PASS by rule("cams-stream"),
    ];
    ports_just_outside_a_range_are_denied_v4: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40001, 7999).syn() => DROP by rule("default"),
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40002, 8011).syn() => DROP by rule("default"),
        check |h| { h.assert_rule("default", 2); },
    ];
    ports_just_outside_a_range_are_denied_v6: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).tcp(40001, 7999).syn() => DROP by rule("default"),
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).tcp(40002, 8011).syn() => DROP by rule("default"),
    ];
    port_zero_is_denied_unless_named: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(554, 0).syn() => DROP by rule("default"),
    ];
    echo_request_in_the_direction_no_rule_allows_is_dropped: FIXTURE, [
        // nvr-pull allows recorders -> cameras icmp; nothing allows cameras -> recorders icmp.
        from(CAM1_MAC).ipv4(CAM1, NVR).echo_request(7) => DROP by rule("default"),
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).echo_request(7) => DROP by rule("default"),
    ];
    icmp_in_ipv6_is_judged_as_other_not_as_echo: FIXTURE, [
        // Protocol 1 inside IPv6 is not ICMPv6: it is `other`, and only `any` allows that.
        from(NVR_MAC).ipv6(NVR_6, CAM1_6).proto(1, &[8, 0, 0, 0, 0, 7, 0, 1]) => DROP by rule("default"),
    ];
}

// ----- Connection state: replies, echo, ICMP errors -------------------------------------------

cases! {
    reply_of_an_allowed_flow_passes_v4: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(554, 40000).syn_ack() => PASS by Counter::FlowHit,
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554) => PASS by Counter::FlowHit,
        check |h| {
            h.assert_counter(Counter::FlowHit, 2);
            assert_eq!(datapath::flow_count(&h.dp, datapath::monotonic_ns()).expect("flows"), 1, "one flow, both directions");
            h.assert_rule("cams-stream", 3);
            h.assert_device("cam-1", [2, 0, 0]);
            h.assert_device("nvr-1", [1, 0, 0]);
        },
    ];
    reply_of_an_allowed_flow_passes_v6: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        from(NVR_MAC).ipv6(NVR_6, CAM1_6).tcp(554, 40000).syn_ack() => PASS by Counter::FlowHit,
        check |h| {
            h.assert_counter(Counter::FlowHit, 1);
            h.assert_device("nvr-1", [1, 0, 0]);
        },
    ];
    reply_from_the_right_address_but_another_listed_mac_is_dropped: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        from(PRINTER_MAC).ipv4(NVR, CAM1).tcp(554, 40000).syn_ack()
            => DROP by denied("printer-1") & spoofed("printer-1") & Counter::QuarantineTrips,
        check |h| { h.assert_counter(Counter::FlowHit, 0); },
    ];
    forged_syn_ack_from_an_allowed_port_without_a_flow_is_dropped_v4: FIXTURE, [
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(554, 40000).syn_ack() => DROP by rule("default"),
        check |h| { h.assert_counter(Counter::FlowHit, 0); h.assert_device("nvr-1", [0, 1, 0]); },
    ];
    forged_syn_ack_from_an_allowed_port_without_a_flow_is_dropped_v6: FIXTURE, [
        from(NVR_MAC).ipv6(NVR_6, CAM1_6).tcp(554, 40000).syn_ack() => DROP by rule("default"),
    ];
    echo_request_allowed_then_echo_reply_passes_v4: FIXTURE, [
        from(NVR_MAC).ipv4(NVR, CAM1).echo_request(7) => PASS by rule("nvr-pull"),
        from(CAM1_MAC).ipv4(CAM1, NVR).echo_reply(7) => PASS by Counter::FlowHit,
        check |h| {
            h.assert_rule("nvr-pull", 2);
            h.assert_counter(Counter::FlowHit, 1);
            h.assert_device("cam-1", [1, 0, 0]);
        },
    ];
    echo_request_allowed_then_echo_reply_passes_v6: FIXTURE, [
        from(NVR_MAC).ipv6(NVR_6, CAM1_6).echo_request(7) => PASS by rule("nvr-pull"),
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).echo_reply(7) => PASS by Counter::FlowHit,
        check |h| { h.assert_counter(Counter::FlowHit, 1); },
    ];
    echo_request_back_along_an_allowed_ping_flow_is_dropped: FIXTURE, [
        from(NVR_MAC).ipv4(NVR, CAM1).echo_request(7) => PASS by rule("nvr-pull"),
        // The camera may answer the recorder's ping, not ping the recorder (no rule allows that),
        // even with the same identifier; nor does the recorder "reply" to its own request.
        from(CAM1_MAC).ipv4(CAM1, NVR).echo_request(7) => DROP by rule("default"),
        from(NVR_MAC).ipv4(NVR, CAM1).echo_reply(7) => DROP by denied("nvr-1"),
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).echo_request(7) => DROP by rule("default"),
        from(CAM1_MAC).ipv4(CAM1, NVR).echo_reply(7) => PASS by Counter::FlowHit,
        // A second request of the recorder's on the same identifier continues the flow.
        from(NVR_MAC).ipv4(NVR, CAM1).echo_request(7) => PASS by Counter::FlowHit,
        check |h| { h.assert_counter(Counter::FlowHit, 2); h.assert_device("cam-1", [1, 2, 0]); },
    ];
    echo_reply_with_another_identifier_is_dropped: FIXTURE, [
        from(NVR_MAC).ipv4(NVR, CAM1).echo_request(7) => PASS by rule("nvr-pull"),
        from(CAM1_MAC).ipv4(CAM1, NVR).echo_reply(8) => DROP by denied("cam-1"),
    ];
    lone_echo_reply_is_dropped_v4: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).echo_reply(9) => DROP by denied("cam-1"),
        check |h| { h.assert_device("cam-1", [0, 1, 0]); h.assert_rule("default", 0); },
    ];
    lone_echo_reply_is_dropped_v6: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).echo_reply(9) => DROP by denied("cam-1"),
    ];
    port_unreachable_quoting_an_allowed_flow_passes_v4: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        from(NVR_MAC).ipv4(NVR, CAM1)
            .icmp(3, 3, &quote(&from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn(), 20))
                => PASS by Counter::IcmpRelated,
        check |h| {
            h.assert_counter(Counter::IcmpRelated, 1);
            h.assert_device("nvr-1", [1, 0, 0]);
        },
    ];
    fragmentation_needed_quoting_an_allowed_flow_passes_through_vlan_v4: FIXTURE, [
        from(CAM1_MAC).vlan(10).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        from(NVR_MAC).vlan(20).ipv4(NVR, CAM1)
            .icmp(3, 4, &quote(&from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn(), 20))
                => PASS by Counter::IcmpRelated,
        check |h| { h.assert_counter(Counter::IcmpRelated, 1); },
    ];
    packet_too_big_quoting_an_allowed_flow_passes_v6: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        from(NVR_MAC).ipv6(NVR_6, CAM1_6)
            .icmp(2, 0, &quote(&from(CAM1_MAC).ipv6(CAM1_6, NVR_6).tcp(40000, 554).syn(), 40))
                => PASS by Counter::IcmpRelated,
        check |h| { h.assert_counter(Counter::IcmpRelated, 1); },
    ];
    icmp_error_quoting_an_echo_request_of_an_allowed_flow_passes: FIXTURE, [
        from(NVR_MAC).ipv4(NVR, CAM1).echo_request(7) => PASS by rule("nvr-pull"),
        from(CAM1_MAC).ipv4(CAM1, NVR)
            .icmp(11, 0, &quote(&from(NVR_MAC).ipv4(NVR, CAM1).echo_request(7), 20))
                => PASS by Counter::IcmpRelated,
        check |h| { h.assert_counter(Counter::IcmpRelated, 1); },
    ];
    icmp_error_quoting_an_unknown_flow_is_dropped_v4: FIXTURE, [
        from(NVR_MAC).ipv4(NVR, CAM1)
            .icmp(3, 3, &quote(&from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn(), 20))
                => DROP by denied("nvr-1"),
        check |h| { h.assert_counter(Counter::IcmpRelated, 0); h.assert_device("nvr-1", [0, 1, 0]); },
    ];
    icmp_error_quoting_an_unknown_flow_is_dropped_v6: FIXTURE, [
        from(NVR_MAC).ipv6(NVR_6, CAM1_6)
            .icmp(2, 0, &quote(&from(CAM1_MAC).ipv6(CAM1_6, NVR_6).tcp(40000, 554).syn(), 40))
                => DROP by denied("nvr-1"),
    ];
    icmp_error_with_a_truncated_quote_is_dropped: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        from(NVR_MAC).ipv4(NVR, CAM1)
            .icmp(3, 3, &quote(&from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn(), 20)[..24])
                => DROP by denied("nvr-1"),
        check |h| { h.assert_counter(Counter::IcmpRelated, 0); },
    ];
    icmp_error_from_an_unrelated_device_quoting_another_devices_flow_is_dropped: FIXTURE, [
        from(OFFICE_MAC).ipv4(OFFICE, WEB).tcp(40000, 443).syn() => PASS by rule("office-internet"),
        // A camera "reports an error" to the printer, quoting the office's flow: it is no error
        // about any flow of the printer's, just a way across zones.
        from(CAM1_MAC).ipv4(CAM1, PRINTER)
            .icmp(3, 3, &quote(&from(OFFICE_MAC).ipv4(OFFICE, WEB).tcp(40000, 443).syn(), 20))
                => DROP by denied("cam-1"),
        from(OFFICE_MAC).ipv6(OFFICE_6, WEB_6).tcp(40000, 443).syn() => PASS by rule("office-internet"),
        from(CAM1_MAC).ipv6(CAM1_6, PRINTER_6)
            .icmp(1, 4, &quote(&from(OFFICE_MAC).ipv6(OFFICE_6, WEB_6).tcp(40000, 443).syn(), 40))
                => DROP by denied("cam-1"),
        check |h| { h.assert_counter(Counter::IcmpRelated, 0); },
    ];
    icmp_error_to_the_initiator_from_a_third_device_is_dropped: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        // cam-2 is not the recorder, whose MAC the flow's replies (and errors) must come from.
        from(CAM2_MAC).ipv4(CAM2, CAM1)
            .icmp(3, 3, &quote(&from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn(), 20))
                => DROP by denied("cam-2"),
        check |h| { h.assert_counter(Counter::IcmpRelated, 0); },
    ];
    icmp_error_from_a_router_on_the_internet_path_passes: FIXTURE, [
        from(OFFICE_MAC).ipv4(OFFICE, WEB).tcp(40000, 443).syn() => PASS by rule("office-internet"),
        // Time exceeded from some router upstream, arriving through the uplink's MAC.
        from("02:00:00:00:ee:01").ipv4("198.51.100.1", OFFICE)
            .icmp(11, 0, &quote(&from(OFFICE_MAC).ipv4(OFFICE, WEB).tcp(40000, 443).syn(), 20))
                => PASS by Counter::IcmpRelated,
        check |h| { h.assert_counter(Counter::IcmpRelated, 1); },
    ];
    icmp_error_quoting_ipv6_extension_headers_is_not_matched_known_limit: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).ext(60, &[1, 4, 0, 0, 0, 0]).tcp(40000, 554).syn()
            => PASS by rule("cams-stream"),
        from(NVR_MAC).ipv6(NVR_6, CAM1_6).icmp(2, 0, &quote(
            &from(CAM1_MAC).ipv6(CAM1_6, NVR_6).ext(60, &[1, 4, 0, 0, 0, 0]).tcp(40000, 554).syn(), 48))
                => DROP by denied("nvr-1"),
        check |h| { h.assert_counter(Counter::IcmpRelated, 0); },
    ];
    icmp_error_quoting_an_allowed_flow_with_another_port_is_dropped: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        from(NVR_MAC).ipv4(NVR, CAM1)
            .icmp(3, 3, &quote(&from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 22).syn(), 20))
                => DROP by denied("nvr-1"),
    ];
    icmp_error_quoting_a_whole_long_datagram_of_an_allowed_flow_passes_v4: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        // Routers may quote as much as fits (RFC 1812 §4.3.2.3): here the whole 460-byte datagram.
        from(NVR_MAC).ipv4(NVR, CAM1)
            .icmp(3, 3, &long_segment(from(CAM1_MAC).ipv4(CAM1, NVR)).ip_bytes())
                => PASS by Counter::IcmpRelated,
        check |h| { h.assert_counter(Counter::IcmpRelated, 1); h.assert_device("nvr-1", [1, 0, 0]); },
    ];
    icmp_error_quoting_a_whole_long_datagram_of_an_allowed_flow_passes_v6: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        from(NVR_MAC).ipv6(NVR_6, CAM1_6)
            .icmp(2, 0, &long_segment(from(CAM1_MAC).ipv6(CAM1_6, NVR_6)).ip_bytes())
                => PASS by Counter::IcmpRelated,
        check |h| { h.assert_counter(Counter::IcmpRelated, 1); },
    ];
    icmp_error_with_rfc_4884_extensions_after_its_quote_passes: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        // Time exceeded with a length attribute (32 words, byte 5) and an MPLS extension object.
        poke(&from(NVR_MAC).ipv4(NVR, CAM1).icmp(11, 0, &with_rfc_4884_extension(
            &long_segment(from(CAM1_MAC).ipv4(CAM1, NVR)).ip_bytes())), 14 + 20 + 5, 32)
                => PASS by Counter::IcmpRelated,
        // ICMPv6 keeps the length in 64-bit words, at byte 4.
        poke(&from(NVR_MAC).ipv6(NVR_6, CAM1_6).icmp(3, 0, &with_rfc_4884_extension(
            &long_segment(from(CAM1_MAC).ipv6(CAM1_6, NVR_6)).ip_bytes())), 14 + 40 + 4, 16)
                => PASS by Counter::IcmpRelated,
        check |h| { h.assert_counter(Counter::IcmpRelated, 2); },
    ];
    icmp_messages_that_are_no_errors_are_never_related_even_quoting_an_allowed_flow: FIXTURE, [
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(40000, 554).syn() => PASS by rule("nvr-pull"),
        from(NVR_MAC).ipv6(NVR_6, CAM1_6).tcp(40000, 554).syn() => PASS by rule("nvr-pull"),
        // The camera answers its recorder's flow with ICMP that quotes it but reports no error:
        // redirect (5), timestamp (13), echo request (8), and ICMPv6 node information (139) and a
        // private type (200). Each is judged as a new ICMP packet; cameras may send no ICMP to
        // recorders.
        for ty in ([5u8, 13, 8]) from(CAM1_MAC).ipv4(CAM1, NVR)
            .icmp(ty, 0, &quote(&from(NVR_MAC).ipv4(NVR, CAM1).tcp(40000, 554).syn(), 20))
                => DROP by rule("default"),
        for ty in ([139u8, 200]) from(CAM1_MAC).ipv6(CAM1_6, NVR_6)
            .icmp(ty, 0, &quote(&from(NVR_MAC).ipv6(NVR_6, CAM1_6).tcp(40000, 554).syn(), 40))
                => DROP by rule("default"),
        check |h| { h.assert_counter(Counter::IcmpRelated, 0); h.assert_rule("default", 5); },
    ];
}

// ----- VLAN tags ------------------------------------------------------------------------------

cases! {
    vlan_tagged_camera_to_recorder_is_allowed: FIXTURE, [
        from(CAM1_MAC).vlan(10).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        from(CAM1_MAC).vlan(10).ipv6(CAM1_6, NVR_6).tcp(40001, 554).syn() => PASS by rule("cams-stream"),
        check |h| { h.assert_rule("cams-stream", 2); },
    ];
    vlan_tagged_camera_to_printer_is_denied: FIXTURE, [
        from(CAM1_MAC).vlan(10).ipv4(CAM1, PRINTER).tcp(40000, 9100).syn() => DROP by rule("default"),
        from(CAM1_MAC).vlan(40).ipv6(CAM1_6, PRINTER_6).tcp(40000, 9100).syn() => DROP by rule("default"),
        check |h| { h.assert_rule("default", 2); },
    ];
    qinq_tagged_camera_to_recorder_is_allowed: FIXTURE, [
        from(CAM1_MAC).qinq(100).vlan(10).ipv4(CAM1, NVR).tcp(40000, 554).syn()
            => PASS by rule("cams-stream"),
        from(CAM1_MAC).qinq(100).vlan(10).ipv6(CAM1_6, NVR_6).tcp(40000, 554).syn()
            => PASS by rule("cams-stream"),
    ];
    qinq_tagged_camera_to_printer_is_denied: FIXTURE, [
        from(CAM1_MAC).qinq(100).vlan(10).ipv4(CAM1, PRINTER).tcp(40000, 9100).syn()
            => DROP by rule("default"),
        from(CAM1_MAC).vlan(10).vlan(40).ipv6(CAM1_6, PRINTER_6).tcp(40000, 9100).syn()
            => DROP by rule("default"),
        check |h| { h.assert_rule("default", 2); },
    ];
    three_vlan_tags_are_dropped_as_malformed: FIXTURE, [
        from(CAM1_MAC).qinq(100).vlan(10).vlan(20).ipv4(CAM1, NVR).tcp(40000, 554).syn()
            => DROP by Counter::MalformedVlan,
        check |h| { h.assert_counter(Counter::MalformedVlan, 1); h.assert_device("cam-1", [0, 0, 0]); },
    ];
    vlan_tag_cut_short_is_dropped_as_truncated: FIXTURE, [
        from(CAM1_MAC).vlan(10).ipv4(CAM1, NVR).tcp(40000, 554).truncate(16)
            => DROP by Counter::MalformedTruncated,
        check |h| { h.assert_counter(Counter::MalformedTruncated, 1); },
    ];
}

// ----- IPv4 header ----------------------------------------------------------------------------

cases! {
    ipv4_with_options_ihl_6_is_allowed: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).ihl(6).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
    ];
    ipv4_with_options_ihl_15_is_allowed: FIXTURE, [
        // Timestamp option header, then NOPs.
        from(CAM1_MAC).ipv4(CAM1, NVR).ihl(15).ip_options(&[68, 4, 5, 0]).tcp(40000, 554).syn()
            => PASS by rule("cams-stream"),
    ];
    ipv4_options_are_skipped_not_read_as_ports_traffico: FIXTURE, [
        // Allowed ports (40000 -> 554) at byte 20, where L4 would start without options; the real
        // L4 header at ihl*4 = 24 goes to the denied port 22.
        from(CAM1_MAC).ipv4(CAM1, NVR).ihl(6).ip_options(&[0x9c, 0x40, 0x02, 0x2a]).tcp(40000, 22).syn()
            => DROP by rule("default"),
        check |h| { h.assert_rule("cams-stream", 0); h.assert_rule("default", 1); },
    ];
    ipv4_ihl_below_5_is_malformed: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).ihl(4).tcp(40000, 554).syn() => DROP by Counter::MalformedIpv4,
        from(CAM1_MAC).ipv4(CAM1, NVR).ihl(0).tcp(40000, 554).syn() => DROP by Counter::MalformedIpv4,
        check |h| { h.assert_counter(Counter::MalformedIpv4, 2); h.assert_device("cam-1", [0, 0, 0]); },
    ];
    ipv4_ihl_15_in_a_short_frame_is_malformed: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).ihl(15).tcp(40000, 554).syn().truncate(14 + 50)
            => DROP by Counter::MalformedTruncated,
        check |h| { h.assert_counter(Counter::MalformedTruncated, 1); },
    ];
    ipv4_total_length_below_header_length_is_malformed: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).ihl(6).tot_len(20).tcp(40000, 554).syn()
            => DROP by Counter::MalformedIpv4,
        check |h| { h.assert_counter(Counter::MalformedIpv4, 1); },
    ];
    ipv4_total_length_beyond_the_frame_is_malformed: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tot_len(100).tcp(40000, 554).syn()
            => DROP by Counter::MalformedTruncated,
        check |h| { h.assert_counter(Counter::MalformedTruncated, 1); },
    ];
    ipv4_ethertype_with_version_6_is_malformed: FIXTURE, [
        poke(&from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn(), 14, 0x65)
            => DROP by Counter::MalformedIpv4,
        check |h| { h.assert_counter(Counter::MalformedIpv4, 1); },
    ];
    ipv6_ethertype_with_version_4_is_malformed: FIXTURE, [
        poke(&from(CAM1_MAC).ipv6(CAM1_6, NVR_6).tcp(40000, 554).syn(), 14, 0x45)
            => DROP by Counter::MalformedIpv6,
        check |h| { h.assert_counter(Counter::MalformedIpv6, 1); },
    ];
    ethernet_padding_beyond_total_length_passes: FIXTURE, [
        // A 60-byte minimum frame: the UDP-less SYN is padded; the padding holds other "ports".
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn().trailer(&[0, 22, 0, 22, 0, 0])
            => PASS by rule("cams-stream"),
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).tcp(40001, 554).syn().trailer(&[0; 8])
            => PASS by rule("cams-stream"),
    ];
    ports_are_read_within_total_length_not_from_padding: FIXTURE, [
        // The IP packet ends after 10 bytes of TCP; the padding that completes the header does not count.
        from(CAM1_MAC).ipv4(CAM1, NVR).tot_len(30).tcp(40000, 554).syn() => DROP by Counter::MalformedL4,
        check |h| { h.assert_counter(Counter::MalformedL4, 1); },
    ];
}

// ----- Truncation and L4 headers --------------------------------------------------------------

cases! {
    // BPF_PROG_TEST_RUN refuses XDP frames shorter than an Ethernet header (EINVAL), so the
    // shortest runt testable here is the bare 14-byte header.
    runt_frame_is_malformed: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).truncate(14) => DROP by Counter::MalformedTruncated,
        check |h| { h.assert_counter(Counter::MalformedTruncated, 1); },
    ];
    ipv4_header_cut_short_is_malformed: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).truncate(14 + 12)
            => DROP by Counter::MalformedTruncated,
        check |h| { h.assert_counter(Counter::MalformedTruncated, 1); },
    ];
    ipv6_header_cut_short_is_malformed: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).tcp(40000, 554).truncate(14 + 30)
            => DROP by Counter::MalformedTruncated,
        check |h| { h.assert_counter(Counter::MalformedTruncated, 1); },
    ];
    ipv6_payload_length_beyond_the_frame_is_malformed: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).payload_len(200).tcp(40000, 554).syn()
            => DROP by Counter::MalformedTruncated,
        check |h| { h.assert_counter(Counter::MalformedTruncated, 1); },
    ];
    tcp_header_cut_short_is_malformed_v4: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).proto(6, &ports(40000, 554)[..10]) => DROP by Counter::MalformedL4,
        check |h| { h.assert_counter(Counter::MalformedL4, 1); h.assert_rule("cams-stream", 0); },
    ];
    tcp_header_cut_short_is_malformed_v6: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).proto(6, &ports(40000, 554)[..10]) => DROP by Counter::MalformedL4,
        check |h| { h.assert_counter(Counter::MalformedL4, 1); },
    ];
    tcp_data_offset_below_5_is_malformed: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn().doff(4) => DROP by Counter::MalformedL4,
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).tcp(40000, 554).syn().doff(0) => DROP by Counter::MalformedL4,
        check |h| { h.assert_counter(Counter::MalformedL4, 2); },
    ];
    tcp_data_offset_past_the_packet_is_malformed: FIXTURE, [
        // doff 15 (60 bytes) but only the 20-byte header is there.
        from(CAM1_MAC).ipv4(CAM1, NVR).proto(6, &{ let mut p = ports(40000, 554); p[12] = 0xf0; p })
            => DROP by Counter::MalformedL4,
        check |h| { h.assert_counter(Counter::MalformedL4, 1); },
    ];
    udp_header_cut_short_is_malformed: FIXTURE, [
        from(OFFICE_MAC).ipv4(OFFICE, WEB).proto(17, &[0x9c, 0x40, 0, 53]) => DROP by Counter::MalformedL4,
        from(OFFICE_MAC).ipv6(OFFICE_6, WEB_6).proto(17, &[0x9c, 0x40, 0, 53, 0, 12])
            => DROP by Counter::MalformedL4,
        check |h| { h.assert_counter(Counter::MalformedL4, 2); h.assert_rule("office-internet", 0); },
    ];
    icmp_header_cut_short_is_malformed: FIXTURE, [
        from(NVR_MAC).ipv4(NVR, CAM1).proto(1, &[8, 0, 0, 0]) => DROP by Counter::MalformedL4,
        check |h| { h.assert_counter(Counter::MalformedL4, 1); },
    ];
    gre_with_allowed_looking_ports_is_judged_other_and_dropped: FIXTURE, [
        // Protocol 47 whose first four bytes read 40000 -> 554, an allowed TCP pair.
        from(CAM1_MAC).ipv4(CAM1, NVR).proto(47, &ports(40000, 554)) => DROP by rule("default"),
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).proto(47, &ports(40000, 554)) => DROP by rule("default"),
        from(CAM1_MAC).ipv4(CAM1, NVR).proto(132, &ports(40000, 554)) => DROP by rule("default"),
        check |h| { h.assert_rule("cams-stream", 0); h.assert_rule("default", 3); },
    ];
    gre_passes_when_the_rule_allows_any: any_service_fixture(), [
        from(CAM1_MAC).ipv4(CAM1, NVR).proto(47, &ports(40000, 554)) => PASS by rule("cams-stream"),
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).proto(47, &ports(40000, 554)) => PASS by rule("cams-stream"),
        check |h| { h.assert_rule("cams-stream", 2); },
    ];
    udp_without_payload_on_an_allowed_flow_is_judged_normally: FIXTURE, [
        // Length 8: a header and nothing else is a valid datagram.
        from(OFFICE_MAC).ipv4(OFFICE, WEB).proto(17, &udp_with_length(40000, 53, 8, &[]))
            => PASS by rule("office-internet"),
        from(OFFICE_MAC).ipv6(OFFICE_6, WEB_6).proto(17, &udp_with_length(40000, 53, 8, &[]))
            => PASS by rule("office-internet"),
        from(CAM1_MAC).ipv4(CAM1, NVR).proto(17, &udp_with_length(40000, 554, 8, &[])) => DROP by rule("default"),
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).proto(17, &udp_with_length(40000, 554, 8, &[])) => DROP by rule("default"),
        // A length shorter than the IP payload: the kernel trims the rest; judged on its ports.
        from(OFFICE_MAC).ipv4(OFFICE, WEB).proto(17, &udp_with_length(40001, 53, 8, &[0; 12]))
            => PASS by rule("office-internet"),
        check |h| { h.assert_rule("office-internet", 3); h.assert_rule("default", 2); },
    ];
    udp_length_below_8_or_beyond_the_ip_payload_is_malformed: FIXTURE, [
        for len in ([0u16, 1, 7]) from(OFFICE_MAC).ipv4(OFFICE, WEB).proto(17, &udp_with_length(40000, 53, len, &[0; 4]))
            => DROP by Counter::MalformedL4,
        for len in ([0u16, 7]) from(OFFICE_MAC).ipv6(OFFICE_6, WEB_6).proto(17, &udp_with_length(40000, 53, len, &[0; 4]))
            => DROP by Counter::MalformedL4,
        // Claims 4 bytes more than the IP packet holds (the Ethernet padding does not count).
        from(OFFICE_MAC).ipv4(OFFICE, WEB).proto(17, &udp_with_length(40000, 53, 16, &[0; 4]))
            => DROP by Counter::MalformedL4,
        from(OFFICE_MAC).ipv4(OFFICE, WEB).proto(17, &udp_with_length(40000, 53, 16, &[0; 4])).trailer(&[0; 8])
            => DROP by Counter::MalformedL4,
        from(OFFICE_MAC).ipv6(OFFICE_6, WEB_6).proto(17, &udp_with_length(40000, 53, 13, &[0; 4]))
            => DROP by Counter::MalformedL4,
        check |h| { h.assert_counter(Counter::MalformedL4, 8); h.assert_rule("office-internet", 0); },
    ];
}

// ----- IPv6 extension headers -----------------------------------------------------------------

cases! {
    ipv6_hop_by_hop_then_allowed_tcp_passes: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).ext(0, &[1, 4, 0, 0, 0, 0]).tcp(40000, 554).syn()
            => PASS by rule("cams-stream"),
    ];
    ipv6_destination_options_then_allowed_tcp_passes: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).ext(60, &[1, 4, 0, 0, 0, 0]).tcp(40000, 554).syn()
            => PASS by rule("cams-stream"),
    ];
    ipv6_hop_by_hop_destination_options_tcp_chain_passes: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).ext(0, &[1, 4, 0, 0, 0, 0]).ext(60, &[1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
            .tcp(40000, 554).syn() => PASS by rule("cams-stream"),
    ];
    ipv6_destination_options_twice_then_tcp_passes: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).ext(60, &[1, 4, 0, 0, 0, 0]).ext(60, &[1, 4, 0, 0, 0, 0])
            .tcp(40000, 554).syn() => PASS by rule("cams-stream"),
    ];
    ipv6_extension_headers_are_skipped_not_read_as_ports: FIXTURE, [
        // The destination-options bytes look like 40000 -> 554; the real TCP goes to port 22.
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).ext(60, &[0x02, 0x2a, 0, 0, 0, 0]).tcp(40000, 22).syn()
            => DROP by rule("default"),
        check |h| { h.assert_rule("default", 1); },
    ];
    ipv6_authentication_header_then_allowed_tcp_passes: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).ext(51, &[0, 0, 0, 0, 0, 1, 0, 0, 0, 1]).tcp(40000, 554).syn()
            => PASS by rule("cams-stream"),
    ];
    ipv6_chain_of_six_extension_headers_is_walked: FIXTURE, [
        dest_opts_chain(from(CAM1_MAC).ipv6(CAM1_6, NVR_6), 6).tcp(40000, 554).syn()
            => PASS by rule("cams-stream"),
    ];
    ipv6_chain_longer_than_six_extension_headers_is_dropped: FIXTURE, [
        dest_opts_chain(from(CAM1_MAC).ipv6(CAM1_6, NVR_6), 7).tcp(40000, 554).syn()
            => DROP by Counter::MalformedIpv6,
        check |h| { h.assert_counter(Counter::MalformedIpv6, 1); h.assert_rule("cams-stream", 0); },
    ];
    ipv6_hop_by_hop_not_first_is_dropped: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).ext(60, &[1, 4, 0, 0, 0, 0]).ext(0, &[1, 4, 0, 0, 0, 0])
            .tcp(40000, 554).syn() => DROP by Counter::MalformedIpv6,
        check |h| { h.assert_counter(Counter::MalformedIpv6, 1); },
    ];
    ipv6_routing_header_with_segments_left_is_dropped: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).ext(43, &[4, 1, 0, 0, 0, 0]).tcp(40000, 554).syn()
            => DROP by Counter::MalformedIpv6,
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).ext(43, &[2, 1, 0, 0, 0, 0]).tcp(40000, 554).syn()
            => DROP by Counter::MalformedIpv6,
        check |h| { h.assert_counter(Counter::MalformedIpv6, 2); },
    ];
    ipv6_routing_header_type_0_is_dropped_even_when_exhausted: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).ext(43, &[0, 0, 0, 0, 0, 0]).tcp(40000, 554).syn()
            => DROP by Counter::MalformedIpv6,
        check |h| { h.assert_counter(Counter::MalformedIpv6, 1); },
    ];
    ipv6_exhausted_routing_header_is_judged_normally: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).ext(43, &[4, 0, 0, 0, 0, 0]).tcp(40000, 554).syn()
            => PASS by rule("cams-stream"),
    ];
    ipv6_no_next_header_is_dropped: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).proto(59, &[0; 8]) => DROP by Counter::MalformedIpv6,
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).ext(60, &[1, 4, 0, 0, 0, 0]).proto(59, &[0; 8])
            => DROP by Counter::MalformedIpv6,
        check |h| { h.assert_counter(Counter::MalformedIpv6, 2); },
    ];
    ipv6_jumbogram_is_dropped: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).payload_len(0).ext(0, &[0xc2, 4, 0, 1, 0, 0]).tcp(40000, 554).syn()
            => DROP by Counter::MalformedIpv6,
        check |h| { h.assert_counter(Counter::MalformedIpv6, 1); },
    ];
    ipv6_extension_header_past_the_packet_is_dropped: FIXTURE, [
        // A destination-options header claiming 2 KiB.
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).proto(60, &[6, 255, 0, 0, 0, 0, 0, 0])
            => DROP by Counter::MalformedIpv6,
        // Past the payload but still inside the frame (Ethernet padding behind it).
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).proto(60, &[6, 1, 0, 0, 0, 0, 0, 0]).trailer(&[0; 40])
            => DROP by Counter::MalformedIpv6,
        check |h| { h.assert_counter(Counter::MalformedIpv6, 2); h.assert_counter(Counter::MalformedL4, 0); },
    ];
}

// ----- IPv4 fragments -------------------------------------------------------------------------

/// First fragment (MF, offset 0, id 7) of cam-1 -> nvr tcp/554 carrying the whole TCP header.
fn first_fragment_v4() -> Frame {
    from(CAM1_MAC)
        .ipv4(CAM1, NVR)
        .ip_id(7)
        .frag(0x2000)
        .tcp(40000, 554)
        .syn()
        .payload(&[0xaa; 16])
}

/// A later fragment (offset 5 * 8 = 40) with id 7 from cam-1, protocol `proto`.
fn later_fragment_v4(proto: u8) -> Frame {
    from(CAM1_MAC)
        .ipv4(CAM1, NVR)
        .ip_id(7)
        .frag(0x0005)
        .proto(proto, &[0xbb; 24])
}

cases! {
    ipv4_first_fragment_of_allowed_flow_passes_and_later_fragment_follows: FIXTURE, [
        first_fragment_v4() => PASS by rule("cams-stream"),
        from(CAM1_MAC).ipv4(CAM1, NVR).ip_id(7).frag(0x2005).proto(6, &[0xbb; 24])
            => PASS by Counter::FragmentPassed,
        later_fragment_v4(6) => PASS by Counter::FragmentPassed,
        check |h| {
            h.assert_counter(Counter::FragmentPassed, 2);
            h.assert_rule("cams-stream", 3);
            h.assert_device("cam-1", [3, 0, 0]);
        },
    ];
    ipv4_lone_later_fragment_is_dropped_as_orphan: FIXTURE, [
        later_fragment_v4(6) => DROP by Counter::FragmentOrphan,
        check |h| { h.assert_counter(Counter::FragmentOrphan, 1); },
    ];
    ipv4_later_fragment_that_looks_like_allowed_ports_is_dropped_as_orphan: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).ip_id(9).frag(0x0005).proto(6, &ports(40000, 554))
            => DROP by Counter::FragmentOrphan,
        check |h| { h.assert_counter(Counter::FragmentOrphan, 1); h.assert_rule("cams-stream", 0); },
    ];
    ipv4_later_fragment_of_another_protocol_is_dropped: FIXTURE, [
        first_fragment_v4() => PASS by rule("cams-stream"),
        later_fragment_v4(17) => DROP by Counter::FragmentOrphan,
        check |h| { h.assert_counter(Counter::FragmentOrphan, 1); h.assert_counter(Counter::FragmentPassed, 0); },
    ];
    ipv4_later_fragment_from_another_source_is_dropped: FIXTURE, [
        first_fragment_v4() => PASS by rule("cams-stream"),
        from(CAM2_MAC).ipv4(CAM2, NVR).ip_id(7).frag(0x0005).proto(6, &[0xbb; 24])
            => DROP by Counter::FragmentOrphan,
        check |h| { h.assert_counter(Counter::FragmentOrphan, 1); },
    ];
    ipv4_later_fragment_of_the_datagram_from_another_listed_devices_mac_is_dropped: FIXTURE, [
        first_fragment_v4() => PASS by rule("cams-stream"),
        // cam-1's datagram (same addresses and id) from cam-2's MAC: not the first fragment's
        // MAC, so the sender is checked, and cam-2 may not continue cam-1's datagram.
        from(CAM2_MAC).ipv4(CAM1, NVR).ip_id(7).frag(0x0005).proto(6, &[0xbb; 24])
            => DROP by Counter::FragmentOrphan,
        later_fragment_v4(6) => PASS by Counter::FragmentPassed,
        check |h| { h.assert_counter(Counter::FragmentOrphan, 1); },
    ];
    ipv4_later_fragment_with_another_id_is_dropped: FIXTURE, [
        first_fragment_v4() => PASS by rule("cams-stream"),
        from(CAM1_MAC).ipv4(CAM1, NVR).ip_id(8).frag(0x0005).proto(6, &[0xbb; 24])
            => DROP by Counter::FragmentOrphan,
        check |h| { h.assert_counter(Counter::FragmentOrphan, 1); },
    ];
    ipv4_fragments_of_a_denied_first_fragment_are_dropped: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).ip_id(7).frag(0x2000).tcp(40000, 22).syn().payload(&[0xaa; 16])
            => DROP by rule("default"),
        later_fragment_v4(6) => DROP by Counter::FragmentOrphan,
        check |h| { h.assert_counter(Counter::FragmentOrphan, 1); h.assert_rule("default", 1); },
    ];
    ipv4_tiny_first_fragment_is_dropped: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).ip_id(7).frag(0x2000).proto(6, &ports(40000, 554)[..8])
            => DROP by Counter::MalformedFragment,
        from(OFFICE_MAC).ipv4(OFFICE, WEB).ip_id(7).frag(0x2000).proto(17, &[0x9c, 0x40, 0, 53])
            => DROP by Counter::MalformedFragment,
        check |h| { h.assert_counter(Counter::MalformedFragment, 2); },
    ];
    ipv4_tcp_fragment_at_offset_8_is_dropped: FIXTURE, [
        first_fragment_v4() => PASS by rule("cams-stream"),
        from(CAM1_MAC).ipv4(CAM1, NVR).ip_id(7).frag(0x0001).proto(6, &ports(40000, 22))
            => DROP by Counter::MalformedFragment,
        check |h| { h.assert_counter(Counter::MalformedFragment, 1); h.assert_counter(Counter::FragmentPassed, 0); },
    ];
    ipv4_ping_of_death_is_dropped: FIXTURE, [
        from(NVR_MAC).ipv4(NVR, CAM1).ip_id(7).frag(0x1fff).proto(1, &[0; 16])
            => DROP by Counter::MalformedFragment,
        check |h| { h.assert_counter(Counter::MalformedFragment, 1); },
    ];
    ipv4_dont_fragment_with_more_fragments_is_dropped: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).frag(0x6000).tcp(40000, 554).syn() => DROP by Counter::MalformedIpv4,
        check |h| { h.assert_counter(Counter::MalformedIpv4, 1); },
    ];
    ipv4_reserved_flag_is_dropped: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).frag(0x8000).tcp(40000, 554).syn() => DROP by Counter::MalformedIpv4,
        check |h| { h.assert_counter(Counter::MalformedIpv4, 1); },
    ];
    ipv4_dont_fragment_alone_is_judged_normally: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).frag(0x4000).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
    ];
    ipv4_overlapping_first_fragment_rewriting_the_ports_is_judged_and_dropped: FIXTURE, [
        first_fragment_v4() => PASS by rule("cams-stream"),
        // A second piece at offset 0 with the same id carries a denied port (22) where the first
        // said 554 (the Sturges/Novak overlap): every piece that holds ports is judged on them, so
        // the rewrite never reaches the recorder, with or without "more fragments".
        from(CAM1_MAC).ipv4(CAM1, NVR).ip_id(7).frag(0x2000).tcp(40000, 22).syn().payload(&[0xaa; 16])
            => DROP by rule("default"),
        from(CAM1_MAC).ipv4(CAM1, NVR).ip_id(7).frag(0x0000).tcp(40000, 22).syn()
            => DROP by rule("default"),
        // Another source port towards the allowed port is a new flow the rule allows.
        from(CAM1_MAC).ipv4(CAM1, NVR).ip_id(7).frag(0x2000).tcp(40001, 554).syn().payload(&[0xaa; 16])
            => PASS by rule("cams-stream"),
        check |h| { h.assert_rule("default", 2); h.assert_rule("cams-stream", 2); h.assert_counter(Counter::FragmentPassed, 0); },
    ];
    ipv4_later_fragments_overlapping_the_first_can_not_reach_its_ports: FIXTURE, [
        // Ports and TCP flags lie in the first 16 bytes of L4: a later piece at offset 8 is refused
        // (RFC 1858), and one at 16 or beyond overlaps only bytes no verdict reads, so it follows
        // its first fragment. A later piece is never judged on its own bytes.
        first_fragment_v4() => PASS by rule("cams-stream"),
        from(CAM1_MAC).ipv4(CAM1, NVR).ip_id(7).frag(0x2001).proto(6, &ports(40000, 22))
            => DROP by Counter::MalformedFragment,
        from(CAM1_MAC).ipv4(CAM1, NVR).ip_id(7).frag(0x2002).proto(6, &ports(40000, 22))
            => PASS by Counter::FragmentPassed,
        // UDP's header is 8 bytes, so offset 8 already lies past it.
        from(OFFICE_MAC).ipv4(OFFICE, WEB).ip_id(9).frag(0x2000).udp(40053, 53).payload(&[0xaa; 16])
            => PASS by rule("office-internet"),
        from(OFFICE_MAC).ipv4(OFFICE, WEB).ip_id(9).frag(0x0001).proto(17, &udp_with_length(40053, 22, 24, &[0; 16]))
            => PASS by Counter::FragmentPassed,
        // Pieces of a datagram whose first fragment was denied never pass, overlapping or not.
        from(CAM1_MAC).ipv4(CAM1, NVR).ip_id(8).frag(0x2000).tcp(40002, 22).syn().payload(&[0xaa; 16])
            => DROP by rule("default"),
        for off in ([2u16, 3, 5]) from(CAM1_MAC).ipv4(CAM1, NVR).ip_id(8).frag(0x2000 | off).proto(6, &ports(40002, 554))
            => DROP by Counter::FragmentOrphan,
        check |h| { h.assert_counter(Counter::FragmentPassed, 2); h.assert_counter(Counter::FragmentOrphan, 3); },
    ];
}

// ----- IPv6 fragments -------------------------------------------------------------------------

cases! {
    ipv6_atomic_fragment_is_judged_as_unfragmented: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(0, false, 5).tcp(40000, 554).syn()
            => PASS by rule("cams-stream"),
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(0, false, 6).tcp(40000, 22).syn()
            => DROP by rule("default"),
        check |h| { h.assert_rule("cams-stream", 1); h.assert_rule("default", 1); h.assert_counter(Counter::FragmentOrphan, 0); },
    ];
    ipv6_first_fragment_of_allowed_flow_passes_and_later_fragment_follows: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(0, true, 77).tcp(40000, 554).syn().payload(&[0xaa; 16])
            => PASS by rule("cams-stream"),
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(5, false, 77).proto(6, &[0xbb; 24])
            => PASS by Counter::FragmentPassed,
        check |h| { h.assert_counter(Counter::FragmentPassed, 1); h.assert_rule("cams-stream", 2); },
    ];
    ipv6_fragments_with_destination_options_after_the_fragment_header_pass: FIXTURE, [
        // Frag -> DestOpts -> TCP: every fragment's Fragment header says "next: 60"; only the first
        // carries the TCP header. Later fragments must match the first on that next-header value.
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(0, true, 78).ext(60, &[1, 4, 0, 0, 0, 0])
            .tcp(40000, 554).syn().payload(&[0xaa; 16]) => PASS by rule("cams-stream"),
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(5, false, 78).proto(60, &[0xbb; 24])
            => PASS by Counter::FragmentPassed,
        // Same id, but a fragment header announcing another protocol: no match.
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(5, false, 78).proto(6, &[0xbb; 24])
            => DROP by Counter::FragmentOrphan,
        check |h| { h.assert_counter(Counter::FragmentPassed, 1); h.assert_counter(Counter::FragmentOrphan, 1); },
    ];
    ipv6_later_fragment_of_another_protocol_is_dropped: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(0, true, 77).tcp(40000, 554).syn().payload(&[0xaa; 16])
            => PASS by rule("cams-stream"),
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(5, false, 77).proto(17, &[0xbb; 24])
            => DROP by Counter::FragmentOrphan,
        check |h| { h.assert_counter(Counter::FragmentOrphan, 1); },
    ];
    ipv6_later_fragment_from_another_source_is_dropped: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(0, true, 77).tcp(40000, 554).syn().payload(&[0xaa; 16])
            => PASS by rule("cams-stream"),
        from(CAM2_MAC).ipv6(CAM2_6, NVR_6).v6_frag(5, false, 77).proto(6, &[0xbb; 24])
            => DROP by Counter::FragmentOrphan,
        check |h| { h.assert_counter(Counter::FragmentOrphan, 1); },
    ];
    ipv6_lone_later_fragment_is_dropped_as_orphan: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(5, false, 77).proto(6, &ports(40000, 554))
            => DROP by Counter::FragmentOrphan,
        check |h| { h.assert_counter(Counter::FragmentOrphan, 1); },
    ];
    ipv6_later_fragment_with_another_id_is_dropped: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(0, true, 77).tcp(40000, 554).syn().payload(&[0xaa; 16])
            => PASS by rule("cams-stream"),
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(5, false, 78).proto(6, &[0xbb; 24])
            => DROP by Counter::FragmentOrphan,
        check |h| { h.assert_counter(Counter::FragmentOrphan, 1); },
    ];
    ipv6_tiny_first_fragment_is_dropped: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(0, true, 77).proto(6, &ports(40000, 554)[..8])
            => DROP by Counter::MalformedFragment,
        check |h| { h.assert_counter(Counter::MalformedFragment, 1); },
    ];
    ipv6_tiny_udp_first_fragment_is_dropped: FIXTURE, [
        // Four bytes of UDP: the ports but not the length (RFC 7112: the first fragment carries the
        // whole header chain and L4 header).
        from(OFFICE_MAC).ipv6(OFFICE_6, WEB_6).v6_frag(0, true, 77).proto(17, &[0x9c, 0x40, 0, 53])
            => DROP by Counter::MalformedFragment,
        from(OFFICE_MAC).ipv6(OFFICE_6, WEB_6).v6_frag(0, true, 78).proto(17, &[0x9c, 0x40, 0, 53, 0, 40, 0])
            => DROP by Counter::MalformedFragment,
        // A whole UDP header in a first fragment is judged (its length counts the whole datagram).
        from(OFFICE_MAC).ipv6(OFFICE_6, WEB_6).v6_frag(0, true, 79).proto(17, &udp_with_length(40000, 53, 200, &[0; 8]))
            => PASS by rule("office-internet"),
        check |h| { h.assert_counter(Counter::MalformedFragment, 2); },
    ];
    ipv6_overlapping_first_fragment_rewriting_the_ports_is_judged_and_dropped: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(0, true, 77).tcp(40000, 554).syn().payload(&[0xaa; 16])
            => PASS by rule("cams-stream"),
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(0, true, 77).tcp(40000, 22).syn().payload(&[0xaa; 16])
            => DROP by rule("default"),
        check |h| { h.assert_rule("default", 1); },
    ];
    ipv6_later_fragments_overlapping_the_first_fragments_headers_are_dropped: FIXTURE, [
        // As in IPv4 (RFC 1858): offset 8 would rewrite TCP's flags and data offset.
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(0, true, 77).tcp(40000, 554).syn().payload(&[0xaa; 16])
            => PASS by rule("cams-stream"),
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(1, true, 77).proto(6, &ports(40000, 22))
            => DROP by Counter::MalformedFragment,
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(2, false, 77).proto(6, &[0xbb; 24])
            => PASS by Counter::FragmentPassed,
        // With destination options after the Fragment header the TCP header starts at 8, so a
        // piece at 8, 16 or 24 would rewrite its ports or flags.
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(0, true, 78).ext(60, &[1, 4, 0, 0, 0, 0])
            .tcp(40000, 554).syn().payload(&[0xaa; 16]) => PASS by rule("cams-stream"),
        for units in ([1u16, 2, 3]) from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(units, true, 78).proto(60, &ports(40000, 22))
            => DROP by Counter::MalformedFragment,
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(4, false, 78).proto(60, &[0xbb; 24])
            => PASS by Counter::FragmentPassed,
        check |h| { h.assert_counter(Counter::MalformedFragment, 4); h.assert_counter(Counter::FragmentPassed, 2); },
    ];
    ipv6_two_fragment_headers_are_dropped: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).v6_frag(0, false, 1).v6_frag(0, false, 2).tcp(40000, 554).syn()
            => DROP by Counter::MalformedIpv6,
        check |h| { h.assert_counter(Counter::MalformedIpv6, 1); },
    ];
    ipv6_fragment_header_with_reserved_bits_is_dropped: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).ext(44, &[1, 0, 0, 0, 0, 0, 1]).tcp(40000, 554).syn()
            => DROP by Counter::MalformedIpv6,
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).ext(44, &[0, 0, 2, 0, 0, 0, 1]).tcp(40000, 554).syn()
            => DROP by Counter::MalformedIpv6,
        check |h| { h.assert_counter(Counter::MalformedIpv6, 2); },
    ];
}

// ----- Spoofing -------------------------------------------------------------------------------

cases! {
    listed_mac_with_another_devices_address_is_spoofed_v4: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM2, NVR).tcp(40000, 554).syn()
            => DROP by denied("cam-1") & spoofed("cam-1") & Counter::QuarantineTrips,
        check |h| {
            h.assert_spoofed("cam-1", 1);
            h.assert_device("cam-1", [0, 1, 0]);
            h.assert_spoofed("cam-2", 0);
            h.assert_device("cam-2", [0, 0, 0]);
            h.assert_rule("default", 0);
        },
    ];
    listed_mac_with_another_devices_address_is_spoofed_v6: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM2_6, NVR_6).tcp(40000, 554).syn()
            => DROP by denied("cam-1") & spoofed("cam-1") & Counter::QuarantineTrips,
        check |h| { h.assert_spoofed("cam-1", 1); },
    ];
    listed_mac_with_an_unlisted_address_is_spoofed: FIXTURE, [
        from(CAM1_MAC).ipv4("10.1.1.99", NVR).tcp(40000, 554).syn()
            => DROP by denied("cam-1") & spoofed("cam-1") & Counter::QuarantineTrips,
        from(CAM1_MAC).ipv6("fd00:1:1::99", NVR_6).tcp(40000, 554).syn()
            => DROP by denied("cam-1") & spoofed("cam-1"),
        check |h| { h.assert_spoofed("cam-1", 2); h.assert_device("cam-1", [0, 2, 0]); },
    ];
    listed_address_from_an_unlisted_mac_is_spoofed: FIXTURE, [
        from(STRANGER_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn()
            => DROP by denied("unknown") & spoofed("unknown"),
        from(STRANGER_MAC).ipv6(CAM1_6, NVR_6).tcp(40000, 554).syn()
            => DROP by denied("unknown") & spoofed("unknown"),
        check |h| {
            h.assert_spoofed("unknown", 2);
            h.assert_device("unknown", [0, 2, 0]);
            h.assert_spoofed("cam-1", 0);
            assert!(h.discovered(STRANGER_MAC).is_some(), "the forger is discovered");
        },
    ];
    forging_a_listed_address_does_not_quarantine_or_blame_its_owner: FIXTURE, [
        from(STRANGER_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn()
            => DROP by denied("unknown") & spoofed("unknown"),
        // The real camera keeps working.
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40001, 554).syn() => PASS by rule("cams-stream"),
        check |h| {
            assert_eq!(h.state("cam-1").quarantine_until_ns, 0, "the victim of a forged address is not quarantined");
            h.assert_spoofed("cam-1", 0);
            h.assert_device("cam-1", [1, 0, 0]);
            h.assert_counter(Counter::QuarantineTrips, 0);
        },
    ];
    routers_own_address_as_source_is_spoofed: FIXTURE, [
        from(OFFICE_MAC).ipv4(ROUTER_OFFICE, PRINTER).tcp(40000, 9100).syn()
            => DROP by denied("office-pc") & spoofed("office-pc") & Counter::QuarantineTrips,
        from(STRANGER_MAC).ipv6(ROUTER_CAMS_6, NVR_6).tcp(40000, 554).syn()
            => DROP by denied("unknown") & spoofed("unknown"),
        check |h| { h.assert_spoofed("office-pc", 1); h.assert_spoofed("unknown", 1); },
    ];
    spoofing_quarantines_the_sending_device: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM2, NVR).tcp(40000, 554).syn()
            => DROP by denied("cam-1") & spoofed("cam-1") & Counter::QuarantineTrips,
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40001, 554).syn() => DROP by rule("default"),
        check |h| {
            let s = h.state("cam-1");
            assert!(s.quarantine_until_ns > 0, "cam-1 is quarantined: {s:?}");
            assert_eq!(s.quarantine_reason, QuarantineReason::Spoofing as u32);
            assert_eq!(h.state("cam-2").quarantine_until_ns, 0);
            h.assert_counter(Counter::QuarantineTrips, 1);
        },
    ];
    spoofed_allow_lets_a_spoofed_packet_through_and_counts_it: spoof_allow_fixture(), [
        from(CAM1_MAC).ipv4(CAM2, NVR).tcp(40000, 554).syn()
            => PASS by rule("cams-stream") & spoofed("cam-1"),
        from(CAM1_MAC).ipv4("10.1.1.99", NVR).tcp(40000, 554).syn()
            => PASS by rule("cams-stream") & spoofed("cam-1"),
        from(CAM1_MAC).ipv6(CAM2_6, NVR_6).tcp(40000, 554).syn()
            => PASS by rule("cams-stream") & spoofed("cam-1"),
        check |h| {
            h.assert_spoofed("cam-1", 3);
            h.assert_device("cam-1", [3, 0, 0]);
            h.assert_rule("cams-stream", 3);
            assert_eq!(h.state("cam-1").quarantine_until_ns, 0);
        },
    ];
    spoofed_allow_still_judges_the_rules: spoof_allow_fixture(), [
        from(CAM1_MAC).ipv4(CAM2, PRINTER).tcp(40000, 9100).syn()
            => DROP by rule("default") & spoofed("cam-1"),
        check |h| { h.assert_spoofed("cam-1", 1); h.assert_rule("default", 1); },
    ];
}

// ----- Evidence: DHCP, mDNS and SSDP copied for the inventory, the verdict untouched ----------

/// A DHCPv4, mDNS or SSDP body stand-in: the datapath copies bytes, the daemon parses them.
const EVIDENCE_BODY: &[u8] = &[0x5a; 300];
/// More than `MAX_EVIDENCE_PAYLOAD`: copied cut.
const LONG_EVIDENCE_BODY: &[u8] = &[0x5b; 1_400];

fn dhcp_discover(m: &str) -> Frame {
    from(m)
        .ipv4("0.0.0.0", "255.255.255.255")
        .udp(68, 67)
        .payload(EVIDENCE_BODY)
}

cases! {
    dhcp_discover_is_copied_as_evidence_and_still_passes_by_its_rule: FIXTURE, [
        dhcp_discover(CAM1_MAC) => PASS by rule("dhcp-dns") & Counter::EvidenceSent,
        check |h| { h.assert_device("cam-1", [1, 0, 0]); h.assert_counter(Counter::EvidenceRateLimited, 0); },
    ];
    dhcp_discover_is_copied_as_evidence_and_still_dropped_without_a_rule: no_dhcp_fixture(), [
        dhcp_discover(CAM1_MAC) => DROP by rule("default") & Counter::EvidenceSent,
        check |h| { h.assert_device("cam-1", [0, 1, 0]); },
    ];
    evidence_from_unknown_sources_is_copied_and_they_stay_unknown: FIXTURE, [
        dhcp_discover(STRANGER_MAC) => PASS by rule("dhcp-dns") & Counter::EvidenceSent,
        from(STRANGER_MAC).ipv6("fe80::99", "ff02::1:2").udp(546, 547).payload(EVIDENCE_BODY)
            => PASS by rule("dhcp-dns") & Counter::EvidenceSent,
        from(STRANGER_MAC).ipv4("10.1.1.150", "224.0.0.251").udp(5353, 5353).payload(EVIDENCE_BODY)
            => DROP by rule("default") & Counter::EvidenceSent,
        from(STRANGER_MAC).ipv6("fe80::99", "ff02::c").udp(40000, 1900).payload(EVIDENCE_BODY)
            => DROP by rule("default") & Counter::EvidenceSent,
        check |h| {
            h.assert_device("unknown", [2, 2, 0]);
            assert!(h.discovered(STRANGER_MAC).is_some(), "still discovered as unknown");
        },
    ];
    mdns_and_ssdp_from_a_listed_device_are_copied_and_judged_as_before: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, "224.0.0.251").udp(5353, 5353).payload(EVIDENCE_BODY)
            => DROP by rule("default") & Counter::EvidenceSent,
        from(CAM1_MAC).ipv6(CAM1_6, "ff02::fb").udp(5353, 5353).payload(EVIDENCE_BODY)
            => DROP by rule("default") & Counter::EvidenceSent,
        from(CAM1_MAC).ipv4(CAM1, "239.255.255.250").udp(40000, 1900).payload(EVIDENCE_BODY)
            => DROP by rule("default") & Counter::EvidenceSent,
        // An SSDP search response, unicast from 1900 to the searcher: cameras may reach no office.
        from(CAM1_MAC).ipv4(CAM1, OFFICE).udp(1900, 40000).payload(EVIDENCE_BODY)
            => DROP by rule("no-lateral-cameras") & Counter::EvidenceSent,
        check |h| { h.assert_device("cam-1", [0, 4, 0]); h.assert_counter(Counter::EvidenceSent, 4); },
    ];
    a_long_evidence_frame_is_copied_cut_and_passes_whole: FIXTURE, [
        from(CAM1_MAC).ipv4("0.0.0.0", "255.255.255.255").udp(68, 67).payload(LONG_EVIDENCE_BODY)
            => PASS by rule("dhcp-dns") & Counter::EvidenceSent,
    ];
    ordinary_udp_server_replies_and_empty_datagrams_are_no_evidence: FIXTURE, [
        from(OFFICE_MAC).ipv4(OFFICE, WEB).udp(40000, 53).payload(EVIDENCE_BODY) => PASS by rule("office-internet"),
        // A DHCP server's offer and a one-shot mDNS query describe no sender.
        from(STRANGER_MAC).ipv4("10.1.1.200", "255.255.255.255").udp(67, 68).payload(EVIDENCE_BODY) => DROP by rule("default"),
        from(CAM1_MAC).ipv4(CAM1, "224.0.0.251").udp(40001, 5353).payload(EVIDENCE_BODY) => DROP by rule("default"),
        from(CAM1_MAC).ipv4("0.0.0.0", "255.255.255.255").udp(68, 67) => PASS by rule("dhcp-dns"),
        // Evidence ports over TCP are no evidence either.
        from(CAM1_MAC).ipv4(CAM1, "239.255.255.250").tcp(40000, 1900).syn() => DROP by rule("default"),
        check |h| {
            h.assert_counter(Counter::EvidenceSent, 0);
            h.assert_counter(Counter::EvidenceRateLimited, 0);
        },
    ];
    evidence_beyond_a_macs_budget_is_counted_not_copied_and_the_verdict_stays: FIXTURE, [
        for _ in (0..enforcer_common::evidence::EVIDENCE_PER_MAC_PER_SEC)
            dhcp_discover(CAM1_MAC) => PASS by rule("dhcp-dns") & Counter::EvidenceSent,
        dhcp_discover(CAM1_MAC) => PASS by rule("dhcp-dns") & Counter::EvidenceRateLimited,
        // Another MAC has a budget of its own.
        dhcp_discover(CAM2_MAC) => PASS by rule("dhcp-dns") & Counter::EvidenceSent,
        check |h| {
            h.assert_device("cam-1", [u64::from(enforcer_common::evidence::EVIDENCE_PER_MAC_PER_SEC) + 1, 0, 0]);
            h.assert_counter(Counter::EvidenceDropped, 0);
        },
    ];
}

/// The copied frame holds the sender, its kind and the UDP payload, cut at the bound.
#[test]
fn evidence_frames_carry_sender_kind_and_payload_cut_at_the_bound() {
    use enforcer_common::evidence::{
        EVIDENCE_MAP, EvidenceFrame, EvidenceKind, MAX_EVIDENCE_PAYLOAD,
    };
    let name = "evidence_frames_carry_sender_kind_and_payload_cut_at_the_bound";
    let Some(mut h) = Harness::new(name, Setup::from(FIXTURE)) else {
        return;
    };
    h.expect(
        "discover",
        &dhcp_discover(CAM1_MAC),
        PASS,
        &(rule("dhcp-dns") & Counter::EvidenceSent),
    );
    let ssdp = from(STRANGER_MAC)
        .vlan(7)
        .ipv6("fe80::99", "ff02::c")
        .udp(40000, 1900)
        .payload(LONG_EVIDENCE_BODY);
    h.send("ssdp", &ssdp);
    let map = h.dp.take_map(EVIDENCE_MAP).expect("evidence ring");
    let mut ring = aya::maps::RingBuf::try_from(map).expect("a ring buffer");
    let mut frames = Vec::new();
    while let Some(item) = ring.next() {
        assert_eq!(item.len(), size_of::<EvidenceFrame>(), "one whole record");
        // SAFETY: the record is an `EvidenceFrame` as the program wrote it (size checked above).
        frames.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<EvidenceFrame>()) });
    }
    assert_eq!(frames.len(), 2, "both frames copied");
    let (dhcp, ssdp) = (&frames[0], &frames[1]);
    assert_eq!(EvidenceKind::from_u8(dhcp.kind), Some(EvidenceKind::Dhcpv4));
    assert_eq!(dhcp.src_mac, mac(CAM1_MAC));
    assert_eq!(dhcp.payload(), EVIDENCE_BODY);
    assert_eq!(usize::from(dhcp.udp_len), EVIDENCE_BODY.len());
    assert_eq!(EvidenceKind::from_u8(ssdp.kind), Some(EvidenceKind::Ssdp));
    assert_eq!(
        (ssdp.src_mac, ssdp.vlan, ssdp.family),
        (mac(STRANGER_MAC), 7, 6)
    );
    assert_eq!(ssdp.payload(), &LONG_EVIDENCE_BODY[..MAX_EVIDENCE_PAYLOAD]);
    assert_eq!(usize::from(ssdp.udp_len), LONG_EVIDENCE_BODY.len());
}

// ----- Router, broadcast, DHCP, networks, unknown sources -------------------------------------

cases! {
    dhcp_discover_passes_when_a_rule_allows_udp_67_to_the_router: FIXTURE, [
        from(CAM1_MAC).ipv4("0.0.0.0", "255.255.255.255").udp(68, 67) => PASS by rule("dhcp-dns"),
        check |h| { h.assert_rule("dhcp-dns", 1); h.assert_device("cam-1", [1, 0, 0]); h.assert_spoofed("cam-1", 0); },
    ];
    dhcp_discover_is_dropped_without_a_rule: no_dhcp_fixture(), [
        from(CAM1_MAC).ipv4("0.0.0.0", "255.255.255.255").udp(68, 67) => DROP by rule("default"),
        check |h| { h.assert_rule("default", 1); h.assert_spoofed("cam-1", 0); },
    ];
    rogue_dhcp_server_offers_are_judged_as_traffic_to_clients_and_dropped: FIXTURE, [
        // A DHCP server answers from 67 to 68: broadcast (judged as to `router`), or unicast to the
        // offered address (an unlisted address on the segment, or a listed device's). Only
        // `udp/67` to the router is allowed, so every offer and ack is dropped, from an unknown
        // device or a listed one, and over IPv6 (DHCPv6 advertise/reply, 547 -> 546) too.
        from(STRANGER_MAC).ipv4("10.1.1.200", "255.255.255.255").udp(67, 68) => DROP by rule("default"),
        from(STRANGER_MAC).ipv4("10.1.1.200", "10.1.1.150").udp(67, 68) => DROP by rule("default"),
        from(STRANGER_MAC).ipv4("10.1.1.200", CAM2).udp(67, 68) => DROP by rule("default"),
        from(STRANGER_MAC).ipv4("0.0.0.0", "255.255.255.255").udp(67, 68) => DROP by rule("default"),
        from(CAM1_MAC).ipv4(CAM1, "255.255.255.255").udp(67, 68) => DROP by rule("default"),
        from(CAM1_MAC).ipv4(CAM1, CAM2).udp(67, 68) => DROP by rule("default"),
        from(STRANGER_MAC).ipv6("fe80::99", "fe80::11").udp(547, 546) => DROP by rule("default"),
        from(CAM1_MAC).ipv6("fe80::10", "fe80::11").udp(547, 546) => DROP by rule("default"),
        check |h| {
            h.assert_rule("default", 8);
            h.assert_device("unknown", [0, 5, 0]);
            h.assert_device("cam-1", [0, 3, 0]);
            assert!(h.discovered(STRANGER_MAC).is_some(), "the rogue server is discovered");
        },
    ];
    rogue_dhcp_offer_passes_only_where_a_rule_allows_udp_68_to_the_router: FIXTURE.replace(
        "allow: [udp/67, udp/547, udp/53, tcp/53]",
        "allow: [udp/67, udp/68, udp/547, udp/53, tcp/53]",
    ), [
        from(STRANGER_MAC).ipv4("10.1.1.200", "255.255.255.255").udp(67, 68) => PASS by rule("dhcp-dns"),
        // Unicast to a device is no traffic to the router: still denied.
        from(STRANGER_MAC).ipv4("10.1.1.200", CAM2).udp(67, 68) => DROP by rule("default"),
    ];
    router_destination_is_judged_as_router: FIXTURE, [
        from(OFFICE_MAC).ipv4(OFFICE, ROUTER_OFFICE).tcp(40000, 22).syn() => PASS by rule("office-admin"),
        from(CAM1_MAC).ipv4(CAM1, ROUTER_CAMS).tcp(40000, 22).syn() => DROP by rule("default"),
        // The router's address in another zone is still `router`: cameras get no ssh there either.
        from(CAM1_MAC).ipv4(CAM1, ROUTER_OFFICE).tcp(40000, 22).syn() => DROP by rule("default"),
        check |h| { h.assert_rule("office-admin", 1); h.assert_rule("default", 2); },
    ];
    multicast_and_link_local_destinations_are_judged_as_router: FIXTURE, [
        from(OFFICE_MAC).ipv6(OFFICE_6, "ff02::1").echo_request(3) => PASS by rule("office-admin"),
        from(OFFICE_MAC).ipv6(OFFICE_6, "fe80::1").echo_request(4) => PASS by rule("office-admin"),
        from(CAM1_MAC).ipv4(CAM1, "224.0.0.251").udp(5353, 5353) => DROP by rule("default"),
        from(CAM1_MAC).ipv4(CAM1, "255.255.255.255").udp(5000, 5000) => DROP by rule("default"),
        check |h| { h.assert_rule("office-admin", 2); h.assert_rule("default", 2); },
    ];
    network_destination_is_allowed_for_one_zone_and_denied_for_another_v4: FIXTURE, [
        from(OFFICE_MAC).ipv4(OFFICE, WEB).tcp(40000, 443).syn() => PASS by rule("office-internet"),
        from(CAM1_MAC).ipv4(CAM1, WEB).tcp(40000, 443).syn() => DROP by rule("default"),
        check |h| { h.assert_rule("office-internet", 1); h.assert_rule("default", 1); },
    ];
    network_destination_is_allowed_for_one_zone_and_denied_for_another_v6: FIXTURE, [
        from(OFFICE_MAC).ipv6(OFFICE_6, WEB_6).tcp(40000, 443).syn() => PASS by rule("office-internet"),
        from(CAM1_MAC).ipv6(CAM1_6, WEB_6).tcp(40000, 443).syn() => DROP by rule("default"),
        check |h| { h.assert_rule("office-internet", 1); },
    ];
    internet_reply_to_an_allowed_flow_passes: FIXTURE, [
        from(OFFICE_MAC).ipv4(OFFICE, WEB).tcp(40000, 443).syn() => PASS by rule("office-internet"),
        from("02:00:00:00:ee:01").ipv4(WEB, OFFICE).tcp(443, 40000).syn_ack() => PASS by Counter::FlowHit,
        from("02:00:00:00:ee:01").ipv4(WEB, OFFICE).tcp(443, 40001).syn_ack() => DROP by rule("default"),
        check |h| { h.assert_counter(Counter::FlowHit, 1); },
    ];
    listed_device_forging_an_internet_reply_into_another_devices_flow_is_dropped: FIXTURE, [
        from(OFFICE_MAC).ipv4(OFFICE, WEB).tcp(40000, 443).syn() => PASS by rule("office-internet"),
        from(OFFICE_MAC).ipv4(OFFICE, "8.8.8.8").udp(40053, 53) => PASS by rule("office-internet"),
        // A camera answers in the internet's name: cameras may not reach the office.
        from(CAM1_MAC).ipv4(WEB, OFFICE).tcp(443, 40000).syn_ack()
            => DROP by denied("cam-1") & spoofed("cam-1") & Counter::QuarantineTrips,
        from(CAM1_MAC).ipv4("8.8.8.8", OFFICE).udp(53, 40053) => DROP by denied("cam-1") & spoofed("cam-1"),
        from(CAM1_MAC).ipv6(WEB_6, OFFICE_6).tcp(443, 40000).syn_ack()
            => DROP by denied("cam-1") & spoofed("cam-1"),
        // The real replies, through the uplink, still pass.
        from("02:00:00:00:ee:01").ipv4(WEB, OFFICE).tcp(443, 40000).syn_ack() => PASS by Counter::FlowHit,
        from("02:00:00:00:ee:01").ipv4("8.8.8.8", OFFICE).udp(53, 40053) => PASS by Counter::FlowHit,
        check |h| {
            h.assert_counter(Counter::FlowHit, 2);
            h.assert_spoofed("cam-1", 3);
            h.assert_device("cam-1", [0, 3, 0]);
        },
    ];
    listed_device_forging_an_icmp_error_from_the_internet_is_dropped: FIXTURE, [
        from(OFFICE_MAC).ipv4(OFFICE, WEB).tcp(40000, 443).syn() => PASS by rule("office-internet"),
        from(CAM1_MAC).ipv4(WEB, OFFICE)
            .icmp(3, 4, &quote(&from(OFFICE_MAC).ipv4(OFFICE, WEB).tcp(40000, 443).syn(), 20))
                => DROP by denied("cam-1") & spoofed("cam-1") & Counter::QuarantineTrips,
        check |h| { h.assert_counter(Counter::IcmpRelated, 0); },
    ];
    listed_device_forging_a_later_fragment_of_another_devices_datagram_is_dropped: FIXTURE, [
        from(OFFICE_MAC).ipv4(OFFICE, WEB).ip_id(9).frag(0x2000).udp(40053, 53).payload(&[0xaa; 16])
            => PASS by rule("office-internet"),
        // The camera sends the "rest" of the office's datagram to the internet.
        from(CAM1_MAC).ipv4(OFFICE, WEB).ip_id(9).frag(0x0003).proto(17, &[0xbb; 24])
            => DROP by Counter::FragmentOrphan,
        from(OFFICE_MAC).ipv4(OFFICE, WEB).ip_id(9).frag(0x0003).proto(17, &[0xbb; 24])
            => PASS by Counter::FragmentPassed,
        check |h| { h.assert_counter(Counter::FragmentPassed, 1); h.assert_counter(Counter::FragmentOrphan, 1); },
    ];
    spoofed_allow_lets_a_listed_device_answer_for_an_unbound_address: spoof_allow_fixture(), [
        from(OFFICE_MAC).ipv4(OFFICE, WEB).tcp(40000, 443).syn() => PASS by rule("office-internet"),
        from(CAM1_MAC).ipv4(WEB, OFFICE).tcp(443, 40000).syn_ack() => PASS by Counter::FlowHit,
        check |h| { h.assert_counter(Counter::FlowHit, 1); },
    ];
    unknown_device_falls_in_the_unknown_zone_and_is_discovered: LAN_ONLY, [
        from(STRANGER_MAC).vlan(10).ipv4("10.1.1.200", NVR).tcp(40000, 554).syn() => DROP by rule("default"),
        // The unknown zone still gets what `any` grants: DHCP.
        from(STRANGER_MAC).ipv4("0.0.0.0", "255.255.255.255").udp(68, 67) => PASS by rule("dhcp-dns"),
        check |h| {
            h.assert_device("unknown", [1, 1, 0]);
            h.assert_rule("default", 1);
            h.assert_rule("dhcp-dns", 1);
            let d = h.discovered(STRANGER_MAC).expect("the stranger is discovered");
            assert_eq!(d.packets, 2);
            assert_eq!(d.vlan, 0, "last seen untagged");
            assert_eq!(d.has_v4, 1);
        },
    ];
    unknown_device_with_a_link_local_address_is_discovered_in_the_full_site: FIXTURE, [
        from(STRANGER_MAC).ipv6("fe80::99", NVR_6).tcp(40000, 554).syn() => DROP by rule("default"),
        check |h| {
            h.assert_device("unknown", [0, 1, 0]);
            let d = h.discovered(STRANGER_MAC).expect("the stranger is discovered");
            assert_eq!(d.has_v6, 0, "a link-local address is not recorded");
            assert_eq!(d.last_dport, 554);
        },
    ];
    unknown_device_on_an_enforced_segment_is_unknown_even_inside_a_catch_all_network: FIXTURE, [
        // `internet: 0.0.0.0/0` covers 10.1.1.200 too, but it lies on an enforced segment
        // (10.1.1.0/24): an unlisted device there is unknown (quarantined, discovered), never
        // `network:internet`.
        from(STRANGER_MAC).ipv4("10.1.1.200", NVR).tcp(40000, 554).syn() => DROP by rule("default"),
        from(STRANGER_MAC).ipv6("fd00:1:1::200", NVR_6).tcp(40000, 554).syn() => DROP by rule("default"),
        check |h| {
            h.assert_rule("default", 2);
            h.assert_device("unknown", [0, 2, 0]);
            assert!(h.discovered(STRANGER_MAC).is_some(), "the stranger is discovered");
        },
    ];
    off_segment_source_is_a_member_of_the_network_that_covers_it: FIXTURE, [
        // Routed traffic (an address on no enforced segment) is judged as its network.
        from(STRANGER_MAC).ipv4(WEB, OFFICE).tcp(443, 40000).syn() => DROP by rule("default"),
        check |h| {
            h.assert_rule("default", 1);
            assert!(datapath::discovered(&h.dp).expect("discovered").is_empty(), "internet hosts are not devices");
        },
    ];
    traffic_from_a_network_is_counted_on_the_network_not_as_unknown: FIXTURE, [
        from(OFFICE_MAC).ipv4(OFFICE, WEB).tcp(40002, 443).syn() => PASS by rule("office-internet"),
        from(ROUTER_MAC_UPSTREAM).ipv4(WEB, OFFICE).tcp(443, 40002).syn_ack()
            => PASS by allowed("network:internet") & Counter::FlowHit,
        from(ROUTER_MAC_UPSTREAM).ipv4(WEB, OFFICE).tcp(443, 40003).syn()
            => DROP by denied("network:internet") & rule("default"),
        check |h| {
            h.assert_device("office-pc", [1, 0, 0]);
            h.assert_device("network:internet", [1, 1, 0]);
            h.assert_device("unknown", [0, 0, 0]);
        },
    ];
    unlisted_address_on_an_enforced_segment_is_no_internet_destination: FIXTURE, [
        // office -> internet tcp/443 is allowed; 10.1.4.99 is no listed device but lies on the
        // printers' segment, so it is an unknown device, not the internet: denied.
        from(OFFICE_MAC).ipv4(OFFICE, "10.1.4.99").tcp(40000, 443).syn() => DROP by rule("default"),
        from(OFFICE_MAC).ipv4(OFFICE, WEB).tcp(40001, 443).syn() => PASS by rule("office-internet"),
        check |h| { h.assert_rule("default", 1); h.assert_rule("office-internet", 1); },
    ];
}

/// A locally administered unicast MAC, distinct for each `i`.
fn nth_stranger(i: u32) -> [u8; 6] {
    let b = i.to_be_bytes();
    [0x02, 0x99, b[0], b[1], b[2], b[3]]
}

/// Issue 12, finding 8: every new unlisted MAC is recorded, up to the table's capacity; beyond it
/// the LRU recycles the least recently seen, keeps the newest, and `discovered_new` still counts
/// every one, so none goes missing unaccounted. The kernel's LRU keeps up to 128 free entries per
/// possible CPU in reserve, so a full table holds slightly fewer than its capacity.
#[test]
fn discovery_table_records_every_new_mac_up_to_capacity_and_the_newest_beyond() {
    let Some(mut h) = Harness::new(
        "discovery_table_records_every_new_mac_up_to_capacity_and_the_newest_beyond",
        Setup::from(FIXTURE),
    ) else {
        return;
    };
    let capacity = enforcer_common::state::MAX_DISCOVERED;
    let send = |h: &mut Harness, range: std::ops::Range<u32>| {
        for i in range {
            let f = Frame::eth(nth_stranger(i))
                .ipv4("10.1.1.200", NVR)
                .tcp(40000, 554)
                .syn();
            assert_eq!(h.send("a new MAC", &f), DROP);
        }
    };
    let held = |h: &Harness| -> std::collections::HashSet<[u8; 6]> {
        datapath::discovered(&h.dp)
            .expect("discovered")
            .into_iter()
            .map(|(m, _)| m)
            .collect()
    };

    let below = capacity * 3 / 4;
    send(&mut h, 0..below);
    let found = held(&h);
    assert_eq!(
        found.len(),
        below as usize,
        "below capacity every new MAC is in the table"
    );
    assert!((0..below).all(|i| found.contains(&nth_stranger(i))));
    h.assert_counter(Counter::DiscoveredNew, u64::from(below));

    let above = capacity + capacity / 4;
    send(&mut h, below..above);
    let found = held(&h);
    // SAFETY: sysconf has no preconditions.
    let cpus = u32::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }).unwrap_or(1);
    assert!(
        found.len() <= capacity as usize && found.len() >= (capacity - 128 * cpus) as usize,
        "above capacity the table is full (less the kernel's per-CPU reserve): {} of {capacity}",
        found.len()
    );
    assert!(
        (above - 4_096..above).all(|i| found.contains(&nth_stranger(i))),
        "the newest MACs are kept"
    );
    h.assert_counter(Counter::DiscoveredNew, u64::from(above));
    // Every frame was judged (as the unknown zone's): none was lost before the table.
    h.assert_device("unknown", [0, u64::from(above), 0]);
}

// ----- Audit mode -----------------------------------------------------------------------------

cases! {
    audit_mode_passes_a_would_be_drop_and_counts_it_as_audit: audit_fixture(), [
        from(CAM1_MAC).ipv4(CAM1, OFFICE).tcp(40000, 445).syn()
            => PASS by audited("cam-1") & rule("no-lateral-cameras"),
        from(CAM1_MAC).ipv6(CAM1_6, PRINTER_6).tcp(40000, 9100).syn()
            => PASS by audited("cam-1") & rule("default"),
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        check |h| {
            h.assert_device("cam-1", [1, 0, 2]);
            h.assert_rule("no-lateral-cameras", 1);
            h.assert_rule("default", 1);
            h.assert_rule("cams-stream", 1);
        },
    ];
    audit_mode_still_drops_malformed_packets: audit_fixture(), [
        from(CAM1_MAC).ipv4(CAM1, NVR).ihl(4).tcp(40000, 554).syn() => DROP by Counter::MalformedIpv4,
        check |h| { h.assert_counter(Counter::MalformedIpv4, 1); },
    ];
    // `mode:` per zone and device (docs/learn.md): audit is the sender's, the rest enforces.
    a_zone_in_audit_passes_its_denials_as_audit_while_the_rest_of_the_site_enforces:
        printers_audit_fixture(), [
        from(PRINTER_MAC).ipv4(PRINTER, OFFICE).tcp(40000, 445).syn()
            => PASS by audited("printer-1") & rule("default"),
        from(CAM1_MAC).ipv4(CAM1, PRINTER).tcp(40000, 9100).syn()
            => DROP by denied("cam-1") & rule("default"),
        check |h| {
            h.assert_device("printer-1", [0, 0, 1]);
            h.assert_device("cam-1", [0, 1, 0]);
        },
    ];
    an_audited_flow_is_remembered_so_its_replies_pass_and_its_packets_count_as_audit:
        printers_audit_fixture(), [
        from(PRINTER_MAC).ipv4(PRINTER, OFFICE).tcp(40000, 445).syn()
            => PASS by audited("printer-1") & rule("default"),
        from(OFFICE_MAC).ipv4(OFFICE, PRINTER).tcp(445, 40000).syn_ack()
            => PASS by allowed("office-pc") & Counter::FlowHit,
        from(PRINTER_MAC).ipv4(PRINTER, OFFICE).tcp(40000, 445)
            => PASS by audited("printer-1") & Counter::FlowHit,
    ];
    a_source_in_audit_is_not_quarantined_for_denied_packets: quick_quarantine_fixture()
        .replace("printers: {description: \"printers\"}", "printers: {description: \"printers\", mode: audit}"), [
        for port in (20..26) from(PRINTER_MAC).ipv4(PRINTER, OFFICE).tcp(40000, port).syn()
            => PASS by audited("printer-1") & rule("default"),
        check |h| {
            h.assert_not_quarantined("printer-1");
            h.assert_counter(Counter::QuarantineTrips, 0);
        },
    ];
    a_source_in_audit_still_trips_a_tripwire: printers_audit_fixture(), [
        from(PRINTER_MAC).ipv4(PRINTER, "10.1.99.5").tcp(40001, 80).syn()
            => PASS by audited("printer-1") & Counter::QuarantineTrips,
        check |h| { h.assert_quarantined("printer-1", QuarantineReason::Tripwire); },
    ];
    a_device_mode_overrides_its_zones: printers_audit_fixture()
        .replace("printer-1: {zone: printers,", "printer-1: {zone: printers, mode: enforce,"), [
        from(PRINTER_MAC).ipv4(PRINTER, OFFICE).tcp(40000, 445).syn()
            => DROP by denied("printer-1") & rule("default"),
    ];
    a_zone_in_enforce_enforces_under_defaults_audit: audit_fixture()
        .replace("cameras: {description: \"IP cameras\"}", "cameras: {description: \"IP cameras\", mode: enforce}"), [
        from(CAM1_MAC).ipv4(CAM1, PRINTER).tcp(40000, 9100).syn()
            => DROP by denied("cam-1") & rule("default"),
        from(OFFICE_MAC).ipv4(OFFICE, PRINTER).tcp(40000, 23).syn()
            => PASS by audited("office-pc") & rule("default"),
    ];
    unknown_sources_follow_the_unknown_zones_mode: FIXTURE
        .replace("quarantine: {description: \"unknown or isolated devices\"}", "quarantine: {description: \"unknown or isolated devices\", mode: audit}"), [
        from("02:00:00:00:99:01").ipv4("10.1.4.99", OFFICE).tcp(40000, 445).syn()
            => PASS by audited("unknown") & rule("default"),
        from(CAM1_MAC).ipv4(CAM1, PRINTER).tcp(40000, 9100).syn()
            => DROP by denied("cam-1") & rule("default"),
    ];
    switching_the_zone_to_enforce_ends_its_audited_flows: printers_audit_fixture(), [
        from(PRINTER_MAC).ipv4(PRINTER, OFFICE).tcp(40000, 445).syn()
            => PASS by audited("printer-1") & rule("default"),
        apply(FIXTURE),
        from(PRINTER_MAC).ipv4(PRINTER, OFFICE).tcp(40000, 445)
            => DROP by denied("printer-1") & Counter::NoFlow,
    ];
}

// ----- Non-IP ---------------------------------------------------------------------------------

/// An ARP request from `m` (cam-1's address) for the router.
fn arp(m: &str) -> Frame {
    arp_claim(m, m, CAM1, ROUTER_CAMS)
}

/// An ARP request (operation 1) sent from Ethernet source `eth`, whose body says the sender
/// hardware address `sha` holds `spa`, asking for `tpa`.
fn arp_claim(eth: &str, sha: &str, spa: &str, tpa: &str) -> Frame {
    let ip = |a: &str| {
        a.parse::<std::net::Ipv4Addr>()
            .expect("IPv4 address")
            .octets()
    };
    let mut body = vec![0, 1, 8, 0, 6, 4, 0, 1];
    body.extend_from_slice(&mac(sha));
    body.extend_from_slice(&ip(spa));
    body.extend_from_slice(&[0; 6]);
    body.extend_from_slice(&ip(tpa));
    body.extend_from_slice(&[0; 18]);
    from(eth).dst_mac([0xff; 6]).ethertype(0x0806, &body)
}

/// The same claim as an ARP reply (operation 2).
fn arp_reply(eth: &str, sha: &str, spa: &str, tpa: &str) -> Vec<u8> {
    poke(&arp_claim(eth, sha, spa, tpa), 14 + 7, 2)
}

cases! {
    arp_passes_and_is_counted: FIXTURE, [
        arp(CAM1_MAC) => PASS by Counter::ArpPassed,
        arp_claim(STRANGER_MAC, STRANGER_MAC, "10.1.1.200", ROUTER_CAMS).vlan(10) => PASS by Counter::ArpPassed,
        check |h| { h.assert_counter(Counter::ArpPassed, 2); h.assert_device("cam-1", [0, 0, 0]); },
    ];
    arp_claiming_a_listed_devices_address_from_another_mac_is_dropped_as_spoofed: FIXTURE, [
        // An unknown device poisons the router's neighbour entry for cam-1, by request or reply.
        arp_claim(STRANGER_MAC, STRANGER_MAC, CAM1, ROUTER_CAMS) => DROP by Counter::ArpSpoofed,
        arp_reply(STRANGER_MAC, STRANGER_MAC, CAM1, ROUTER_CAMS) => DROP by Counter::ArpSpoofed,
        // A listed device does it.
        arp_claim(PRINTER_MAC, PRINTER_MAC, CAM1, ROUTER_CAMS) => DROP by Counter::ArpSpoofed,
        // The body names cam-1's MAC but the frame comes from elsewhere, or the other way round.
        arp_claim(STRANGER_MAC, CAM1_MAC, CAM1, ROUTER_CAMS) => DROP by Counter::ArpSpoofed,
        arp_claim(CAM1_MAC, STRANGER_MAC, CAM1, ROUTER_CAMS).vlan(10) => DROP by Counter::ArpSpoofed,
        check |h| {
            h.assert_counter(Counter::ArpSpoofed, 5);
            h.assert_counter(Counter::ArpPassed, 0);
            h.assert_device("cam-1", [0, 0, 0]);
            h.assert_not_quarantined("cam-1");
        },
    ];
    arp_claiming_the_routers_own_address_is_dropped_as_spoofed: FIXTURE, [
        arp_claim(STRANGER_MAC, STRANGER_MAC, ROUTER_CAMS, CAM1) => DROP by Counter::ArpSpoofed,
        arp_reply(CAM1_MAC, CAM1_MAC, ROUTER_OFFICE, OFFICE) => DROP by Counter::ArpSpoofed,
        check |h| { h.assert_counter(Counter::ArpSpoofed, 2); },
    ];
    arp_from_a_listed_device_for_an_address_not_its_own_is_dropped: FIXTURE, [
        arp_claim(CAM1_MAC, CAM1_MAC, "10.1.1.99", ROUTER_CAMS) => DROP by Counter::ArpSpoofed,
        arp_reply(CAM1_MAC, CAM1_MAC, CAM2, ROUTER_CAMS) => DROP by Counter::ArpSpoofed,
        // An unknown frame source lending a listed device's MAC to an address no one holds.
        arp_claim(STRANGER_MAC, CAM1_MAC, "10.1.1.99", ROUTER_CAMS) => DROP by Counter::ArpSpoofed,
        check |h| { h.assert_counter(Counter::ArpSpoofed, 3); },
    ];
    gratuitous_arp_of_its_own_address_by_a_listed_device_passes: FIXTURE, [
        arp_claim(CAM1_MAC, CAM1_MAC, CAM1, CAM1) => PASS by Counter::ArpPassed,
        arp_reply(CAM1_MAC, CAM1_MAC, CAM1, CAM1) => PASS by Counter::ArpPassed,
        arp_reply(OFFICE_MAC, OFFICE_MAC, OFFICE, ROUTER_OFFICE) => PASS by Counter::ArpPassed,
        check |h| { h.assert_counter(Counter::ArpPassed, 3); h.assert_counter(Counter::ArpSpoofed, 0); },
    ];
    arp_from_an_unknown_device_for_an_unlisted_address_and_probes_pass: FIXTURE, [
        arp_claim(STRANGER_MAC, STRANGER_MAC, "10.1.1.200", ROUTER_CAMS) => PASS by Counter::ArpPassed,
        arp_reply(STRANGER_MAC, STRANGER_MAC, "10.1.1.200", ROUTER_CAMS) => PASS by Counter::ArpPassed,
        // Address probes (sender 0.0.0.0, RFC 5227) claim nothing, whichever address they ask about.
        arp_claim(STRANGER_MAC, STRANGER_MAC, "0.0.0.0", CAM1) => PASS by Counter::ArpPassed,
        arp_claim(CAM2_MAC, CAM2_MAC, "0.0.0.0", CAM2) => PASS by Counter::ArpPassed,
        check |h| { h.assert_counter(Counter::ArpPassed, 4); h.assert_counter(Counter::ArpSpoofed, 0); },
    ];
    spoofed_allow_lets_spoofed_arp_through: spoof_allow_fixture(), [
        arp_claim(STRANGER_MAC, STRANGER_MAC, CAM1, ROUTER_CAMS) => PASS by Counter::ArpPassed,
        arp_claim(CAM1_MAC, CAM1_MAC, "10.1.1.99", ROUTER_CAMS) => PASS by Counter::ArpPassed,
        arp_claim(STRANGER_MAC, STRANGER_MAC, ROUTER_CAMS, CAM1) => PASS by Counter::ArpPassed,
        check |h| { h.assert_counter(Counter::ArpSpoofed, 0); },
    ];
    neighbour_solicitation_and_advertisement_pass: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, "ff02::1:ff00:1").hop_limit(255).icmp(135, 0, &[0; 16])
            => PASS by Counter::NdPassed,
        from(CAM1_MAC).ipv6(CAM1_6, "fe80::1").hop_limit(255).icmp(136, 0, &[0; 16])
            => PASS by Counter::NdPassed,
        from(CAM1_MAC).ipv6("fe80::10", "ff02::2").hop_limit(255).icmp(133, 0, &[0; 4])
            => PASS by Counter::NdPassed,
        // MLDv2 report to ff02::16.
        from(CAM1_MAC).ipv6("fe80::10", "ff02::16").icmp(143, 0, &[0; 4]) => PASS by Counter::NdPassed,
        check |h| { h.assert_counter(Counter::NdPassed, 4); },
    ];
    neighbour_discovery_to_another_zones_global_address_is_judged_and_dropped: FIXTURE, [
        // The kernel would forward these into the office's segment.
        from(CAM1_MAC).ipv6(CAM1_6, OFFICE_6).hop_limit(255).icmp(135, 0, &[0; 16])
            => DROP by rule("no-lateral-cameras"),
        from(CAM1_MAC).ipv6(CAM1_6, OFFICE_6).hop_limit(255).icmp(136, 0, &[0; 16])
            => DROP by rule("no-lateral-cameras"),
        // To the router's own global address (unicast NUD, or an NA answering the router's NS
        // sent from that address): for this link.
        from(CAM1_MAC).ipv6(CAM1_6, ROUTER_CAMS_6).hop_limit(255).icmp(135, 0, &[0; 16])
            => PASS by Counter::NdPassed,
        from(CAM1_MAC).ipv6(CAM1_6, ROUTER_CAMS_6).hop_limit(255).icmp(136, 0, &[0; 16])
            => PASS by Counter::NdPassed,
        check |h| { h.assert_counter(Counter::NdPassed, 2); h.assert_rule("no-lateral-cameras", 2); h.assert_device("cam-1", [0, 2, 0]); },
    ];
    router_advertisement_and_redirect_are_dropped_as_rogue: FIXTURE, [
        from(CAM1_MAC).ipv6("fe80::10", "ff02::1").hop_limit(255).icmp(134, 0, &[64, 0, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0])
            => DROP by Counter::RogueRaDropped,
        from(CAM1_MAC).ipv6("fe80::10", CAM2_6).hop_limit(255).icmp(137, 0, &[0; 36])
            => DROP by Counter::RogueRaDropped,
        check |h| { h.assert_counter(Counter::RogueRaDropped, 2); },
    ];
    mld_to_a_routable_address_is_judged_by_policy: FIXTURE, [
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).icmp(143, 0, &[0; 4]) => DROP by rule("default"),
        check |h| { h.assert_counter(Counter::NdPassed, 0); h.assert_rule("default", 1); },
    ];
    lldp_and_other_ethertypes_are_dropped_as_non_ip: FIXTURE, [
        from(CAM1_MAC).dst_mac([0x01, 0x80, 0xc2, 0, 0, 0x0e]).ethertype(0x88cc, &[0; 46])
            => DROP by Counter::NonIpDropped,
        from(CAM1_MAC).ethertype(0x8847, &[0; 46]) => DROP by Counter::NonIpDropped,
        from(CAM1_MAC).ethertype(0x8864, &[0; 46]) => DROP by Counter::NonIpDropped,
        // An 802.3 length field (LLC/SNAP), which could carry IP.
        from(CAM1_MAC).ethertype(0x0030, &[0xaa, 0xaa, 3, 0, 0, 0, 8, 0, 0x45, 0])
            => DROP by Counter::NonIpDropped,
        from(CAM1_MAC).vlan(10).ethertype(0x88cc, &[0; 46]) => DROP by Counter::NonIpDropped,
        check |h| { h.assert_counter(Counter::NonIpDropped, 5); },
    ];
}
// ----- No policy ------------------------------------------------------------------------------

cases! {
    no_policy_loaded_drops_all_ip_but_passes_arp_and_nd: no_policy_yet(FIXTURE), [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => DROP by Counter::NoPolicy,
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).tcp(40000, 554).syn() => DROP by Counter::NoPolicy,
        from(CAM1_MAC).ipv4("0.0.0.0", "255.255.255.255").udp(68, 67) => DROP by Counter::NoPolicy,
        arp(CAM1_MAC) => PASS by Counter::ArpPassed,
        // No bindings yet, so no ARP is judged spoofed.
        arp_claim(STRANGER_MAC, STRANGER_MAC, CAM1, ROUTER_CAMS) => PASS by Counter::ArpPassed,
        from(CAM1_MAC).ipv6(CAM1_6, "ff02::1:ff00:1").icmp(135, 0, &[0; 16]) => PASS by Counter::NdPassed,
        from(CAM1_MAC).ipv6("fe80::10", "ff02::1").icmp(134, 0, &[0; 12]) => DROP by Counter::RogueRaDropped,
        from(CAM1_MAC).ethertype(0x88cc, &[0; 46]) => DROP by Counter::NonIpDropped,
        check |h| {
            h.assert_counter(Counter::NdPassed, 1);
            h.assert_counter(Counter::RogueRaDropped, 1);
            h.assert_counter(Counter::NonIpDropped, 1);
            h.assert_counter(Counter::NoPolicy, 3);
            h.assert_counter(Counter::ArpPassed, 2);
            h.assert_device("cam-1", [0, 0, 0]);
            assert_eq!(h.malformed(), 0);
        },
        // And once a policy is there, the same flow passes.
        apply(FIXTURE),
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
    ];
}

// ----- Policy switch --------------------------------------------------------------------------

cases! {
    policy_switch_keeps_a_still_allowed_flow_and_rejudges_a_removed_one: SWITCH_P1, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(554, 40000).syn_ack() => PASS by Counter::FlowHit,
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        apply(switch_p2()),
        // P2 has its extra rule (the lookup fails otherwise), which decided nothing yet.
        check |h| { h.assert_rule("nvr-ping", 0); },
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554) => PASS by Counter::FlowHit,
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(554, 40000) => PASS by Counter::FlowHit,
        from(NVR_MAC).ipv6(NVR_6, CAM1_6).tcp(554, 40000) => PASS by Counter::FlowHit,
        check |h| { h.assert_counter(Counter::FlowHit, 4); },
        apply(switch_p3()),
        // Segments without SYN, allowed neither as new flows nor as replies: `no_flow`.
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554) => DROP by denied("cam-1") & Counter::NoFlow,
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(554, 40000) => DROP by denied("nvr-1") & Counter::NoFlow,
        from(NVR_MAC).ipv6(NVR_6, CAM1_6).tcp(554, 40000) => DROP by denied("nvr-1") & Counter::NoFlow,
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => DROP by rule("default"),
        check |h| {
            h.assert_counter(Counter::FlowHit, 4);
            h.assert_device("cam-1", [3, 2, 0]);
            h.assert_device("nvr-1", [3, 2, 0]);
        },
    ];
}

// ----- A provisional policy (`enforcer apply --confirm`) -------------------------------------

/// How long the provisional policies of these rows last before the program reverts them.
const WINDOW_MS: u64 = 300;

impl Harness {
    /// How many of the two policy slots hold entries.
    fn occupied_slots(&self) -> usize {
        datapath::slot_occupancy(&self.dp)
            .expect("occupancy")
            .iter()
            .filter(|n| **n > 0)
            .count()
    }

    /// Applies `yaml` provisionally for [`WINDOW_MS`], compiled against the ids in force as the
    /// daemon compiles a candidate; the rows' names then cover both policies. Returns the
    /// deadline.
    fn apply_provisional(&mut self, yaml: &str) -> u64 {
        self.step += 1;
        let confirmed = self.compiled.ids.clone();
        let mut candidate = compile_yaml_with_ids(yaml, Some(confirmed.clone()));
        candidate.ids = union_ids(&confirmed, &candidate.ids);
        self.compiled = candidate;
        self.generation += 1;
        let deadline = datapath::monotonic_ns() + WINDOW_MS * 1_000_000;
        let (name, step) = (self.name, self.step);
        self.dp
            .apply_provisional(&self.compiled, self.generation, deadline)
            .unwrap_or_else(|e| panic!("{name}: step {step} (apply provisionally): {e:?}"));
        deadline
    }

    /// Waits until the program's clock is past `deadline` ([`PROGRAM_CLOCK_LAG_NS`] behind
    /// userspace's at most), and 5 ms more.
    fn wait_past(&self, deadline: u64) {
        while datapath::monotonic_ns() <= deadline + PROGRAM_CLOCK_LAG_NS + 5_000_000 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The generation of the policy the program judges with now.
    fn live_generation(&self) -> u64 {
        datapath::live_config(&self.dp)
            .expect("live config")
            .1
            .generation
    }
}

/// The ids of two policies together (as the daemon keeps them while a candidate is pending).
fn union_ids(
    a: &enforcer::policy::IdTable,
    b: &enforcer::policy::IdTable,
) -> enforcer::policy::IdTable {
    let both = |x: &std::collections::BTreeMap<String, u32>,
                y: &std::collections::BTreeMap<String, u32>| {
        let mut out = x.clone();
        out.extend(y.iter().map(|(n, i)| (n.clone(), *i)));
        out
    };
    enforcer::policy::IdTable {
        devices: both(&a.devices, &b.devices),
        rules: both(&a.rules, &b.rules),
        networks: both(&a.networks, &b.networks),
        names: both(&a.names, &b.names),
    }
}

/// The confirmed policy allows the stream on tcp/8000 only; the candidate on tcp/554, and adds a
/// rule of its own (`nvr-ping`).
#[test]
fn past_its_deadline_the_program_judges_with_the_confirmed_slot_and_rejudges_the_candidates_flows()
{
    let Some(mut h) = Harness::new(
        "past_its_deadline_the_program_judges_with_the_confirmed_slot_and_rejudges_the_candidates_flows",
        Setup::from(switch_p3()),
    ) else {
        return;
    };
    let deadline = h.apply_provisional(&switch_p2());
    assert_eq!(h.live_generation(), 2, "the candidate enforces");
    assert_eq!(
        h.occupied_slots(),
        2,
        "the confirmed policy stays in the other slot"
    );
    steps!(h;
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(554, 40000).syn_ack() => PASS by Counter::FlowHit,
        from(NVR_MAC).ipv4(NVR, CAM1).echo_request(9) => PASS by rule("nvr-ping"),
    );
    h.wait_past(deadline);
    assert_eq!(
        h.live_generation(),
        1,
        "the confirmed policy enforces again"
    );
    steps!(h;
        // The candidate's flow is judged again, by the confirmed policy: it allows it neither as
        // a new flow nor as a reply.
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554) => DROP by denied("cam-1") & Counter::NoFlow,
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40001, 554).syn() => DROP by rule("default"),
        from(NVR_MAC).ipv4(NVR, CAM1).echo_request(10) => DROP by rule("default"),
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40002, 8000).syn() => PASS by rule("cams-stream"),
    );
    // Counted under the rule that decided, in the policy that was live: the candidate's own rule
    // keeps its one packet; the confirmed default took the denials.
    h.assert_rule("nvr-ping", 1);
    h.assert_rule("default", 2);
    // The daemon makes it permanent: the same slot, now for good; the candidate's slot keeps the
    // candidate, for the next apply to rewrite.
    let replaced =
        h.dp.revert_provisional()
            .expect("revert")
            .expect("a candidate was pending");
    assert_eq!(replaced.revert_at_ns, deadline);
    let control = h.dp.control().expect("control");
    assert_eq!(control.revert_at_ns, 0);
    assert_eq!(h.live_generation(), 1);
    assert_eq!(
        datapath::slot_differences(&h.dp, 1 - control.slot(), &h.compiled.maps)
            .expect("differences"),
        0,
        "the candidate's slot holds the candidate"
    );
    steps!(h;
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40002, 8000) => PASS by Counter::FlowHit,
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40003, 554).syn() => DROP by rule("default"),
    );
}

#[test]
fn a_confirmed_candidate_keeps_enforcing_past_its_deadline() {
    let Some(mut h) = Harness::new(
        "a_confirmed_candidate_keeps_enforcing_past_its_deadline",
        Setup::from(switch_p3()),
    ) else {
        return;
    };
    let confirmed = h.compiled.maps.clone();
    let deadline = h.apply_provisional(&switch_p2());
    steps!(h; from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"));
    assert_eq!(
        h.dp.confirm_provisional().expect("confirm"),
        datapath::Confirmation::Confirmed
    );
    let left = 1 - h.dp.control().expect("control").slot();
    assert_eq!(
        datapath::slot_differences(&h.dp, left, &confirmed).expect("differences"),
        0,
        "the previous policy stays in the slot left behind, for the next apply to rewrite"
    );
    h.wait_past(deadline);
    assert_eq!(h.live_generation(), 2);
    steps!(h;
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554) => PASS by Counter::FlowHit,
        from(NVR_MAC).ipv4(NVR, CAM1).echo_request(9) => PASS by rule("nvr-ping"),
    );
    assert_eq!(
        h.dp.confirm_provisional().expect("confirm"),
        datapath::Confirmation::NothingPending
    );
}

#[test]
fn a_candidate_is_not_confirmed_past_its_deadline_and_no_second_one_is_applied_meanwhile() {
    let Some(mut h) = Harness::new(
        "a_candidate_is_not_confirmed_past_its_deadline_and_no_second_one_is_applied_meanwhile",
        Setup::from(switch_p3()),
    ) else {
        return;
    };
    let deadline = h.apply_provisional(&switch_p2());
    let other = compile_yaml(SWITCH_P1);
    assert!(
        matches!(h.dp.apply(&other, 9), Err(datapath::DatapathError::Pending)),
        "a switch while a candidate is pending is refused"
    );
    assert_eq!(h.live_generation(), 2, "the refused switch changed nothing");
    h.wait_past(deadline);
    assert_eq!(
        h.dp.confirm_provisional().expect("confirm"),
        datapath::Confirmation::Expired
    );
    assert_eq!(h.live_generation(), 1);
}

// ----- Quarantine -----------------------------------------------------------------------------

cases! {
    denied_packets_over_the_threshold_quarantine_the_device_and_cut_its_flows: quick_quarantine_fixture(), [
        from(OFFICE_MAC).ipv4(OFFICE, PRINTER).tcp(40000, 9100).syn() => PASS by rule("office-print"),
        from(PRINTER_MAC).ipv4(PRINTER, OFFICE).tcp(9100, 40000).syn_ack() => PASS by Counter::FlowHit,
        for port in ([23, 24]) from(OFFICE_MAC).ipv4(OFFICE, PRINTER).tcp(40000, port).syn()
            => DROP by rule("default"),
        // Two denials are under the threshold.
        check |h| { h.assert_not_quarantined("office-pc"); },
        from(OFFICE_MAC).ipv4(OFFICE, PRINTER).tcp(40000, 25).syn()
            => DROP by rule("default") & Counter::QuarantineTrips,
        check |h| {
            h.assert_quarantined("office-pc", QuarantineReason::DeniedPackets);
            h.assert_counter(Counter::QuarantineTrips, 1);
        },
        // The allowed flow, its reply and a new allowed flow.
        from(OFFICE_MAC).ipv4(OFFICE, PRINTER).tcp(40000, 9100) => DROP by rule("default"),
        // The printer's reply: as a reply, the quarantined office's flow is no longer allowed.
        from(PRINTER_MAC).ipv4(PRINTER, OFFICE).tcp(9100, 40000)
            => DROP by denied("printer-1") & Counter::NoFlow,
        from(OFFICE_MAC).ipv4(OFFICE, WEB).tcp(40001, 443).syn() => DROP by rule("default"),
        check |h| {
            h.assert_device("office-pc", [1, 5, 0]);
            h.assert_not_quarantined("printer-1");
        },
    ];
    touching_a_tripwire_quarantines_the_sender_at_once: FIXTURE, [
        from(OFFICE_MAC).ipv4(OFFICE, PRINTER).tcp(40000, 9100).syn() => PASS by rule("office-print"),
        from(OFFICE_MAC).ipv4(OFFICE, "10.1.99.5").tcp(40001, 80).syn()
            => DROP by rule("default") & Counter::QuarantineTrips,
        check |h| {
            h.assert_quarantined("office-pc", QuarantineReason::Tripwire);
            h.assert_counter(Counter::QuarantineTrips, 1);
        },
        from(OFFICE_MAC).ipv4(OFFICE, PRINTER).tcp(40000, 9100) => DROP by rule("default"),
        from(OFFICE_MAC).ipv6(OFFICE_6, PRINTER_6).tcp(40002, 9100).syn() => DROP by rule("default"),
        // Another device is unaffected.
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(40000, 554).syn() => PASS by rule("nvr-pull"),
    ];
    touching_a_v6_tripwire_quarantines_the_sender: FIXTURE, [
        from(CAM2_MAC).ipv6(CAM2_6, "fd00:99::5").udp(40001, 161)
            => DROP by rule("default") & Counter::QuarantineTrips,
        check |h| { h.assert_quarantined("cam-2", QuarantineReason::Tripwire); },
        from(CAM2_MAC).ipv4(CAM2, NVR).tcp(40000, 554).syn() => DROP by rule("default"),
    ];
}

// ----- Per-rule counters ----------------------------------------------------------------------

/// A print job's first packet, whose bytes the rule counts.
fn office_print_syn() -> Frame {
    from(OFFICE_MAC).ipv4(OFFICE, PRINTER).tcp(40000, 631).syn()
}

cases! {
    rule_counters_count_the_rule_that_decided: FIXTURE, [
        office_print_syn() => PASS by rule("office-print"),
        from(OFFICE_MAC).ipv6(OFFICE_6, WEB_6).udp(40000, 53) => PASS by rule("office-internet"),
        from(OFFICE_MAC).ipv4(OFFICE, ROUTER_OFFICE).echo_request(1) => PASS by rule("office-admin"),
        from(FISHTANK_MAC).ipv4(FISHTANK, WEB).udp(40000, 53) => DROP by rule("fishtank-no-egress"),
        from(PRINTER_MAC).ipv4(PRINTER, WEB).tcp(40000, 443).syn() => DROP by rule("default"),
        check |h| {
            for (rule, packets) in [
                ("office-print", 1),
                ("office-internet", 1),
                ("office-admin", 1),
                ("fishtank-no-egress", 1),
                ("default", 1),
                ("cams-stream", 0),
                ("building-cloud", 0),
            ] {
                h.assert_rule(rule, packets);
            }
            let bytes = office_print_syn().build().len() as u64;
            assert_eq!(h.rule_counters("office-print").bytes, bytes, "bytes of rule office-print");
            // Distinct rules have distinct ids, none of them 0.
            let mut ids = h.rule_ids();
            let rules = ids.len();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), rules);
            assert!(!ids.contains(&0));
        },
    ];
}

// ----- Deny events ----------------------------------------------------------------------------

cases! {
    deny_events_are_rate_limited_per_device: FIXTURE, [
        // The per-second budget is ten events.
        for port in (1000..1010u16) from(CAM1_MAC).ipv4(CAM1, PRINTER).tcp(40000, port).syn()
            => DROP by rule("default") & Counter::EventsSent,
        for port in (1010..1012u16) from(CAM1_MAC).ipv4(CAM1, PRINTER).tcp(40000, port).syn()
            => DROP by rule("default") & Counter::EventsRateLimited,
        // Another device has its own budget.
        from(CAM2_MAC).ipv4(CAM2, PRINTER).tcp(40000, 1000).syn()
            => DROP by rule("default") & Counter::EventsSent,
        // Allowed packets never produce events.
        from(CAM2_MAC).ipv4(CAM2, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        check |h| {
            h.assert_counter(Counter::EventsSent, 11);
            h.assert_counter(Counter::EventsRateLimited, 2);
            h.assert_device("cam-1", [0, 12, 0]);
        },
    ];
    deny_events_from_many_devices_are_bounded_per_cpu: crowd_fixture(), [
        // The budget all devices share is per CPU: keep every run on one.
        check |_h| { run_on_cpu_0(); },
        // Ten devices within their own budgets use up the shared hundred...
        for (n, port) in (crowd(1..=10)) from(&crowd_mac(n)).ipv4(&crowd_addr(n), PRINTER).tcp(40000, port).syn()
            => DROP by rule("default") & Counter::EventsSent,
        // ...so two more, each within its own budget, are only counted.
        for (n, port) in (crowd(11..=12)) from(&crowd_mac(n)).ipv4(&crowd_addr(n), PRINTER).tcp(40000, port).syn()
            => DROP by rule("default") & Counter::EventsGlobalLimited,
        // A device over its own budget is told apart, and does not spend the shared one.
        from(&crowd_mac(1)).ipv4(&crowd_addr(1), PRINTER).tcp(40000, 2000).syn()
            => DROP by rule("default") & Counter::EventsRateLimited,
        check |h| {
            h.assert_counter(Counter::EventsSent, 100);
            h.assert_counter(Counter::EventsGlobalLimited, 20);
            h.assert_counter(Counter::EventsRateLimited, 1);
            h.assert_device("crowd-11", [0, 10, 0]);
        },
    ];
}

/// The fixture with twelve more cameras, `crowd-1` ... `crowd-12`.
fn crowd_fixture() -> String {
    let crowd: String = (1..=12u8)
        .map(|n| {
            format!(
                "  crowd-{n}: {{zone: cameras, mac: \"{}\", addresses: [\"{}\"]}}\n",
                crowd_mac(n),
                crowd_addr(n)
            )
        })
        .collect();
    FIXTURE.replacen("rules:\n", &format!("{crowd}rules:\n"), 1)
}

fn crowd_mac(n: u8) -> String {
    format!("02:00:00:00:07:{n:02x}")
}

fn crowd_addr(n: u8) -> String {
    format!("10.1.1.{}", 100 + u16::from(n))
}

/// Ten denied packets (ports 1000..1010) from each crowd device in `devices`.
fn crowd(devices: std::ops::RangeInclusive<u8>) -> impl Iterator<Item = (u8, u16)> {
    devices.flat_map(|n| (1000..1010u16).map(move |port| (n, port)))
}

/// Pins the calling test thread to CPU 0, so per-CPU state is one CPU's.
fn run_on_cpu_0() {
    run_on_cpu(0);
}

/// Pins the calling test thread to CPU `cpu`.
fn run_on_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it.
    let pinned = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(
        pinned,
        0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}

// ----- Flow table: per-device quota, loose pickup, no_flow ----------------------------------------

/// The fixture with a per-device flow quota of `n`.
fn flow_quota_fixture(n: u32) -> String {
    format!("{FIXTURE}limits: {{flows_per_device: {n}}}\n")
}

/// A lookup at the flow table: live flows now.
fn live_flows(h: &Harness) -> usize {
    datapath::flow_count(&h.dp, datapath::monotonic_ns()).expect("flows")
}

cases! {
    a_device_over_its_flow_quota_has_new_flows_refused_and_evicts_no_other_flow: flow_quota_fixture(3), [
        // nvr-1's connection to cam-1, idle from here on.
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(40000, 554).syn() => PASS by rule("nvr-pull"),
        // office-pc fills its quota with DNS flows, each sent twice.
        for port in (41000..41003u16) from(OFFICE_MAC).ipv4(OFFICE, WEB).udp(port, 53)
            => PASS by rule("office-internet"),
        for port in (41000..41003u16) from(OFFICE_MAC).ipv4(OFFICE, WEB).udp(port, 53)
            => PASS by Counter::FlowHit,
        // Its next new flows are refused, counted, and not remembered.
        for port in (41003..41010u16) from(OFFICE_MAC).ipv4(OFFICE, WEB).udp(port, 53)
            => DROP by denied("office-pc") & Counter::FlowQuotaExceeded,
        check |h| {
            assert_eq!(live_flows(h), 4, "nvr-1's flow and office-pc's quota");
            h.assert_counter(Counter::FlowQuotaExceeded, 7);
            h.assert_counter(Counter::EventsSent, 0);
            h.assert_not_quarantined("office-pc");
        },
        // The camera's next packet after the pause is still a reply of nvr-1's flow.
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(554, 40000) => PASS by allowed("cam-1") & Counter::FlowHit,
        // office-pc's own remembered flows keep working.
        from(ROUTER_MAC_UPSTREAM).ipv4(WEB, OFFICE).udp(53, 41000) => PASS by Counter::FlowHit,
        // Another device has a quota of its own (nvr-1 holds one flow of its three).
        for port in (42000..42002u16) from(NVR_MAC).ipv4(NVR, CAM2).tcp(port, 554).syn()
            => PASS by rule("nvr-pull"),
    ];
    unknown_sources_share_one_flow_quota_and_listed_devices_keep_theirs: flow_quota_fixture(2), [
        from("02:00:00:00:99:01").ipv4("10.1.1.201", ROUTER_CAMS).udp(68, 67) => PASS by rule("dhcp-dns"),
        from("02:00:00:00:99:02").ipv4("10.1.1.202", ROUTER_CAMS).udp(68, 67) => PASS by rule("dhcp-dns"),
        from("02:00:00:00:99:03").ipv4("10.1.1.203", ROUTER_CAMS).udp(68, 67)
            => DROP by denied("unknown") & Counter::FlowQuotaExceeded,
        from(CAM1_MAC).ipv4(CAM1, ROUTER_CAMS).udp(68, 67) => PASS by rule("dhcp-dns"),
    ];
    networks_have_a_flow_quota_of_their_own: flow_quota_fixture(1), [
        // An internet host reaching the router (dhcp-dns: from any) counts against `internet`.
        from(ROUTER_MAC_UPSTREAM).ipv4(WEB, ROUTER_OFFICE).udp(40000, 53) => PASS by rule("dhcp-dns"),
        from(ROUTER_MAC_UPSTREAM).ipv4("93.184.216.35", ROUTER_OFFICE).udp(40000, 53)
            => DROP by denied("network:internet") & Counter::FlowQuotaExceeded,
        from(OFFICE_MAC).ipv4(OFFICE, WEB).udp(40000, 53) => PASS by rule("office-internet"),
    ];
}

cases! {
    tcp_without_syn_of_a_lost_flow_passes_as_a_reply_and_recreates_the_flow: FIXTURE, [
        // nvr-1 -> cam-1 tcp/554 was open before the program was attached; the camera speaks
        // first. As a new flow it is denied; as a reply (nvr-pull) it is allowed.
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(554, 40000)
            => PASS by allowed("cam-1") & rule("nvr-pull") & Counter::TcpPickedUp,
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(40000, 554) => PASS by allowed("nvr-1") & Counter::FlowHit,
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(554, 40000) => PASS by Counter::FlowHit,
        from(CAM1_MAC).ipv6(CAM1_6, NVR_6).tcp(554, 40000) => PASS by Counter::TcpPickedUp,
        from(NVR_MAC).ipv6(NVR_6, CAM1_6).tcp(40000, 554) => PASS by Counter::FlowHit,
        // An internet server answering office-pc's HTTPS connection.
        from(ROUTER_MAC_UPSTREAM).ipv4(WEB, OFFICE).tcp(443, 40001)
            => PASS by allowed("network:internet") & rule("office-internet") & Counter::TcpPickedUp,
        from(OFFICE_MAC).ipv4(OFFICE, WEB).tcp(40001, 443) => PASS by Counter::FlowHit,
        check |h| { assert_eq!(live_flows(h), 3, "three flows re-created"); },
    ];
    tcp_without_syn_from_the_initiator_is_judged_as_a_new_flow: FIXTURE, [
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(40000, 554) => PASS by rule("nvr-pull") & allowed("nvr-1"),
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(554, 40000) => PASS by Counter::FlowHit,
        check |h| { h.assert_counter(Counter::TcpPickedUp, 0); },
    ];
    tcp_without_syn_allowed_neither_way_is_denied_as_no_flow: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, OFFICE).tcp(445, 40000) => DROP by denied("cam-1") & Counter::NoFlow,
        from(CAM1_MAC).ipv6(CAM1_6, OFFICE_6).tcp(445, 40000) => DROP by denied("cam-1") & Counter::NoFlow,
        check |h| { h.assert_rule("no-lateral-cameras", 0); h.assert_rule("default", 0); },
    ];
    a_syn_ack_is_never_picked_up_as_a_reply: FIXTURE, [
        // The reverse (nvr-1 -> cam-1 tcp/554) would be allowed, but a segment with SYN opens a
        // connection: it is judged as a new flow only.
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(554, 40000).syn_ack() => DROP by rule("default"),
        check |h| { h.assert_counter(Counter::TcpPickedUp, 0); },
    ];
    a_spoofed_segment_is_not_picked_up: FIXTURE, [
        // An unlisted MAC answering in cam-1's name.
        from(STRANGER_MAC).ipv4(CAM1, NVR).tcp(554, 40000)
            => DROP by denied("unknown") & spoofed("unknown"),
        check |h| { h.assert_counter(Counter::TcpPickedUp, 0); },
    ];
    picking_up_a_flow_counts_against_the_initiators_quota: flow_quota_fixture(1), [
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(40000, 554).syn() => PASS by rule("nvr-pull"),
        // nvr-1 holds its one flow; cam-2 answering a lost nvr-1 connection would be a second.
        from(CAM2_MAC).ipv4(CAM2, NVR).tcp(554, 40001)
            => DROP by denied("cam-2") & Counter::FlowQuotaExceeded,
    ];
}

cases! {
    no_flow_denials_never_count_towards_quarantine: quick_quarantine_fixture(), [
        // Far more than the threshold of three: late segments and stray echo replies.
        for port in (40000..40010u16) from(CAM1_MAC).ipv4(CAM1, OFFICE).tcp(445, port)
            => DROP by denied("cam-1") & Counter::NoFlow,
        for id in (1..5u16) from(CAM1_MAC).ipv4(CAM1, NVR).echo_reply(id)
            => DROP by denied("cam-1") & Counter::NoFlow,
        check |h| { h.assert_not_quarantined("cam-1"); h.assert_counter(Counter::QuarantineTrips, 0); },
        // Denied new flows still do.
        for port in ([23, 24]) from(CAM1_MAC).ipv4(CAM1, OFFICE).tcp(40000, port).syn()
            => DROP by rule("no-lateral-cameras"),
        from(CAM1_MAC).ipv4(CAM1, OFFICE).tcp(40000, 25).syn()
            => DROP by rule("no-lateral-cameras") & Counter::QuarantineTrips,
        check |h| { h.assert_quarantined("cam-1", QuarantineReason::DeniedPackets); },
    ];
}

// ----- Flow table: closing (RST, FIN), 4-tuple reuse, expiry, capacity ------------------------

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// How long the one TCP flow remembered has left before it expires, in seconds.
fn tcp_flow_left_s(h: &Harness) -> u64 {
    let flows = datapath::flows(&h.dp).expect("flows");
    let tcp: Vec<_> = flows
        .iter()
        .filter(|(k, _)| k.proto == enforcer_common::PROTO_TCP)
        .collect();
    assert_eq!(tcp.len(), 1, "one TCP flow: {flows:?}");
    let (key, value) = tcp[0];
    let expires =
        value.last_seen_ns + enforcer_common::flow::flow_timeout_ns(key.proto, value.tcp_state);
    expires.saturating_sub(datapath::monotonic_ns()) / 1_000_000_000
}

/// The closing timeout in seconds.
const CLOSING_S: u64 = enforcer_common::flow::FLOW_TIMEOUT_CLOSING_NS / 1_000_000_000;

cases! {
    a_rst_closes_a_flow_which_then_expires_after_the_closing_timeout: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(554, 40000).syn_ack() => PASS by Counter::FlowHit,
        check |h| { assert!(tcp_flow_left_s(h) > 1_700, "an open flow lives its idle timeout"); },
        // The responder resets the connection; the RST itself still reaches the initiator.
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(554, 40000).tcp_flags(TCP_RST | TCP_ACK) => PASS by Counter::FlowHit,
        check |h| { assert!(tcp_flow_left_s(h) <= CLOSING_S, "closed: {} s left", tcp_flow_left_s(h)); },
        // A late segment passes, and does not keep the closed flow alive.
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554) => PASS by Counter::FlowHit,
        check |h| { assert!(tcp_flow_left_s(h) <= CLOSING_S, "not extended: {} s left", tcp_flow_left_s(h)); },
        age(CLOSING_S + 1),
        // Gone: the recorder's next segment is no reply of it; it is judged (and picked up, as
        // the reverse, cam-1 -> nvr-1 tcp/554, is allowed), which re-creates the flow.
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(554, 40000) => PASS by Proof::from(Counter::FlowExpired) & Counter::TcpPickedUp,
    ];
    a_rst_from_the_initiator_closes_the_flow_too: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).tcp_flags(TCP_RST) => PASS by Counter::FlowHit,
        check |h| { assert!(tcp_flow_left_s(h) <= CLOSING_S); },
    ];
    a_fin_from_both_ends_closes_a_flow_and_a_fin_from_one_end_does_not: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(554, 40000).syn_ack() => PASS by Counter::FlowHit,
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).tcp_flags(TCP_FIN | TCP_ACK) => PASS by Counter::FlowHit,
        // Half-closed: the recorder may still send for as long as it likes.
        check |h| { assert!(tcp_flow_left_s(h) > 1_700, "half-closed: {} s left", tcp_flow_left_s(h)); },
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).tcp_flags(TCP_FIN | TCP_ACK) => PASS by Counter::FlowHit,
        check |h| { assert!(tcp_flow_left_s(h) > 1_700, "a repeated FIN from one end: {} s left", tcp_flow_left_s(h)); },
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(554, 40000).tcp_flags(TCP_FIN | TCP_ACK) => PASS by Counter::FlowHit,
        check |h| { assert!(tcp_flow_left_s(h) <= CLOSING_S, "closed both ways: {} s left", tcp_flow_left_s(h)); },
        // The last ACK passes.
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554) => PASS by Counter::FlowHit,
    ];
    a_syn_from_the_responder_is_no_reply_but_a_new_flow_judged_from_its_sender: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        // nvr-1 opening a connection back on the same 4-tuple: recorders -> cameras allows
        // tcp/554 only, not tcp/40000.
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(554, 40000).tcp_flags(TCP_SYN)
            => DROP by denied("nvr-1") & rule("default"),
        check |h| { h.assert_counter(Counter::FlowHit, 0); },
        // Its answer to the camera's SYN is a reply as before.
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(554, 40000).syn_ack() => PASS by Counter::FlowHit,
        // A retransmitted SYN of the open connection is part of it.
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by Counter::FlowHit,
    ];
    a_syn_reusing_a_closed_flows_tuple_is_judged_again_and_revives_it_when_allowed: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream"),
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(554, 40000).tcp_flags(TCP_RST | TCP_ACK) => PASS by Counter::FlowHit,
        // The camera connects again from the same port: judged by the rules, not a hit.
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn() => PASS by rule("cams-stream") & allowed("cam-1"),
        check |h| {
            h.assert_counter(Counter::FlowHit, 1);
            assert!(tcp_flow_left_s(h) > 1_700, "revived: {} s left", tcp_flow_left_s(h));
            assert_eq!(live_flows(h), 1);
        },
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(554, 40000).syn_ack() => PASS by Counter::FlowHit,
    ];
    a_syn_reusing_a_closed_flows_tuple_meets_the_policy_now_in_force: FIXTURE, [
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(40000, 554).syn() => PASS by rule("nvr-pull"),
        from(CAM1_MAC).ipv4(CAM1, NVR).tcp(554, 40000).tcp_flags(TCP_RST | TCP_ACK) => PASS by Counter::FlowHit,
        // Recorders may no longer pull from cameras.
        apply(FIXTURE.replace("allow: [tcp/554, icmp]", "allow: [icmp]")),
        from(NVR_MAC).ipv4(NVR, CAM1).tcp(40000, 554).syn() => DROP by denied("nvr-1") & rule("default"),
    ];
}

cases! {
    a_flow_past_its_idle_timeout_lets_no_reply_through: FIXTURE, [
        from(OFFICE_MAC).ipv4(OFFICE, WEB).udp(41000, 53) => PASS by rule("office-internet"),
        from(ROUTER_MAC_UPSTREAM).ipv4(WEB, OFFICE).udp(53, 41000) => PASS by Counter::FlowHit,
        age(119),
        from(ROUTER_MAC_UPSTREAM).ipv4(WEB, OFFICE).udp(53, 41000) => PASS by Counter::FlowHit,
        // Two minutes idle (UDP's timeout) and one second more.
        age(121),
        from(ROUTER_MAC_UPSTREAM).ipv4(WEB, OFFICE).udp(53, 41000)
            => DROP by denied("network:internet") & rule("default") & Counter::FlowExpired,
        check |h| { assert_eq!(live_flows(h), 0, "the packet that found it expired removed it"); },
    ];
}

/// The fixture with a flow table of the smallest capacity and a quota of one flow.
fn small_table_fixture() -> String {
    format!("{FIXTURE}limits: {{flows: 1024, flows_per_device: 1}}\n")
}

/// The sweep walks the ring at the table's real capacity (set at load, not the object's default):
/// once it has gone round a table of 1,024 it reaches the expired flow in the first slot, removes
/// it and so frees its owner's quota, without any packet of that flow.
#[test]
fn the_sweep_removes_an_expired_flow_and_frees_its_owners_quota() {
    let name = "the_sweep_removes_an_expired_flow_and_frees_its_owners_quota";
    let Some(mut h) = Harness::with_flows(name, Setup::from(small_table_fixture()), 1_024) else {
        return;
    };
    assert_eq!(datapath::flow_capacity(&h.dp).expect("capacity"), 1_024);
    h.expect(
        "the first flow",
        &from(OFFICE_MAC).ipv4(OFFICE, WEB).udp(40000, 53),
        PASS,
        &rule("office-internet"),
    );
    h.age(121);
    let mut refused = 0u32;
    let mut passed = None;
    for port in 40001..=42000u16 {
        let frame = from(OFFICE_MAC).ipv4(OFFICE, WEB).udp(port, 53);
        if h.send("a new flow", &frame) == PASS {
            passed = Some(port);
            break;
        }
        refused += 1;
    }
    assert!(passed.is_some(), "no new flow passed in 2,000 tries");
    // Each refused flow moved the sweep one slot on; a table of the object's default size
    // (262,144) would not have wrapped yet.
    assert!(
        (1_020..=1_024).contains(&refused),
        "refused {refused} before the sweep came round"
    );
    h.assert_counter(Counter::FlowQuotaExceeded, u64::from(refused));
    h.assert_counter(Counter::FlowExpired, 1);
    assert_eq!(live_flows(&h), 1);
}

/// How far the program's clock may be behind userspace's coarse clock: it is the coarse clock,
/// read once a jiffy on each CPU (`now_ns`), so two ticks at 100 Hz, the slowest tick Linux offers.
const PROGRAM_CLOCK_LAG_NS: u64 = 20_000_000;

/// The program reads the coarse clock once a jiffy on each CPU and keeps it (`now_ns`): what it
/// stamps on a flow must still follow userspace's coarse clock as ticks go by, within two ticks.
/// A reading kept past its jiffy would leave the flow's last seen where the first packet put it.
#[test]
fn a_flows_last_seen_follows_the_coarse_clock_tick_by_tick() {
    let name = "a_flows_last_seen_follows_the_coarse_clock_tick_by_tick";
    let Some(mut h) = Harness::new(name, Setup::from(FIXTURE)) else {
        return;
    };
    let frame = from(OFFICE_MAC).ipv4(OFFICE, WEB).udp(40000, 53);
    let mut stamps = Vec::new();
    for round in 0..6 {
        let before = datapath::monotonic_ns();
        assert_eq!(
            h.send("a packet of the flow", &frame),
            PASS,
            "round {round}"
        );
        let after = datapath::monotonic_ns();
        let flows = datapath::flows(&h.dp).expect("flows");
        let [(_, v)] = flows.as_slice() else {
            panic!("round {round}: {} flows, not one", flows.len());
        };
        assert!(
            v.last_seen_ns + PROGRAM_CLOCK_LAG_NS >= before && v.last_seen_ns <= after,
            "round {round}: last seen {} outside [{before} - {PROGRAM_CLOCK_LAG_NS}, {after}]",
            v.last_seen_ns
        );
        stamps.push(v.last_seen_ns);
        sleep_ms(30);
    }
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
}

// ----- DNS names: per-device bindings, grace, dns_bypass (docs/names.md) -------------------------

/// The fixture with a `dns:` section (grace 1 s, so the tests can outlive it) and name rules; the
/// building zone may send any UDP to the internet (which does not name DNS).
fn names_fixture() -> String {
    FIXTURE
        .replace(
            "rules:\n",
            "dns:\n  upstream: [\"192.0.2.53\"]\n  grace: 1s\nrules:\n  - name: cams-cloud\n    from: zone:cameras\n    to: dns:updates.axis.example\n    allow: [tcp/443]\n  - name: cams-ntp\n    from: zone:cameras\n    to: [dns:pool.ntp.org, \"dns:*.pool.ntp.org\"]\n    allow: [udp/123]\n  - name: building-udp\n    from: zone:building\n    to: network:internet\n    allow: [udp]\n",
        )
}

/// The cloud's address, inside `network:internet` (which no camera rule allows).
const CLOUD: &str = "203.0.113.10";
const CLOUD_6: &str = "2001:db8:cafe::10";
const OUTSIDE_RESOLVER: &str = "8.8.8.8";

/// Binds `addr` to `pattern` for `device` (`unknown` for the unlisted sources) until `ms` from
/// now (negative: already expired), as the resolver does before relaying an answer.
fn bind(h: &Harness, device: &str, addr: &str, pattern: &str, ms: i64) {
    let ids = &h.compiled.ids;
    let device_id = if device == "unknown" {
        0
    } else {
        ids.devices[device]
    };
    let name = ids.names[pattern];
    let now = datapath::monotonic_ns();
    let expires = now.saturating_add_signed(ms * 1_000_000);
    let addr: std::net::IpAddr = addr.parse().expect("address");
    h.dp.bindings()
        .and_then(|mut b| b.bind(device_id, addr, name, expires))
        .unwrap_or_else(|e| panic!("{}: bind: {e:?}", h.name));
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

cases! {
    names_a_bound_address_is_judged_as_the_name_for_its_device_v4: names_fixture(), [
        from(CAM1_MAC).ipv4(CAM1, CLOUD).tcp(40000, 443).syn() => DROP by rule("default"),
        check |h| { bind(h, "cam-1", CLOUD, "updates.axis.example", 60_000); },
        from(CAM1_MAC).ipv4(CAM1, CLOUD).tcp(40001, 443).syn() => PASS by rule("cams-cloud"),
        from(CAM1_MAC).ipv4(CAM1, CLOUD).tcp(40001, 8443).syn() => DROP by rule("default"),
    ];
    names_a_bound_address_is_judged_as_the_name_for_its_device_v6: names_fixture(), [
        check |h| { bind(h, "cam-1", CLOUD_6, "updates.axis.example", 60_000); },
        from(CAM1_MAC).ipv6(CAM1_6, CLOUD_6).tcp(40001, 443).syn() => PASS by rule("cams-cloud"),
    ];
    names_another_device_at_the_same_address_is_denied: names_fixture(), [
        check |h| { bind(h, "cam-1", CLOUD, "updates.axis.example", 60_000); },
        from(CAM2_MAC).ipv4(CAM2, CLOUD).tcp(40000, 443).syn() => DROP by rule("default"),
        from(CAM1_MAC).ipv4(CAM1, CLOUD).tcp(40000, 443).syn() => PASS by rule("cams-cloud"),
    ];
    names_a_wildcard_binding_allows_its_service_and_one_address_serves_two_names: names_fixture(), [
        check |h| {
            bind(h, "cam-1", CLOUD, "*.pool.ntp.org", 60_000);
            bind(h, "cam-1", CLOUD, "updates.axis.example", 60_000);
        },
        from(CAM1_MAC).ipv4(CAM1, CLOUD).udp(40000, 123) => PASS by rule("cams-ntp"),
        from(CAM1_MAC).ipv4(CAM1, CLOUD).tcp(40000, 443).syn() => PASS by rule("cams-cloud"),
    ];
    names_an_expired_binding_allows_no_new_flow: names_fixture(), [
        check |h| { bind(h, "cam-1", CLOUD, "updates.axis.example", -1_000); },
        from(CAM1_MAC).ipv4(CAM1, CLOUD).tcp(40000, 443).syn() => DROP by rule("default"),
    ];
    names_a_flow_outlives_its_binding_by_the_grace_and_no_longer: names_fixture(), [
        check |h| { bind(h, "cam-1", CLOUD, "updates.axis.example", 300); },
        from(CAM1_MAC).ipv4(CAM1, CLOUD).tcp(40000, 443).syn() => PASS by rule("cams-cloud"),
        check |_h| { sleep_ms(500); },
        from(CAM1_MAC).ipv4(CAM1, CLOUD).tcp(40000, 443) => PASS by Counter::FlowHit,
        from(CAM1_MAC).ipv4(CAM1, CLOUD).tcp(40001, 443).syn() => DROP by rule("default"),
        // The flow keeps its deadline in whole seconds, rounded up: up to a second past it.
        check |_h| { sleep_ms(2_000); },
        from(CAM1_MAC).ipv4(CAM1, CLOUD).tcp(40000, 443) => DROP by Counter::NoFlow,
    ];
    names_a_renewed_binding_keeps_its_flow_past_the_old_deadline: names_fixture(), [
        check |h| { bind(h, "cam-1", CLOUD, "updates.axis.example", 300); },
        from(CAM1_MAC).ipv4(CAM1, CLOUD).tcp(40000, 443).syn() => PASS by rule("cams-cloud"),
        check |h| { bind(h, "cam-1", CLOUD, "updates.axis.example", 60_000); sleep_ms(1_500); },
        from(CAM1_MAC).ipv4(CAM1, CLOUD).tcp(40000, 443) => PASS by Counter::FlowHit,
    ];
    names_a_flow_judged_again_after_a_reload_keeps_its_grace_and_no_more: names_fixture(), [
        check |h| { bind(h, "cam-1", CLOUD, "updates.axis.example", 300); },
        from(CAM1_MAC).ipv4(CAM1, CLOUD).tcp(40000, 443).syn() => PASS by rule("cams-cloud"),
        check |_h| { sleep_ms(500); },
        apply(names_fixture()),
        from(CAM1_MAC).ipv4(CAM1, CLOUD).tcp(40000, 443) => PASS by Counter::FlowHit,
        check |_h| { sleep_ms(1_000); },
        apply(names_fixture()),
        from(CAM1_MAC).ipv4(CAM1, CLOUD).tcp(40000, 443) => DROP by Counter::NoFlow,
    ];
    names_dns_to_another_server_is_denied_as_dns_bypass: names_fixture(), [
        from(CAM1_MAC).ipv4(CAM1, OUTSIDE_RESOLVER).udp(40000, 53) => DROP by Counter::DnsBypass,
        from(CAM1_MAC).ipv4(CAM1, OUTSIDE_RESOLVER).tcp(40000, 53).syn() => DROP by Counter::DnsBypass,
        from(CAM1_MAC).ipv4(CAM1, OUTSIDE_RESOLVER).tcp(40000, 853).syn() => DROP by Counter::DnsBypass,
        from(CAM1_MAC).ipv6(CAM1_6, WEB_6).udp(40000, 53) => DROP by Counter::DnsBypass,
        check |h| { h.assert_counter(Counter::DnsBypass, 4); },
    ];
    names_a_protocol_wide_rule_does_not_let_dns_past_the_resolver: names_fixture(), [
        from(HVAC_MAC).ipv4(HVAC, OUTSIDE_RESOLVER).udp(40000, 5353) => PASS by rule("building-udp"),
        from(HVAC_MAC).ipv4(HVAC, OUTSIDE_RESOLVER).udp(40000, 53) => DROP by Counter::DnsBypass,
    ];
    names_a_rule_that_names_udp_53_lets_dns_out: names_fixture(), [
        from(OFFICE_MAC).ipv4(OFFICE, OUTSIDE_RESOLVER).udp(40000, 53) => PASS by rule("office-internet"),
        check |h| { h.assert_counter(Counter::DnsBypass, 0); },
    ];
    names_dns_to_the_routers_resolver_is_no_bypass: names_fixture(), [
        from(CAM1_MAC).ipv4(CAM1, ROUTER_CAMS).udp(40000, 53) => PASS by rule("dhcp-dns"),
        check |h| { h.assert_counter(Counter::DnsBypass, 0); },
    ];
    names_without_a_dns_section_outside_dns_is_judged_as_before: FIXTURE, [
        from(CAM1_MAC).ipv4(CAM1, OUTSIDE_RESOLVER).udp(40000, 53) => DROP by rule("default"),
        check |h| { h.assert_counter(Counter::DnsBypass, 0); },
    ];
}

/// `DEVICE_STATS` keeps a row per CPU and device: a device counted on every CPU reads as the sum
/// of its rows, read in one batch per CPU, in the order asked, with ids far apart (the router's)
/// and the same id twice; and no other device's rows moved.
#[test]
fn device_counters_sum_the_rows_of_every_cpu_in_the_order_asked() {
    let name = "device_counters_sum_the_rows_of_every_cpu_in_the_order_asked";
    let Some(mut h) = Harness::new(name, Setup::from(FIXTURE)) else {
        return;
    };
    // SAFETY: sysconf with a valid name.
    let cpus = usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).unwrap_or(1);
    let syn = from(CAM1_MAC).ipv4(CAM1, NVR).tcp(40000, 554).syn();
    let mut sent = 0u64;
    for cpu in 0..cpus {
        run_on_cpu(cpu);
        // A different number on each CPU, so a row counted twice or missed shows in the sum.
        for _ in 0..=cpu {
            assert_eq!(h.send("cam-1's stream, again", &syn), PASS);
            sent += 1;
        }
    }
    let (cam, nvr) = (h.device_id("cam-1"), h.device_id("nvr-1"));
    let ids = [nvr, cam, enforcer_common::ROUTER_DEVICE, cam];
    let read = datapath::device_counters(&h.dp, ids).expect("device counters");
    let order: Vec<u32> = read.iter().map(|(id, _)| *id).collect();
    assert_eq!(order, ids, "in the order asked");
    let cam_counted = read[1].1;
    assert_eq!(
        cam_counted.packets,
        [sent, 0, 0],
        "{cpus} CPUs: every CPU's packets, once"
    );
    assert!(cam_counted.bytes[0] > 0 && cam_counted.last_seen_ns > 0);
    assert_eq!(read[3].1, cam_counted, "the same id twice reads the same");
    assert_eq!(
        read[0].1,
        DeviceCounters::default(),
        "the recorder sent nothing"
    );
    assert_eq!(
        read[2].1,
        DeviceCounters::default(),
        "the router sent nothing"
    );
}
