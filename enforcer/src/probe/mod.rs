//! Probes: one flow, sent as a crafted frame through the read-only explain entry point of the real
//! XDP program, to learn the verdict a policy gives it. `tests:` expect a verdict (`enforcer
//! test`), `guards:` must be allowed by every policy switched to (`guard`), and `enforcer explain`
//! asks about one flow against the running policy.
//!
//! This module turns a probe's ends into a frame (`Site`), runs it, and names what came back
//! (`Labels`); the kernel side is `enforcer_common::explain`.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use enforcer_common::{
    NETWORK_DEVICE_BASE, UNKNOWN_DEVICE, Verdict,
    event::DenyReason,
    explain::{
        EXPLAIN_F_AUDIT, EXPLAIN_F_DST_QUARANTINED, EXPLAIN_F_SRC_QUARANTINED,
        EXPLAIN_F_SRC_SPOOFED, EXPLAIN_F_SRC_UNKNOWN, EXPLAIN_REQ_ROUTER_SOURCE, ExplainOutcome,
        Explanation,
    },
    identity::ADDR_KIND_ROUTER,
};
use serde::Serialize;

use crate::{
    datapath::probe_frame::{MixedFamilies, PROBE_MAC, ProbeL4, probe_frame},
    policy::{
        CompiledPolicy,
        model::{ExpectedRule, Probe, ProbeEnd, ProbeKind, ProbeService, RuleAction},
    },
};

pub mod guard;
pub mod render;

/// Why a probe's frame cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("no device `{0}` in the policy")]
    NoDevice(String),
    #[error("device `{name}` has no {family} address")]
    NoAddress { name: String, family: &'static str },
    #[error(transparent)]
    MixedFamilies(#[from] MixedFamilies),
}

/// What a probe's ends stand for: each device's MAC and addresses, and the router's addresses.
#[derive(Clone, Debug, Default)]
pub struct Site {
    pub devices: HashMap<String, (Option<[u8; 6]>, Vec<IpAddr>)>,
    /// The router's own addresses (of the router class), sorted.
    pub router: Vec<IpAddr>,
}

impl Site {
    /// The devices of `compiled`, and the router's addresses it was compiled with.
    #[must_use]
    pub fn of(compiled: &CompiledPolicy) -> Self {
        let devices = compiled
            .devices
            .iter()
            .map(|d| (d.name.clone(), (d.mac, d.addresses.clone())))
            .collect();
        let mut router: Vec<IpAddr> = compiled
            .maps
            .addrs_v4
            .iter()
            .filter(|(_, e)| e.kind == ADDR_KIND_ROUTER)
            .map(|(a, _)| IpAddr::V4(Ipv4Addr::from(*a)))
            .chain(
                compiled
                    .maps
                    .addrs_v6
                    .iter()
                    .filter(|(_, e)| e.kind == ADDR_KIND_ROUTER)
                    .map(|(a, _)| IpAddr::V6(Ipv6Addr::from(*a))),
            )
            .collect();
        router.sort();
        Self { devices, router }
    }

    /// The address family of a flow between `from` and `to`: an address given wins, then the
    /// first address of the source device, then of the destination device; IPv4 otherwise.
    fn family_v4(&self, from: &ProbeEnd, to: &ProbeEnd) -> bool {
        let first = |end: &ProbeEnd| match end {
            ProbeEnd::Addr(a) => Some(a.is_ipv4()),
            _ => None,
        };
        let device = |end: &ProbeEnd| match end {
            ProbeEnd::Device(n) => self
                .devices
                .get(n)
                .and_then(|(_, a)| a.first())
                .map(IpAddr::is_ipv4),
            _ => None,
        };
        first(from)
            .or_else(|| first(to))
            .or_else(|| device(from))
            .or_else(|| device(to))
            .unwrap_or(true)
    }

    /// The address `end` stands for in a flow of the family `v4` (true) or IPv6.
    fn address(&self, end: &ProbeEnd, v4: bool) -> Result<IpAddr, FlowError> {
        match end {
            ProbeEnd::Addr(a) => Ok(*a),
            ProbeEnd::Device(n) => {
                let (_, addrs) = self
                    .devices
                    .get(n)
                    .ok_or_else(|| FlowError::NoDevice(n.clone()))?;
                addrs
                    .iter()
                    .copied()
                    .find(|a| a.is_ipv4() == v4)
                    .ok_or_else(|| FlowError::NoAddress {
                        name: n.clone(),
                        family: if v4 { "IPv4" } else { "IPv6" },
                    })
            }
            // Without an address of its own (a policy compiled without the host, as `check`
            // does), the router is reached at an address only it can be meant by: limited
            // broadcast, or IPv6 link-local, which the program judges as `router` too.
            ProbeEnd::Router => Ok(self
                .router
                .iter()
                .copied()
                .find(|a| a.is_ipv4() == v4)
                .unwrap_or(if v4 {
                    IpAddr::V4(Ipv4Addr::BROADCAST)
                } else {
                    IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1))
                })),
        }
    }

    /// The frame and request for one flow.
    ///
    /// # Errors
    /// When an end names no device, a device has no address of the flow's family, or the ends
    /// are of two families.
    pub fn flow(
        &self,
        from: &ProbeEnd,
        to: &ProbeEnd,
        service: ProbeService,
    ) -> Result<Flow, FlowError> {
        let v4 = self.family_v4(from, to);
        let src = self.address(from, v4)?;
        let dst = self.address(to, v4)?;
        let mac = match from {
            ProbeEnd::Device(n) => self.devices.get(n).and_then(|(m, _)| *m),
            _ => None,
        }
        .unwrap_or(PROBE_MAC);
        let l4 = match service {
            ProbeService::Tcp(p) => ProbeL4::Tcp(p),
            ProbeService::Udp(p) => ProbeL4::Udp(p),
            ProbeService::Icmp => ProbeL4::Echo,
        };
        Ok(Flow {
            frame: probe_frame(mac, src, dst, l4)?,
            request: if *from == ProbeEnd::Router {
                EXPLAIN_REQ_ROUTER_SOURCE
            } else {
                0
            },
            src,
            dst,
        })
    }
}

