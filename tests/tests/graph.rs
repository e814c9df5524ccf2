//! `enforcer graph` on the demo policy (`policies/`), through the binary as an operator runs it:
//! the dot output has a node per zone and network and an edge per allow rule, the same policy
//! gives the same bytes run after run, and the picture committed in `docs/` is the current one.
//! No kernel needed.
//!
//! Run with `cargo test -p enforcer-tests --test graph` (after `cargo xtask build`, or with
//! `ENFORCER_BIN`).

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly, with what it expected as the message"
)]

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use anyhow as _;
use aya as _;
use enforcer::policy::{CompileOptions, compile_path};
use enforcer_common as _;
use enforcer_tests::netns::enforcer_bin;
use ipnet as _;
use libc as _;
use serde_json as _;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `enforcer graph ARGS...`'s stdout; the command must succeed.
fn graph(args: &[&str]) -> String {
    let bin = enforcer_bin();
    assert!(
        bin.is_file(),
        "{} does not exist: run `cargo xtask build` or set ENFORCER_BIN",
        bin.display()
    );
    let out = Command::new(&bin)
        .arg("graph")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run enforcer graph");
    assert!(
        out.status.success(),
        "enforcer graph {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The value of `key="..."` in a dot attribute list (no escaped quotes in the values read here).
fn attr<'a>(attrs: &'a str, key: &str) -> Option<&'a str> {
    let at = attrs.find(&format!("{key}=\""))? + key.len() + 2;
    let rest = &attrs[at..];
    Some(&rest[..rest.find('"')?])
}

/// Nodes as (id, class) and edges as (from, to, class, rule), read back from dot text.
#[derive(Debug, Default)]
struct Dot {
    nodes: BTreeSet<(String, String)>,
    edges: Vec<(String, String, String, String)>,
}

fn parse(dot: &str) -> Dot {
    let mut d = Dot::default();
    for line in dot.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix('"') else {
            continue;
        };
        let (id, rest) = rest.split_once('"').expect("closing quote");
        let attrs = rest.get(rest.find('[').unwrap_or(0)..).unwrap_or_default();
        let class = attr(attrs, "class").unwrap_or_default().to_owned();
        if let Some(to) = rest.trim_start().strip_prefix("-> \"") {
            let (to, _) = to.split_once('"').expect("closing quote");
            let rule = attr(attrs, "rule").unwrap_or_default().to_owned();
            d.edges.push((id.to_owned(), to.to_owned(), class, rule));
        } else {
            d.nodes.insert((id.to_owned(), class));
        }
    }
    d
}

#[test]
fn the_demo_policy_has_a_node_per_zone_and_network_and_an_edge_per_allow_rule() {
    let compiled = compile_path(&repo().join("policies"), &CompileOptions::default())
        .expect("policies/ compiles");
    let d = parse(&graph(&["policies/", "--output", "dot"]));
    for z in &compiled.zones {
        assert!(
            d.nodes
                .contains(&(format!("zone:{}", z.name), "zone".to_owned())),
            "no node for zone {}: {:?}",
            z.name,
            d.nodes
        );
    }
    for n in &compiled.networks {
        assert!(
            d.nodes
                .contains(&(format!("network:{}", n.name), "network".to_owned())),
            "no node for network {}",
            n.name
        );
    }
    let allow_rules: Vec<&str> = compiled
        .rules
        .iter()
        .filter(|r| r.action == "allow")
        .map(|r| r.name.as_str())
        .collect();
    assert!(!allow_rules.is_empty());
    for rule in &allow_rules {
        let edges: Vec<_> = d
            .edges
            .iter()
            .filter(|e| e.3 == *rule && e.2 == "allow")
            .collect();
        assert_eq!(edges.len(), 1, "edges of allow rule {rule}: {edges:?}");
    }
    let allow_edges = d.edges.iter().filter(|e| e.2 == "allow").count();
    assert_eq!(allow_edges, allow_rules.len(), "{:?}", d.edges);
    // Each edge joins two drawn nodes, and the denies are drawn as denies.
    let ids: BTreeSet<&str> = d.nodes.iter().map(|(id, _)| id.as_str()).collect();
    for (from, to, ..) in &d.edges {
        assert!(
            ids.contains(from.as_str()) && ids.contains(to.as_str()),
            "{from} -> {to}"
        );
    }
    let denies: Vec<&str> = d
        .edges
        .iter()
        .filter(|e| e.2 == "deny")
        .map(|e| e.3.as_str())
        .collect();
    assert_eq!(denies, ["fishtank-no-egress", "no-lateral-cameras"]);
    assert!(
        d.nodes
            .contains(&("router".to_owned(), "router".to_owned()))
    );
    assert!(
        d.nodes
            .contains(&("device:fishtank".to_owned(), "device".to_owned()))
    );
}

#[test]
fn the_same_policy_gives_the_same_bytes_in_dot_and_svg() {
    for output in ["dot", "svg"] {
        let first = graph(&["policies/", "--output", output]);
        for _ in 0..2 {
            assert!(
                graph(&["policies/", "--output", output]) == first,
                "--output {output} differs between runs"
            );
        }
    }
}

#[test]
fn a_zone_graph_draws_only_what_touches_the_zone() {
    let d = parse(&graph(&[
        "policies/",
        "--output",
        "dot",
        "--zone",
        "cameras",
    ]));
    let rules: BTreeSet<&str> = d.edges.iter().map(|e| e.3.as_str()).collect();
    assert_eq!(
        rules,
        BTreeSet::from([
            "cams-stream",
            "cams-updates",
            "nvr-pull",
            "no-lateral-cameras"
        ])
    );
    assert!(!d.nodes.iter().any(|(id, _)| id == "zone:guests"));
}

#[test]
fn the_committed_picture_of_the_demo_site_is_current() {
    let path = repo().join("docs/graph.svg");
    let now = graph(&["policies/", "--output", "svg"]);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == now,
        "{} is stale: regenerate it with `target/release/enforcer graph policies/ --output svg > docs/graph.svg`",
        path.display()
    );
}
