//! The daemon's local control socket: root's alone (a 0700 directory, a 0600 socket). A client
//! sends one JSON request line; the daemon answers with JSON lines. It serves `watch` (the live
//! deny, audit, quarantine and discovery events, as `enforcer watch` prints them), takes the
//! operators' reports for the audit trail, serves the status page to an HTTP request line
//! ([`super::status_page`]), and hands `enforcer apply` and `enforcer confirm` to the
//! daemon's reload loop (one answer line each).

use std::{
    io::ErrorKind,
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::{Semaphore, broadcast, mpsc, oneshot},
};
use tracing::{debug, warn};

/// Default path of the control socket (`--control-socket`).
pub const DEFAULT_SOCKET: &str = "/run/enforcer/control.sock";
/// Watchers at once; one more is told so and closed.
const MAX_CLIENTS: usize = 16;
/// Longest request line.
const MAX_REQUEST: usize = 4096;
/// Time a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Events buffered for each watcher; a watcher further behind is told how many it missed.
pub const WATCH_BUFFER: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {why}")]
    Unsafe { path: PathBuf, why: String },
    #[error("control socket {path}: another enforcer is serving it")]
    InUse { path: PathBuf },
    #[error("control socket {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One request line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Stream the events that match, until the client hangs up.
    Watch(WatchFilter),
    /// An operator's command changed the datapath (`quarantine`, `release`, `detach`): the
    /// daemon logs it with the caller's uid and pid (from the socket), for the audit trail.
    Audit(OperatorAction),
    /// `enforcer apply`: enforce the policy at `paths` now, provisionally when `confirm_secs`.
    Apply(ApplyRequest),
    /// `enforcer confirm`: keep the pending provisional policy for good.
    Confirm,
}

/// A candidate policy for the daemon.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// Policy files or directories (absolute: the daemon does not share the caller's directory).
    pub paths: Vec<PathBuf>,
    /// Seconds until the program goes back to the last confirmed policy by itself, unless
    /// confirmed; absent: applied for good at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm_secs: Option<u64>,
}

/// What an `Apply` or `Confirm` request is, for the daemon's reload loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    Apply(ApplyRequest),
    Confirm,
}

/// An operation with its caller (uid and pid from the socket) and where its answer goes.
#[derive(Debug)]
pub struct OperationCall {
    pub op: Operation,
    pub uid: Option<u32>,
    pub pid: Option<i32>,
    pub reply: oneshot::Sender<OperationAnswer>,
}

/// The daemon's answer to `apply` or `confirm`: one JSON line.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OperationAnswer {
    /// The exit code the command exits with ([`crate::exit`]).
    pub exit: u8,
    /// What happened, as the text output says it.
    pub message: String,
    /// The policy's problems when it was refused, one line each (`file:line:col: ...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// The policy enforced now (generation, digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// A pending provisional policy's deadline, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
}

impl OperationAnswer {
    #[must_use]
    pub fn refused(exit: u8, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
            ..Self::default()
        }
    }
}

/// What an operator did, as the command that did it reports it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OperatorAction {
    /// `quarantine`, `release`, `detach`, `apply` or `confirm`.
    pub action: String,
    /// The device (or, for `detach`, the interfaces) it acted on.
    #[serde(default)]
    pub target: String,
    /// Anything else worth keeping (a quarantine's duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Which events a watcher wants; an absent field matches everything.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WatchFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// `deny` or `audit`: only packet events with that verdict (no quarantine or discovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
}

/// One line of a watch: an event the daemon saw, or how many a slow watcher missed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WatchEvent {
    /// RFC 3339, when the daemon read it.
    pub time: String,
    /// `deny`, `audit`, `quarantine`, `discovery`, or `lagged` (this watcher missed `missed`).
    pub kind: String,
    /// Device name (`unknown` for an unlisted source, `network:NAME`, `router`).
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// The rule that decided (`default` for the default verdict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why: a deny reason (`rule`, `default`, `spoofed`, ...) or a quarantine reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The interface it arrived on, by name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub iface: String,
    #[serde(default)]
    pub vlan: u16,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// For `lagged`: events this watcher missed because it read too slowly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<u64>,
}

