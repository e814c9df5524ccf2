//! Applying a compiled policy: write it whole into the idle slot, then flip the live-slot word.
//!
//! Until the flip nothing the program reads has changed, so any failure before it leaves the old
//! policy enforcing untouched. The flip is one 8-byte store; the program reads the word once per
//! packet, so a packet sees the old policy or the new one, never a mix. The slot left behind is
//! cleared at the next apply, long after any packet could still be reading it.

use std::time::{Duration, Instant};

use aya::maps::{Array, HashMap, LpmTrie, MapData, MapError, lpm_trie::Key};
use enforcer_common::{
    Action, Decision, LAYOUT_VERSION, MAX_ADDRS, MAX_MACS, MAX_NETS, MAX_PAIRS, MAX_PORTS, Mode,
    control::{CONFIG_F_QUARANTINE_ON_SPOOF, CONFIG_MAP, CONTROL_MAP, Control, PolicyConfig},
    identity::{
        ADDRS_V4_MAP, ADDRS_V6_MAP, AddrEntry, AddrKeyV4, AddrKeyV6, MACS_MAP, MacEntry, MacKey,
        NETS_V4_MAP, NETS_V6_MAP, NetEntry, net_key_v4, net_key_v6,
    },
    rules::{PAIRS_MAP, PORTS_MAP, PairKey, PairValue, PortKey},
    state::{DEVICE_STATE_MAP, DeviceState},
    stats::{DEVICE_STATS_MAP, DeviceStats, RULE_STATS_MAP, RuleStats},
};

use super::{Datapath, DatapathError, batch};
use crate::policy::{CompiledPolicy, IdTable};

/// The keys one slot holds, so they can be deleted without scanning the maps.
#[derive(Clone, Debug, Default)]
struct SlotKeys {
    macs: Vec<[u8; 6]>,
    v4: Vec<[u8; 4]>,
    v6: Vec<[u8; 16]>,
    nets_v4: Vec<([u8; 4], u8)>,
    nets_v6: Vec<([u8; 16], u8)>,
    pairs: Vec<(u16, u16)>,
    ports: Vec<(u32, u8, u16)>,
}

impl SlotKeys {
    fn of(p: &CompiledPolicy) -> Self {
        Self {
            macs: p.macs.iter().map(|(k, _)| *k).collect(),
            v4: p.addrs_v4.iter().map(|(k, _)| *k).collect(),
            v6: p.addrs_v6.iter().map(|(k, _)| *k).collect(),
            nets_v4: p.nets_v4.iter().map(|(a, l, _)| (*a, *l)).collect(),
            nets_v6: p.nets_v6.iter().map(|(a, l, _)| (*a, *l)).collect(),
            pairs: p.pairs.iter().map(|(k, _)| *k).collect(),
            ports: p.ports.iter().map(|(k, _)| *k).collect(),
        }
    }

    fn len(&self) -> usize {
        self.macs.len()
            + self.v4.len()
            + self.v6.len()
            + self.nets_v4.len()
            + self.nets_v6.len()
            + self.pairs.len()
            + self.ports.len()
    }
}

/// What each slot holds; `None` = unknown (a fresh process adopting pinned maps), so the slot is
/// cleared by scanning.
#[derive(Debug, Default)]
pub(super) struct SlotContents {
    slots: [Option<SlotKeys>; 2],
    /// Ids of the policy last applied by this process.
    ids: Option<IdTable>,
}

/// How long after the switch the previous slot is cleared (see `apply`).
const OLD_SLOT_GRACE: Duration = Duration::from_millis(20);

