//! The policy as a graph: zones, networks, `router`, `dns:` names and the devices that rules name
//! on their own are nodes; what rules allow or deny are edges, with their services on the label.
//! `enforcer graph` draws it ([`dot`] for tools, [`svg`] laid out by the binary itself),
//! `enforcer plan --output svg` draws a candidate's with its changes marked ([`change`]), the
//! status page inlines it, and an overlay of observed traffic ([`observed`]) marks edges used,
//! never used, and would-deny traffic.
//!
//! The graph is built from a [`PlanView`] (what the datapath gets, by name), so the policy the
//! daemon recorded as applied draws the same way as a candidate. Everything is kept in a fixed
//! order (the compiled policy's sorted names), so the same policy gives the same bytes.

use std::collections::{BTreeMap, BTreeSet};

use crate::policy::{PlanView, plan::PlanRule};

pub mod change;
pub mod dot;
mod look;
pub mod observed;
mod services;
pub mod svg;

pub use change::{Change, mark_changes};
pub use observed::{Observations, ObservedFlow, ObservedVerdict, Usage};

/// What a node stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A zone and how many listed devices it has.
    Zone {
        devices: usize,
        /// The zone automatic quarantine moves devices to.
        quarantine: bool,
        /// The zone unlisted sources land in (`defaults.unknown`).
        unknown: bool,
    },
    /// A policy network; `tripwire` when touching it quarantines the sender.
    Network {
        tripwire: bool,
    },
    Router,
    /// A device a rule names on its own (`device:NAME`), drawn beside its zone.
    Device {
        zone: String,
    },
    /// `any` as a rule's side.
    Any,
    /// A destination by DNS name (`dns:NAME`).
    Name,
    /// The defaults: what happens to everything no rule decides.
    Defaults,
}

impl NodeKind {
    /// A short word for the kind, for `class=` in dot and for tests.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Zone { .. } => "zone",
            Self::Network { .. } => "network",
            Self::Router => "router",
            Self::Device { .. } => "device",
            Self::Any => "any",
            Self::Name => "name",
            Self::Defaults => "defaults",
        }
    }
}

/// One node. `id` is the endpoint as rules write it (`zone:cameras`, `router`, `dns:NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    pub kind: NodeKind,
    /// The lines drawn in the node.
    pub label: Vec<String>,
    pub change: Option<Change>,
}

/// What an edge says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EdgeKind {
    Allow,
    Deny,
    /// A device drawn on its own belongs to this zone (no traffic meaning).
    Member,
    /// Traffic audit mode let through that enforcing would deny (from observations).
    WouldDeny,
}

impl EdgeKind {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Member => "member",
            Self::WouldDeny => "would-deny",
        }
    }
}

/// One edge: a rule from one of its sources to one of its destinations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub kind: EdgeKind,
    /// The rule it draws (none for membership and observed would-deny traffic).
    pub rule: Option<String>,
    pub services: Vec<String>,
    /// For a deny: the allow rules it carves out of (they would allow some of its traffic).
    pub carves_out_of: Vec<String>,
    pub change: Option<Change>,
    pub usage: Option<Usage>,
}

/// The policy (or a part of it) as nodes and edges, in drawing order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Graph {
    /// What it is a picture of (`policy 1a2b3c4d5e6f`).
    pub title: String,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// Listed device -> its zone, to place observed traffic.
    pub members: BTreeMap<String, String>,
}

/// Why a graph cannot be drawn as asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    #[error("no zone {zone} in the policy (zones: {known})")]
    NoSuchZone { zone: String, known: String },
}

impl Graph {
    /// The whole policy as a graph.
    #[must_use]
    pub fn of(view: &PlanView) -> Self {
        Builder::new(view).build()
    }

