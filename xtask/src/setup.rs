//! `cargo xtask setup`: check each piece the build and the tests need, install only what is
//! missing, and say what it installs. A second run only checks (a few seconds) and changes nothing.
//!
//! Pieces, checked in this order (later ones need earlier ones):
//! 1. Debian packages ([`PACKAGES`]), by `dpkg-query`; missing ones get one `apt-get update` and
//!    one `apt-get install` (root only).
//! 2. The nightly toolchain and its `rust-src` (the eBPF crate is built with `-Z build-std=core`).
//!    The project is developed against [`NIGHTLY`]; another nightly only gets a note.
//! 3. `bpf-linker` [`BPF_LINKER_VERSION`], built against LLVM 22
//!    (`LLVM_PREFIX=$(llvm-config-22 --prefix) cargo install bpf-linker --version 0.13.0
//!    --no-default-features --features llvm-22`).

use std::{fmt, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::{
    exec::{self, exec, probe},
    netns::is_root,
};

/// The nightly the eBPF crate is known to build with (`rustc +nightly --version`).
pub const NIGHTLY: &str = "1.97.0-nightly (2026-05-19)";
/// bpf-linker version, built with `--features llvm-22`.
pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages and why each is needed.
pub const PACKAGES: &[(&str, &str)] = &[
    ("llvm-22-dev", "LLVM 22, which bpf-linker links against"),
    ("libpolly-22-dev", "bpf-linker link dependency (LLVM Polly)"),
    ("libzstd-dev", "bpf-linker link dependency"),
    ("zlib1g-dev", "bpf-linker link dependency"),
    (
        "iproute2",
        "ip and ss: namespaces, veths, addresses (tests, demo)",
    ),
    ("nftables", "nft (tests)"),
    ("iputils-ping", "ping (tests, demo)"),
    ("socat", "listeners and TCP/UDP probes (tests, demo)"),
    (
        "dnsmasq-base",
        "the demo internet's DNS server (the binary only, no service)",
    ),
    ("bind9-dnsutils", "dig: the demo camera's lookups (demo)"),
    (
        "curl",
        "fetching /metrics inside the router namespace (tests, demo)",
    ),
    ("bpftool", "inspecting programs and maps (tests)"),
    ("ethtool", "interface offload settings (tests)"),
    ("procps", "sysctl and kill (tests, demo)"),
    ("util-linux", "nsenter and mount (tests, demo)"),
    ("dpkg", "dpkg-deb and dpkg (package, its install test)"),
    ("gzip", "compressing man pages (package)"),
    ("systemd", "systemd-analyze verify of the unit (tests)"),
    ("man-db", "man -l, rendering the man pages (tests)"),
    ("prometheus", "promtool check/test rules (tests)"),
    (
        "chromium",
        "headless browser: loads and screenshots the status page (tests)",
    ),
];

/// What a check found missing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Missing {
    /// Debian packages not installed.
    pub packages: Vec<&'static str>,
    /// No nightly toolchain at all.
    pub nightly: bool,
    /// Nightly present, `rust-src` not.
    pub rust_src: bool,
    /// bpf-linker absent or of another version: what was found.
    pub bpf_linker: Option<String>,
}

impl Missing {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.packages.is_empty() {
            parts.push(format!("Debian packages {}", self.packages.join(" ")));
        }
        if self.nightly {
            parts.push(format!("the nightly toolchain ({NIGHTLY}) with rust-src"));
        } else if self.rust_src {
            parts.push("rust-src for the nightly toolchain".to_owned());
        }
        if let Some(found) = &self.bpf_linker {
            parts.push(format!("bpf-linker {BPF_LINKER_VERSION} (found: {found})"));
        }
        if parts.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

/// Is a `dpkg-query -W -f '${db:Status-Abbrev}'` answer an installed package?
pub fn dpkg_installed(status_abbrev: &str) -> bool {
    status_abbrev.trim_end().starts_with("ii")
}

/// Does `rustup toolchain list` show a nightly toolchain?
pub fn has_nightly(toolchains: &str) -> bool {
    toolchains
        .lines()
        .any(|l| l.trim_start().starts_with("nightly"))
}

/// Does `rustup component list --installed` list `rust-src`?
pub fn has_rust_src(components: &str) -> bool {
    components
        .lines()
        .any(|l| l.trim() == "rust-src" || l.trim().starts_with("rust-src "))
}

/// Is a `bpf-linker --version` answer the version we want?
pub fn bpf_linker_ok(version_output: &str) -> bool {
    version_output.split_whitespace().nth(1) == Some(BPF_LINKER_VERSION)
}

fn package_installed(pkg: &str) -> Result<bool> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Abbrev}", pkg])
        .output()
        .context("run dpkg-query (setup supports Debian and derivatives only)")?;
    // Exit 1 with "no packages found" when dpkg has never heard of it.
    Ok(out.status.success() && dpkg_installed(&String::from_utf8_lossy(&out.stdout)))
}

/// Check every piece; installs nothing.
pub fn check() -> Result<Missing> {
    let mut missing = Missing::default();
    for (pkg, _) in PACKAGES {
        if !package_installed(pkg)? {
            missing.packages.push(pkg);
        }
    }
    let toolchains = probe(Command::new("rustup").args(["toolchain", "list"]))
        .context("`rustup toolchain list` failed: setup needs rustup")?;
    missing.nightly = !has_nightly(&toolchains);
    if !missing.nightly {
        let comps = exec::nightly_components();
        missing.rust_src = !has_rust_src(&comps);
    }
    match probe(Command::new("bpf-linker").arg("--version")) {
        Some(v) if bpf_linker_ok(&v) => {}
        Some(v) => missing.bpf_linker = Some(v.trim().to_owned()),
        None => missing.bpf_linker = Some("not installed".to_owned()),
    }
    Ok(missing)
}

