//! The one place that reads YAML: bytes in, a positioned tree ([`Node`]) out.
//!
//! Policy files come from pull requests and are read by a root daemon, so this module accepts only
//! the plain subset of YAML a policy needs and rejects the rest with a position:
//! anchors, aliases (the quadratic and billion-laughs expansions), tags, merge keys (`<<`),
//! directives, several documents, duplicate mapping keys (serde_yaml keeps the last one silently),
//! nesting deeper than [`MAX_DEPTH`], tabs used for indentation, NUL bytes and invalid UTF-8.
//! A UTF-8 byte order mark is stripped.
//!
//! It drives libyaml's event parser (`unsafe-libyaml`, the parser serde_yaml itself wraps) and never
//! expands anything, so the work is linear in the input. Typing the tree (what a zone is) lives in
//! `model`; nothing outside this module knows YAML exists, so the parser can be swapped.

use std::{mem::MaybeUninit, sync::Arc};

#[expect(
    clippy::unsafe_removed_from_name,
    reason = "`sys` names the C-style API the way -sys crates do; every use is in an unsafe block"
)]
use unsafe_libyaml as sys;

use super::diag::{Diagnostic, Diags, Loc};

/// Deepest nesting a policy needs is 5 (`quarantine.when.denied_packets.count`); 16 leaves room
/// while keeping recursion over the tree trivially bounded.
pub(crate) const MAX_DEPTH: usize = 16;

