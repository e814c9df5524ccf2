//! The graph of the demo policy, a plan's marks and the observed-traffic overlay, from hand-made
//! observations.

use std::path::Path;

use super::*;
use crate::policy::{self, CompileOptions};

pub(crate) fn demo_view() -> PlanView {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let compiled = policy::compile_path(&dir, &CompileOptions::default())
        .unwrap_or_else(|e| panic!("policies/ compiles: {e:?}"));
    PlanView::from(&compiled)
}

fn edge<'a>(g: &'a Graph, rule: &str) -> &'a Edge {
    g.edges
        .iter()
        .find(|e| e.rule.as_deref() == Some(rule))
        .unwrap_or_else(|| panic!("no edge of {rule}"))
}

#[test]
fn zones_count_their_devices_and_quarantine_and_tripwires_are_marked() {
    let g = Graph::of(&demo_view());
    let cameras = g
        .node("zone:cameras")
        .unwrap_or_else(|| panic!("no cameras"));
    assert!(matches!(cameras.kind, NodeKind::Zone { devices: 2, .. }));
    let q = g
        .node("zone:quarantine")
        .unwrap_or_else(|| panic!("no quarantine"));
    assert!(matches!(
        q.kind,
        NodeKind::Zone {
            quarantine: true,
            unknown: true,
            ..
        }
    ));
    let honeypot = g
        .node("network:honeypot")
        .unwrap_or_else(|| panic!("no honeypot"));
    assert_eq!(honeypot.kind, NodeKind::Network { tripwire: true });
    let defaults = g.node(DEFAULTS_ID).unwrap_or_else(|| panic!("no defaults"));
    assert!(
        defaults
            .label
            .iter()
            .any(|l| l == "no rule: deny (enforce)")
    );
}

#[test]
fn a_deny_inside_a_wider_allow_says_what_it_carves_out_of() {
    let g = Graph::of(&demo_view());
    let fishtank = edge(&g, "fishtank-no-egress");
    assert_eq!(fishtank.kind, EdgeKind::Deny);
    assert_eq!(fishtank.carves_out_of, vec!["building-cloud".to_owned()]);
    // No allow reaches the office from the cameras: that deny guards empty ground.
    assert!(edge(&g, "no-lateral-cameras").carves_out_of.is_empty());
    // The device named on its own is drawn, tied to its zone.
    assert!(g.edges.iter().any(|e| e.kind == EdgeKind::Member
        && e.from == "device:fishtank"
        && e.to == "zone:building"));
}

#[test]
fn a_zone_graph_keeps_only_what_touches_the_zone() {
    let g = Graph::of_zone(&demo_view(), "cameras").unwrap_or_else(|e| panic!("{e}"));
    let rules: Vec<&str> = g.edges.iter().filter_map(|e| e.rule.as_deref()).collect();
    assert_eq!(
        rules,
        [
            "cams-stream",
            "cams-updates",
            "no-lateral-cameras",
            "nvr-pull"
        ]
    );
    assert!(g.node("zone:guests").is_none());
    // The camera's update server by name is a node of its own.
    assert!(matches!(
        g.node("dns:updates.axis.example").map(|n| &n.kind),
        Some(NodeKind::Name)
    ));
    assert!(g.node("zone:office").is_some());
    assert!(matches!(
        Graph::of_zone(&demo_view(), "nowhere"),
        Err(GraphError::NoSuchZone { .. })
    ));
}

#[test]
fn a_plan_marks_added_removed_and_changed_edges_and_nodes() {
    let old = demo_view();
    let mut new = old.clone();
    new.rules.retain(|r| r.name != "guests-internet");
    if let Some(r) = new.rules.iter_mut().find(|r| r.name == "office-admin") {
        r.services.push("tcp/443".to_owned());
    }
    let mut extra = new.rules[0].clone();
    extra.name = "cams-to-office".to_owned();
    extra.to = vec!["zone:office".to_owned()];
    new.rules.push(extra);
    new.networks.retain(|n| n.name != "honeypot");
    let g = mark_changes(&Graph::of(&old), &Graph::of(&new));
    assert_eq!(edge(&g, "cams-to-office").change, Some(Change::Added));
    assert_eq!(edge(&g, "guests-internet").change, Some(Change::Removed));
    assert_eq!(edge(&g, "office-admin").change, Some(Change::Changed));
    assert_eq!(edge(&g, "cams-stream").change, None);
    let honeypot = g.node("network:honeypot").unwrap_or_else(|| panic!("kept"));
    assert_eq!(honeypot.change, Some(Change::Removed));
    let dot = dot::render(&g);
    assert!(dot.contains("rule=\"cams-to-office\""), "{dot}");
    assert!(dot.contains("change=\"added\""), "{dot}");
    assert!(dot.contains("change=\"removed\""), "{dot}");
}

