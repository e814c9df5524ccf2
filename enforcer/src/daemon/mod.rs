//! `enforcer run`: attach, enforce, reload, export metrics, and never leave a gap.
//!
//! Start-up order matters: the policy is compiled first (a broken one changes nothing), then the
//! program is loaded with the pinned maps adopted (counters, flows and quarantines survive), the
//! policy is applied into the idle slot, and only then is each interface attached, or its pinned
//! link switched atomically to the new program. Links and maps are pinned, so when this process
//! exits (cleanly or by SIGKILL) enforcement goes on with the last policy; only `enforcer detach`
//! removes it.

mod attach;
mod confirm;
pub mod control;
pub mod events;
pub mod host;
pub mod http;
mod interfaces;
pub mod metrics;
mod netlink;
mod observe;
mod reloader;
pub mod resolver;
pub mod state;
pub mod status_page;

use std::{
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

pub use interfaces::Uplinks;
use interfaces::resolve_interfaces;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::{
    datapath::{self, Datapath, DatapathError},
    policy::{self, CompiledPolicy, PolicyError},
};

/// How the daemon was asked to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--policy`, once or more: merged into one policy.
    pub policies: Vec<PathBuf>,
    /// The interfaces to enforce on: `--iface` as given, replaced at start by the policy's
    /// `interfaces:` when it lists them.
    pub ifaces: Vec<String>,
    /// Which of `ifaces` are uplinks: guessed for `--iface`, declared by `interfaces:`.
    pub uplinks: Uplinks,
    pub metrics_addr: SocketAddr,
    /// `--metrics-max-devices`: listed devices with series of their own.
    pub metrics_max_devices: usize,
    /// `--control-socket`: where `enforcer watch` (and later commands) reach the daemon.
    pub control_socket: PathBuf,
    pub pin_dir: PathBuf,
    pub state_dir: PathBuf,
    pub generic: bool,
    /// `--confirm-window`: every reload from a file change (and SIGHUP) is provisional for this
    /// long, reverting by itself unless `enforcer confirm`ed.
    pub confirm_window: Option<Duration>,
    pub status_addr: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "--iface cannot be used with a policy that lists `interfaces:` (at {at}): the policy names the interfaces to enforce on; drop --iface, or remove `interfaces:` from the policy"
    )]
    IfaceWithInterfaces { at: String },
    #[error(
        "no interfaces to enforce on: the policy lists no `interfaces:` and no --iface was given; add an `interfaces:` section (see docs/policy.md) or pass --iface NAME"
    )]
    NoInterfaces,
    #[error("enforcer run needs root (CAP_BPF and CAP_NET_ADMIN)")]
    NotRoot,
    #[error("no such interface: {0}")]
    NoInterface(String),
    #[error("mount bpffs at /sys/fs/bpf")]
    Bpffs(#[source] std::io::Error),
    #[error("read the addresses and routes of the enforced interfaces")]
    Host(#[from] host::HostError),
    #[error("the policy is invalid; nothing was changed")]
    Policy(#[source] PolicyError),
    #[error("the policy was refused by its guards; nothing was changed")]
    Guard(#[source] crate::probe::guard::GuardError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error("state directory")]
    State(#[from] state::StateError),
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error("metrics")]
    Metrics(#[from] metrics::MetricsError),
    #[error("serve metrics on {addr}")]
    MetricsServer {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Locked(#[from] state::LockError),
    #[error(transparent)]
    StatusPage(#[from] status_page::PageError),
    #[error("signal handling")]
    Signals(#[source] std::io::Error),
    #[error("daemon state poisoned")]
    Poisoned,
    #[error(transparent)]
    Resolver(#[from] resolver::ResolverError),
}

/// What the daemon keeps between reloads.
pub(crate) struct Inner {
    dp: Datapath,
    policy: CompiledPolicy,
    generation: u64,
    /// The interfaces attached, and those listed but absent.
    enforced: attach::Enforced,
    /// The host as `policy` was compiled with it.
    host: host::HostContext,
    last_reload: Option<state::ReloadOutcome>,
    /// A provisional policy (then `policy`) and the confirmed one it reverts to.
    pending: Option<confirm::Pending>,
    /// The highest generation given so far (a reverted candidate's included), so none is reused.
    spent_generation: u64,
    /// What reading each policy file gave at the last load, so a reload reads only the files
    /// that changed.
    reads: policy::ReadCache,
}

impl Inner {
    /// The generation for the next policy switched in.
    fn next_generation(&mut self) -> u64 {
        self.spent_generation = self.spent_generation.max(self.generation) + 1;
        self.spent_generation
    }

    /// Names for events: both policies' while a candidate is pending.
    fn labels(&self) -> events::Labels {
        self.pending.as_ref().map_or_else(
            || events::Labels::of(&self.policy),
            |p| confirm::both_labels(&self.policy, &p.confirmed),
        )
    }
}

/// Compiles `policy` with the router's addresses and segments as `host` has them, and the ids in
/// force.
fn compile(
    policy: &policy::Policy,
    host: &host::HostContext,
    previous_ids: Option<policy::IdTable>,
) -> Result<CompiledPolicy, DaemonError> {
    policy::compile(policy, &host.compile_options(previous_ids)).map_err(DaemonError::Policy)
}

fn status_of(cfg: &Config, inner: &Inner) -> state::Status {
    let p = &inner.policy;
    state::Status {
        pid: std::process::id(),
        policy_path: policy::shown_paths(&cfg.policies),
        pin_dir: cfg.pin_dir.display().to_string(),
        metrics_addr: cfg.metrics_addr.to_string(),
        interfaces: inner.enforced.interfaces(),
        absent_interfaces: inner.enforced.absent(),
        generation: inner.generation,
        digest: p.digest.clone(),
        sources: p.sources.clone(),
        mode: datapath::mode_name(p.mode).to_owned(),
        unknown_zone: p.unknown_zone().to_owned(),
        quarantine_zone: p.quarantine.as_ref().map(|q| q.zone.clone()),
        devices: p
            .devices
            .iter()
            .map(|d| state::DeviceLabel {
                id: d.id,
                name: d.name.clone(),
                zone: d.zone.clone(),
                mac: d.mac.map(policy::model::fmt_mac),
                addresses: d.addresses.iter().map(ToString::to_string).collect(),
                inventory: d.inventory.clone(),
                audit: d.audit,
            })
            .collect(),
        rules: std::iter::once((0, "default".to_owned()))
            .chain(p.rules.iter().map(|r| (r.id, r.name.clone())))
            .collect(),
        names: p
            .names
            .iter()
            .map(|n| (n.id, n.pattern.to_string()))
            .collect(),
        last_reload: inner.last_reload.clone(),
        pending: inner
            .pending
            .as_ref()
            .map(|pending| pending.status(inner.generation, &p.digest)),
    }
}

/// Records ids, the applied view and the status; a failure here is logged, never fatal (the
/// policy is already enforcing).
fn record(cfg: &Config, inner: &Inner) {
    let results = [
        state::write(&cfg.state_dir, state::IDS_FILE, &inner.policy.ids),
        state::write(
            &cfg.state_dir,
            state::APPLIED_FILE,
            &policy::PlanView::from(&inner.policy),
        ),
        state::write(&cfg.state_dir, state::STATUS_FILE, &status_of(cfg, inner)),
        state::write(
            &cfg.state_dir,
            state::HOST_FILE,
            &state::HostRecord {
                pid: std::process::id(),
                generation: inner.generation,
                interfaces: inner.enforced.listed().0,
                absent: inner.enforced.absent(),
                context: inner.host.clone(),
            },
        ),
    ];
    for r in results {
        if let Err(e) = r {
            warn!(error = %error_chain(&e), "could not record state");
        }
    }
}

/// `err: cause: cause` on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// What a reload switches in, and for how long.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    /// The policy paths (`--policy`), or an operator's candidate (`enforcer apply`).
    pub paths: Vec<PathBuf>,
    /// Provisional for this long (`apply --confirm`, `--confirm-window`); `None`: for good, and
    /// kept as the last confirmed policy.
    pub window: Option<Duration>,
    /// `reload` or `apply` (see `state::PendingStatus::origin`).
    pub origin: &'static str,
}

impl Change {
    /// A reload of the policy files, provisional under `--confirm-window`.
    fn files(cfg: &Config) -> Self {
        Self {
            paths: cfg.policies.clone(),
            window: cfg.confirm_window,
            origin: "reload",
        }
    }
}

/// The policy a reload switched in.
pub(crate) struct Applied {
    pub generation: u64,
    pub digest: String,
    /// RFC 3339, when it is provisional.
    pub deadline: Option<String>,
}

/// Errors the status file's `last_reload.error` lists before "and N more errors".
const STATUS_ERRORS: usize = 20;

/// Reloads the policy: load, compile, switch, record. On any error (`host` included: the host
/// could not be read) the running policy stays. A provisional change keeps the confirmed policy
/// to revert to, and is refused while another is pending.
fn reload(
    cfg: &Config,
    host: Result<host::HostContext, host::HostError>,
    shared: &Mutex<Inner>,
    metrics: &metrics::Metrics,
    labels: &RwLock<events::Labels>,
    change: &Change,
) -> Result<Applied, DaemonError> {
    let span = tracing::info_span!("reload", policy = %policy::shown_paths(&change.paths), origin = change.origin);
    let _entered = span.enter();
    let Ok(mut inner) = shared.lock() else {
        error!("daemon state poisoned; reload skipped");
        return Err(DaemonError::Poisoned);
    };
    let mut compiled_with = None;
    let result = host.map_err(DaemonError::from).and_then(|host| {
        let (policy, files) = inner
            .reads
            .load_snapshot(&change.paths)
            .map_err(DaemonError::Policy)?;
        let (host, relisted) = interfaces::follow(&inner.enforced, &policy, host)?;
        let compiled = compile(&policy, &host, Some(inner.policy.ids.clone()))?;
        check_guards(&policy, &compiled, inner.generation, metrics)?;
        compiled_with = Some((host, relisted));
        Ok((compiled, files))
    });
    let result =
        result.and_then(|(compiled, files)| switch(cfg, &mut inner, compiled, files, change));
    let resize = result
        .as_ref()
        .ok()
        .filter(|_| inner.pending.is_none())
        .and_then(|_| flow_table_resize(&inner.dp, inner.policy.limits.flows));
    let outcome = match result {
        Ok(report) => {
            if inner.pending.is_none() {
                log_warnings(&inner.policy);
            }
            if let Some((host, relisted)) = compiled_with {
                inner.host = host;
                if let Some((ifaces, uplinks)) = relisted {
                    inner.enforced.relist(ifaces, uplinks);
                    attach::reconcile(cfg, &mut inner, metrics);
                }
            }
            applied(&mut inner, metrics, labels, &report);
            Ok(Applied {
                generation: inner.generation,
                digest: inner.policy.digest.clone(),
                deadline: inner
                    .pending
                    .as_ref()
                    .map(|p| crate::time::rfc3339(p.deadline_unix)),
            })
        }
        Err(e) => {
            refused(&mut inner, metrics, &e);
            Err(e)
        }
    };
    record(cfg, &inner);
    // Loading the program again (the verifier) takes a while: not while holding the state the
    // metrics server reads.
    drop(inner);
    if let Some((live, flows)) = resize
        && let Err(e) = resize_flow_table(cfg, shared, flows, metrics)
    {
        error!(live_capacity = live, limits_flows = flows, error = %error_chain(&e), "policy applied, but the flow table could not be re-created at the capacity of limits.flows; the next start tries again");
    }
    outcome
}

/// Switches `compiled` in, for good or provisionally as `change` says; on success it is
/// `inner.policy` (and a provisional one's confirmed policy is kept in `inner.pending`).
fn switch(
    cfg: &Config,
    inner: &mut Inner,
    mut compiled: CompiledPolicy,
    files: policy::PolicySnapshot,
    change: &Change,
) -> Result<datapath::ApplyReport, DaemonError> {
    if inner.pending.is_some() {
        return Err(DaemonError::Datapath(DatapathError::Pending));
    }
    let generation = inner.next_generation();
    let Some(window) = change.window else {
        let report = inner.dp.apply(&compiled, generation)?;
        inner.policy = compiled;
        inner.generation = generation;
        confirm::keep_confirmed(&cfg.state_dir, &files);
        return Ok(report);
    };
    compiled.ids = confirm::union_ids(&inner.policy.ids, &compiled.ids);
    let (revert_at_ns, deadline_unix) = confirm::deadline(window);
    let report = inner
        .dp
        .apply_provisional(&compiled, generation, revert_at_ns)?;
    let confirmed = std::mem::replace(&mut inner.policy, compiled);
    inner.pending = Some(confirm::Pending {
        confirmed,
        confirmed_generation: inner.generation,
        candidate: files,
        paths: policy::shown_paths(&change.paths),
        revert_at_ns,
        deadline_unix,
        origin: change.origin,
    });
    inner.generation = generation;
    Ok(report)
}

/// Logs, labels and counts a policy just switched in.
fn applied(
    inner: &mut Inner,
    metrics: &metrics::Metrics,
    labels: &RwLock<events::Labels>,
    report: &datapath::ApplyReport,
) {
    match &inner.pending {
        Some(p) => warn!(
            generation = report.generation,
            slot = report.slot,
            entries = report.entries,
            written = report.written,
            removed = report.cleared,
            ms = report.duration.as_millis(),
            digest = %inner.policy.digest,
            origin = p.origin,
            deadline = %crate::time::rfc3339(p.deadline_unix),
            confirmed_generation = p.confirmed_generation,
            "provisional policy applied: it reverts to the last confirmed policy at the deadline unless `enforcer confirm`"
        ),
        None => info!(
            generation = report.generation,
            slot = report.slot,
            entries = report.entries,
            written = report.written,
            removed = report.cleared,
            ms = report.duration.as_millis(),
            digest = %inner.policy.digest,
            "policy applied"
        ),
    }
    if let Ok(mut l) = labels.write() {
        *l = inner.labels();
    }
    confirm::show(metrics, inner.pending.as_ref());
    inner.last_reload = Some(state::ReloadOutcome {
        at: crate::time::unix_now(),
        result: "success".into(),
        error: None,
    });
    metrics.reloads.with_label_values(&["success"]).inc();
    metrics
        .generation
        .set(i64::try_from(inner.generation).unwrap_or(i64::MAX));
    #[expect(
        clippy::cast_precision_loss,
        reason = "a Unix timestamp fits an f64 exactly"
    )]
    metrics.last_reload.set(crate::time::unix_now() as f64);
}

/// Logs and counts a refused reload; the running policy stays.
fn refused(inner: &mut Inner, metrics: &metrics::Metrics, e: &DaemonError) {
    let message = match e {
        // A bounded summary: the status file must not grow with a hostile policy.
        DaemonError::Policy(p) => p.summary(STATUS_ERRORS),
        other => error_chain(other),
    };
    match e {
        // One record per problem, located by fields and on one line: journald keeps each
        // as one entry (the terminal's snippets are for `enforcer check`). The loader
        // keeps at most `policy::MAX_REPORTED`; the rest are one record's count.
        DaemonError::Policy(p) => {
            for d in p.errors() {
                error!(error = %d, file = %d.file, line = d.line, col = d.col, hint = d.hint.as_deref().unwrap_or_default(), generation = inner.generation, "policy rejected; the running policy stays");
            }
            let more = p.omitted().errors;
            if more > 0 {
                error!(
                    more_errors = more,
                    generation = inner.generation,
                    "policy rejected; {more} more errors not reported"
                );
            }
        }
        // Logged and counted where the guards ran (`check_guards`).
        DaemonError::Guard(_) => {}
        _ => {
            error!(error = %message, generation = inner.generation, "policy rejected; the running policy stays");
        }
    }
    inner.last_reload = Some(state::ReloadOutcome {
        at: crate::time::unix_now(),
        result: "failure".into(),
        error: Some(message),
    });
    metrics.reloads.with_label_values(&["failure"]).inc();
}

/// The check before every policy switch (a reload; an apply waiting for confirmation): the new
/// policy's guards on the real program ([`crate::probe::guard`]). A refusal is logged here, each
/// denied guard with its place, and counted in `enforcer_guard_failures_total`; the caller keeps
/// the running policy.
pub(crate) fn check_guards(
    policy: &policy::Policy,
    compiled: &CompiledPolicy,
    generation: u64,
    metrics: &metrics::Metrics,
) -> Result<(), DaemonError> {
    use crate::probe::guard::{GuardError, check_before_switch};
    let refused = match check_before_switch(policy, compiled) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    match &refused {
        GuardError::Denied(failed) => {
            metrics
                .guard_failures
                .inc_by(u64::try_from(failed.len()).unwrap_or(u64::MAX));
            for r in failed {
                error!(guard = %r.flow, at = %r.at, reason = r.failure.as_deref().unwrap_or_default(), generation, "policy refused: it denies a guarded flow; the running policy stays");
            }
        }
        GuardError::Datapath(e) => {
            metrics.guard_failures.inc();
            error!(error = %error_chain(e), generation, "policy refused: its guards could not be run; the running policy stays");
        }
    }
    Err(DaemonError::Guard(refused))
}

/// (live capacity, `limits.flows`) when the policy just applied asks for another flow-table
/// capacity than the live one.
fn flow_table_resize(dp: &Datapath, flows: u32) -> Option<(u32, u32)> {
    match datapath::flow_capacity(dp) {
        Ok(live) => (live != flows).then_some((live, flows)),
        Err(e) => {
            error!(limits_flows = flows, error = %error_chain(&e), "cannot read the flow table's capacity");
            None
        }
    }
}

/// What start-up checks and takes before anything on the machine changes.
struct Preflight {
    /// Held for the daemon's life: one daemon per state directory (and pin directory), or a
    /// second would fight over the slots.
    lock: state::Lock,
    metrics: Arc<metrics::Metrics>,
    listener: tokio::net::TcpListener,
    control: tokio::net::UnixListener,
    host: host::HostContext,
    previous_ids: Option<policy::IdTable>,
    /// The policy as loaded to find the interfaces; compiled once the host is read.
    policy: policy::Policy,
    /// Its files as read, kept when it becomes the confirmed policy.
    files: policy::PolicySnapshot,
    /// What reading them gave, handed to the daemon's state for its reloads.
    reads: policy::ReadCache,
    /// `cfg` with the interfaces to enforce on resolved.
    cfg: Config,
}

/// Checks everything that can fail before the first attach (privileges, interfaces, the state
/// directory, the metrics address, the host's addresses), so a start that fails leaves the
/// machine as it was: under `Restart=` a daemon that cannot serve never attaches and exits.
async fn preflight(cfg: &Config) -> Result<Preflight, DaemonError> {
    if !host::is_root() {
        return Err(DaemonError::NotRoot);
    }
    http::raise_open_file_limit();
    let mut reads = policy::ReadCache::default();
    let (policy, files) = reads
        .load_snapshot(&cfg.policies)
        .map_err(DaemonError::Policy)?;
    let cfg = &resolve_interfaces(cfg, &policy)?;
    // An interface the policy lists may come later (attached when it appears); one named by
    // --iface for a quick try must be there.
    if cfg.uplinks == Uplinks::Guessed
        && let Some(missing) = cfg.ifaces.iter().find(|i| !host::interface_exists(i))
    {
        return Err(DaemonError::NoInterface(missing.clone()));
    }
    let lock = state::lock(&cfg.state_dir)?;
    let metrics = Arc::new(metrics::Metrics::register(cfg.metrics_max_devices)?);
    let listener = http::listen(cfg.metrics_addr).map_err(|source| DaemonError::MetricsServer {
        addr: cfg.metrics_addr,
        source,
    })?;
    let control = control::bind(&cfg.control_socket).await?;
    let host = host::HostContext::read(&cfg.ifaces, &cfg.uplinks).await?;
    host::ensure_bpffs(&cfg.pin_dir).map_err(DaemonError::Bpffs)?;
    let previous_ids = state::read_ids(&cfg.state_dir).unwrap_or_else(|e| {
        warn!(error = %error_chain(&e), "ignoring unreadable state; ids start afresh");
        None
    });
    Ok(Preflight {
        lock,
        metrics,
        listener,
        control,
        host,
        previous_ids,
        policy,
        files,
        reads,
        cfg: cfg.clone(),
    })
}

/// Compiles, loads (adopting the pinned maps), applies and attaches: from here on the policy
/// enforces. Under `--confirm-window` the policy is the last confirmed one
/// ([`confirm::starting_point`]) and policy files that hold another are switched in
/// provisionally after it, with a fresh window.
fn start_enforcing(pre: &mut Preflight) -> Result<Inner, DaemonError> {
    let cfg = &pre.cfg;
    if !pre.host.uplinks.is_empty() {
        let how = match cfg.uplinks {
            Uplinks::Guessed => "uplinks (they carry a default route)",
            Uplinks::Declared(_) => "uplinks (role: uplink in the policy)",
        };
        info!(
            uplinks = ?pre.host.uplinks,
            "{how}: addresses on their segments are routed traffic, not devices"
        );
    }
    let mut start = confirm::starting_point(
        &cfg.state_dir,
        cfg.confirm_window,
        pre.policy.clone(),
        pre.files.clone(),
    );
    let compiled = match compile(&start.base, &pre.host, pre.previous_ids.clone()) {
        Ok(c) => c,
        Err(e) if start.candidate.is_some() => {
            error!(error = %error_chain(&e), "the kept confirmed policy does not compile against this host; starting from the policy files");
            start = confirm::Start {
                base: pre.policy.clone(),
                base_files: pre.files.clone(),
                candidate: None,
            };
            compile(&start.base, &pre.host, pre.previous_ids.clone())?
        }
        Err(e) => return Err(e),
    };
    log_warnings(&compiled);
    let mut dp = Datapath::load_with_flows(Some(&cfg.pin_dir), compiled.limits.flows)?;
    log_flow_table_resize(&dp);
    confirm::settle_left_pending(&mut dp, &pre.metrics)?;
    let (_, live) = datapath::live_config(&dp)?;
    let generation = live.generation + 1;
    let report = dp.apply(&compiled, generation)?;
    info!(generation, entries = report.entries, ms = report.duration.as_millis(), digest = %compiled.digest, "policy applied");
    confirm::keep_confirmed(&cfg.state_dir, &start.base_files);
    let mut enforced = attach::Enforced::new(cfg);
    enforced.attach_present(cfg, &mut dp, &pre.metrics)?;
    let mut inner = Inner {
        dp,
        policy: compiled,
        generation,
        enforced,
        host: pre.host.clone(),
        last_reload: Some(state::ReloadOutcome {
            at: crate::time::unix_now(),
            result: "success".into(),
            error: None,
        }),
        pending: None,
        spent_generation: generation,
        reads: std::mem::take(&mut pre.reads),
    };
    if let Some((policy, files)) = start.candidate {
        confirm::start_candidate(cfg, &pre.host, &mut inner, &policy, files);
    }
    Ok(inner)
}

/// Says, once, that the flow table was re-created at another capacity.
fn log_flow_table_resize(dp: &Datapath) {
    if let Some(r) = dp.flow_table_resized() {
        warn!(
            old_capacity = r.old,
            new_capacity = r.new,
            "flow table re-created at the capacity of limits.flows; its flows are learned again (TCP through loose pickup, UDP and ICMP judged again at their next packet)"
        );
    }
}

/// After a reload applied a policy whose `limits.flows` differs from the live flow table's
/// capacity: loads the program again with new flow maps (the other maps adopted), and swaps it on
/// every pinned link (atomic per link, so no interface goes unenforced). The program it replaces
/// keeps its flow maps until its last link moves.
fn resize_flow_table(
    cfg: &Config,
    shared: &Mutex<Inner>,
    flows: u32,
    metrics: &metrics::Metrics,
) -> Result<(), DaemonError> {
    let mut dp = Datapath::load_with_flows(Some(&cfg.pin_dir), flows)?;
    let Ok(mut inner) = shared.lock() else {
        error!("daemon state poisoned; flow table not switched");
        return Ok(());
    };
    dp.take_slots_from(&mut inner.dp);
    // From here the new datapath is the daemon's: links it has switched use its maps.
    let previous = std::mem::replace(&mut inner.dp, dp);
    let inner = &mut *inner;
    let attached = inner.enforced.attach_present(cfg, &mut inner.dp, metrics);
    drop(previous);
    attached?;
    log_flow_table_resize(&inner.dp);
    record(cfg, inner);
    Ok(())
}

/// Logs each warning of a policy being applied as one record, its hint a field of it (a second
/// line would be a separate journald record).
fn log_warnings(compiled: &CompiledPolicy) {
    for w in &compiled.warnings {
        warn!(warning = %w, hint = w.hint.as_deref().unwrap_or_default(), "policy warning");
    }
}

/// Runs until `shutdown` completes. Enforcement outlives the return (pinned links and maps).
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let status_tcp = status_page::bind(cfg.status_addr).await?;
    let mut pre = preflight(&cfg).await?;
    let mut inner = start_enforcing(&mut pre)?;
    let resolver = resolver::start_for(&inner, &pre.metrics).await?;
    let Preflight {
        lock: _lock,
        metrics,
        listener,
        control,
        cfg,
        ..
    } = pre;
    let ring = events::take_ring(&mut inner.dp, enforcer_common::event::EVENTS_MAP)?;
    let inventory = crate::inventory::collect::task(&mut inner.dp, &cfg.state_dir, &metrics)?;
    let labels = Arc::new(RwLock::new(inner.labels()));
    metrics.init(inner.generation);
    confirm::show(&metrics, inner.pending.as_ref());
    record(&cfg, &inner);
    // Type=notify: the policy is enforced now (outside systemd this does nothing).
    notify_systemd(sd_notify::NotifyState::Ready);
    let shared = Arc::new(Mutex::new(inner));
    info!(addr = %cfg.metrics_addr, "serving metrics");
    info!(socket = %cfg.control_socket.display(), "serving the control socket");
    let (watchers, _) = tokio::sync::broadcast::channel(control::WATCH_BUFFER);
    let (operations, operations_rx) = mpsc::channel(1);
    let (audits, audits_rx) = observe::audit_channel();
    let page = status_page::Page::start(&cfg, status_tcp, &watchers);
    let tasks = [
        tokio::spawn(http::serve(
            listener,
            Arc::clone(&shared),
            Arc::clone(&metrics),
        ))
        .abort_handle(),
        tokio::spawn(events::run(
            ring,
            Arc::clone(&labels),
            events::Sinks {
                metrics: Arc::clone(&metrics),
                watchers: watchers.clone(),
                audits,
            },
        ))
        .abort_handle(),
        tokio::spawn(events::watch_discoveries(
            Arc::clone(&shared),
            watchers.clone(),
        ))
        .abort_handle(),
        tokio::spawn(control::serve(control, watchers, operations, page)).abort_handle(),
        tokio::spawn(inventory).abort_handle(),
        tokio::spawn(observe::run(
            Arc::clone(&shared),
            cfg.state_dir.clone(),
            audits_rx,
        ))
        .abort_handle(),
    ];
    let follow = resolver
        .map(|r| tokio::spawn(resolver::follow_policy(r, Arc::clone(&shared))).abort_handle());
    let reloader = reloader::Reloader {
        cfg: cfg.clone(),
        shared,
        metrics,
        labels,
    };
    let result = reloader.serve(shutdown, operations_rx).await;
    notify_systemd(sd_notify::NotifyState::Stopping);
    info!("shutting down; enforcement stays attached (pinned) until `enforcer detach`");
    for t in tasks.into_iter().chain(follow) {
        t.abort();
    }
    let _gone_already = std::fs::remove_file(&cfg.control_socket);
    result
}

/// Tells systemd (when it started us with NOTIFY_SOCKET) about a state change.
fn notify_systemd(state: sd_notify::NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(false, &[state]) {
        warn!(error = %e, "cannot notify systemd");
    }
}
