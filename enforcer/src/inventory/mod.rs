//! The inventory from the wire: what devices say about themselves in DHCP, mDNS and SSDP, and
//! the vendor their MAC's OUI names.
//!
//! The datapath copies the frames (`enforcer_common::evidence`); [`observe`] parses one into an
//! [`Observation`] with well-kept crates (`dhcproto`, `hickory-proto`, `httparse`), the
//! [`store::Store`] keeps it per MAC (bounded, persisted in the state directory), [`drift`]
//! compares it with the policy's inventory and with what the MAC said before, and [`collect`] is
//! the daemon's task that ties these together.
//!
//! Evidence is for people, never identity: all of it can be forged by the device (or by anyone
//! on its segment), so nothing here reaches a verdict.

pub mod collect;
pub mod dhcp;
pub mod drift;
pub mod mdns;
pub mod naming;
pub mod ssdp;
pub mod store;
pub mod vendor;
pub mod view;

use enforcer_common::evidence::EvidenceKind;

/// Longest text kept from any field a device sends; the rest is cut.
pub const MAX_TEXT: usize = 200;
/// Most service types or instance names kept per device.
pub const MAX_NAMES: usize = 16;

/// What a device said about itself: one frame's worth, or everything a MAC said (the store
/// keeps the latest of each field). Every text is cleaned ([`clean`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Observation {
    /// DHCPv4 option 12, or an mDNS host name (without `.local`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    /// DHCPv6 option 39.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    /// DHCPv4 option 55, the parameter request list, in its order: `1,3,6,15`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// DHCPv6 option 6, the option request list, in its order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint_v6: Option<String>,
    /// DHCPv4 option 60 or DHCPv6 option 16.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_class: Option<String>,
    /// DHCPv4 option 61 or the DHCPv6 client DUID, as hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// DHCPv4 option 161 or DHCPv6 option 112 (RFC 8520).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mud_url: Option<String>,
    /// From mDNS TXT (`md`, `model`, `ty`, ...) or the product of an SSDP SERVER string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// From mDNS TXT (`fv`, `fw`, `firmware`, ...) or the product version of an SSDP SERVER.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
    /// mDNS service types (`_hap._tcp`), SSDP NT/ST.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// mDNS service instance names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssdp_server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssdp_usn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssdp_location: Option<String>,
}

/// Why a copied frame said nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("DHCP: {0}")]
    Dhcp(#[from] dhcproto::error::DecodeError),
    #[error("mDNS: {0}")]
    Dns(#[from] hickory_proto::serialize::binary::DecodeError),
    #[error("SSDP: {0}")]
    Ssdp(#[from] httparse::Error),
    #[error("{0}")]
    NotEvidence(&'static str),
}

/// Parses one copied UDP payload of `kind`.
pub fn observe(kind: EvidenceKind, payload: &[u8]) -> Result<Observation, ObserveError> {
    match kind {
        EvidenceKind::Dhcpv4 => dhcp::observe_v4(payload),
        EvidenceKind::Dhcpv6 => dhcp::observe_v6(payload),
        EvidenceKind::Mdns => mdns::observe(payload),
        EvidenceKind::Ssdp => ssdp::observe(payload),
    }
}

/// A device's text made safe to keep and print: control characters (terminal escapes included)
/// become `?`, surrounding blanks go, and it is cut at [`MAX_TEXT`] characters.
#[must_use]
pub fn clean(text: &str) -> String {
    text.trim()
        .chars()
        .take(MAX_TEXT)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// [`clean`] for bytes that should be text (invalid UTF-8 is replaced).
#[must_use]
pub fn clean_bytes(bytes: &[u8]) -> String {
    clean(&String::from_utf8_lossy(bytes))
}

/// Bytes as lowercase hex, cut like any text.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .take(MAX_TEXT / 2)
        .fold(String::new(), |mut s, b| {
            let _infallible = write!(s, "{b:02x}");
            s
        })
}

/// `Some` of a cleaned text, `None` when nothing is left of it.
fn some_text(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_text_loses_terminal_escapes_and_is_bounded() {
        assert_eq!(clean(" cam\u{1b}[2J-1 \n"), "cam?[2J-1");
        assert_eq!(clean(&"x".repeat(1000)).len(), MAX_TEXT);
        assert_eq!(clean_bytes(&[0x66, 0xff, 0x6f]), "f\u{fffd}o");
        assert_eq!(hex(&[0x01, 0xab]), "01ab");
    }
}
