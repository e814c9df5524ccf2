//! A [`Proposal`] as policy YAML (a file to drop into the policy directory), JSON, or a table.

use std::fmt::Write as _;

use super::{LearntRule, Proposal};
use crate::time::rfc3339;

/// The counts and first and last seen of a rule, as its comment says them.
fn seen_text(r: &LearntRule) -> String {
    format!(
        "{} flows, {} packets, {} bytes; first seen {}, last seen {}",
        r.seen.flows,
        r.seen.packets,
        r.seen.bytes,
        rfc3339(r.seen.first_seen),
        rfc3339(r.seen.last_seen)
    )
}

/// Policy YAML: a `rules:` section, each rule with its counts as a comment, the warnings as
/// comments on top. `what` says what was learnt (`zone printers, last 7d`).
#[must_use]
pub fn render_yaml(p: &Proposal, what: &str) -> String {
    let mut out = format!("# Proposed by `enforcer learn` ({what}): what was observed, allowed.\n");
    if !p.warnings.is_empty() {
        out.push_str("# Warnings:\n");
        for w in &p.warnings {
            let _ = writeln!(out, "#   - {w}");
        }
    }
    if p.rules.is_empty() {
        out.push_str("rules: []\n");
        return out;
    }
    out.push_str("rules:\n");
    for r in &p.rules {
        let _ = write!(
            out,
            "  # {}\n  - name: {}\n    from: {}\n    to: {}\n    allow: [{}]\n",
            seen_text(r),
            r.name,
            r.from,
            r.to,
            r.allow.join(", ")
        );
    }
    out
}

/// One JSON document: `{"rules": [...], "warnings": [...]}`.
///
/// # Errors
/// Never in practice (the types serialise).
pub fn render_json(p: &Proposal) -> serde_json::Result<String> {
    serde_json::to_string_pretty(p)
}

/// A table for people, the warnings below it.
#[must_use]
pub fn render_table(p: &Proposal) -> String {
    let mut t = crate::commands::table::new(
        &[
            "RULE",
            "FROM",
            "TO",
            "ALLOW",
            "FLOWS",
            "FIRST SEEN",
            "LAST SEEN",
        ],
        &["FLOWS"],
    );
    for r in &p.rules {
        t.add_row([
            r.name.clone(),
            r.from.clone(),
            r.to.clone(),
            r.allow.join(", "),
            r.seen.flows.to_string(),
            rfc3339(r.seen.first_seen),
            rfc3339(r.seen.last_seen),
        ]);
    }
    let mut out = format!("{}\n", crate::commands::table::render(&t));
    for w in &p.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}
