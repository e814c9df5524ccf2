//! Verdicts: every rule expanded into (source class, destination class) pairs, each pair's
//! per-protocol and per-port decisions resolved with deny precedence (the `PAIRS` and `PORTS`
//! images).

use std::{
    collections::{BTreeMap, HashMap},
    rc::Rc,
};

use enforcer_common::{Action, Decision, PROTO_TCP, PROTO_UDP, rules::PairValue};

use super::{
    PAIR_WORK_BUDGET, capacity,
    classes::Classes,
    shadowing::{shadow_warnings, shadowed},
};
use crate::policy::{
    diag::{Diags, Loc},
    maps::{ClassPair, Image, PairPort, Pairs, PolicyMap as _, PolicyMaps, Ports},
    model::{Policy, Ports as PortSet, Rule, RuleAction, Service},
};

/// The `PAIRS` and `PORTS` images.
pub(super) struct Verdicts {
    pairs: Image<Pairs>,
    ports: Image<Ports>,
}

/// What a set of rules decides on one pair; shared by every pair with the same rules.
pub(super) struct Outcome {
    value: PairValue,
    /// (protocol, port, decision), sorted; only where the decision differs from the wildcard.
    ports: Vec<(u8, u16, Decision)>,
    /// Number of port entries (exact, even when `ports` was not materialised).
    port_count: usize,
    /// Allow rules (indices into `Policy::rules`) that do allow something here.
    pub(super) live: Vec<u32>,
    /// A deny rule that covers the rest, for the warning.
    pub(super) shadowing: HashMap<u32, u32>,
}

/// Rules (indices into `Policy::rules`, by rule id) per class pair.
type RulesByPair = HashMap<ClassPair, Vec<u32>>;

impl Verdicts {
    /// Moves the images into `maps`.
    pub(super) fn into_maps(self, maps: &mut PolicyMaps) {
        maps.pairs = self.pairs;
        maps.ports = self.ports;
    }

    /// Expands every rule into its class pairs and resolves each pair; `None` (with an error in
    /// `diags`) when the policy is over the work budget or a map's capacity.
    pub(super) fn build(
        p: &Policy,
        classes: &Classes,
        rule_ids: &[u32],
        root: &Loc,
        diags: &mut Diags,
    ) -> Option<Self> {
        let sides: Vec<(Vec<u16>, Vec<u16>)> = p
            .rules
            .iter()
            .map(|r| (classes.expand(&r.from), classes.expand(&r.to)))
            .collect();
        within_work_budget(p, &sides, root, diags)?;
        let by_pair = group_by_pair(p, &sides, rule_ids, diags)?;
        let mut keys: Vec<ClassPair> = by_pair.keys().copied().collect();
        keys.sort_unstable();
        let mut cache: HashMap<&[u32], Rc<Outcome>> = HashMap::new();
        let mut materialised = 0usize;
        let mut outcomes = Vec::with_capacity(keys.len());
        for key in &keys {
            let rules = by_pair.get(key).map_or(&[][..], Vec::as_slice);
            let outcome = match cache.get(rules) {
                Some(o) => Rc::clone(o),
                None => {
                    // Past the capacity only the count matters (the policy is rejected below).
                    let materialise = materialised <= Ports::CAPACITY as usize;
                    let o = Rc::new(decide(&p.rules, rule_ids, rules, materialise));
                    materialised += o.port_count;
                    cache.insert(rules, Rc::clone(&o));
                    o
                }
            };
            outcomes.push(outcome);
        }
        shadow_warnings(p, &cache, rule_ids, diags);
        let total_ports: usize = outcomes.iter().map(|o| o.port_count).sum();
        capacity(diags, root, Ports::NAME, total_ports, Ports::CAPACITY);
        if total_ports > Ports::CAPACITY as usize {
            return None;
        }
        Some(number_pairs(&keys, &outcomes, total_ports))
    }
}

/// Rejects a policy whose (rule x source class x destination class x service) expansion is over
/// [`PAIR_WORK_BUDGET`], before doing the work.
fn within_work_budget(
    p: &Policy,
    sides: &[(Vec<u16>, Vec<u16>)],
    root: &Loc,
    diags: &mut Diags,
) -> Option<()> {
    let work: u64 = p
        .rules
        .iter()
        .zip(sides)
        .map(|(r, (s, t))| (s.len() as u64) * (t.len() as u64) * (r.services.len().max(1) as u64))
        .sum();
    if work > PAIR_WORK_BUDGET {
        diags.error(root, format!("rules expand to {work} (rule, source class, destination class, service) combinations, over the budget of {PAIR_WORK_BUDGET}"), "use zones instead of many device: endpoints, or fewer `any` endpoints");
        return None;
    }
    Some(())
}

