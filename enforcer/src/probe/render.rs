//! Probe results as text for a terminal (`enforcer test`, `enforcer explain`).

use std::fmt::Write as _;

use super::{Answer, EndReport, ProbeResult, tally};

/// One line per probe (and a second with the verdict), then a summary line.
#[must_use]
pub fn results(results: &[ProbeResult]) -> String {
    let mut s = String::new();
    for r in results {
        let mark = if r.passed { "PASS" } else { "FAIL" };
        let name = r
            .name
            .as_deref()
            .map(|n| format!("{n}: "))
            .unwrap_or_default();
        let _ = writeln!(s, "{mark} {} {name}{} ({})", r.kind, r.flow, r.at);
        if let Some(a) = &r.answer {
            let audit = if a.audit { " [audit mode]" } else { "" };
            let _ = writeln!(s, "     {} by {} ({}){audit}", a.verdict, a.rule, a.reason);
        }
        if let Some(f) = &r.failure {
            let _ = writeln!(s, "     {f}");
        }
    }
    let counts: Vec<String> = tally(results)
        .into_iter()
        .map(|(kind, (ok, bad))| format!("{kind}s: {ok} passed, {bad} failed"))
        .collect();
    if counts.is_empty() {
        s.push_str("no tests or guards in the policy\n");
    } else {
        let _ = writeln!(s, "{}", counts.join("; "));
    }
    s
}

fn end(e: &EndReport) -> String {
    let mut parts = Vec::new();
    match (&e.device, &e.zone) {
        (Some(d), Some(z)) => parts.push(format!("device {d} (zone {z})")),
        (Some(d), None) => parts.push(d.clone()),
        _ => {}
    }
    if let Some(n) = &e.network {
        parts.push(format!("network {n}"));
    }
    if e.unknown {
        parts.push("unknown source".to_owned());
    }
    parts.push(format!("class {}", e.class));
    if e.spoofed {
        parts.push("SPOOFED".to_owned());
    }
    if e.quarantined {
        parts.push("QUARANTINED".to_owned());
    }
    parts.join(", ")
}

/// One flow's answer, `cilium policy trace` style.
#[must_use]
pub fn answer(flow: &str, a: &Answer) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "flow:        {flow}");
    let _ = writeln!(s, "policy:      generation {}", a.generation);
    let _ = writeln!(s, "source:      {}", end(&a.src));
    let _ = writeln!(s, "destination: {}", end(&a.dst));
    let _ = writeln!(s, "verdict:     {}", a.verdict.to_uppercase());
    let _ = writeln!(s, "rule:        {}", a.rule);
    let _ = writeln!(s, "reason:      {}", a.reason);
    if a.audit {
        let _ = writeln!(
            s,
            "mode:        audit (the policy is in audit mode: a deny is only counted)"
        );
    }
    s
}
