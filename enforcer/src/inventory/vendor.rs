//! The vendor a MAC's OUI is registered to, from the IEEE registry the `oui-data` crate embeds
//! (MA-L, MA-M, MA-S, CID and IAB; MIT licence, registry data from standards-oui.ieee.org).
//!
//! A locally administered MAC (the U/L bit, 0x02 of the first octet) is assigned by the device
//! itself, as phones do to randomise themselves: it belongs to no registry, so it is flagged and
//! never looked up (a random prefix may match some vendor by chance).

use serde::{Deserialize, Serialize};

/// What the MAC says about who made the device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum MacVendor {
    /// Registered to this organisation.
    Registered(String),
    /// Locally administered: randomised or assigned by software, no vendor.
    Randomised,
    /// A universal address whose prefix the embedded registry does not hold.
    Unregistered,
}

impl MacVendor {
    /// The vendor's name, when registered.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Registered(name) => Some(name),
            Self::Randomised | Self::Unregistered => None,
        }
    }

    #[must_use]
    pub const fn is_randomised(&self) -> bool {
        matches!(self, Self::Randomised)
    }
}

/// Whether the MAC is locally administered (randomised).
#[must_use]
pub const fn is_locally_administered(mac: [u8; 6]) -> bool {
    mac[0] & 0x02 != 0
}

/// The vendor of `mac`.
#[must_use]
pub fn vendor_of(mac: [u8; 6]) -> MacVendor {
    if is_locally_administered(mac) {
        return MacVendor::Randomised;
    }
    let hex: String = mac.iter().map(|b| format!("{b:02X}")).collect();
    oui_data::lookup(&hex).map_or(MacVendor::Unregistered, |r| {
        MacVendor::Registered(super::clean(r.organization()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_prefix_names_its_vendor() {
        assert_eq!(
            vendor_of([0x00, 0x40, 0x8c, 0x12, 0x34, 0x56]),
            MacVendor::Registered("Axis Communications AB".into())
        );
        assert_eq!(
            vendor_of([0x00, 0x17, 0x88, 0x01, 0x02, 0x03]).name(),
            Some("Philips Lighting BV")
        );
    }

    #[test]
    fn a_locally_administered_mac_is_randomised_and_not_looked_up() {
        // 02:40:8c is Axis's prefix with the U/L bit set: no vendor for it.
        assert_eq!(
            vendor_of([0x02, 0x40, 0x8c, 0x12, 0x34, 0x56]),
            MacVendor::Randomised
        );
        assert!(vendor_of([0xda, 0xa1, 0x19, 0, 0, 1]).is_randomised());
    }
}
