//! Builds the XDP program (`enforcer-ebpf`, nightly, `bpfel-unknown-none`) and leaves the object
//! in `OUT_DIR/enforcer-xdp`, which `datapath::OBJECT` embeds: the one binary is all a router needs.
//!
//! `ENFORCER_SKIP_EBPF=1` writes an empty object instead (for `cargo check`/clippy and for work on
//! the policy compiler alone); loading that binary fails loudly. aya's own `AYA_BUILD_SKIP` does not
//! write the file, so `include_bytes_aligned!` would not compile.

use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};
use enforcer_ebpf as _;

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=ENFORCER_SKIP_EBPF");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    if env::var_os("ENFORCER_SKIP_EBPF").is_some_and(|v| v == "1") {
        let stub = out_dir.join("enforcer-xdp");
        fs::write(&stub, []).with_context(|| format!("write {}", stub.display()))?;
        return Ok(());
    }
    let manifest_dir = PathBuf::from(
        env::var_os("CARGO_MANIFEST_DIR").ok_or_else(|| anyhow!("CARGO_MANIFEST_DIR not set"))?,
    );
    let root_dir = manifest_dir
        .parent()
        .ok_or_else(|| anyhow!("no workspace root above {}", manifest_dir.display()))?
        .join("enforcer-ebpf");
    let root_dir = root_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", root_dir.display()))?;
    let package = Package {
        name: "enforcer-ebpf",
        root_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::default())
        .context("build the eBPF program (see `cargo xtask setup`)")
}
