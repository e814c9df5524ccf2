//! The policy loader under hostile input: `enforcer check` run as a child process on generated
//! files at the size cap, its wall and CPU time and its peak memory, against the targets of
//! `docs/policy.md`: peak RSS under 16 times the input plus 32 MB, CPU under 2 s per 8 MiB. Each
//! case must also be rejected (or, for the valid files, accepted); a case that misses a target or
//! exits wrongly fails the bench.
//!
//! Peak memory is the child's max RSS from `wait4`, taken by a fresh helper process (the bench
//! binary re-run with [`CHILD_FLAG`]): Linux counts into a child's max RSS the high-water mark of
//! the address space it was spawned from (a vfork-style spawn shares it until `exec`), so a child
//! of the bench itself, which generated hundreds of MB of inputs, reads as the bench's own peak.
//! The helper is a few MB; its own high-water mark is reported as the floor of the measure.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

const MIB: usize = 1024 * 1024;
/// The loader's per-file cap (`enforcer::policy::MAX_FILE_BYTES`).
const CAP: usize = 8 * MIB;

/// The least CPU time a case is allowed: starting `enforcer check` at all.
const MIN_CPU_TARGET_S: f64 = 0.1;

/// (name, file text, whether `check` must accept it).
fn cases() -> Vec<(&'static str, String, bool)> {
    let aliases = |bytes: usize| {
        let n = (bytes - 16) / 4;
        format!("x: &a [{}]\n", vec!["*a"; n].join(", "))
    };
    let mut devices = String::from("zones:\n  office: {}\n  quarantine: {}\ndevices:\n");
    let mut i = 0u32;
    while devices.len() < CAP - 200 {
        let j = i + 1;
        let [_, a, b, c] = j.to_be_bytes();
        let _ = write!(
            devices,
            "  dev-{i}:\n    zone: office\n    mac: \"02:00:00:{a:02x}:{b:02x}:{c:02x}\"\n    addresses: [\"10.{a}.{b}.{c}\"]\n    vendor: Axis\n    risk: low\n"
        );
        i += 1;
    }
    let tiny = format!("zones: [{}]\n", vec!["a"; (CAP - 16) / 2].join(","));
    let keys: Vec<String> = (0..(CAP - 32) / 12).map(|k| format!("k{k}: 1")).collect();
    let mut long_line = format!("zones: {{q: {{{}", keys.join(", "));
    long_line.truncate(CAP - 8);
    let cut = long_line.rfind(',').unwrap_or(0);
    long_line.truncate(cut);
    long_line.push_str("}}\n");
    let deep = format!(
        "zones: {}{}\n",
        "[".repeat(CAP / 2 - 8),
        "]".repeat(CAP / 2 - 8)
    );
    let small = "zones: {office: {}, quarantine: {}}\ndevices:\n  pc: {zone: office, addresses: [10.0.0.9]}\n";
    vec![
        ("small valid policy (floor)", small.to_owned(), true),
        ("alias bomb, 6 MB (issue 12)", aliases(6_000_000), false),
        ("alias bomb at the cap", aliases(CAP), false),
        ("plain devices at the cap", devices, true),
        ("tiny list items at the cap", tiny, false),
        ("one line of unknown keys", long_line, false),
        ("deep nesting", deep, false),
    ]
}

/// The hidden argument of `enforcer-bench` that makes it the helper: `CHILD_FLAG BIN FILE`.
pub const CHILD_FLAG: &str = "--loader-child";

/// One case as the helper measured it.
struct Measured {
    code: i32,
    wall: f64,
    cpu: f64,
    /// The child's max RSS, bytes.
    rss: u64,
    /// The helper's own high-water mark when it spawned the child: no child can read less.
    floor: u64,
}

/// The helper: run `BIN check FILE`, print what [`Measured`] holds as JSON on stdout.
pub fn child(mut args: impl Iterator<Item = String>) -> Result<()> {
    let bin = PathBuf::from(args.next().context("loader helper: no binary")?);
    let file = PathBuf::from(args.next().context("loader helper: no file")?);
    let floor = own_peak()?;
    let m = wait_check(&bin, &file, floor)?;
    println!(
        "{}",
        json!({"code": m.code, "wall": m.wall, "cpu": m.cpu, "rss": m.rss, "floor": m.floor})
    );
    Ok(())
}

/// This process's peak RSS (`VmHWM`), bytes.
fn own_peak() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmHWM in /proc/self/status")?;
    Ok(kib * 1024)
}

/// Spawn `BIN check FILE` and wait for it with its resource usage.
fn wait_check(bin: &Path, file: &Path, floor: u64) -> Result<Measured> {
    let t = Instant::now();
    let child = Command::new(bin)
        .arg("check")
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))?;
    let pid = libc::pid_t::try_from(child.id()).context("pid")?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for the kernel to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for; both pointers are to live locals.
    let rc = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    let wall = t.elapsed().as_secs_f64();
    anyhow::ensure!(rc == pid, "wait4: {}", std::io::Error::last_os_error());
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok(Measured {
        code,
        wall,
        cpu: secs(usage.ru_utime) + secs(usage.ru_stime),
        // ru_maxrss is in KiB on Linux.
        rss: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
        floor,
    })
}

