//! What a candidate policy adds to and removes from the running one's graph, for
//! `enforcer plan --output svg`: the candidate's graph, with the running one's nodes and edges
//! that the candidate lacks put back in, marked removed.

use super::{Edge, Graph, Node};

/// How a node or edge differs from the running policy's graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    /// Same endpoints and rule, other services or label (a zone's device count, say).
    Changed,
}

impl Change {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Changed => "changed",
        }
    }
}

/// An edge's identity across two policies: its ends, what it says and which rule says it.
fn edge_key(e: &Edge) -> (&str, &str, super::EdgeKind, Option<&str>) {
    (&e.from, &e.to, e.kind, e.rule.as_deref())
}

/// `new`, marked against `old`: new nodes and edges `Added`, differing ones `Changed`, and those
/// only `old` has put back in, `Removed`.
#[must_use]
pub fn mark_changes(old: &Graph, new: &Graph) -> Graph {
    let mut g = new.clone();
    for n in &mut g.nodes {
        n.change = match old.node(&n.id) {
            None => Some(Change::Added),
            Some(o) if o.label != n.label => Some(Change::Changed),
            Some(_) => None,
        };
    }
    for e in &mut g.edges {
        e.change = match old.edges.iter().find(|o| edge_key(o) == edge_key(e)) {
            None => Some(Change::Added),
            Some(o) if o.services != e.services => Some(Change::Changed),
            Some(_) => None,
        };
    }
    let gone_nodes: Vec<Node> = old
        .nodes
        .iter()
        .filter(|o| new.node(&o.id).is_none())
        .map(|o| Node {
            change: Some(Change::Removed),
            ..o.clone()
        })
        .collect();
    g.nodes.extend(gone_nodes);
    let gone_edges: Vec<Edge> = old
        .edges
        .iter()
        .filter(|o| !new.edges.iter().any(|e| edge_key(e) == edge_key(o)))
        .map(|o| Edge {
            change: Some(Change::Removed),
            ..o.clone()
        })
        .collect();
    g.edges.extend(gone_edges);
    g
}
