//! The compiler: a pure function from a validated [`Policy`] to a [`CompiledPolicy`], the image of
//! every policy map.
//!
//! All policy reasoning happens here so the datapath does at most two exact-match lookups per
//! packet whatever the number of rules: names become stable ids, endpoints become classes, rules
//! become (source class, destination class) pairs whose per-protocol and per-port decisions already
//! have deny precedence applied. Work is bounded before it is done (see [`PAIR_WORK_BUDGET`]), so a
//! hostile policy that fits the file caps cannot make the compiler run for minutes.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::IpAddr,
    rc::Rc,
};

use enforcer_common::{
    Action, Decision, MAX_CLASSES, MAX_MACS, MAX_NETS, MAX_NETWORKS, MAX_PAIRS, MAX_PORTS,
    MAX_RULES, NETWORK_DEVICE_BASE, PROTO_TCP, PROTO_UDP,
    identity::{
        ADDR_KIND_DEVICE, ADDR_KIND_ROUTER, AddrEntry, DST_F_TRIPWIRE, MAC_F_ANY_ADDR, MacEntry,
        NET_F_ONLINK, NetEntry,
    },
    rules::PairValue,
};

use super::{
    compiled::{
        ClassInfo, CompileOptions, CompiledPolicy, DeviceInfo, IdTable, NetworkInfo,
        QuarantineSettings, RuleInfo, ZoneInfo,
    },
    diag::{Diagnostic, Diags, Loc, PolicyError},
    model::{Endpoint, Policy, Ports, Rule, RuleAction, Service},
};

/// Most (rule x source class x destination class x service) expansions one compile may do. Real
/// policies stay far below (the 100,000-device, 10,000-rule benchmark needs well under a million);
/// a policy over it is rejected instead of keeping the daemon busy for minutes.
pub const PAIR_WORK_BUDGET: u64 = 50_000_000;

/// Compile a loaded policy.
///
/// # Errors
/// [`PolicyError::Invalid`] when a map or id space would overflow, a device claims a router
/// address, or the policy is too expensive to expand.
pub fn compile(policy: &Policy, opts: &CompileOptions) -> Result<CompiledPolicy, PolicyError> {
    compile_with_diagnostics(policy, opts).map(|(compiled, _)| compiled)
}

/// [`compile`], also returning the warnings (of loading and compiling) as diagnostics.
///
/// # Errors
/// As [`compile`].
pub fn compile_with_diagnostics(
    policy: &Policy,
    opts: &CompileOptions,
) -> Result<(CompiledPolicy, Vec<Diagnostic>), PolicyError> {
    let mut diags = Diags {
        list: policy.warnings.clone(),
    };
    let root = &policy.root;
    capacity(
        &mut diags,
        root,
        "devices (ids)",
        policy.devices.len(),
        NETWORK_DEVICE_BASE - 1,
    );
    capacity(
        &mut diags,
        root,
        "rules (ids)",
        policy.rules.len(),
        MAX_RULES - 1,
    );
    if diags.has_errors() {
        return Err(diags.into_error());
    }
    let prev = opts.previous_ids.as_ref();
    let ids = IdTable {
        devices: assign_ids(
            policy.devices.keys(),
            prev.map(|p| &p.devices),
            NETWORK_DEVICE_BASE,
            root,
            "device",
            &mut diags,
        ),
        rules: assign_ids(
            policy.rules.iter().map(|r| &r.name),
            prev.map(|p| &p.rules),
            MAX_RULES,
            root,
            "rule",
            &mut diags,
        ),
        networks: assign_ids(
            policy.networks.keys(),
            prev.map(|p| &p.networks),
            MAX_NETWORKS,
            root,
            "network",
            &mut diags,
        ),
    };
    let classes = Classes::new(policy);
    capacity(&mut diags, root, "classes", classes.info.len(), MAX_CLASSES);
    if diags.has_errors() {
        return Err(diags.into_error());
    }
    let rule_ids: Vec<u32> = policy
        .rules
        .iter()
        .map(|r| ids.rules.get(&r.name).copied().unwrap_or(0))
        .collect();
    let verdicts = Verdicts::build(policy, &classes, &rule_ids, root, &mut diags);
    let identity = Identity::build(policy, &ids, &classes, opts, &mut diags);
    if diags.has_errors() {
        return Err(diags.into_error());
    }
    let Some(verdicts) = verdicts else {
        return Err(diags.into_error());
    };
    let compiled = CompiledPolicy {
        digest: policy.digest.clone(),
        sources: policy.sources.clone(),
        mode: policy.defaults.mode,
        default_action: policy.defaults.action,
        spoofed_action: policy.defaults.spoofed,
        unknown_class: classes.zone(&policy.defaults.unknown.value),
        router_class: classes.router,
        quarantine: policy.quarantine.as_ref().map(|q| QuarantineSettings {
            zone: q.zone.value.clone(),
            class: classes.zone(&q.zone.value),
            denied_packets: q.denied_packets,
            spoofing: q.spoofing,
            touches: q.touches.iter().map(|t| t.value.to_string()).collect(),
            release_after_s: q.release_after_s,
        }),
        macs: identity.macs,
        addrs_v4: identity.addrs_v4,
        addrs_v6: identity.addrs_v6,
        nets_v4: identity.nets_v4,
        nets_v6: identity.nets_v6,
        pairs: verdicts.pairs,
        ports: verdicts.ports,
        classes: classes.info.clone(),
        zones: policy
            .zones
            .values()
            .map(|z| ZoneInfo {
                name: z.name.clone(),
                description: z.description.clone(),
                class: classes.zone(&z.name),
            })
            .collect(),
        devices: identity.devices,
        rules: rule_infos(policy, &rule_ids),
        networks: policy
            .networks
            .values()
            .map(|n| NetworkInfo {
                id: ids.networks.get(&n.name).copied().unwrap_or(0),
                name: n.name.clone(),
                class: classes.network(&n.name),
                cidrs: n.cidrs.iter().map(|c| c.value.to_string()).collect(),
            })
            .collect(),
        ids,
        warnings: Vec::new(),
    };
    let warnings = diags.finish()?;
    let compiled = CompiledPolicy {
        warnings: warnings.iter().map(ToString::to_string).collect(),
        ..compiled
    };
    Ok((compiled, warnings))
}

