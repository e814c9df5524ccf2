//! The policy loader under hostile input: `enforcer check` run as a child process on generated
//! files at the size cap, its wall and CPU time and its peak memory (max RSS from `wait4`),
//! against the targets of `docs/policy.md`: peak RSS under 16 times the input plus 32 MB, CPU
//! under 2 s per 8 MiB. Each case must also be rejected (or, for the plain file, accepted).

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
    vec![
        ("alias bomb, 6 MB (issue 12)", aliases(6_000_000), false),
        ("alias bomb at the cap", aliases(CAP), false),
        ("plain devices at the cap", devices, true),
        ("tiny list items at the cap", tiny, false),
        ("one line of unknown keys", long_line, false),
        ("deep nesting", deep, false),
    ]
}

/// Run `enforcer check FILE`; (exit code, wall s, cpu s, max RSS bytes).
fn measure(bin: &Path, file: &Path) -> Result<(i32, f64, f64, u64)> {
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
    let cpu = secs(usage.ru_utime) + secs(usage.ru_stime);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    // ru_maxrss is in KiB on Linux.
    Ok((
        code,
        wall,
        cpu,
        u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
    ))
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
    // Every input written first and its text freed (and the heap trimmed): a spawned child's
    // max RSS counts the parent's pages it shared before `exec`. Known gap: Linux keeps the
    // parent's high-water mark across a vfork-style spawn, so cases under about 144 MB read as
    // the bench's own peak; `/usr/bin/time -f %M enforcer check FILE` from a shell is exact.
    let mut files = Vec::new();
    for (k, (name, text, valid)) in cases().into_iter().enumerate() {
        let file: PathBuf = dir.join(format!("case-{k}.yaml"));
        std::fs::write(&file, &text).with_context(|| format!("write {}", file.display()))?;
        files.push((name, file, text.len() as u64, valid));
    }
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe { libc::malloc_trim(0) };
    let mut rows = Vec::new();
    for (name, file, bytes, valid) in files {
        let (code, wall, cpu, rss) = measure(bin, &file)?;
        let _ = std::fs::remove_file(&file);
        let rss_target = 16 * bytes + 32 * 1_000_000;
        let cpu_target = 2.0 * bytes as f64 / CAP as f64;
        eprintln!(
            "loader: {name}: {bytes} B, exit {code}, {wall:.2} s wall, {cpu:.2} s cpu, {} MB peak",
            rss / 1_000_000
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
            "peak_rss_target_bytes": rss_target,
            "memory_met": rss < rss_target,
            "time_met": cpu < cpu_target,
        }));
    }
    Ok(json!({ "binary": bin.display().to_string(), "cases": rows }))
}

/// The Markdown table of [`run`]'s result.
pub fn table(doc: &Value) -> String {
    let Some(rows) = doc["loader"]["cases"].as_array() else {
        return String::new();
    };
    let mut s = String::from(
        "### Policy loader (`enforcer check` as a child; peak = max RSS; targets: RSS < 16 x input + 32 MB, CPU < 2 s per 8 MiB)\n\n| case | bytes | exit | wall s | CPU s | CPU target | peak MB | peak target MB | memory | time |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n",
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
            "| {} | {} | {}{} | {} | {} | {} | {:.0} | {:.0} | {} | {} |",
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
