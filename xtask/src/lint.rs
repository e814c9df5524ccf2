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
