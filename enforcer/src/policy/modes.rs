//! `mode:` per zone and per device: which sources the datapath enforces on and which it only
//! audits. A device's own `mode:` wins, then its zone's, then `defaults.mode`.

use enforcer_common::Mode;

use super::model::{Device, Policy};

impl Policy {
    /// The mode of the zone `zone` (`defaults.mode` when it sets none, or is not declared).
    #[must_use]
    pub fn mode_of_zone(&self, zone: &str) -> Mode {
        self.zones
            .get(zone)
            .and_then(|z| z.mode)
            .unwrap_or(self.defaults.mode)
    }

    /// The mode the datapath applies to what `device` sends.
    #[must_use]
    pub fn mode_of_device(&self, device: &Device) -> Mode {
        device
            .mode
            .unwrap_or_else(|| self.mode_of_zone(&device.zone.value))
    }

    /// The mode of sources the policy does not list (the `defaults.unknown` zone's).
    #[must_use]
    pub fn mode_of_unknown(&self) -> Mode {
        self.mode_of_zone(&self.defaults.unknown.value)
    }
}

#[cfg(test)]
mod tests {
    use enforcer_common::Mode;

    use crate::policy::parse_str;

    const POLICY: &str = "zones:\n  printers: {mode: audit}\n  cameras: {}\n  quarantine: {}\n\
        devices:\n  prn-7: {zone: printers, mode: enforce, addresses: [\"10.1.4.7\"]}\n  \
        prn-8: {zone: printers, addresses: [\"10.1.4.8\"]}\n  \
        cam-1: {zone: cameras, addresses: [\"10.1.3.10\"]}\n";

    #[test]
    fn a_device_overrides_its_zone_which_overrides_the_default() {
        let p = parse_str("t.yaml", POLICY).expect("policy");
        let mode = |name: &str| {
            let d = p.devices.get(name).expect("device");
            p.mode_of_device(d)
        };
        assert_eq!(mode("prn-7"), Mode::Enforce);
        assert_eq!(mode("prn-8"), Mode::Audit);
        assert_eq!(mode("cam-1"), Mode::Enforce);
        assert_eq!(p.mode_of_unknown(), Mode::Enforce);
    }

    #[test]
    fn an_unset_zone_mode_follows_defaults_mode() {
        let text = format!("{POLICY}defaults: {{mode: audit}}\n");
        let p = parse_str("t.yaml", &text).expect("policy");
        assert_eq!(p.mode_of_zone("cameras"), Mode::Audit);
        assert_eq!(p.mode_of_unknown(), Mode::Audit);
    }

    #[test]
    fn a_misspelt_mode_is_an_error() {
        let err =
            parse_str("t.yaml", "zones:\n  printers: {mode: audti}\n").expect_err("must fail");
        assert!(format!("{err:?}").contains("audit"), "{err:?}");
    }
}