/// `cargo xtask setup [--check]`.
pub fn run(check_only: bool) -> Result<()> {
    let missing = check()?;
    report_nightly();
    if missing.is_empty() {
        println!(
            "setup: everything is installed ({} packages, nightly rust-src, bpf-linker {BPF_LINKER_VERSION})",
            PACKAGES.len()
        );
        return Ok(());
    }
    if check_only {
        bail!("setup: missing: {missing}; run `cargo xtask setup` (as root) to install");
    }
    install(&missing)
}

/// Install what is missing when something is (used by `build`, `test` and `demo`).
pub fn ensure() -> Result<()> {
    let missing = check()?;
    if missing.is_empty() {
        return Ok(());
    }
    println!("setup: missing: {missing}; installing");
    install(&missing)
}

fn report_nightly() {
    if let Some(v) = probe(Command::new("rustc").args(["+nightly", "--version"])) {
        let date = NIGHTLY
            .trim_end_matches(')')
            .rsplit('(')
            .next()
            .unwrap_or_default();
        if !(v.contains("1.97.0-nightly") && v.contains(date)) {
            println!(
                "setup: note: nightly is `{}`; the project is developed against {NIGHTLY}",
                v.trim()
            );
        }
    }
}

fn install(missing: &Missing) -> Result<()> {
    if !missing.packages.is_empty() {
        if !is_root() {
            bail!(
                "missing Debian packages: {}; run `cargo xtask setup` as root (or `apt-get install {}`)",
                missing.packages.join(" "),
                missing.packages.join(" ")
            );
        }
        for (pkg, why) in PACKAGES
            .iter()
            .filter(|(p, _)| missing.packages.contains(p))
        {
            println!("setup: installing {pkg}: {why}");
        }
        exec(
            Command::new("apt-get")
                .args(["update", "-q"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
        .context("apt-get update")?;
        exec(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&missing.packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
        .with_context(|| format!("install Debian packages {}", missing.packages.join(" ")))?;
    }
    if missing.nightly {
        println!(
            "setup: installing the nightly toolchain with rust-src (the project uses {NIGHTLY})"
        );
        exec(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))
        .context("install the nightly toolchain: it is missing and rustup could not fetch it")?;
    } else if missing.rust_src {
        println!("setup: installing rust-src for nightly (for -Z build-std=core)");
        exec(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))
        .context("install rust-src for the nightly toolchain")?;
    }
    if let Some(found) = &missing.bpf_linker {
        println!(
            "setup: installing bpf-linker {BPF_LINKER_VERSION} with LLVM 22 (found: {found}); this takes a few minutes"
        );
        let prefix = probe(Command::new("llvm-config-22").arg("--prefix"))
            .context("llvm-config-22 not found: llvm-22-dev is missing")?;
        let mut cmd = exec::cargo();
        cmd.args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
            "llvm-22",
        ])
        .env("LLVM_PREFIX", prefix.trim());
        if found != "not installed" {
            cmd.arg("--force");
        }
        exec(&mut cmd).context("install bpf-linker")?;
        let v = probe(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
        if !bpf_linker_ok(&v) {
            bail!(
                "bpf-linker {BPF_LINKER_VERSION} installed but `bpf-linker --version` says {:?}: is ~/.cargo/bin on PATH?",
                v.trim()
            );
        }
    }
    let left = check()?;
    if !left.is_empty() {
        bail!("setup: still missing after install: {left}");
    }
    println!("setup: done");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_installed_only_for_ii() {
        assert!(dpkg_installed("ii "));
        assert!(!dpkg_installed("rc "), "removed, config files left");
        assert!(!dpkg_installed("un "));
        assert!(!dpkg_installed(""));
    }

    #[test]
    fn nightly_found_in_toolchain_list() {
        let list = "stable-x86_64-unknown-linux-gnu (default)\nnightly-x86_64-unknown-linux-gnu\n1.95.0-x86_64-unknown-linux-gnu (active)\n";
        assert!(has_nightly(list));
        assert!(!has_nightly(
            "stable-x86_64-unknown-linux-gnu (default)\n1.95.0-x86_64-unknown-linux-gnu\n"
        ));
    }

    #[test]
    fn rust_src_found_in_component_list() {
        assert!(has_rust_src(
            "cargo-x86_64-unknown-linux-gnu\nrust-src\nrustc-x86_64-unknown-linux-gnu\n"
        ));
        assert!(!has_rust_src(
            "cargo-x86_64-unknown-linux-gnu\nrust-std-x86_64-unknown-linux-gnu\n"
        ));
    }

    #[test]
    fn bpf_linker_version_must_match_exactly() {
        assert!(bpf_linker_ok("bpf-linker 0.13.0\n"));
        assert!(!bpf_linker_ok("bpf-linker 0.9.15\n"));
        assert!(!bpf_linker_ok("bpf-linker 0.13.01\n"));
        assert!(!bpf_linker_ok(""));
    }

    #[test]
    fn missing_names_each_piece() {
        let m = Missing {
            packages: vec!["ethtool", "socat"],
            nightly: false,
            rust_src: true,
            bpf_linker: Some("not installed".into()),
        };
        let s = m.to_string();
        assert!(
            s.contains("ethtool socat")
                && s.contains("rust-src")
                && s.contains("bpf-linker 0.13.0"),
            "{s}"
        );
        assert!(Missing::default().is_empty());
        assert_eq!(Missing::default().to_string(), "nothing");
    }
}