impl WatchFilter {
    #[must_use]
    pub fn matches(&self, e: &WatchEvent) -> bool {
        self.device.as_ref().is_none_or(|d| *d == e.device)
            && self.zone.as_ref().is_none_or(|z| *z == e.zone)
            && self.verdict.as_ref().is_none_or(|v| *v == e.kind)
    }
}

impl WatchEvent {
    /// The line for `enforcer watch` without `--output json`.
    #[must_use]
    pub fn text(&self) -> String {
        let at = |a: &Option<String>, p: Option<u16>| match (a, p) {
            (Some(a), Some(p)) if a.contains(':') => format!("[{a}]:{p}"),
            (Some(a), Some(p)) => format!("{a}:{p}"),
            (Some(a), None) => a.clone(),
            (None, _) => "-".to_owned(),
        };
        let zone = if self.zone.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.zone)
        };
        let mut line = match self.kind.as_str() {
            "lagged" => {
                return format!(
                    "{} lagged: {} events missed (reading too slowly)",
                    self.time,
                    self.missed.unwrap_or(0)
                );
            }
            "deny" | "audit" => format!(
                "{} {} {}{zone} {} {} -> {} rule={} reason={}",
                self.time,
                self.kind,
                self.device,
                self.proto.as_deref().unwrap_or("-"),
                at(&self.src, self.sport),
                at(&self.dst, self.dport),
                self.rule.as_deref().unwrap_or("-"),
                self.reason.as_deref().unwrap_or("-"),
            ),
            _ => format!(
                "{} {} {}{zone} reason={} src={} tried={}",
                self.time,
                self.kind,
                self.device,
                self.reason.as_deref().unwrap_or("-"),
                self.src.as_deref().unwrap_or("-"),
                at(&self.dst, self.dport),
            ),
        };
        if !self.iface.is_empty() {
            line.push_str(&format!(" iface={}", self.iface));
        }
        if self.vlan != 0 {
            line.push_str(&format!(" vlan={}", self.vlan));
        }
        if !self.mac.is_empty() {
            line.push_str(&format!(" mac={}", self.mac));
        }
        line
    }
}