/// "MAP needs N entries, capacity M".
fn capacity(diags: &mut Diags, at: &Loc, what: &str, needed: usize, cap: u32) {
    if needed > cap as usize {
        diags.error(
            at,
            format!("{what} needs {needed} entries, capacity {cap}"),
            "split the site over several enforcers, or merge rules, devices or networks",
        );
    }
}

/// Ids stable by name: previous names keep their id; new names take the lowest id that is free and
/// was not used by the previous policy (so a removed name's counters are not inherited at once).
fn assign_ids<'a>(
    names: impl Iterator<Item = &'a String>,
    previous: Option<&BTreeMap<String, u32>>,
    limit: u32,
    at: &Loc,
    kind: &str,
    diags: &mut Diags,
) -> BTreeMap<String, u32> {
    let names: BTreeSet<&String> = names.collect();
    let empty = BTreeMap::new();
    let previous = previous.unwrap_or(&empty);
    let used: HashSet<u32> = previous
        .values()
        .copied()
        .filter(|id| (1..limit).contains(id))
        .collect();
    let mut out = BTreeMap::new();
    let mut taken = HashSet::new();
    let mut fresh = Vec::new();
    for name in names {
        match previous.get(name) {
            Some(id) if (1..limit).contains(id) && taken.insert(*id) => {
                out.insert(name.clone(), *id);
            }
            _ => fresh.push(name),
        }
    }
    let mut next = 1u32;
    for name in fresh {
        while next < limit && (used.contains(&next) || taken.contains(&next)) {
            next += 1;
        }
        if next >= limit {
            diags.error(at, format!("no free {kind} id: {kind} ids needs more entries, capacity {}", limit - 1), "ids of names removed since the last apply stay reserved for one reload; apply once without them, then again");
            return out;
        }
        out.insert(name.clone(), next);
        next += 1;
    }
    out
}

/// The classes: one per zone, network, the router, and each device a rule or tripwire names.
struct Classes {
    info: Vec<ClassInfo>,
    zones: HashMap<String, u16>,
    networks: HashMap<String, u16>,
    router: u16,
    /// Devices with a class of their own.
    own: HashMap<String, u16>,
    /// Own classes of devices, by zone.
    zone_members: HashMap<String, Vec<u16>>,
}

impl Classes {
    fn new(p: &Policy) -> Self {
        let named: BTreeSet<&str> = p
            .rules
            .iter()
            .flat_map(|r| r.from.iter().chain(&r.to))
            .chain(p.quarantine.iter().flat_map(|q| &q.touches))
            .filter_map(|e| match &e.value {
                Endpoint::Device(d) => Some(d.as_str()),
                _ => None,
            })
            .collect();
        let mut info = Vec::new();
        // Ids past MAX_CLASSES are never used: `capacity` rejects the policy first.
        let mut add = |name: String| {
            let id = u16::try_from(info.len() + 1).unwrap_or(u16::MAX);
            info.push(ClassInfo { id, name });
            id
        };
        let zones = p
            .zones
            .keys()
            .map(|z| (z.clone(), add(format!("zone:{z}"))))
            .collect();
        let networks = p
            .networks
            .keys()
            .map(|n| (n.clone(), add(format!("network:{n}"))))
            .collect();
        let router = add("router".to_owned());
        let mut own = HashMap::new();
        let mut zone_members: HashMap<String, Vec<u16>> = HashMap::new();
        for d in named {
            let id = add(format!("device:{d}"));
            own.insert(d.to_owned(), id);
            if let Some(dev) = p.devices.get(d) {
                zone_members
                    .entry(dev.zone.value.clone())
                    .or_default()
                    .push(id);
            }
        }
        Self {
            info,
            zones,
            networks,
            router,
            own,
            zone_members,
        }
    }

