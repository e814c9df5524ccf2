//! Observation: what each source was seen to do, as `enforcer learn` (and the graph's
//! `--observed` overlay) reads it.
//!
//! The daemon scans the flow table (`daemon::observe`): every flow is one initiator reaching one
//! responder on one service. Each becomes an [`Observation`] row keyed by the initiator (the
//! source), the responder (the peer) as the policy resolves it, the protocol and the *server* port
//! (the responder's: the initiator's ephemeral port is never recorded), and whether the policy
//! allowed it or only an audit let it pass. Rows are kept in SQLite ([`store::Store`]).

use std::{fmt, net::IpAddr, str::FromStr};

use serde::Serialize;

mod resolve;
pub mod store;

pub use resolve::{FlowSample, Resolver};
pub use store::{Bounds, Filter, Store, StoreError};

/// The store's file name under the daemon's state directory.
pub const STORE_FILE: &str = "observations.db";

/// One end of an observed flow, as the policy resolves it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    Device(String),
    Network(String),
    Router,
    /// A `dns:` name bound, for the source, to the address it reached (the names issue).
    Name(String),
    /// An address the policy places nowhere (no device, network or name): the source is unknown,
    /// or the peer lies outside every network.
    Address(IpAddr),
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Device(n) => write!(f, "device:{n}"),
            Self::Network(n) => write!(f, "network:{n}"),
            Self::Router => f.write_str("router"),
            Self::Name(n) => write!(f, "dns:{n}"),
            Self::Address(a) => write!(f, "address:{a}"),
        }
    }
}

impl FromStr for Peer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "router" {
            return Ok(Self::Router);
        }
        let (kind, name) = s.split_once(':').ok_or_else(|| {
            format!("`{s}` is no peer (device:, network:, dns:, address: or router)")
        })?;
        match kind {
            "device" => Ok(Self::Device(name.to_owned())),
            "network" => Ok(Self::Network(name.to_owned())),
            "dns" => Ok(Self::Name(name.to_owned())),
            "address" => name
                .parse()
                .map(Self::Address)
                .map_err(|_| format!("`{name}` is no address")),
            _ => Err(format!("`{kind}:` is no kind of peer")),
        }
    }
}

impl Serialize for Peer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How the datapath let an observed flow through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Seen {
    /// A rule (or the default) allowed it.
    Allow,
    /// The policy denies it; its source is in audit (`mode: audit`).
    Audit,
}

impl Seen {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Audit => "audit",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(Self::Allow),
            "audit" => Some(Self::Audit),
            _ => None,
        }
    }
}

/// The service of a flow as a rule writes it: the protocol and the responder's port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Service {
    /// IP protocol number (6 TCP, 17 UDP, 1 and 58 ICMP echo).
    pub proto: u8,
    /// The server's (responder's) port; 0 for ICMP and other protocols.
    pub port: u16,
}

impl Service {
    /// The protocol as a rule names it (`tcp`, `udp`, `icmp`), or `None` for one a rule cannot
    /// name but with `any`.
    #[must_use]
    pub const fn proto_name(self) -> Option<&'static str> {
        match self.proto {
            enforcer_common::PROTO_TCP => Some("tcp"),
            enforcer_common::PROTO_UDP => Some("udp"),
            enforcer_common::PROTO_ICMP | enforcer_common::PROTO_ICMPV6 => Some("icmp"),
            _ => None,
        }
    }

    /// Whether the port is part of the service (TCP and UDP).
    #[must_use]
    pub const fn has_port(self) -> bool {
        matches!(
            self.proto,
            enforcer_common::PROTO_TCP | enforcer_common::PROTO_UDP
        )
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.proto_name(), self.has_port()) {
            (Some(p), true) => write!(f, "{p}/{}", self.port),
            (Some(p), false) => f.write_str(p),
            (None, _) => write!(f, "proto/{}", self.proto),
        }
    }
}

/// What one source was seen doing with one peer on one service: the store's row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Observation {
    /// The initiator.
    pub source: Peer,
    /// The responder.
    pub peer: Peer,
    pub service: Service,
    pub seen: Seen,
    /// The last address the peer was reached at (for peers known only by a network or an
    /// address, the hint for a name).
    pub peer_address: IpAddr,
    /// Distinct flows, packets and bytes (both directions).
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Unix seconds.
    pub first_seen: u64,
    pub last_seen: u64,
    /// The rule that let it through at the latest scan (`default` for the default verdict): what
    /// `enforcer graph --observed` marks as used.
    pub rule: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_reads_back_as_it_was_written() {
        for p in [
            Peer::Device("cam-1".into()),
            Peer::Network("internet".into()),
            Peer::Router,
            Peer::Name("ntp.example.org".into()),
            Peer::Address("10.9.9.9".parse().expect("addr")),
            Peer::Address("fd00::1".parse().expect("addr")),
        ] {
            assert_eq!(p.to_string().parse::<Peer>(), Ok(p));
        }
        assert!("zone:x".parse::<Peer>().is_err());
    }

    #[test]
    fn a_service_is_written_as_a_rule_writes_it() {
        let s = |proto, port| Service { proto, port }.to_string();
        assert_eq!(s(6, 443), "tcp/443");
        assert_eq!(s(17, 123), "udp/123");
        assert_eq!(s(1, 0), "icmp");
        assert_eq!(s(58, 0), "icmp");
        assert_eq!(s(47, 0), "proto/47");
    }
}
