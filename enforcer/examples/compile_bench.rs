//! Compile-time benchmark: generate a synthetic policy, parse it, compile it, print JSON.
//!
//! `cargo run --release -p enforcer --example compile_bench -- --devices 100000 --rules 10000`
//!
//! The policy is parsed from memory with `policy::parse_str` (the on-disk caps of `policy::load`,
//! 8 MiB per directory, are smaller than a 100,000-device policy).

#![allow(
    clippy::print_stdout,
    reason = "a benchmark tool: its JSON on stdout is its output"
)]

use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use enforcer::policy::{self, CompileOptions};

fn main() -> Result<()> {
    let mut devices = 100_000usize;
    let mut rules = 10_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--devices" => devices = value.parse().context("parse --devices")?,
            "--rules" => rules = value.parse().context("parse --rules")?,
            other => bail!("unknown argument {other} (use --devices N --rules N)"),
        }
    }
    let text = policy::synth::generate(devices, rules);
    let start = Instant::now();
    let loaded = policy::parse_str("synth.yaml", &text).context("load the synthetic policy")?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    let start = Instant::now();
    let compiled = policy::compile(&loaded, &CompileOptions::default())
        .context("compile the synthetic policy")?;
    let compile_ms = start.elapsed().as_secs_f64() * 1e3;
    let report = serde_json::json!({
        "devices": devices,
        "rules": rules,
        "bytes": text.len(),
        "load_ms": (load_ms * 10.0).round() / 10.0,
        "compile_ms": (compile_ms * 10.0).round() / 10.0,
        "entries": compiled.map_sizes(),
        "classes": compiled.classes.len(),
        "warnings": compiled.warnings.len(),
    });
    println!("{report}");
    Ok(())
}
