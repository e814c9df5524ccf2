//! The libyaml event parser behind a safe interface: the events the reader uses, positioned, with
//! each scalar's text appended to the caller's string (no allocation per scalar).

use std::{mem::MaybeUninit, sync::Arc};

#[expect(
    clippy::unsafe_removed_from_name,
    reason = "`sys` names the C-style API the way -sys crates do; every use is in an unsafe block"
)]
use unsafe_libyaml as sys;

use crate::policy::diag::{Diagnostic, Loc};

/// The events the reader uses, already copied out of libyaml.
pub(super) enum Event {
    StreamStart,
    StreamEnd,
    DocumentStart {
        directives: bool,
    },
    DocumentEnd,
    Alias,
    /// The value is `text[start..end]` of the string given to [`Parser::next`].
    Scalar {
        start: usize,
        end: usize,
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

pub(super) struct Positioned {
    pub event: Event,
    pub line: usize,
    pub col: usize,
}

/// Safe owner of a libyaml parser reading from a borrowed buffer.
pub(super) struct Parser<'input> {
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
    pub(super) fn new(input: &'input [u8]) -> Self {
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

    /// The next event; a scalar's value is appended to `text`.
    pub(super) fn next(
        &mut self,
        file: &Arc<str>,
        text: &mut String,
    ) -> Result<Positioned, Diagnostic> {
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
            let converted = convert(ev, text);
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
unsafe fn convert(ev: &sys::yaml_event_t, text: &mut String) -> Event {
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
                let start = text.len();
                // The input was checked to be UTF-8 and libyaml only decodes escapes into
                // UTF-8, so lossy conversion never replaces anything (nor allocates) in practice.
                text.push_str(&String::from_utf8_lossy(bytes));
                Event::Scalar {
                    start,
                    end: text.len(),
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
