//! The daemon's one loop of changes: reloads (SIGHUP, policy file changes), `enforcer apply` and
//! `enforcer confirm` from the control socket, and a pending candidate's revert at its deadline.
//! They run one at a time, each off the async threads.

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::{
    Applied, Change, Config, DaemonError, Inner, attach, confirm, control, error_chain, events,
    host, metrics, notify_systemd, reload,
};
use crate::policy;

/// What a reload needs; it reloads on SIGHUP and on changes to the policy files.
pub(super) struct Reloader {
    pub cfg: Config,
    pub shared: Arc<Mutex<Inner>>,
    pub metrics: Arc<metrics::Metrics>,
    pub labels: Arc<RwLock<events::Labels>>,
}

impl Reloader {
    /// Serves reloads, `apply` and `confirm`, and a pending candidate's revert, one at a time,
    /// until `shutdown` completes or SIGTERM arrives. A reload asked for while a candidate is
    /// pending waits until it is confirmed or reverted.
    pub async fn serve(
        &self,
        shutdown: impl Future<Output = ()>,
        mut operations: mpsc::Receiver<control::OperationCall>,
    ) -> Result<(), DaemonError> {
        let (tx, mut rx) = mpsc::channel::<()>(1);
        let _watcher = match watch(&self.cfg.policies, tx) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "cannot watch the policy for changes; reload with SIGHUP");
                None
            }
        };
        let (host_tx, mut host_rx) = mpsc::channel::<()>(1);
        let _netlink = self.watch_host(host_tx);
        let mut resync = tokio::time::interval(attach::HOST_RESYNC);
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(DaemonError::Signals)?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(DaemonError::Signals)?;
        tokio::pin!(shutdown);
        // WatchdogSec=: pinged from this loop, so a wedged reload loop gets the daemon restarted.
        let mut watchdog_usec = 0;
        let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec);
        let mut dog = tokio::time::interval(Duration::from_micros(watchdog_usec.max(2) / 2));
        let mut deferred = false;
        loop {
            let revert_in = self.revert_in();
            tokio::select! {
                () = &mut shutdown => break,
                _ = dog.tick(), if watchdog => notify_systemd(sd_notify::NotifyState::Watchdog),
                _ = term.recv() => break,
                _ = hup.recv() => {
                    info!("SIGHUP: reloading");
                    deferred = self.reload_files().await;
                }
                Some(()) = rx.recv() => {
                    // Let a burst of writes (an editor, a git checkout) settle into one reload.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    while rx.try_recv().is_ok() {}
                    info!("policy changed on disk: reloading");
                    deferred = self.reload_files().await || deferred;
                }
                Some(()) = host_rx.recv() => {
                    // An interface coming up brings its addresses a moment later: one look.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    while host_rx.try_recv().is_ok() {}
                    self.host_changed().await;
                }
                _ = resync.tick() => self.host_changed().await,
                Some(call) = operations.recv() => self.operate(call).await,
                () = tokio::time::sleep(revert_in.unwrap_or_default()), if revert_in.is_some() => {
                    self.revert().await;
                }
            }
            if deferred && self.revert_in().is_none() {
                info!("no provisional policy pending any more: the reload that waited runs now");
                deferred = self.reload_files().await;
            }
        }
        Ok(())
    }

    /// Time until the pending candidate's deadline, if one is pending.
    fn revert_in(&self) -> Option<Duration> {
        let inner = self.shared.lock().ok()?;
        inner.pending.as_ref().map(confirm::Pending::left)
    }

    /// Reloads the policy files, unless a candidate is pending: then says so and returns true
    /// (the reload waits).
    async fn reload_files(&self) -> bool {
        if self.revert_in().is_some() {
            info!(
                "a provisional policy is pending: the reload waits until it is confirmed or reverted"
            );
            return true;
        }
        let _outcome = self.reload(Change::files(&self.cfg)).await;
        false
    }

    /// The deadline passed: the program judges with the confirmed policy already; make it so for
    /// good.
    async fn revert(&self) {
        let _done = self
            .off_thread("revert", |cfg, shared, metrics, labels| {
                if let Ok(mut inner) = shared.lock() {
                    confirm::revert(cfg, &mut inner, metrics, labels);
                }
            })
            .await;
    }

    /// `enforcer apply` and `enforcer confirm`, logged for the audit trail, answered.
    async fn operate(&self, call: control::OperationCall) {
        let control::OperationCall {
            op,
            uid,
            pid,
            reply,
        } = call;
        let answer = match op {
            control::Operation::Apply(a) => {
                let window = a.confirm_secs.map(Duration::from_secs);
                control::audit(
                    &control::OperatorAction {
                        action: "apply".to_owned(),
                        target: policy::shown_paths(&a.paths),
                        detail: Some(window.map_or_else(
                            || "for good".to_owned(),
                            |w| format!("confirm within {}s", w.as_secs()),
                        )),
                    },
                    uid,
                    pid,
                );
                self.apply(Change {
                    paths: a.paths,
                    window,
                    origin: "apply",
                })
                .await
            }
            control::Operation::Confirm => {
                control::audit(
                    &control::OperatorAction {
                        action: "confirm".to_owned(),
                        ..control::OperatorAction::default()
                    },
                    uid,
                    pid,
                );
                self.off_thread("confirm", confirm::confirm)
                    .await
                    .unwrap_or_else(|| {
                        control::OperationAnswer::refused(
                            crate::exit::INTERNAL,
                            "confirm task failed",
                        )
                    })
            }
        };
        // The caller may have gone; the change stands either way.
        let _gone = reply.send(answer);
    }

    /// `enforcer apply`: refused while a candidate is pending; otherwise a reload of the paths
    /// given, answered with what it did.
    async fn apply(&self, change: Change) -> control::OperationAnswer {
        let pending = self.shared.lock().ok().and_then(|inner| {
            inner
                .pending
                .as_ref()
                .map(|p| (inner.generation, p.deadline_unix))
        });
        if let Some((generation, deadline)) = pending {
            return control::OperationAnswer::refused(
                crate::exit::APPLY_FAILED,
                format!(
                    "a provisional policy (generation {generation}) is pending until {}: `enforcer confirm` it or let it revert before applying another; nothing was changed",
                    crate::time::rfc3339(deadline)
                ),
            );
        }
        match self.reload(change).await {
            Some(Ok(a)) => control::OperationAnswer {
                exit: crate::exit::OK,
                message: a.deadline.as_ref().map_or_else(
                    || format!("generation {} applied for good", a.generation),
                    |d| {
                        format!(
                            "generation {} applied; it reverts at {d} unless `enforcer confirm`",
                            a.generation
                        )
                    },
                ),
                generation: Some(a.generation),
                digest: Some(a.digest),
                deadline: a.deadline,
                ..control::OperationAnswer::default()
            },
            Some(Err(e)) => refusal(&e),
            None => control::OperationAnswer::refused(crate::exit::INTERNAL, "reload task failed"),
        }
    }

    /// Attaches interfaces that came or went, reads the host afresh (addresses may have changed),
    /// then compiles and applies off the async threads; `None` when the task failed.
    async fn reload(&self, change: Change) -> Option<Result<Applied, DaemonError>> {
        self.reconcile().await;
        let host = self.read_host().await;
        self.reload_with(change, host).await
    }

    /// The policy files compiled again with `host` (the enforced interfaces' addresses changed),
    /// unless a candidate is pending: then the periodic look tries again once it is settled.
    pub(super) async fn recompile(&self, host: Result<host::HostContext, host::HostError>) {
        if self.revert_in().is_some() {
            info!(
                "a provisional policy is pending: recompiling for the new addresses waits until it is confirmed or reverted"
            );
            return;
        }
        let _outcome = self.reload_with(Change::files(&self.cfg), host).await;
    }

    /// Compiles and applies `change` with `host`, off the async threads.
    async fn reload_with(
        &self,
        change: Change,
        host: Result<host::HostContext, host::HostError>,
    ) -> Option<Result<Applied, DaemonError>> {
        self.off_thread("reload", move |cfg, shared, metrics, labels| {
            reload(cfg, host, shared, metrics, labels, &change)
        })
        .await
    }

    /// Runs `work` on the daemon's state off the async threads (it loads programs, writes maps
    /// and state files); `None`, logged as the `what` task failing, when it panicked.
    pub(super) async fn off_thread<T: Send + 'static>(
        &self,
        what: &'static str,
        work: impl FnOnce(&Config, &Mutex<Inner>, &metrics::Metrics, &RwLock<events::Labels>) -> T
        + Send
        + 'static,
    ) -> Option<T> {
        let (cfg, shared, metrics, labels) = (
            self.cfg.clone(),
            Arc::clone(&self.shared),
            Arc::clone(&self.metrics),
            Arc::clone(&self.labels),
        );
        tokio::task::spawn_blocking(move || work(&cfg, &shared, &metrics, &labels))
            .await
            .inspect_err(|e| error!(error = %e, "{what} task failed"))
            .ok()
    }
}

