//! `tests:` and `guards:`: flows the policy is checked against on the real program (`enforcer
//! test`, and the guards before every policy switch). The format is a contract: tests kept outside
//! the project use it as written (`docs/policy.md`).

use std::{fmt, net::IpAddr};

use super::{Located, RuleAction};
use crate::policy::diag::Loc;

/// One end of a probe flow.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ProbeEnd {
    /// `device:NAME`: the device's first address (of the flow's family) and its MAC.
    Device(String),
    /// `router`: the router itself (one of its own addresses).
    Router,
    /// An IPv4 or IPv6 address, as given.
    Addr(IpAddr),
}

impl fmt::Display for ProbeEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Device(n) => write!(f, "device:{n}"),
            Self::Router => f.write_str("router"),
            Self::Addr(a) => write!(f, "{a}"),
        }
    }
}

/// The service of a probe flow: one destination port, or an ICMP echo request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeService {
    Tcp(u16),
    Udp(u16),
    Icmp,
}

impl fmt::Display for ProbeService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(p) => write!(f, "tcp/{p}"),
            Self::Udp(p) => write!(f, "udp/{p}"),
            Self::Icmp => f.write_str("icmp"),
        }
    }
}

/// `rule:` of a test: the rule that must decide it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpectedRule {
    /// `default`: no rule matched; the default action decided.
    Default,
    Named(String),
}

impl fmt::Display for ExpectedRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::Named(n) => f.write_str(n),
        }
    }
}

/// Whether a probe is a test (`tests:`) or a guard (`guards:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Test,
    Guard,
}

impl ProbeKind {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Test => "test",
            Self::Guard => "guard",
        }
    }
}

/// One item of `tests:` or `guards:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub kind: ProbeKind,
    /// `name:` (tests only; optional).
    pub name: Option<String>,
    pub from: Located<ProbeEnd>,
    pub to: Located<ProbeEnd>,
    pub service: Located<ProbeService>,
    /// `expect:`; a guard always expects `allow`.
    pub expect: RuleAction,
    /// `rule:` (tests only; optional).
    pub rule: Option<Located<ExpectedRule>>,
    /// Where the item starts.
    pub loc: Loc,
}

impl Probe {
    /// How the probe is shown: its name, or `from -> to service`.
    #[must_use]
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.flow())
    }

    /// `from -> to service`.
    #[must_use]
    pub fn flow(&self) -> String {
        format!(
            "{} -> {} {}",
            self.from.value, self.to.value, self.service.value
        )
    }
}