    fn zone(&self, name: &str) -> u16 {
        self.zones.get(name).copied().unwrap_or(0)
    }

    fn network(&self, name: &str) -> u16 {
        self.networks.get(name).copied().unwrap_or(0)
    }

    fn device(&self, name: &str, zone: &str) -> u16 {
        self.own
            .get(name)
            .copied()
            .unwrap_or_else(|| self.zone(zone))
    }

    /// The classes a rule endpoint stands for, sorted.
    fn expand(&self, endpoints: &[super::model::Located<Endpoint>]) -> Vec<u16> {
        let mut out = Vec::new();
        for e in endpoints {
            match &e.value {
                Endpoint::Any => {
                    return (1..=self.info.len())
                        .filter_map(|c| u16::try_from(c).ok())
                        .collect();
                }
                Endpoint::Zone(z) => {
                    out.push(self.zone(z));
                    out.extend(self.zone_members.get(z).into_iter().flatten());
                }
                Endpoint::Device(d) => out.extend(self.own.get(d)),
                Endpoint::Network(n) => out.push(self.network(n)),
                Endpoint::Router => out.push(self.router),
            }
        }
        out.sort_unstable();
        out.dedup();
        out.retain(|c| *c != 0);
        out
    }
}

fn rule_infos(p: &Policy, rule_ids: &[u32]) -> Vec<RuleInfo> {
    let mut out: Vec<RuleInfo> = p
        .rules
        .iter()
        .zip(rule_ids)
        .map(|(r, id)| RuleInfo {
            id: *id,
            name: r.name.clone(),
            action: r.action.as_str().to_owned(),
            from: r.from.iter().map(|e| e.value.to_string()).collect(),
            to: r.to.iter().map(|e| e.value.to_string()).collect(),
            services: r.services.iter().map(|s| s.value.to_string()).collect(),
        })
        .collect();
    out.sort_by_key(|r| r.id);
    out
}

/// The `PAIRS` and `PORTS` images.
struct Verdicts {
    pairs: Vec<((u16, u16), PairValue)>,
    ports: Vec<((u32, u8, u16), Decision)>,
}

/// What a set of rules decides on one pair; shared by every pair with the same rules.
struct Outcome {
    value: PairValue,
    /// (protocol, port, decision), sorted; only where the decision differs from the wildcard.
    ports: Vec<(u8, u16, Decision)>,
    /// Number of port entries (exact, even when `ports` was not materialised).
    port_count: usize,
    /// Allow rules (indices into `Policy::rules`) that do allow something here.
    live: Vec<u32>,
    /// A deny rule that covers the rest, for the warning.
    shadowing: HashMap<u32, u32>,
}

impl Verdicts {
    fn build(
        p: &Policy,
        classes: &Classes,
        rule_ids: &[u32],
        root: &Loc,
        diags: &mut Diags,
    ) -> Option<Self> {
        let mut order: Vec<usize> = (0..p.rules.len()).collect();
        order.sort_by_key(|i| rule_ids[*i]);
        let sides: Vec<(Vec<u16>, Vec<u16>)> = p
            .rules
            .iter()
            .map(|r| (classes.expand(&r.from), classes.expand(&r.to)))
            .collect();
        let work: u64 = p
            .rules
            .iter()
            .zip(&sides)
            .map(|(r, (s, t))| {
                (s.len() as u64) * (t.len() as u64) * (r.services.len().max(1) as u64)
            })
            .sum();
        if work > PAIR_WORK_BUDGET {
            diags.error(root, format!("rules expand to {work} (rule, source class, destination class, service) combinations, over the budget of {PAIR_WORK_BUDGET}"), "use zones instead of many device: endpoints, or fewer `any` endpoints");
            return None;
        }
        let mut by_pair: HashMap<(u16, u16), Vec<u32>> = HashMap::new();
        for &i in &order {
            let (srcs, dsts) = &sides[i];
            for &s in srcs {
                for &t in dsts {
                    by_pair.entry((s, t)).or_default().push(i as u32);
                }
            }
            if by_pair.len() > MAX_PAIRS as usize {
                capacity(
                    diags,
                    &p.rules[i].loc,
                    enforcer_common::rules::PAIRS_MAP,
                    by_pair.len(),
                    MAX_PAIRS,
                );
                return None;
            }
        }
        let mut keys: Vec<(u16, u16)> = by_pair.keys().copied().collect();
        keys.sort_unstable();
        let mut cache: HashMap<&[u32], Rc<Outcome>> = HashMap::new();
        let mut materialised = 0usize;
        let mut outcomes = Vec::with_capacity(keys.len());
        for key in &keys {
            let rules = by_pair.get(key).map_or(&[][..], Vec::as_slice);
            let outcome = match cache.get(rules) {
                Some(o) => Rc::clone(o),
                None => {
                    let o = Rc::new(decide(
                        &p.rules,
                        rule_ids,
                        rules,
                        materialised <= MAX_PORTS as usize,
                    ));
                    materialised += o.port_count;
                    cache.insert(rules, Rc::clone(&o));
                    o
                }
            };
            outcomes.push(outcome);
        }
        shadow_warnings(p, &cache, rule_ids, diags);
        let total_ports: usize = outcomes.iter().map(|o| o.port_count).sum();
        capacity(
            diags,
            root,
            enforcer_common::rules::PORTS_MAP,
            total_ports,
            MAX_PORTS,
        );
        if total_ports > MAX_PORTS as usize {
            return None;
        }
        let mut pairs = Vec::with_capacity(keys.len());
        let mut ports = Vec::with_capacity(total_ports);
        let mut next_pair = 1u32;
        for (key, o) in keys.iter().zip(&outcomes) {
            let mut value = o.value;
            if o.port_count > 0 {
                value.pair = next_pair;
                next_pair += 1;
                ports.extend(
                    o.ports
                        .iter()
                        .map(|(proto, port, d)| ((value.pair, *proto, *port), *d)),
                );
            }
            pairs.push((*key, value));
        }
        Some(Self { pairs, ports })
    }
}

