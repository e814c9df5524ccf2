//! `enforcer check` on hostile inputs, as a user runs it: the process ends (a FIFO never blocks
//! it), exits 1 like any invalid policy, and prints a bounded report.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// A directory of its own under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("enforcer-hostile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run `enforcer check [args] PATH`; kill it after 60 s (a hang fails the test instead of
/// blocking the suite). Returns the exit code, stdout and stderr.
fn check(args: &[&str], path: &Path) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_enforcer"))
        .arg("check")
        .args(args)
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn enforcer: {e}"));
    let started = Instant::now();
    loop {
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`enforcer check {}` still running after 60 s",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_of_a_fifo_exits_1_naming_it_instead_of_blocking() {
    let dir = TempDir::new("fifo");
    let fifo = dir.0.join("policy.yaml");
    nix::unistd::mkfifo(
        &fifo,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .unwrap_or_else(|e| panic!("mkfifo: {e}"));
    let (code, _, stderr) = check(&[], &fifo);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: error: not a regular file (a FIFO)",
            fifo.display()
        )),
        "{stderr}"
    );
}

#[test]
fn check_of_an_alias_bomb_prints_a_hundred_errors_and_the_count_of_the_rest() {
    let dir = TempDir::new("bomb");
    let file = dir.0.join("bomb.yaml");
    let aliases = 300_000;
    std::fs::write(
        &file,
        format!("x: &a [{}]\n", vec!["*a"; aliases].join(", ")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (code, _, stderr) = check(&[], &file);
    assert_eq!(code, Some(1));
    let total = aliases + 2;
    assert!(
        stderr.contains(&format!("and {} more errors", total - 100)),
        "{}",
        &stderr[stderr.len().saturating_sub(500)..]
    );
    assert!(
        stderr.ends_with(&format!("policy is invalid ({total} errors)\n")),
        "{}",
        &stderr[stderr.len().saturating_sub(500)..]
    );
    // A hundred rendered errors (a few lines each), not one per alias; the 1.2 MB line is shown
    // as a window around each column.
    assert!(stderr.len() < 100_000, "{} bytes of errors", stderr.len());

    let (code, stdout, _) = check(&["--output", "json"], &file);
    assert_eq!(code, Some(1));
    let report: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["errors"].as_array().map(Vec::len), Some(100));
    assert_eq!(report["more_errors"], total - 100);
}
