//! `enforcer plan PATH...`: the compiled policy as the datapath will see it (zones, devices, rules,
//! classes, map sizes against capacity) and, when the daemon recorded what it applied
//! (`STATE_DIR/applied.json`, a serialised [`PlanView`]), what applying this policy would change.
//!
//! The candidate compiles as the daemon would compile it: with the daemon's ids (`ids.json`), so
//! a kept name keeps its id, and with the running daemon's host context (`host.json`: its
//! interfaces, their addresses and segments, the uplinks), so the running policy plans to no
//! change. The host context comes from the state directory, not from a question over the control
//! socket: it is written in the same step as `applied.json`, so the two always describe the same
//! apply, and reading it needs no daemon protocol (the same root-only directory as the rest).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Result;
use serde::Serialize;

use crate::{
    cli::PlanOutput,
    daemon::{host::HostContext, state},
    exit,
    policy::{self, IdTable, PlanDiff, PlanView, diff},
};

#[derive(Debug, Serialize)]
struct PlanReport<'a> {
    plan: &'a PlanView,
    /// What the policy was compiled with: the running daemon's host context, or none.
    host: &'a HostUsed,
    /// `None` when nothing was applied yet (no `applied.json`).
    changes: Option<PlanDiff>,
    warnings: Vec<String>,
}

/// The host context a plan was compiled with, and whose it is.
#[derive(Debug, Serialize)]
struct HostUsed {
    /// "daemon": the running daemon's (`host.json`); "none": compiled without one.
    from: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    interfaces: Vec<String>,
    /// Listed interfaces that do not exist now.
    absent: Vec<String>,
    uplinks: Vec<String>,
    /// `IFACE ADDRESS/PREFIX`.
    addresses: Vec<String>,
    /// Why there is none, or what to keep in mind.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

impl HostUsed {
    fn of(record: &state::HostRecord) -> Self {
        Self {
            from: "daemon",
            pid: Some(record.pid),
            interfaces: record.interfaces.clone(),
            absent: record.absent.clone(),
            uplinks: record.context.uplinks.clone(),
            addresses: record
                .context
                .addresses
                .iter()
                .map(|(i, n)| format!("{i} {n}"))
                .collect(),
            note: None,
        }
    }

