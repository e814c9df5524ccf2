//! The parsed form of one file: a compact tree of positioned nodes.

use std::{fmt, sync::Arc};

use crate::policy::diag::Loc;

/// One parsed file: every node in one flat array, in document order (a collection is followed by
/// its whole subtree), and every scalar's text in one string.
///
/// A policy at the 8 MiB cap can hold four million one-character list items; a node per item
/// with its own `String`, `Vec` and `Loc` cost about 100 bytes each (400 MB), where this costs 16
/// plus the text. The file name is kept once, here, and put into a [`Loc`] only when asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Tree {
    file: Arc<str>,
    nodes: Vec<Raw>,
    text: String,
}

/// A node as stored: 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Raw {
    line: u32,
    /// The 1-based column in the low 30 bits, what the node is in the top two ([`Tag`]).
    col_tag: u32,
    /// A scalar: its byte range in [`Tree::text`]. A collection: the index just past its
    /// subtree, and its number of items (of entries, for a mapping).
    a: u32,
    b: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Plain = 0,
    Quoted = 1,
    Seq = 2,
    Map = 3,
}

const COL_BITS: u32 = 30;
const COL_MASK: u32 = (1 << COL_BITS) - 1;

impl Raw {
    fn new(line: usize, col: usize, tag: Tag, a: u32, b: u32) -> Self {
        let col = u32::try_from(col).unwrap_or(COL_MASK).min(COL_MASK);
        Self {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col_tag: col | ((tag as u32) << COL_BITS),
            a,
            b,
        }
    }

    fn tag(self) -> Tag {
        match self.col_tag >> COL_BITS {
            0 => Tag::Plain,
            1 => Tag::Quoted,
            2 => Tag::Seq,
            _ => Tag::Map,
        }
    }

    /// Index just past this node's subtree, given its own index.
    fn end(self, at: u32) -> u32 {
        match self.tag() {
            Tag::Plain | Tag::Quoted => at + 1,
            Tag::Seq | Tag::Map => self.a,
        }
    }
}

impl Tree {
    pub(super) fn new(file: &Arc<str>) -> Self {
        Self {
            file: Arc::clone(file),
            nodes: Vec::new(),
            text: String::new(),
        }
    }

    /// The document's top node (the first one added).
    pub(crate) fn root(&self) -> Node<'_> {
        Node { tree: self, at: 0 }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Where scalars' values are appended before [`Tree::scalar`] adds their node.
    pub(super) fn text_mut(&mut self) -> &mut String {
        &mut self.text
    }

    /// Add a scalar whose value is `text[start..end]`; its index.
    pub(super) fn scalar(
        &mut self,
        line: usize,
        col: usize,
        plain: bool,
        start: usize,
        end: usize,
    ) -> u32 {
        let tag = if plain { Tag::Plain } else { Tag::Quoted };
        self.add(Raw::new(line, col, tag, offset(start), offset(end)))
    }

    /// Add a collection; its items follow until [`Tree::close`]. Its index.
    pub(super) fn open(&mut self, line: usize, col: usize, map: bool) -> u32 {
        let tag = if map { Tag::Map } else { Tag::Seq };
        self.add(Raw::new(line, col, tag, 0, 0))
    }

    /// End the collection at `at`, which has `items` items (entries, for a mapping).
    pub(super) fn close(&mut self, at: u32, items: u32) {
        let end = offset(self.nodes.len());
        if let Some(raw) = self.nodes.get_mut(at as usize) {
            raw.a = end;
            raw.b = items;
        }
    }

    /// Give back the slack of doubling growth: the tree lives while the whole file is typed.
    pub(super) fn trim(&mut self) {
        self.nodes.shrink_to_fit();
        self.text.shrink_to_fit();
    }

    pub(super) fn node(&self, at: u32) -> Node<'_> {
        Node { tree: self, at }
    }

    fn add(&mut self, raw: Raw) -> u32 {
        self.nodes.push(raw);
        offset(self.nodes.len() - 1)
    }
}

/// An index or offset as stored; the reader refuses input too large for 32 bits, so this never
/// saturates.
fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A node of a [`Tree`]: a handle, cheap to copy.
#[derive(Clone, Copy)]
pub(crate) struct Node<'t> {
    tree: &'t Tree,
    at: u32,
}

