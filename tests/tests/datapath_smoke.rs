//! First light: the program loads, verifies, and a hand-built policy gives both verdicts.

use enforcer::{
    datapath::Datapath,
    policy::{CompiledPolicy, IdTable},
};
use enforcer_common::{
    Action, Decision, Mode,
    identity::{ADDR_KIND_DEVICE, AddrEntry, MacEntry, NetEntry},
    rules::PairValue,
};
use enforcer_tests::{frame::Frame, kernel::require_root};

const CAM: [u8; 6] = [2, 0, 0, 0, 1, 0x10];
const NVR: [u8; 6] = [2, 0, 0, 0, 2, 0x10];

fn policy() -> CompiledPolicy {
    CompiledPolicy {
        digest: String::new(),
        sources: vec![],
        mode: Mode::Enforce,
        default_action: Action::Deny,
        spoofed_action: Action::Deny,
        unknown_class: 4,
        router_class: 1,
        quarantine: None,
        macs: vec![
            (
                CAM,
                MacEntry {
                    device: 1,
                    class: 2,
                    flags: 0,
                },
            ),
            (
                NVR,
                MacEntry {
                    device: 2,
                    class: 3,
                    flags: 0,
                },
            ),
        ],
        addrs_v4: vec![
            (
                [10, 1, 1, 10],
                AddrEntry {
                    device: 1,
                    class: 2,
                    kind: ADDR_KIND_DEVICE,
                    flags: 0,
                    mac: CAM,
                    _pad: [0; 2],
                },
            ),
            (
                [10, 1, 2, 10],
                AddrEntry {
                    device: 2,
                    class: 3,
                    kind: ADDR_KIND_DEVICE,
                    flags: 0,
                    mac: NVR,
                    _pad: [0; 2],
                },
            ),
        ],
        addrs_v6: vec![],
        nets_v4: vec![(
            [0, 0, 0, 0],
            0,
            NetEntry {
                network: 1,
                class: 5,
                flags: 0,
                _pad: 0,
            },
        )],
        nets_v6: vec![],
        pairs: vec![(
            (2, 3),
            PairValue {
                pair: 1,
                ..PairValue::default()
            },
        )],
        ports: vec![((1, 6, 554), Decision::new(Action::Allow, 1))],
        ids: IdTable::default(),
        classes: vec![],
        zones: vec![],
        devices: vec![],
        rules: vec![],
        networks: vec![],
        warnings: vec![],
    }
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
    let per_policy =
        p.macs.len() + p.addrs_v4.len() + p.addrs_v6.len() + p.pairs.len() + p.ports.len();
    for generation in 1..=4 {
        let report = dp.apply(&p, generation).expect("apply");
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
        assert!(report.switched <= report.duration);
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
