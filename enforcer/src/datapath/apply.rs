//! Applying a compiled policy: make the idle slot hold it, then flip the live-slot word.
//!
//! Until the flip nothing the program reads has changed, so any failure before it leaves the old
//! policy enforcing untouched. The flip is one store of the word; the program reads the word once
//! per packet, so a packet sees the old policy or the new one, never a mix.
//!
//! The slot left behind keeps the policy it held, and this process remembers that image: the next
//! apply writes into it only what differs (a reload that changes a rule or a default rewrites a
//! handful of the 100,000-device policy's 340,000 entries, not all of them), and never sooner than
//! [`OLD_SLOT_GRACE`] after the flip, long after any packet could still be reading it. Behind a
//! provisional policy the slot left behind is the last confirmed policy, which the program goes
//! back to by itself at the deadline (`Control::epoch_at`); an apply is refused until the
//! candidate is confirmed or reverted. A slot this process does not know (pinned maps it adopted,
//! or an apply that failed half-way) is cleared by scanning before it is written whole.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use aya::{
    Pod,
    maps::{Array, HashMap as AyaHashMap, LpmTrie, MapData, MapError, lpm_trie::Key as LpmKey},
};
use enforcer_common::{
    Action, LAYOUT_VERSION, Mode,
    control::{
        CONFIG_F_NAMES, CONFIG_F_QUARANTINE_ON_SPOOF, CONFIG_F_UNKNOWN_AUDIT, CONFIG_MAP,
        CONTROL_MAP, Control, PolicyConfig,
    },
    names::NAMES_SETTINGS,
    state::{DEVICE_STATE_MAP, DeviceState},
    stats::{DEVICE_STATS_MAP, DeviceStats, RULE_STATS_MAP, RuleStats, device_stats_row},
};

use super::{Datapath, DatapathError, MapSource, batch, read::monotonic_ns};
use crate::policy::{
    CompiledPolicy, IdTable,
    maps::{HashKey, MapUsage, PolicyMap, PolicyMaps, image_diff, lpm_slot, policy_maps},
};

macro_rules! slot_operations {
    ($($field:ident: $map:ty),* $(,)?) => {
        /// Whether none of the policy maps is pinned in `dir`: a load there creates them all,
        /// empty.
        pub(super) fn none_pinned(dir: &std::path::Path) -> bool {
            true $(&& !dir.join(<$map as PolicyMap>::NAME).exists())*
        }

        impl Datapath {
            /// Turns `slot`, which holds `held`, into one holding `new`: removes the keys `new`
            /// lacks, then writes the entries it adds or changes (see [`image_diff`]). Returns
            /// (entries written, entries removed).
            fn rewrite_slot(
                &mut self,
                slot: u8,
                held: &PolicyMaps,
                new: &PolicyMaps,
            ) -> Result<(usize, usize), DatapathError> {
                let (mut written, mut removed) = (0, 0);
                $(
                    let (stale, fresh) = image_diff(&held.$field, &new.$field);
                    removed += stale.len();
                    self.delete_map::<$map>(slot, &stale)?;
                    written += self.write_map::<$map>(slot, &fresh)?;
                )*
                Ok((written, removed))
            }

            /// Clears a slot whose contents this process does not know (pinned maps it adopted,
            /// or an apply that failed half-way) by scanning every slot map.
            fn scan_clear_slot(&mut self, slot: u8) -> Result<usize, DatapathError> {
                let mut n = 0;
                $(n += <<$map as PolicyMap>::Stored as SlotStore<<$map as PolicyMap>::Value>>::clear_slot(
                    self,
                    <$map as PolicyMap>::NAME,
                    slot,
                )?;)*
                Ok(n)
            }
        }
    };
}
policy_maps!(slot_operations);

