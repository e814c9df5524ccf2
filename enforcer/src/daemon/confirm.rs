//! A policy change that reverts by itself: `enforcer apply --confirm`, `run --confirm-window`.
//!
//! A provisional policy is written and switched in as a reload is, with a deadline in the
//! live-policy word (`Control::revert_at_ns`); the slot it left keeps the last confirmed policy.
//! The program itself judges with that slot once the deadline passes, so the revert happens on
//! time whatever becomes of this process. The daemon then makes it permanent ([`revert`]), or
//! `enforcer confirm` clears the deadline first ([`confirm`]).
//!
//! The last confirmed policy is kept in the state directory as its files
//! ([`state::CONFIRMED_FILE`], a `PolicySnapshot`), not compiled: a start compiles it against the
//! host as it is then (addresses change across a reboot), exactly as it compiles the policy files,
//! and the snapshot is as small as the files. Under `--confirm-window` every start enforces it
//! first ([`starting_point`]) and policy files that hold something else are a new provisional
//! candidate. Without a window a change of the files is for good as soon as it is made (a reload
//! applies it so), so files changed while the daemon was down are what a reload would have made
//! them: the policy. Either way a candidate left pending in the pinned maps is never adopted
//! ([`settle_left_pending`]).

use std::{
    path::Path,
    sync::{Mutex, RwLock},
    time::Duration,
};

use tracing::{error, info, warn};

use super::{Config, Inner, control::OperationAnswer, error_chain, events, metrics, record, state};
use crate::{
    datapath::{self, Confirmation},
    exit,
    policy::{self, CompiledPolicy, IdTable, PolicySnapshot},
};

/// A provisional policy being enforced (the daemon's `Inner::policy`) until its deadline.
pub(crate) struct Pending {
    /// What a revert restores.
    pub confirmed: CompiledPolicy,
    pub confirmed_generation: u64,
    /// The candidate's files, kept as the confirmed policy when it is confirmed.
    pub candidate: PolicySnapshot,
    /// Where it was read from, for `status`.
    pub paths: String,
    /// The deadline as the program reads it (`datapath::monotonic_ns`), and as Unix time.
    pub revert_at_ns: u64,
    pub deadline_unix: u64,
    /// `apply`, `reload` or `start` (see `state::PendingStatus::origin`).
    pub origin: &'static str,
}

impl Pending {
    /// Time left until the deadline.
    pub fn left(&self) -> Duration {
        Duration::from_nanos(self.revert_at_ns.saturating_sub(datapath::monotonic_ns()))
    }

    pub fn status(&self, generation: u64, digest: &str) -> state::PendingStatus {
        state::PendingStatus {
            origin: self.origin.to_owned(),
            generation,
            digest: digest.to_owned(),
            paths: self.paths.clone(),
            deadline: crate::time::rfc3339(self.deadline_unix),
            deadline_unix: self.deadline_unix,
            confirmed_generation: self.confirmed_generation,
            confirmed_digest: self.confirmed.digest.clone(),
        }
    }
}

/// The deadline of a window starting now: (monotonic ns for the program, Unix seconds).
pub fn deadline(window: Duration) -> (u64, u64) {
    let ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
    (
        datapath::monotonic_ns().saturating_add(ns),
        crate::time::unix_now().saturating_add(window.as_secs()),
    )
}

/// Both policies' ids. A candidate is compiled against the confirmed policy's ids, so a new name
/// never takes an id the confirmed policy uses: the two never disagree on an id, and the union
/// keeps both reserved, so counters and quarantine state stay with their names whichever of the
/// two is enforced, and after either is dropped.
pub fn union_ids(confirmed: &IdTable, candidate: &IdTable) -> IdTable {
    let both = |a: &std::collections::BTreeMap<String, u32>,
                b: &std::collections::BTreeMap<String, u32>| {
        let mut out = a.clone();
        out.extend(b.iter().map(|(n, i)| (n.clone(), *i)));
        out
    };
    IdTable {
        devices: both(&confirmed.devices, &candidate.devices),
        rules: both(&confirmed.rules, &candidate.rules),
        networks: both(&confirmed.networks, &candidate.networks),
        names: both(&confirmed.names, &candidate.names),
    }
}

/// Names for the events of both policies: an event is named by the policy that was live when the
/// program sent it, which, around a switch or a revert, may be either (see [`union_ids`]).
pub fn both_labels(current: &CompiledPolicy, other: &CompiledPolicy) -> events::Labels {
    let mut labels = events::Labels::of(other);
    let current = events::Labels::of(current);
    labels.devices.extend(current.devices);
    labels.rules.extend(current.rules);
    labels.unknown_zone = current.unknown_zone;
    labels
}

