//! Shadowing: allow rules that the denies on every one of their pairs cancel out, for a warning.

use std::{collections::HashMap, rc::Rc};

use super::verdicts::{Best, Outcome};
use crate::policy::{
    diag::Diags,
    model::{Policy, Ports as PortSet, Rule, RuleAction, Service},
};

/// Which allow rules on this pair allow something a deny does not take back.
pub(super) fn shadowed(
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
                Service::Tcp(PortSet::All) => wild[0].deny,
                Service::Udp(PortSet::All) => wild[1].deny,
                Service::Tcp(PortSet::Range(lo, hi)) => covered(0, lo, hi),
                Service::Udp(PortSet::Range(lo, hi)) => covered(1, lo, hi),
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
pub(super) fn shadow_warnings(
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