macro_rules! occupancy {
    ($($field:ident: $map:ty),* $(,)?) => {
        /// Entries per slot over every policy map: after an apply the live slot holds the policy
        /// applied, the other the one before it (or nothing).
        pub fn slot_occupancy(src: &impl MapSource) -> Result<[usize; 2], DatapathError> {
            let mut out = [0; 2];
            $(
                let [a, b] = <<$map as PolicyMap>::Stored as SlotStore<<$map as PolicyMap>::Value>>::occupancy(
                    src,
                    <$map as PolicyMap>::NAME,
                )?;
                out[0] += a;
                out[1] += b;
            )*
            Ok(out)
        }
    };
}
policy_maps!(occupancy);

macro_rules! differences {
    ($($field:ident: $map:ty),* $(,)?) => {
        /// How far `slot` is from holding exactly `maps`: the entries of `maps` it lacks or holds
        /// with another value, plus those it holds beyond them. 0 when an apply of `maps` left
        /// that slot as it should.
        ///
        /// # Errors
        /// A policy map missing or unreadable.
        pub fn slot_differences(
            src: &impl MapSource,
            slot: u8,
            maps: &PolicyMaps,
        ) -> Result<usize, DatapathError> {
            let mut held = 0;
            let mut off = 0;
            $(
                for (k, v) in &maps.$field {
                    match <<$map as PolicyMap>::Stored as SlotStore<<$map as PolicyMap>::Value>>::lookup(
                        src,
                        <$map as PolicyMap>::NAME,
                        &<$map as PolicyMap>::stamp(slot, k),
                    )? {
                        Some(found) if found == *v => held += 1,
                        _ => off += 1,
                    }
                }
            )*
            let occupied = slot_occupancy(src)?[usize::from(slot & 1)];
            Ok(off + occupied.saturating_sub(held))
        }
    };
}
policy_maps!(differences);

/// What each slot holds; `None` = unknown (a fresh process adopting pinned maps), so the slot is
/// cleared by scanning.
#[derive(Debug, Default)]
pub(super) struct SlotContents {
    slots: [Option<Arc<PolicyMaps>>; 2],
    /// Ids of the policy last applied by this process.
    ids: Option<IdTable>,
    /// When this process last moved the program to the other slot.
    flipped: Option<Instant>,
}

impl SlotContents {
    /// Both slots empty, as in maps this process has just created: nothing to scan before the
    /// first apply. (Scanning costs a system call per entry of both slots.)
    pub(super) fn empty() -> Self {
        Self {
            slots: [Some(Arc::default()), Some(Arc::default())],
            ids: None,
            flipped: None,
        }
    }

    /// [`Self::empty`] for maps just created, unknown for maps adopted from their pins.
    pub(super) fn for_maps(created: bool) -> Self {
        if created {
            Self::empty()
        } else {
            Self::default()
        }
    }
}

/// How long after a flip the slot left behind is first written again. A packet that read the
/// old slot before the flip finishes within microseconds (XDP runs to completion under RCU); the
/// grace is orders of magnitude longer. Only back-to-back applies ever wait for it.
const OLD_SLOT_GRACE: Duration = Duration::from_millis(20);

/// What an apply did.
#[derive(Clone, Debug)]
pub struct ApplyReport {
    pub generation: u64,
    pub slot: u8,
    /// Entries the slot now holds: the policy's, over every map.
    pub entries: usize,
    /// Entries written: those the slot did not hold as the policy has them.
    pub written: usize,
    /// Entries removed from the slot written: what it held that the policy lacks (all of it, for
    /// a slot found by scanning).
    pub cleared: usize,
    /// From the call to the switch: when the new policy started enforcing.
    pub switched: Duration,
    /// The whole apply.
    pub duration: Duration,
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

fn check_capacity(usage: &MapUsage) -> Result<(), DatapathError> {
    if usage.over_capacity() {
        return Err(DatapathError::Capacity {
            map: usage.name,
            needed: usage.entries,
            capacity: usage.capacity,
        });
    }
    Ok(())
}

fn config_of(p: &CompiledPolicy, generation: u64) -> PolicyConfig {
    let q = p.quarantine.as_ref();
    let dns_grace = p
        .maps
        .names
        .iter()
        .find(|(k, _)| *k == NAMES_SETTINGS)
        .map(|(_, v)| v.grace_s);
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
        } | if p.unknown_mode == Mode::Audit {
            CONFIG_F_UNKNOWN_AUDIT
        } else {
            0
        } | if dns_grace.is_some() {
            CONFIG_F_NAMES
        } else {
            0
        },
        flows_per_device: p.limits.flows_per_device,
        dns_grace_s: dns_grace.unwrap_or(0),
    }
}