/// Keeps `snapshot` as the last confirmed policy. A failure is logged: the policy enforces, but a
/// start would begin from the one kept before.
pub fn keep_confirmed(state_dir: &Path, snapshot: &PolicySnapshot) {
    if let Err(e) = state::write(state_dir, state::CONFIRMED_FILE, snapshot) {
        error!(error = %error_chain(&e), "could not keep the confirmed policy in the state directory; a restart would start from the one kept before");
    }
}

/// The metrics of the pending candidate, or of none.
pub fn show(metrics: &metrics::Metrics, pending: Option<&Pending>) {
    metrics.confirm.pending.set(i64::from(pending.is_some()));
    #[expect(
        clippy::cast_precision_loss,
        reason = "a Unix timestamp fits an f64 exactly"
    )]
    metrics
        .confirm
        .deadline
        .set(pending.map_or(0.0, |p| p.deadline_unix as f64));
}

/// Where a start begins: the policy it enforces for good, and policy files to enforce
/// provisionally (for `window`) when they hold something else.
pub(super) struct Start {
    pub base: policy::Policy,
    pub base_files: PolicySnapshot,
    pub candidate: Option<(policy::Policy, PolicySnapshot)>,
}

/// Under `--confirm-window` (`window`), the last confirmed policy when one is kept, with the
/// policy files as a candidate when they differ from it; the files alone otherwise (a first
/// start: nothing else was ever confirmed; or no window: the files are the policy).
pub(super) fn starting_point(
    state_dir: &Path,
    window: Option<Duration>,
    files: policy::Policy,
    files_snapshot: PolicySnapshot,
) -> Start {
    let Some(window) = window else {
        return Start {
            base: files,
            base_files: files_snapshot,
            candidate: None,
        };
    };
    let kept: Option<PolicySnapshot> = state::read(state_dir, state::CONFIRMED_FILE)
        .unwrap_or_else(|e| {
            error!(error = %error_chain(&e), "the kept confirmed policy is unreadable; starting from the policy files");
            None
        });
    let confirmed = kept.and_then(|snapshot| match snapshot.load() {
        Ok(p) => Some((p, snapshot)),
        Err(e) => {
            error!(error = %e.summary(5), "the kept confirmed policy no longer loads; starting from the policy files");
            None
        }
    });
    match confirmed {
        Some((base, base_files)) if base.digest != files.digest => {
            warn!(
                confirmed_digest = %base.digest,
                files_digest = %files.digest,
                window_s = window.as_secs(),
                "the policy files differ from the last confirmed policy: starting from the confirmed policy; the files are a provisional candidate, reverted at the deadline unless `enforcer confirm`"
            );
            Start {
                base,
                base_files,
                candidate: Some((files, files_snapshot)),
            }
        }
        _ => Start {
            base: files,
            base_files: files_snapshot,
            candidate: None,
        },
    }
}

/// A candidate an earlier daemon left pending in the pinned maps is never adopted: the program is
/// set back to the confirmed policy's slot for good before anything is applied (the start then
/// applies the last confirmed policy afresh). Logged and counted as a revert.
pub(super) fn settle_left_pending(
    dp: &mut datapath::Datapath,
    metrics: &metrics::Metrics,
) -> Result<(), super::DaemonError> {
    let Some(left) = dp.revert_provisional()? else {
        return Ok(());
    };
    let expired = left.reverted_at(datapath::monotonic_ns());
    metrics.confirm.reverts.inc();
    warn!(
        window_passed = expired,
        "a provisional policy left pending by an earlier daemon is not enforced: starting from the last confirmed policy"
    );
    Ok(())
}

/// At start under `--confirm-window`, policy files that differ from the last confirmed policy:
/// switched in provisionally for the window. A failure leaves the confirmed policy enforcing,
/// logged.
pub(super) fn start_candidate(
    cfg: &Config,
    host: &super::host::HostContext,
    inner: &mut Inner,
    policy: &policy::Policy,
    files: PolicySnapshot,
) {
    let change = super::Change {
        origin: "start",
        ..super::Change::files(cfg)
    };
    let switched = super::compile(policy, host, Some(inner.policy.ids.clone()))
        .and_then(|compiled| super::switch(cfg, inner, compiled, files, &change));
    match switched {
        Ok(report) => info!(
            generation = report.generation,
            entries = report.entries,
            deadline = %inner.pending.as_ref().map_or_else(String::new, |p| crate::time::rfc3339(p.deadline_unix)),
            "provisional policy applied"
        ),
        Err(e) => {
            error!(error = %error_chain(&e), "the policy files could not be applied provisionally; the last confirmed policy enforces");
        }
    }
}