/// What an apply did.
#[derive(Clone, Debug)]
pub struct ApplyReport {
    pub generation: u64,
    pub slot: u8,
    /// Entries written.
    pub entries: usize,
    /// Entries removed (stale ones in the slot written, and the previous policy's after the switch).
    pub cleared: usize,
    /// From the call to the switch: when the new policy started enforcing.
    pub switched: Duration,
    /// The whole apply, clean-up of the previous slot included.
    pub duration: Duration,
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

fn check_capacity(map: &'static str, needed: usize, capacity: u32) -> Result<(), DatapathError> {
    if needed > capacity as usize {
        return Err(DatapathError::Capacity {
            map,
            needed,
            capacity,
        });
    }
    Ok(())
}

fn config_of(p: &CompiledPolicy, generation: u64) -> PolicyConfig {
    let q = p.quarantine.as_ref();
    PolicyConfig {
        generation,
        default: p.default_decision(),
        mode: p.mode as u8,
        spoofed: if p.spoofed_action == Action::Allow {
            Action::Allow as u8
        } else {
            Action::Deny as u8
        },
        unknown_class: p.unknown_class,
        router_class: p.router_class,
        quarantine_class: q.map_or(0, |q| q.class),
        quarantine_denied: q.and_then(|q| q.denied_packets).map_or(0, |(n, _)| n),
        quarantine_window_ms: q
            .and_then(|q| q.denied_packets)
            .map_or(0, |(_, secs)| secs.saturating_mul(1000)),
        quarantine_release_s: q.and_then(|q| q.release_after_s).unwrap_or(0),
        flags: if q.is_some_and(|q| q.spoofing) {
            CONFIG_F_QUARANTINE_ON_SPOOF
        } else {
            0
        },
    }
}

impl Datapath {
    /// Applies `policy` as generation `generation`. On error the running policy is unchanged.
    pub fn apply(
        &mut self,
        policy: &CompiledPolicy,
        generation: u64,
    ) -> Result<ApplyReport, DatapathError> {
        let started = Instant::now();
        check_capacity(MACS_MAP, policy.macs.len(), MAX_MACS)?;
        check_capacity(ADDRS_V4_MAP, policy.addrs_v4.len(), MAX_ADDRS)?;
        check_capacity(ADDRS_V6_MAP, policy.addrs_v6.len(), MAX_ADDRS)?;
        check_capacity(NETS_V4_MAP, policy.nets_v4.len(), MAX_NETS)?;
        check_capacity(NETS_V6_MAP, policy.nets_v6.len(), MAX_NETS)?;
        check_capacity(PAIRS_MAP, policy.pairs.len(), MAX_PAIRS)?;
        check_capacity(PORTS_MAP, policy.ports.len(), MAX_PORTS)?;

        let control = self.control()?;
        let live = control.slot();
        let idle = 1 - live;
        // The idle slot is empty whenever this process cleaned it after its last switch; only a
        // fresh process (adopting pinned maps, maybe left half-written by a crash) scans it.
        let cleared = match self.slots.slots[usize::from(idle)].take() {
            Some(keys) => self.delete_slot(idle, &keys)?,
            None => self.scan_clear_slot(idle)?,
        };
        self.reset_reassigned_ids(policy)?;
        let entries = self.write_slot(idle, policy)?;

        let name = CONFIG_MAP;
        let mut config: Array<&mut MapData, PolicyConfig> =
            Array::try_from(self.map_mut(name)?).map_err(map_err(name))?;
        config
            .set(u32::from(idle), config_of(policy, generation), 0)
            .map_err(map_err(name))?;

        // The flip: from here on every new packet reads the new slot.
        let name = CONTROL_MAP;
        let mut ctl: Array<&mut MapData, Control> =
            Array::try_from(self.map_mut(name)?).map_err(map_err(name))?;
        let flipped = Control {
            epoch: control.next_epoch_for(idle),
            layout: LAYOUT_VERSION,
            _pad: 0,
        };
        ctl.set(0, flipped, 0).map_err(map_err(name))?;
        let switched = started.elapsed();
        self.slots.slots[usize::from(idle)] = Some(SlotKeys::of(policy));
        self.slots.ids = Some(policy.ids.clone());

        // Clear the slot just left, so the next apply only writes. A packet that read the old
        // slot before the flip finishes within microseconds (XDP runs to completion under RCU);
        // the grace period is orders of magnitude longer. A failure here is no failure of the
        // apply (the new policy enforces): the slot is marked unknown and scanned next time.
        std::thread::sleep(OLD_SLOT_GRACE);
        let old = self.slots.slots[usize::from(live)].take();
        let cleared_old = match old {
            Some(keys) => self.delete_slot(live, &keys),
            None => self.scan_clear_slot(live),
        };
        let cleared_old = match cleared_old {
            Ok(n) => {
                self.slots.slots[usize::from(live)] = Some(SlotKeys::default());
                n
            }
            Err(e) => {
                tracing::warn!(error = %e, slot = live, "could not clear the previous policy slot; it will be cleared at the next apply");
                0
            }
        };
        Ok(ApplyReport {
            generation,
            slot: idle,
            entries,
            cleared: cleared + cleared_old,
            switched,
            duration: started.elapsed(),
        })
    }