/// Measure `enforcer check FILE` through a fresh helper process (see the module comment).
fn measure(bin: &Path, file: &Path) -> Result<Measured> {
    let me = std::env::current_exe().context("path of the bench binary")?;
    let out = Command::new(&me)
        .arg(CHILD_FLAG)
        .arg(bin)
        .arg(file)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("spawn {}", me.display()))?;
    anyhow::ensure!(out.status.success(), "loader helper failed: {}", out.status);
    let v: Value = serde_json::from_slice(&out.stdout).context("loader helper output")?;
    let int = |k: &str| {
        v[k].as_u64()
            .with_context(|| format!("loader helper: no {k}"))
    };
    Ok(Measured {
        code: v["code"]
            .as_i64()
            .and_then(|c| i32::try_from(c).ok())
            .context("loader helper: no code")?,
        wall: v["wall"].as_f64().context("loader helper: no wall")?,
        cpu: v["cpu"].as_f64().context("loader helper: no cpu")?,
        rss: int("rss")?,
        floor: int("floor")?,
    })
}

fn round(x: f64, places: i32) -> f64 {
    let m = 10f64.powi(places);
    (x * m).round() / m
}

/// Every case, measured with the `enforcer` binary at `bin`; inputs are written under `dir`.
pub fn run(bin: &Path, dir: &Path) -> Result<Value> {
    if !bin.exists() {
        return Ok(json!({"skipped": format!("{} not built", bin.display())}));
    }
    std::fs::create_dir_all(dir)?;
    let mut rows = Vec::new();
    for (k, (name, text, valid)) in cases().into_iter().enumerate() {
        let file: PathBuf = dir.join(format!("case-{k}.yaml"));
        std::fs::write(&file, &text).with_context(|| format!("write {}", file.display()))?;
        let bytes = text.len() as u64;
        let measured = measure(bin, &file);
        let _ = std::fs::remove_file(&file);
        let Measured {
            code,
            wall,
            cpu,
            rss,
            floor,
        } = measured?;
        let rss_target = 16 * bytes + 32 * 1_000_000;
        // 2 s per 8 MiB, but never less than a process start costs (a 100-byte policy is not
        // held to 25 microseconds).
        let cpu_target = (2.0 * bytes as f64 / CAP as f64).max(MIN_CPU_TARGET_S);
        eprintln!(
            "loader: {name}: {bytes} B, exit {code}, {wall:.2} s wall, {cpu:.2} s cpu, {:.1} MB peak (floor {:.1} MB)",
            rss as f64 / 1e6,
            floor as f64 / 1e6
        );
        rows.push(json!({
            "case": name,
            "bytes": bytes,
            "exit": code,
            "exit_ok": code == if valid { 0 } else { 1 },
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "cpu_target_s": round(cpu_target, 3),
            "peak_rss_bytes": rss,
            "peak_rss_floor_bytes": floor,
            "peak_rss_target_bytes": rss_target,
            "memory_met": rss < rss_target,
            "time_met": cpu < cpu_target,
        }));
    }
    Ok(json!({ "binary": bin.display().to_string(), "cases": rows }))
}

/// The cases of [`run`]'s result that exited wrongly or missed a target, by name.
#[must_use]
pub fn failures(loader: &Value) -> Vec<String> {
    let Some(rows) = loader["cases"].as_array() else {
        return Vec::new();
    };
    rows.iter()
        .filter(|r| {
            ["exit_ok", "memory_met", "time_met"]
                .iter()
                .any(|k| r[*k].as_bool() != Some(true))
        })
        .map(|r| r["case"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// The Markdown table of [`run`]'s result.
pub fn table(doc: &Value) -> String {
    let Some(rows) = doc["loader"]["cases"].as_array() else {
        return String::new();
    };
    let mut s = String::from(
        "### Policy loader (`enforcer check` as a child of a fresh helper; peak = its max RSS; targets: RSS < 16 x input + 32 MB, CPU < 2 s per 8 MiB)\n\n| case | bytes | exit | wall s | CPU s | CPU target | peak MB | peak target MB | memory | time |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n",
    );
    let mb = |v: &Value| v.as_u64().unwrap_or(0) as f64 / 1e6;
    let ok = |v: &Value| {
        if v.as_bool() == Some(true) {
            "met"
        } else {
            "**MISSED**"
        }
    };
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {}{} | {} | {} | {} | {:.1} | {:.0} | {} | {} |",
            r["case"].as_str().unwrap_or(""),
            r["bytes"],
            r["exit"],
            if r["exit_ok"].as_bool() == Some(true) {
                ""
            } else {
                " (wrong)"
            },
            r["wall_s"],
            r["cpu_s"],
            r["cpu_target_s"],
            mb(&r["peak_rss_bytes"]),
            mb(&r["peak_rss_target_bytes"]),
            ok(&r["memory_met"]),
            ok(&r["time_met"]),
        );
    }
    s.push('\n');
    s
}
