//! `enforcer-bench`: the benchmark behind `cargo xtask bench` (needs root). Writes a JSON file
//! and renders `BENCHMARKS.md` from it.
//!
//! `enforcer-bench [--quick] [--out BENCHMARKS.json] [--md BENCHMARKS.md] [--skip-veth] [--parts a,b]
//! [--devices n,m] [--classes a,b] [--patterns hot|spread] [--repeat n]`
//! `enforcer-bench --render BENCHMARKS.json --md BENCHMARKS.md` re-renders without measuring.
//! (`enforcer-bench --loader-child BIN FILE` is the loader part's own helper, see `bench/loader.rs`.)
#![expect(
    clippy::print_stderr,
    clippy::print_stdout,
    reason = "a command-line benchmark"
)]

#[path = "../bench/control.rs"]
mod control;
#[path = "../bench/egress.rs"]
mod egress;
#[path = "../bench/loader.rs"]
mod loader;
#[path = "../bench/micro.rs"]
mod micro;
#[path = "../bench/nft.rs"]
mod nft;
#[path = "../bench/report.rs"]
mod report;
#[path = "../bench/stats.rs"]
mod stats;
#[path = "../bench/veth.rs"]
mod veth;

use std::{path::PathBuf, process::ExitCode, time::Instant};

use anyhow::{Context as _, Result};
use aya as _;
use enforcer::datapath::Datapath;
use serde_json::json;

mod frame {
    pub use enforcer_tests::frame::*;
}

