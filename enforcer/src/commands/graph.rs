//! `enforcer graph PATH...`: the compiled policy as a picture (see [`crate::graph`]): dot for
//! tools, or SVG laid out by the binary itself. The same policy gives the same bytes, so the
//! picture can be committed beside the policy and reviewed as a diff.
//!
//! It compiles without host context, as `check` does: the graph is drawn by name, and the
//! router's addresses change no node or edge.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::{
    cli::{GraphArgs, GraphOutput},
    exit,
    graph::{self, Graph, Observations, ObservedFlow, ObservedVerdict},
    observe::{Filter, Observation, Peer, STORE_FILE, Seen, Store},
    policy::{self, CompileOptions, PlanView},
};

/// Why no graph was drawn.
#[derive(Debug)]
pub enum NoGraph {
    /// The policy does not load or compile: its diagnostics, rendered.
    Invalid(Vec<String>),
    /// The policy has no such zone.
    Zone(graph::GraphError),
}

/// The graph of the policy at `paths` (merged), or only what touches `zone`.
///
/// # Errors
/// When the policy does not load or compile, or has no zone `zone`.
pub fn graph_of(paths: &[PathBuf], zone: Option<&str>) -> Result<Graph, NoGraph> {
    let compiled = policy::load_all(paths)
        .and_then(|p| policy::compile(&p, &CompileOptions::default()))
        .map_err(|err| NoGraph::Invalid(policy::render_all(&err.diagnostics())))?;
    let view = PlanView::from(&compiled);
    match zone {
        Some(z) => Graph::of_zone(&view, z).map_err(NoGraph::Zone),
        None => Ok(Graph::of(&view)),
    }
}

/// Renders `g` as `output` asks.
#[must_use]
pub fn render(g: &Graph, output: GraphOutput) -> String {
    match output {
        GraphOutput::Dot => graph::dot::render(g),
        GraphOutput::Svg => graph::svg::render(g),
    }
}

/// Run `graph`; returns the exit code (1 when the policy is invalid, 2 for an unknown zone).
///
/// # Errors
/// None: every failure is an exit code; the signature is the other commands'.
#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "CLI output: the picture on stdout, diagnostics on stderr"
)]
pub fn run(args: &GraphArgs) -> Result<u8> {
    match graph_of(&args.paths, args.zone.as_deref()) {
        Ok(g) => {
            let g = if args.observed {
                match observed(&args.state_dir, args.since) {
                    Ok(obs) => g.with_observations(&obs),
                    Err(e) => return Ok(crate::commands::fail(exit::ENVIRONMENT, &e)),
                }
            } else {
                g
            };
            print!("{}", render(&g, args.output));
            Ok(exit::OK)
        }
        Err(NoGraph::Invalid(lines)) => {
            for l in &lines {
                eprintln!("{l}");
            }
            Ok(exit::INVALID)
        }
        Err(NoGraph::Zone(e)) => Ok(crate::commands::fail(exit::USAGE, &e.to_string())),
    }
}

/// What the daemon observed in the last `since_s` seconds (its store in `state_dir`), as the
/// graph draws it.
///
/// # Errors
/// No store in `state_dir`, or one that cannot be read: the message says which.
pub fn observed(state_dir: &Path, since_s: u64) -> Result<Observations, String> {
    let path = state_dir.join(STORE_FILE);
    if !path.exists() {
        return Err(format!(
            "no observations at {}: the daemon records them while it runs (is --state-dir the daemon's?)",
            path.display()
        ));
    }
    let rows = Store::open(&path)
        .and_then(|s| {
            s.observations(&Filter {
                since: Some(crate::time::unix_now().saturating_sub(since_s)),
                ..Filter::default()
            })
        })
        .map_err(|e| e.to_string())?;
    Ok(Observations {
        flows: rows.iter().map(observed_flow).collect(),
    })
}

/// One stored observation as the graph's overlay takes it: the source by device name (`router`,
/// a network's or an address's node, or `unknown` for an unlisted device), the peer as a node id.
fn observed_flow(o: &Observation) -> ObservedFlow {
    ObservedFlow {
        from_device: match &o.source {
            Peer::Device(name) => name.clone(),
            Peer::Router => "router".to_owned(),
            Peer::Network(_) | Peer::Name(_) => o.source.to_string(),
            // The datapath resolves an unlisted source to no device: the unknown zone's traffic.
            Peer::Address(_) => "unknown".to_owned(),
        },
        to: o.peer.to_string(),
        service: o.service.to_string(),
        rule: o.rule.clone(),
        verdict: match o.seen {
            Seen::Allow => ObservedVerdict::Allowed,
            Seen::Audit => ObservedVerdict::WouldDeny,
        },
        flows: o.flows,
    }
}
