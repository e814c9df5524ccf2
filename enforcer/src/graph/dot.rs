//! The graph in Graphviz's dot language, for tools and for review: nodes and edges in the graph's
//! own order, every attribute in a fixed order, so the same policy gives the same bytes. Each node
//! carries `class` (its kind), each edge `class` (allow, deny, member, would-deny) and `rule`, and
//! plans and overlays add `change` and `usage`, so a script can read the picture back.

use std::fmt::Write as _;

use super::{Graph, look};

/// `s` as a dot quoted string (with the quotes).
fn quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// The dot text of `g`. Writing to a String cannot fail, so the `write!` results are ignored.
#[must_use]
pub fn render(g: &Graph) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "digraph policy {{");
    let _ = writeln!(
        s,
        "  graph [label={}, labelloc=t, rankdir=LR, fontname=\"Helvetica\"];",
        quoted(&g.title)
    );
    let _ = writeln!(
        s,
        "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=11];"
    );
    let _ = writeln!(s, "  edge [fontname=\"Helvetica\", fontsize=9];");
    for n in &g.nodes {
        let l = look::node(n);
        let mut attrs = vec![
            format!("class={}", quoted(n.kind.as_str())),
            format!("label={}", quoted(&look::node_label(n).join("\n"))),
            format!("fillcolor={}", quoted(l.fill)),
            format!("color={}", quoted(l.border)),
            format!("penwidth={}", l.width),
        ];
        if l.line != look::Line::Solid {
            attrs.push(format!(
                "style={}",
                quoted(&format!("rounded,filled,{}", l.line.dot_style()))
            ));
        }
        if let Some(c) = n.change {
            attrs.push(format!("change={}", quoted(c.as_str())));
        }
        let _ = writeln!(s, "  {} [{}];", quoted(&n.id), attrs.join(", "));
    }
    for e in &g.edges {
        let l = look::edge(e);
        let mut attrs = vec![format!("class={}", quoted(e.kind.as_str()))];
        if let Some(rule) = &e.rule {
            attrs.push(format!("rule={}", quoted(rule)));
        }
        let label = look::edge_label(e);
        if !label.is_empty() {
            attrs.push(format!("label={}", quoted(&label.join("\n"))));
        }
        attrs.push(format!("color={}", quoted(l.color)));
        attrs.push(format!("fontcolor={}", quoted(l.color)));
        attrs.push(format!("penwidth={}", l.width));
        attrs.push(format!("style={}", l.line.dot_style()));
        if !l.arrow {
            attrs.push("arrowhead=none".to_owned());
        }
        if let Some(c) = e.change {
            attrs.push(format!("change={}", quoted(c.as_str())));
        }
        if let Some(u) = e.usage {
            attrs.push(format!("usage={}", quoted(u.as_str())));
        }
        let _ = writeln!(
            s,
            "  {} -> {} [{}];",
            quoted(&e.from),
            quoted(&e.to),
            attrs.join(", ")
        );
    }
    let _ = writeln!(s, "}}");
    s
}
