//! `cargo xtask`: the project's tasks. One subcommand per module; each returns `anyhow::Result`.
//!
//! - `setup`: install what is missing (Debian packages, nightly `rust-src`, bpf-linker); idempotent.
//! - `build`: the release binary with the XDP object embedded (`target/release/enforcer`).
//! - `test`: unit tests, eBPF host tests, datapath and namespace tests; needs root.
//! - `demo`: a small IoT site in network namespaces, enforced by `policies/`.
//! - `package`: a Debian package (`target/package/enforcer_VERSION_ARCH.deb`) with the hardened
//!   unit, an example policy, man pages, completions, the JSON Schema, dashboard and alert rules.
//! - `lint`: nightly rustfmt check and the split clippy runs.
//! - `bench`: per-packet cost against an empty XDP program, the veth path against nftables, and
//!   the control plane; writes BENCHMARKS.md and BENCHMARKS.json (issue 7).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "xtask is a console tool: what it prints is its interface"
)]

mod bench;
mod build;
mod demo;
mod exec;
mod lint;
#[path = "../../tests/src/netns.rs"]
#[allow(
    dead_code,
    reason = "shared with enforcer-tests; xtask uses only part of it"
)]
mod netns;
mod package;
mod setup;
mod test;

use std::process::ExitCode;

use clap::Parser;

/// Project tasks for the enforcer workspace.
#[derive(Debug, Parser)]
#[command(name = "xtask", bin_name = "cargo xtask")]
enum Task {
    /// Install what is missing (Debian packages, nightly rust-src, bpf-linker); idempotent.
    Setup {
        /// Only report what is missing; exit 1 if anything is.
        #[arg(long)]
        check: bool,
    },
    /// Build target/release/enforcer with the XDP object embedded (runs setup when needed).
    Build,
    /// Run the whole test suite (needs root): unit, eBPF host, datapath and netns tests.
    Test,
    /// Build, start a small IoT site in network namespaces, enforce policies/, show the verdicts.
    Demo,
    /// Build the Debian package target/package/enforcer_VERSION_ARCH.deb.
    Package,
    /// rustfmt (nightly) check and clippy on the userspace crates and the eBPF crate.
    Lint,
    /// Benchmarks (needs root): writes BENCHMARKS.md and BENCHMARKS.json.
    Bench {
        /// A short run (under two minutes); results go to target/bench/.
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> ExitCode {
    let result = match Task::parse() {
        Task::Setup { check } => setup::run(check),
        Task::Build => build::run().map(|_| ()),
        Task::Test => test::run(),
        Task::Demo => demo::run(),
        Task::Package => package::run().map(|_| ()),
        Task::Lint => lint::run(),
        Task::Bench { quick } => bench::run(quick),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
