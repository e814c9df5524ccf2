//! The graph as SVG, laid out and drawn by the binary itself with `layout-rs` (a pure-Rust
//! Sugiyama layout, MIT), so a router or a CI runner needs no Graphviz. Graphviz draws the same
//! graph from `--output dot` (`enforcer graph P --output dot | dot -Tsvg`), with its own layout.
//!
//! One font size for every label: `layout-rs` keeps a CSS class per font size in a hash map and
//! writes them in its order, which differs between runs; with one size there is one class, and the
//! same policy gives the same bytes.

use layout::{
    backends::svg::SVGWriter,
    core::{base::Orientation, color::Color, style::StyleAttr},
    std_shapes::{
        render::get_shape_size,
        shapes::{Arrow, Element, LineEndKind, ShapeKind},
    },
    topo::layout::VisualGraph,
};

use super::{
    Graph,
    look::{self, Line},
};

const FONT_SIZE: usize = 13;

fn color(hex: &str) -> Color {
    let rgb = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap_or(0);
    // layout-rs colours are RGBA.
    Color::new((rgb << 8) | 0xff)
}

/// The SVG document of `g` (an XML declaration, then one `<svg>` element).
#[must_use]
pub fn render(g: &Graph) -> String {
    let orientation = Orientation::LeftToRight;
    let mut vg = VisualGraph::new(orientation);
    let mut handles = Vec::with_capacity(g.nodes.len());
    for n in &g.nodes {
        let l = look::node(n);
        let shape = ShapeKind::new_box(&look::node_label(n).join("\n"));
        let style = StyleAttr::new(color(l.border), l.width, Some(color(l.fill)), 6, FONT_SIZE);
        let size = get_shape_size(orientation, &shape, FONT_SIZE, false);
        handles.push((
            n.id.as_str(),
            vg.add_node(Element::create(shape, style, orientation, size)),
        ));
    }
    let handle = |id: &str| handles.iter().find(|(n, _)| *n == id).map(|(_, h)| *h);
    for e in &g.edges {
        let (Some(from), Some(to)) = (handle(&e.from), handle(&e.to)) else {
            continue;
        };
        let l = look::edge(e);
        let line = match l.line {
            Line::Solid => layout::core::style::LineStyleKind::Normal,
            Line::Dashed => layout::core::style::LineStyleKind::Dashed,
            Line::Dotted => layout::core::style::LineStyleKind::Dotted,
        };
        let style = StyleAttr::new(color(l.color), l.width, None, 0, FONT_SIZE);
        let end = if l.arrow {
            LineEndKind::Arrow
        } else {
            LineEndKind::None
        };
        let arrow = Arrow::new(
            LineEndKind::None,
            end,
            line,
            &look::edge_label(e).join("\n"),
            &style,
            &None,
            &None,
        );
        vg.add_edge(arrow, from, to);
    }
    let mut svg = SVGWriter::new();
    if !g.nodes.is_empty() {
        vg.do_it(false, false, false, &mut svg);
    }
    svg.finalize()
}

/// The `<svg>` element alone, for inlining into a page (no XML declaration).
#[must_use]
pub fn inline(g: &Graph) -> String {
    let doc = render(g);
    match doc.find("<svg") {
        Some(at) => doc[at..].to_owned(),
        None => doc,
    }
}
