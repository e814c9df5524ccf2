//! The status page: one read-only HTML page of what the daemon enforces (the zone graph, the
//! devices, quarantines, unknown devices, the latest denies, the policy's generation and the last
//! reload), served on the root-only control socket and, with `run --status-addr ADDR`, over TCP.
//!
//! On the control socket a request line that is HTTP (`GET / HTTP/1.1`) gets the page instead
//! of a JSON answer, so `ssh -L 9470:/run/enforcer/control.sock router` and
//! `http://localhost:9470/` reach it with the socket's own access rule (root's alone) and
//! nothing listening on the network. Only `GET` and `HEAD` of `/` are answered (405 and 404
//! otherwise): nothing can be changed through it. The page has no scripts and no external assets,
//! escapes every name, and its Content-Security-Policy allows only its own inline styles, by hash.
//!
//! The page is read as `enforcer status` and `enforcer devices` read the daemon: from its state
//! directory and pinned maps (off the async threads), not from its reload state, so a page
//! request never waits for a reload. Only the latest denies come from the daemon itself: a task
//! keeps the last [`RECENT_EVENTS`] of the events `enforcer watch` streams.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt as _, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpListener,
    sync::{Semaphore, broadcast},
};
use tracing::{debug, info, warn};

use super::control::WatchEvent;

mod html;
mod snapshot;

pub use html::render;
pub use snapshot::Snapshot;

/// Deny, audit and quarantine events the page lists, newest first.
pub const RECENT_EVENTS: usize = 50;
/// TCP clients served at once; one more is closed at once.
const MAX_CONNECTIONS: usize = 16;
/// A TCP client's whole request and answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send its request's headers.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request head read (request line and headers); the rest is not read.
const MAX_HEAD: u64 = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("serve the status page on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the page is drawn from: the daemon's directories and the latest events.
#[derive(Debug)]
pub struct Page {
    pin_dir: PathBuf,
    state_dir: PathBuf,
    recent: Mutex<VecDeque<WatchEvent>>,
}

impl Page {
    /// The page of the daemon with these directories, following `events` for the latest denies,
    /// and served on `tcp` too when given.
    #[must_use]
    pub fn start(
        cfg: &super::Config,
        tcp: Option<TcpListener>,
        events: &broadcast::Sender<WatchEvent>,
    ) -> Arc<Self> {
        let page = Arc::new(Self {
            pin_dir: cfg.pin_dir.clone(),
            state_dir: cfg.state_dir.clone(),
            recent: Mutex::new(VecDeque::with_capacity(RECENT_EVENTS)),
        });
        tokio::spawn(follow(events.subscribe(), Arc::clone(&page)));
        if let Some(listener) = tcp {
            tokio::spawn(serve_tcp(listener, Arc::clone(&page)));
        }
        page
    }

    fn remember(&self, e: WatchEvent) {
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == RECENT_EVENTS {
                recent.pop_back();
            }
            recent.push_front(e);
        }
    }

    /// The page as it is now (reads the state directory and the pinned maps: blocking).
    fn html(&self) -> String {
        let recent = self
            .recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default();
        render(&Snapshot::read(&self.pin_dir, &self.state_dir, recent))
    }
}

/// Binds `--status-addr` before anything is attached, so a taken port fails the start.
///
/// # Errors
/// When the address cannot be bound.
pub async fn bind(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, PageError> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = super::http::listen(addr).map_err(|source| PageError::Bind { addr, source })?;
    info!(%addr, "serving the status page");
    Ok(Some(listener))
}

