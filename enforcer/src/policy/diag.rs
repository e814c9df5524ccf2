//! Diagnostics: located errors and warnings, and [`PolicyError`], the one error type of the policy
//! module. Every problem names `file:line:col` (1-based; `0:0` means "the file or path as a whole").

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::{Deserialize, Serialize};

/// A position in a policy file. The file name is shared, so keeping one per node is cheap.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: usize,
    pub col: usize,
}

impl Loc {
    #[must_use]
    pub fn new(file: &Arc<str>, line: usize, col: usize) -> Self {
        Self {
            file: Arc::clone(file),
            line,
            col,
        }
    }

    /// The file as a whole (for problems with no better place, such as size caps).
    #[must_use]
    pub fn whole(file: &Arc<str>) -> Self {
        Self::new(file, 0, 0)
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.col)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, located.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based; 0 when the problem concerns the whole file or path.
    pub line: usize,
    /// 1-based, in characters; 0 with `line == 0`.
    pub col: usize,
    pub severity: Severity,
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    #[must_use]
    pub fn error(loc: &Loc, message: impl Into<String>) -> Self {
        Self::new(loc, Severity::Error, message.into())
    }

    #[must_use]
    pub fn warning(loc: &Loc, message: impl Into<String>) -> Self {
        Self::new(loc, Severity::Warning, message.into())
    }

    fn new(loc: &Loc, severity: Severity, message: String) -> Self {
        Self {
            file: loc.file.to_string(),
            line: loc.line,
            col: loc.col,
            severity,
            message: bounded(message),
            hint: None,
        }
    }

    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(bounded(hint.into()));
        self
    }

    #[must_use]
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Most diagnostics of each severity one load or compile keeps; the rest are only counted
/// ("and N more errors"). A hostile file can hold millions of problems (one per alias of a 6 MB
/// alias bomb): keeping, sorting, printing and logging them all cost gigabytes and minutes.
pub const MAX_REPORTED: usize = 100;

/// Longest message or hint, in characters. Messages quote values from the file (a key, a name),
/// which the size caps alone would let be megabytes long.
pub const MAX_MESSAGE_CHARS: usize = 512;

/// `text` cut to [`MAX_MESSAGE_CHARS`], marked with `...` when cut.
fn bounded(mut text: String) -> String {
    if let Some((at, _)) = text.char_indices().nth(MAX_MESSAGE_CHARS) {
        text.truncate(at);
        text.push_str("...");
    }
    text
}

/// One line, `file:line:col: severity: message`: the form editors and scripts parse, and the one a
/// log record carries. [`Diagnostic::render`] adds the source line and the hint for a terminal.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.line == 0 {
            write!(f, "{}: {severity}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {severity}: {}",
                self.file, self.line, self.col, self.message
            )
        }
    }
}

impl Diagnostic {
    /// The way rustc shows a problem: the one-line form first (so `file:line:col:` still starts
    /// the line), then `source_line` (the text of line `self.line`, when known) with a caret under
    /// the value at the column, then the hint.
    #[must_use]
    pub fn render(&self, source_line: Option<&str>) -> String {
        let mut out = self.to_string();
        let level = match self.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let mut group = Group::with_level(level.clone());
        if let Some(line) = source_line.filter(|_| self.line > 0) {
            let (line, col) = window(line, self.col);
            group = group.element(
                Snippet::source(line)
                    .line_start(self.line)
                    .fold(false)
                    .annotation(AnnotationKind::Primary.span(span_at(line, col))),
            );
        }
        if let Some(hint) = &self.hint {
            group = group.element(Level::HELP.with_name("hint").message(hint.as_str()));
        }
        let body = Renderer::plain().render(&[group]);
        if !body.trim().is_empty() {
            out.push('\n');
            out.push_str(body.trim_end());
        }
        out
    }
}

/// Widest part of a source line a snippet shows, in characters.
const SNIPPET_CHARS: usize = 160;

/// The part of `line` a snippet shows, and the column within it: the line itself when short, else
/// [`SNIPPET_CHARS`] characters starting a little before `col` (a 6 MB one-line file must not be
/// printed once per problem in it).
fn window(line: &str, col: usize) -> (&str, usize) {
    if line.len() <= SNIPPET_CHARS {
        return (line, col);
    }
    let skip = col.saturating_sub(SNIPPET_CHARS / 4 + 1);
    let byte = |n: usize| line.char_indices().nth(n).map_or(line.len(), |(i, _)| i);
    let start = byte(skip);
    let end = start + byte_len(&line[start..], SNIPPET_CHARS);
    (&line[start..end], col - skip)
}

/// Bytes of the first `chars` characters of `s`.
fn byte_len(s: &str, chars: usize) -> usize {
    s.char_indices().nth(chars).map_or(s.len(), |(i, _)| i)
}

