//! What `enforcer devices` shows of a MAC's evidence: the vendor its OUI names (or that it is
//! randomised) and what the device announced. Every field is observed, none verified.

use serde::Serialize;

use super::{Observation, store::Evidence, vendor::vendor_of};

/// The `observed` object of a device in `enforcer devices --output json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Observed {
    /// The OUI's organisation; absent for a randomised or unregistered MAC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Locally administered: randomised by the device, so no vendor and no stable identity.
    pub randomised_mac: bool,
    /// What the device announced.
    #[serde(flatten)]
    pub said: Observation,
    /// The interface (and VLAN) its last evidence arrived on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// Protocols it described itself in.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// RFC 3339, absent without evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_evidence: Option<String>,
}

impl Observed {
    /// The view of `mac`, with its evidence when there is some.
    #[must_use]
    pub fn of(mac: [u8; 6], e: Option<&Evidence>) -> Self {
        let vendor = vendor_of(mac);
        let mut o = Self {
            vendor: vendor.name().map(str::to_owned),
            randomised_mac: vendor.is_randomised(),
            ..Self::default()
        };
        let Some(e) = e else { return o };
        o.said.clone_from(&e.said);
        o.interface = Some(e.interface.clone());
        o.vlan = Some(e.vlan);
        o.sources.clone_from(&e.sources);
        o.last_evidence = Some(crate::time::rfc3339(e.last_seen));
        o
    }

    /// Model and firmware hints, fingerprint and MUD URL in one cell of a table.
    #[must_use]
    pub fn hints(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = &self.said.model {
            parts.push(format!("model {m}"));
        }
        if let Some(f) = &self.said.firmware {
            parts.push(format!("fw {f}"));
        }
        if let Some(f) = &self.said.fingerprint {
            parts.push(format!("fp {f}"));
        }
        if let Some(u) = &self.said.mud_url {
            parts.push(format!("mud {u}"));
        }
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(", ")
        }
    }

    /// The vendor cell: the OUI's organisation, `(randomised)` or `-`.
    #[must_use]
    pub fn vendor_cell(&self) -> String {
        match (&self.vendor, self.randomised_mac) {
            (Some(v), _) => v.clone(),
            (None, true) => "(randomised)".into(),
            (None, false) => "-".into(),
        }
    }
}
