//! `cargo xtask`: setup, build, test, demo, bench.

use clap::Parser;

#[derive(Debug, Parser)]
enum Task {
    /// Install what is missing (idempotent).
    Setup,
}

fn main() -> anyhow::Result<()> {
    match Task::parse() {
        Task::Setup => anyhow::bail!("not implemented yet"),
    }
}
