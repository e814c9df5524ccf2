//! The one place that reads YAML: bytes in, a positioned tree ([`Tree`] of [`Node`]s) out.
//!
//! Policy files come from pull requests and are read by a root daemon, so this module accepts only
//! the plain subset of YAML a policy needs and rejects the rest with a position:
//! anchors, aliases (the quadratic and billion-laughs expansions), tags, merge keys (`<<`),
//! directives, several documents, duplicate mapping keys (serde_yaml keeps the last one silently),
//! nesting deeper than [`MAX_DEPTH`], tabs used for indentation, NUL bytes and invalid UTF-8.
//! A UTF-8 byte order mark is stripped.
//!
//! It drives libyaml's event parser (`unsafe-libyaml`, the parser serde_yaml itself wraps) and never
//! expands anything, so the work is linear in the input, and builds a compact tree (16 bytes a
//! node, all scalars in one string), so the memory is too. Typing the tree (what a zone is) lives in
//! `model`; nothing outside this module knows YAML exists, so the parser can be swapped.

mod events;
mod tree;

use std::sync::Arc;

use events::{Event, Parser, Positioned};
pub(crate) use tree::{Kind, Node, Tree};

use super::diag::{Diagnostic, Diags, Loc};

/// Deepest nesting a policy needs is 5 (`quarantine.when.denied_packets.count`); 16 leaves room
/// while keeping recursion over the tree trivially bounded.
pub(crate) const MAX_DEPTH: usize = 16;

/// Parse one file. `None` when it holds no document (empty, or comments only) or when it is
/// invalid; every problem found is pushed to `diags`.
pub(crate) fn parse(file: &Arc<str>, bytes: &[u8], diags: &mut Diags) -> Option<Tree> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if u32::try_from(bytes.len()).is_err() {
        // Nodes and text are indexed with 32 bits; the loader's size caps are far below this.
        diags.push(Diagnostic::error(
            &Loc::whole(file),
            "file larger than 4 GiB",
        ));
        return None;
    }
    let text = check_text(file, bytes, diags)?;
    let mut parser = Parser::new(text.as_bytes());
    let mut builder = Builder {
        file,
        diags,
        tree: Tree::new(file),
        stack: Vec::new(),
        documents: 0,
    };
    loop {
        let event = match parser.next(file, builder.tree.text_mut()) {
            Ok(event) => event,
            Err(diag) => {
                builder.diags.push(diag);
                return None;
            }
        };
        match builder.push(event) {
            Step::More => {}
            Step::Done if builder.tree.is_empty() => return None,
            Step::Done => {
                builder.tree.trim();
                return Some(builder.tree);
            }
            Step::Abort => return None,
        }
    }
}

/// The lexical checks libyaml would report poorly or not at all.
fn check_text<'a>(file: &Arc<str>, bytes: &'a [u8], diags: &mut Diags) -> Option<&'a str> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let at = err.valid_up_to();
            // The valid prefix is valid UTF-8 by definition, so columns can be counted in chars.
            let prefix = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
            diags.push(
                Diagnostic::error(
                    &offset_loc(file, prefix, at),
                    format!("invalid UTF-8 at byte offset {at}"),
                )
                .hint("save the file as UTF-8"),
            );
            return None;
        }
    };
    if let Some(at) = text.find('\0') {
        diags.push(
            Diagnostic::error(
                &offset_loc(file, text, at),
                format!("NUL byte at byte offset {at}"),
            )
            .hint("policy files are text; remove the NUL byte"),
        );
        return None;
    }
    let mut ok = true;
    for (i, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        let rest = &line[indent..];
        if let Some(tab) = line[..indent].find('\t')
            && !rest.is_empty()
        {
            let col = line[..tab].chars().count() + 1;
            diags.push(
                Diagnostic::error(&Loc::new(file, i + 1, col), "tab used for indentation")
                    .hint("YAML indentation must use spaces"),
            );
            ok = false;
        }
    }
    ok.then_some(text)
}

/// Location of a byte offset into `text` (which must contain the offset's whole line prefix).
fn offset_loc(file: &Arc<str>, text: &str, at: usize) -> Loc {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    Loc::new(file, line, before[line_start..].chars().count() + 1)
}

enum Step {
    More,
    Done,
    Abort,
}

/// A collection being read: its node, and how many of its items (for a mapping, keys and values
/// each) were read so far.
struct Open {
    at: u32,
    read: u32,
    map: bool,
}

struct Builder<'a> {
    file: &'a Arc<str>,
    diags: &'a mut Diags,
    tree: Tree,
    stack: Vec<Open>,
    documents: usize,
}