/// One probe's frame, ready to run.
#[derive(Clone, Debug)]
pub struct Flow {
    pub frame: Vec<u8>,
    /// `EXPLAIN_REQ_*`.
    pub request: u32,
    pub src: IpAddr,
    pub dst: IpAddr,
}

/// Names behind the ids an explanation carries.
#[derive(Clone, Debug, Default)]
pub struct Labels {
    /// Device id -> (name, zone).
    pub devices: HashMap<u32, (String, String)>,
    pub rules: HashMap<u32, String>,
    pub classes: HashMap<u16, String>,
    pub networks: HashMap<u32, String>,
}

impl Labels {
    #[must_use]
    pub fn of(compiled: &CompiledPolicy) -> Self {
        Self {
            devices: compiled
                .devices
                .iter()
                .map(|d| (d.id, (d.name.clone(), d.zone.clone())))
                .collect(),
            rules: compiled
                .rules
                .iter()
                .map(|r| (r.id, r.name.clone()))
                .collect(),
            classes: compiled
                .classes
                .iter()
                .map(|c| (c.id, c.name.clone()))
                .collect(),
            networks: compiled
                .networks
                .iter()
                .map(|n| (n.id, n.name.clone()))
                .collect(),
        }
    }

    /// The rule's name; `default` for rule 0.
    #[must_use]
    pub fn rule(&self, id: u32) -> String {
        if id == enforcer_common::DEFAULT_RULE {
            return "default".to_owned();
        }
        self.rules
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("rule #{id}"))
    }

    fn end(&self, device: u32, class: u16, quarantined: bool) -> EndReport {
        let network = device
            .checked_sub(NETWORK_DEVICE_BASE)
            // Row 0 of the network range is the router's own (`ROUTER_DEVICE`).
            .filter(|n| *n != 0)
            .map(|n| {
                self.networks
                    .get(&n)
                    .cloned()
                    .unwrap_or_else(|| format!("network #{n}"))
            });
        let listed = (device != UNKNOWN_DEVICE && device < NETWORK_DEVICE_BASE)
            .then(|| self.devices.get(&device));
        let (name, zone) = match listed {
            Some(Some((n, z))) => (Some(n.clone()), Some(z.clone())),
            Some(None) => (Some(format!("device #{device}")), None),
            None => (None, None),
        };
        EndReport {
            device: name,
            zone,
            network,
            class: self
                .classes
                .get(&class)
                .cloned()
                .unwrap_or_else(|| format!("class #{class}")),
            quarantined,
            spoofed: false,
            unknown: false,
        }
    }
}

/// What one end of a probe resolved to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndReport {
    /// The listed device, if the end is one.
    pub device: Option<String>,
    pub zone: Option<String>,
    /// The policy network, if the end is in one.
    pub network: Option<String>,
    /// The class the policy judged it as (the quarantine class when quarantined).
    pub class: String,
    pub quarantined: bool,
    /// Source only: MAC and address disagree with the policy.
    pub spoofed: bool,
    /// Source only: no listed device and in no network (`defaults.unknown`).
    pub unknown: bool,
}

/// What the program said of one flow, named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Answer {
    /// `allow` or `deny` (the policy's verdict: a deny in audit mode is `deny`, with `audit`);
    /// `not judged` or `no policy` when the program did not judge it.
    pub verdict: String,
    pub rule: String,
    /// Why it was denied (`rule`, `default`, `spoofed`, `quarantined`, `no_flow`); `rule` or
    /// `default` when allowed.
    pub reason: String,
    /// The policy is in audit mode: a deny is only counted.
    pub audit: bool,
    pub generation: u64,
    pub src: EndReport,
    pub dst: EndReport,
    #[serde(skip)]
    pub allowed: bool,
    #[serde(skip)]
    pub rule_id: u32,
}

