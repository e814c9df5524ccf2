//! `enforcer apply` and `enforcer confirm`: hand the running daemon a candidate policy through
//! its control socket, and keep a provisional one for good. The daemon does the work (it loads,
//! compiles and switches exactly as a reload does) and answers with one JSON line; these commands
//! print it and exit with its code.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result};

use crate::{
    cli::Output,
    commands::{Refusal, connect_daemon, fail},
    daemon::control::{ApplyRequest, OperationAnswer, Request},
    exit,
};

/// How long the daemon may take to answer: loading and compiling the largest policy within the
/// caps takes seconds on a small router.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// `enforcer apply PATH... [--confirm DURATION]`.
pub fn apply(
    paths: &[PathBuf],
    window: Option<Duration>,
    output: Output,
    socket: &Path,
) -> Result<u8> {
    // The daemon does not share this process's directory.
    let mut absolute = Vec::with_capacity(paths.len());
    for p in paths {
        match std::path::absolute(p) {
            Ok(a) => absolute.push(a),
            Err(e) => {
                return Ok(
                    Refusal::new(exit::INVALID, format!("{}: {e}", p.display())).report(output)
                );
            }
        }
    }
    let request = Request::Apply(ApplyRequest {
        paths: absolute,
        confirm_secs: window.map(|w| w.as_secs()),
    });
    ask(&request, "apply", output, socket)
}

/// `enforcer confirm`.
pub fn confirm(output: Output, socket: &Path) -> Result<u8> {
    ask(&Request::Confirm, "confirm", output, socket)
}

/// Sends `request`, prints the answer, returns its exit code.
fn ask(request: &Request, command: &str, output: Output, socket: &Path) -> Result<u8> {
    if !crate::daemon::host::is_root() {
        return Ok(Refusal::new(
            exit::ENVIRONMENT,
            format!(
                "{command} needs root: it talks to the daemon through its root-only control socket"
            ),
        )
        .report(output));
    }
    let stream = match connect_daemon(socket, command) {
        Ok(s) => s,
        Err(no) => return Ok(no.report(output)),
    };
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    (&stream)
        .write_all(line.as_bytes())
        .context("send the request to the daemon")?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .context("read the daemon's answer")?;
    let Ok(answer) = serde_json::from_str::<OperationAnswer>(&answer) else {
        // A daemon that does not know the request answers `{"error": ...}`.
        let said = serde_json::from_str::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| answer.trim().to_owned());
        return Ok(Refusal::new(
            exit::ENVIRONMENT,
            format!("the daemon did not {command}: {said}"),
        )
        .report(output));
    };
    Ok(print(&answer, output))
}

/// Prints the answer as the command's result; returns its exit code.
#[expect(clippy::print_stdout, clippy::print_stderr, reason = "CLI output")]
fn print(answer: &OperationAnswer, output: Output) -> u8 {
    if answer.exit == exit::OK {
        match output {
            Output::Json => println!(
                "{}",
                serde_json::to_string(answer).unwrap_or_else(|_| "{}".to_owned())
            ),
            Output::Text => println!("{}", answer.message),
        }
        return exit::OK;
    }
    if output == Output::Json {
        let doc = serde_json::json!({
            "error": answer.message,
            "exit": answer.exit,
            "errors": answer.errors,
        });
        println!("{doc}");
    }
    for e in &answer.errors {
        eprintln!("{e}");
    }
    fail(answer.exit, &answer.message)
}