/// Makes the kernel's revert of the pending candidate permanent: the confirmed policy's slot live
/// for good, the candidate's cleared, the confirmed policy back in memory. Logged and counted.
pub(super) fn revert(
    cfg: &Config,
    inner: &mut Inner,
    metrics: &metrics::Metrics,
    labels: &RwLock<events::Labels>,
) {
    let Some(p) = inner.pending.take() else {
        return;
    };
    if let Err(e) = inner.dp.revert_provisional() {
        // The program goes back by itself at the deadline; only the permanent word is missing,
        // and the next switch is refused until a start settles it.
        error!(error = %error_chain(&e), "could not make the revert permanent in the live-policy word");
    }
    let candidate = std::mem::replace(&mut inner.policy, p.confirmed);
    inner.policy.ids = union_ids(&inner.policy.ids, &candidate.ids);
    let reverted = inner.generation;
    inner.generation = p.confirmed_generation;
    if let Ok(mut l) = labels.write() {
        *l = both_labels(&inner.policy, &candidate);
    }
    metrics.confirm.reverts.inc();
    show(metrics, None);
    metrics
        .generation
        .set(i64::try_from(inner.generation).unwrap_or(i64::MAX));
    warn!(
        reverted_generation = reverted,
        reverted_digest = %candidate.digest,
        origin = p.origin,
        deadline = %crate::time::rfc3339(p.deadline_unix),
        generation = inner.generation,
        digest = %inner.policy.digest,
        "provisional policy not confirmed in time: reverted to the last confirmed policy"
    );
    record(cfg, inner);
}

/// `enforcer confirm`: the pending candidate becomes the policy for good, and is kept as the last
/// confirmed one. Too late (the deadline passed) it is reverted instead, and the answer says so.
pub(super) fn confirm(
    cfg: &Config,
    shared: &Mutex<Inner>,
    metrics: &metrics::Metrics,
    labels: &RwLock<events::Labels>,
) -> OperationAnswer {
    let Ok(mut inner) = shared.lock() else {
        return OperationAnswer::refused(exit::INTERNAL, "daemon state poisoned");
    };
    let Some(pending) = inner.pending.take() else {
        return OperationAnswer::refused(
            exit::APPLY_FAILED,
            "nothing to confirm: no provisional policy is pending",
        );
    };
    match inner.dp.confirm_provisional() {
        // Nothing pending in the kernel: the candidate is live with no deadline already.
        Ok(Confirmation::Confirmed | Confirmation::NothingPending) => {
            keep_confirmed(&cfg.state_dir, &pending.candidate);
            if let Ok(mut l) = labels.write() {
                *l = events::Labels::of(&inner.policy);
            }
            show(metrics, None);
            info!(generation = inner.generation, digest = %inner.policy.digest, origin = pending.origin, "provisional policy confirmed: it is the policy for good");
            record(cfg, &inner);
            OperationAnswer {
                exit: exit::OK,
                message: format!(
                    "generation {} confirmed: it is the policy for good",
                    inner.generation
                ),
                generation: Some(inner.generation),
                digest: Some(inner.policy.digest.clone()),
                ..OperationAnswer::default()
            }
        }
        Ok(Confirmation::Expired) => {
            inner.pending = Some(pending);
            revert(cfg, &mut inner, metrics, labels);
            OperationAnswer {
                exit: exit::APPLY_FAILED,
                message: format!(
                    "too late: the window had passed, so the last confirmed policy (generation {}) enforces again",
                    inner.generation
                ),
                generation: Some(inner.generation),
                digest: Some(inner.policy.digest.clone()),
                ..OperationAnswer::default()
            }
        }
        Err(e) => {
            inner.pending = Some(pending);
            OperationAnswer::refused(exit::APPLY_FAILED, error_chain(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(pairs: &[(&str, u32)]) -> IdTable {
        IdTable {
            rules: pairs.iter().map(|(n, i)| ((*n).to_owned(), *i)).collect(),
            ..IdTable::default()
        }
    }

    #[test]
    fn the_union_of_ids_keeps_the_confirmed_and_the_candidate_names() {
        let confirmed = ids(&[("ssh", 1), ("web", 2)]);
        let candidate = ids(&[("web", 2), ("dns", 3)]);
        let both = union_ids(&confirmed, &candidate);
        assert_eq!(both, ids(&[("ssh", 1), ("web", 2), ("dns", 3)]));
    }

    #[test]
    fn a_window_ends_that_far_in_both_clocks() {
        let before = (datapath::monotonic_ns(), crate::time::unix_now());
        let (mono, unix) = deadline(Duration::from_secs(300));
        assert!(mono >= before.0 + 300_000_000_000);
        assert!(mono < before.0 + 301_000_000_000);
        assert!((before.1 + 300..=before.1 + 301).contains(&unix));
    }
}
