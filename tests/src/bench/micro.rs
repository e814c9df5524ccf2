//! Part 1: per-packet cost through `BPF_PROG_TEST_RUN`, kernel-timed, against the empty program,
//! interleaved in every round.
//!
//! - hot: one frame repeated. Classes that must start a new flow on every packet (a repeated SYN
//!   would hit the flow table after its first run) go through `bench_spread` with a one-entry
//!   table and a rotating source port; the driver's own cost is measured in the same round
//!   (`bench_spread` tail-calling `bench_pass`) and taken out:
//!   `net = t(driver->enforcer) - t(driver->pass) + t(empty)`.
//! - spread: `bench_spread` rotates source and destination (MAC, addresses, ports) uniformly over a
//!   table of device pairs chosen from the compiled policy so that each packet has the class's
//!   verdict; the same subtraction applies.

use std::{collections::HashMap, net::IpAddr};

use anyhow::{Context as _, Result, bail};
use enforcer::{
    datapath::{
        Datapath,
        bench::{self as dpb, BenchConfig, BenchEntry},
    },
    policy::{CompiledPolicy, synth},
};
use enforcer_common::{Action, Decision, PROTO_TCP};
use serde_json::{Value, json};

use super::stats;
use crate::frame::Frame;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
/// Source port of every flow the benchmark starts (unless rotated).
const SPORT: u16 = 40_000;
/// Destination ports the pair search tries (the synthetic policy's TCP services).
const PORTS: [u16; 7] = [443, 80, 8000, 22, 1883, 8883, 554];
/// `FLOWS` holds 262,144 and `FRAGS` 8,192 entries: tables that need a remembered entry per pair
/// stay below that, or the measurement would silently change class.
const MAX_REPLY_PAIRS: usize = 60_000;
const MAX_FRAG_PAIRS: usize = 8_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    V4New,
    V4Reply,
    V4Denied,
    V6Ext,
    Vlan,
    Fragment,
    Malformed,
}

impl Class {
    pub const ALL: [Self; 7] = [
        Self::V4New,
        Self::V4Reply,
        Self::V4Denied,
        Self::V6Ext,
        Self::Vlan,
        Self::Fragment,
        Self::Malformed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::V4New => "ipv4_allowed_new_flow",
            Self::V4Reply => "ipv4_allowed_reply",
            Self::V4Denied => "ipv4_denied",
            Self::V6Ext => "ipv6_ext_headers_new_flow",
            Self::Vlan => "vlan_ipv4_new_flow",
            Self::Fragment => "ipv4_later_fragment",
            Self::Malformed => "malformed_ihl4",
        }
    }

    /// Every packet of the class starts a new flow (the source port rotates).
    fn new_flow(self) -> bool {
        matches!(self, Self::V4New | Self::V6Ext | Self::Vlan)
    }

    fn expect(self) -> u32 {
        match self {
            Self::V4Denied | Self::Malformed => XDP_DROP,
            _ => XDP_PASS,
        }
    }

    /// The floor measured beside the class (`floor`): what it cannot do without. Each returns
    /// the class's verdict when it did all of it.
    fn floor_program(self) -> Option<&'static str> {
        match self {
            Self::V4Reply => Some(dpb::FLOOR),
            Self::V4New => Some(dpb::FLOOR_NEW),
            Self::V4Denied => Some(dpb::FLOOR_DENIED),
            Self::Fragment => Some(dpb::FLOOR_FRAGMENT),
            _ => None,
        }
    }
}

/// A source, a destination and a TCP port, by device index, with a known verdict.
#[derive(Clone, Copy, Debug)]
struct Pair {
    src: usize,
    dst: usize,
    port: u16,
}

/// The policy's verdict for a TCP SYN from device `s` to device `d` port `port`, evaluated from
/// the compiled image exactly as `policy::decide` does (identity by MAC+address, then pair, then
/// port, then the default).
struct Judge<'a> {
    p: &'a CompiledPolicy,
    class: HashMap<[u8; 6], (u32, u16)>,
    pairs: HashMap<(u16, u16), enforcer_common::rules::PairValue>,
    ports: HashMap<(u32, u8, u16), Decision>,
}

