//! How each kind of node and edge is drawn, one table for both renderers ([`super::dot`] and
//! [`super::svg`]), so the two pictures of a policy agree.

use super::{Change, Edge, EdgeKind, Node, NodeKind, Usage};

/// A line's pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    Solid,
    Dashed,
    Dotted,
}

impl Line {
    #[must_use]
    pub const fn dot_style(self) -> &'static str {
        match self {
            Self::Solid => "solid",
            Self::Dashed => "dashed",
            Self::Dotted => "dotted",
        }
    }
}

/// How a node is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeLook {
    pub fill: &'static str,
    pub border: &'static str,
    pub width: usize,
    pub line: Line,
}

/// How an edge is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeLook {
    pub color: &'static str,
    pub width: usize,
    pub line: Line,
    pub arrow: bool,
}

const ADDED: &str = "#15803d";
const REMOVED: &str = "#9ca3af";
const CHANGED: &str = "#b45309";

#[must_use]
pub fn node(n: &Node) -> NodeLook {
    let (fill, border) = match &n.kind {
        NodeKind::Zone {
            quarantine: true, ..
        } => ("#fde68a", "#b45309"),
        NodeKind::Zone { .. } => ("#dbeafe", "#1e3a8a"),
        NodeKind::Network { tripwire: true } => ("#fecaca", "#991b1b"),
        NodeKind::Network { .. } => ("#e5e7eb", "#374151"),
        NodeKind::Router => ("#ede9fe", "#5b21b6"),
        NodeKind::Device { .. } => ("#f0f9ff", "#0369a1"),
        NodeKind::Any => ("#ffffff", "#374151"),
        NodeKind::Name => ("#ecfdf5", "#047857"),
        NodeKind::Defaults => ("#f9fafb", "#6b7280"),
    };
    let mut look = NodeLook {
        fill,
        border,
        width: 1,
        line: Line::Solid,
    };
    match n.change {
        Some(Change::Added) => {
            look.border = ADDED;
            look.width = 3;
        }
        Some(Change::Removed) => {
            look.border = REMOVED;
            look.fill = "#ffffff";
            look.line = Line::Dashed;
        }
        Some(Change::Changed) => {
            look.border = CHANGED;
            look.width = 3;
        }
        None => {}
    }
    look
}

#[must_use]
pub fn edge(e: &Edge) -> EdgeLook {
    let mut look = match e.kind {
        EdgeKind::Allow => EdgeLook {
            color: "#1f2937",
            width: 1,
            line: Line::Solid,
            arrow: true,
        },
        EdgeKind::Deny => EdgeLook {
            color: "#dc2626",
            width: 2,
            line: Line::Dashed,
            arrow: true,
        },
        EdgeKind::Member => EdgeLook {
            color: "#9ca3af",
            width: 1,
            line: Line::Dotted,
            arrow: false,
        },
        EdgeKind::WouldDeny => EdgeLook {
            color: "#ea580c",
            width: 2,
            line: Line::Dotted,
            arrow: true,
        },
    };
    match e.usage {
        Some(Usage::Used(_)) => {
            look.color = "#2563eb";
            look.width = 3;
        }
        Some(Usage::NeverUsed) => {
            look.color = "#9ca3af";
            look.line = Line::Dashed;
        }
        Some(Usage::WouldDeny(_)) | None => {}
    }
    match e.change {
        Some(Change::Added) => {
            look.color = ADDED;
            look.width = 3;
        }
        Some(Change::Removed) => {
            look.color = REMOVED;
            look.line = Line::Dashed;
        }
        Some(Change::Changed) => {
            look.color = CHANGED;
            look.width = 3;
        }
        None => {}
    }
    look
}

/// The lines of an edge's label: its rule, its services, and what an overlay or a plan says.
#[must_use]
pub fn edge_label(e: &Edge) -> Vec<String> {
    let mut lines = Vec::new();
    match (e.kind, &e.rule) {
        (EdgeKind::Member, _) => return lines,
        (EdgeKind::Deny, Some(r)) => lines.push(format!("DENY {r}")),
        (EdgeKind::WouldDeny, _) => lines.push("would deny (audit)".to_owned()),
        (_, Some(r)) => lines.push(r.clone()),
        (_, None) => {}
    }
    if !e.services.is_empty() {
        lines.push(e.services.join(", "));
    }
    if !e.carves_out_of.is_empty() {
        lines.push(format!("carves out of {}", e.carves_out_of.join(", ")));
    }
    match e.usage {
        Some(Usage::Used(n) | Usage::WouldDeny(n)) => {
            lines.push(format!("{n} flow{}", if n == 1 { "" } else { "s" }));
        }
        Some(Usage::NeverUsed) => lines.push("never used".to_owned()),
        None => {}
    }
    if let Some(c) = e.change {
        lines.push(format!("({})", c.as_str()));
    }
    lines
}

/// The lines of a node's label, with a plan's mark.
#[must_use]
pub fn node_label(n: &Node) -> Vec<String> {
    let mut lines = n.label.clone();
    if let Some(c) = n.change {
        lines.push(format!("({})", c.as_str()));
    }
    lines
}
