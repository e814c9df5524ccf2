//! The compiler: a pure function from a validated [`Policy`] to a [`CompiledPolicy`], the image of
//! every policy map.
//!
//! All policy reasoning happens here so the datapath does at most two exact-match lookups per
//! packet whatever the number of rules: names become stable ids, endpoints become classes, rules
//! become (source class, destination class) pairs whose per-protocol and per-port decisions already
//! have deny precedence applied. Work is bounded before it is done (see [`PAIR_WORK_BUDGET`]), so a
//! hostile policy that fits the file caps cannot make the compiler run for minutes.

mod classes;
mod identity;
mod ids;
mod names;
mod shadowing;
#[cfg(test)]
mod test_support;
mod verdicts;

use std::sync::Arc;

use enforcer_common::{
    MAX_CLASSES, MAX_NETWORKS, MAX_RULES, NETWORK_DEVICE_BASE, names::MAX_NAMES,
};

use self::{
    classes::Classes,
    identity::Identity,
    ids::{assign_ids, assigned_id},
    verdicts::Verdicts,
};
use super::{
    compiled::{
        CompileOptions, CompiledPolicy, DeviceInfo, IdTable, NetworkInfo, QuarantineSettings,
        RuleInfo, ZoneInfo,
    },
    diag::{Diagnostic, Diags, Loc, PolicyError},
    maps::PolicyMaps,
    model::Policy,
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
    let mut diags = Diags::from_list(policy.warnings.clone());
    let root = &policy.root;
    check_id_spaces(policy, &mut diags);
    if diags.has_errors() {
        return Err(diags.into_error());
    }
    let ids = assign_all_ids(policy, opts.previous_ids.as_ref(), &mut diags);
    let classes = Classes::new(policy);
    capacity(&mut diags, root, "classes", classes.info.len(), MAX_CLASSES);
    if diags.has_errors() {
        return Err(diags.into_error());
    }
    let rule_ids: Vec<u32> = policy
        .rules
        .iter()
        .map(|r| assigned_id(&ids.rules, "rule", &r.name))
        .collect();
    let verdicts = Verdicts::build(policy, &classes, &rule_ids, root, &mut diags);
    let identity = Identity::build(policy, &ids, &classes, opts, &mut diags);
    let rejected = verdicts.is_none();
    let (mut maps, devices) = images(identity, verdicts);
    maps.names = names::image(policy, &classes, &ids);
    for usage in maps.usage() {
        capacity(&mut diags, root, usage.name, usage.entries, usage.capacity);
    }
    if diags.has_errors() || rejected {
        return Err(diags.into_error());
    }
    let compiled = CompiledPolicy {
        maps: Arc::new(maps),
        devices,
        rules: rule_infos(policy, &rule_ids),
        ..settings_and_names(policy, &classes, ids)
    };
    let warnings = diags.finish()?;
    let compiled = CompiledPolicy {
        warnings: warnings.clone(),
        ..compiled
    };
    Ok((compiled, warnings))
}

/// Devices and rules must fit their id spaces (checked before ids are handed out).
fn check_id_spaces(policy: &Policy, diags: &mut Diags) {
    let root = &policy.root;
    let devices = policy.devices.len();
    capacity(
        diags,
        root,
        "devices (ids)",
        devices,
        NETWORK_DEVICE_BASE - 1,
    );
    let rules = policy.rules.len();
    capacity(diags, root, "rules (ids)", rules, MAX_RULES - 1);
}

/// Ids for every device, rule and network, stable against `previous`.
fn assign_all_ids(policy: &Policy, previous: Option<&IdTable>, diags: &mut Diags) -> IdTable {
    let root = &policy.root;
    IdTable {
        devices: assign_ids(
            policy.devices.keys(),
            previous.map(|p| &p.devices),
            NETWORK_DEVICE_BASE,
            root,
            "device",
            diags,
        ),
        rules: assign_ids(
            policy.rules.iter().map(|r| &r.name),
            previous.map(|p| &p.rules),
            MAX_RULES,
            root,
            "rule",
            diags,
        ),
        networks: assign_ids(
            policy.networks.keys(),
            previous.map(|p| &p.networks),
            MAX_NETWORKS,
            root,
            "network",
            diags,
        ),
        names: assign_ids(
            names::patterns(policy).iter(),
            previous.map(|p| &p.names),
            MAX_NAMES,
            root,
            "name",
            diags,
        ),
    }
}

/// Every map image from the identity and verdict parts (the verdict maps empty when those were
/// rejected), and the device list.
fn images(identity: Identity, verdicts: Option<Verdicts>) -> (PolicyMaps, Vec<DeviceInfo>) {
    let mut maps = PolicyMaps::default();
    let devices = identity.into_maps(&mut maps);
    if let Some(verdicts) = verdicts {
        verdicts.into_maps(&mut maps);
    }
    (maps, devices)
}

/// The settings and the names behind ids and classes; maps, devices and rules left empty.
fn settings_and_names(policy: &Policy, classes: &Classes, ids: IdTable) -> CompiledPolicy {
    CompiledPolicy {
        digest: policy.digest.clone(),
        sources: policy.sources.clone(),
        mode: policy.defaults.mode,
        default_action: policy.defaults.action,
        spoofed_action: policy.defaults.spoofed,
        unknown_class: classes.zone(&policy.defaults.unknown.value),
        unknown_mode: policy.mode_of_unknown(),
        router_class: classes.router,
        quarantine: policy.quarantine.as_ref().map(|q| QuarantineSettings {
            zone: q.zone.value.clone(),
            class: classes.zone(&q.zone.value),
            denied_packets: q.denied_packets,
            spoofing: q.spoofing,
            touches: q.touches.iter().map(|t| t.value.to_string()).collect(),
            release_after_s: q.release_after_s,
        }),
        limits: policy.limits,
        maps: Arc::default(),
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
        devices: Vec::new(),
        rules: Vec::new(),
        networks: policy
            .networks
            .values()
            .map(|n| NetworkInfo {
                id: assigned_id(&ids.networks, "network", &n.name),
                name: n.name.clone(),
                class: classes.network(&n.name),
                cidrs: n.cidrs.iter().map(|c| c.value.to_string()).collect(),
            })
            .collect(),
        names: names::infos(classes, &ids),
        dns: policy.dns.clone(),
        ids,
        warnings: Vec::new(),
    }
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

#[cfg(test)]
mod tests {
    use enforcer_common::{Action, Decision, PROTO_TCP, PROTO_UDP};

    use super::{
        ids::assigned_id,
        test_support::{ZONES, compile_yaml, pair, port},
    };
    use crate::policy::{CompileOptions, compile, parse_str};

    #[test]
    fn site_policy_compiles_to_the_expected_pairs() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let c = crate::policy::compile_path(&dir, &CompileOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let deny = |r: &str| Decision::new(Action::Deny, assigned_id(&c.ids.rules, "rule", r));
        let allow = |r: &str| Decision::new(Action::Allow, assigned_id(&c.ids.rules, "rule", r));
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
            c.maps
                .ports
                .iter()
                .filter(|p| p.0.pair == pair(&c, "zone:cameras", "zone:recorders").pair)
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
        assert_eq!((&a.maps, &a.classes), (&b.maps, &b.classes));
        assert!(a.maps.pairs.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(a.maps.addrs_v6.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(a.maps.macs.windows(2).all(|w| w[0].0 < w[1].0));
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