impl<'a> Judge<'a> {
    fn new(p: &'a CompiledPolicy) -> Self {
        Self {
            p,
            class: p
                .maps
                .macs
                .iter()
                .map(|(m, e)| (*m, (e.device, e.class)))
                .collect(),
            pairs: p
                .maps
                .pairs
                .iter()
                .map(|(k, v)| ((k.src, k.dst), *v))
                .collect(),
            ports: p
                .maps
                .ports
                .iter()
                .map(|(k, d)| ((k.pair, k.proto, k.port), *d))
                .collect(),
        }
    }

    fn device(&self, i: usize) -> Option<(u32, u16)> {
        self.class.get(&synth::mac(i)).copied()
    }

    fn allows(&self, s: usize, d: usize, port: u16) -> Option<bool> {
        let (_, cs) = self.device(s)?;
        let (_, cd) = self.device(d)?;
        let mut dec = Decision::default();
        if let Some(pv) = self.pairs.get(&(cs, cd)) {
            if pv.pair != 0
                && let Some(x) = self.ports.get(&(pv.pair, PROTO_TCP, port))
            {
                dec = *x;
            }
            if !dec.is_set() {
                dec = pv.tcp;
            }
        }
        let action = if dec.is_set() {
            dec.action()
        } else {
            self.p.default_action
        };
        Some(action == Action::Allow)
    }

    /// For every source (in index order), the first candidate destination and port with the
    /// wanted verdict; deterministic.
    fn pairs(&self, devices: usize, allowed: bool, limit: usize) -> Vec<Pair> {
        let mut out = Vec::new();
        if devices < 2 {
            return out;
        }
        let stride = (devices / limit.max(1)).max(1);
        let mut s = 0;
        while s < devices && out.len() < limit {
            'found: for k in 0..64usize {
                let d = (s.wrapping_mul(7_919) + k.wrapping_mul(104_729) + 1) % devices;
                if d == s {
                    continue;
                }
                for port in PORTS {
                    if self.allows(s, d, port) == Some(allowed) {
                        out.push(Pair {
                            src: s,
                            dst: d,
                            port,
                        });
                        break 'found;
                    }
                }
            }
            s += stride;
        }
        out
    }
}

fn ip(i: usize, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(synth::ipv6(i))
    } else {
        IpAddr::V4(synth::ipv4(i))
    }
}