fn flow(from: &str, to: &str, rule: &str, verdict: ObservedVerdict, flows: u64) -> ObservedFlow {
    ObservedFlow {
        from_device: from.to_owned(),
        to: to.to_owned(),
        service: "tcp/443".to_owned(),
        rule: rule.to_owned(),
        verdict,
        flows,
    }
}

#[test]
fn observations_mark_edges_used_never_used_and_draw_would_deny_traffic() {
    let obs = Observations {
        flows: vec![
            flow(
                "cam-1",
                "zone:recorders",
                "cams-stream",
                ObservedVerdict::Allowed,
                7,
            ),
            flow(
                "cam-2",
                "zone:recorders",
                "cams-stream",
                ObservedVerdict::Allowed,
                3,
            ),
            flow(
                "hvac-1",
                "network:internet",
                "default",
                ObservedVerdict::WouldDeny,
                2,
            ),
            flow(
                "stranger",
                "router",
                "default",
                ObservedVerdict::WouldDeny,
                1,
            ),
        ],
    };
    let g = Graph::of(&demo_view()).with_observations(&obs);
    assert_eq!(edge(&g, "cams-stream").usage, Some(Usage::Used(10)));
    assert_eq!(edge(&g, "guests-internet").usage, Some(Usage::NeverUsed));
    // Denies are no candidates to remove: they carry no usage.
    assert_eq!(edge(&g, "fishtank-no-egress").usage, None);
    let would: Vec<(&str, &str, Option<Usage>)> = g
        .edges
        .iter()
        .filter(|e| e.kind == EdgeKind::WouldDeny)
        .map(|e| (e.from.as_str(), e.to.as_str(), e.usage))
        .collect();
    assert_eq!(
        would,
        [
            (
                "zone:building",
                "network:internet",
                Some(Usage::WouldDeny(2))
            ),
            ("zone:quarantine", "router", Some(Usage::WouldDeny(1))),
        ]
    );
    let dot = dot::render(&g);
    assert!(dot.contains("usage=\"used\""), "{dot}");
    assert!(dot.contains("never used"), "{dot}");
    assert!(dot.contains("class=\"would-deny\""), "{dot}");
    let svg = svg::render(&g);
    assert!(svg.contains("10 flows"), "the overlay is drawn: {svg}");
    assert!(svg.contains("would deny (audit)"), "{svg}");
}

#[test]
fn an_observed_destination_no_rule_names_gets_a_node() {
    let obs = Observations {
        flows: vec![flow(
            "cam-1",
            "dns:updates.example",
            "default",
            ObservedVerdict::WouldDeny,
            4,
        )],
    };
    let g = Graph::of(&demo_view()).with_observations(&obs);
    let name = g
        .node("dns:updates.example")
        .unwrap_or_else(|| panic!("no name node"));
    assert_eq!(name.kind, NodeKind::Name);
}

#[test]
fn dot_quotes_names_and_svg_escapes_them() {
    let mut view = demo_view();
    view.zones[0].name = "a\"b<script>".to_owned();
    let g = Graph::of(&view);
    let dot = dot::render(&g);
    assert!(dot.contains("\"zone:a\\\"b<script>\""), "{dot}");
    let svg = svg::render(&g);
    assert!(!svg.contains("<script>"), "{svg}");
    assert!(svg.contains("&lt;script&gt;"), "{svg}");
}

#[test]
fn the_svg_draws_every_node_and_is_the_same_twice() {
    let g = Graph::of(&demo_view());
    let a = svg::render(&g);
    assert_eq!(a, svg::render(&g));
    for n in &g.nodes {
        assert!(a.contains(&n.label[0]), "{} not drawn", n.id);
    }
    assert!(svg::inline(&g).starts_with("<svg"));
}

#[test]
fn would_deny_traffic_to_a_device_is_drawn_at_its_zone_and_from_a_network_at_the_network() {
    let obs = Observations {
        flows: vec![
            flow(
                "cam-1",
                "device:nvr-1",
                "default",
                ObservedVerdict::WouldDeny,
                2,
            ),
            flow(
                "network:internet",
                "device:cam-1",
                "default",
                ObservedVerdict::WouldDeny,
                1,
            ),
        ],
    };
    let g = Graph::of(&demo_view()).with_observations(&obs);
    let mut would: Vec<(&str, &str)> = g
        .edges
        .iter()
        .filter(|e| e.kind == EdgeKind::WouldDeny)
        .map(|e| (e.from.as_str(), e.to.as_str()))
        .collect();
    would.sort_unstable();
    assert_eq!(
        would,
        [
            ("network:internet", "zone:cameras"),
            ("zone:cameras", "zone:recorders"),
        ]
    );
}
