//! `enforcer check PATH`: load and compile a policy without touching the datapath; report every
//! error (and warning) with its location. Exit 0 when valid, 1 otherwise.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::{
    cli::Output,
    exit,
    policy::{self, CompileOptions, Diagnostic},
};

/// The JSON report: `{ "valid": bool, "errors": [...], "warnings": [...] }`.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub valid: bool,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

/// Check a policy: everything `load` and `compile` check (with no router addresses).
#[must_use]
pub fn check(path: &Path) -> CheckReport {
    let result = policy::load(path).and_then(|p| {
        let (_, mut warnings) = policy::compile_with_diagnostics(&p, &CompileOptions::default())?;
        warnings.extend(policy::router_rules::warning(&p));
        Ok(warnings)
    });
    let diags = match result {
        Ok(warnings) => warnings,
        Err(err) => err.diagnostics(),
    };
    let (errors, warnings): (Vec<_>, Vec<_>) = diags.into_iter().partition(Diagnostic::is_error);
    CheckReport {
        valid: errors.is_empty(),
        errors,
        warnings,
    }
}

/// Run `check`; returns the exit code.
///
/// # Errors
/// Only when the JSON report cannot be serialised.
pub fn run(path: &Path, output: Output) -> Result<u8> {
    let report = check(path);
    #[expect(
        clippy::print_stdout,
        clippy::print_stderr,
        reason = "CLI output: the report on stdout, diagnostics on stderr"
    )]
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => {
            for d in policy::render_all(report.errors.iter().chain(&report.warnings)) {
                eprintln!("{d}");
            }
            if report.valid {
                println!(
                    "{}: policy is valid ({} warning{})",
                    path.display(),
                    report.warnings.len(),
                    plural(report.warnings.len())
                );
            } else {
                eprintln!(
                    "{}: policy is invalid ({} error{})",
                    path.display(),
                    report.errors.len(),
                    plural(report.errors.len())
                );
            }
        }
    }
    Ok(if report.valid {
        exit::OK
    } else {
        exit::INVALID
    })
}

pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
