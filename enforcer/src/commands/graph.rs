//! `enforcer graph PATH...`: the compiled policy as a picture (see [`crate::graph`]): dot for
//! tools, or SVG laid out by the binary itself. The same policy gives the same bytes, so the
//! picture can be committed beside the policy and reviewed as a diff.
//!
//! It compiles without host context, as `check` does: the graph is drawn by name, and the
//! router's addresses change no node or edge.

use std::path::PathBuf;

use anyhow::Result;

use crate::{
    cli::{GraphArgs, GraphOutput},
    exit,
    graph::{self, Graph},
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
