//! Diagnostics: located errors and warnings, and [`PolicyError`], the one error type of the policy
//! module. Every problem names `file:line:col` (1-based; `0:0` means "the file or path as a whole").

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

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

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.line == 0 {
            write!(f, "{}: {severity}: {}", self.file, self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {severity}: {}",
                self.file, self.line, self.col, self.message
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
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
            Diagnostic::error(&Loc::new(&file, 3, 5), "unknown zone `camras`").hint("define it");
        assert_eq!(
            d.to_string(),
            "p/10-devices.yaml:3:5: error: unknown zone `camras`\n  hint: define it"
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
