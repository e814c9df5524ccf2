//! Events from the program to the daemon: denied packets and quarantine trips.

/// `EVENTS`: `RingBuf` of [`EVENTS_BYTES`]. The program reserves, fills and submits a
/// [`DenyEvent`]; when full the event is counted in `Counter::EventsDropped`, never waited for.
pub const EVENTS_MAP: &str = "EVENTS";
pub const EVENTS_BYTES: u32 = 256 * 1024;

/// Why a packet was denied (or would have been, in audit mode).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// An explicit deny rule.
    Rule = 1,
    /// No rule allowed it: the default action.
    Default = 2,
    /// Source MAC and address disagree with the policy.
    Spoofed = 3,
    /// The device is quarantined.
    Quarantined = 4,
    /// A reply-only packet (ICMP echo reply or error) of no remembered flow.
    NoFlow = 5,
    /// DNS (udp/tcp 53, tcp/853) to a server other than the router's resolver, which no rule
    /// allows by naming that service, while the policy has a `dns:` section (`names`).
    DnsBypass = 6,
}

impl DenyReason {
    #[must_use]
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Rule),
            2 => Some(Self::Default),
            3 => Some(Self::Spoofed),
            4 => Some(Self::Quarantined),
            5 => Some(Self::NoFlow),
            6 => Some(Self::DnsBypass),
            _ => None,
        }
    }

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rule => "rule",
            Self::Default => "default",
            Self::Spoofed => "spoofed",
            Self::Quarantined => "quarantined",
            Self::NoFlow => "no_flow",
            Self::DnsBypass => "dns_bypass",
        }
    }
}

/// One event in `EVENTS`. Every field is written for every event (a ring-buffer slot holds what an
/// earlier event left there); the packet fields are those of the packet the event is about.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DenyEvent {
    pub timestamp_ns: u64,
    pub device: u32,
    pub rule: u32,
    /// Addresses as words (`identity::words`); IPv4 in the first.
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport: u16,
    pub dport: u16,
    pub ifindex: u32,
    pub proto: u8,
    pub family: u8,
    /// [`DenyReason`].
    pub reason: u8,
    /// [`crate::Verdict`] as u8: Deny, or Audit when only counted; [`EVENT_NO_VERDICT`] in a
    /// quarantine event.
    pub verdict: u8,
    pub src_mac: [u8; 6],
    pub vlan: u16,
    /// [`EVENT_DENY`] or [`EVENT_QUARANTINE`] (then `reason` is a `state::QuarantineReason`,
    /// `rule` is 0, and the packet is the one that tripped the quarantine).
    pub kind: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<DenyEvent>() == 72);

/// A packet was denied (or would have been, in audit mode).
pub const EVENT_DENY: u8 = 0;
/// The datapath put a device into quarantine.
pub const EVENT_QUARANTINE: u8 = 1;
/// `DenyEvent::verdict` of an event that reports no verdict (a quarantine trip).
pub const EVENT_NO_VERDICT: u8 = u8::MAX;