    fn none(why: String) -> Self {
        Self {
            from: "none",
            pid: None,
            interfaces: Vec::new(),
            absent: Vec::new(),
            uplinks: Vec::new(),
            addresses: Vec::new(),
            note: Some(why),
        }
    }
}

/// What the running (or last) daemon recorded in the state directory: the view of the policy it
/// applied, its ids, and its host context (only while it runs: a dead daemon's record may no
/// longer describe the host).
struct Baseline {
    applied: Option<PlanView>,
    ids: Option<IdTable>,
    host: Option<state::HostRecord>,
}

impl Baseline {
    /// Reads the record; `Err(message)` when the state directory is root's and this is not root.
    fn read(state_dir: &Path) -> Result<Result<Self, String>> {
        let denied = |e: &state::StateError| matches!(e, state::StateError::Read { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied);
        let applied = match state::read::<PlanView>(state_dir, state::APPLIED_FILE) {
            Err(e) if denied(&e) => {
                return Ok(Err(format!(
                    "cannot read the running policy in {} (the state directory is root's): run plan as root to see the changes",
                    state_dir.join(state::APPLIED_FILE).display()
                )));
            }
            other => other?,
        };
        let ids = state::read_ids(state_dir)?;
        let host = state::read::<state::HostRecord>(state_dir, state::HOST_FILE)?
            .filter(|r| super::status::process_alive(r.pid));
        Ok(Ok(Self { applied, ids, host }))
    }

    /// How a candidate compiles as the daemon would compile it at its next reload: with its host
    /// context and its ids (new names get fresh ids, kept names keep theirs).
    fn compile_options(&self) -> policy::CompileOptions {
        let host = self
            .host
            .as_ref()
            .map_or_else(HostContext::default, |r| r.context.clone());
        host.compile_options(self.ids.clone())
    }

    fn host_used(&self, candidate: &policy::Policy) -> HostUsed {
        let Some(record) = &self.host else {
            return HostUsed::none(
                "no enforcer daemon is running: compiled without host context (the router's own addresses and the segments of its interfaces are left out, so `router` matches none of its addresses and their map entries are missing)".to_owned(),
            );
        };
        let mut used = HostUsed::of(record);
        let listed: Vec<&String> = candidate.interfaces.keys().collect();
        if !listed.is_empty() && listed != record.interfaces.iter().collect::<Vec<_>>() {
            used.note = Some(format!(
                "the policy lists other interfaces than the daemon enforces on now ({}); applying it attaches and detaches them, but this plan uses the running daemon's host context, without the addresses of interfaces it does not enforce yet",
                record.interfaces.join(", ")
            ));
        }
        used
    }
}

/// Run `plan`; returns the exit code.
///
/// # Errors
/// When a record in the state directory exists but cannot be read or parsed, or output cannot be
/// serialised.
#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "CLI output: the plan on stdout, diagnostics on stderr"
)]
pub fn run(paths: &[PathBuf], output: PlanOutput, state_dir: &Path) -> Result<u8> {
    let baseline = match Baseline::read(state_dir)? {
        Ok(b) => b,
        Err(message) => return Ok(crate::commands::fail(exit::ENVIRONMENT, &message)),
    };
    let (candidate, compiled, warnings) = match policy::load_all(paths).and_then(|p| {
        policy::compile_with_diagnostics(&p, &baseline.compile_options()).map(|(c, w)| (p, c, w))
    }) {
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
    let host = baseline.host_used(&candidate);
    let changes = baseline.applied.as_ref().map(|old| diff(old, &view));
    match output {
        PlanOutput::Svg => {
            for w in policy::render_all(&warnings) {
                eprintln!("{w}");
            }
            print!(
                "{}",
                crate::graph::svg::render(&plan_graph(baseline.applied.as_ref(), &view))
            );
        }
        PlanOutput::Json => {
            let warnings = warnings.iter().map(ToString::to_string).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&PlanReport {
                    plan: &view,
                    host: &host,
                    changes,
                    warnings
                })?
            );
        }
        PlanOutput::Text => {
            for w in policy::render_all(&warnings) {
                eprintln!("{w}");
            }
            print!("{}", render(&view, &host, changes.as_ref()));
        }
    }
    Ok(exit::OK)
}

/// The candidate's graph, marked against the applied policy's when there is one.
fn plan_graph(applied: Option<&PlanView>, candidate: &PlanView) -> crate::graph::Graph {
    let new = crate::graph::Graph::of(candidate);
    match applied {
        Some(old) => {
            let mut g = crate::graph::mark_changes(&crate::graph::Graph::of(old), &new);
            g.title = format!("{} against applied {}", g.title, short(&old.digest));
            g
        }
        None => {
            let mut g = new;
            g.title = format!("{} (nothing applied yet)", g.title);
            g
        }
    }
}

/// The text form of a plan (and its changes).
fn render(v: &PlanView, host: &HostUsed, changes: Option<&PlanDiff>) -> String {
    let mut s = String::new();
    render_policy(&mut s, v);
    render_host(&mut s, host);
    render_changes(&mut s, changes);
    s
}

/// Which host context the plan was compiled with.
fn render_host(s: &mut String, h: &HostUsed) {
    match h.pid {
        Some(pid) => {
            let role = |i: &String| {
                if h.uplinks.contains(i) {
                    format!("{i} (uplink)")
                } else if h.absent.contains(i) {
                    format!("{i} (absent)")
                } else {
                    i.clone()
                }
            };
            let ifaces: Vec<String> = h.interfaces.iter().map(role).collect();
            let _ = writeln!(
                s,
                "\nhost context: the running daemon's (pid {pid}): interfaces {}; addresses {}",
                ifaces.join(", "),
                if h.addresses.is_empty() {
                    "none".to_owned()
                } else {
                    h.addresses.join(", ")
                }
            );
        }
        None => {
            let _ = writeln!(s, "\nhost context: none");
        }
    }
    if let Some(note) = &h.note {
        let _ = writeln!(s, "  note: {note}");
    }
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