/// Lowest rule id per action seen so far.
#[derive(Clone, Copy, Default)]
struct Best {
    deny: Option<u32>,
    allow: Option<u32>,
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
                Service::Tcp(Ports::All) => wild[0].add(r.action, id),
                Service::Udp(Ports::All) => wild[1].add(r.action, id),
                Service::Tcp(Ports::Range(lo, hi)) => ranges[0].push((lo, hi, r.action, id)),
                Service::Udp(Ports::Range(lo, hi)) => ranges[1].push((lo, hi, r.action, id)),
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

/// Which allow rules on this pair allow something a deny does not take back.
fn shadowed(
    rules: &[Rule],
    on_pair: &[u32],
    wild: &[Best; 4],
    ranges: &[Vec<(u16, u16, RuleAction, u32)>; 2],
) -> (Vec<u32>, HashMap<u32, u32>) {
    let denied: [Vec<(u16, u16, u32)>; 2] = [0, 1].map(|p| {
        let mut v: Vec<_> = ranges[p]
            .iter()
            .filter(|r| r.2 == RuleAction::Deny)
            .map(|r| (r.0, r.1, r.3))
            .collect();
        v.sort_unstable();
        v
    });
    // The deny that covers [lo, hi] of protocol p, if one set of denies covers it all.
    let covered = |p: usize, lo: u16, hi: u16| -> Option<u32> {
        if let Some(d) = wild[p].deny {
            return Some(d);
        }
        let mut reach = u32::from(lo);
        let mut by = None;
        for &(a, b, id) in &denied[p] {
            if u32::from(a) > reach {
                break;
            }
            if u32::from(b) + 1 > reach {
                reach = u32::from(b) + 1;
                by = Some(id);
            }
            if reach > u32::from(hi) {
                return by;
            }
        }
        None
    };
    let mut live = Vec::new();
    let mut shadowing = HashMap::new();
    for &i in on_pair {
        let r = &rules[i as usize];
        if r.action != RuleAction::Allow {
            continue;
        }
        let mut by = None;
        let all_denied = r.services.iter().all(|s| {
            let d = match s.value {
                Service::Any => wild[3].deny,
                Service::Icmp => wild[2].deny,
                Service::Tcp(Ports::All) => wild[0].deny,
                Service::Udp(Ports::All) => wild[1].deny,
                Service::Tcp(Ports::Range(lo, hi)) => covered(0, lo, hi),
                Service::Udp(Ports::Range(lo, hi)) => covered(1, lo, hi),
            };
            by = by.or(d);
            d.is_some()
        });
        match (all_denied, by) {
            (true, Some(d)) => {
                shadowing.insert(i, d);
            }
            _ => live.push(i),
        }
    }
    (live, shadowing)
}

/// Warn about allow rules that every pair's denies cancel out.
fn shadow_warnings(
    p: &Policy,
    outcomes: &HashMap<&[u32], Rc<Outcome>>,
    rule_ids: &[u32],
    diags: &mut Diags,
) {
    let mut live = vec![false; p.rules.len()];
    let mut by: HashMap<u32, u32> = HashMap::new();
    for o in outcomes.values() {
        for &i in &o.live {
            live[i as usize] = true;
        }
        for (&i, &d) in &o.shadowing {
            by.entry(i).or_insert(d);
        }
    }
    let names: HashMap<u32, &str> = p
        .rules
        .iter()
        .zip(rule_ids)
        .map(|(r, id)| (*id, r.name.as_str()))
        .collect();
    for (i, r) in p.rules.iter().enumerate() {
        if r.action == RuleAction::Allow
            && !live[i]
            && let Some(d) = by.get(&(i as u32))
        {
            let deny = names.get(d).copied().unwrap_or("?");
            diags.warning(&r.loc, format!("rule `{}` never allows anything: deny rule `{deny}` (and any others) deny all of it", r.name), "remove the rule, or narrow the deny");
        }
    }
}

/// The identity maps and the device list.
struct Identity {
    macs: Vec<([u8; 6], MacEntry)>,
    addrs_v4: Vec<([u8; 4], AddrEntry)>,
    addrs_v6: Vec<([u8; 16], AddrEntry)>,
    nets_v4: Vec<([u8; 4], u8, NetEntry)>,
    nets_v6: Vec<([u8; 16], u8, NetEntry)>,
    devices: Vec<DeviceInfo>,
}

impl Identity {
    fn build(
        p: &Policy,
        ids: &IdTable,
        classes: &Classes,
        opts: &CompileOptions,
        diags: &mut Diags,
    ) -> Self {
        let tripwires: HashSet<&Endpoint> = p
            .quarantine
            .iter()
            .flat_map(|q| &q.touches)
            .map(|t| &t.value)
            .collect();
        let router: BTreeSet<IpAddr> = opts.router_addrs.iter().copied().collect();
        let mut out = Self {
            macs: Vec::new(),
            addrs_v4: Vec::new(),
            addrs_v6: Vec::new(),
            nets_v4: Vec::new(),
            nets_v6: Vec::new(),
            devices: Vec::new(),
        };
        for d in p.devices.values() {
            let id = ids.devices.get(&d.name).copied().unwrap_or(0);
            let class = classes.device(&d.name, &d.zone.value);
            let mac = d.mac.as_ref().map(|m| m.value);
            let flags = if tripwires.contains(&Endpoint::Device(d.name.clone())) {
                DST_F_TRIPWIRE
            } else {
                0
            };
            if let Some(mac) = mac {
                out.macs.push((
                    mac,
                    MacEntry {
                        device: id,
                        class,
                        // A device that lists no addresses is identified by its MAC alone.
                        flags: if d.addresses.is_empty() {
                            MAC_F_ANY_ADDR
                        } else {
                            0
                        },
                    },
                ));
            }
            let entry = AddrEntry {
                device: id,
                class,
                kind: ADDR_KIND_DEVICE,
                flags,
                mac: mac.unwrap_or([0; 6]),
                _pad: [0; 2],
            };
            for a in &d.addresses {
                if router.contains(&a.value) {
                    diags.error(
                        &a.loc,
                        format!(
                            "address {} of device `{}` is one of the router's own addresses",
                            a.value, d.name
                        ),
                        "a device cannot share the router's address; fix the device's address",
                    );
                }
                out.push_addr(a.value, entry);
            }
            out.devices.push(DeviceInfo {
                id,
                name: d.name.clone(),
                zone: d.zone.value.clone(),
                class,
                mac,
                addresses: d.addresses.iter().map(|a| a.value).collect(),
                inventory: d.inventory.clone(),
            });
        }
        let router_entry = AddrEntry {
            device: enforcer_common::UNKNOWN_DEVICE,
            class: classes.router,
            kind: ADDR_KIND_ROUTER,
            flags: 0,
            mac: [0; 6],
            _pad: [0; 2],
        };
        for a in &router {
            out.push_addr(*a, router_entry);
        }
        for n in p.networks.values() {
            let flags = if tripwires.contains(&Endpoint::Network(n.name.clone())) {
                DST_F_TRIPWIRE
            } else {
                0
            };
            let entry = NetEntry {
                network: ids.networks.get(&n.name).copied().unwrap_or(0),
                class: classes.network(&n.name),
                flags,
                _pad: 0,
            };
            for c in &n.cidrs {
                match c.value {
                    ipnet::IpNet::V4(v4) => {
                        out.nets_v4
                            .push((v4.network().octets(), v4.prefix_len(), entry))
                    }
                    ipnet::IpNet::V6(v6) => {
                        out.nets_v6
                            .push((v6.network().octets(), v6.prefix_len(), entry))
                    }
                }
            }
        }
        // The enforced interfaces' own subnets, where an unlisted address is an unknown device on
        // the segment, not a member of a wider network; a policy network naming the very same
        // prefix is the operator's explicit word and wins.
        let onlink = NetEntry {
            network: 0,
            class: classes.zone(&p.defaults.unknown.value),
            flags: NET_F_ONLINK,
            _pad: 0,
        };
        for prefix in &opts.local_prefixes {
            match prefix.trunc() {
                ipnet::IpNet::V4(v4) => {
                    let key = (v4.network().octets(), v4.prefix_len());
                    if !out.nets_v4.iter().any(|e| (e.0, e.1) == key) {
                        out.nets_v4.push((key.0, key.1, onlink));
                    }
                }
                ipnet::IpNet::V6(v6) => {
                    let key = (v6.network().octets(), v6.prefix_len());
                    if !out.nets_v6.iter().any(|e| (e.0, e.1) == key) {
                        out.nets_v6.push((key.0, key.1, onlink));
                    }
                }
            }
        }
        // Duplicates were rejected by `validate` (and router clashes above); sorting by key is all
        // that is left.
        out.macs.sort_unstable_by_key(|e| e.0);
        out.addrs_v4.sort_unstable_by_key(|e| e.0);
        out.addrs_v6.sort_unstable_by_key(|e| e.0);
        out.addrs_v4.dedup_by_key(|e| e.0);
        out.addrs_v6.dedup_by_key(|e| e.0);
        out.nets_v4.sort_unstable_by_key(|e| (e.0, e.1));
        out.nets_v6.sort_unstable_by_key(|e| (e.0, e.1));
        use enforcer_common::identity as m;
        let root = &p.root;
        capacity(diags, root, m::MACS_MAP, out.macs.len(), MAX_MACS);
        capacity(
            diags,
            root,
            m::ADDRS_V4_MAP,
            out.addrs_v4.len(),
            enforcer_common::MAX_ADDRS,
        );
        capacity(
            diags,
            root,
            m::ADDRS_V6_MAP,
            out.addrs_v6.len(),
            enforcer_common::MAX_ADDRS,
        );
        capacity(diags, root, m::NETS_V4_MAP, out.nets_v4.len(), MAX_NETS);
        capacity(diags, root, m::NETS_V6_MAP, out.nets_v6.len(), MAX_NETS);
        out
    }

