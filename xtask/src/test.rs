//! `cargo xtask test`: the whole suite, as root.
//!
//! 1. `cargo xtask build` (setup first when something is missing); its path becomes `ENFORCER_BIN`.
//! 2. `cargo test`: unit tests of the default members (enforcer, enforcer-common, xtask).
//! 3. `cargo test -p enforcer-ebpf --lib`: host tests of the XDP program's pure logic.
//! 4. `cargo test -p enforcer-tests -- --test-threads=1`: datapath (`BPF_PROG_TEST_RUN`) and
//!    network-namespace tests. One at a time: namespace tests may share names and pin dirs.
//! 5. `cargo xtask package`, then the package checks ([`crate::package::check`]): `dpkg -i` into a
//!    scratch root, `systemd-analyze verify`, `man -l` on every page, the bash completion, and
//!    `promtool check rules` / `promtool test rules`. (The schema against `policies/` and the
//!    deploy files' metric names against a live `/metrics` are tests in steps 2 and 4.)
//!
//! `CI` is passed through unchanged (under `CI=true` a test that needs the kernel never skips).
//! Every step runs even if an earlier one failed; the summary at the end counts the tests, and
//! the exit code is non-zero on any failure.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::{build, exec, netns};

/// Totals parsed from libtest's `test result:` lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Counts {
    fn add(&mut self, o: Self) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.ignored += o.ignored;
    }
}

/// Parse `test result: ok. 3 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out; ...`.
pub fn parse_result_line(line: &str) -> Option<Counts> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_, rest) = rest.split_once(". ")?;
    let mut c = Counts::default();
    for part in rest.split(';') {
        let mut it = part.split_whitespace();
        let (Some(n), Some(what)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match what {
            "passed" => c.passed = n,
            "failed" => c.failed = n,
            "ignored" => c.ignored = n,
            _ => {}
        }
    }
    Some(c)
}

struct Step {
    name: &'static str,
    args: &'static [&'static str],
}

const STEPS: &[Step] = &[
    Step {
        name: "unit tests (enforcer, enforcer-common, xtask)",
        args: &["test", "--no-fail-fast"],
    },
    Step {
        name: "eBPF host tests (enforcer-ebpf --lib)",
        args: &["test", "-p", "enforcer-ebpf", "--lib"],
    },
    Step {
        name: "datapath + netns tests (enforcer-tests)",
        args: &[
            "test",
            "-p",
            "enforcer-tests",
            "--no-fail-fast",
            "--",
            "--test-threads=1",
        ],
    },
];

struct Outcome {
    name: &'static str,
    ok: bool,
    counts: Counts,
    secs: f64,
}

pub fn run() -> Result<()> {
    if !netns::is_root() {
        bail!(
            "cargo xtask test needs root (network namespaces, XDP, BPF_PROG_TEST_RUN): run it as root"
        );
    }
    let bin = build::run().context("build the release binary for the tests")?;
    netns::ensure_bpffs()?;
    let ci = std::env::var("CI").unwrap_or_default();
    println!("test: ENFORCER_BIN={} CI={ci:?}", bin.display());

    let mut outcomes = Vec::new();
    for step in STEPS {
        println!("\n==> {}", step.name);
        let started = Instant::now();
        let mut cmd = exec::cargo();
        cmd.args(step.args)
            .env("ENFORCER_BIN", &bin)
            .env_remove("ENFORCER_SKIP_EBPF");
        let (ok, counts) = run_counting(&mut cmd)?;
        outcomes.push(Outcome {
            name: step.name,
            ok,
            counts,
            secs: started.elapsed().as_secs_f64(),
        });
    }
    println!("\n==> package: build, install, verify");
    let started = Instant::now();
    let packaged = crate::package::run().and_then(|deb| crate::package::check(&deb));
    if let Err(e) = &packaged {
        println!("package: FAILED: {e:#}");
    }
    outcomes.push(Outcome {
        name: "package (.deb, unit, man, completion, rules)",
        ok: packaged.is_ok(),
        counts: Counts::default(),
        secs: started.elapsed().as_secs_f64(),
    });
    summarize(&outcomes, &bin)
}

/// Run a `cargo test`, echoing its stdout while adding up its `test result:` lines.
fn run_counting(cmd: &mut Command) -> Result<(bool, Counts)> {
    println!("+ {}", exec::describe(cmd));
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("start `{}`", exec::describe(cmd)))?;
    let mut total = Counts::default();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.context("read cargo test's output")?;
            println!("{line}");
            if let Some(c) = parse_result_line(&line) {
                total.add(c);
            }
        }
    }
    let status = child.wait().context("wait for cargo test")?;
    Ok((status.success(), total))
}

fn summarize(outcomes: &[Outcome], bin: &Path) -> Result<()> {
    println!("\n==> summary (ENFORCER_BIN={})", bin.display());
    let mut total = Counts::default();
    let mut failed_steps = 0;
    for o in outcomes {
        total.add(o.counts);
        let verdict = if o.ok { "ok" } else { "FAILED" };
        println!(
            "  {verdict:<6} {:<46} {:>4} passed {:>3} failed {:>3} ignored  {:>6.1}s",
            o.name, o.counts.passed, o.counts.failed, o.counts.ignored, o.secs
        );
        // A step that failed without a failing test (say, a compile error) still counts as one failure.
        if !o.ok && o.counts.failed == 0 {
            failed_steps += 1;
        }
    }
    let failed = total.failed + failed_steps;
    println!(
        "tests: {} passed, {failed} failed, {} skipped",
        total.passed, total.ignored
    );
    if failed > 0 {
        bail!("test: {failed} failure(s)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_result_lines() {
        let ok = "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!(
            parse_result_line(ok),
            Some(Counts {
                passed: 12,
                failed: 0,
                ignored: 1
            })
        );
        let bad = "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.2s";
        assert_eq!(
            parse_result_line(bad),
            Some(Counts {
                passed: 3,
                failed: 2,
                ignored: 0
            })
        );
        assert_eq!(parse_result_line("running 3 tests"), None);
    }
}
