//! The graph as SVG, laid out and drawn by the binary itself with `layout-rs` (a pure-Rust
//! Sugiyama layout, MIT), so a router or a CI runner needs no Graphviz. Graphviz draws the same
//! graph from `--output dot` (`enforcer graph P --output dot | dot -Tsvg`), with its own layout.
//!
//! `layout-rs` sizes the picture by each label's length in characters rather than its lines (a
//! long label made the picture twice as tall as its drawing): [`Framed`] measures what is drawn
//! and the `<svg>` element gets that size.
//!
//! One font size for every label: `layout-rs` keeps a CSS class per font size in a hash map and
//! writes them in its order, which differs between runs; with one size there is one class, and the
//! same policy gives the same bytes.

use layout::{
    backends::svg::SVGWriter,
    core::{
        base::Orientation,
        color::Color,
        format::{ClipHandle, RenderBackend},
        geometry::Point,
        style::StyleAttr,
    },
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
    let mut svg = Framed {
        inner: SVGWriter::new(),
        far: Point::zero(),
    };
    if !g.nodes.is_empty() {
        vg.do_it(false, false, false, &mut svg);
    }
    svg.finalize()
}

/// An [`SVGWriter`] that keeps the far corner of what is drawn, for the picture's size.
struct Framed {
    inner: SVGWriter,
    far: Point,
}

/// Margin around the drawing, in pixels.
const MARGIN: f64 = 5.0;

impl Framed {
    fn reach(&mut self, p: Point) {
        self.far.x = self.far.x.max(p.x);
        self.far.y = self.far.y.max(p.y);
    }

    /// The document, its `<svg>` element sized to the drawing.
    fn finalize(&self) -> String {
        let doc = self.inner.finalize();
        let (w, h) = ((self.far.x + MARGIN).ceil(), (self.far.y + MARGIN).ceil());
        let sized = format!("<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\"");
        match (doc.find("<svg "), doc.find(" xmlns=")) {
            (Some(open), Some(xmlns)) if open < xmlns => {
                format!("{}{sized}{}", &doc[..open], &doc[xmlns..])
            }
            _ => doc,
        }
    }
}

impl RenderBackend for Framed {
    fn draw_rect(
        &mut self,
        xy: Point,
        size: Point,
        look: &StyleAttr,
        properties: Option<String>,
        clip: Option<ClipHandle>,
    ) {
        self.reach(xy.add(size));
        self.inner.draw_rect(xy, size, look, properties, clip);
    }

    fn draw_line(
        &mut self,
        start: Point,
        stop: Point,
        look: &StyleAttr,
        properties: Option<String>,
    ) {
        self.reach(start);
        self.reach(stop);
        self.inner.draw_line(start, stop, look, properties);
    }

    fn draw_circle(
        &mut self,
        xy: Point,
        size: Point,
        look: &StyleAttr,
        properties: Option<String>,
    ) {
        self.reach(xy.add(size));
        self.inner.draw_circle(xy, size, look, properties);
    }

    fn draw_text(&mut self, xy: Point, text: &str, look: &StyleAttr) {
        // Centred on `xy.x`, one line per `em` below `xy.y`; a character is at most ~0.6 em wide.
        let font = look.font_size as f64;
        let widest = text.lines().map(|l| l.chars().count()).max().unwrap_or(0) as f64;
        let lines = text.lines().count() as f64 + 1.0;
        self.reach(Point::new(xy.x + widest * font * 0.3, xy.y + lines * font));
        self.inner.draw_text(xy, text, look);
    }

    fn draw_arrow(
        &mut self,
        path: &[(Point, Point)],
        dashed: bool,
        head: (bool, bool),
        look: &StyleAttr,
        properties: Option<String>,
        text: &str,
    ) {
        for (a, b) in path {
            self.reach(*a);
            self.reach(*b);
        }
        self.inner
            .draw_arrow(path, dashed, head, look, properties, text);
    }

    fn create_clip(&mut self, xy: Point, size: Point, rounded_px: usize) -> ClipHandle {
        self.inner.create_clip(xy, size, rounded_px)
    }
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
