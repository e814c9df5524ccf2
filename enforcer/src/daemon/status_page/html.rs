//! The page's HTML: one document, its style inline, no scripts, every value escaped (names come
//! from policies and from the wire: a device's notes or a discovered host name may hold markup).

use std::fmt::Write as _;

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::Snapshot;
use crate::{daemon::control::WatchEvent, graph};

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#111827}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse;font-size:.9em}\
th,td{border:1px solid #d1d5db;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f3f4f6}td.n{text-align:right}\
.bad{color:#b91c1c;font-weight:bold}.warn{color:#b45309}.muted{color:#6b7280}\
.graph svg{max-width:100%;height:auto;border:1px solid #e5e7eb}";

/// `s` with the five characters that mean something in HTML (text or attribute) escaped.
#[must_use]
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The Content-Security-Policy for `body`: nothing may load or run; only the `<style>` blocks
/// the page itself holds apply, each allowed by its hash.
#[must_use]
pub fn content_security_policy(body: &str) -> String {
    let mut hashes = Vec::new();
    let mut rest = body;
    while let Some(open) = rest.find("<style>") {
        let after = &rest[open + "<style>".len()..];
        let Some(close) = after.find("</style>") else {
            break;
        };
        let digest = Sha256::digest(&after.as_bytes()[..close]);
        let hash = format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        );
        if !hashes.contains(&hash) {
            hashes.push(hash);
        }
        rest = &after[close..];
    }
    let styles = if hashes.is_empty() {
        "'none'".to_owned()
    } else {
        hashes.join(" ")
    };
    format!(
        "default-src 'none'; style-src {styles}; img-src 'none'; script-src 'none'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// A JSON field as text (`-` when absent).
fn field(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn number(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// The fields of an unknown device that have columns of their own.
const UNKNOWN_SHOWN: &[&str] = &[
    "mac",
    "ipv4",
    "ipv6",
    "interface",
    "last_seen",
    "packets",
    "last_destination",
    "last_port",
    "last_protocol",
];

/// Where an unknown device last tried to go: `ADDR:PORT`, or `ADDR (icmp)`.
fn last_tried(d: &Value) -> String {
    let dst = field(d, "last_destination");
    match number(d, &["last_protocol"]) {
        1 | 58 => format!("{dst} (icmp)"),
        _ => format!("{dst}:{}", field(d, "last_port")),
    }
}

/// Every other field of `v` as `key: value`, so what the inventory learns to show (host names
/// seen on the wire, say) is on the page too, escaped like the rest.
fn details(v: &Value, shown: &[&str]) -> String {
    let Some(map) = v.as_object() else {
        return String::new();
    };
    map.iter()
        .filter(|(k, _)| !shown.contains(&k.as_str()))
        .map(|(k, _)| format!("{k}: {}", field(v, k)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `<table>` with `head` and rows of already escaped cells.
fn table(s: &mut String, head: &[&str], rows: &[Vec<String>], empty: &str) {
    if rows.is_empty() {
        let _ = writeln!(s, "<p class=\"muted\">{}</p>", escape(empty));
        return;
    }
    s.push_str("<table><tr>");
    for h in head {
        let _ = write!(s, "<th>{}</th>", escape(h));
    }
    s.push_str("</tr>\n");
    for row in rows {
        s.push_str("<tr>");
        for cell in row {
            s.push_str(&format!("<td>{cell}</td>"));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
}

/// The whole page.
#[must_use]
pub fn render(snap: &Snapshot) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>enforcer status</title><style>{STYLE}</style></head><body>\n<h1>enforcer status</h1>\n"
    );
    policy_section(&mut s, snap);
    graph_section(&mut s, snap);
    devices_sections(&mut s, snap);
    recent_section(&mut s, &snap.recent);
    s.push_str("</body></html>\n");
    s
}

fn policy_section(s: &mut String, snap: &Snapshot) {
    let st = match &snap.status {
        Ok(st) => st,
        Err(why) => {
            let _ = writeln!(
                s,
                "<p class=\"bad\">status unavailable: {}</p>",
                escape(why)
            );
            return;
        }
    };
    let digest = st.digest.get(..12).unwrap_or(&st.digest);
    let _ = writeln!(
        s,
        "<p>policy generation <b id=\"generation\">{}</b> ({}), {} mode, from {}; pid {}</p>",
        st.generation,
        escape(digest),
        escape(&st.mode),
        escape(&st.policy_path),
        st.pid
    );
    let reload = match &st.last_reload {
        None => "<span class=\"muted\">no reload since start</span>".to_owned(),
        Some(r) => {
            let class = if r.result == "success" { "" } else { "bad" };
            let mut text = format!(
                "<span class=\"{class}\">last reload: {} at {}</span>",
                escape(&r.result),
                escape(&crate::time::rfc3339(r.at))
            );
            if let Some(e) = &r.error {
                let _ = write!(text, "<br><code>{}</code>", escape(e));
            }
            text
        }
    };
    let _ = writeln!(s, "<p id=\"reload\">{reload}</p>");
    if let Some(p) = &st.pending {
        let _ = writeln!(
            s,
            "<p class=\"warn\">provisional policy (generation {}, from {}) reverts to generation {} at {} unless confirmed</p>",
            p.generation,
            escape(&p.paths),
            p.confirmed_generation,
            escape(&p.deadline)
        );
    }
    let ifaces: Vec<String> = st.interfaces.iter().map(|i| escape(&i.name)).collect();
    let _ = writeln!(s, "<p>interfaces: {}</p>", ifaces.join(", "));
}

fn graph_section(s: &mut String, snap: &Snapshot) {
    s.push_str("<h2>Zones</h2>\n");
    match &snap.applied {
        // The SVG escapes its labels itself (layout-rs writes text through its own escaping).
        Ok(view) => {
            let _ = writeln!(
                s,
                "<div class=\"graph\">{}</div>",
                graph::svg::inline(&graph::Graph::of(view))
            );
        }
        Err(why) => {
            let _ = writeln!(s, "<p class=\"bad\">no graph: {}</p>", escape(why));
        }
    }
}

fn devices_sections(s: &mut String, snap: &Snapshot) {
    let inv = match &snap.devices {
        Ok(inv) => inv,
        Err(why) => {
            let _ = writeln!(
                s,
                "<h2>Devices</h2>\n<p class=\"bad\">devices unavailable: {}</p>",
                escape(why)
            );
            return;
        }
    };
    let empty = Vec::new();
    let listed = inv
        .get("listed")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let unknown = inv
        .get("unknown")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    listed_section(s, listed);
    quarantine_section(s, listed);
    unknown_section(s, unknown);
}

fn listed_section(s: &mut String, listed: &[Value]) {
    s.push_str("<h2>Devices</h2>\n");
    let rows: Vec<Vec<String>> = listed
        .iter()
        .map(|d| {
            let state = field(d, "state");
            let class = if state == "ok" { "" } else { "bad" };
            vec![
                escape(&field(d, "name")),
                escape(&field(d, "zone")),
                format!("<span class=\"{class}\">{}</span>", escape(&state)),
                escape(&field(d, "last_seen")),
                number(d, &["packets", "allow"]).to_string(),
                (number(d, &["packets", "deny"]) + number(d, &["packets", "audit"])).to_string(),
                escape(&field(d, "vendor")),
                escape(&field(d, "notes")),
            ]
        })
        .collect();
    table(
        s,
        &[
            "device",
            "zone",
            "state",
            "last seen",
            "allowed",
            "denied",
            "vendor",
            "notes",
        ],
        &rows,
        "no listed devices",
    );
}

fn quarantine_section(s: &mut String, listed: &[Value]) {
    s.push_str("<h2>Quarantines</h2>\n");
    let rows: Vec<Vec<String>> = listed
        .iter()
        .filter(|d| field(d, "state") == "quarantined")
        .map(|d| {
            vec![
                escape(&field(d, "name")),
                escape(&field(d, "zone")),
                escape(&field(d, "quarantine_reason")),
            ]
        })
        .collect();
    table(
        s,
        &["device", "zone", "reason"],
        &rows,
        "no device is quarantined",
    );
}

fn unknown_section(s: &mut String, unknown: &[Value]) {
    s.push_str("<h2>Unknown devices</h2>\n");
    let rows: Vec<Vec<String>> = unknown
        .iter()
        .map(|d| {
            vec![
                escape(&field(d, "mac")),
                escape(&field(d, "ipv4")),
                escape(&field(d, "ipv6")),
                escape(&field(d, "interface")),
                escape(&field(d, "last_seen")),
                number(d, &["packets"]).to_string(),
                escape(&last_tried(d)),
                escape(&details(d, UNKNOWN_SHOWN)),
            ]
        })
        .collect();
    table(
        s,
        &[
            "mac",
            "ipv4",
            "ipv6",
            "interface",
            "last seen",
            "packets",
            "last tried",
            "details",
        ],
        &rows,
        "no unknown device seen",
    );
}

fn recent_section(s: &mut String, recent: &[WatchEvent]) {
    s.push_str("<h2>Latest denies</h2>\n");
    let rows: Vec<Vec<String>> = recent
        .iter()
        .map(|e| {
            // An ICMP event's "port" is its echo id: not worth showing.
            let port = e.dport.filter(|_| e.proto.as_deref() != Some("icmp"));
            let to = match (&e.dst, port) {
                (Some(d), Some(p)) => format!("{d} port {p}"),
                (Some(d), None) => d.clone(),
                (None, _) => "-".to_owned(),
            };
            vec![
                escape(&e.time),
                escape(&e.kind),
                escape(&e.device),
                escape(&e.zone),
                escape(e.proto.as_deref().unwrap_or("-")),
                escape(&to),
                escape(e.rule.as_deref().unwrap_or("-")),
                escape(e.reason.as_deref().unwrap_or("-")),
            ]
        })
        .collect();
    table(
        s,
        &[
            "time", "kind", "device", "zone", "proto", "to", "rule", "reason",
        ],
        &rows,
        "no deny since the daemon started",
    );
}
