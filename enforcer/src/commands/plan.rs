//! `enforcer plan PATH...`: the compiled policy as the datapath will see it (zones, devices, rules,
//! classes, map sizes against capacity) and, when the daemon recorded what it applied
//! (`STATE_DIR/applied.json`, a serialised [`PlanView`]), what applying this policy would change.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::{
    cli::Output,
    exit,
    policy::{self, CompileOptions, PlanDiff, PlanView, diff},
};

/// File in the state directory where the daemon records the applied policy.
pub const APPLIED_FILE: &str = "applied.json";

#[derive(Debug, Serialize)]
struct PlanReport<'a> {
    plan: &'a PlanView,
    /// `None` when nothing was applied yet (no `applied.json`).
    changes: Option<PlanDiff>,
    warnings: Vec<String>,
}

/// Run `plan`; returns the exit code.
///
/// # Errors
/// When `applied.json` exists but cannot be read or parsed, or output cannot be serialised.
#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "CLI output: the plan on stdout, diagnostics on stderr"
)]
pub fn run(paths: &[PathBuf], output: Output, state_dir: &Path) -> Result<u8> {
    let (compiled, warnings) = match policy::load_all(paths)
        .and_then(|p| policy::compile_with_diagnostics(&p, &CompileOptions::default()))
    {
        Ok(ok) => ok,
        Err(err) => {
            for d in policy::render_all(&err.diagnostics()) {
                eprintln!("{d}");
            }
            return Ok(exit::INVALID);
        }
    };
    if let Some(code) = crate::commands::test::plan_guards(paths, &compiled) {
        return Ok(code);
    }
    let view = PlanView::from(&compiled);
    let applied = state_dir.join(APPLIED_FILE);
    let changes = match std::fs::read(&applied) {
        Ok(bytes) => {
            let old: PlanView = serde_json::from_slice(&bytes)
                .with_context(|| format!("parse {}", applied.display()))?;
            Some(diff(&old, &view))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Ok(crate::commands::fail(
                exit::ENVIRONMENT,
                &format!(
                    "cannot read the running policy in {} (the state directory is root's): run plan as root to see the changes",
                    applied.display()
                ),
            ));
        }
        Err(e) => return Err(e).with_context(|| format!("read {}", applied.display())),
    };
    match output {
        Output::Json => {
            let warnings = warnings.iter().map(ToString::to_string).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&PlanReport {
                    plan: &view,
                    changes,
                    warnings
                })?
            );
        }
        Output::Text => {
            for w in policy::render_all(&warnings) {
                eprintln!("{w}");
            }
            print!("{}", render(&view, changes.as_ref()));
        }
    }
    Ok(exit::OK)
}

/// The text form of a plan (and its changes).
#[must_use]
pub fn render(v: &PlanView, changes: Option<&PlanDiff>) -> String {
    let mut s = String::new();
    render_policy(&mut s, v);
    render_changes(&mut s, changes);
    s
}

/// What the datapath will get: settings, then each section, then the map sizes. Writing to a
/// String cannot fail, so the `writeln!` results are ignored on purpose.
fn render_policy(s: &mut String, v: &PlanView) {
    use super::check::plural;
    let _ = writeln!(
        s,
        "policy {} ({} file{})",
        short(&v.digest),
        v.sources.len(),
        plural(v.sources.len())
    );
    let _ = writeln!(
        s,
        "mode {}, default {}, spoofed {}, unknown class {}, router class {}",
        v.mode, v.default_action, v.spoofed_action, v.unknown_class, v.router_class
    );
    section(s, "zones", &v.zones, |z| {
        format!(
            "{:<24} class {:<5} {} device{}",
            z.name,
            z.class,
            z.devices,
            plural(z.devices)
        )
    });
    section(s, "networks", &v.networks, |n| {
        format!(
            "{:<24} id {:<5} class {:<5} {}",
            n.name,
            n.id,
            n.class,
            n.cidrs.join(", ")
        )
    });
    section(s, "devices", &v.devices, |d| {
        format!(
            "{:<24} id {:<6} {:<16} class {:<5} {:<17} {}",
            d.name,
            d.id,
            d.zone,
            d.class,
            d.mac.as_deref().unwrap_or("-"),
            d.addresses.join(", ")
        )
    });
    section(s, "rules", &v.rules, |r| {
        format!(
            "{:<5} {:<28} {:<5} {} -> {}: {}",
            r.id,
            r.name,
            r.action,
            r.from.join(","),
            r.to.join(","),
            r.services.join(", ")
        )
    });
    section(s, "classes", &v.classes, |c| {
        format!("{:<5} {}", c.id, c.name)
    });
    let _ = writeln!(
        s,
        "flow table: capacity {} flows, {} per device",
        v.limits.flows, v.limits.flows_per_device
    );
    let _ = writeln!(s, "\nmaps (entries / capacity per slot):");
    for (name, m) in &v.maps {
        let _ = writeln!(s, "  {name:<10} {:>7} / {}", m.entries, m.capacity);
    }
}

/// `\nTITLE (N):` and one indented line per item.
fn section<T>(s: &mut String, title: &str, items: &[T], line: impl Fn(&T) -> String) {
    let _ = writeln!(s, "\n{title} ({}):", items.len());
    for item in items {
        let _ = writeln!(s, "  {}", line(item));
    }
}

/// The diff against the applied policy, when there is one.
fn render_changes(s: &mut String, changes: Option<&PlanDiff>) {
    let d = match changes {
        None => {
            let _ = writeln!(s, "\nchanges: nothing applied yet");
            return;
        }
        Some(d) if d.is_empty() && d.old_digest == d.new_digest => {
            let _ = writeln!(s, "\nchanges: none (same policy as applied)");
            return;
        }
        Some(d) => d,
    };
    let _ = writeln!(s, "\nchanges against applied {}:", short(&d.old_digest));
    for (what, c) in [
        ("zones", &d.zones),
        ("networks", &d.networks),
        ("devices", &d.devices),
        ("rules", &d.rules),
    ] {
        for (sign, names) in [("+", &c.added), ("-", &c.removed), ("~", &c.changed)] {
            for n in names {
                let _ = writeln!(s, "  {sign} {what}: {n}");
            }
        }
    }
    for setting in &d.settings {
        let _ = writeln!(s, "  ~ {setting}");
    }
    for (map, delta) in &d.maps {
        let _ = writeln!(s, "  {map:<10} {delta:+}");
    }
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}
