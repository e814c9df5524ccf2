//! `cargo xtask build`: `cargo build --release -p enforcer`. enforcer/build.rs builds the XDP
//! program (nightly, bpfel-unknown-none, `-Z build-std=core`) and embeds it, so the one binary is
//! all a router needs. Runs setup first when something is missing.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::Stdio,
};

use anyhow::{Context as _, Result, bail};

use crate::{exec, setup};

/// Build and return the path of the release binary (read from cargo's JSON messages).
pub fn run() -> Result<PathBuf> {
    setup::ensure()?;
    let mut cmd = exec::cargo();
    cmd.args([
        "build",
        "--release",
        "-p",
        "enforcer",
        "--message-format=json-render-diagnostics",
    ])
    // A stub object is for check/clippy only; the artifact must carry the real program.
    .env_remove("ENFORCER_SKIP_EBPF")
    .stdout(Stdio::piped());
    println!("+ {}", exec::describe(&cmd));
    let mut child = cmd.spawn().context("start cargo build")?;
    let mut bin = None;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.context("read cargo's output")?;
            if let Some(path) = enforcer_executable(&line) {
                bin = Some(path);
            }
        }
    }
    let status = child.wait().context("wait for cargo build")?;
    if !status.success() {
        bail!(
            "`cargo build --release -p enforcer` failed ({status}); if the eBPF build failed, try `cargo xtask setup`"
        );
    }
    let bin = bin.context("cargo reported no `enforcer` executable")?;
    println!("build: {}", bin.display());
    Ok(bin)
}

/// The path in a `compiler-artifact` message for the `enforcer` bin target, if this is one.
fn enforcer_executable(line: &str) -> Option<PathBuf> {
    let msg: serde_json::Value = serde_json::from_str(line).ok()?;
    if msg.get("reason")?.as_str()? != "compiler-artifact"
        || msg.pointer("/target/name")?.as_str()? != "enforcer"
    {
        return None;
    }
    msg.get("executable")?.as_str().map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_enforcer_executable_only() {
        let bin = r#"{"reason":"compiler-artifact","target":{"name":"enforcer","kind":["bin"]},"executable":"/w/target/release/enforcer"}"#;
        let lib = r#"{"reason":"compiler-artifact","target":{"name":"enforcer","kind":["lib"]},"executable":null}"#;
        let other = r#"{"reason":"compiler-artifact","target":{"name":"aya","kind":["lib"]},"executable":null}"#;
        assert_eq!(
            enforcer_executable(bin),
            Some(PathBuf::from("/w/target/release/enforcer"))
        );
        assert_eq!(enforcer_executable(lib), None);
        assert_eq!(enforcer_executable(other), None);
        assert_eq!(enforcer_executable("warning: not json"), None);
    }
}
