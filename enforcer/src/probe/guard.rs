//! Guards: flows no policy may deny, checked on the real program before every switch to a policy
//! (each daemon reload, `enforcer test`, `enforcer plan` when it may load BPF). A policy that denies
//! one is refused like a broken one.

use super::{Labels, ProbeResult, Site, run};
use crate::{
    datapath::{Datapath, DatapathError},
    policy::{CompiledPolicy, Policy, model::Probe},
};

/// Why a policy may not be switched to.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("the policy denies {} guarded flow(s): {}", .0.len(), summary(.0))]
    Denied(Vec<ProbeResult>),
    #[error("run the guards through the XDP program")]
    Datapath(#[from] DatapathError),
}

fn summary(failed: &[ProbeResult]) -> String {
    failed
        .iter()
        .map(|r| {
            format!(
                "{} at {} ({})",
                r.flow,
                r.at,
                r.failure.as_deref().unwrap_or("failed")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Runs `probes` on a private, unpinned instance of the real program with `compiled` applied: it
/// shares nothing with a running enforcer.
///
/// # Errors
/// When the program cannot be loaded (no CAP_BPF), the policy cannot be applied, or a run fails.
pub fn run_private(
    probes: &[Probe],
    compiled: &CompiledPolicy,
) -> Result<Vec<ProbeResult>, DatapathError> {
    let mut dp = private_instance(compiled)?;
    let (site, labels) = (Site::of(compiled), Labels::of(compiled));
    run(probes, &site, &labels, |frame, request| {
        dp.explain(frame, request)
    })
}

/// A private, unpinned instance of the real program (its explain entry point only) with
/// `compiled` applied: it shares nothing with a running enforcer.
///
/// # Errors
/// When the program cannot be loaded (no CAP_BPF) or the policy cannot be applied.
pub fn private_instance(compiled: &CompiledPolicy) -> Result<Datapath, DatapathError> {
    let mut dp = Datapath::load_for_probes()?;
    dp.apply(compiled, 1)?;
    Ok(dp)
}

/// The check before every policy switch: `Ok` when `compiled` (of `policy`) allows every guard.
/// Loads nothing when the policy has no guards.
///
/// # Errors
/// [`GuardError::Denied`] with each denied guard; [`GuardError::Datapath`] when they could not be
/// run.
pub fn check_before_switch(policy: &Policy, compiled: &CompiledPolicy) -> Result<(), GuardError> {
    if policy.guards.is_empty() {
        return Ok(());
    }
    let failed: Vec<ProbeResult> = run_private(&policy.guards, compiled)?
        .into_iter()
        .filter(|r| !r.passed)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(GuardError::Denied(failed))
    }
}