/// The byte range of the token at 1-based character column `col` of `line`: a quoted string, a
/// flow collection, or a plain scalar up to the YAML punctuation that ends it. Where the column
/// is past the end (a parser error at the end of a line), an empty range there.
fn span_at(line: &str, col: usize) -> std::ops::Range<usize> {
    let start = line
        .char_indices()
        .nth(col.saturating_sub(1))
        .map_or(line.len(), |(i, _)| i);
    let rest = &line[start..];
    let len = match rest.chars().next() {
        None => 0,
        Some(blank) if blank.is_whitespace() => blank.len_utf8(),
        Some(quote @ ('"' | '\'')) => rest[1..].find(quote).map_or(rest.len(), |end| end + 2),
        Some(open @ ('[' | '{')) => {
            let close = if open == '[' { ']' } else { '}' };
            let mut depth = 0usize;
            rest.char_indices()
                .find_map(|(i, c)| {
                    if c == open {
                        depth += 1;
                    } else if c == close {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    None
                })
                .unwrap_or(rest.len())
        }
        Some(_) => {
            let end = rest
                .char_indices()
                .find(|&(i, c)| {
                    matches!(c, ',' | ']' | '}')
                        || (c == ':'
                            && rest[i + 1..].chars().next().is_none_or(char::is_whitespace))
                        || (c == '#' && rest[..i].ends_with(' '))
                })
                .map_or(rest.len(), |(i, _)| i);
            rest[..end].trim_end().len()
        }
    };
    // An empty token (a parser error at the end of a line) still gets one caret.
    start..start + len.max(usize::from(start < line.len()))
}

/// The nearest of `candidates` to a misspelt `word`, when one is close enough to be a typo (at
/// most a third of the word's letters apart, as rustc judges).
pub(crate) fn nearest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// "did you mean `allow`?" when a candidate is near, else `otherwise`.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    otherwise: impl FnOnce() -> String,
) -> String {
    nearest(word, candidates).map_or_else(otherwise, |near| format!("did you mean `{near}`?"))
}

/// Every diagnostic rendered for a terminal, reading each file once (as the loader does: a
/// regular file within the size cap, never a FIFO) and finding the lines wanted in one pass. A
/// file that cannot be read again (or changed meanwhile) only loses its snippets.
#[must_use]
pub fn render_all<'a>(diags: impl IntoIterator<Item = &'a Diagnostic>) -> Vec<String> {
    let diags: Vec<&Diagnostic> = diags.into_iter().collect();
    let mut wanted: HashMap<&str, BTreeMap<usize, Option<String>>> = HashMap::new();
    for d in diags.iter().filter(|d| d.line > 0) {
        wanted.entry(&d.file).or_default().insert(d.line, None);
    }
    for (file, lines) in &mut wanted {
        let Ok(bytes) = super::load::read_regular(Path::new(file)) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let last = lines.keys().next_back().copied().unwrap_or(0);
        for (n, line) in text.lines().enumerate().take(last) {
            if let Some(slot) = lines.get_mut(&(n + 1)) {
                // A byte order mark is no part of the first line as the user sees it.
                let line = line.strip_prefix('\u{feff}').unwrap_or(line);
                // Distinct lines of one file: together never more than the file.
                *slot = Some(line.to_owned());
            }
        }
    }
    diags
        .iter()
        .map(|d| {
            let line = wanted
                .get(d.file.as_str())
                .and_then(|lines| lines.get(&d.line))
                .and_then(Option::as_deref);
            d.render(line)
        })
        .collect()
}

/// Why a policy could not be loaded or compiled.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy is invalid: the first [`MAX_REPORTED`] errors (and warnings) in file order, and
    /// how many more were found but not kept.
    #[error("{}", DisplayList(.0, *.1))]
    Invalid(Vec<Diagnostic>, Omitted),
    /// A path could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The policy path (or a file in the policy directory) is not a regular file: a FIFO would
    /// block the reader forever, a device would stream without end.
    #[error("{}: not a regular file ({kind})", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
}

/// Problems found beyond [`MAX_REPORTED`] of their severity: counted, not kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Omitted {
    pub errors: usize,
    pub warnings: usize,
}