    fn push_addr(&mut self, addr: IpAddr, entry: AddrEntry) {
        match addr {
            IpAddr::V4(a) => self.addrs_v4.push((a.octets(), entry)),
            IpAddr::V6(a) => self.addrs_v6.push((a.octets(), entry)),
        }
    }
}

#[cfg(test)]
mod tests {
    use enforcer_common::{
        Action, Decision, PROTO_TCP, PROTO_UDP,
        identity::{ADDR_KIND_ROUTER, DST_F_TRIPWIRE},
    };

    use super::*;
    use crate::policy::parse_str;

    const ZONES: &str = "zones: {a: {}, b: {}, quarantine: {}}\n";

    fn compile_yaml(yaml: &str, opts: &CompileOptions) -> CompiledPolicy {
        let policy = parse_str("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
        compile(&policy, opts).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn enforced_segments_become_onlink_entries_unless_a_network_names_them() {
        let yaml = format!(
            "{ZONES}networks: {{internet: [0.0.0.0/0, \"::/0\"], lab: [10.2.0.0/24]}}\ndevices: {{da: {{zone: a, addresses: [10.1.0.5]}}}}\nrules: [{{name: r, from: zone:a, to: network:internet, allow: [tcp/443]}}]\n"
        );
        let prefixes = ["10.1.0.1/24", "10.2.0.1/24", "fd00:1::1/64"];
        let opts = CompileOptions {
            local_prefixes: prefixes
                .iter()
                .map(|p| p.parse::<ipnet::IpNet>().unwrap_or_else(|e| panic!("{e}")))
                .collect(),
            ..CompileOptions::default()
        };
        let c = compile_yaml(&yaml, &opts);
        let onlink = |a: [u8; 4], len: u8| {
            c.nets_v4
                .iter()
                .find(|e| (e.0, e.1) == (a, len))
                .map(|e| e.2)
        };
        let seg =
            onlink([10, 1, 0, 0], 24).unwrap_or_else(|| panic!("segment entry: {:?}", c.nets_v4));
        assert_eq!(seg.flags & NET_F_ONLINK, NET_F_ONLINK);
        assert_eq!(
            seg.class, c.unknown_class,
            "an unlisted address on a segment is unknown"
        );
        assert_eq!(seg.network, 0);
        let lab = onlink([10, 2, 0, 0], 24).unwrap_or_else(|| panic!("lab entry"));
        assert_eq!(
            lab.flags & NET_F_ONLINK,
            0,
            "the policy's own network for that prefix wins"
        );
        assert_eq!(lab.class, class(&c, "network:lab"));
        assert!(
            c.nets_v6
                .iter()
                .any(|e| e.1 == 64 && e.2.flags & NET_F_ONLINK != 0),
            "IPv6 segment too"
        );
        assert_eq!(
            c.nets_v4.len(),
            3,
            "0/0, lab and the one segment, no duplicates"
        );
    }

    fn two_rules(first: &str, second: &str) -> CompiledPolicy {
        let yaml = format!(
            "{ZONES}devices: {{da: {{zone: a, addresses: [10.0.0.1]}}, db: {{zone: b, addresses: [10.0.0.2]}}}}\nrules:\n  - {{name: r1, from: zone:a, to: zone:b, {first}}}\n  - {{name: r2, from: zone:a, to: zone:b, {second}}}\n"
        );
        compile_yaml(&yaml, &CompileOptions::default())
    }

    fn class(c: &CompiledPolicy, name: &str) -> u16 {
        c.classes
            .iter()
            .find(|k| k.name == name)
            .map_or_else(|| panic!("no class {name}"), |k| k.id)
    }

    fn pair(c: &CompiledPolicy, src: &str, dst: &str) -> PairValue {
        let key = (class(c, src), class(c, dst));
        c.pairs
            .iter()
            .find(|p| p.0 == key)
            .map_or_else(|| panic!("no pair {src} -> {dst}"), |p| p.1)
    }

    fn port(c: &CompiledPolicy, p: &PairValue, proto: u8, port: u16) -> Option<Decision> {
        c.ports
            .iter()
            .find(|e| e.0 == (p.pair, proto, port))
            .map(|e| e.1)
    }

    #[test]
    fn denied_port_under_allowed_wildcard_is_a_deny_entry() {
        let c = two_rules("allow: [tcp]", "deny: [tcp/22]");
        let p = pair(&c, "zone:a", "zone:b");
        assert_eq!(p.tcp, Decision::new(Action::Allow, 1));
        assert_eq!(
            port(&c, &p, PROTO_TCP, 22),
            Some(Decision::new(Action::Deny, 2))
        );
        assert_eq!(c.ports.len(), 1);
        assert_eq!(p.udp, Decision::NONE);
    }

    #[test]
    fn allowed_port_under_denied_wildcard_stays_denied() {
        let c = two_rules("allow: [tcp/22]", "deny: [tcp]");
        let p = pair(&c, "zone:a", "zone:b");
        assert_eq!(p.tcp, Decision::new(Action::Deny, 2));
        assert_eq!(p.pair, 0, "no port entries");
        assert!(c.ports.is_empty());
    }

    #[test]
    fn deny_any_beats_every_allow_on_the_pair() {
        let c = two_rules("allow: [tcp/80, udp/53, icmp]", "deny: [any]");
        let p = pair(&c, "zone:a", "zone:b");
        for d in [p.tcp, p.udp, p.icmp, p.other] {
            assert_eq!(d, Decision::new(Action::Deny, 2));
        }
        assert!(c.ports.is_empty());
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("rule `r1` never allows anything")),
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
        assert_eq!(c.ports.len(), 5 + 16 + 1);
        assert!(
            c.ports.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted, unique"
        );
    }

    #[test]
    fn zone_rule_expands_to_own_device_classes() {
        let yaml = format!(
            "{ZONES}devices: {{da: {{zone: a, addresses: [10.0.0.1]}}, db: {{zone: b, addresses: [10.0.0.2]}}}}\nrules:\n  - {{name: zones, from: zone:a, to: zone:b, allow: [tcp/443]}}\n  - {{name: one, from: device:da, to: router, allow: [icmp]}}\n"
        );
        let c = compile_yaml(&yaml, &CompileOptions::default());
        let own = class(&c, "device:da");
        assert_ne!(own, class(&c, "zone:a"));
        assert_eq!(pair(&c, "device:da", "zone:b").tcp, Decision::NONE);
        let p = pair(&c, "device:da", "zone:b");
        assert_eq!(
            port(&c, &p, PROTO_TCP, 443),
            Some(Decision::new(Action::Allow, 2))
        );
        assert!(pair(&c, "zone:a", "zone:b").pair != 0);
        assert_eq!(
            pair(&c, "device:da", "router").icmp,
            Decision::new(Action::Allow, 1)
        );
        assert_eq!(
            c.devices.iter().find(|d| d.name == "db").map(|d| d.class),
            Some(class(&c, "zone:b"))
        );
        assert_eq!(c.addrs_v4[0].1.class, own);
    }

    #[test]
    fn ids_are_stable_across_a_rename_of_another_rule() {
        let rules = |first: &str| {
            format!(
                "{ZONES}devices: {{da: {{zone: a, addresses: [10.0.0.1]}}}}\nrules:\n  - {{name: {first}, from: zone:a, to: zone:b, allow: [tcp/1]}}\n  - {{name: keep, from: zone:a, to: zone:b, allow: [tcp/2]}}\n"
            )
        };
        let old = compile_yaml(&rules("alpha"), &CompileOptions::default());
        assert_eq!(old.ids.rules.get("alpha"), Some(&1));
        assert_eq!(old.ids.rules.get("keep"), Some(&2));
        let opts = CompileOptions {
            previous_ids: Some(old.ids.clone()),
            ..Default::default()
        };
        let new = compile_yaml(&rules("zulu"), &opts);
        assert_eq!(new.ids.rules.get("keep"), Some(&2));
        assert_eq!(
            new.ids.rules.get("zulu"),
            Some(&3),
            "alpha's id 1 is not reused in the same compile"
        );
        assert_eq!(new.ids.devices, old.ids.devices);
        let again = compile_yaml(
            &rules("zulu"),
            &CompileOptions {
                previous_ids: Some(new.ids.clone()),
                ..Default::default()
            },
        );
        assert_eq!(again.ids, new.ids);
    }

    #[test]
    fn router_addresses_and_tripwires_are_in_the_identity_maps() {
        let yaml = format!(
            "{ZONES}networks: {{pot: [10.9.0.0/16, \"fd00:9::/32\"]}}\ndevices: {{da: {{zone: a, mac: \"02:00:00:00:00:01\", addresses: [10.0.0.1]}}}}\nrules: [{{name: r, from: zone:a, to: router, allow: [udp/53]}}]\nquarantine: {{zone: quarantine, when: {{touches: [network:pot, device:da]}}}}\n"
        );
        let opts = CompileOptions {
            router_addrs: vec!["10.0.0.254".parse().unwrap_or_else(|e| panic!("{e}"))],
            ..Default::default()
        };
        let c = compile_yaml(&yaml, &opts);
        let router = c
            .addrs_v4
            .iter()
            .find(|a| a.0 == [10, 0, 0, 254])
            .map(|a| a.1);
        assert_eq!(
            router.map(|r| (r.kind, r.class, r.device)),
            Some((ADDR_KIND_ROUTER, c.router_class, 0))
        );
        let dev = c
            .addrs_v4
            .iter()
            .find(|a| a.0 == [10, 0, 0, 1])
            .map(|a| a.1);
        assert_eq!(
            dev.map(|d| (d.flags, d.mac)),
            Some((DST_F_TRIPWIRE, [2, 0, 0, 0, 0, 1]))
        );
        assert_eq!(
            c.nets_v4,
            vec![(
                [10, 9, 0, 0],
                16,
                NetEntry {
                    network: 1,
                    class: class(&c, "network:pot"),
                    flags: DST_F_TRIPWIRE,
                    _pad: 0
                }
            )]
        );
        assert_eq!(c.nets_v6.len(), 1);
        assert_eq!(c.macs.len(), 1);
        assert_eq!(c.unknown_class, class(&c, "zone:quarantine"));
        assert_eq!(c.quarantine.as_ref().map(|q| q.touches.len()), Some(2));
    }

    #[test]
    fn device_on_a_router_address_is_an_error_at_the_address() {
        let yaml = format!("{ZONES}devices:\n  da: {{zone: a, addresses: [10.0.0.1]}}\n");
        let policy = parse_str("t.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
        let opts = CompileOptions {
            router_addrs: vec!["10.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"))],
            ..Default::default()
        };
        let err = compile(&policy, &opts)
            .map(|_| ())
            .expect_err("router clash");
        let text = err.to_string();
        assert!(text.contains("t.yaml:3:29: error: address 10.0.0.1 of device `da` is one of the router's own addresses"), "{text}");
    }