fn octets16(a: IpAddr) -> [u8; 16] {
    let mut o = [0u8; 16];
    match a {
        IpAddr::V4(a) => o[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => o = a.octets(),
    }
    o
}

/// The class's frame for a pair (before any rewrite).
fn frame(class: Class, p: Pair) -> Vec<u8> {
    let (s, d) = (p.src, p.dst);
    match class {
        Class::V4New | Class::V4Denied => Frame::eth(synth::mac(s))
            .ip(ip(s, false), ip(d, false))
            .tcp(SPORT, p.port)
            .syn()
            .build(),
        Class::V4Reply => Frame::eth(synth::mac(d))
            .ip(ip(d, false), ip(s, false))
            .tcp(p.port, SPORT)
            .syn_ack()
            .build(),
        Class::V6Ext => Frame::eth(synth::mac(s))
            .ip(ip(s, true), ip(d, true))
            .ext(0, &[0; 6])
            .ext(60, &[0; 6])
            .tcp(SPORT, p.port)
            .syn()
            .build(),
        Class::Vlan => Frame::eth(synth::mac(s))
            .vlan(10)
            .ip(ip(s, false), ip(d, false))
            .tcp(SPORT, p.port)
            .syn()
            .build(),
        // The first fragment (MF, offset 0) is what the flow is judged on; the measured packet is
        // a later fragment (offset 1480 bytes) of the same datagram.
        Class::Fragment => Frame::eth(synth::mac(s))
            .ip(ip(s, false), ip(d, false))
            .frag(185)
            .ip_id(0x4242)
            .proto(PROTO_TCP, &[0; 64])
            .build(),
        Class::Malformed => Frame::eth(synth::mac(s))
            .ip(ip(s, false), ip(d, false))
            .ihl(4)
            .tcp(SPORT, p.port)
            .build(),
    }
}

/// The frame that must go first so the measured one has its class (the flow's SYN, the first
/// fragment).
fn setup_frame(class: Class, p: Pair) -> Option<Vec<u8>> {
    match class {
        Class::V4Reply => Some(frame(Class::V4New, p)),
        Class::Fragment => Some(
            Frame::eth(synth::mac(p.src))
                .ip(ip(p.src, false), ip(p.dst, false))
                .frag(0x2000)
                .ip_id(0x4242)
                .tcp(SPORT, p.port)
                .syn()
                .payload(&[0; 64])
                .build(),
        ),
        _ => None,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<u32> {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .and_then(|i| u32::try_from(i).ok())
}

/// Where the driver writes in `frame` (built for `p`), and what.
fn config(class: Class, frame: &[u8], p: Pair, n: usize, rotate: bool) -> Result<BenchConfig> {
    let v6 = class == Class::V6Ext;
    let (s, d) = if class == Class::V4Reply {
        (p.dst, p.src)
    } else {
        (p.src, p.dst)
    };
    let src = octets16(ip(s, v6));
    let dst = octets16(ip(d, v6));
    let len = if v6 { 16 } else { 4 };
    let src_off = find(frame, &src[..len]).context("source address in frame")?;
    let dst_off = find(frame, &dst[..len]).context("destination address in frame")?;
    let mut flags = dpb::F_MAC | dpb::F_ADDRS;
    let (mut sport_off, mut dport_off) = (0, 0);
    if !matches!(class, Class::Fragment) {
        // TCP header right after the addresses' header (and any extension headers): the ports are
        // the first 4 bytes of the last 20 (no payload, no options).
        let l4 = u32::try_from(frame.len() - 20)?;
        sport_off = l4;
        dport_off = l4 + 2;
        flags |= dpb::F_DPORT
            | if rotate {
                dpb::F_ROTATE_SPORT
            } else {
                dpb::F_SPORT
            };
    }
    Ok(BenchConfig {
        n: u32::try_from(n.max(1))?,
        mac_off: 6,
        src_off,
        dst_off,
        addr_len: u32::try_from(len)?,
        sport_off,
        dport_off,
        flags,
        ..BenchConfig::default()
    })
}

fn entries(class: Class, pairs: &[Pair]) -> Vec<BenchEntry> {
    let v6 = class == Class::V6Ext;
    pairs
        .iter()
        .map(|p| {
            let reply = class == Class::V4Reply;
            let (s, d) = if reply {
                (p.dst, p.src)
            } else {
                (p.src, p.dst)
            };
            let (sp, dp) = if reply {
                (p.port, SPORT)
            } else {
                (SPORT, p.port)
            };
            BenchEntry {
                mac: synth::mac(s),
                sport: sp.to_be_bytes(),
                dport: dp.to_be_bytes(),
                src: octets16(ip(s, v6)),
                dst: octets16(ip(d, v6)),
                ..BenchEntry::default()
            }
        })
        .collect()
}

/// The entries of the setup frame (the forward direction).
fn setup_entries(pairs: &[Pair]) -> Vec<BenchEntry> {
    entries(Class::V4New, pairs)
}

pub struct Params {
    pub rounds: usize,
    pub repeat_hot: u32,
    pub repeat_spread: u32,
    /// Classes to measure by name; all when empty.
    pub classes: Vec<String>,
    /// Patterns to measure (`hot`, `spread`); both when empty.
    pub patterns: Vec<String>,
}

/// Whether `name` is one of `chosen`, or nothing was chosen (everything is measured).
fn wanted(chosen: &[String], name: &str) -> bool {
    chosen.is_empty() || chosen.iter().any(|c| c == name)
}

/// A pattern's name, as reports and `--patterns` say it.
pub fn pattern(spread: bool) -> &'static str {
    if spread { "spread" } else { "hot" }
}

/// One measured case: a class, a pattern, its pairs and frames.
struct Case {
    class: Class,
    spread: bool,
    pairs: Vec<Pair>,
    frame: Vec<u8>,
    /// Goes through the driver (and has its overhead subtracted).
    driver: bool,
    ns: Vec<f64>,
    empty: Vec<f64>,
    driver_pass: Vec<f64>,
    ratio: Vec<f64>,
    /// The class's floor (`floor`), net ns and ratio: allowed replies, IPv4 new flows, denied and
    /// later fragments.
    floor: Vec<f64>,
    floor_ratio: Vec<f64>,
}

/// Runs per measurement. A hot new flow rotates only the 16-bit source port: past 64,000 packets
/// the ports would come round again while their flows are still remembered, and the run would
/// measure flow hits. A spread new flow inserts a flow a packet into `FLOWS`, which holds
/// `DEFAULT_FLOWS` (262,144) and evicts no live flow: past that the run would measure refusals. So
/// each stops short.
fn repeat_for(c: &Case, prm: &Params) -> u32 {
    match (c.spread, c.class.new_flow()) {
        (true, true) => prm.repeat_spread.min(NEW_FLOWS_PER_RUN),
        (true, false) => prm.repeat_spread,
        (false, true) => prm.repeat_hot.min(60_000),
        (false, false) => prm.repeat_hot,
    }
}

/// New flows one spread run may start: below `FLOWS`' capacity.
const NEW_FLOWS_PER_RUN: u32 = 250_000;
const _: () = assert!(NEW_FLOWS_PER_RUN < enforcer_common::flow::DEFAULT_FLOWS);

fn ns(d: std::time::Duration) -> f64 {
    d.as_nanos() as f64
}

/// Prepares the maps so the next timed run of `c` sees its class: an empty flow table (what the
/// case before left there, up to a new-flow run's 250,000 flows, would leave no room: the table
/// evicts no live flow), then remembered SYNs or first fragments for replies and later fragments.
fn prepare(dp: &mut Datapath, c: &Case) -> Result<()> {
    dp.bench_clear_flows()?;
    if let Some(setup) = setup_frame(c.class, c.pairs[0]) {
        // Through the driver, one pass over the table, forward direction, fixed ports.
        let mut cfg = config(Class::V4New, &setup, c.pairs[0], c.pairs.len(), false)?;
        if c.class == Class::Fragment {
            // TCP right after a 20-byte IPv4 header; the payload follows, so not `len - 20`.
            cfg.sport_off = 34;
            cfg.dport_off = 36;
        }
        if c.driver {
            dp.bench_table(&setup_entries(&c.pairs))?;
            dp.bench_config(cfg)?;
            dp.bench_target(dpb::ENFORCER)?;
            dp.bench_reset_counter()?;
            dp.bench_run(dpb::SPREAD, &setup, u32::try_from(c.pairs.len())?)?;
        } else {
            dp.bench_run(dpb::ENFORCER, &setup, 1)?;
        }
    }
    if c.driver {
        dp.bench_table(&entries(c.class, &c.pairs))?;
        dp.bench_config(config(
            c.class,
            &c.frame,
            c.pairs[0],
            c.pairs.len(),
            c.class.new_flow(),
        )?)?;
        dp.bench_reset_counter()?;
    }
    Ok(())
}

/// `frame` through the driver into `program`, from the rotation's start, `repeat` times; the
/// driver's target goes back to the enforcer after.
fn through_driver(
    dp: &mut Datapath,
    program: &str,
    frame: &[u8],
    repeat: u32,
) -> Result<(u32, std::time::Duration)> {
    dp.bench_target(program)?;
    dp.bench_reset_counter()?;
    let run = dp.bench_run(dpb::SPREAD, frame, repeat);
    dp.bench_target(dpb::ENFORCER)?;
    Ok(run?)
}

/// The case's frame through a floor program (`bench_floor`: a reply's flow lookup alone;
/// `bench_floor_new`: a new flow's lookup and insert, into a table emptied first as the case's
/// is; `bench_floor_denied`: a denied packet's flow miss, identities and class pair;
/// `bench_floor_fragment`: a later fragment's `FRAGS` lookup, behind the first fragments `prepare`
/// sent), the way the case runs the enforcer (through the driver or not): the kernel-timed ns per
/// packet, the driver's included. The run's last packet must have had the class's verdict (and
/// for replies, denied packets and later fragments the samples checked before anything is timed
/// all did).
fn floor(dp: &mut Datapath, c: &Case, program: &str, repeat: u32) -> Result<f64> {
    if c.class.new_flow() {
        dp.bench_clear_flows()?;
    }
    let (rv, t) = if c.driver {
        through_driver(dp, program, &c.frame, repeat)?
    } else {
        dp.bench_run(program, &c.frame, repeat)?
    };
    if rv != c.class.expect() {
        bail!("{program} on {}: verdict {rv}", c.class.name());
    }
    Ok(ns(t))
}

/// Measures every class and pattern at one policy size; returns one JSON object per case.
pub fn run(
    dp: &mut Datapath,
    policy: &CompiledPolicy,
    devices: usize,
    prm: &Params,
) -> Result<Vec<Value>> {
    let judge = Judge::new(policy);
    let allowed = judge.pairs(devices, true, devices);
    let denied = judge.pairs(devices, false, devices);
    if allowed.is_empty() || denied.is_empty() {
        bail!(
            "{devices} devices: the synthetic policy has no allowed or no denied TCP pair to measure"
        );
    }
    let mut used: Vec<u32> = allowed
        .iter()
        .chain(&denied)
        .filter_map(|p| judge.device(p.src).map(|d| d.0))
        .collect();
    used.sort_unstable();
    used.dedup();
    let thin = |v: &[Pair], cap: usize| -> Vec<Pair> {
        let step = v.len().div_ceil(cap).max(1);
        v.iter().step_by(step).copied().collect()
    };
    let mut cases = Vec::new();
    for class in Class::ALL {
        if !wanted(&prm.classes, class.name()) {
            continue;
        }
        let base = if class == Class::V4Denied {
            &denied
        } else {
            &allowed
        };
        for spread in [false, true] {
            if !wanted(&prm.patterns, pattern(spread)) {
                continue;
            }
            if spread && class == Class::Malformed {
                continue; // rejected before any lookup: nothing to spread
            }
            let pairs = match (spread, class) {
                (false, _) => vec![base[0]],
                (true, Class::V4Reply) => thin(base, MAX_REPLY_PAIRS),
                (true, Class::Fragment) => thin(base, MAX_FRAG_PAIRS),
                (true, _) => base.clone(),
            };
            let frame = frame(class, pairs[0]);
            let driver = spread || class.new_flow();
            cases.push(Case {
                class,
                spread,
                pairs,
                frame,
                driver,
                ns: vec![],
                empty: vec![],
                driver_pass: vec![],
                ratio: vec![],
                floor: vec![],
                floor_ratio: vec![],
            });
        }
    }
    // Check each table's verdicts on a sample with direct runs before timing anything.
    dp.bench_clear_device_state(used.iter().copied())?;
    for c in &cases {
        prepare(dp, c)?;
        for p in c.pairs.iter().step_by((c.pairs.len() / 50).max(1)).take(50) {
            if let Some(s) = setup_frame(c.class, *p) {
                dp.bench_run(dpb::ENFORCER, &s, 1)?;
            }
            let (rv, _) = dp.bench_run(dpb::ENFORCER, &frame(c.class, *p), 1)?;
            if rv != c.class.expect() {
                bail!(
                    "{devices} devices, {} {:?}: verdict {rv}, expected {}",
                    c.class.name(),
                    p,
                    c.class.expect()
                );
            }
            // The floors that find what the enforcer left or was given: the reply's flow; a
            // denied packet's two devices; the later fragment's first fragment. (A new flow's
            // floor would find the flow just judged.)
            if matches!(c.class, Class::V4Reply | Class::V4Denied | Class::Fragment)
                && let Some(program) = c.class.floor_program()
            {
                let (rv, _) = dp.bench_run(program, &frame(c.class, *p), 1)?;
                if rv != c.class.expect() {
                    bail!("{devices} devices, the floor missed {p:?} ({program}, verdict {rv})");
                }
            }
        }
    }
    dp.bench_clear_device_state(used.iter().copied())?;
    for round in 0..prm.rounds {
        for c in &mut cases {
            let repeat = repeat_for(c, prm);
            prepare(dp, c)?;
            let (_, empty) = dp.bench_run(dpb::PASS, &c.frame, repeat)?;
            let (rv, t) = if c.driver {
                dp.bench_target(dpb::ENFORCER)?;
                dp.bench_run(dpb::SPREAD, &c.frame, repeat)?
            } else {
                dp.bench_run(dpb::ENFORCER, &c.frame, repeat)?
            };
            if rv != c.class.expect() {
                bail!(
                    "round {round}, {devices} devices, {}: last verdict {rv}",
                    c.class.name()
                );
            }
            let mut net = ns(t);
            let mut driver = 0.0;
            if c.driver {
                let (_, d) = through_driver(dp, dpb::PASS, &c.frame, repeat)?;
                c.driver_pass.push(ns(d));
                driver = ns(d);
                net = net - driver + ns(empty);
            }
            if let Some(program) = c.class.floor_program() {
                let floor = floor(dp, c, program, repeat)? - driver + ns(empty);
                c.floor.push(floor);
                c.floor_ratio.push(floor / ns(empty).max(1.0));
            }
            if c.class == Class::V4Denied {
                // A denying device trips quarantine (as it should); lift it so the next cases
                // judge the same devices in their own zones.
                dp.bench_clear_device_state(used.iter().copied())?;
            }
            c.ns.push(net);
            c.empty.push(ns(empty));
            c.ratio.push(net / ns(empty).max(1.0));
        }
        eprintln!(
            "  {devices} devices: round {}/{} done",
            round + 1,
            prm.rounds
        );
    }
    let mut out = Vec::new();
    for c in cases {
        let distinct_src = {
            let mut s: Vec<usize> = c.pairs.iter().map(|p| p.src).collect();
            s.sort_unstable();
            s.dedup();
            s.len()
        };
        out.push(json!({
            "devices": devices,
            "class": c.class.name(),
            "pattern": pattern(c.spread),
            "pairs": c.pairs.len(),
            "distinct_sources": distinct_src,
            "via_driver": c.driver,
            "repeat": repeat_for(&c, prm),
            "enforcer_ns": stats::summary(&c.ns),
            "empty_ns": stats::summary(&c.empty),
            "driver_to_pass_ns": if c.driver { stats::summary(&c.driver_pass) } else { Value::Null },
            "ratio_median": (stats::median(&c.ratio) * 100.0).round() / 100.0,
            "ratios": c.ratio.iter().map(|r| (r * 100.0).round() / 100.0).collect::<Vec<_>>(),
            "floor_ns": if c.floor.is_empty() { Value::Null } else { stats::summary(&c.floor) },
            "floor_ratio_median": if c.floor.is_empty() {
                Value::Null
            } else {
                json!((stats::median(&c.floor_ratio) * 100.0).round() / 100.0)
            },
        }));
    }
    Ok(out)
}