/// The rules on each class pair, in rule-id order; stops at the rule that overflows `PAIRS`.
fn group_by_pair(
    p: &Policy,
    sides: &[(Vec<u16>, Vec<u16>)],
    rule_ids: &[u32],
    diags: &mut Diags,
) -> Option<RulesByPair> {
    let mut order: Vec<usize> = (0..p.rules.len()).collect();
    order.sort_by_key(|i| rule_ids[*i]);
    let mut by_pair: RulesByPair = HashMap::new();
    for &i in &order {
        let (srcs, dsts) = &sides[i];
        for &src in srcs {
            for &dst in dsts {
                by_pair
                    .entry(ClassPair { src, dst })
                    .or_default()
                    .push(i as u32);
            }
        }
        if by_pair.len() > Pairs::CAPACITY as usize {
            let loc = &p.rules[i].loc;
            capacity(diags, loc, Pairs::NAME, by_pair.len(), Pairs::CAPACITY);
            return None;
        }
    }
    Some(by_pair)
}

/// The images: pairs with port entries get ids `1..` in key order, their ports keyed by that id.
fn number_pairs(keys: &[ClassPair], outcomes: &[Rc<Outcome>], total_ports: usize) -> Verdicts {
    let mut pairs = Vec::with_capacity(keys.len());
    let mut ports = Vec::with_capacity(total_ports);
    let mut next_pair = 1u32;
    for (key, o) in keys.iter().zip(outcomes) {
        let mut value = o.value;
        if o.port_count > 0 {
            value.pair = next_pair;
            next_pair += 1;
            ports.extend(o.ports.iter().map(|(proto, port, d)| {
                let key = PairPort {
                    pair: value.pair,
                    proto: *proto,
                    port: *port,
                };
                (key, *d)
            }));
        }
        pairs.push((*key, value));
    }
    Verdicts { pairs, ports }
}

/// Lowest rule id per action seen so far.
#[derive(Clone, Copy, Default)]
pub(super) struct Best {
    pub(super) deny: Option<u32>,
    pub(super) allow: Option<u32>,
}

impl Best {
    fn add(&mut self, action: RuleAction, id: u32) {
        let slot = match action {
            RuleAction::Deny => &mut self.deny,
            RuleAction::Allow => &mut self.allow,
        };
        *slot = Some(slot.map_or(id, |s| s.min(id)));
    }

    fn merge(mut self, other: Self) -> Self {
        if let Some(d) = other.deny {
            self.add(RuleAction::Deny, d);
        }
        if let Some(a) = other.allow {
            self.add(RuleAction::Allow, a);
        }
        self
    }

    /// Deny precedence: any deny beats every allow.
    fn decision(self) -> Decision {
        match (self.deny, self.allow) {
            (Some(d), _) => Decision::new(Action::Deny, d),
            (None, Some(a)) => Decision::new(Action::Allow, a),
            (None, None) => Decision::NONE,
        }
    }
}

/// Resolve one pair's rules (indices into `rules`, sorted by id).
fn decide(rules: &[Rule], rule_ids: &[u32], on_pair: &[u32], materialise: bool) -> Outcome {
    let mut wild = [Best::default(); 4]; // tcp, udp, icmp, other
    let mut ranges: [Vec<(u16, u16, RuleAction, u32)>; 2] = [Vec::new(), Vec::new()];
    for &i in on_pair {
        let (r, id) = (&rules[i as usize], rule_ids[i as usize]);
        for s in &r.services {
            match s.value {
                Service::Any => (0..4).for_each(|p| wild[p].add(r.action, id)),
                Service::Icmp => wild[2].add(r.action, id),
                Service::Tcp(PortSet::All) => wild[0].add(r.action, id),
                Service::Udp(PortSet::All) => wild[1].add(r.action, id),
                Service::Tcp(PortSet::Range(lo, hi)) => ranges[0].push((lo, hi, r.action, id)),
                Service::Udp(PortSet::Range(lo, hi)) => ranges[1].push((lo, hi, r.action, id)),
            }
        }
    }
    let value = PairValue {
        pair: 0,
        _pad: 0,
        tcp: wild[0].decision(),
        udp: wild[1].decision(),
        icmp: wild[2].decision(),
        other: wild[3].decision(),
    };
    let mut ports = Vec::new();
    let mut port_count = 0;
    for (p, proto) in [(0, PROTO_TCP), (1, PROTO_UDP)] {
        sweep(&ranges[p], wild[p], |lo, hi, d| {
            if d != wild[p].decision() {
                port_count += usize::from(hi - lo) + 1;
                if materialise {
                    ports.extend((lo..=hi).map(|port| (proto, port, d)));
                }
            }
        });
    }
    let (live, shadowing) = shadowed(rules, on_pair, &wild, &ranges);
    Outcome {
        value,
        ports,
        port_count,
        live,
        shadowing,
    }
}