async fn follow(mut rx: broadcast::Receiver<WatchEvent>, page: Arc<Page>) {
    loop {
        match rx.recv().await {
            Ok(e) if matches!(e.kind.as_str(), "deny" | "audit" | "quarantine") => {
                page.remember(e);
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn serve_tcp(listener: TcpListener, page: Arc<Page>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(error = %e, "status page: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let page = Arc::clone(&page);
        tokio::spawn(async move {
            let _slot = slot;
            let (read, mut write) = stream.into_split();
            let mut reader = tokio::io::BufReader::new(read.take(MAX_HEAD));
            let served = tokio::time::timeout(CONNECTION_TIMEOUT, async {
                let mut line = String::new();
                reader.read_line(&mut line).await?;
                answer(&line, &mut reader, &mut write, &page).await
            })
            .await;
            match served {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(error = %e, "status page connection ended"),
                Err(_) => debug!("status page connection timed out"),
            }
        });
    }
}

/// Is this first line of a client an HTTP request (and not a JSON request of the control
/// socket)?
#[must_use]
pub fn is_http(line: &str) -> bool {
    let mut parts = line.split_whitespace();
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(m), Some(_), Some(v), None)
            if v.starts_with("HTTP/1.") && m.bytes().all(|b| b.is_ascii_uppercase())
    )
}

/// A whole answer: status line, headers, body.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// The answer to `request_line`, given the page (rendered only for a GET or HEAD of `/`).
pub fn respond(request_line: &str, page: impl FnOnce() -> String) -> Answer {
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let text = |status, body: &str| Answer {
        status,
        headers: vec![("Content-Type", "text/plain; charset=utf-8".to_owned())],
        body: body.to_owned(),
    };
    let mut answer = match (method, path) {
        ("GET" | "HEAD", "/") => {
            let body = page();
            Answer {
                status: "200 OK",
                headers: vec![
                    ("Content-Type", "text/html; charset=utf-8".to_owned()),
                    (
                        "Content-Security-Policy",
                        html::content_security_policy(&body),
                    ),
                ],
                body,
            }
        }
        ("GET" | "HEAD", _) => text("404 Not Found", "not found: the status page is /\n"),
        _ => {
            let mut a = text("405 Method Not Allowed", "the status page is read-only\n");
            a.headers.push(("Allow", "GET, HEAD".to_owned()));
            a
        }
    };
    if !answer
        .headers
        .iter()
        .any(|(h, _)| *h == "Content-Security-Policy")
    {
        answer
            .headers
            .push(("Content-Security-Policy", "default-src 'none'".to_owned()));
    }
    for (h, v) in [
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-store"),
        ("X-Frame-Options", "DENY"),
        ("Connection", "close"),
    ] {
        answer.headers.push((h, v.to_owned()));
    }
    answer
}

/// Reads the rest of the request head (bounded by the reader), then writes the answer to the
/// request in `request_line`.
///
/// # Errors
/// When the client's connection fails.
pub async fn answer<R, W>(
    request_line: &str,
    reader: &mut R,
    write: &mut W,
    page: &Arc<Page>,
) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // The headers are read and dropped: a connection closed with unread data may reset before
    // the browser has read the answer. A client that stalls in them is dropped.
    let headers = async {
        let mut header = String::new();
        loop {
            header.clear();
            if reader.read_line(&mut header).await? == 0 || header.trim().is_empty() {
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    if tokio::time::timeout(HEAD_TIMEOUT, headers).await.is_err() {
        return Ok(());
    }
    let head_only = request_line.starts_with("HEAD ");
    let wants_page = request_line.starts_with("GET ") || head_only;
    let html = if wants_page {
        let page = Arc::clone(page);
        tokio::task::spawn_blocking(move || page.html())
            .await
            .unwrap_or_else(|e| format!("<!doctype html><title>enforcer</title><p>{e}"))
    } else {
        String::new()
    };
    let a = respond(request_line, || html);
    let mut head = format!("HTTP/1.1 {}\r\n", a.status);
    for (h, v) in &a.headers {
        head.push_str(&format!("{h}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", a.body.len()));
    write.write_all(head.as_bytes()).await?;
    if !head_only {
        write.write_all(a.body.as_bytes()).await?;
    }
    write.flush().await
}

#[cfg(test)]
mod tests;