/// What `confirm_provisional` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirmation {
    /// The candidate is the policy for good now.
    Confirmed,
    /// No provisional policy was pending.
    NothingPending,
    /// Its deadline had passed: the program already judges with the previous policy.
    Expired,
}

impl Datapath {
    /// Applies `policy` as generation `generation`, for good. On error the running policy is
    /// unchanged.
    pub fn apply(
        &mut self,
        policy: &CompiledPolicy,
        generation: u64,
    ) -> Result<ApplyReport, DatapathError> {
        self.apply_until(policy, generation, 0)
    }

    /// Applies `policy` provisionally: the program enforces it until `revert_at_ns`
    /// ([`monotonic_ns`] time), then by itself the policy live now, unless
    /// [`Datapath::confirm_provisional`] comes first. Refused while another is pending.
    pub fn apply_provisional(
        &mut self,
        policy: &CompiledPolicy,
        generation: u64,
        revert_at_ns: u64,
    ) -> Result<ApplyReport, DatapathError> {
        self.apply_until(policy, generation, revert_at_ns.max(1))
    }

    /// `apply` (`revert_at_ns` 0) or `apply_provisional`.
    fn apply_until(
        &mut self,
        policy: &CompiledPolicy,
        generation: u64,
        revert_at_ns: u64,
    ) -> Result<ApplyReport, DatapathError> {
        let started = Instant::now();
        for usage in policy.maps.usage() {
            check_capacity(&usage)?;
        }

        let control = self.control()?;
        // The idle slot of a pending candidate is the confirmed policy the program may be
        // judging with right now: it is settled (confirmed or reverted) first, never rewritten.
        if control.revert_at_ns != 0 {
            return Err(DatapathError::Pending);
        }
        let idle = 1 - control.slot();
        if let Some(wait) = self
            .slots
            .flipped
            .and_then(|at| OLD_SLOT_GRACE.checked_sub(at.elapsed()))
        {
            std::thread::sleep(wait);
        }
        // Taken, so that a failure from here leaves the slot unknown, to be scanned next time.
        // Only a fresh process (adopting pinned maps, maybe left half-written by a crash) finds
        // it unknown now.
        let (held, scanned) = match self.slots.slots[usize::from(idle)].take() {
            Some(held) => (held, 0),
            None => (Arc::default(), self.scan_clear_slot(idle)?),
        };
        self.reset_reassigned_ids(policy)?;
        let (written, removed) = self.rewrite_slot(idle, &held, &policy.maps)?;
        drop(held);

        let name = CONFIG_MAP;
        let mut config: Array<&mut MapData, PolicyConfig> =
            Array::try_from(self.map_mut(name)?).map_err(map_err(name))?;
        config
            .set(u32::from(idle), config_of(policy, generation), 0)
            .map_err(map_err(name))?;

        // The flip: from here on every new packet reads the new slot.
        self.write_control(Control {
            epoch: control.next_epoch_for(idle),
            layout: LAYOUT_VERSION,
            _pad: 0,
            revert_at_ns,
        })?;
        let switched = started.elapsed();
        self.slots.flipped = Some(Instant::now());
        self.slots.slots[usize::from(idle)] = Some(Arc::clone(&policy.maps));
        self.slots.ids = Some(policy.ids.clone());
        Ok(ApplyReport {
            generation,
            slot: idle,
            entries: policy.maps.usage().iter().map(|u| u.entries).sum(),
            written,
            cleared: scanned + removed,
            switched,
            duration: started.elapsed(),
        })
    }

