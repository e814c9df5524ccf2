//! Diagnostics: located errors and warnings, and [`PolicyError`], the one error type of the policy
//! module. Every problem names `file:line:col` (1-based; `0:0` means "the file or path as a whole").

use std::{
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
            message,
            hint: None,
        }
    }

    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    #[must_use]
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
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
            group = group.element(
                Snippet::source(line)
                    .line_start(self.line)
                    .fold(false)
                    .annotation(AnnotationKind::Primary.span(span_at(line, self.col))),
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

/// Every diagnostic rendered for a terminal, reading each file's lines once. A file that cannot
/// be read again (or changed meanwhile) only loses its snippets.
#[must_use]
pub fn render_all<'a>(diags: impl IntoIterator<Item = &'a Diagnostic>) -> Vec<String> {
    let mut files: std::collections::HashMap<String, Option<String>> = Default::default();
    diags
        .into_iter()
        .map(|d| {
            let text = files
                .entry(d.file.clone())
                .or_insert_with(|| std::fs::read_to_string(&d.file).ok());
            let line = text
                .as_deref()
                .and_then(|t| t.lines().nth(d.line.checked_sub(1)?));
            // A byte order mark is no part of the first line as the user sees it.
            d.render(line.map(|l| l.strip_prefix('\u{feff}').unwrap_or(l)))
        })
        .collect()
}

/// Why a policy could not be loaded or compiled.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy is invalid; every error found (and the warnings) in file order.
    #[error("{}", DisplayList(.0))]
    Invalid(Vec<Diagnostic>),
    /// A path could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl PolicyError {
    /// Every problem as a diagnostic (an I/O failure becomes one naming the path).
    #[must_use]
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            Self::Invalid(diags) => diags.clone(),
            Self::Io { path, source } => vec![io_diagnostic(path, source)],
        }
    }

    /// Only the errors (not the warnings that came with them).
    #[must_use]
    pub fn errors(&self) -> Vec<Diagnostic> {
        self.diagnostics()
            .into_iter()
            .filter(Diagnostic::is_error)
            .collect()
    }
}

fn io_diagnostic(path: &Path, source: &std::io::Error) -> Diagnostic {
    let file: Arc<str> = Arc::from(path.display().to_string());
    Diagnostic::error(&Loc::whole(&file), format!("cannot read: {source}"))
        .hint("check that the path exists and is readable")
}

struct DisplayList<'a>(&'a [Diagnostic]);

impl fmt::Display for DisplayList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self.0.iter().filter(|d| d.is_error()).count();
        write!(
            f,
            "policy is invalid ({errors} error{})",
            if errors == 1 { "" } else { "s" }
        )?;
        for diag in self.0 {
            write!(f, "\n{diag}")?;
            if let Some(hint) = &diag.hint {
                write!(f, "\n  hint: {hint}")?;
            }
        }
        Ok(())
    }
}

/// Collects diagnostics; the result is an error when any of them is one.
#[derive(Debug, Default)]
pub(crate) struct Diags {
    pub list: Vec<Diagnostic>,
}

impl Diags {
    pub fn error(&mut self, loc: &Loc, message: impl Into<String>, hint: impl Into<String>) {
        self.list.push(Diagnostic::error(loc, message).hint(hint));
    }

    pub fn warning(&mut self, loc: &Loc, message: impl Into<String>, hint: impl Into<String>) {
        self.list.push(Diagnostic::warning(loc, message).hint(hint));
    }

    pub fn has_errors(&self) -> bool {
        self.list.iter().any(Diagnostic::is_error)
    }

    /// Everything found, as an error (for callers that already know there is one).
    pub fn into_error(self) -> PolicyError {
        match self.finish() {
            Ok(list) | Err(PolicyError::Invalid(list)) => PolicyError::Invalid(list),
            Err(other) => other,
        }
    }

    /// `Err` with everything (sorted by place) when there is an error, else the warnings.
    pub fn finish(mut self) -> Result<Vec<Diagnostic>, PolicyError> {
        // Stable sort: problems at the same place keep the order they were found in.
        self.list
            .sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        if self.has_errors() {
            Err(PolicyError::Invalid(self.list))
        } else {
            Ok(self.list)
        }
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