impl PolicyError {
    /// Every problem kept (at most [`MAX_REPORTED`] of each severity) as a diagnostic (an I/O
    /// failure becomes one naming the path).
    #[must_use]
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            Self::Invalid(diags, _) => diags.clone(),
            Self::Io { path, source } => vec![io_diagnostic(path, source)],
            Self::NotRegular { path, kind } => {
                let file: Arc<str> = Arc::from(path.display().to_string());
                vec![
                    Diagnostic::error(&Loc::whole(&file), format!("not a regular file ({kind})"))
                        .hint("point the policy path at a regular file or a directory of them"),
                ]
            }
        }
    }

    /// Only the errors kept (not the warnings that came with them).
    #[must_use]
    pub fn errors(&self) -> Vec<Diagnostic> {
        self.diagnostics()
            .into_iter()
            .filter(Diagnostic::is_error)
            .collect()
    }

    /// How many problems were found but not kept.
    #[must_use]
    pub fn omitted(&self) -> Omitted {
        match self {
            Self::Invalid(_, omitted) => *omitted,
            Self::Io { .. } | Self::NotRegular { .. } => Omitted::default(),
        }
    }

    /// At most `max` lines: the first `max - 1` errors, one line each, then "and N more errors"
    /// when there are more. For a status file or a log record, whose size must not follow the
    /// input's.
    #[must_use]
    pub fn summary(&self, max: usize) -> String {
        let errors = self.errors();
        let total = errors.len() + self.omitted().errors;
        let mut out = match self {
            Self::Invalid(..) => format!("policy is invalid ({total} error{})", plural(total)),
            Self::Io { .. } | Self::NotRegular { .. } => return self.to_string(),
        };
        let shown = max.saturating_sub(1).min(errors.len());
        for d in &errors[..shown] {
            out.push('\n');
            out.push_str(&d.to_string());
        }
        if total > shown {
            out.push_str(&format!(
                "\nand {} more error{}",
                total - shown,
                plural(total - shown)
            ));
        }
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn io_diagnostic(path: &Path, source: &std::io::Error) -> Diagnostic {
    let file: Arc<str> = Arc::from(path.display().to_string());
    Diagnostic::error(&Loc::whole(&file), format!("cannot read: {source}"))
        .hint("check that the path exists and is readable")
}

struct DisplayList<'a>(&'a [Diagnostic], Omitted);

impl fmt::Display for DisplayList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self.0.iter().filter(|d| d.is_error()).count() + self.1.errors;
        write!(f, "policy is invalid ({errors} error{})", plural(errors))?;
        for diag in self.0 {
            write!(f, "\n{diag}")?;
            if let Some(hint) = &diag.hint {
                write!(f, "\n  hint: {hint}")?;
            }
        }
        if self.1.errors > 0 {
            write!(
                f,
                "\nand {} more error{} (at most {MAX_REPORTED} are reported)",
                self.1.errors,
                plural(self.1.errors)
            )?;
        }
        Ok(())
    }
}

/// Collects diagnostics, keeping the first [`MAX_REPORTED`] of each severity by place (file,
/// line, column) and counting the rest; the result is an error when any of them is one.
///
/// The list is compacted (sorted, cut) whenever it holds twice the cap, so memory stays bounded
/// and the work is O(n log cap) for n problems however many there are.
#[derive(Clone, Debug, Default)]
pub(crate) struct Diags {
    pub list: Vec<Diagnostic>,
    /// Errors and warnings dropped by compaction.
    omitted: Omitted,
    /// Problems ever pushed (kept or not), for callers asking "did this step find any".
    found: usize,
    /// Once a compaction kept the full cap of errors: the place of the last one kept. Kept errors
    /// only ever get earlier, so an error found at or after it will never be reported.
    error_bound: Option<(Arc<str>, usize, usize)>,
}

impl Diags {
    /// A collector starting from diagnostics already found (the loader's warnings).
    pub fn from_list(list: Vec<Diagnostic>) -> Self {
        let mut diags = Self::default();
        for d in list {
            diags.push(d);
        }
        diags
    }

    pub fn error(&mut self, loc: &Loc, message: impl Into<String>, hint: impl Into<String>) {
        self.push(Diagnostic::error(loc, message).hint(hint));
    }

    pub fn warning(&mut self, loc: &Loc, message: impl Into<String>, hint: impl Into<String>) {
        self.push(Diagnostic::warning(loc, message).hint(hint));
    }

    pub fn push(&mut self, diag: Diagnostic) {
        self.found += 1;
        self.list.push(diag);
        if self.list.len() >= 4 * MAX_REPORTED {
            self.compact();
        }
    }

    /// Takes in everything `other` collected (another file read on its own), as if pushed here.
    pub fn absorb(&mut self, other: Self) {
        let found = self.found + other.found;
        for d in other.list {
            self.push(d);
        }
        self.found = found;
        self.omitted.errors += other.omitted.errors;
        self.omitted.warnings += other.omitted.warnings;
    }

    /// Problems pushed so far, including those no longer kept.
    pub fn found(&self) -> usize {
        self.found
    }

    /// Whether an error at `loc` could still be among those reported. When not, a caller with a
    /// dear message to build (a "did you mean" over many candidates, for each of a million
    /// unknown keys) calls [`Diags::omit_error`] instead: the outcome is the same, the cost is not.
    pub fn may_report_error(&self, loc: &Loc) -> bool {
        self.error_bound.as_ref().is_none_or(|(file, line, col)| {
            (&*loc.file, loc.line, loc.col) < (&**file, *line, *col)
        })
    }