    /// Zeroes the counters and state of ids now given to another name than in the policy this
    /// process last applied, so a new device never inherits a removed one's history.
    fn reset_reassigned_ids(&mut self, policy: &CompiledPolicy) -> Result<(), DatapathError> {
        let Some(old) = self.slots.ids.take() else {
            return Ok(());
        };
        let moved = |new: &std::collections::BTreeMap<String, u32>,
                     old: &std::collections::BTreeMap<String, u32>| {
            let old_by_id: std::collections::HashMap<u32, &String> =
                old.iter().map(|(n, i)| (*i, n)).collect();
            new.iter()
                .filter(|(n, i)| old_by_id.get(i).is_some_and(|o| o != n))
                .map(|(_, i)| *i)
                .collect::<Vec<u32>>()
        };
        let devices = moved(&policy.ids.devices, &old.devices);
        let rules = moved(&policy.ids.rules, &old.rules);
        if devices.is_empty() && rules.is_empty() {
            return Ok(());
        }
        let ncpus = aya::util::nr_cpus().map_or(1, |n| n.max(1));
        let name = DEVICE_STATS_MAP;
        let mut stats: aya::maps::PerCpuArray<&mut MapData, DeviceStats> =
            aya::maps::PerCpuArray::try_from(self.map_mut(name)?).map_err(map_err(name))?;
        for id in &devices {
            let zero = aya::maps::PerCpuValues::try_from(vec![DeviceStats::default(); ncpus])
                .map_err(|e| DatapathError::Map {
                    name,
                    source: MapError::IoError(e),
                })?;
            stats.set(*id, zero, 0).map_err(map_err(name))?;
        }
        let name = DEVICE_STATE_MAP;
        let mut state: Array<&mut MapData, DeviceState> =
            Array::try_from(self.map_mut(name)?).map_err(map_err(name))?;
        for id in &devices {
            state
                .set(*id, DeviceState::default(), 0)
                .map_err(map_err(name))?;
        }
        let name = RULE_STATS_MAP;
        let mut rstats: aya::maps::PerCpuArray<&mut MapData, RuleStats> =
            aya::maps::PerCpuArray::try_from(self.map_mut(name)?).map_err(map_err(name))?;
        for id in &rules {
            let zero = aya::maps::PerCpuValues::try_from(vec![RuleStats::default(); ncpus])
                .map_err(|e| DatapathError::Map {
                    name,
                    source: MapError::IoError(e),
                })?;
            rstats.set(*id, zero, 0).map_err(map_err(name))?;
        }
        Ok(())
    }