impl Answer {
    /// Names an explanation.
    #[must_use]
    pub fn of(e: &Explanation, labels: &Labels) -> Self {
        let verdict = match e.outcome() {
            ExplainOutcome::Judged if e.verdict == Verdict::Allow as u8 => "allow",
            ExplainOutcome::Judged => "deny",
            ExplainOutcome::NotJudged => "not judged",
            ExplainOutcome::NoPolicy => "no policy",
            ExplainOutcome::NotRun => "not run",
        };
        let allowed = verdict == "allow";
        let reason = if allowed {
            if e.rule == enforcer_common::DEFAULT_RULE {
                "default"
            } else {
                "rule"
            }
        } else {
            DenyReason::from_u8(e.reason).map_or("none", DenyReason::as_str)
        };
        let mut src = labels.end(e.src_device, e.src_class, e.has(EXPLAIN_F_SRC_QUARANTINED));
        src.spoofed = e.has(EXPLAIN_F_SRC_SPOOFED);
        src.unknown = e.has(EXPLAIN_F_SRC_UNKNOWN);
        if e.has(enforcer_common::explain::EXPLAIN_F_ROUTER_SOURCE) {
            src.device = Some("router".to_owned());
        }
        let dst = labels.end(e.dst_device, e.dst_class, e.has(EXPLAIN_F_DST_QUARANTINED));
        Self {
            verdict: verdict.to_owned(),
            rule: labels.rule(e.rule),
            reason: reason.to_owned(),
            audit: e.has(EXPLAIN_F_AUDIT),
            generation: e.generation,
            src,
            dst,
            allowed,
            rule_id: e.rule,
        }
    }
}

/// One probe of the policy, run.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeResult {
    /// `test` or `guard`.
    pub kind: &'static str,
    pub name: Option<String>,
    /// Where the probe is written (`file:line:col`).
    pub at: String,
    /// `from -> to service`, as written.
    pub flow: String,
    pub src_addr: Option<IpAddr>,
    pub dst_addr: Option<IpAddr>,
    pub expect: &'static str,
    pub expect_rule: Option<String>,
    pub passed: bool,
    /// Why it failed (empty when it passed).
    pub failure: Option<String>,
    pub answer: Option<Answer>,
}

/// Runs `probes` through `explain` (a frame and request in, the program's explanation out).
///
/// # Errors
/// The first error of `explain` (a probe that cannot be built fails on its own).
pub fn run<E>(
    probes: &[Probe],
    site: &Site,
    labels: &Labels,
    mut explain: impl FnMut(&[u8], u32) -> Result<Explanation, E>,
) -> Result<Vec<ProbeResult>, E> {
    let mut out = Vec::with_capacity(probes.len());
    for p in probes {
        let mut r = ProbeResult {
            kind: p.kind.as_str(),
            name: p.name.clone(),
            at: p.loc.to_string(),
            flow: p.flow(),
            src_addr: None,
            dst_addr: None,
            expect: p.expect.as_str(),
            expect_rule: p.rule.as_ref().map(|r| r.value.to_string()),
            passed: false,
            failure: None,
            answer: None,
        };
        match site.flow(&p.from.value, &p.to.value, p.service.value) {
            Err(e) => r.failure = Some(e.to_string()),
            Ok(flow) => {
                r.src_addr = Some(flow.src);
                r.dst_addr = Some(flow.dst);
                let answer = Answer::of(&explain(&flow.frame, flow.request)?, labels);
                r.failure = failure(p, &answer);
                r.passed = r.failure.is_none();
                r.answer = Some(answer);
            }
        }
        out.push(r);
    }
    Ok(out)
}

/// Why `answer` fails probe `p`, or `None` when it passes.
fn failure(p: &Probe, answer: &Answer) -> Option<String> {
    let want_allow = p.expect == RuleAction::Allow;
    if !matches!(answer.verdict.as_str(), "allow" | "deny") {
        return Some(format!("the program did not judge it ({})", answer.verdict));
    }
    if answer.allowed != want_allow {
        return Some(match p.kind {
            ProbeKind::Guard => format!(
                "the policy denies a guarded flow ({}, rule {})",
                answer.reason, answer.rule
            ),
            ProbeKind::Test => format!(
                "expected {}, got {} ({}, rule {})",
                p.expect.as_str(),
                answer.verdict,
                answer.reason,
                answer.rule
            ),
        });
    }
    match p.rule.as_ref().map(|r| &r.value) {
        Some(ExpectedRule::Default)
            if answer.rule_id != enforcer_common::DEFAULT_RULE || answer.reason != "default" =>
        {
            Some(format!(
                "expected the default to decide it, but {} did ({})",
                answer.rule, answer.reason
            ))
        }
        Some(ExpectedRule::Named(n)) if answer.rule != *n => Some(format!(
            "expected rule {n} to decide it, but {} did ({})",
            answer.rule, answer.reason
        )),
        _ => None,
    }
}

/// Counts of a probe run: (passed, failed) per kind.
#[must_use]
pub fn tally(results: &[ProbeResult]) -> BTreeMap<&'static str, (usize, usize)> {
    let mut t = BTreeMap::new();
    for r in results {
        let e: &mut (usize, usize) = t.entry(r.kind).or_default();
        if r.passed {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    t
}