    /// Counts an error that [`Diags::may_report_error`] said will not be reported.
    pub fn omit_error(&mut self) {
        self.found += 1;
        self.omitted.errors += 1;
    }

    /// Sort by place and keep the first [`MAX_REPORTED`] of each severity.
    fn compact(&mut self) {
        // Stable sort: problems at the same place keep the order they were found in.
        self.list
            .sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        let (mut errors, mut warnings) = (0usize, 0usize);
        let omitted = &mut self.omitted;
        self.list.retain(|d| {
            let (seen, dropped) = if d.is_error() {
                (&mut errors, &mut omitted.errors)
            } else {
                (&mut warnings, &mut omitted.warnings)
            };
            *seen += 1;
            if *seen > MAX_REPORTED {
                *dropped += 1;
                false
            } else {
                true
            }
        });
        if errors >= MAX_REPORTED
            && let Some(last) = self.list.iter().rev().find(|d| d.is_error())
        {
            self.error_bound = Some((Arc::from(last.file.as_str()), last.line, last.col));
        }
    }

    pub fn has_errors(&self) -> bool {
        self.omitted.errors > 0 || self.list.iter().any(Diagnostic::is_error)
    }

    /// Everything found, as an error (for callers that already know there is one).
    pub fn into_error(mut self) -> PolicyError {
        // Compacted first, so the count includes what the last compaction drops.
        self.compact();
        let omitted = self.omitted;
        match self.finish() {
            Ok(list) | Err(PolicyError::Invalid(list, _)) => PolicyError::Invalid(list, omitted),
            Err(other) => other,
        }
    }

    /// `Err` with everything kept (sorted by place) when there is an error, else the warnings.
    /// Warnings beyond the cap on success end with one warning saying how many more there were.
    pub fn finish(mut self) -> Result<Vec<Diagnostic>, PolicyError> {
        self.compact();
        if self.has_errors() {
            return Err(PolicyError::Invalid(self.list, self.omitted));
        }
        if self.omitted.warnings > 0
            && let Some(last) = self.list.last()
        {
            let file: Arc<str> = Arc::from(last.file.as_str());
            let more = self.omitted.warnings;
            self.list.push(Diagnostic::warning(
                &Loc::whole(&file),
                format!(
                    "and {more} more warning{} (at most {MAX_REPORTED} are reported)",
                    plural(more)
                ),
            ));
        }
        Ok(self.list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostic_display_has_location_and_hint() {
        let file: Arc<str> = Arc::from("p/10-devices.yaml");
        let d =
            Diagnostic::error(&Loc::new(&file, 3, 11), "unknown zone `camras`").hint("define it");
        assert_eq!(
            d.to_string(),
            "p/10-devices.yaml:3:11: error: unknown zone `camras`"
        );
        assert_eq!(
            d.render(Some("    zone: camras")),
            "p/10-devices.yaml:3:11: error: unknown zone `camras`\n  |\n3 |     zone: camras\n  |           ^^^^^^\n  |\n  = hint: define it"
        );
    }

    /// Skipping errors past the bound reports exactly what pushing them all would: the same kept
    /// errors, the same count of the rest.
    #[test]
    fn errors_past_the_last_kept_one_are_only_counted_with_the_same_outcome() {
        let file: Arc<str> = Arc::from("p.yaml");
        // Out of order, so the kept ones are not simply the first found.
        let lines: Vec<usize> = (0..2_000).map(|i| (i * 7_919) % 2_000 + 1).collect();
        let mut all = Diags::default();
        let mut skipping = Diags::default();
        let mut skipped = 0;
        for &line in &lines {
            let at = Loc::new(&file, line, 1);
            all.error(&at, format!("e{line}"), "");
            if skipping.may_report_error(&at) {
                skipping.error(&at, format!("e{line}"), "");
            } else {
                skipping.omit_error();
                skipped += 1;
            }
        }
        assert!(skipped > 1_000, "most were never built: {skipped}");
        assert_eq!(all.found(), skipping.found());
        let (a, b) = (all.into_error(), skipping.into_error());
        assert_eq!(a.omitted(), b.omitted());
        assert_eq!(a.omitted().errors, 2_000 - MAX_REPORTED);
        assert_eq!(a.errors(), b.errors());
        assert_eq!(b.errors().last().map(|d| d.line), Some(MAX_REPORTED));
    }

    #[test]
    fn io_error_names_the_path() {
        let err = PolicyError::Io {
            path: PathBuf::from("/nope"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(err.to_string().starts_with("/nope: cannot read"));
        assert_eq!(err.diagnostics()[0].file, "/nope");
    }
}
