//! Part 2: drop and pass cost on a real path.
//!
//! One namespace (`enfb-veth-<pid>`), two veth pairs: `g0 -> r0` carries the load, `r1 -> s1` is
//! where forwarded packets leave. `bench_gen`, run with live frames (`BPF_F_TEST_XDP_LIVE_FRAMES`)
//! on CPU 0, rewrites each frame from a table of device pairs and redirects it into `g0`; it
//! arrives on `r0`, whose threaded NAPI kthread is pinned to CPU 1. Cost = that thread's CPU time
//! (`/proc/<tid>/schedstat`) per packet `r0` took in. GRO is on for `r0` in every scenario (veth
//! delivers nothing without an XDP program or GRO); `s1` runs `bench_drop` on its own NAPI thread
//! (pinned to CPU 0) so forwarded packets cost the receiver only the forward and the enqueue.
//!
//! Scenarios: no program (kernel forwarding), `bench_pass` (what any XDP program that passes
//! adds to it), `bench_drop`, the enforcer (allowed established traffic; denied traffic), the
//! floors of those two (`bench_floor`, the allowed traffic's flow lookup alone, right after the
//! enforcer opened the flows; `bench_floor_denied`, a denied packet's flow miss, identities and
//! class pair), and nftables with the equivalent policy in the forward hook (same two mixes),
//! interleaved per round.

