//! Part 3: the control plane. Parse + compile time, apply time (first apply into empty maps, and
//! a reload into the other slot), kernel memory of the policy maps per device, and reload latency
//! under traffic: from the start of parsing a changed policy to the first packet judged by it,
//! while another thread keeps the program busy with `BPF_PROG_TEST_RUN`.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use enforcer::{
    datapath::{Datapath, bench as dpb},
    policy::{CompileOptions, CompiledPolicy, ReadCache, compile, synth},
};
use serde_json::{Value, json};

use crate::frame::Frame;

/// Maps whose size follows the policy (the rest have fixed size).
pub const POLICY_MAPS: [&str; 7] = [
    "MACS", "ADDRS_V4", "ADDRS_V6", "NETS_V4", "NETS_V6", "PAIRS", "PORTS",
];

/// A policy directory in memory: `(name, text)` in name order.
pub type Files = Vec<(String, String)>;

/// Rules of the synthetic policy for a device count.
pub fn rules_for(devices: usize) -> usize {
    (devices / 10).clamp(10, 10_000)
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// The synthetic policy as a directory's files (`synth::generate_files`: a site this size must
/// split its devices over files, each under the loader's cap), parsed and compiled, with the time
/// each took. Parsed as the daemon does at its start: through a read cache, filled as it reads.
pub fn build(devices: usize) -> Result<(Files, CompiledPolicy, Duration, Duration)> {
    let files = synth::generate_files(devices, rules_for(devices));
    let t = Instant::now();
    let parsed = ReadCache::default()
        .parse_files(&files)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let parse = t.elapsed();
    let t = Instant::now();
    let compiled =
        compile(&parsed, &CompileOptions::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((files, compiled, parse, t.elapsed()))
}

fn policy_memory() -> u64 {
    let m = dpb::map_memory();
    POLICY_MAPS.iter().filter_map(|n| m.get(*n)).sum()
}

/// `BPF_PROG_TEST_RUN` through the raw syscall, for the traffic thread (the aya handle stays with
/// the main thread, which applies).
fn raw_test_run(prog_fd: i32, frame: &[u8], repeat: u32) -> Option<u32> {
    #[repr(C)]
    #[derive(Default)]
    struct Attr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
        ctx_size_in: u32,
        ctx_size_out: u32,
        ctx_in: u64,
        ctx_out: u64,
        flags: u32,
        cpu: u32,
        batch_size: u32,
        _pad: u32,
    }
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    let mut a = Attr {
        prog_fd: u32::try_from(prog_fd).ok()?,
        data_size_in: u32::try_from(frame.len()).ok()?,
        data_in: frame.as_ptr() as u64,
        repeat,
        ..Attr::default()
    };
    // SAFETY: `a` is a valid bpf_attr prefix (zeroed tail); `frame` outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &raw mut a,
            size_of::<Attr>(),
        )
    };
    (rc == 0).then_some(a.retval)
}

/// One cold start of the control plane: parse and compile the generated files, load fresh maps,
/// apply into them.
struct Cold {
    dp: Datapath,
    files: Files,
    compiled: CompiledPolicy,
    parse: Duration,
    compile: Duration,
    load: Duration,
    first: enforcer::datapath::ApplyReport,
    /// Kernel memory of the policy maps before the load, and what the load itself added.
    before: u64,
    base: u64,
}

impl Cold {
    fn run(devices: usize) -> Result<Self> {
        let (files, compiled, parse, compile) = build(devices)?;
        let before = policy_memory();
        let t = Instant::now();
        let mut dp = Datapath::load_for_bench().context("load the object")?;
        let load = t.elapsed();
        let base = policy_memory().saturating_sub(before);
        let first = dp.apply(&compiled, 1).context("apply")?;
        Ok(Self {
            dp,
            files,
            compiled,
            parse,
            compile,
            load,
            first,
            before,
            base,
        })
    }

    /// (parse, compile, apply into fresh maps).
    fn times(&self) -> [Duration; 3] {
        [self.parse, self.compile, self.first.duration]
    }

    /// Kernel memory the policy maps hold now, beyond what the load added.
    fn memory(&self) -> u64 {
        policy_memory()
            .saturating_sub(self.before)
            .saturating_sub(self.base)
    }
}

