//! `enforcer check PATH...`: load and compile a policy (one path, or several merged as one)
//! without touching the datapath; report every error (and warning) with its location. Exit 0
//! when valid, 1 otherwise.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::{
    cli::Output,
    exit,
    policy::{self, CompileOptions, Diagnostic},
};

/// The JSON report: `{ "valid": bool, "errors": [...], "warnings": [...], "more_errors": N }`.
/// At most [`policy::MAX_REPORTED`] errors are listed; `more_errors` counts the rest.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub valid: bool,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    /// Errors found beyond those listed.
    pub more_errors: usize,
}

/// Check a policy: everything `load` and `compile` check (with no router addresses).
#[must_use]
pub fn check(path: &Path) -> CheckReport {
    check_all(&[path])
}

/// Check several policy paths merged into one policy (as `enforcer run --policy A --policy B`
/// would load them).
#[must_use]
pub fn check_all<P: AsRef<Path>>(paths: &[P]) -> CheckReport {
    let result = policy::load_all(paths).and_then(|p| {
        let (_, mut warnings) = policy::compile_with_diagnostics(&p, &CompileOptions::default())?;
        warnings.extend(policy::router_rules::warning(&p));
        warnings.extend(policy::names::warnings(&p));
        Ok(warnings)
    });
    let (diags, more_errors) = match result {
        Ok(warnings) => (warnings, 0),
        Err(err) => (err.diagnostics(), err.omitted().errors),
    };
    let (errors, warnings): (Vec<_>, Vec<_>) = diags.into_iter().partition(Diagnostic::is_error);
    CheckReport {
        valid: errors.is_empty() && more_errors == 0,
        errors,
        warnings,
        more_errors,
    }
}

/// Run `check`; returns the exit code.
///
/// # Errors
/// Only when the JSON report cannot be serialised.
pub fn run(paths: &[PathBuf], output: Output) -> Result<u8> {
    let report = check_all(paths);
    let path = policy::shown_paths(paths);
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
                    path,
                    report.warnings.len(),
                    plural(report.warnings.len())
                );
            } else {
                if report.more_errors > 0 {
                    eprintln!(
                        "and {} more error{} (at most {} are reported)",
                        report.more_errors,
                        plural(report.more_errors),
                        policy::MAX_REPORTED
                    );
                }
                let total = report.errors.len() + report.more_errors;
                eprintln!(
                    "{}: policy is invalid ({total} error{})",
                    path,
                    plural(total)
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
