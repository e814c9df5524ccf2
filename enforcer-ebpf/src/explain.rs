//! The read-only entry point: `enforcer test`, `enforcer explain` and the guards run a probe frame
//! through it (`BPF_PROG_TEST_RUN`) to learn what the live policy says about it.
//!
//! It runs the enforcing program's own steps (parse, then identity and verdict in
//! `policy::judge`) on the same maps, and stops where `enforce` starts acting on the verdict: it
//! writes no counter, flow, fragment, quarantine, discovery entry, event or budget. The frame is
//! judged as the first packet of a new flow (the flow table is not consulted), and in audit mode as
//! if enforced; live quarantine is read as the enforcing program reads it. The answer goes to
//! `EXPLAIN`, the one map this program writes, which is never pinned (see
//! `enforcer_common::explain`).

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use enforcer_common::{
    Verdict,
    explain::{
        EXPLAIN_F_AUDIT, EXPLAIN_F_DST_QUARANTINED, EXPLAIN_F_ROUTER_SOURCE,
        EXPLAIN_F_SRC_QUARANTINED, EXPLAIN_F_SRC_SPOOFED, EXPLAIN_F_SRC_UNKNOWN,
        EXPLAIN_REQ_ROUTER_SOURCE, ExplainOutcome, Explanation,
    },
};

use crate::{
    Scratch, live_slot,
    maps::{CONFIG, CONTROL, EXPLAIN, SCRATCH},
    now_ns, parse,
    policy::{Judgement, Tuple, is_quarantined, judge, judge_router},
};

/// Returns the action the enforcing program would take on a new flow of this frame (`XDP_PASS`
/// for allowed and audited, `XDP_DROP` for denied and unjudged), for tests; the answer itself is
/// in `EXPLAIN`.
#[xdp]
pub fn enforcer_explain(ctx: XdpContext) -> u32 {
    let (Some(out), Some(scratch)) = (EXPLAIN.get_ptr_mut(0), SCRATCH.get_ptr_mut(0)) else {
        // Cannot happen (one-entry arrays always have entry 0).
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: this instance's own one-row arrays; a test run is the only reader and writer while
    // it runs, and XDP runs with preemption disabled.
    let (out, scratch) = unsafe { (&mut *out, &mut *scratch) };
    explain(&ctx, scratch, out);
    let passes = out.outcome() == ExplainOutcome::Judged
        && (out.verdict == Verdict::Allow as u8 || out.has(EXPLAIN_F_AUDIT));
    if passes {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}

#[inline(always)]
fn explain(ctx: &XdpContext, scratch: &mut Scratch, out: &mut Explanation) {
    *out = Explanation::request(out.request);
    if parse::parse(ctx, &mut scratch.pkt).is_err() {
        out.outcome = ExplainOutcome::NotJudged as u8;
        return;
    }
    let Some(control) = CONTROL.get(0) else {
        out.outcome = ExplainOutcome::NoPolicy as u8;
        return;
    };
    // The slot in force, as the enforcing program picks it: past a provisional policy's deadline,
    // the last confirmed policy's.
    let slot = live_slot(control);
    let Some(cfg) = CONFIG.get(u32::from(slot)) else {
        out.outcome = ExplainOutcome::NoPolicy as u8;
        return;
    };
    out.slot = slot;
    out.generation = cfg.generation;
    if cfg.generation == 0 {
        out.outcome = ExplainOutcome::NoPolicy as u8;
        return;
    }
    let now = now_ns();
    scratch.tuple = Tuple::from(&scratch.pkt);
    let router = out.request & EXPLAIN_REQ_ROUTER_SOURCE != 0;
    let j = if router {
        judge_router(slot, cfg, now, &scratch.tuple)
    } else {
        let mut j = judge(slot, cfg, now, &scratch.tuple);
        crate::names::apply(slot, cfg, now, &scratch.tuple, &mut j);
        j
    };
    record(out, &j);
    let quarantining = cfg.quarantine_class != 0;
    let mut flags = out.flags;
    if router {
        flags |= EXPLAIN_F_ROUTER_SOURCE;
    }
    if quarantining && is_quarantined(j.src.device, now) {
        flags |= EXPLAIN_F_SRC_QUARANTINED;
    }
    if quarantining && is_quarantined(j.dst.device, now) {
        flags |= EXPLAIN_F_DST_QUARANTINED;
    }
    // The source's mode (`mode:` of its device or zone), as the enforcing program applies it.
    if j.src.audit() {
        flags |= EXPLAIN_F_AUDIT;
    }
    out.flags = flags;
}

/// The judgement into the answer row.
#[inline(always)]
fn record(out: &mut Explanation, j: &Judgement) {
    out.outcome = ExplainOutcome::Judged as u8;
    out.rule = j.rule;
    if j.allow {
        out.verdict = Verdict::Allow as u8;
        out.reason = 0;
    } else {
        out.verdict = Verdict::Deny as u8;
        out.reason = j.reason as u8;
    }
    out.src_device = j.src.device;
    out.dst_device = j.dst.device;
    out.src_class = j.src.class;
    out.dst_class = j.dst.class;
    out.dst_flags = j.dst.flags;
    let mut flags = 0;
    if j.src.spoofed {
        flags |= EXPLAIN_F_SRC_SPOOFED;
    }
    if j.src.unknown() {
        flags |= EXPLAIN_F_SRC_UNKNOWN;
    }
    out.flags = flags;
}
