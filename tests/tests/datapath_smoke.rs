//! First light: the program loads, verifies, and a policy compiled from YAML gives both verdicts;
//! repeated applies alternate slots, write only what changed and say truthfully what they wrote
//! and removed.

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

/// [`POLICY`] changed the way an edit changes a policy: a rule gone (with its name), a port
/// added, a device added.
fn edited() -> CompiledPolicy {
    let yaml = POLICY
        .replace("allow: [tcp/554]", "allow: [tcp/554, tcp/8000]")
        .replace(
            "  - {name: cameras-cloud, from: zone:cameras, to: dns:cloud.example, allow: [tcp/443]}\n",
            "",
        )
        .replace(
            "dns:",
            "  cam2: {zone: cameras, mac: \"02:00:00:00:01:11\", addresses: [10.1.1.11]}\ndns:",
        );
    let edited = parse_str("edited.yaml", &yaml).unwrap_or_else(|e| panic!("fixture: {e}"));
    compile(&edited, &CompileOptions::default()).unwrap_or_else(|e| panic!("compile: {e}"))
}

/// Every apply leaves the live slot holding exactly its policy and the slot left behind the one
/// before; it writes only the entries that slot did not hold as the policy has them, and removes
/// only those the policy lacks.
#[test]
fn each_apply_writes_only_what_the_slot_it_rewrites_lacks() {
    if !require_root("each_apply_writes_only_what_the_slot_it_rewrites_lacks") {
        return;
    }
    let mut dp = Datapath::load(None).unwrap_or_else(|e| panic!("load: {e:?}"));
    let (p, q) = (policy(), edited());
    let sizes = p.map_sizes();
    assert!(
        sizes.values().all(|n| *n > 0),
        "the fixture fills every policy map: {sizes:?}"
    );
    let size = |c: &CompiledPolicy| c.map_sizes().values().sum::<usize>();
    // (policy, what the slot written held before: none, or which policy)
    let steps: [(&CompiledPolicy, Option<&CompiledPolicy>); 5] = [
        (&p, None),
        (&p, None),
        (&q, Some(&p)),
        (&q, Some(&p)),
        (&p, Some(&q)),
    ];
    let mut previous: Option<(u8, &CompiledPolicy)> = None;
    for ((policy, held), generation) in steps.into_iter().zip(1u64..) {
        let at = format!("generation {generation}");
        let idle = 1 - enforcer::datapath::live_config(&dp).expect("live").0.slot();
        let off = match held {
            None => enforcer::datapath::slot_occupancy(&dp).expect("occupancy")[usize::from(idle)],
            Some(held) => {
                enforcer::datapath::slot_differences(&dp, idle, &held.maps).expect("differences")
            }
        };
        assert_eq!(off, 0, "{at}: the slot to write holds what the step says");
        let report = dp.apply(policy, generation).expect("apply");
        assert_eq!(report.entries, size(policy), "{at}: the policy's entries");
        match held {
            None => {
                assert_eq!(
                    report.written,
                    size(policy),
                    "{at}: an empty slot is written whole"
                );
                assert_eq!(
                    report.cleared, 0,
                    "{at}: nothing to remove from an empty slot"
                );
            }
            Some(_) => {
                assert!(
                    report.written > 0 && report.written < report.entries,
                    "{at}: only the edit is written ({} of {})",
                    report.written,
                    report.entries
                );
                assert!(
                    report.cleared > 0,
                    "{at}: what the other policy has alone is removed"
                );
            }
        }
        let live = enforcer::datapath::live_config(&dp).expect("live").0.slot();
        assert_eq!(live, report.slot, "{at}: the written slot is live");
        assert_ne!(
            Some(report.slot),
            previous.map(|(s, _)| s),
            "{at}: slots alternate"
        );
        assert_eq!(
            enforcer::datapath::slot_differences(&dp, live, &policy.maps).expect("differences"),
            0,
            "{at}: the live slot holds exactly the policy"
        );
        if let Some((left, before)) = previous {
            assert_eq!(
                enforcer::datapath::slot_differences(&dp, left, &before.maps).expect("differences"),
                0,
                "{at}: the slot left behind holds the policy before"
            );
        }
        previous = Some((live, policy));
    }
    let allowed = Frame::eth(CAM)
        .ipv4("10.1.1.10", "10.1.2.10")
        .tcp(40001, 554)
        .syn()
        .build();
    assert_eq!(
        dp.test_run(&allowed).expect("run").0,
        2,
        "still enforcing after five switches"
    );
}

/// Maps a new process adopts from their pins may hold anything in either slot (the previous
/// process's policies, or a half-written slot after a crash); only maps a load creates are known
/// empty. An apply clears the slot it writes by scanning when it does not know what it holds, so
/// after two applies nothing of the previous process's policies lingers in either slot.
#[test]
fn applies_after_adopting_pinned_maps_clear_what_the_previous_process_left() {
    if !require_root("applies_after_adopting_pinned_maps_clear_what_the_previous_process_left") {
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
        for generation in 1..=2 {
            let report = first.apply(&p, generation).expect("apply");
            assert_eq!(report.cleared, 0, "maps just created hold nothing to clear");
        }
        assert_eq!(
            enforcer::datapath::slot_occupancy(&first).expect("occupancy"),
            [per_policy; 2],
            "both slots hold the policy"
        );
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
    for generation in 3..=4 {
        let report = second
            .apply(&smaller, generation)
            .expect("apply after adopting");
        assert_eq!(
            report.cleared, per_policy,
            "generation {generation}: the previous process's policy, found by scanning, was cleared"
        );
        assert_eq!(
            report.written, report.entries,
            "generation {generation}: a scanned slot is written whole"
        );
    }
    for slot in 0..=1 {
        assert_eq!(
            enforcer::datapath::slot_differences(&second, slot, &smaller.maps)
                .expect("differences"),
            0,
            "slot {slot} holds the new policy and nothing of the old"
        );
    }
    drop(second);
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("remove {}: {e}", dir.display()));
}