/// A refused `apply`, for the operator: the policy's problems one per line (exit 1), or why it
/// could not be switched in (exit 4, or 3 when the host could not be read).
fn refusal(e: &DaemonError) -> control::OperationAnswer {
    let (exit, errors) = match e {
        DaemonError::Policy(p) => (
            crate::exit::INVALID,
            p.errors().iter().map(ToString::to_string).collect(),
        ),
        DaemonError::Host(_) => (crate::exit::ENVIRONMENT, Vec::new()),
        _ => (crate::exit::APPLY_FAILED, Vec::new()),
    };
    control::OperationAnswer {
        exit,
        message: format!("{}; nothing was changed", error_chain(e)),
        errors,
        ..control::OperationAnswer::default()
    }
}

/// Watches every policy path; sends a tick on every change.
fn watch(paths: &[PathBuf], tx: mpsc::Sender<()>) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok_and(|e| !e.kind.is_access()) {
            // A full channel already holds a pending reload; dropping this tick loses nothing.
            let _ignored = tx.try_send(());
        }
    })?;
    for path in paths {
        // A file is watched through its directory: editors replace files by renaming over them.
        let (target, mode) = if path.is_dir() {
            (path.clone(), notify::RecursiveMode::Recursive)
        } else {
            (
                path.parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
                notify::RecursiveMode::NonRecursive,
            )
        };
        watcher.watch(&target, mode)?;
    }
    Ok(watcher)
}
