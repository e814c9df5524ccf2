use std::os::unix::fs::PermissionsExt;

use enforcer_common::flow::FlowKey;

use super::*;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("enforcer-observe-{name}-{}", std::process::id()));
    let _fresh = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir.join("observations.db")
}

fn flow(port: u16, sport: u16, packets: u64, first: u64) -> FlowSample {
    FlowSample {
        id: (
            FlowKey {
                lo_port: sport,
                hi_port: port,
                proto: 6,
                family: 4,
                ..FlowKey::default()
            },
            first,
        ),
        source: Peer::Device("cam-1".into()),
        peer: Peer::Network("internet".into()),
        peer_address: "93.184.216.34".parse().expect("addr"),
        service: Service { proto: 6, port },
        seen: Seen::Audit,
        rule: "default".into(),
        packets,
        bytes: packets * 100,
        first_seen_ns: first,
        last_seen_ns: first + 1_000_000_000,
    }
}

const NOW_NS: u64 = 10_000_000_000_000;
const NOW: u64 = 1_800_000_000;

#[test]
fn the_store_is_private_to_root() {
    let path = scratch("mode");
    let _s = Store::open(&path).expect("open");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// One scan of `flows` at [`NOW`], within the default bounds.
fn scan(s: &mut Store, flows: &[FlowSample]) -> ScanReport {
    s.record_scan(flows, NOW_NS, NOW, Bounds::default())
        .expect("scan")
}

#[test]
fn rescanning_a_live_flow_adds_only_its_new_packets() {
    let path = scratch("delta");
    let mut s = Store::open(&path).expect("open");
    let started = NOW_NS - 5_000_000_000;
    assert_eq!(scan(&mut s, &[flow(443, 40000, 3, started)]).new_flows, 1);
    scan(&mut s, &[flow(443, 40000, 5, started)]);
    drop(s);
    // A restarted daemon does not count the live flow again.
    let mut s = Store::open(&path).expect("reopen");
    assert_eq!(scan(&mut s, &[flow(443, 40000, 5, started)]).new_flows, 0);
    let rows = s.observations(&Filter::default()).expect("read");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].flows, rows[0].packets, rows[0].bytes), (1, 5, 500));
    assert_eq!(rows[0].first_seen, NOW - 5);
    assert_eq!(s.integrity().expect("check"), "ok");
}

#[test]
fn a_row_keeps_the_rule_of_the_latest_scan() {
    let path = scratch("rule");
    let mut s = Store::open(&path).expect("open");
    let mut first = flow(443, 40000, 3, NOW_NS - 5_000_000_000);
    first.rule = "cams-cloud".into();
    scan(&mut s, &[first]);
    let mut later = flow(443, 40001, 2, NOW_NS - 1_000_000_000);
    later.rule = "cams-cloud-v2".into();
    scan(&mut s, &[later]);
    let rows = s.observations(&Filter::default()).expect("read");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].flows, rows[0].rule.as_str()), (2, "cams-cloud-v2"));
}

#[test]
fn flows_from_many_ephemeral_ports_to_one_server_port_are_one_row() {
    let path = scratch("ephemeral");
    let mut s = Store::open(&path).expect("open");
    let flows: Vec<_> = (0..200)
        .map(|i| flow(443, 30000 + i, 2, NOW_NS - u64::from(i)))
        .collect();
    scan(&mut s, &flows);
    let rows = s.observations(&Filter::default()).expect("read");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].flows, 200);
    assert_eq!(rows[0].service.to_string(), "tcp/443");
}

#[test]
fn the_bounds_drop_old_rows_then_the_least_recently_seen() {
    let path = scratch("bounds");
    let mut s = Store::open(&path).expect("open");
    let flows: Vec<_> = (1..=5)
        .map(|p| flow(p, 40000, 1, NOW_NS - u64::from(p) * 1_000_000_000_000))
        .collect();
    let bounds = Bounds {
        max_age_s: 3_500,
        max_rows: 2,
    };
    let r = s.record_scan(&flows, NOW_NS, NOW, bounds).expect("scan");
    let ports: Vec<u16> = s
        .observations(&Filter::default())
        .expect("read")
        .iter()
        .map(|o| o.service.port)
        .collect();
    // Ports 4 and 5 were last seen over 3,500 s ago; of 1..=3, the two most recent stay.
    assert_eq!(r.pruned, 3);
    assert_eq!(ports.len(), 2);
    assert!(ports.contains(&1) && ports.contains(&2), "{ports:?}");
}

#[test]
fn a_filter_selects_by_source_and_peer() {
    let path = scratch("filter");
    let mut s = Store::open(&path).expect("open");
    let mut other = flow(123, 40000, 1, NOW_NS - 1);
    other.source = Peer::Device("cam-2".into());
    other.peer = Peer::Router;
    scan(&mut s, &[flow(443, 40000, 1, NOW_NS - 2), other]);
    let by_source = Filter {
        source: Some(Peer::Device("cam-2".into())),
        ..Filter::default()
    };
    let rows = s.observations(&by_source).expect("read");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].peer, Peer::Router);
    let by_peer = Filter {
        peer: Some(Peer::Network("internet".into())),
        ..Filter::default()
    };
    assert_eq!(s.observations(&by_peer).expect("read")[0].service.port, 443);
}
