//! The metrics server (`/metrics`, `/health`), hardened against slow and abusive clients
//! (adversarial catalogue FLT-24): at most [`MAX_CONNECTIONS`] open at once (a connection beyond
//! them is closed as soon as it is accepted), a request's headers within
//! [`HEADER_READ_TIMEOUT`], a whole connection within [`CONNECTION_TIMEOUT`], one request per
//! connection, and accept errors (`EMFILE`) met with a pause, never a busy loop.
//!
//! `axum::serve` has none of these knobs, so this runs its own accept loop and hands each
//! connection to hyper. Nothing else in the daemon waits for this server: reloads, deny events
//! and the watchdog run in their own tasks, and with the cap the server holds a bounded number of
//! file descriptors, so a flood of connections cannot starve a reload of the ones it needs.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tracing::{debug, info, warn};

use super::{Inner, error_chain, metrics::Metrics};

/// Connections served at once; one beyond is closed at once (Prometheus needs one, a person
/// with curl another: 64 leaves room for many scrapers, and bounds the descriptors held).
pub const MAX_CONNECTIONS: usize = 64;
/// A client must send its request's headers within this, or the connection is closed (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection's whole life (headers, the scrape, writing the answer), so a client that reads
/// the answer slowly cannot hold its slot either. Prometheus' default scrape timeout is as long.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// The listening socket's accept queue (the kernel caps it at `net.core.somaxconn`, 4,096 by
/// default). A connection flood fills the queue faster than the accept loop can close what is
/// beyond the cap; once the queue is full the kernel drops SYNs and handshake ACKs, so a scraper's
/// connection waits for a retransmission (1 s, then 3 s, 7 s) and is accepted seconds late. The
/// queue holds no descriptor, so a deep one costs the daemon nothing.
pub const LISTEN_BACKLOG: u32 = 4_096;
/// The pause after an accept error that is not the client's (`EMFILE`, `ENFILE`, `ENOBUFS`):
/// the pending connection stays queued, so retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one warning about failing accepts in this interval.
const ACCEPT_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Listens on `addr` with an accept queue of [`LISTEN_BACKLOG`].
pub(crate) fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted daemon binds while the old one's sockets linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `/metrics` and `/health` on `listener` until the task is dropped.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Mutex<Inner>>,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let app = router(shared, Arc::clone(&metrics));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut last_warned: Option<Instant> = None;
    let mut failed_since_warned = 0u64;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // The client's own failure (it reset before we accepted): nothing to wait for.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                failed_since_warned += 1;
                if last_warned.is_none_or(|t| t.elapsed() >= ACCEPT_WARN_INTERVAL) {
                    warn!(error = %e, failed = failed_since_warned, "metrics server cannot accept connections; pausing");
                    last_warned = Some(Instant::now());
                    failed_since_warned = 0;
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.shed.connections_rejected.inc();
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(error = %e, "metrics connection ended"),
                Err(_) => debug!("metrics connection timed out"),
            }
        });
    }
}

/// Accept errors about one connection (it went away before it was accepted), not the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// The routes: the scrape reads the kernel's counters off the async threads, one scrape at a
/// time. A reload takes the same lock as a scrape; with scrapes in turn it waits for one at
/// most, however many scrapers there are, and parallel scrapers cost one scrape's CPU.
fn router(shared: Arc<Mutex<Inner>>, metrics: Arc<Metrics>) -> axum::Router {
    use axum::{Router, http::StatusCode, routing::get};
    let turn = Arc::new(Semaphore::new(1));
    let scrape = move || {
        let shared = Arc::clone(&shared);
        let metrics = Arc::clone(&metrics);
        let turn = Arc::clone(&turn);
        async move {
            // Held by the blocking read itself: a client that gives up cannot let a second read
            // start beside it.
            let Ok(my_turn) = turn.acquire_owned().await else {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("content-type", "text/plain")],
                    "metrics unavailable".to_owned(),
                );
            };
            let body = tokio::task::spawn_blocking(move || {
                let _my_turn = my_turn;
                let inner = shared
                    .lock()
                    .map_err(|_| "daemon state poisoned".to_owned())?;
                metrics
                    .refresh(&inner.dp, &inner.policy)
                    .map_err(|e| error_chain(&e))?;
                let bindings = inner
                    .policy
                    .dns
                    .as_ref()
                    .and_then(|_| inner.dp.bindings().ok());
                metrics.dns.refresh(bindings.as_ref(), &inner.policy);
                drop(inner);
                metrics.encode().map_err(|e| error_chain(&e))
            })
            .await;
            match body {
                Ok(Ok(text)) => (
                    StatusCode::OK,
                    [("content-type", "text/plain; version=0.0.4")],
                    text,
                ),
                Ok(Err(e)) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [("content-type", "text/plain")],
                    e,
                ),
                Err(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [("content-type", "text/plain")],
                    e.to_string(),
                ),
            }
        }
    };
    Router::new()
        .route("/metrics", get(scrape))
        .route("/health", get(|| async { "ok\n" }))
}

/// Raises the soft open-file limit to the hard one: a default soft limit of 1,024 is easily
/// reached by an attack on the metrics port, while the hard limit is the operator's choice. The
/// connection cap keeps the server's share bounded either way.
pub(crate) fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given, which lives on our stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        warn!(error = %std::io::Error::last_os_error(), "cannot read the open-file limit");
        return;
    }
    if limit.rlim_cur >= limit.rlim_max {
        info!(limit = limit.rlim_cur, "open-file limit");
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit only reads the struct, which lives on our stack.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } == 0 {
        info!(
            from = limit.rlim_cur,
            to = raised.rlim_cur,
            "raised the soft open-file limit to the hard limit"
        );
    } else {
        warn!(error = %std::io::Error::last_os_error(), limit = limit.rlim_cur, "cannot raise the open-file limit");
    }
}
