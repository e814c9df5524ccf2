//! Stable ids for devices, rules and networks, and lookups of ids the compiler itself assigned.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::policy::diag::{Diags, Loc};

/// The id of `name` in `table`, a table this compile filled from the same policy.
///
/// # Panics
/// When `name` has no id. Every name of the policy gets one before any lookup (a policy whose ids
/// ran out is rejected first), so a miss is a compiler bug. It must not fall back to 0: id 0 is the
/// unknown device and the default rule, so traffic would be counted against the wrong row.
pub(super) fn assigned_id(table: &BTreeMap<String, u32>, kind: &str, name: &str) -> u32 {
    match table.get(name) {
        Some(id) => *id,
        None => panic!("compiler bug: {kind} `{name}` has no id"),
    }
}

/// Ids stable by name: previous names keep their id; new names take the lowest id that is free and
/// was not used by the previous policy (so a removed name's counters are not inherited at once).
pub(super) fn assign_ids<'a>(
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
    // Collected in two runs sorted by name (the names kept, then the new ones) and built into the
    // map at once: inserting 100,000 names in order walks the map's right edge each time.
    let mut out = Vec::with_capacity(names.len());
    let mut taken = HashSet::new();
    let mut fresh = Vec::new();
    for name in names {
        match previous.get(name) {
            Some(id) if (1..limit).contains(id) && taken.insert(*id) => {
                out.push((name.clone(), *id));
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
            break;
        }
        out.push((name.clone(), next));
        next += 1;
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{ZONES, compile_yaml};
    use crate::policy::CompileOptions;

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
    #[should_panic(expected = "compiler bug: rule `missing` has no id")]
    fn a_missing_id_is_a_loud_bug_not_id_zero() {
        let table = std::collections::BTreeMap::from([("present".to_owned(), 1)]);
        assert_eq!(super::assigned_id(&table, "rule", "present"), 1);
        super::assigned_id(&table, "rule", "missing");
    }
}