/// One YAML node with the position of its first character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub loc: Loc,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `plain` is false for quoted and block scalars: `"null"` is a string, `null` is not.
    Scalar {
        value: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Keys are scalars (checked here), in file order, without duplicates.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A plain scalar that YAML reads as null: empty, `~` or `null`.
    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { value, plain: true }
            if value.is_empty() || value == "~" || value.eq_ignore_ascii_case("null"))
    }

    pub(crate) fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { value, .. } => Some(value),
            Kind::Seq(_) | Kind::Map(_) => None,
        }
    }

    /// What the node is, for messages ("expected a list, found a mapping").
    pub(crate) fn describe(&self) -> &'static str {
        match &self.kind {
            _ if self.is_null() => "null",
            Kind::Scalar { .. } => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

/// Parse one file. `None` when it holds no document (empty, or comments only) or when it is
/// invalid; every problem found is pushed to `diags`.
pub(crate) fn parse(file: &Arc<str>, bytes: &[u8], diags: &mut Diags) -> Option<Node> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = check_text(file, bytes, diags)?;
    let mut parser = Parser::new(text.as_bytes());
    let mut builder = Builder {
        file,
        diags,
        stack: Vec::new(),
        root: None,
        documents: 0,
    };
    loop {
        let event = match parser.next(file) {
            Ok(event) => event,
            Err(diag) => {
                builder.diags.push(diag);
                return None;
            }
        };
        match builder.push(event) {
            Step::More => {}
            Step::Done => return builder.root.take(),
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

/// The events this module uses, already copied out of libyaml.
enum Event {
    StreamStart,
    StreamEnd,
    DocumentStart {
        directives: bool,
    },
    DocumentEnd,
    Alias,
    Scalar {
        value: String,
        plain: bool,
        anchor: bool,
        tag: bool,
    },
    SeqStart {
        anchor: bool,
        tag: bool,
    },
    SeqEnd,
    MapStart {
        anchor: bool,
        tag: bool,
    },
    MapEnd,
}

struct Positioned {
    event: Event,
    line: usize,
    col: usize,
}

/// Safe owner of a libyaml parser reading from a borrowed buffer.
struct Parser<'input> {
    /// Boxed because libyaml stores a pointer to the parser inside itself (its read handler data),
    /// so the parser must never move.
    sys: Box<MaybeUninit<sys::yaml_parser_t>>,
    /// libyaml keeps a raw pointer into this buffer; the borrow keeps it alive as long as `self`.
    _input: &'input [u8],
    initialised: bool,
    /// A parse error leaves libyaml's state unusable; no further events are asked for.
    failed: bool,
}

impl<'input> Parser<'input> {
    fn new(input: &'input [u8]) -> Self {
        let mut sys = Box::new(MaybeUninit::<sys::yaml_parser_t>::uninit());
        let ptr = sys.as_mut_ptr();
        // SAFETY: `ptr` points to writable memory sized for a parser; `yaml_parser_initialize`
        // zeroes and initialises it (it only fails when allocation fails, and libyaml's allocator
        // aborts instead). The input pointer stays valid while `self` lives (the `'input` borrow),
        // and the parser is deleted in `Drop` before that borrow ends.
        let failed = unsafe {
            let failed = sys::yaml_parser_initialize(ptr).fail;
            if !failed {
                sys::yaml_parser_set_encoding(ptr, sys::YAML_UTF8_ENCODING);
                sys::yaml_parser_set_input_string(ptr, input.as_ptr(), input.len() as u64);
            }
            failed
        };
        Self {
            sys,
            _input: input,
            initialised: !failed,
            failed,
        }
    }

    fn next(&mut self, file: &Arc<str>) -> Result<Positioned, Diagnostic> {
        if self.failed {
            return Err(Diagnostic::error(
                &Loc::new(file, 0, 0),
                "YAML parser failed to initialise",
            ));
        }
        let parser = self.sys.as_mut_ptr();
        let mut event = MaybeUninit::<sys::yaml_event_t>::uninit();
        let event_ptr = event.as_mut_ptr();
        // SAFETY: the parser was initialised in `new` (checked by `failed`). On success
        // `yaml_parser_parse` fully initialises the event; we copy what we need out of it (the
        // union field read matches the event type) and delete it exactly once. On failure the event
        // is not initialised and is not touched; the error fields of the parser are plain data.
        unsafe {
            if sys::yaml_parser_parse(parser, event_ptr).fail {
                self.failed = true;
                return Err(parse_error(file, &*parser));
            }
            let ev = &*event_ptr;
            let converted = convert(ev);
            let line = ev.start_mark.line as usize + 1;
            let col = ev.start_mark.column as usize + 1;
            sys::yaml_event_delete(event_ptr);
            Ok(Positioned {
                event: converted,
                line,
                col,
            })
        }
    }
}

impl Drop for Parser<'_> {
    fn drop(&mut self) {
        if self.initialised {
            // SAFETY: initialised in `new` (a later parse error leaves it initialised, still
            // owning its buffers); deleted exactly once, here.
            unsafe { sys::yaml_parser_delete(self.sys.as_mut_ptr()) }
        }
    }
}

/// Copy an event's data out of libyaml's union.
///
/// # Safety
/// `ev` must be an event `yaml_parser_parse` just produced (not yet deleted).
unsafe fn convert(ev: &sys::yaml_event_t) -> Event {
    // SAFETY: every union field read below is the variant `type_` says is live, and the
    // scalar's pointer and length describe a buffer libyaml owns until the event is deleted.
    unsafe {
        match ev.type_ {
            sys::YAML_STREAM_START_EVENT => Event::StreamStart,
            sys::YAML_DOCUMENT_START_EVENT => {
                let d = ev.data.document_start;
                Event::DocumentStart {
                    directives: !d.version_directive.is_null()
                        || d.tag_directives.start != d.tag_directives.end,
                }
            }
            sys::YAML_DOCUMENT_END_EVENT => Event::DocumentEnd,
            sys::YAML_ALIAS_EVENT => Event::Alias,
            sys::YAML_SCALAR_EVENT => {
                let s = ev.data.scalar;
                let bytes = if s.value.is_null() {
                    &[][..]
                } else {
                    std::slice::from_raw_parts(s.value, s.length as usize)
                };
                Event::Scalar {
                    // The input was checked to be UTF-8 and libyaml only decodes escapes into
                    // UTF-8, so lossy conversion never replaces anything in practice.
                    value: String::from_utf8_lossy(bytes).into_owned(),
                    plain: s.style == sys::YAML_PLAIN_SCALAR_STYLE,
                    anchor: !s.anchor.is_null(),
                    tag: !s.tag.is_null(),
                }
            }
            sys::YAML_SEQUENCE_START_EVENT => {
                let s = ev.data.sequence_start;
                Event::SeqStart {
                    anchor: !s.anchor.is_null(),
                    tag: !s.tag.is_null(),
                }
            }
            sys::YAML_SEQUENCE_END_EVENT => Event::SeqEnd,
            sys::YAML_MAPPING_START_EVENT => {
                let m = ev.data.mapping_start;
                Event::MapStart {
                    anchor: !m.anchor.is_null(),
                    tag: !m.tag.is_null(),
                }
            }
            sys::YAML_MAPPING_END_EVENT => Event::MapEnd,
            // STREAM_END, and NO_EVENT which a successful parse never returns.
            _ => Event::StreamEnd,
        }
    }
}

/// Turn libyaml's error fields into a located diagnostic.
///
/// # Safety
/// `p` must be an initialised parser whose last `yaml_parser_parse` failed.
unsafe fn parse_error(file: &Arc<str>, p: &sys::yaml_parser_t) -> Diagnostic {
    // SAFETY: libyaml's `problem` and `context` are null or static NUL-terminated strings.
    let text = |ptr: *const std::ffi::c_char| unsafe {
        (!ptr.is_null()).then(|| std::ffi::CStr::from_ptr(ptr).to_string_lossy().into_owned())
    };
    let problem = text(p.problem).unwrap_or_else(|| "invalid YAML".to_owned());
    let mark = p.problem_mark;
    let message = match text(p.context) {
        // `from: zone: office` (a space after the colon) lands here; say it in a policy's words.
        _ if problem == "mapping values are not allowed in this context" => {
            format!("invalid YAML: `: ` inside a value ({problem})")
        }
        Some(context) => format!("invalid YAML: {problem} ({context})"),
        None => format!("invalid YAML: {problem}"),
    };
    Diagnostic::error(
        &Loc::new(file, mark.line as usize + 1, mark.column as usize + 1),
        message,
    )
    .hint(syntax_hint(&problem))
}

/// What to do about libyaml's problem, in a policy's terms where the cause is a common one.
fn syntax_hint(problem: &str) -> &'static str {
    match problem {
        // `from: zone: office`: a space after the colon opens a second mapping on one line.
        "mapping values are not allowed in this context" => {
            "`: ` (colon, space) inside a value starts a mapping; write endpoints without the space (zone:office), or quote the value"
        }
        "found character that cannot start any token" => {
            "this character cannot start a plain value (a tab, `@` or a backquote); quote the value"
        }
        _ => "fix the YAML syntax at this position",
    }
}

