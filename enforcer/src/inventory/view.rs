//! What `enforcer devices` shows of a MAC's evidence: the vendor its OUI names (or that it is
//! randomised) and what the device announced. Every field is observed, none verified.

use serde::Serialize;

use super::{store::Evidence, vendor::vendor_of};

/// The `observed` object of a device in `enforcer devices --output json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Observed {
    /// The OUI's organisation; absent for a randomised or unregistered MAC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Locally administered: randomised by the device, so no vendor and no stable identity.
    pub randomised_mac: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    /// DHCPv4 option 55 in its order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// DHCPv6 option request list in its order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint_v6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mud_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssdp_server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssdp_usn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssdp_location: Option<String>,
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
        o.host_name.clone_from(&e.host_name);
        o.fqdn.clone_from(&e.fqdn);
        o.fingerprint.clone_from(&e.fingerprint);
        o.fingerprint_v6.clone_from(&e.fingerprint_v6);
        o.vendor_class.clone_from(&e.vendor_class);
        o.client_id.clone_from(&e.client_id);
        o.mud_url.clone_from(&e.mud_url);
        o.model.clone_from(&e.model);
        o.firmware.clone_from(&e.firmware);
        o.services.clone_from(&e.services);
        o.instances.clone_from(&e.instances);
        o.ssdp_server.clone_from(&e.ssdp_server);
        o.ssdp_usn.clone_from(&e.ssdp_usn);
        o.ssdp_location.clone_from(&e.ssdp_location);
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
        if let Some(m) = &self.model {
            parts.push(format!("model {m}"));
        }
        if let Some(f) = &self.firmware {
            parts.push(format!("fw {f}"));
        }
        if let Some(f) = &self.fingerprint {
            parts.push(format!("fp {f}"));
        }
        if let Some(u) = &self.mud_url {
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