use std::{
    fs,
    os::fd::{AsFd as _, AsRawFd as _},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use aya::programs::XdpMode;
use enforcer::{
    datapath::{
        Datapath,
        bench::{self as dpb, BenchConfig, BenchEntry},
    },
    policy::synth,
};
use serde_json::{Value, json};

use super::{control, nft, stats};
use crate::frame::Frame;

const DEVICES: usize = 1_000;
const SPORT: u16 = 40_000;
const PORTS: [u16; 7] = [443, 80, 8000, 22, 1883, 8883, 554];

fn ip(ns: &str, args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .arg("-n")
        .arg(ns)
        .args(args)
        .output()
        .context("run ip")?;
    if !out.status.success() {
        bail!(
            "ip -n {ns} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn sh_in(ns: &str, script: &str) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", script])
        .output()
        .context("run sh")?;
    if !out.status.success() {
        bail!("{script}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Enters `ns` on this thread; returns a guard that goes back.
struct NsGuard(fs::File);

impl NsGuard {
    fn enter(ns: &str) -> Result<Self> {
        let back = fs::File::open("/proc/thread-self/ns/net").context("open own netns")?;
        let target = fs::File::open(format!("/var/run/netns/{ns}")).context("open netns")?;
        // SAFETY: setns reads the fd only; it changes this thread's network namespace.
        if unsafe { libc::setns(target.as_fd().as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns {ns}: {}", std::io::Error::last_os_error());
        }
        Ok(Self(back))
    }
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        // SAFETY: as above, back to the namespace this thread came from.
        unsafe { libc::setns(self.0.as_raw_fd(), libc::CLONE_NEWNET) };
    }
}

fn pin_self(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Pid of the NAPI kthread of `iface` (`napi/<iface>-<id>`).
fn napi_thread(iface: &str) -> Option<u32> {
    let prefix = format!("napi/{iface}-");
    fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = fs::read_to_string(e.path().join("comm")).ok()?;
            comm.trim().starts_with(&prefix).then_some(pid)
        })
}

fn cpu_ns(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn ethtool_stat(ns: &str, iface: &str, key: &str) -> u64 {
    sh_in(ns, &format!("ethtool -S {iface}"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                let (k, v) = l.trim().split_once(':')?;
                (k.trim() == key).then(|| v.trim().parse().ok()).flatten()
            })
        })
        .unwrap_or(0)
}

fn link_stat(ns: &str, iface: &str, what: &str) -> u64 {
    sh_in(ns, &format!("cat /sys/class/net/{iface}/statistics/{what}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Setup: namespace, links, addresses, routes, threaded NAPI pinned.
fn topology(ns: &str) -> Result<()> {
    Command::new("ip")
        .args(["netns", "add", ns])
        .status()
        .context("ip netns add")?;
    ip(ns, &["link", "set", "lo", "up"])?;
    ip(
        ns,
        &["link", "add", "g0", "type", "veth", "peer", "name", "r0"],
    )?;
    ip(
        ns,
        &["link", "add", "r1", "type", "veth", "peer", "name", "s1"],
    )?;
    for i in ["g0", "r0", "r1", "s1"] {
        ip(ns, &["link", "set", i, "up"])?;
    }
    ip(ns, &["addr", "add", "10.254.0.1/30", "dev", "r1"])?;
    let s1_mac = sh_in(ns, "cat /sys/class/net/s1/address")?;
    ip(
        ns,
        &[
            "neigh",
            "add",
            "10.254.0.2",
            "lladdr",
            s1_mac.trim(),
            "dev",
            "r1",
            "nud",
            "permanent",
        ],
    )?;
    ip(
        ns,
        &[
            "route",
            "add",
            "10.0.0.0/8",
            "via",
            "10.254.0.2",
            "dev",
            "r1",
        ],
    )?;
    sh_in(
        ns,
        "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
         net.ipv4.conf.r0.rp_filter=0 && ethtool -K r0 gro on && ethtool -K s1 gro on && \
         echo 1 > /sys/class/net/r0/threaded && echo 1 > /sys/class/net/s1/threaded",
    )?;
    Ok(())
}

fn pin_napi(ns: &str) -> Result<u32> {
    let _ = sh_in(
        ns,
        "echo 1 > /sys/class/net/r0/threaded; echo 1 > /sys/class/net/s1/threaded",
    );
    let r0 = napi_thread("r0").context("no napi/r0 kthread (threaded NAPI)")?;
    Command::new("taskset")
        .args(["-pc", "1", &r0.to_string()])
        .output()
        .context("taskset")?;
    if let Some(s1) = napi_thread("s1") {
        Command::new("taskset")
            .args(["-pc", "0", &s1.to_string()])
            .output()
            .context("taskset")?;
    }
    Ok(r0)
}

struct Traffic {
    frame: Vec<u8>,
    table: Vec<BenchEntry>,
    cfg: BenchConfig,
}

fn traffic(
    dp: &Datapath,
    compiled: &enforcer::policy::CompiledPolicy,
    r0_mac: [u8; 6],
    allowed: bool,
    g0: u32,
) -> Result<Traffic> {
    let _ = dp;
    // Pairs with the wanted verdict (same search as the test-run part, TCP SYNs, fixed ports).
    let class: std::collections::HashMap<[u8; 6], u16> = compiled
        .maps
        .macs
        .iter()
        .map(|(m, e)| (*m, e.class))
        .collect();
    let pairs: std::collections::HashMap<(u16, u16), enforcer_common::rules::PairValue> = compiled
        .maps
        .pairs
        .iter()
        .map(|(k, v)| ((k.src, k.dst), *v))
        .collect();
    let ports: std::collections::HashMap<(u32, u8, u16), enforcer_common::Decision> = compiled
        .maps
        .ports
        .iter()
        .map(|(k, d)| ((k.pair, k.proto, k.port), *d))
        .collect();
    let allows = |s: usize, d: usize, port: u16| -> bool {
        let (Some(cs), Some(cd)) = (class.get(&synth::mac(s)), class.get(&synth::mac(d))) else {
            return false;
        };
        let mut dec = enforcer_common::Decision::default();
        if let Some(pv) = pairs.get(&(*cs, *cd)) {
            if pv.pair != 0
                && let Some(x) = ports.get(&(pv.pair, enforcer_common::PROTO_TCP, port))
            {
                dec = *x;
            }
            if !dec.is_set() {
                dec = pv.tcp;
            }
        }
        let a = if dec.is_set() {
            dec.action()
        } else {
            compiled.default_action
        };
        a == enforcer_common::Action::Allow
    };
    let mut table = Vec::new();
    for s in 0..DEVICES {
        'f: for k in 0..64usize {
            let d = (s * 7_919 + k * 104_729 + 1) % DEVICES;
            if d == s {
                continue;
            }
            for port in PORTS {
                if allows(s, d, port) == allowed {
                    let f = frame(r0_mac, s, d, port);
                    table.push(BenchEntry {
                        mac: synth::mac(s),
                        sport: SPORT.to_be_bytes(),
                        dport: port.to_be_bytes(),
                        ip_csum: [f[24], f[25]],
                        l4_csum: [f[50], f[51]],
                        src: {
                            let mut o = [0; 16];
                            o[..4].copy_from_slice(&synth::ipv4(s).octets());
                            o
                        },
                        dst: {
                            let mut o = [0; 16];
                            o[..4].copy_from_slice(&synth::ipv4(d).octets());
                            o
                        },
                        ..BenchEntry::default()
                    });
                    break 'f;
                }
            }
        }
    }
    let frame = frame(r0_mac, 0, 1, 443);
    let l4 = u32::try_from(14 + 20)?;
    let cfg = BenchConfig {
        n: u32::try_from(table.len())?,
        mac_off: 6,
        src_off: 26,
        dst_off: 30,
        addr_len: 4,
        sport_off: l4,
        dport_off: l4 + 2,
        flags: dpb::F_MAC | dpb::F_ADDRS | dpb::F_SPORT | dpb::F_DPORT | dpb::F_CSUM,
        ifindex: g0,
        ip_csum_off: 24,
        l4_csum_off: 50,
        dst_mac: r0_mac,
        ttl: frame[22],
        _pad: 0,
    };
    Ok(Traffic { frame, table, cfg })
}

/// An 80-byte TCP SYN from device `s` to device `d`, with valid IPv4 and TCP checksums (the
/// stack and conntrack check them).
fn frame(r0_mac: [u8; 6], s: usize, d: usize, port: u16) -> Vec<u8> {
    let mut f = Frame::eth(synth::mac(s))
        .dst_mac(r0_mac)
        .ip(
            std::net::IpAddr::V4(synth::ipv4(s)),
            std::net::IpAddr::V4(synth::ipv4(d)),
        )
        .tcp(SPORT, port)
        .syn()
        .payload(&[0; 26])
        .build();
    let seg = &f[34..];
    let mut pseudo = Vec::with_capacity(12 + seg.len());
    pseudo.extend_from_slice(&f[26..34]);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&u16::try_from(seg.len()).unwrap_or(0).to_be_bytes());
    pseudo.extend_from_slice(seg);
    pseudo[12 + 16] = 0;
    pseudo[12 + 17] = 0;
    let c = crate::frame::checksum(&pseudo);
    f[50..52].copy_from_slice(&c.to_be_bytes());
    f
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rx {
    None,
    /// A program of the object, attached to `r0` (native XDP).
    Xdp(&'static str),
    Nft,
}

/// One measured run: receiver CPU ns per packet received, packets received and forwarded.
type Run = (f64, u64, u64);

/// One measured run (see [`Run`]).
fn measure(dp: &mut Datapath, ns: &str, t: &Traffic, packets: u32) -> Result<Run> {
    dp.bench_table(&t.table)?;
    dp.bench_config(t.cfg)?;
    dp.bench_reset_counter()?;
    let napi = pin_napi(ns)?;
    let before_cpu = cpu_ns(napi).context("schedstat")?;
    let before_rx =
        link_stat(ns, "r0", "rx_packets") + ethtool_stat(ns, "r0", "rx_queue_0_xdp_drops");
    // Packets that left through r1 (sent or dropped at s1's full ring): what the router forwarded.
    let out_r1 = || link_stat(ns, "r1", "tx_packets") + link_stat(ns, "r1", "tx_dropped");
    let before_fwd = out_r1();
    let debug = std::env::var_os("ENFB_DEBUG").is_some();
    let snmp0 = if debug {
        sh_in(ns, "cat /proc/net/snmp; cat /proc/net/netstat")?
    } else {
        String::new()
    };
    dp.bench_live_run(dpb::GEN, &t.frame, packets, 64)?;
    std::thread::sleep(Duration::from_millis(100));
    let cpu = cpu_ns(napi)
        .context("schedstat")?
        .saturating_sub(before_cpu);
    let rx = (link_stat(ns, "r0", "rx_packets") + ethtool_stat(ns, "r0", "rx_queue_0_xdp_drops"))
        .saturating_sub(before_rx);
    let fwd = out_r1().saturating_sub(before_fwd);
    if debug {
        eprintln!(
            "--- before\n{snmp0}\n--- after\n{}",
            sh_in(
                ns,
                "nft list chain inet enforcer forward 2>&1 | grep counter; true"
            )?
        );
    }
    if rx == 0 {
        bail!("r0 received nothing");
    }
    Ok((cpu as f64 / rx as f64, rx, fwd))
}

/// What the rounds of one scenario measured.
#[derive(Clone, Default)]
struct Measured {
    /// Receiver CPU ns per packet received, a sample per round.
    receiver_ns: Vec<f64>,
    /// The program's own ns per run as the kernel timed it, a sample per round (timed runs only).
    program_ns: Vec<f64>,
    received: u64,
    forwarded: u64,
}

/// [`measure`] with the kernel's run statistics on: also the mean run time of `prog` over the
/// measured run, from its run count and total run time (`bpf_prog_info`), which exclude the
/// path around it.
fn timed_measure(
    dp: &mut Datapath,
    prog: &str,
    ns: &str,
    t: &Traffic,
    packets: u32,
) -> Result<(Result<Run>, f64)> {
    let stats_on = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("BPF_ENABLE_STATS")?;
    let (runs0, time0) = dp.bench_run_stats(prog)?;
    let m = measure(dp, ns, t, packets);
    let (runs1, time1) = dp.bench_run_stats(prog)?;
    drop(stats_on);
    let runs = runs1.saturating_sub(runs0);
    if runs == 0 {
        bail!("{prog}: the kernel counted no run with statistics on");
    }
    let time = time1.saturating_sub(time0);
    Ok((m, time.as_nanos() as f64 / runs as f64))
}

fn run_inner(ns: &str, quick: bool) -> Result<Value> {
    topology(ns)?;
    let (_, compiled, _, _) = control::build(DEVICES)?;
    let mut ruleset = nft::ruleset(&compiled);
    if std::env::var_os("ENFB_DEBUG").is_some() {
        ruleset = ruleset
            .replace(
                "    ct state established,related accept\n",
                "    counter\n    ct state established,related counter accept\n",
            )
            .replace(
                "    meta mark . ct mark vmap @pairs\n",
                "    counter meta mark . ct mark vmap @pairs\n    counter\n",
            );
    }
    let _guard = NsGuard::enter(ns)?;
    pin_self(0);
    let mut dp = Datapath::load_for_bench().context("load")?;
    dp.apply(&compiled, 1)?;
    let r0_mac: Vec<u8> = sh_in(ns, "cat /sys/class/net/r0/address")?
        .trim()
        .split(':')
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect();
    let r0_mac: [u8; 6] = r0_mac.try_into().map_err(|_| anyhow::anyhow!("r0 mac"))?;
    let g0: u32 = sh_in(ns, "cat /sys/class/net/g0/ifindex")?.trim().parse()?;
    // s1 drops what the router forwards (its own NAPI thread, CPU 0).
    let s1_link = dp.bench_attach(dpb::DROP, "s1", XdpMode::Driver)?;
    let allow = traffic(&dp, &compiled, r0_mac, true, g0)?;
    let deny = traffic(&dp, &compiled, r0_mac, false, g0)?;
    let packets: u32 = if quick { 300_000 } else { 2_000_000 };
    let rounds = if quick { 2 } else { 5 };
    // (name, receiver, allowed traffic, program timed by the kernel). A timed run is a scenario
    // of its own: run statistics cost every program two clock reads a run, which would weigh on
    // the path the untimed scenarios compare.
    let scenarios: [(&str, Rx, bool, bool); 11] = [
        ("no_program_allowed", Rx::None, true, false),
        ("xdp_pass_all_allowed", Rx::Xdp(dpb::PASS), true, false),
        ("xdp_drop_all", Rx::Xdp(dpb::DROP), false, false),
        ("enforcer_allowed", Rx::Xdp(dpb::ENFORCER), true, false),
        ("enforcer_allowed_timed", Rx::Xdp(dpb::ENFORCER), true, true),
        // Right after the enforcer: its allowed traffic's flows are in `FLOWS`.
        ("floor_allowed", Rx::Xdp(dpb::FLOOR), true, false),
        ("floor_allowed_timed", Rx::Xdp(dpb::FLOOR), true, true),
        ("enforcer_denied", Rx::Xdp(dpb::ENFORCER), false, false),
        ("floor_denied", Rx::Xdp(dpb::FLOOR_DENIED), false, false),
        ("nftables_allowed", Rx::Nft, true, false),
        ("nftables_denied", Rx::Nft, false, false),
    ];
    let mut res: Vec<Measured> = vec![Measured::default(); scenarios.len()];
    for round in 0..rounds {
        for (k, (name, rx, allowed, timed)) in scenarios.iter().enumerate() {
            let t = if *allowed { &allow } else { &deny };
            dp.bench_clear_device_state(0..u32::try_from(DEVICES + 1)?)?;
            let link = match rx {
                Rx::Xdp(prog) => Some((*prog, dp.bench_attach(prog, "r0", XdpMode::Driver)?)),
                Rx::None => None,
                Rx::Nft => {
                    nft::load(ns, &ruleset)?;
                    None
                }
            };
            // Warm-up pass (flows, conntrack, caches), then the measured run.
            let _ = measure(&mut dp, ns, t, u32::try_from(t.table.len() * 4)?);
            let (m, run_ns) = match (rx, timed) {
                (Rx::Xdp(prog), true) => {
                    let (m, run_ns) = timed_measure(&mut dp, prog, ns, t, packets)?;
                    (m, Some(run_ns))
                }
                _ => (measure(&mut dp, ns, t, packets), None),
            };
            if let Some((prog, l)) = link {
                dp.bench_detach(prog, l)?;
            }
            if *rx == Rx::Nft {
                let _ = sh_in(
                    ns,
                    "nft delete table inet enforcer; conntrack -F 2>/dev/null; true",
                );
            }
            let (ns_pp, rx_n, fwd) = m?;
            // A floor's verdict depends on state set up here (the flows the enforcer opened, the
            // policy's devices): one that missed would time a cheaper path than it names, and
            // forward what it should drop or the reverse.
            if matches!(rx, Rx::Xdp(p) if [dpb::FLOOR, dpb::FLOOR_DENIED].contains(p)) {
                let want = if *allowed { rx_n } else { 0 };
                if fwd.abs_diff(want) > rx_n / 100 {
                    bail!("{name}: forwarded {fwd} of {rx_n} packets received");
                }
            }
            res[k].receiver_ns.push(ns_pp);
            res[k].program_ns.extend(run_ns);
            res[k].received += rx_n;
            res[k].forwarded += fwd;
        }
        eprintln!("  veth: round {}/{rounds} done", round + 1);
    }
    dp.bench_detach(dpb::DROP, s1_link)?;
    let drop = scenarios
        .iter()
        .position(|(name, ..)| *name == "xdp_drop_all")
        .map_or(&[][..], |k| &res[k].receiver_ns[..]);
    let mut rows = Vec::new();
    for (k, (name, ..)) in scenarios.iter().enumerate() {
        let m = &res[k];
        let med = stats::median(&m.receiver_ns);
        let mut row = json!({
            "scenario": name,
            "receiver_ns_per_packet": stats::summary(&m.receiver_ns),
            "mpps_per_core": ((1e3 / med) * 100.0).round() / 100.0,
            "vs_drop_all": (stats::paired_ratio(&m.receiver_ns, drop) * 100.0).round() / 100.0,
            "packets_received": m.received,
            "packets_forwarded": m.forwarded,
        });
        if !m.program_ns.is_empty() {
            row["program_ns_per_run"] = stats::summary(&m.program_ns);
        }
        rows.push(row);
    }
    Ok(json!({
        "devices": DEVICES,
        "pairs_allowed": allow.table.len(),
        "pairs_denied": deny.table.len(),
        "packets_per_run": packets,
        "rounds": rounds,
        "frame_bytes": allow.frame.len(),
        "scenarios": rows,
    }))
}

/// Runs part 2; on failure, says what failed instead of a number.
pub fn run(quick: bool) -> Value {
    let ns = format!("enfb-veth-{}", std::process::id());
    let r = run_inner(&ns, quick);
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    r.unwrap_or_else(|e| json!({"error": format!("{e:#}")}))
}