    fn write_slot(&mut self, slot: u8, p: &CompiledPolicy) -> Result<usize, DatapathError> {
        let mut n = 0;
        n += self.batch_insert(
            MACS_MAP,
            p.macs.iter().map(|(m, e)| (MacKey::new(slot, *m), *e)),
        )?;
        n += self.batch_insert(
            ADDRS_V4_MAP,
            p.addrs_v4
                .iter()
                .map(|(a, e)| (AddrKeyV4::new(slot, *a), *e)),
        )?;
        n += self.batch_insert(
            ADDRS_V6_MAP,
            p.addrs_v6
                .iter()
                .map(|(a, e)| (AddrKeyV6::new(slot, *a), *e)),
        )?;
        let name = NETS_V4_MAP;
        let mut nets4: LpmTrie<&mut MapData, [u8; 5], NetEntry> =
            LpmTrie::try_from(self.map_mut(name)?).map_err(map_err(name))?;
        for (addr, len, e) in &p.nets_v4 {
            nets4
                .insert(
                    &Key::new(8 + u32::from(*len), net_key_v4(slot, *addr)),
                    e,
                    0,
                )
                .map_err(map_err(name))?;
            n += 1;
        }
        let name = NETS_V6_MAP;
        let mut nets6: LpmTrie<&mut MapData, [u8; 17], NetEntry> =
            LpmTrie::try_from(self.map_mut(name)?).map_err(map_err(name))?;
        for (addr, len, e) in &p.nets_v6 {
            nets6
                .insert(
                    &Key::new(8 + u32::from(*len), net_key_v6(slot, *addr)),
                    e,
                    0,
                )
                .map_err(map_err(name))?;
            n += 1;
        }
        n += self.batch_insert(
            PAIRS_MAP,
            p.pairs
                .iter()
                .map(|((s, d), v)| (PairKey::new(slot, *s, *d), *v)),
        )?;
        n += self.batch_insert(
            PORTS_MAP,
            p.ports
                .iter()
                .map(|((pair, proto, port), d)| (PortKey::new(slot, *pair, *proto, *port), *d)),
        )?;
        Ok(n)
    }

    fn hash_fd(&self, name: &'static str) -> Result<std::os::fd::RawFd, DatapathError> {
        batch::hash_fd(self.map(name)?).ok_or(DatapathError::NoMap(name))
    }

    fn batch_insert<K: aya::Pod, V: aya::Pod>(
        &self,
        name: &'static str,
        entries: impl Iterator<Item = (K, V)>,
    ) -> Result<usize, DatapathError> {
        let (keys, values): (Vec<K>, Vec<V>) = entries.unzip();
        batch::update(self.hash_fd(name)?, &keys, &values)
            .map_err(|source| DatapathError::Batch { name, source })?;
        Ok(keys.len())
    }

    fn batch_remove<K: aya::Pod>(
        &self,
        name: &'static str,
        keys: impl Iterator<Item = K>,
    ) -> Result<(), DatapathError> {
        let keys: Vec<K> = keys.collect();
        batch::delete(self.hash_fd(name)?, &keys)
            .map_err(|source| DatapathError::Batch { name, source })
    }

    fn delete_slot(&mut self, slot: u8, k: &SlotKeys) -> Result<usize, DatapathError> {
        self.batch_remove(MACS_MAP, k.macs.iter().map(|m| MacKey::new(slot, *m)))?;
        self.batch_remove(ADDRS_V4_MAP, k.v4.iter().map(|a| AddrKeyV4::new(slot, *a)))?;
        self.batch_remove(ADDRS_V6_MAP, k.v6.iter().map(|a| AddrKeyV6::new(slot, *a)))?;
        let name = NETS_V4_MAP;
        let mut nets4: LpmTrie<&mut MapData, [u8; 5], NetEntry> =
            LpmTrie::try_from(self.map_mut(name)?).map_err(map_err(name))?;
        for (a, l) in &k.nets_v4 {
            ignore_missing(
                nets4.remove(&Key::new(8 + u32::from(*l), net_key_v4(slot, *a))),
                name,
            )?;
        }
        let name = NETS_V6_MAP;
        let mut nets6: LpmTrie<&mut MapData, [u8; 17], NetEntry> =
            LpmTrie::try_from(self.map_mut(name)?).map_err(map_err(name))?;
        for (a, l) in &k.nets_v6 {
            ignore_missing(
                nets6.remove(&Key::new(8 + u32::from(*l), net_key_v6(slot, *a))),
                name,
            )?;
        }
        self.batch_remove(
            PAIRS_MAP,
            k.pairs.iter().map(|(s, d)| PairKey::new(slot, *s, *d)),
        )?;
        self.batch_remove(
            PORTS_MAP,
            k.ports
                .iter()
                .map(|(p, pr, po)| PortKey::new(slot, *p, *pr, *po)),
        )?;
        Ok(k.len())
    }

