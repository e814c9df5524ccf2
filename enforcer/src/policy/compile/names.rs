//! `dns:` names: their stable ids, and the `NAMES` image (each pattern's class, and the settings
//! entry that says the policy has a `dns:` section).

use std::collections::BTreeSet;

use enforcer_common::names::{NAMES_SETTINGS, NameEntry};

use super::{classes::Classes, ids::assigned_id};
use crate::policy::{
    IdTable,
    compiled::NameInfo,
    maps::{Image, Names},
    model::Policy,
};

/// Every name pattern the rules name, as `IdTable::names` keys them.
pub(super) fn patterns(p: &Policy) -> BTreeSet<String> {
    p.rules
        .iter()
        .flat_map(|r| &r.to)
        .filter_map(|e| match &e.value {
            crate::policy::model::Endpoint::Name(n) => Some(n.to_string()),
            _ => None,
        })
        .collect()
}

pub(super) fn infos(classes: &Classes, ids: &IdTable) -> Vec<NameInfo> {
    classes
        .names
        .iter()
        .map(|(pattern, class)| NameInfo {
            id: assigned_id(&ids.names, "name", &pattern.to_string()),
            pattern: pattern.clone(),
            class: *class,
        })
        .collect()
}

/// The `NAMES` image: nothing without a `dns:` section.
pub(super) fn image(p: &Policy, classes: &Classes, ids: &IdTable) -> Image<Names> {
    let Some(dns) = &p.dns else {
        return Vec::new();
    };
    let mut out = vec![(
        NAMES_SETTINGS,
        NameEntry {
            class: 0,
            _pad: 0,
            grace_s: dns.grace_s,
        },
    )];
    out.extend(infos(classes, ids).into_iter().map(|n| {
        (
            n.id,
            NameEntry {
                class: n.class,
                _pad: 0,
                grace_s: 0,
            },
        )
    }));
    out.sort_unstable_by_key(|(k, _)| *k);
    out
}
