//! Part 1b: what the egress program (issue 11) costs, through `BPF_PROG_TEST_RUN` with a
//! `__sk_buff` context, against the empty TC program, interleaved in every round.
//!
//! - forwarded: a packet with an ingress interface (`ingress_ifindex` != 0), the router's bulk
//!   traffic: the program only tells it from the router's own and passes it. Target: at most 2x
//!   the empty program.
//! - own, remembered flow: a packet the router sends on a flow it already opened (a flow hit).

use anyhow::{Context as _, Result};
use enforcer::datapath::{Datapath, bench::TC_PASS};
use enforcer_common::EGRESS_PROGRAM;
use serde_json::{Value, json};

use super::stats;
use crate::frame::Frame;

/// TC verdict both programs give a packet they let through (`TCX_NEXT`).
const TC_NEXT: i32 = -1;

/// The ratio of each round's egress time to its empty-program time, and both samples.
fn measure(dp: &Datapath, frame: &[u8], ifindex: u32, rounds: usize, repeat: u32) -> Result<Value> {
    let (mut egress, mut empty, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let e = dp.time_run_tc(TC_PASS, frame, ifindex, repeat)?.as_nanos() as f64;
        let g = dp
            .time_run_tc(EGRESS_PROGRAM, frame, ifindex, repeat)?
            .as_nanos() as f64;
        empty.push(e);
        egress.push(g);
        ratios.push(g / e.max(1.0));
    }
    Ok(json!({
        "egress_ns": stats::summary(&egress),
        "empty_ns": stats::summary(&empty),
        "ratio_median": (stats::median(&ratios) * 100.0).round() / 100.0,
    }))
}

/// Measures both classes on a datapath with a policy applied whose `router` may open TCP/443 to
/// `93.184.216.34` (the synthetic policies' internet) — the forwarded class does not depend on it.
pub fn run(dp: &Datapath, rounds: usize, repeat: u32) -> Result<Vec<Value>> {
    let forwarded = Frame::eth([2, 0, 0, 0, 0, 1])
        .ipv4("10.1.3.10", "93.184.216.34")
        .tcp(40000, 443)
        .build();
    let (verdict, _) = dp.test_run_tc(EGRESS_PROGRAM, &forwarded, 3)?;
    anyhow::ensure!(
        verdict == TC_NEXT,
        "a forwarded packet got {verdict}, not TCX_NEXT"
    );
    let mut rows = Vec::new();
    let mut row = measure(dp, &forwarded, 3, rounds, repeat).context("forwarded")?;
    row["class"] = json!("forwarded");
    rows.push(row);
    let own = Frame::eth([2, 0, 0, 0, 0, 1])
        .ipv4("192.0.2.1", "93.184.216.34")
        .tcp(40000, 443)
        .build();
    let (verdict, _) = dp.test_run_tc(EGRESS_PROGRAM, &own, 0)?;
    let mut row = measure(dp, &own, 0, rounds, repeat).context("own")?;
    row["class"] = json!(if verdict == TC_NEXT {
        "own, remembered flow"
    } else {
        "own, denied (no router rule)"
    });
    rows.push(row);
    Ok(rows)
}