    /// Makes a pending provisional policy permanent: the deadline is cleared in the same word
    /// (the epoch is kept, so its flows stay valid). The previous policy's slot keeps it, for the
    /// next apply to rewrite.
    /// A candidate whose deadline has passed is not confirmed: the program already went back.
    pub fn confirm_provisional(&mut self) -> Result<Confirmation, DatapathError> {
        let control = self.control()?;
        if control.revert_at_ns == 0 {
            return Ok(Confirmation::NothingPending);
        }
        if control.reverted_at(monotonic_ns()) {
            return Ok(Confirmation::Expired);
        }
        self.write_control(Control {
            revert_at_ns: 0,
            ..control
        })?;
        Ok(Confirmation::Confirmed)
    }

    /// Makes the previous policy live for good, as the program does by itself at the deadline:
    /// its slot in the epoch, after every epoch used so far (so flows opened under the candidate
    /// are judged again), and no deadline; the candidate's slot keeps it, for the next apply to
    /// rewrite. Returns the word it replaced, or `None` when nothing was pending.
    pub fn revert_provisional(&mut self) -> Result<Option<Control>, DatapathError> {
        let control = self.control()?;
        if control.revert_at_ns == 0 {
            return Ok(None);
        }
        let in_force = Control {
            epoch: control.epoch_at(monotonic_ns()),
            ..control
        };
        let candidate = control.slot();
        self.write_control(Control {
            epoch: in_force.next_epoch_for(1 - candidate),
            layout: LAYOUT_VERSION,
            _pad: 0,
            revert_at_ns: 0,
        })?;
        self.slots.flipped = Some(Instant::now());
        Ok(Some(control))
    }

    fn write_control(&mut self, control: Control) -> Result<(), DatapathError> {
        let name = CONTROL_MAP;
        let mut ctl: Array<&mut MapData, Control> =
            Array::try_from(self.map_mut(name)?).map_err(map_err(name))?;
        ctl.set(0, control, 0).map_err(map_err(name))
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
        let cpus = super::possible_cpus()?;
        let name = DEVICE_STATS_MAP;
        let mut stats: Array<&mut MapData, DeviceStats> =
            Array::try_from(self.map_mut(name)?).map_err(map_err(name))?;
        for id in &devices {
            for cpu in 0..cpus {
                stats
                    .set(device_stats_row(cpu, *id), DeviceStats::default(), 0)
                    .map_err(map_err(name))?;
            }
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
            let zero = aya::maps::PerCpuValues::try_from(vec![RuleStats::default(); cpus as usize])
                .map_err(|e| DatapathError::Map {
                    name,
                    source: MapError::IoError(e),
                })?;
            rstats.set(*id, zero, 0).map_err(map_err(name))?;
        }
        Ok(())
    }

    /// Writes one map's image into `slot`; returns the entries written.
    fn write_map<M: PolicyMap>(
        &mut self,
        slot: u8,
        image: &[(M::Key, M::Value)],
    ) -> Result<usize, DatapathError>
    where
        M::Stored: SlotStore<M::Value>,
    {
        let entries = image.iter().map(|(k, v)| (M::stamp(slot, k), *v)).collect();
        M::Stored::insert(self, M::NAME, entries)
    }

    /// Deletes one map's `keys` from `slot` (keys already gone are no error).
    fn delete_map<M: PolicyMap>(&mut self, slot: u8, keys: &[M::Key]) -> Result<(), DatapathError>
    where
        M::Stored: SlotStore<M::Value>,
    {
        let keys = keys.iter().map(|k| M::stamp(slot, k)).collect();
        M::Stored::remove(self, M::NAME, keys)
    }

    fn batch_insert<K: aya::Pod + Sync, V: aya::Pod + Sync>(
        &self,
        name: &'static str,
        entries: impl Iterator<Item = (K, V)>,
    ) -> Result<usize, DatapathError> {
        let (keys, values): (Vec<K>, Vec<V>) = entries.unzip();
        batch::update(hash_fd(self, name)?, &keys, &values)
            .map_err(|source| DatapathError::Batch { name, source })?;
        Ok(keys.len())
    }