/// What a node is, borrowed from its tree.
pub(crate) enum Kind<'t> {
    /// `plain` is false for quoted and block scalars: `"null"` is a string, `null` is not.
    Scalar {
        value: &'t str,
        plain: bool,
    },
    Seq(Items<'t>),
    /// Keys are scalars (checked by the reader), in file order, without duplicates.
    Map(Entries<'t>),
}

impl<'t> Node<'t> {
    fn raw(self) -> Raw {
        self.tree.nodes[self.at as usize]
    }

    /// The position of the node's first character.
    pub(crate) fn loc(self) -> Loc {
        let raw = self.raw();
        Loc::new(
            &self.tree.file,
            raw.line as usize,
            (raw.col_tag & COL_MASK) as usize,
        )
    }

    pub(crate) fn kind(self) -> Kind<'t> {
        let raw = self.raw();
        let children = |left| Items {
            tree: self.tree,
            next: self.at + 1,
            end: raw.a,
            left,
        };
        match raw.tag() {
            tag @ (Tag::Plain | Tag::Quoted) => Kind::Scalar {
                value: &self.tree.text[raw.a as usize..raw.b as usize],
                plain: tag == Tag::Plain,
            },
            Tag::Seq => Kind::Seq(children(raw.b)),
            Tag::Map => Kind::Map(Entries(children(raw.b.saturating_mul(2)))),
        }
    }

    /// A plain scalar that YAML reads as null: empty, `~` or `null`.
    pub(crate) fn is_null(self) -> bool {
        matches!(self.kind(), Kind::Scalar { value, plain: true }
            if value.is_empty() || value == "~" || value.eq_ignore_ascii_case("null"))
    }

    pub(crate) fn scalar(self) -> Option<&'t str> {
        match self.kind() {
            Kind::Scalar { value, .. } => Some(value),
            Kind::Seq(_) | Kind::Map(_) => None,
        }
    }

    /// What the node is, for messages ("expected a list, found a mapping").
    pub(crate) fn describe(self) -> &'static str {
        match self.kind() {
            _ if self.is_null() => "null",
            Kind::Scalar { .. } => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.loc(), self.describe())
    }
}

/// The items of a list (or, two by two, the keys and values of a mapping).
#[derive(Clone)]
pub(crate) struct Items<'t> {
    tree: &'t Tree,
    next: u32,
    end: u32,
    /// Nodes not yet returned (two per entry of a mapping).
    left: u32,
}

impl<'t> Iterator for Items<'t> {
    type Item = Node<'t>;

    fn next(&mut self) -> Option<Node<'t>> {
        if self.next >= self.end {
            return None;
        }
        let node = Node {
            tree: self.tree,
            at: self.next,
        };
        self.next = node.raw().end(self.next);
        self.left = self.left.saturating_sub(1);
        Some(node)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for Items<'_> {}

/// The entries of a mapping, in file order.
#[derive(Clone)]
pub(crate) struct Entries<'t>(Items<'t>);

impl<'t> Iterator for Entries<'t> {
    type Item = (Node<'t>, Node<'t>);

    fn next(&mut self) -> Option<Self::Item> {
        Some((self.0.next()?, self.0.next()?))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.0.left as usize / 2;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Entries<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reader's memory bound (`docs/policy.md`, "Cost of loading") rests on this size.
    #[test]
    fn a_stored_node_is_sixteen_bytes() {
        assert_eq!(size_of::<Raw>(), 16);
    }

    #[test]
    fn column_and_kind_share_a_word_without_mixing() {
        for tag in [Tag::Plain, Tag::Quoted, Tag::Seq, Tag::Map] {
            let raw = Raw::new(7, COL_MASK as usize, tag, 0, 0);
            assert_eq!(raw.tag(), tag);
            assert_eq!(raw.col_tag & COL_MASK, COL_MASK);
            // A column past 30 bits is clamped, never spilled into the kind.
            assert_eq!(Raw::new(7, usize::MAX, tag, 0, 0).tag(), tag);
        }
    }
}