/// Walk the port line once: for each maximal run of ports covered by the same set of ranges,
/// call `emit(lo, hi, decision)` with the wildcard folded in.
fn sweep(
    ranges: &[(u16, u16, RuleAction, u32)],
    wildcard: Best,
    mut emit: impl FnMut(u16, u16, Decision),
) {
    if ranges.is_empty() {
        return;
    }
    // (position, +1 start / -1 end, action, id); ends sit at hi + 1 (in u32 to pass 65535).
    let mut events: Vec<(u32, bool, RuleAction, u32)> = Vec::with_capacity(ranges.len() * 2);
    for &(lo, hi, a, id) in ranges {
        events.push((u32::from(lo), true, a, id));
        events.push((u32::from(hi) + 1, false, a, id));
    }
    events.sort_unstable_by_key(|e| e.0);
    let mut active: [BTreeMap<u32, u32>; 2] = [BTreeMap::new(), BTreeMap::new()];
    let mut i = 0;
    while i < events.len() {
        let pos = events[i].0;
        while i < events.len() && events[i].0 == pos {
            let (_, start, action, id) = events[i];
            let set = &mut active[usize::from(action == RuleAction::Allow)];
            if start {
                *set.entry(id).or_default() += 1;
            } else if let Some(n) = set.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    set.remove(&id);
                }
            }
            i += 1;
        }
        let Some(&(next, ..)) = events.get(i) else {
            break;
        };
        if active[0].is_empty() && active[1].is_empty() {
            continue;
        }
        let here = Best {
            deny: active[0].keys().next().copied(),
            allow: active[1].keys().next().copied(),
        };
        // Positions are at most 65536 and `next > pos >= 1`, so both ends fit a port.
        let (lo, hi) = (
            u16::try_from(pos).unwrap_or(u16::MAX),
            u16::try_from(next - 1).unwrap_or(u16::MAX),
        );
        emit(lo, hi, here.merge(wildcard).decision());
    }
}

#[cfg(test)]
mod tests {
    use enforcer_common::{Action, Decision, PROTO_TCP, PROTO_UDP};

    use super::super::test_support::{pair, port, two_rules};

    #[test]
    fn denied_port_under_allowed_wildcard_is_a_deny_entry() {
        let c = two_rules("allow: [tcp]", "deny: [tcp/22]");
        let p = pair(&c, "zone:a", "zone:b");
        assert_eq!(p.tcp, Decision::new(Action::Allow, 1));
        assert_eq!(
            port(&c, &p, PROTO_TCP, 22),
            Some(Decision::new(Action::Deny, 2))
        );
        assert_eq!(c.maps.ports.len(), 1);
        assert_eq!(p.udp, Decision::NONE);
    }

    #[test]
    fn allowed_port_under_denied_wildcard_stays_denied() {
        let c = two_rules("allow: [tcp/22]", "deny: [tcp]");
        let p = pair(&c, "zone:a", "zone:b");
        assert_eq!(p.tcp, Decision::new(Action::Deny, 2));
        assert_eq!(p.pair, 0, "no port entries");
        assert!(c.maps.ports.is_empty());
    }

    #[test]
    fn deny_any_beats_every_allow_on_the_pair() {
        let c = two_rules("allow: [tcp/80, udp/53, icmp]", "deny: [any]");
        let p = pair(&c, "zone:a", "zone:b");
        for d in [p.tcp, p.udp, p.icmp, p.other] {
            assert_eq!(d, Decision::new(Action::Deny, 2));
        }
        assert!(c.maps.ports.is_empty());
        assert!(
            c.warnings
                .iter()
                .any(|w| w.message.contains("rule `r1` never allows anything")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn overlapping_ranges_resolve_port_by_port() {
        let c = two_rules("allow: [tcp/8000-8010, udp/53]", "deny: [tcp/8005-8020]");
        let p = pair(&c, "zone:a", "zone:b");
        assert_eq!(
            port(&c, &p, PROTO_TCP, 8000),
            Some(Decision::new(Action::Allow, 1))
        );
        assert_eq!(
            port(&c, &p, PROTO_TCP, 8004),
            Some(Decision::new(Action::Allow, 1))
        );
        assert_eq!(
            port(&c, &p, PROTO_TCP, 8005),
            Some(Decision::new(Action::Deny, 2))
        );
        assert_eq!(
            port(&c, &p, PROTO_TCP, 8020),
            Some(Decision::new(Action::Deny, 2))
        );
        assert_eq!(port(&c, &p, PROTO_TCP, 8021), None);
        assert_eq!(
            port(&c, &p, PROTO_UDP, 53),
            Some(Decision::new(Action::Allow, 1))
        );
        assert_eq!(c.maps.ports.len(), 5 + 16 + 1);
        assert!(
            c.maps.ports.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted, unique"
        );
    }
}
