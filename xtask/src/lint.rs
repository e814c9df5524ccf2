//! `cargo xtask lint`: nightly rustfmt (check only), clippy on the userspace crates (with the stub
//! eBPF object), clippy on the eBPF crate for its real target. Runs every step, then fails if any did.

use std::process::Command;

use anyhow::{Result, bail};

use crate::exec::{self, exec};

pub fn run() -> Result<()> {
    let mut failed = Vec::new();
    let comps = exec::nightly_components();
    if comps.lines().any(|l| l.starts_with("rustfmt")) {
        if let Err(e) = exec(exec::cargo().args(["+nightly", "fmt", "--all", "--", "--check"])) {
            eprintln!("lint: {e:#}");
            failed.push("rustfmt");
        }
    } else {
        println!(
            "lint: skipping rustfmt: the nightly toolchain has no rustfmt (rustfmt.toml needs nightly)"
        );
    }
    let userspace = exec::cargo()
        .args([
            "clippy",
            "--workspace",
            "--exclude",
            "enforcer-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
        .env("ENFORCER_SKIP_EBPF", "1")
        .status_ok();
    if !userspace {
        failed.push("clippy (userspace)");
    }
    let ebpf = exec::cargo()
        .args([
            "+nightly",
            "clippy",
            "-p",
            "enforcer-ebpf",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
        ])
        .args(["--", "-D", "warnings"])
        .status_ok();
    if !ebpf {
        failed.push("clippy (eBPF, bpfel-unknown-none)");
    }
    if let Err(e) = long_files(std::path::Path::new("enforcer/src")) {
        eprintln!("lint: {e:#}");
        failed.push("file length (enforcer/src)");
    }
    if !failed.is_empty() {
        bail!("lint failed: {}", failed.join(", "));
    }
    println!("lint: ok");
    Ok(())
}

trait StatusOk {
    fn status_ok(&mut self) -> bool;
}

impl StatusOk for Command {
    fn status_ok(&mut self) -> bool {
        match exec(self) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("lint: {e:#}");
                false
            }
        }
    }
}

/// Files of 800 lines or more hold more than one concept: split them along the lines they have.
const MAX_FILE_LINES: usize = 799;

/// Fails naming every `.rs` file under `dir` longer than [`MAX_FILE_LINES`].
fn long_files(dir: &std::path::Path) -> Result<()> {
    let mut long = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let lines = std::fs::read_to_string(&path)?.lines().count();
                if lines > MAX_FILE_LINES {
                    long.push(format!("{} ({lines} lines)", path.display()));
                }
            }
        }
    }
    long.sort();
    if long.is_empty() {
        Ok(())
    } else {
        bail!("files over {MAX_FILE_LINES} lines: {}", long.join(", "))
    }
}