    #[test]
    fn site_policy_compiles_to_the_expected_pairs() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let c = crate::policy::compile_path(&dir, &CompileOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let deny = |r: &str| Decision::new(Action::Deny, c.ids.rules.get(r).copied().unwrap_or(0));
        let allow =
            |r: &str| Decision::new(Action::Allow, c.ids.rules.get(r).copied().unwrap_or(0));
        let fish = pair(&c, "device:fishtank", "network:internet");
        assert_eq!(
            [fish.tcp, fish.udp, fish.icmp, fish.other],
            [deny("fishtank-no-egress"); 4]
        );
        assert_eq!(
            fish.pair, 0,
            "the building's tcp/443 allow is denied for the fish tank"
        );
        let building = pair(&c, "zone:building", "network:internet");
        assert_eq!(
            port(&c, &building, PROTO_TCP, 443),
            Some(allow("building-cloud"))
        );
        let cams = pair(&c, "zone:cameras", "zone:office");
        assert_eq!(cams.other, deny("no-lateral-cameras"));
        let dhcp = pair(&c, "zone:guests", "router");
        assert_eq!(port(&c, &dhcp, PROTO_UDP, 67), Some(allow("dhcp-dns")));
        assert_eq!(
            c.ports
                .iter()
                .filter(|p| p.0.0 == pair(&c, "zone:cameras", "zone:recorders").pair)
                .count(),
            12
        );
        assert_eq!(c.default_decision(), Decision::new(Action::Deny, 0));
        assert_eq!(c.digest.len(), 64);
    }

