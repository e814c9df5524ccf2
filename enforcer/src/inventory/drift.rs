//! Drift: evidence that contradicts what the policy's inventory says about a listed device
//! (`vendor`, `model`, `firmware`), and a MAC that changed its vendor class or parameter list
//! (another device may be using it). Both are hints for people, never verdicts.

use serde::Serialize;

use super::{
    store::{Evidence, parse_mac},
    vendor::vendor_of,
};
use crate::{daemon::state::DeviceLabel, policy::compiled::Inventory};

/// `device` of a MAC the policy does not list, in the metric (one series for all of them).
pub const UNLISTED: &str = "unknown";

/// One contradiction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// The listed device's name, or [`UNLISTED`].
    pub device: String,
    pub mac: String,
    /// `vendor`, `model`, `firmware`, `vendor_class`, `fingerprint` or `fingerprint_v6`.
    pub field: String,
    /// What the inventory says, or what the MAC said before.
    pub expected: String,
    /// What the device announced.
    pub observed: String,
}

/// Fields whose change alone is drift, whatever the inventory says.
const IDENTITY_HINTS: [&str; 3] = ["vendor_class", "fingerprint", "fingerprint_v6"];

/// Every drift of the store's MACs against the listed devices.
#[must_use]
pub fn all(devices: &[DeviceLabel], evidence: &[Evidence]) -> Vec<Drift> {
    let mut out = Vec::new();
    for e in evidence {
        let Some(mac) = parse_mac(&e.mac) else {
            continue;
        };
        let listed = devices
            .iter()
            .find(|d| d.mac.as_deref().and_then(parse_mac) == Some(mac));
        let device = listed.map_or(UNLISTED, |d| d.name.as_str());
        if let Some(d) = listed {
            out.extend(against_inventory(device, &d.inventory, mac, e));
        }
        for c in &e.changes {
            if IDENTITY_HINTS.contains(&c.field.as_str()) {
                out.push(Drift {
                    device: device.to_owned(),
                    mac: e.mac.clone(),
                    field: c.field.clone(),
                    expected: c.from.clone(),
                    observed: c.to.clone(),
                });
            }
        }
    }
    out
}

/// What the evidence says against the inventory's vendor, model and firmware. A value agrees
/// when one contains the other, ignoring case and punctuation ("Axis" and "Axis Communications
/// AB"; "7.2" and "v7.2").
fn against_inventory(device: &str, inv: &Inventory, mac: [u8; 6], e: &Evidence) -> Vec<Drift> {
    let vendor = vendor_of(mac).name().map(str::to_owned);
    [
        ("vendor", &inv.vendor, &vendor),
        ("model", &inv.model, &e.said.model),
        ("firmware", &inv.firmware, &e.said.firmware),
    ]
    .into_iter()
    .filter_map(|(field, expected, observed)| {
        let (expected, observed) = (expected.as_ref()?, observed.as_ref()?);
        (!agrees(expected, observed)).then(|| Drift {
            device: device.to_owned(),
            mac: e.mac.clone(),
            field: field.to_owned(),
            expected: expected.clone(),
            observed: observed.clone(),
        })
    })
    .collect()
}

fn agrees(a: &str, b: &str) -> bool {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let (a, b) = (norm(a), norm(b));
    !a.is_empty() && !b.is_empty() && (a.contains(&b) || b.contains(&a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::store::Change;

    fn cam(inventory: Inventory) -> DeviceLabel {
        DeviceLabel {
            id: 1,
            name: "cam-1".into(),
            zone: "cameras".into(),
            mac: Some("00:40:8c:00:00:01".into()),
            addresses: vec![],
            inventory,
            audit: false,
        }
    }

    fn evidence(firmware: &str, model: &str) -> Evidence {
        Evidence {
            mac: "00:40:8c:00:00:01".into(),
            said: crate::inventory::Observation {
                firmware: Some(firmware.into()),
                model: Some(model.into()),
                ..Default::default()
            },
            ..Evidence::default()
        }
    }

    #[test]
    fn other_firmware_than_the_inventory_is_drift_and_agreeing_values_are_not() {
        let inv = Inventory {
            vendor: Some("Axis".into()),
            model: Some("P3245".into()),
            firmware: Some("10.12".into()),
            ..Inventory::default()
        };
        assert!(all(&[cam(inv.clone())], &[evidence("v10.12", "AXIS P3245-LV")]).is_empty());
        let drift = all(&[cam(inv)], &[evidence("9.80", "AXIS P3245-LV")]);
        assert_eq!(
            drift,
            [Drift {
                device: "cam-1".into(),
                mac: "00:40:8c:00:00:01".into(),
                field: "firmware".into(),
                expected: "10.12".into(),
                observed: "9.80".into(),
            }]
        );
    }

    #[test]
    fn a_vendor_the_oui_contradicts_is_drift() {
        let inv = Inventory {
            vendor: Some("Hikvision".into()),
            ..Inventory::default()
        };
        let drift = all(
            &[cam(inv)],
            &[Evidence {
                mac: "00:40:8c:00:00:01".into(),
                ..Evidence::default()
            }],
        );
        assert_eq!(drift.len(), 1);
        assert_eq!(drift[0].observed, "Axis Communications AB");
    }

    #[test]
    fn another_vendor_class_is_drift_for_listed_and_unlisted_macs() {
        let mut e = evidence("1", "x");
        e.changes.push(Change {
            field: "vendor_class".into(),
            from: "udhcp 1.30".into(),
            to: "MSFT 5.0".into(),
            at: 1,
        });
        e.changes.push(Change {
            field: "firmware".into(),
            from: "1".into(),
            to: "2".into(),
            at: 1,
        });
        let listed = all(&[cam(Inventory::default())], std::slice::from_ref(&e));
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(
            (listed[0].device.as_str(), listed[0].field.as_str()),
            ("cam-1", "vendor_class")
        );
        let unlisted = all(&[], &[e]);
        assert_eq!(unlisted[0].device, UNLISTED);
    }
}