struct Args {
    quick: bool,
    out: PathBuf,
    md: Option<PathBuf>,
    skip_veth: bool,
    /// Parts to run (`control,loader,test-run,nft,veth`); all by default.
    parts: Vec<String>,
    /// Policy sizes to measure (of 10, 1000, 100000); all by default. With `--parts test-run`,
    /// `--devices 100000` is the verdict table's worst case alone, in a fraction of the time.
    devices: Vec<usize>,
    /// Per-packet classes to measure (`ipv4_allowed_reply`, ...); all by default. For comparing
    /// two builds on one class, or profiling it; the verdict table then lacks the others.
    classes: Vec<String>,
    /// `hot` or `spread` alone; both by default.
    patterns: Vec<String>,
    /// Packets per timed run, for every class and pattern (within each class's own limits), in
    /// place of the defaults: a profile (`profile.py`) wants the program running for seconds.
    repeat: Option<u32>,
    /// Only render `--md` from this JSON (no measurement).
    render: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        quick: false,
        out: PathBuf::from("BENCHMARKS.json"),
        md: None,
        skip_veth: false,
        parts: vec![],
        devices: vec![],
        classes: vec![],
        patterns: vec![],
        repeat: None,
        render: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--quick" => a.quick = true,
            "--skip-veth" => a.skip_veth = true,
            "--out" => a.out = it.next().context("--out needs a path")?.into(),
            "--parts" => a.parts = list(&mut it, "--parts", None)?,
            "--devices" => {
                a.devices = it
                    .next()
                    .context("--devices needs a list")?
                    .split(',')
                    .map(|n| {
                        n.parse()
                            .with_context(|| format!("--devices: {n} is no number"))
                    })
                    .collect::<Result<_>>()?;
            }
            "--classes" => {
                let names = micro::Class::ALL.map(micro::Class::name);
                a.classes = list(&mut it, "--classes", Some(&names))?;
            }
            "--patterns" => {
                let names = [false, true].map(micro::pattern);
                a.patterns = list(&mut it, "--patterns", Some(&names))?;
            }
            "--repeat" => {
                let n = it.next().context("--repeat needs a number")?;
                a.repeat = Some(
                    n.parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .with_context(|| format!("--repeat: {n} is no positive number"))?,
                );
            }
            "--render" => a.render = Some(it.next().context("--render needs a JSON path")?.into()),
            "--md" => a.md = Some(it.next().context("--md needs a path")?.into()),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

/// The comma-separated list after `flag`, each item one of `known` when given.
fn list(
    it: &mut impl Iterator<Item = String>,
    flag: &str,
    known: Option<&[&str]>,
) -> Result<Vec<String>> {
    let items: Vec<String> = it
        .next()
        .with_context(|| format!("{flag} needs a list"))?
        .split(',')
        .map(str::to_owned)
        .collect();
    if let Some(known) = known
        && let Some(bad) = items.iter().find(|i| !known.contains(&i.as_str()))
    {
        anyhow::bail!("{flag}: no {bad} (one of {})", known.join(", "));
    }
    Ok(items)
}

fn sh(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    json!({
        "kernel": sh("uname", &["-r"]),
        "cpu": cpu,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "loadavg_at_start": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "nft": sh("nft", &["--version"]),
    })
}

fn run() -> Result<()> {
    let mut raw = std::env::args().skip(1);
    if raw.next().as_deref() == Some(loader::CHILD_FLAG) {
        return loader::child(raw);
    }
    let a = args()?;
    if let Some(src) = &a.render {
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(src)?)?;
        let md =
            a.md.clone()
                .unwrap_or_else(|| PathBuf::from("BENCHMARKS.md"));
        std::fs::write(&md, report::render(&doc))
            .with_context(|| format!("write {}", md.display()))?;
        return Ok(());
    }
    if !enforcer_tests::netns::is_root() {
        anyhow::bail!("needs root (CAP_BPF, CAP_NET_ADMIN)");
    }
    enforcer_tests::netns::ensure_bpffs()?;
    let started = Instant::now();
    let machine = machine();
    let sizes: Vec<usize> = [10usize, 1_000, 100_000]
        .into_iter()
        .filter(|n| a.devices.is_empty() || a.devices.contains(n))
        .collect();
    let (rounds, repeat_hot, repeat_spread) = if a.quick {
        (3, 100_000, 200_000)
    } else {
        (7, 500_000, 1_000_000)
    };
    let prm = micro::Params {
        rounds,
        repeat_hot: a.repeat.unwrap_or(repeat_hot),
        repeat_spread: a.repeat.unwrap_or(repeat_spread),
        classes: a.classes.clone(),
        patterns: a.patterns.clone(),
    };
    if let Some(n) = std::env::var("ENFB_DUMP_NFT")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        let (_, compiled, _, _) = control::build(n)?;
        print!("{}", nft::ruleset(&compiled));
        return Ok(());
    }
    let part = |p: &str| a.parts.is_empty() || a.parts.iter().any(|x| x == p);
    let mut control = Vec::new();
    for &n in sizes.iter().filter(|_| part("control")) {
        eprintln!("control plane: {n} devices");
        // Reloads under traffic, then cold starts (the largest size's take seconds each).
        let (reloads, starts) = if a.quick { (2, 3) } else { (6, 5) };
        control.push(control::run(n, reloads, starts)?);
    }
    let loader = if part("loader") {
        eprintln!("policy loader");
        let root = std::env::current_dir()?;
        let bin = std::env::var_os("ENFORCER_BIN")
            .map_or_else(|| root.join("target/release/enforcer"), PathBuf::from);
        loader::run(&bin, &root.join("target/bench/loader"))?
    } else {
        json!({"skipped": "--parts"})
    };
    let mut micro_rows = Vec::new();
    for &n in sizes.iter().filter(|_| part("test-run")) {
        eprintln!("test-run: {n} devices");
        let (_, mut compiled, _, _) = control::build(n)?;
        // The hot new-flow classes start up to 60,000 flows from one device: with the default
        // quota most would be refused, and the refusal is not the path measured.
        compiled.limits.flows_per_device = enforcer_common::flow::MAX_FLOWS;
        let mut dp = Datapath::load_for_bench().context("load")?;
        dp.apply(&compiled, 1)?;
        micro_rows.extend(micro::run(&mut dp, &compiled, n, &prm)?);
    }
    let egress_rows = if part("egress") {
        eprintln!("egress program");
        let (_, compiled, _, _) = control::build(10)?;
        let mut dp = Datapath::load_for_bench().context("load")?;
        dp.apply(&compiled, 1)?;
        egress::run(&dp, prm.rounds, prm.repeat_hot)?
    } else {
        Vec::new()
    };
    let nft_load = if part("nft") {
        nft::load_times(&sizes, a.quick)
    } else {
        json!({"skipped": "--parts"})
    };
    let veth = if a.skip_veth || !part("veth") {
        json!({"skipped": "not requested"})
    } else {
        eprintln!("veth path");
        veth::run(a.quick)
    };
    let doc = json!({
        "schema": 1,
        "quick": a.quick,
        "machine": machine,
        "params": {"rounds": prm.rounds, "repeat_hot": prm.repeat_hot, "repeat_spread": prm.repeat_spread},
        "test_run": micro_rows,
        "egress": egress_rows,
        "control_plane": control,
        "loader": loader,
        "nft_load": nft_load,
        "veth": veth,
        "wall_s": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    std::fs::write(&a.out, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("write {}", a.out.display()))?;
    let md = report::render(&doc);
    println!("{}{}", report::tables(&doc), loader::table(&doc));
    if let Some(p) = &a.md {
        std::fs::write(p, md).with_context(|| format!("write {}", p.display()))?;
    }
    eprintln!(
        "wrote {} in {:.0} s",
        a.out.display(),
        started.elapsed().as_secs_f64()
    );
    let missed = loader::failures(&doc["loader"]);
    anyhow::ensure!(
        missed.is_empty(),
        "policy loader: {} missed a target or exited wrongly (written above and in {})",
        missed.join(", "),
        a.out.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("enforcer-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
