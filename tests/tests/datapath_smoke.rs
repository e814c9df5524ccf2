//! First light: the program loads, verifies, and a policy compiled from YAML gives both verdicts;
//! repeated applies alternate slots and say truthfully what they wrote and cleared.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly, with what it expected as the message"
)]

use enforcer::{
    datapath::Datapath,
    policy::{CompileOptions, CompiledPolicy, compile, parse_str},
};
use enforcer_tests::{frame::Frame, kernel::require_root};

const CAM: [u8; 6] = [2, 0, 0, 0, 1, 0x10];
const NVR: [u8; 6] = [2, 0, 0, 0, 2, 0x10];

/// A camera and a recorder; the camera may reach the recorder on tcp/554 only, and its cloud by
/// name (so every policy map, `NAMES` too, has entries).
const POLICY: &str = "\
zones: {cameras: {}, recorders: {}, quarantine: {}}
networks: {internet: [0.0.0.0/0, \"::/0\"]}
devices:
  cam: {zone: cameras, mac: \"02:00:00:00:01:10\", addresses: [10.1.1.10, \"fd00:1:1::10\"]}
  nvr: {zone: recorders, mac: \"02:00:00:00:02:10\", addresses: [10.1.2.10, \"fd00:1:2::10\"]}
dns: {upstream: [192.0.2.53]}
rules:
  - {name: cameras-to-recorders, from: zone:cameras, to: zone:recorders, allow: [tcp/554]}
  - {name: cameras-cloud, from: zone:cameras, to: dns:cloud.example, allow: [tcp/443]}
";

fn policy() -> CompiledPolicy {
    let policy = parse_str("smoke.yaml", POLICY).unwrap_or_else(|e| panic!("fixture: {e}"));
    compile(&policy, &CompileOptions::default()).unwrap_or_else(|e| panic!("compile: {e}"))
}

#[test]
fn program_loads_and_judges_both_ways() {
    if !require_root("program_loads_and_judges_both_ways") {
        return;
    }
    let mut dp = Datapath::load(None).unwrap_or_else(|e| panic!("load: {e:?}"));
    let allowed = Frame::eth(CAM)
        .ipv4("10.1.1.10", "10.1.2.10")
        .tcp(40000, 554)
        .syn()
        .build();
    let (rv, _) = dp.test_run(&allowed).expect("test run");
    assert_eq!(rv, 1, "no policy yet: dropped");
    dp.apply(&policy(), 1).expect("apply");
    let (rv, _) = dp.test_run(&allowed).expect("test run");
    assert_eq!(rv, 2, "camera to recorder tcp/554 passes");
    let denied = Frame::eth(CAM)
        .ipv4("10.1.1.10", "10.1.2.10")
        .tcp(40000, 22)
        .syn()
        .build();
    let (rv, _) = dp.test_run(&denied).expect("test run");
    assert_eq!(rv, 1, "camera to recorder tcp/22 dropped");
    let reply = Frame::eth(NVR)
        .ipv4("10.1.2.10", "10.1.1.10")
        .tcp(554, 40000)
        .syn_ack()
        .build();
    let (rv, _) = dp.test_run(&reply).expect("test run");
    assert_eq!(rv, 2, "reply of the allowed flow passes");
}

#[test]
fn each_apply_leaves_only_the_live_slot_filled() {
    if !require_root("each_apply_leaves_only_the_live_slot_filled") {
        return;
    }
    let mut dp = Datapath::load(None).unwrap_or_else(|e| panic!("load: {e:?}"));
    let p = policy();
    let sizes = p.map_sizes();
    let per_policy: usize = sizes.values().sum();
    assert!(
        sizes.values().all(|n| *n > 0),
        "the fixture fills every policy map: {sizes:?}"
    );
    let mut previous_slot = None;
    for generation in 1..=4 {
        let report = dp.apply(&p, generation).expect("apply");
        assert_eq!(report.generation, generation);
        assert_eq!(
            report.entries, per_policy,
            "every entry of every map written"
        );
        let cleared = if generation == 1 { 0 } else { per_policy };
        assert_eq!(
            report.cleared, cleared,
            "generation {generation}: the previous policy's entries, and only those, were cleared"
        );
        assert_ne!(Some(report.slot), previous_slot, "slots alternate");
        previous_slot = Some(report.slot);
        let live = usize::from(enforcer::datapath::live_config(&dp).expect("live").0.slot());
        assert_eq!(live, usize::from(report.slot), "the written slot is live");
        let occupancy = enforcer::datapath::slot_occupancy(&dp).expect("occupancy");
        assert_eq!(
            occupancy[live], per_policy,
            "generation {generation}: live slot holds the policy"
        );
        assert_eq!(
            occupancy[1 - live],
            0,
            "generation {generation}: the previous slot was cleared"
        );
    }
    let allowed = Frame::eth(CAM)
        .ipv4("10.1.1.10", "10.1.2.10")
        .tcp(40001, 554)
        .syn()
        .build();
    assert_eq!(
        dp.test_run(&allowed).expect("run").0,
        2,
        "still enforcing after four switches"
    );
}

/// Maps a new process adopts from their pins may hold the slot the previous process left live;
/// only maps a load creates are known empty. The first apply after adopting clears what it
/// found, so no stale entry of the previous policy lingers in the slot left behind.
#[test]
fn an_apply_after_adopting_pinned_maps_clears_the_previous_processes_slot() {
    if !require_root("an_apply_after_adopting_pinned_maps_clears_the_previous_processes_slot") {
        return;
    }
    let dir = std::path::PathBuf::from(format!(
        "/sys/fs/bpf/enforcer-smoke-adopt-{}",
        std::process::id()
    ));
    let _absent_is_fine = std::fs::remove_dir_all(&dir);
    // Thousands of devices: more keys than one batch of the scan reads.
    let p = parse_str("big.yaml", &enforcer::policy::synth::generate(5_000, 100))
        .unwrap_or_else(|e| panic!("fixture: {e}"));
    let p = compile(&p, &CompileOptions::default()).unwrap_or_else(|e| panic!("compile: {e}"));
    let per_policy: usize = p.map_sizes().values().sum();
    assert!(per_policy > 8_192, "{per_policy} entries");
    {
        let mut first = Datapath::load(Some(&dir)).unwrap_or_else(|e| panic!("load: {e:?}"));
        let report = first.apply(&p, 1).expect("apply");
        assert_eq!(report.cleared, 0, "maps just created hold nothing to clear");
    }
    let mut second = Datapath::load(Some(&dir)).unwrap_or_else(|e| panic!("adopt: {e:?}"));
    let smaller = parse_str(
        "smaller.yaml",
        "zones: {cameras: {}, quarantine: {}}\n\
         devices: {cam: {zone: cameras, mac: \"02:00:00:00:01:10\", addresses: [10.1.1.10]}}\n",
    )
    .unwrap_or_else(|e| panic!("fixture: {e}"));
    let smaller =
        compile(&smaller, &CompileOptions::default()).unwrap_or_else(|e| panic!("compile: {e}"));
    let report = second.apply(&smaller, 2).expect("apply after adopting");
    assert_eq!(
        report.cleared, per_policy,
        "the previous process's policy, found by scanning, was cleared"
    );
    let occupancy = enforcer::datapath::slot_occupancy(&second).expect("occupancy");
    let live = usize::from(report.slot);
    assert_eq!(occupancy[1 - live], 0, "nothing of the old policy is left");
    assert_eq!(
        occupancy[live],
        smaller.map_sizes().values().sum::<usize>(),
        "the live slot holds the new policy"
    );
    drop(second);
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("remove {}: {e}", dir.display()));
}