    /// Only what touches zone `zone`: its node, the devices of it drawn on their own, every edge
    /// to or from one of them, and the nodes at the other ends (the defaults stay).
    ///
    /// # Errors
    /// When the policy has no such zone.
    pub fn of_zone(view: &PlanView, zone: &str) -> Result<Self, GraphError> {
        if !view.zones.iter().any(|z| z.name == zone) {
            return Err(GraphError::NoSuchZone {
                zone: zone.to_owned(),
                known: view
                    .zones
                    .iter()
                    .map(|z| z.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let mut g = Self::of(view);
        let zone_id = format!("zone:{zone}");
        let mine: BTreeSet<String> = g
            .nodes
            .iter()
            .filter(|n| {
                n.id == zone_id || matches!(&n.kind, NodeKind::Device { zone: z } if z == zone)
            })
            .map(|n| n.id.clone())
            .collect();
        g.edges
            .retain(|e| mine.contains(&e.from) || mine.contains(&e.to));
        let drawn: BTreeSet<&str> = g
            .edges
            .iter()
            .flat_map(|e| [e.from.as_str(), e.to.as_str()])
            .collect();
        g.nodes.retain(|n| {
            mine.contains(&n.id) || drawn.contains(n.id.as_str()) || n.kind == NodeKind::Defaults
        });
        g.title = format!("{} (zone {zone})", g.title);
        Ok(g)
    }

    #[must_use]
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Adds a node for endpoint `id` when there is none (an observed destination the policy
    /// names nowhere, or one a zone filter left out), its kind read off the id.
    pub fn ensure_endpoint(&mut self, id: &str) {
        if self.node(id).is_some() {
            return;
        }
        let (kind, label) = if let Some(z) = id.strip_prefix("zone:") {
            let devices = self.members.values().filter(|m| *m == z).count();
            let kind = NodeKind::Zone {
                devices,
                quarantine: false,
                unknown: false,
            };
            (
                kind,
                vec![format!("zone {z}"), format!("{devices} devices")],
            )
        } else if let Some(n) = id.strip_prefix("network:") {
            (
                NodeKind::Network { tripwire: false },
                vec![format!("network {n}")],
            )
        } else if let Some(d) = id.strip_prefix("device:") {
            let zone = self.members.get(d).cloned().unwrap_or_default();
            (NodeKind::Device { zone }, vec![format!("device {d}")])
        } else if let Some(n) = id.strip_prefix("dns:") {
            (NodeKind::Name, vec![format!("name {n}")])
        } else if id == "router" {
            (NodeKind::Router, vec!["router".to_owned()])
        } else {
            (NodeKind::Any, vec![id.to_owned()])
        };
        self.nodes.push(Node {
            id: id.to_owned(),
            kind,
            label,
            change: None,
        });
    }
}

/// The id of the defaults node (no rule can name `defaults` as an endpoint).
pub const DEFAULTS_ID: &str = "defaults";

struct Builder<'a> {
    view: &'a PlanView,
    graph: Graph,
}

impl<'a> Builder<'a> {
    fn new(view: &'a PlanView) -> Self {
        let members = view
            .devices
            .iter()
            .map(|d| (d.name.clone(), d.zone.clone()))
            .collect();
        Self {
            view,
            graph: Graph {
                title: format!("policy {}", view.digest.get(..12).unwrap_or(&view.digest)),
                nodes: Vec::new(),
                edges: Vec::new(),
                members,
            },
        }
    }

    fn build(mut self) -> Graph {
        self.zones();
        self.networks();
        self.router_if_named();
        self.rule_endpoints();
        self.defaults();
        for rule in &self.view.rules {
            self.rule_edges(rule);
        }
        self.graph
    }

    fn zones(&mut self) {
        let quarantine = self.view.quarantine.as_ref().map(|q| q.zone.as_str());
        for z in &self.view.zones {
            let is_quarantine = quarantine == Some(z.name.as_str());
            let unknown = z.class == self.view.unknown_class;
            let mut label = vec![
                format!("zone {}", z.name),
                format!(
                    "{} device{}",
                    z.devices,
                    if z.devices == 1 { "" } else { "s" }
                ),
            ];
            if is_quarantine {
                label.push("quarantine zone".to_owned());
            }
            if unknown {
                label.push("unknown sources land here".to_owned());
            }
            self.push_node(
                format!("zone:{}", z.name),
                NodeKind::Zone {
                    devices: z.devices,
                    quarantine: is_quarantine,
                    unknown,
                },
                label,
            );
        }
    }

    fn networks(&mut self) {
        let touches: Vec<&str> = self
            .view
            .quarantine
            .as_ref()
            .map(|q| q.touches.iter().map(String::as_str).collect())
            .unwrap_or_default();
        for n in &self.view.networks {
            let id = format!("network:{}", n.name);
            let tripwire = touches.contains(&id.as_str());
            let mut label = vec![format!("network {}", n.name), n.cidrs.join(" ")];
            if tripwire {
                label.push("tripwire: touching it quarantines".to_owned());
            }
            self.push_node(id, NodeKind::Network { tripwire }, label);
        }
    }

    /// `router` is a node when a rule names it (it is no zone nor network of the policy).
    fn router_if_named(&mut self) {
        if self.named_endpoints().any(|e| e == "router") {
            self.push_node(
                "router".to_owned(),
                NodeKind::Router,
                vec!["router".to_owned()],
            );
        }
    }

    /// Devices, names and `any` that rules name on their own, in sorted order.
    fn rule_endpoints(&mut self) {
        let named: BTreeSet<String> = self.named_endpoints().map(str::to_owned).collect();
        for id in &named {
            if let Some(device) = id.strip_prefix("device:") {
                let zone = self.graph.members.get(device).cloned().unwrap_or_default();
                self.push_node(
                    id.clone(),
                    NodeKind::Device { zone: zone.clone() },
                    vec![format!("device {device}"), format!("in zone {zone}")],
                );
                self.graph.edges.push(Edge {
                    from: id.clone(),
                    to: format!("zone:{zone}"),
                    kind: EdgeKind::Member,
                    rule: None,
                    services: Vec::new(),
                    carves_out_of: Vec::new(),
                    change: None,
                    usage: None,
                });
            } else if let Some(name) = id.strip_prefix("dns:") {
                self.push_node(id.clone(), NodeKind::Name, vec![format!("name {name}")]);
            }
        }
        if named.contains("any") {
            self.push_node(
                "any".to_owned(),
                NodeKind::Any,
                vec!["any source".to_owned()],
            );
        }
    }

    fn defaults(&mut self) {
        let v = self.view;
        let mut label = vec![
            "defaults".to_owned(),
            format!("no rule: {} ({})", v.default_action, v.mode),
            format!("spoofed: {}", v.spoofed_action),
        ];
        if let Some(q) = &v.quarantine {
            let mut when = Vec::new();
            if let Some((count, within)) = q.denied_packets {
                when.push(format!("{count} denied in {within}s"));
            }
            if q.spoofing {
                when.push("spoofing".to_owned());
            }
            when.extend(q.touches.iter().map(|t| format!("touching {t}")));
            // One trigger a line: the box stays narrow.
            label.push(format!("quarantine to zone {} when:", q.zone));
            label.extend(when.into_iter().map(|w| format!("  {w}")));
            label.push(match q.release_after_s {
                Some(s) => format!("released after {s}s"),
                None => "released by hand".to_owned(),
            });
        }
        self.push_node(DEFAULTS_ID.to_owned(), NodeKind::Defaults, label);
    }

    fn rule_edges(&mut self, rule: &PlanRule) {
        let kind = if rule.action == "deny" {
            EdgeKind::Deny
        } else {
            EdgeKind::Allow
        };
        for from in &rule.from {
            for to in &rule.to {
                let carves_out_of = if kind == EdgeKind::Deny {
                    self.allows_covering(rule, from, to)
                } else {
                    Vec::new()
                };
                self.graph.edges.push(Edge {
                    from: from.clone(),
                    to: to.clone(),
                    kind,
                    rule: Some(rule.name.clone()),
                    services: rule.services.clone(),
                    carves_out_of,
                    change: None,
                    usage: None,
                });
            }
        }
    }

    /// The allow rules that would allow some of what the deny `rule` denies from `from` to `to`.
    fn allows_covering(&self, rule: &PlanRule, from: &str, to: &str) -> Vec<String> {
        self.view
            .rules
            .iter()
            .filter(|a| a.action == "allow")
            .filter(|a| a.from.iter().any(|f| self.covers(f, from)))
            .filter(|a| a.to.iter().any(|t| self.covers(t, to)))
            .filter(|a| services::overlap(&a.services, &rule.services))
            .map(|a| a.name.clone())
            .collect()
    }

    /// Does endpoint `wide` include all of `narrow`? (`any` everything, a zone its devices.)
    fn covers(&self, wide: &str, narrow: &str) -> bool {
        wide == narrow
            || wide == "any"
            || narrow.strip_prefix("device:").is_some_and(|d| {
                self.graph
                    .members
                    .get(d)
                    .is_some_and(|z| wide.strip_prefix("zone:") == Some(z.as_str()))
            })
    }

    /// Every endpoint some rule names, in rule order.
    fn named_endpoints(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.view
            .rules
            .iter()
            .flat_map(|r| r.from.iter().chain(&r.to))
            .map(String::as_str)
    }

    fn push_node(&mut self, id: String, kind: NodeKind, label: Vec<String>) {
        self.graph.nodes.push(Node {
            id,
            kind,
            label,
            change: None,
        });
    }
}

#[cfg(test)]
pub(crate) mod tests;
