use crate::policy::parse_str;

pub(super) const SITE: &str =
    "zones: {office: {}, quarantine: {}}\ndevices:\n  pc: {zone: office, addresses: [10.0.0.9]}\n";

/// Every diagnostic of `yaml` as one file `p.yaml`, rendered; none when it is valid.
pub(super) fn messages(yaml: &str) -> Vec<String> {
    match parse_str("p.yaml", yaml) {
        Ok(_) => Vec::new(),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn limits_default_to_the_documented_flow_quota() {
    let policy = parse_str("p.yaml", SITE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        policy.limits.flows_per_device,
        enforcer_common::flow::DEFAULT_FLOWS_PER_DEVICE
    );
}

#[test]
fn limits_set_the_per_device_flow_quota() {
    let yaml = format!("{SITE}limits: {{flows_per_device: 16}}\n");
    let policy = parse_str("p.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policy.limits.flows_per_device, 16);
}

#[test]
fn a_flow_quota_of_zero_or_beyond_the_largest_table_is_an_error() {
    for bad in ["0", "4194305", "-1", "many", "016"] {
        let got = messages(&format!("{SITE}limits: {{flows_per_device: {bad}}}\n"));
        assert_eq!(got.len(), 1, "{bad}: {got:?}");
        assert!(
            got[0].contains(&format!("invalid flows_per_device `{bad}`")),
            "{bad}: {got:?}"
        );
    }
}

#[test]
fn limits_set_the_flow_table_capacity_and_default_to_262144() {
    let policy = parse_str("p.yaml", SITE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policy.limits.flows, 262_144);
    let yaml = format!("{SITE}limits: {{flows: 1048576}}\n");
    let policy = parse_str("p.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policy.limits.flows, 1_048_576);
    assert_eq!(
        policy.limits.flows_per_device,
        enforcer_common::flow::DEFAULT_FLOWS_PER_DEVICE
    );
}

#[test]
fn a_flow_capacity_outside_1024_to_4194304_is_an_error_located_at_its_value() {
    for bad in ["1023", "4194305", "0", "-1", "lots", "01024"] {
        let got = messages(&format!("{SITE}limits:\n  flows: {bad}\n"));
        assert_eq!(got.len(), 1, "{bad}: {got:?}");
        assert!(
            got[0].contains(&format!("invalid flows `{bad}`")),
            "{bad}: {got:?}"
        );
        assert!(got[0].contains("p.yaml:5:10"), "{bad}: {got:?}");
    }
    for good in ["1024", "4194304"] {
        let got = messages(&format!("{SITE}limits: {{flows: {good}}}\n"));
        assert!(got.is_empty(), "{good}: {got:?}");
    }
}

#[test]
fn a_flow_quota_beyond_the_flow_table_is_an_error_at_the_quota() {
    let got = messages(&format!(
        "{SITE}limits:\n  flows: 2048\n  flows_per_device: 4096\n"
    ));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("flows_per_device 4096 is more than the flow table holds (2048)"),
        "{got:?}"
    );
    assert!(got[0].contains("p.yaml:6:21"), "{got:?}");
}

#[test]
fn the_default_flow_quota_shrinks_to_a_smaller_table() {
    let yaml = format!("{SITE}limits: {{flows: 2048}}\n");
    let policy = parse_str("p.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policy.limits.flows_per_device, 2048);
}

#[test]
fn an_unknown_limit_is_an_error() {
    let got = messages(&format!("{SITE}limits: {{flows_per_devise: 16}}\n"));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("flows_per_devise"), "{got:?}");
}

#[test]
fn limits_written_twice_is_an_error() {
    let got = messages(&format!(
        "{SITE}limits: {{flows_per_device: 16}}\nlimits: {{flows_per_device: 8}}\n"
    ));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("limits"), "{got:?}");
}