enum Step {
    More,
    Done,
    Abort,
}

/// A collection being built.
enum Open {
    Seq(Node, Vec<Node>),
    /// The mapping, its entries and a pending key. Duplicate keys are found when it closes (by
    /// sorting), so an open mapping of 60,000 devices keeps no second copy of its keys.
    Map(Node, Vec<(Node, Node)>, Option<Node>),
}

struct Builder<'a> {
    file: &'a Arc<str>,
    diags: &'a mut Diags,
    stack: Vec<Open>,
    root: Option<Node>,
    documents: usize,
}

impl Builder<'_> {
    fn push(&mut self, p: Positioned) -> Step {
        let loc = Loc::new(self.file, p.line, p.col);
        match p.event {
            Event::StreamStart | Event::DocumentEnd => Step::More,
            Event::StreamEnd => Step::Done,
            Event::DocumentStart { directives } => {
                self.documents += 1;
                if self.documents > 1 {
                    self.error(
                        &loc,
                        "more than one YAML document in a file",
                        "remove the `---`; use one file per document",
                    );
                    return Step::Abort;
                }
                if directives {
                    self.error(
                        &loc,
                        "YAML directives (%YAML, %TAG) are not supported",
                        "remove the directive line",
                    );
                }
                Step::More
            }
            Event::Alias => {
                self.error(
                    &loc,
                    "YAML aliases (*name) are not supported",
                    "write the value out in full",
                );
                self.add(Node {
                    loc,
                    kind: Kind::Scalar {
                        value: String::new(),
                        plain: true,
                    },
                })
            }
            Event::Scalar {
                value,
                plain,
                anchor,
                tag,
            } => {
                self.features(&loc, anchor, tag);
                self.add(Node {
                    loc,
                    kind: Kind::Scalar { value, plain },
                })
            }
            Event::SeqStart { anchor, tag } => {
                self.features(&loc, anchor, tag);
                if !self.open_ok(&loc) {
                    return Step::Abort;
                }
                self.stack.push(Open::Seq(
                    Node {
                        loc,
                        kind: Kind::Seq(Vec::new()),
                    },
                    Vec::new(),
                ));
                Step::More
            }
            Event::MapStart { anchor, tag } => {
                self.features(&loc, anchor, tag);
                if !self.open_ok(&loc) {
                    return Step::Abort;
                }
                let node = Node {
                    loc,
                    kind: Kind::Map(Vec::new()),
                };
                self.stack.push(Open::Map(node, Vec::new(), None));
                Step::More
            }
            Event::SeqEnd | Event::MapEnd => match self.stack.pop() {
                // Trimmed: the tree lives while the whole file is typed, and doubling growth
                // would leave a quarter of it unused.
                Some(Open::Seq(mut node, mut items)) => {
                    items.shrink_to_fit();
                    node.kind = Kind::Seq(items);
                    self.add(node)
                }
                Some(Open::Map(mut node, mut entries, _)) => {
                    self.duplicate_keys(&entries);
                    entries.shrink_to_fit();
                    node.kind = Kind::Map(entries);
                    self.add(node)
                }
                None => Step::Abort,
            },
        }
    }

    fn open_ok(&mut self, loc: &Loc) -> bool {
        if self.stack.len() >= MAX_DEPTH {
            self.error(
                loc,
                &format!("nesting deeper than {MAX_DEPTH} levels"),
                "a policy never nests this deep; flatten it",
            );
            return false;
        }
        true
    }

    fn features(&mut self, loc: &Loc, anchor: bool, tag: bool) {
        if anchor {
            self.error(
                loc,
                "YAML anchors (&name) are not supported",
                "write the value out in full",
            );
        }
        if tag {
            self.error(
                loc,
                "YAML tags (!tag) are not supported",
                "remove the tag; values are typed by their key",
            );
        }
    }

    /// Attach a finished node to its parent (or make it the root).
    fn add(&mut self, node: Node) -> Step {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq(_, items)) => items.push(node),
            Some(Open::Map(_, entries, pending)) => match pending.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    let diag = match &node.kind {
                        Kind::Scalar { value, plain } => (*plain && value == "<<").then_some((
                            "merge keys (<<) are not supported",
                            "write the keys out in full",
                        )),
                        Kind::Seq(_) | Kind::Map(_) => Some((
                            "mapping keys must be plain strings",
                            "use a name as the key",
                        )),
                    };
                    if let Some((message, hint)) = diag {
                        self.diags
                            .push(Diagnostic::error(&node.loc, message).hint(hint));
                    }
                    // Keep the entry even when rejected: the value still gets checked, so one run
                    // reports every problem.
                    *pending = Some(node);
                }
            },
        }
        Step::More
    }

    /// Report every key of a closed mapping that an earlier key already used, citing the first.
    fn duplicate_keys(&mut self, entries: &[(Node, Node)]) {
        let mut keys: Vec<(&str, usize)> = entries
            .iter()
            .enumerate()
            .filter_map(|(i, (k, _))| Some((k.scalar()?, i)))
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
            let first_loc = &entries[run_start].0.loc;
            self.diags.push(
                Diagnostic::error(
                    &entries[at].0.loc,
                    format!("duplicate key `{key}` (first defined at {first_loc})"),
                )
                .hint("remove one of them; YAML parsers silently keep only the last"),
            );
        }
    }

    fn error(&mut self, loc: &Loc, message: &str, hint: &str) {
        self.diags.push(Diagnostic::error(loc, message).hint(hint));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> (Option<Node>, Vec<String>) {
        let file: Arc<str> = Arc::from("t.yaml");
        let mut diags = Diags::default();
        let node = parse(&file, text.as_bytes(), &mut diags);
        (node, diags.list.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn plain_mapping_parses_with_positions() {
        let (node, diags) = run("a: 1\nb:\n  - x\n");
        assert!(diags.is_empty(), "{diags:?}");
        let Some(Node {
            kind: Kind::Map(entries),
            ..
        }) = node
        else {
            panic!("not a map")
        };
        assert_eq!(entries[1].1.loc.line, 3);
        assert_eq!(entries[1].1.loc.col, 3);
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

    #[test]
    fn deep_nesting_is_rejected() {
        let text = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let (node, diags) = run(&text);
        assert!(node.is_none());
        assert!(diags[0].contains("nesting deeper than 16"), "{diags:?}");
    }
}
