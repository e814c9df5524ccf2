//! The policy corpus: every file under `tests/policies/broken/` must be rejected with the message
//! and location its first line announces (`# expect: <substring> at <line>:<col>`), without a
//! panic; every file under `tests/policies/valid/` and the site policy in `policies/` must pass
//! `enforcer check`.
//!
//! Lines right after the first may pin more: `# render: <line>` must be a line (trailing blanks
//! aside) of that error as `enforcer check` prints it (source snippet, caret, hint), and
//! `# errors: N` is how many errors there must be (no cascade after the root cause).

use std::path::{Path, PathBuf};

use enforcer::{
    commands::check::check,
    policy::{self, CompileOptions},
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
                .path()
        })
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

struct Expectation {
    message: String,
    line: usize,
    col: usize,
    /// `# render:` lines.
    rendered: Vec<String>,
    /// `# errors:`.
    errors: Option<usize>,
}

/// `# expect: MESSAGE at LINE:COL`, then any `# render: ...` and `# errors: N` lines.
fn expectation(path: &Path) -> Expectation {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut lines = bytes.split(|b| *b == b'\n').map(String::from_utf8_lossy);
    let first = lines.next().unwrap_or_default();
    let spec = first
        .strip_prefix("# expect: ")
        .unwrap_or_else(|| panic!("{}: first line is not `# expect: ...`", path.display()));
    let (message, at) = spec
        .rsplit_once(" at ")
        .unwrap_or_else(|| panic!("{}: no ` at LINE:COL`", path.display()));
    let (line, col) = at
        .trim()
        .split_once(':')
        .unwrap_or_else(|| panic!("{}: bad location {at}", path.display()));
    let num = |s: &str| {
        s.parse::<usize>()
            .unwrap_or_else(|e| panic!("{}: bad location {at}: {e}", path.display()))
    };
    let mut expectation = Expectation {
        message: message.to_owned(),
        line: num(line),
        col: num(col),
        rendered: Vec::new(),
        errors: None,
    };
    for line in lines {
        if let Some(rendered) = line.strip_prefix("# render: ") {
            expectation.rendered.push(rendered.trim_end().to_owned());
        } else if let Some(n) = line.strip_prefix("# errors: ") {
            expectation.errors = Some(num(n.trim()));
        } else {
            break;
        }
    }
    expectation
}

#[test]
fn broken_policies_are_rejected_with_message_and_location() {
    let files = yaml_files(&repo().join("tests/policies/broken"));
    assert!(
        files.len() >= 30,
        "the corpus has {} broken policies",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let Expectation {
            message,
            line,
            col,
            rendered,
            errors: count,
        } = expectation(path);
        let result = std::panic::catch_unwind(|| {
            policy::compile_path(path, &CompileOptions::default()).map(|_| ())
        });
        let Ok(result) = result else {
            failures.push(format!("{}: panicked", path.display()));
            continue;
        };
        let Err(err) = result else {
            failures.push(format!("{}: accepted", path.display()));
            continue;
        };
        let errors = err.errors();
        let hit = errors
            .iter()
            .find(|d| d.message.contains(&message) && d.line == line && d.col == col);
        let Some(hit) = hit else {
            failures.push(format!(
                "{}: want {message:?} at {line}:{col}, got:\n{err}",
                path.display()
            ));
            continue;
        };
        let shown = policy::render_all([hit]).concat();
        for want in &rendered {
            if !shown.lines().any(|l| l.trim_end() == want) {
                failures.push(format!(
                    "{}: want the line {want:?} in:\n{shown}",
                    path.display()
                ));
            }
        }
        if count.is_some_and(|n| n != errors.len()) {
            failures.push(format!(
                "{}: want {count:?} errors, got:\n{err}",
                path.display()
            ));
        }
        let file = path.display().to_string();
        if let Some(d) = errors.iter().find(|d| d.file != file) {
            failures.push(format!(
                "{}: diagnostic names another file: {d}",
                path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn valid_policies_pass_check() {
    let files = yaml_files(&repo().join("tests/policies/valid"));
    assert!(!files.is_empty());
    for path in files {
        let report = check(&path);
        assert!(report.valid, "{}: {:?}", path.display(), report.errors);
    }
}

#[test]
fn site_policy_passes_check() {
    let report = check(&repo().join("policies"));
    assert!(report.valid, "{:?}", report.errors);
    let compiled = policy::compile_path(&repo().join("policies"), &CompileOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(compiled.devices.len(), 8);
    assert_eq!(compiled.rules.len(), 13);
    assert_eq!(
        compiled.names.len(),
        1,
        "the camera's update server by name"
    );
}

#[test]
fn missing_path_is_an_io_error_naming_it() {
    let err = policy::load(Path::new("/nonexistent/policy.yaml"))
        .map(|_| ())
        .expect_err("missing");
    assert!(matches!(err, policy::PolicyError::Io { .. }));
    assert!(
        err.to_string().contains("/nonexistent/policy.yaml"),
        "{err}"
    );
}

#[test]
fn oversized_file_is_rejected_before_parsing() {
    let dir = std::env::temp_dir().join(format!("enforcer-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let big = dir.join("big.yaml");
    // Not even YAML: a parse would report a syntax error, the cap reports the size.
    std::fs::write(&big, vec![b'['; (policy::MAX_FILE_BYTES + 1) as usize])
        .unwrap_or_else(|e| panic!("{e}"));
    let err = policy::load(&dir).map(|_| ()).expect_err("too big");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        err.to_string()
            .contains(&format!("over the cap of {}", policy::MAX_FILE_BYTES)),
        "{err}"
    );
    assert!(!err.to_string().contains("invalid YAML"), "{err}");
}
