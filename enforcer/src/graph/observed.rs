//! Observed traffic drawn over the policy graph: allow edges some flow used, allow edges no flow
//! used (candidates to remove), and traffic audit mode let through that enforcing would deny.
//!
//! The observations are plain data: whatever keeps them (the learn store of per-source flows)
//! hands them over as [`Observations`], so the overlay and its drawing do not depend on how they
//! are stored.

use std::collections::BTreeMap;

use super::{Edge, EdgeKind, Graph};

/// Whether an observed flow was allowed, or let through by audit mode though enforcing would
/// deny it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObservedVerdict {
    Allowed,
    WouldDeny,
}

/// One observed flow (or many alike, summed), by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedFlow {
    /// The sending device's name (`unknown` for an unlisted source), or `router`, or the node id
    /// of a network or name traffic came in from (`network:NAME`).
    pub from_device: String,
    /// The destination as a graph node id: `zone:NAME`, `device:NAME`, `network:NAME`, `router`,
    /// `dns:NAME`.
    pub to: String,
    /// `tcp/443`, `udp/53`, `icmp`.
    pub service: String,
    /// The rule that decided it (`default` for the default verdict).
    pub rule: String,
    pub verdict: ObservedVerdict,
    pub flows: u64,
}

/// Everything observed over some time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observations {
    pub flows: Vec<ObservedFlow>,
}

/// What the observations say about an edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// This many flows went through it.
    Used(u64),
    /// No observed flow went through it.
    NeverUsed,
    /// This many flows enforcing would deny (on would-deny edges).
    WouldDeny(u64),
}

impl Usage {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Used(_) => "used",
            Self::NeverUsed => "never-used",
            Self::WouldDeny(_) => "would-deny",
        }
    }
}

impl Graph {
    /// This graph with `obs` drawn over it: every allow edge marked used (with its flows) or
    /// never used, and one would-deny edge per source node and destination with their flows.
    #[must_use]
    pub fn with_observations(&self, obs: &Observations) -> Self {
        let mut g = self.clone();
        let mut used: BTreeMap<&str, u64> = BTreeMap::new();
        let mut would_deny: BTreeMap<(String, String), (u64, Vec<String>)> = BTreeMap::new();
        for f in &obs.flows {
            match f.verdict {
                ObservedVerdict::Allowed => *used.entry(f.rule.as_str()).or_default() += f.flows,
                ObservedVerdict::WouldDeny => {
                    let from = self.observed_node(&f.from_device);
                    let to = self.observed_node(&f.to);
                    let entry = would_deny.entry((from, to)).or_default();
                    entry.0 += f.flows;
                    if !entry.1.contains(&f.service) {
                        entry.1.push(f.service.clone());
                    }
                }
            }
        }
        for e in &mut g.edges {
            if e.kind == EdgeKind::Allow {
                let rule = e.rule.as_deref().unwrap_or_default();
                e.usage = Some(match used.get(rule) {
                    Some(&n) if n > 0 => Usage::Used(n),
                    _ => Usage::NeverUsed,
                });
            }
        }
        for ((from, to), (flows, mut services)) in would_deny {
            services.sort();
            g.edges.push(Edge {
                from,
                to,
                kind: EdgeKind::WouldDeny,
                rule: None,
                services,
                carves_out_of: Vec::new(),
                change: None,
                usage: Some(Usage::WouldDeny(flows)),
            });
        }
        let ends: Vec<String> = g
            .edges
            .iter()
            .filter(|e| e.kind == EdgeKind::WouldDeny)
            .flat_map(|e| [e.from.clone(), e.to.clone()])
            .collect();
        for id in ends {
            g.ensure_endpoint(&id);
        }
        g
    }

    /// The node an observed end is drawn at. A device (`cam-1` as a source, `device:cam-1` as a
    /// destination) at its own node when drawn, else at its zone's; a source no zone lists at the
    /// zone unlisted sources land in; the router, networks, names and addresses as themselves.
    fn observed_node(&self, end: &str) -> String {
        let (device, named) = match end.strip_prefix("device:") {
            Some(d) => (d, true),
            None if end == "router" || end.contains(':') => return end.to_owned(),
            None => (end, false),
        };
        let own = format!("device:{device}");
        if self.node(&own).is_some() {
            return own;
        }
        if let Some(zone) = self.members.get(device) {
            return format!("zone:{zone}");
        }
        if named {
            return own;
        }
        self.nodes
            .iter()
            .find(|n| matches!(n.kind, super::NodeKind::Zone { unknown: true, .. }))
            .map_or_else(|| "unknown".to_owned(), |n| n.id.clone())
    }
}