impl Builder<'_> {
    fn push(&mut self, p: Positioned) -> Step {
        let (line, col) = (p.line, p.col);
        match p.event {
            Event::StreamStart | Event::DocumentEnd => Step::More,
            Event::StreamEnd => Step::Done,
            Event::DocumentStart { directives } => {
                self.documents += 1;
                if self.documents > 1 {
                    self.error(
                        line,
                        col,
                        "more than one YAML document in a file",
                        "remove the `---`; use one file per document",
                    );
                    return Step::Abort;
                }
                if directives {
                    self.error(
                        line,
                        col,
                        "YAML directives (%YAML, %TAG) are not supported",
                        "remove the directive line",
                    );
                }
                Step::More
            }
            Event::Alias => {
                self.error(
                    line,
                    col,
                    "YAML aliases (*name) are not supported",
                    "write the value out in full",
                );
                // An empty plain scalar (null) stands in for it.
                let at = self.tree.text_mut().len();
                let node = self.tree.scalar(line, col, true, at, at);
                self.add(node)
            }
            Event::Scalar {
                start,
                end,
                plain,
                anchor,
                tag,
            } => {
                self.features(line, col, anchor, tag);
                let node = self.tree.scalar(line, col, plain, start, end);
                self.add(node)
            }
            Event::SeqStart { anchor, tag } => self.open(line, col, anchor, tag, false),
            Event::MapStart { anchor, tag } => self.open(line, col, anchor, tag, true),
            Event::SeqEnd | Event::MapEnd => match self.stack.pop() {
                Some(open) => {
                    let items = if open.map { open.read / 2 } else { open.read };
                    self.tree.close(open.at, items);
                    if open.map {
                        self.duplicate_keys(open.at);
                    }
                    self.add(open.at)
                }
                None => Step::Abort,
            },
        }
    }

    fn open(&mut self, line: usize, col: usize, anchor: bool, tag: bool, map: bool) -> Step {
        self.features(line, col, anchor, tag);
        if self.stack.len() >= MAX_DEPTH {
            self.error(
                line,
                col,
                &format!("nesting deeper than {MAX_DEPTH} levels"),
                "a policy never nests this deep; flatten it",
            );
            return Step::Abort;
        }
        let at = self.tree.open(line, col, map);
        self.stack.push(Open { at, read: 0, map });
        Step::More
    }

    fn features(&mut self, line: usize, col: usize, anchor: bool, tag: bool) {
        if anchor {
            self.error(
                line,
                col,
                "YAML anchors (&name) are not supported",
                "write the value out in full",
            );
        }
        if tag {
            self.error(
                line,
                col,
                "YAML tags (!tag) are not supported",
                "remove the tag; values are typed by their key",
            );
        }
    }

    /// Count a finished node (the one at `at`) into its parent; check it when it is a key.
    fn add(&mut self, at: u32) -> Step {
        let Some(parent) = self.stack.last_mut() else {
            return Step::More;
        };
        let is_key = parent.map && parent.read % 2 == 0;
        parent.read += 1;
        if is_key {
            let node = self.tree.node(at);
            let diag = match node.kind() {
                Kind::Scalar { value, plain } => (plain && value == "<<").then_some((
                    "merge keys (<<) are not supported",
                    "write the keys out in full",
                )),
                Kind::Seq(_) | Kind::Map(_) => Some((
                    "mapping keys must be plain strings",
                    "use a name as the key",
                )),
            };
            // The entry is kept even when rejected: the value still gets checked, so one run
            // reports every problem.
            if let Some((message, hint)) = diag {
                self.diags
                    .push(Diagnostic::error(&node.loc(), message).hint(hint));
            }
        }
        Step::More
    }

    /// Report every key of the closed mapping at `at` that an earlier key already used, citing
    /// the first. Found by sorting, so an open mapping of 60,000 devices keeps no second copy of
    /// its keys while it is read.
    fn duplicate_keys(&mut self, at: u32) {
        let Kind::Map(entries) = self.tree.node(at).kind() else {
            return;
        };
        let entries: Vec<Node<'_>> = entries.map(|(k, _)| k).collect();
        let mut keys: Vec<(&str, usize)> = entries
            .iter()
            .enumerate()
            .filter_map(|(i, k)| Some((k.scalar()?, i)))
            .collect();
        // By key, then by position: the first of each run is the first definition.
        keys.sort_unstable();
        let mut first = None;
        for (n, &(key, at)) in keys.iter().enumerate() {
            let run_start = match (n.checked_sub(1).map(|p| keys[p].0), first) {
                (Some(prev), Some(start)) if prev == key => start,
                _ => {
                    first = Some(at);
                    continue;
                }
            };
            let first_loc = entries[run_start].loc();
            self.diags.push(
                Diagnostic::error(
                    &entries[at].loc(),
                    format!("duplicate key `{key}` (first defined at {first_loc})"),
                )
                .hint("remove one of them; YAML parsers silently keep only the last"),
            );
        }
    }

    fn error(&mut self, line: usize, col: usize, message: &str, hint: &str) {
        let loc = Loc::new(self.file, line, col);
        self.diags.push(Diagnostic::error(&loc, message).hint(hint));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> (Option<Tree>, Vec<String>) {
        let file: Arc<str> = Arc::from("t.yaml");
        let mut diags = Diags::default();
        let tree = parse(&file, text.as_bytes(), &mut diags);
        (tree, diags.list.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn plain_mapping_parses_with_positions() {
        let (tree, diags) = run("a: 1\nb:\n  - x\n");
        assert!(diags.is_empty(), "{diags:?}");
        let Some(Kind::Map(entries)) = tree.as_ref().map(|t| t.root().kind()) else {
            panic!("not a map")
        };
        let entries: Vec<_> = entries.collect();
        assert_eq!(entries[1].1.loc().line, 3);
        assert_eq!(entries[1].1.loc().col, 3);
    }

    #[test]
    fn empty_and_comment_only_files_have_no_document() {
        assert_eq!(run("").0, None);
        assert_eq!(run("# nothing\n\n").0, None);
    }

    #[test]
    fn bom_is_stripped() {
        let (node, diags) = run("\u{feff}a: b\n");
        assert!(diags.is_empty(), "{diags:?}");
        assert!(node.is_some());
    }

    #[test]
    fn rejected_features_are_located() {
        let table: &[(&str, &str)] = &[
            ("a: &x 1\nb: *x\n", "t.yaml:1:4: error: YAML anchors"),
            ("a: &x 1\nb: *x\n", "t.yaml:2:4: error: YAML aliases"),
            ("a: !foo 1\n", "t.yaml:1:4: error: YAML tags"),
            ("a: !!binary aGk=\n", "t.yaml:1:4: error: YAML tags"),
            (
                "a: 1\na: 2\n",
                "t.yaml:2:1: error: duplicate key `a` (first defined at t.yaml:1:1)",
            ),
            ("<<: {a: 1}\n", "t.yaml:1:1: error: merge keys"),
            (
                "a: 1\n---\nb: 2\n",
                "t.yaml:2:1: error: more than one YAML document",
            ),
            ("a:\n\t- 1\n", "t.yaml:2:1: error: tab used for indentation"),
            ("a: b\0\n", "t.yaml:1:5: error: NUL byte"),
            ("a: [1\n", "t.yaml:2:1: error: invalid YAML"),
            (
                "%YAML 1.1\n---\na: 1\n",
                "t.yaml:1:1: error: YAML directives",
            ),
            (
                "? [a]\n: 1\n",
                "t.yaml:1:3: error: mapping keys must be plain strings",
            ),
        ];
        for (text, want) in table {
            let (_, diags) = run(text);
            assert!(
                diags.iter().any(|d| d.starts_with(want)),
                "{text:?}: want {want:?}, got {diags:?}"
            );
        }
    }

    #[test]
    fn invalid_utf8_is_located() {
        let file: Arc<str> = Arc::from("t.yaml");
        let mut diags = Diags::default();
        assert!(parse(&file, b"a: 1\nb: \xff\n", &mut diags).is_none());
        assert_eq!(
            diags.list[0].to_string().lines().next(),
            Some("t.yaml:2:4: error: invalid UTF-8 at byte offset 8")
        );
    }

    /// Children are found by skipping whole subtrees of the flat array: nested collections
    /// must not leak their items into their parent's.
    #[test]
    fn nested_items_and_entries_are_walked_in_file_order() {
        let (tree, diags) = run("a: [1, [2, 3], {k: v, l: [w]}, 4]\nb: x\n");
        assert!(diags.is_empty(), "{diags:?}");
        let tree = tree.unwrap_or_else(|| panic!("no document"));
        let Kind::Map(top) = tree.root().kind() else {
            panic!("not a map")
        };
        assert_eq!(top.len(), 2);
        let top: Vec<_> = top.map(|(k, v)| (k.scalar(), v)).collect();
        assert_eq!(top[1].0, Some("b"));
        assert_eq!(top[1].1.scalar(), Some("x"));
        let Kind::Seq(items) = top[0].1.kind() else {
            panic!("not a list")
        };
        assert_eq!(items.len(), 4);
        let shapes: Vec<_> = items.map(|n| n.scalar().unwrap_or(n.describe())).collect();
        assert_eq!(shapes, ["1", "a list", "a mapping", "4"]);
    }

    #[test]
    fn scalars_keep_their_decoded_text_and_style() {
        let (tree, diags) = run("a: \"x\\ty\"\nb: 'null'\nc: null\nd: ~\n");
        assert!(diags.is_empty(), "{diags:?}");
        let tree = tree.unwrap_or_else(|| panic!("no document"));
        let Kind::Map(entries) = tree.root().kind() else {
            panic!("not a map")
        };
        let values: Vec<_> = entries.map(|(_, v)| (v.scalar(), v.is_null())).collect();
        assert_eq!(
            values,
            [
                (Some("x\ty"), false),
                (Some("null"), false),
                (Some("null"), true),
                (Some("~"), true)
            ]
        );
    }

    #[test]
    fn duplicate_keys_are_found_in_nested_mappings() {
        let (_, diags) = run("a:\n  b: 1\n  c: {d: 1, d: 2}\n  b: 3\n");
        assert_eq!(
            diags,
            [
                "t.yaml:3:13: error: duplicate key `d` (first defined at t.yaml:3:7)",
                "t.yaml:4:3: error: duplicate key `b` (first defined at t.yaml:2:3)",
            ]
        );
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let text = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let (node, diags) = run(&text);
        assert!(node.is_none());
        assert!(diags[0].contains("nesting deeper than 16"), "{diags:?}");
    }
}