/// Binds the control socket before anything is attached: creates its directory (0700, root's)
/// when missing, refuses one others can write to, and replaces a socket no daemon answers on
/// (left by one that was killed). The socket is 0600.
pub async fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    match std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    let meta = std::fs::metadata(dir).map_err(io)?;
    // The state directory's rule: ours, and writable by no one else.
    if let Some(why) =
        super::state::unsafe_dir(meta.uid(), meta.mode(), nix::unistd::geteuid().as_raw())
    {
        return Err(ControlError::Unsafe {
            path: path.to_path_buf(),
            why: format!(
                "its directory {} {why}; it must be ours and writable by no one else",
                dir.display()
            ),
        });
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() || !is_socket(&m) => {
            return Err(ControlError::Unsafe {
                path: path.to_path_buf(),
                why: "exists and is no socket".to_owned(),
            });
        }
        Ok(_) => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(ControlError::InUse {
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

fn is_socket(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    m.file_type().is_socket()
}

/// Serves clients until the task is dropped. `events` carries every event the daemon reads;
/// `operations` takes `apply` and `confirm` to the reload loop.
pub async fn serve(
    listener: UnixListener,
    events: broadcast::Sender<WatchEvent>,
    operations: mpsc::Sender<OperationCall>,
    page: Arc<super::status_page::Page>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(error = %e, "control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tokio::spawn(refuse(stream, "too many clients of the control socket"));
            continue;
        };
        let rx = events.subscribe();
        let (operations, page) = (operations.clone(), Arc::clone(&page));
        tokio::spawn(async move {
            if let Err(e) = client(stream, rx, operations, &page).await {
                debug!(error = %e, "control client gone");
            }
            drop(slot);
        });
    }
}

async fn refuse(mut stream: UnixStream, why: &str) {
    let line = format!("{}\n", serde_json::json!({ "error": why }));
    let _gone = stream.write_all(line.as_bytes()).await;
}

/// One client: its request, then what it asked for.
async fn client(
    stream: UnixStream,
    mut rx: broadcast::Receiver<WatchEvent>,
    operations: mpsc::Sender<OperationCall>,
    page: &Arc<super::status_page::Page>,
) -> std::io::Result<()> {
    // Who is asking: the kernel's word for it, not the client's.
    let cred = stream.peer_cred().ok();
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_REQUEST as u64));
    let mut line = String::new();
    let read_request = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
    let request = match read_request {
        Ok(Ok(_)) => serde_json::from_str::<Request>(line.trim()),
        Ok(Err(e)) => return Err(e),
        Err(_) => return Ok(()),
    };
    // The status page, for a browser through `ssh -L PORT:SOCKET` (read-only: GET and HEAD).
    if super::status_page::is_http(&line) {
        return super::status_page::answer(&line, &mut reader, &mut write, page).await;
    }
    let (uid, pid) = cred.map_or((None, None), |c| (Some(c.uid()), c.pid()));
    let filter = match request {
        Ok(Request::Watch(f)) => f,
        Ok(Request::Audit(a)) => {
            audit(&a, uid, pid);
            let answer = serde_json::json!({ "ok": true });
            return write.write_all(format!("{answer}\n").as_bytes()).await;
        }
        Ok(Request::Apply(a)) => {
            let answer = operate(Operation::Apply(a), uid, pid, &operations).await;
            return write_answer(&mut write, &answer).await;
        }
        Ok(Request::Confirm) => {
            let answer = operate(Operation::Confirm, uid, pid, &operations).await;
            return write_answer(&mut write, &answer).await;
        }
        Err(e) => {
            let answer = serde_json::json!({ "error": format!("bad request: {e}") });
            return write.write_all(format!("{answer}\n").as_bytes()).await;
        }
    };
    // The client hanging up is noticed by a read returning, not only by a failed write.
    let mut hangup = reader.into_inner().into_inner();
    let mut scratch = [0u8; 64];
    loop {
        let event = tokio::select! {
            r = hangup.read(&mut scratch) => match r {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => continue,
            },
            e = rx.recv() => e,
        };
        let event = match event {
            Ok(e) if filter.matches(&e) => e,
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(missed)) => WatchEvent {
                time: crate::time::rfc3339(crate::time::unix_now()),
                kind: "lagged".to_owned(),
                missed: Some(missed),
                ..WatchEvent::default()
            },
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        };
        let mut text = serde_json::to_string(&event).map_err(std::io::Error::other)?;
        text.push('\n');
        write.write_all(text.as_bytes()).await?;
    }
}

/// Logs an operator's action as the audit trail keeps it: `enforcer::audit`, with the caller's
/// uid and pid as the kernel gave them.
pub fn audit(a: &OperatorAction, uid: Option<u32>, pid: Option<i32>) {
    tracing::warn!(
        target: "enforcer::audit",
        action = a.action,
        on = a.target,
        detail = a.detail.as_deref().unwrap_or_default(),
        uid,
        pid,
        "operator action"
    );
}