    fn batch_remove<K: aya::Pod + Sync>(
        &self,
        name: &'static str,
        keys: impl Iterator<Item = K>,
    ) -> Result<(), DatapathError> {
        let keys: Vec<K> = keys.collect();
        batch::delete(hash_fd(self, name)?, &keys)
            .map_err(|source| DatapathError::Batch { name, source })
    }

    /// Removes (in batches) every key of hash map `name` for which `stale` holds; returns how many.
    pub(super) fn scan_remove<K: aya::Pod + Sync, V: aya::Pod>(
        &self,
        name: &'static str,
        stale: impl Fn(&K) -> bool,
    ) -> Result<usize, DatapathError> {
        let keys: Vec<K> = hash_keys::<K, V>(self, name)?
            .into_iter()
            .filter(|k| stale(k))
            .collect();
        let n = keys.len();
        self.batch_remove(name, keys.into_iter())?;
        Ok(n)
    }
}

fn ignore_missing(r: Result<(), MapError>, name: &'static str) -> Result<(), DatapathError> {
    absent_is_none(r, name).map(|_| ())
}

/// How a policy map's stored keys are written, removed and cleared by slot: hash maps in batches,
/// LPM tries (no batch operations, few entries) one entry at a time.
trait SlotStore<V: Pod>: Sized {
    fn insert(
        dp: &mut Datapath,
        name: &'static str,
        entries: Vec<(Self, V)>,
    ) -> Result<usize, DatapathError>;
    fn remove(dp: &mut Datapath, name: &'static str, keys: Vec<Self>) -> Result<(), DatapathError>;
    /// Removes every key of `slot`; returns how many.
    fn clear_slot(dp: &mut Datapath, name: &'static str, slot: u8) -> Result<usize, DatapathError>;
    /// Entries per slot.
    fn occupancy(src: &impl MapSource, name: &'static str) -> Result<[usize; 2], DatapathError>;
    /// The value stored under `key`, if any.
    fn lookup(
        src: &impl MapSource,
        name: &'static str,
        key: &Self,
    ) -> Result<Option<V>, DatapathError>;
}

impl<K: HashKey, V: Pod + Sync> SlotStore<V> for K {
    fn insert(
        dp: &mut Datapath,
        name: &'static str,
        entries: Vec<(Self, V)>,
    ) -> Result<usize, DatapathError> {
        dp.batch_insert(name, entries.into_iter())
    }

    fn remove(dp: &mut Datapath, name: &'static str, keys: Vec<Self>) -> Result<(), DatapathError> {
        dp.batch_remove(name, keys.into_iter())
    }

    fn clear_slot(dp: &mut Datapath, name: &'static str, slot: u8) -> Result<usize, DatapathError> {
        dp.scan_remove::<K, V>(name, |k| k.slot() == slot)
    }

    fn occupancy(src: &impl MapSource, name: &'static str) -> Result<[usize; 2], DatapathError> {
        Ok(count_slots(
            hash_keys::<K, V>(src, name)?.iter().map(HashKey::slot),
        ))
    }

    fn lookup(
        src: &impl MapSource,
        name: &'static str,
        key: &Self,
    ) -> Result<Option<V>, DatapathError> {
        let map: AyaHashMap<&MapData, K, V> =
            AyaHashMap::try_from(src.map_data(name)?).map_err(map_err(name))?;
        absent_is_none(map.get(key, 0), name)
    }
}

/// Every key of hash map `name` (keys `K`, values `V`), read in batches: the one walk of a hash
/// map's keys, for clearing a slot and for counting what each slot holds.
fn hash_keys<K: Pod, V: Pod>(
    src: &impl MapSource,
    name: &'static str,
) -> Result<Vec<K>, DatapathError> {
    batch::hash_keys::<K, V>(hash_fd(src, name)?)
        .map_err(|source| DatapathError::Batch { name, source })
}

/// The fd of hash map `name`.
fn hash_fd(src: &impl MapSource, name: &'static str) -> Result<std::os::fd::RawFd, DatapathError> {
    batch::hash_fd(src.map_data(name)?).ok_or(DatapathError::NoMap(name))
}

/// Entries per slot, from the slots of a map's keys.
fn count_slots(slots: impl Iterator<Item = u8>) -> [usize; 2] {
    let mut out = [0; 2];
    for slot in slots {
        out[usize::from(slot & 1)] += 1;
    }
    out
}

impl<const N: usize, V: Pod> SlotStore<V> for LpmKey<[u8; N]> {
    fn insert(
        dp: &mut Datapath,
        name: &'static str,
        entries: Vec<(Self, V)>,
    ) -> Result<usize, DatapathError> {
        let mut trie = lpm_trie::<N, V>(dp, name)?;
        for (k, v) in &entries {
            trie.insert(k, v, 0).map_err(map_err(name))?;
        }
        Ok(entries.len())
    }

    fn remove(dp: &mut Datapath, name: &'static str, keys: Vec<Self>) -> Result<(), DatapathError> {
        let mut trie = lpm_trie::<N, V>(dp, name)?;
        for k in &keys {
            ignore_missing(trie.remove(k), name)?;
        }
        Ok(())
    }

    fn clear_slot(dp: &mut Datapath, name: &'static str, slot: u8) -> Result<usize, DatapathError> {
        let mut trie = lpm_trie::<N, V>(dp, name)?;
        let stale: Vec<Self> = trie
            .keys()
            .filter_map(Result::ok)
            .filter(|k| lpm_slot(k) == slot)
            .collect();
        for k in &stale {
            ignore_missing(trie.remove(k), name)?;
        }
        Ok(stale.len())
    }

    fn occupancy(src: &impl MapSource, name: &'static str) -> Result<[usize; 2], DatapathError> {
        let trie: LpmTrie<&MapData, [u8; N], V> =
            LpmTrie::try_from(src.map_data(name)?).map_err(map_err(name))?;
        Ok(count_slots(
            trie.keys().filter_map(Result::ok).map(|k| lpm_slot(&k)),
        ))
    }

    fn lookup(
        src: &impl MapSource,
        name: &'static str,
        key: &Self,
    ) -> Result<Option<V>, DatapathError> {
        let trie: LpmTrie<&MapData, [u8; N], V> =
            LpmTrie::try_from(src.map_data(name)?).map_err(map_err(name))?;
        absent_is_none(trie.get(key, 0), name)
    }
}

/// A lookup's value; a missing key is `None`, not an error.
fn absent_is_none<V>(
    r: Result<V, MapError>,
    name: &'static str,
) -> Result<Option<V>, DatapathError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(source) => Err(DatapathError::Map { name, source }),
    }
}

fn lpm_trie<'a, const N: usize, V: Pod>(
    dp: &'a mut Datapath,
    name: &'static str,
) -> Result<LpmTrie<&'a mut MapData, [u8; N], V>, DatapathError> {
    LpmTrie::try_from(dp.map_mut(name)?).map_err(map_err(name))
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

    #[test]
    fn the_slot_settings_say_whether_name_rules_apply_and_their_grace() {
        use enforcer_common::control::CONFIG_F_NAMES;
        let without = "zones: {a: {}, quarantine: {}}\n\
                       devices: {d: {zone: a, addresses: [\"10.0.0.2\"]}}\n\
                       rules: [{name: r, from: zone:a, to: zone:a, allow: [icmp]}]\n";
        let with = format!("{without}dns: {{upstream: [192.0.2.53], grace: 90s}}\n");
        let cfg = |yaml: &str| {
            let policy = parse_str("t.yaml", yaml).expect("valid policy");
            config_of(
                &compile(&policy, &CompileOptions::default()).expect("compiles"),
                1,
            )
        };
        let (off, on) = (cfg(without), cfg(&with));
        assert_eq!((off.flags & CONFIG_F_NAMES, off.dns_grace_s), (0, 0));
        assert_eq!(
            (on.flags & CONFIG_F_NAMES, on.dns_grace_s),
            (CONFIG_F_NAMES, 90)
        );
    }
}
