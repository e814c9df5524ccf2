use super::*;
use crate::policy::{CompileOptions, compile, parse_str};

fn site() -> CompiledPolicy {
    let yaml = "zones: {cams: {}, office: {}, quarantine: {}}\n\
        networks: {internet: [\"0.0.0.0/0\"]}\n\
        devices:\n  \
          cam-1: {zone: cams, addresses: [10.0.0.1], vendor: Axis, model: P1375, firmware: \"10.1\", notes: secret}\n  \
          cam-2: {zone: cams, addresses: [10.0.0.2]}\n  \
          cam-3: {zone: cams, addresses: [10.0.0.3]}\n  \
          pc-1: {zone: office, addresses: [10.0.1.1]}\n\
        defaults: {unknown: quarantine}\n";
    let policy = parse_str("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
    compile(&policy, &CompileOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn labels(plan: &[(u32, Series)]) -> Vec<&str> {
    plan.iter().map(|(_, s)| s.device.as_str()).collect()
}

#[test]
fn every_listed_device_has_its_own_series_within_the_cap() {
    let plan = series(&site(), DEFAULT_MAX_DEVICES);
    assert_eq!(
        labels(&plan),
        [
            "unknown",
            "cam-1",
            "cam-2",
            "cam-3",
            "pc-1",
            "network:internet",
            "router"
        ]
    );
    let cam1 = &plan[1].1;
    assert_eq!((cam1.zone.as_str(), cam1.kind), ("cams", "device"));
    assert_eq!(
        (cam1.vendor.as_str(), cam1.model.as_str()),
        ("Axis", "P1375")
    );
    assert_eq!(
        plan[0].1.zone, "quarantine",
        "unknown sources are in the unknown zone"
    );
}

#[test]
fn devices_beyond_the_cap_fold_into_one_series_per_zone() {
    let plan = series(&site(), 1);
    assert_eq!(
        labels(&plan),
        [
            "unknown",
            "cam-1",
            "zone:cams",
            "zone:cams",
            "zone:office",
            "network:internet",
            "router"
        ]
    );
    assert!(plan[2..5].iter().all(|(_, s)| s.kind == KIND_FOLDED));
    assert_eq!(plan[4].1.zone, "office");
}

#[test]
fn metrics_page_carries_no_macs_addresses_firmware_or_notes() {
    let m = Metrics::register(DEFAULT_MAX_DEVICES).unwrap_or_else(|e| panic!("{e}"));
    for (_, s) in series(&site(), DEFAULT_MAX_DEVICES) {
        m.device_info
            .with_label_values(&[&s.device, &s.zone, s.kind, &s.vendor, &s.model])
            .set(1);
    }
    let page = m.encode().unwrap_or_else(|e| panic!("{e}"));
    assert!(page.contains("enforcer_device_info{device=\"cam-1\",kind=\"device\",model=\"P1375\",vendor=\"Axis\",zone=\"cams\"} 1"), "{page}");
    for secret in ["10.0.0.1", "10.1", "secret"] {
        assert!(
            !page.contains(&format!("\"{secret}\"")),
            "{secret} on the page"
        );
    }
}

#[test]
fn build_info_process_metrics_and_every_quarantine_reason_exist_from_the_start() {
    let m = Metrics::register(DEFAULT_MAX_DEVICES).unwrap_or_else(|e| panic!("{e}"));
    let page = m.encode().unwrap_or_else(|e| panic!("{e}"));
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        page.contains(&format!(
            "enforcer_build_info{{layout=\"{}\",version=\"{version}\"}} 1",
            enforcer_common::LAYOUT_VERSION
        )),
        "{page}"
    );
    assert!(page.contains("process_resident_memory_bytes "), "{page}");
    for reason in DATAPATH_QUARANTINES {
        let series = format!(
            "enforcer_quarantine_events_total{{reason=\"{}\"}} 0",
            reason.as_str()
        );
        assert!(page.contains(&series), "{series} missing");
    }
}

#[test]
fn a_binding_counts_for_every_rule_that_names_its_pattern_as_written() {
    let to = |t: &[&str]| t.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert!(names_dest(
        &to(&["dns:Updates.Axis.Example."]),
        "dns:updates.axis.example"
    ));
    assert!(names_dest(
        &to(&["network:internet", "dns:*.pool.ntp.org"]),
        "dns:*.pool.ntp.org"
    ));
    assert!(!names_dest(
        &to(&["dns:pool.ntp.org"]),
        "dns:*.pool.ntp.org"
    ));
    assert!(!names_dest(&to(&["zone:cams"]), "dns:updates.axis.example"));
}

#[test]
fn every_dns_query_result_is_exported_from_the_start() {
    let m = Metrics::register(DEFAULT_MAX_DEVICES).unwrap_or_else(|e| panic!("{e}"));
    let page = m.encode().unwrap_or_else(|e| panic!("{e}"));
    for r in crate::daemon::resolver::QueryResult::ALL {
        let series = format!("enforcer_dns_queries_total{{result=\"{}\"}} 0", r.as_str());
        assert!(page.contains(&series), "{series} missing");
    }
}