    #[test]
    fn output_is_deterministic() {
        let yaml = crate::policy::synth::generate(500, 200);
        let a = compile_yaml(&yaml, &CompileOptions::default());
        let b = compile_yaml(&yaml, &CompileOptions::default());
        assert_eq!(
            (&a.pairs, &a.ports, &a.addrs_v4, &a.classes),
            (&b.pairs, &b.ports, &b.addrs_v4, &b.classes)
        );
        assert!(a.pairs.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(a.addrs_v6.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(a.macs.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn capacity_overflow_says_needs_and_capacity() {
        let yaml = format!(
            "{ZONES}devices: {{da: {{zone: a, addresses: [10.0.0.1]}}}}\nrules:\n  - {{name: big, from: zone:a, to: zone:b, allow: [tcp/1-65535, udp/1-65535]}}\n  - {{name: big2, from: zone:b, to: zone:a, allow: [tcp/1-65535, udp/1-65535]}}\n  - {{name: big3, from: zone:a, to: zone:a, allow: [tcp/1-65535, udp/1-65535]}}\n"
        );
        let policy = parse_str("t.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
        let err = compile(&policy, &CompileOptions::default())
            .map(|_| ())
            .expect_err("too many ports");
        assert!(
            err.to_string()
                .contains("PORTS needs 393210 entries, capacity 262144"),
            "{err}"
        );
    }
}