/// Everything for one size. The cold start (parse, compile, apply into fresh maps) is measured
/// `starts` times, each with its own datapath dropped before the next (a single wall-clock sample
/// on a shared machine is mostly its noise); the start with the median total is reported, with
/// every total beside it. The last start's datapath then serves the memory and reload figures.
pub fn run(devices: usize, reloads: usize, starts: usize) -> Result<Value> {
    let mut times = Vec::new();
    for _ in 1..starts {
        times.push(Cold::run(devices)?.times());
    }
    let mut last = Cold::run(devices)?;
    times.push(last.times());
    let mem = last.memory();
    let second = last.dp.apply(&last.compiled, 2).context("re-apply")?;
    let both_slots = last.memory();
    let Cold {
        mut dp,
        files,
        load,
        first,
        ..
    } = last;
    let totals: Vec<f64> = times.iter().map(|t| ms(t.iter().sum())).collect();
    times.sort_by_key(|t| t.iter().sum::<Duration>());
    let [parse, comp, apply_first] = times[times.len() / 2];

    // Reload under traffic: a denied packet until the new policy (default allow) is live.
    let mut changed = files.clone();
    for (_, text) in &mut changed {
        *text = text.replace("defaults:\n  action: deny", "defaults:\n  action: allow");
    }
    let probe = {
        // dev-1 to dev-2 on a port no synthetic rule names: denied by default only.
        let (s, d) = (1usize.min(devices - 1), 2usize.min(devices - 1));
        Frame::eth(synth::mac(s))
            .ip(
                std::net::IpAddr::V4(synth::ipv4(s)),
                std::net::IpAddr::V4(synth::ipv4(d)),
            )
            .tcp(40_000, 9)
            .syn()
            .build()
    };
    // The daemon's cache after its start: a reload reads only the files that changed (here the
    // site's file, which holds the defaults), merges and validates all of them.
    let mut reads = ReadCache::default();
    reads
        .parse_files(&files)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut latencies = Vec::new();
    let mut apply_under_traffic = Vec::new();
    let mut files_read = Vec::new();
    let prog_fd = dp.bench_program_fd(dpb::ENFORCER)?;
    for (k, generation) in (0..reloads).zip(3u64..) {
        // Even: to the changed policy (the probe passes); odd: back (it is dropped again).
        let to = if k % 2 == 0 { &changed } else { &files };
        let want = if k % 2 == 0 { 2 } else { 1 };
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicU64::new(0));
        let packets = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let traffic = {
            let (stop, seen, packets, probe) =
                (stop.clone(), seen.clone(), packets.clone(), probe.clone());
            let fd = prog_fd.as_fd().as_raw_fd();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let rv = raw_test_run(fd, &probe, 64);
                    packets.fetch_add(64, Ordering::Relaxed);
                    if rv == Some(want) && seen.load(Ordering::Relaxed) == 0 {
                        seen.store(
                            u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX),
                            Ordering::Relaxed,
                        );
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        let t0 = epoch.elapsed();
        let parsed = reads.parse_files(to).map_err(|e| anyhow::anyhow!("{e}"))?;
        files_read.push(reads.last_read());
        let c = compile(&parsed, &CompileOptions::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let r = dp.apply(&c, generation)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(100));
        }
        stop.store(true, Ordering::Relaxed);
        let _ = traffic.join();
        let s = seen.load(Ordering::Relaxed);
        if s > 0 {
            latencies.push(ms(Duration::from_nanos(s).saturating_sub(t0)));
        }
        apply_under_traffic.push(ms(r.duration));
        // Quarantine from the denied probes would change what the next reload sees.
        dp.bench_clear_device_state(0..u32::try_from(devices.min(16))?)?;
    }
    Ok(json!({
        "devices": devices,
        "rules": rules_for(devices),
        "policy_yaml_bytes": files.iter().map(|(_, t)| t.len()).sum::<usize>(),
        "policy_files": files.len(),
        "parse_ms": ms(parse),
        "compile_ms": ms(comp),
        "parse_compile_ms": ms(parse + comp),
        "object_load_verify_ms": ms(load),
        "apply_first_ms": ms(apply_first),
        "apply_reload_ms": ms(second.duration),
        "compile_and_apply_ms": ms(parse + comp + apply_first),
        "cold_starts_ms": totals,
        "entries": first.entries,
        "policy_map_bytes": mem,
        "policy_map_bytes_both_slots": both_slots,
        "bytes_per_device": (mem as f64 / devices as f64).round(),
        "reload_under_traffic": {
            "command_to_enforced_ms": latencies,
            "apply_ms": apply_under_traffic,
            "files_read": files_read,
        },
    }))
}
