//! `enforcer plan PATH`: the compiled policy as the datapath will see it (zones, devices, rules,
//! classes, map sizes against capacity) and, when the daemon recorded what it applied
//! (`STATE_DIR/applied.json`, a serialised [`PlanView`]), what applying this policy would change.

use std::{fmt::Write as _, path::Path};

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
pub fn run(path: &Path, output: Output, state_dir: &Path) -> Result<u8> {
    let (compiled, warnings) = match policy::load(path)
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
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(
        s,
        "policy {} ({} file{})",
        short(&v.digest),
        v.sources.len(),
        super::check::plural(v.sources.len())
    );
    let _ = writeln!(
        s,
        "mode {}, default {}, spoofed {}, unknown class {}, router class {}",
        v.mode, v.default_action, v.spoofed_action, v.unknown_class, v.router_class
    );
    let _ = writeln!(s, "\nzones ({}):", v.zones.len());
    for z in &v.zones {
        let _ = writeln!(
            s,
            "  {:<24} class {:<5} {} device{}",
            z.name,
            z.class,
            z.devices,
            super::check::plural(z.devices)
        );
    }
    let _ = writeln!(s, "\nnetworks ({}):", v.networks.len());
    for n in &v.networks {
        let _ = writeln!(
            s,
            "  {:<24} id {:<5} class {:<5} {}",
            n.name,
            n.id,
            n.class,
            n.cidrs.join(", ")
        );
    }
    let _ = writeln!(s, "\ndevices ({}):", v.devices.len());
    for d in &v.devices {
        let _ = writeln!(
            s,
            "  {:<24} id {:<6} {:<16} class {:<5} {:<17} {}",
            d.name,
            d.id,
            d.zone,
            d.class,
            d.mac.as_deref().unwrap_or("-"),
            d.addresses.join(", ")
        );
    }
    let _ = writeln!(s, "\nrules ({}):", v.rules.len());
    for r in &v.rules {
        let _ = writeln!(
            s,
            "  {:<5} {:<28} {:<5} {} -> {}: {}",
            r.id,
            r.name,
            r.action,
            r.from.join(","),
            r.to.join(","),
            r.services.join(", ")
        );
    }
    let _ = writeln!(s, "\nclasses ({}):", v.classes.len());
    for c in &v.classes {
        let _ = writeln!(s, "  {:<5} {}", c.id, c.name);
    }
    let _ = writeln!(s, "\nmaps (entries / capacity per slot):");
    for (name, m) in &v.maps {
        let _ = writeln!(s, "  {name:<10} {:>7} / {}", m.entries, m.capacity);
    }
    match changes {
        None => {
            let _ = writeln!(s, "\nchanges: nothing applied yet");
        }
        Some(d) if d.is_empty() && d.old_digest == d.new_digest => {
            let _ = writeln!(s, "\nchanges: none (same policy as applied)");
        }
        Some(d) => {
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
    }
    s
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}
