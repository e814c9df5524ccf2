//! `enforcer watch`: the running daemon's events, live, through its control socket.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
};

use anyhow::{Context as _, Result};

use crate::{
    cli::Output,
    commands::{Refusal, connect_daemon},
    daemon::control::{Request, WatchEvent, WatchFilter},
    exit,
};

pub fn run(filter: &WatchFilter, count: Option<u64>, output: Output, socket: &Path) -> Result<u8> {
    let stream = match connect_daemon(socket, "watch") {
        Ok(s) => s,
        Err(no) => return Ok(no.report(output)),
    };
    let mut request = serde_json::to_string(&Request::Watch(filter.clone()))?;
    request.push('\n');
    (&stream)
        .write_all(request.as_bytes())
        .context("send the watch request")?;
    let mut seen = 0u64;
    let stdout = std::io::stdout();
    for line in BufReader::new(&stream).lines() {
        let line = line.context("read from the control socket")?;
        if let Ok(answer) = serde_json::from_str::<serde_json::Value>(&line)
            && let Some(error) = answer.get("error").and_then(serde_json::Value::as_str)
        {
            return Ok(
                Refusal::new(exit::ENVIRONMENT, format!("the daemon says: {error}")).report(output),
            );
        }
        let event: WatchEvent = serde_json::from_str(&line)
            .with_context(|| format!("the daemon sent a line that is no event: {line}"))?;
        let mut out = stdout.lock();
        let printed = match output {
            Output::Json => writeln!(out, "{line}"),
            Output::Text => writeln!(out, "{}", event.text()),
        };
        // A closed pipe (`enforcer watch | head`) ends the watch, as it does for any filter.
        if printed.and_then(|()| out.flush()).is_err() {
            return Ok(exit::OK);
        }
        if event.kind != "lagged" {
            seen += 1;
        }
        if count.is_some_and(|n| seen >= n) {
            return Ok(exit::OK);
        }
    }
    Ok(Refusal::new(
        exit::ENVIRONMENT,
        "the daemon closed the watch (it stopped?)",
    )
    .report(output))
}
