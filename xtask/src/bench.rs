//! `cargo xtask bench`: the benchmarks of issue 7 (needs root).
//!
//! 1. setup when something is missing (the eBPF build needs bpf-linker and nightly);
//! 2. `cargo build --release -p enforcer-tests --bin enforcer-bench` (builds the XDP object too);
//! 3. runs it: a full run writes `BENCHMARKS.json` and `BENCHMARKS.md` at the workspace root; `--quick`
//!    (under two minutes) writes them under `target/bench/` so the committed full run stays.
//!
//! The benchmark prints its tables; numbers and method are in the Markdown it renders.

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::{exec, netns, setup};

pub fn run(quick: bool) -> Result<()> {
    if !netns::is_root() {
        bail!(
            "bench needs root (BPF_PROG_TEST_RUN, XDP, network namespaces); run `sudo cargo xtask bench`"
        );
    }
    setup::ensure()?;
    exec::exec(exec::cargo().args([
        "build",
        "--release",
        "-p",
        "enforcer-tests",
        "--bin",
        "enforcer-bench",
        // The loader part runs `enforcer check` as a child, to measure its peak memory alone.
        "-p",
        "enforcer",
        "--bin",
        "enforcer",
    ]))?;
    let root = exec::workspace_root();
    let dir = if quick {
        root.join("target").join("bench")
    } else {
        root.clone()
    };
    std::fs::create_dir_all(&dir)?;
    let json: PathBuf = dir.join("BENCHMARKS.json");
    let md: PathBuf = dir.join("BENCHMARKS.md");
    let bin = root.join("target").join("release").join("enforcer-bench");
    let mut cmd = std::process::Command::new(bin);
    cmd.current_dir(&root)
        .arg("--out")
        .arg(&json)
        .arg("--md")
        .arg(&md);
    if quick {
        cmd.arg("--quick");
    }
    exec::exec(&mut cmd)?;
    println!("bench: wrote {} and {}", json.display(), md.display());
    Ok(())
}
