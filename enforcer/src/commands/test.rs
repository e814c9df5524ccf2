//! `enforcer test PATH...`: compile the policy, load a private, unpinned instance of the real XDP
//! program with it, and run every `tests:` and `guards:` item through the program's read-only
//! explain entry point (`BPF_PROG_TEST_RUN`). Nothing a running enforcer uses is touched.
//!
//! Exit 0 when every test and guard passes, 1 when one fails, 2 when the policy is invalid (its
//! diagnostics as `check` prints them), 3 without CAP_BPF.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::Refusal;
use crate::{
    cli::Output,
    exit,
    policy::{self, CompileOptions, model::Probe},
    probe::{ProbeResult, guard, render},
};

/// The JSON report.
#[derive(Debug, Serialize)]
struct TestReport<'a> {
    passed: bool,
    results: &'a [ProbeResult],
}

/// Run `test`; returns the exit code.
///
/// # Errors
/// Only when the JSON report cannot be serialised.
pub fn run(paths: &[PathBuf], output: Output) -> Result<u8> {
    let compiled = policy::load_all(paths)
        .and_then(|p| Ok((policy::compile(&p, &CompileOptions::default())?, p)));
    let (compiled, policy) = match compiled {
        Ok(c) => c,
        Err(_) => {
            // Said exactly as `check` says it, with its own exit code.
            super::check::run(paths, output)?;
            return Ok(exit::INVALID);
        }
    };
    if !may_load_bpf() {
        return Ok(Refusal::new(
            exit::ENVIRONMENT,
            "enforcer test loads the XDP program to run the tests (BPF_PROG_TEST_RUN), which needs CAP_BPF; run it as root",
        )
        .report(output));
    }
    let probes: Vec<Probe> = policy.tests.iter().chain(&policy.guards).cloned().collect();
    let results = match guard::run_private(&probes, &compiled) {
        Ok(r) => r,
        Err(e) => {
            return Ok(Refusal::new(
                exit::ENVIRONMENT,
                format!(
                    "cannot run the tests through the XDP program: {}",
                    crate::daemon::error_chain(&e)
                ),
            )
            .report(output));
        }
    };
    let passed = results.iter().all(|r| r.passed);
    #[expect(clippy::print_stdout, reason = "CLI output")]
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&TestReport {
                passed,
                results: &results,
            })?
        ),
        Output::Text => print!("{}", render::results(&results)),
    }
    Ok(if passed { exit::OK } else { exit::TEST_FAILED })
}

/// Whether this process may load BPF programs: CAP_BPF, or CAP_SYS_ADMIN (which kernels before
/// 5.8 require and later ones still accept), in its effective set.
#[must_use]
pub fn may_load_bpf() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_BPF: u32 = 39;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|eff| eff & (1 << CAP_BPF) != 0 || eff & (1 << CAP_SYS_ADMIN) != 0)
}

/// The guards of the policy at `paths`, run on the real program for `plan` when this process may
/// load BPF (unprivileged, `plan` says it could not check them). Returns the exit code to stop
/// with when a guard is denied.
#[must_use]
pub fn plan_guards(paths: &[PathBuf], compiled: &policy::CompiledPolicy) -> Option<u8> {
    let Ok(policy) = policy::load_all(paths) else {
        return None;
    };
    if policy.guards.is_empty() {
        return None;
    }
    #[expect(clippy::print_stderr, reason = "CLI diagnostics")]
    if !may_load_bpf() {
        eprintln!(
            "enforcer: note: the policy's {} guard(s) were not checked: that loads the XDP program, which needs CAP_BPF (run plan as root, or `enforcer test`)",
            policy.guards.len()
        );
        return None;
    }
    match guard::check_before_switch(&policy, compiled) {
        Ok(()) => None,
        #[expect(clippy::print_stderr, reason = "CLI diagnostics")]
        Err(e) => {
            eprintln!(
                "enforcer: error: this policy would be refused: {}",
                crate::daemon::error_chain(&e)
            );
            Some(exit::INVALID)
        }
    }
}