/// Hands `op` to the reload loop and waits for its answer. Only root may change the policy: the
/// socket is root's alone already; the caller's uid is checked as well.
async fn operate(
    op: Operation,
    uid: Option<u32>,
    pid: Option<i32>,
    operations: &mpsc::Sender<OperationCall>,
) -> OperationAnswer {
    if uid != Some(nix::unistd::geteuid().as_raw()) {
        return OperationAnswer::refused(
            crate::exit::ENVIRONMENT,
            "only root may apply or confirm a policy",
        );
    }
    let (reply, answer) = oneshot::channel();
    let call = OperationCall {
        op,
        uid,
        pid,
        reply,
    };
    if operations.send(call).await.is_err() {
        return OperationAnswer::refused(crate::exit::ENVIRONMENT, "the daemon is shutting down");
    }
    answer.await.unwrap_or_else(|_| {
        OperationAnswer::refused(crate::exit::INTERNAL, "the daemon dropped the request")
    })
}

async fn write_answer(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    answer: &OperationAnswer,
) -> std::io::Result<()> {
    let mut text = serde_json::to_string(answer).map_err(std::io::Error::other)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deny(device: &str, zone: &str) -> WatchEvent {
        WatchEvent {
            time: "2026-11-30T14:00:00Z".to_owned(),
            kind: "deny".to_owned(),
            device: device.to_owned(),
            zone: zone.to_owned(),
            proto: Some("tcp".to_owned()),
            src: Some("10.1.1.10".to_owned()),
            dst: Some("fd00::1".to_owned()),
            sport: Some(40000),
            dport: Some(22),
            rule: Some("default".to_owned()),
            reason: Some("default".to_owned()),
            iface: "lan0".to_owned(),
            vlan: 10,
            mac: "02:00:00:00:01:10".to_owned(),
            missed: None,
        }
    }

    #[test]
    fn a_socket_directory_others_can_write_to_is_refused() {
        let dir = std::env::temp_dir().join(format!("enforcer-control-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .unwrap_or_else(|e| panic!("{e}"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let bound = rt.block_on(bind(&dir.join("control.sock")));
        let _ = std::fs::remove_dir_all(&dir);
        match bound {
            Err(ControlError::Unsafe { why, .. }) => assert!(why.contains("writable"), "{why}"),
            other => panic!("bound in a world-writable directory: {other:?}"),
        }
    }

    #[test]
    fn a_filter_matches_device_zone_and_verdict() {
        let e = deny("cam-1", "cameras");
        assert!(WatchFilter::default().matches(&e));
        let only = |device: Option<&str>, zone: Option<&str>, verdict: Option<&str>| WatchFilter {
            device: device.map(str::to_owned),
            zone: zone.map(str::to_owned),
            verdict: verdict.map(str::to_owned),
        };
        assert!(only(Some("cam-1"), Some("cameras"), Some("deny")).matches(&e));
        assert!(!only(Some("cam-2"), None, None).matches(&e));
        assert!(!only(None, Some("office"), None).matches(&e));
        assert!(!only(None, None, Some("audit")).matches(&e));
    }

    #[test]
    fn requests_are_one_json_object_and_unknown_fields_are_refused() {
        let r: Request = serde_json::from_str(r#"{"op":"watch","device":"cam-1"}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r,
            Request::Watch(WatchFilter {
                device: Some("cam-1".to_owned()),
                ..WatchFilter::default()
            })
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"watch","devcie":"x"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"reboot"}"#).is_err());
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"confirm"}"#).ok(),
            Some(Request::Confirm)
        );
        let apply: Request =
            serde_json::from_str(r#"{"op":"apply","paths":["/etc/candidate"],"confirm_secs":300}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            apply,
            Request::Apply(ApplyRequest {
                paths: vec![PathBuf::from("/etc/candidate")],
                confirm_secs: Some(300),
            })
        );
    }

    #[test]
    fn the_text_line_names_the_interface_and_brackets_ipv6() {
        assert_eq!(
            deny("cam-1", "cameras").text(),
            "2026-11-30T14:00:00Z deny cam-1 (cameras) tcp 10.1.1.10:40000 -> [fd00::1]:22 rule=default reason=default iface=lan0 vlan=10 mac=02:00:00:00:01:10"
        );
    }
}