    /// Clears a slot whose contents this process does not know (pinned maps it adopted, or an
    /// apply that failed half-way) by scanning every slot map.
    fn scan_clear_slot(&mut self, slot: u8) -> Result<usize, DatapathError> {
        let mut n = 0;
        n += self.scan_remove::<MacKey, MacEntry>(MACS_MAP, |k| k.slot == slot)?;
        n += self.scan_remove::<AddrKeyV4, AddrEntry>(ADDRS_V4_MAP, |k| k.slot == slot)?;
        n += self.scan_remove::<AddrKeyV6, AddrEntry>(ADDRS_V6_MAP, |k| k.slot == slot)?;
        n += self.scan_remove::<PairKey, PairValue>(PAIRS_MAP, |k| k.slot == slot)?;
        n += self.scan_remove::<PortKey, Decision>(PORTS_MAP, |k| k.slot == slot)?;
        let name = NETS_V4_MAP;
        let mut nets4: LpmTrie<&mut MapData, [u8; 5], NetEntry> =
            LpmTrie::try_from(self.map_mut(name)?).map_err(map_err(name))?;
        let stale: Vec<Key<[u8; 5]>> = nets4
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.data()[0] == slot)
            .collect();
        for k in &stale {
            ignore_missing(nets4.remove(k), name)?;
        }
        n += stale.len();
        let name = NETS_V6_MAP;
        let mut nets6: LpmTrie<&mut MapData, [u8; 17], NetEntry> =
            LpmTrie::try_from(self.map_mut(name)?).map_err(map_err(name))?;
        let stale: Vec<Key<[u8; 17]>> = nets6
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.data()[0] == slot)
            .collect();
        for k in &stale {
            ignore_missing(nets6.remove(k), name)?;
        }
        n += stale.len();
        Ok(n)
    }

    /// Removes (in batches) every key of hash map `name` for which `stale` holds; returns how many.
    pub(super) fn scan_remove<K: aya::Pod, V: aya::Pod>(
        &self,
        name: &'static str,
        stale: impl Fn(&K) -> bool,
    ) -> Result<usize, DatapathError> {
        let m: HashMap<&MapData, K, V> =
            HashMap::try_from(self.map(name)?).map_err(map_err(name))?;
        let keys: Vec<K> = m
            .keys()
            .filter_map(Result::ok)
            .filter(|k| stale(k))
            .collect();
        let n = keys.len();
        self.batch_remove(name, keys.into_iter())?;
        Ok(n)
    }
}

fn ignore_missing(r: Result<(), MapError>, name: &'static str) -> Result<(), DatapathError> {
    match r {
        Err(MapError::KeyNotFound) | Ok(()) => Ok(()),
        Err(source) => Err(DatapathError::Map { name, source }),
    }
}

/// `Mode` as metrics and `status` show it.
#[must_use]
pub const fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    }
}

#[cfg(test)]
mod tests {
    use super::config_of;
    use crate::policy::{CompileOptions, compile, parse_str};

    #[test]
    fn quarantine_window_is_converted_from_seconds_to_milliseconds() {
        let yaml = "zones: {a: {}, quarantine: {}}\n\
                    devices: {d: {zone: a, addresses: [\"10.0.0.2\"]}}\n\
                    rules: [{name: r, from: zone:a, to: zone:a, allow: [icmp]}]\n\
                    quarantine: {zone: quarantine, when: {denied_packets: {count: 50, within: 10s}}, release_after: 1h}\n";
        let policy = parse_str("t.yaml", yaml).expect("valid policy");
        let compiled = compile(&policy, &CompileOptions::default()).expect("compiles");
        let cfg = config_of(&compiled, 7);
        assert_eq!(
            (cfg.quarantine_denied, cfg.quarantine_window_ms),
            (50, 10_000)
        );
        assert_eq!(cfg.quarantine_release_s, 3600);
        assert_ne!(cfg.quarantine_class, 0);
        assert_eq!(cfg.generation, 7);
    }
}
