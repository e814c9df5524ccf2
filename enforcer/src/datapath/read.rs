//! Reading what the program counted: per-device, per-rule and global counters (summed over CPUs),
//! flows, device state and discoveries. Works on a loaded [`Datapath`] or, for `status` and
//! `devices`, on the maps pinned by a running daemon ([`PinnedMaps`]).

use std::{collections::BTreeMap, path::Path};

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use enforcer_common::{
    MAX_DEVICES,
    control::{CONFIG_MAP, CONTROL_MAP, Control, PolicyConfig},
    flow::{FLOWS_MAP, FlowKey, FlowValue, flow_timeout_ns},
    identity::MacKey,
    state::{DEVICE_STATE_MAP, DISCOVERED_MAP, DeviceState, DiscoveredDevice, QuarantineReason},
    stats::{
        COUNTERS_MAP, Counter, DEVICE_STATS_MAP, DeviceStats, RULE_STATS_MAP, RuleStats,
        device_stats_row,
    },
};

use super::{Datapath, DatapathError, batch};

/// Packets and bytes a device sent, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeviceCounters {
    /// By verdict: allow, deny, audit.
    pub packets: [u64; 3],
    pub bytes: [u64; 3],
    pub spoofed: u64,
    /// Monotonic nanoseconds of the last packet, 0 = never.
    pub last_seen_ns: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuleCounters {
    pub packets: u64,
    pub bytes: u64,
}

/// Global counters by [`Counter`].
#[derive(Clone, Debug, Default)]
pub struct Counters(pub BTreeMap<&'static str, u64>);

impl Counters {
    #[must_use]
    pub fn get(&self, c: Counter) -> u64 {
        self.0.get(c.as_str()).copied().unwrap_or(0)
    }

    /// Sum of the `Malformed*` counters.
    #[must_use]
    pub fn malformed(&self) -> u64 {
        Counter::MALFORMED.iter().map(|c| self.get(*c)).sum()
    }
}

/// Anything that can hand out the program's maps by name.
pub trait MapSource {
    fn map_data(&self, name: &'static str) -> Result<&Map, DatapathError>;
}

impl MapSource for Datapath {
    fn map_data(&self, name: &'static str) -> Result<&Map, DatapathError> {
        self.map(name)
    }
}

/// The maps a running (or exited) daemon pinned, opened read-only by name.
pub struct PinnedMaps {
    maps: BTreeMap<&'static str, Map>,
}

impl PinnedMaps {
    /// Opens the pinned maps under `pin_dir`; fails when nothing is pinned there.
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let mut maps = BTreeMap::new();
        for name in [
            CONTROL_MAP,
            CONFIG_MAP,
            DEVICE_STATS_MAP,
            RULE_STATS_MAP,
            COUNTERS_MAP,
            FLOWS_MAP,
            DEVICE_STATE_MAP,
            DISCOVERED_MAP,
        ] {
            let data = MapData::from_pin(pin_dir.join(name))
                .map_err(|source| DatapathError::Map { name, source })?;
            maps.insert(
                name,
                Map::from_map_data(data).map_err(|source| DatapathError::Map { name, source })?,
            );
        }
        Ok(Self { maps })
    }
}

impl PinnedMaps {
    fn map_mut(&mut self, name: &'static str) -> Result<&mut Map, DatapathError> {
        self.maps.get_mut(name).ok_or(DatapathError::NoMap(name))
    }

    /// Puts device `id` in quarantine until `until_ns` (monotonic; `QUARANTINE_FOREVER` for good),
    /// or releases it with `until_ns = 0`. Takes effect at the device's next packet: the epoch bump
    /// makes every cached flow be judged again.
    pub fn set_quarantine(
        &mut self,
        id: u32,
        until_ns: u64,
        reason: QuarantineReason,
    ) -> Result<(), DatapathError> {
        let name = DEVICE_STATE_MAP;
        let mut states: Array<&mut MapData, DeviceState> =
            Array::try_from(self.map_mut(name)?).map_err(err(name))?;
        let state = DeviceState {
            quarantine_until_ns: until_ns,
            deny_window_start_ns: 0,
            deny_count: 0,
            quarantine_reason: if until_ns == 0 {
                QuarantineReason::None as u32
            } else {
                reason as u32
            },
        };
        states.set(id, state, 0).map_err(err(name))?;
        let name = CONTROL_MAP;
        let mut ctl: Array<&mut MapData, Control> =
            Array::try_from(self.map_mut(name)?).map_err(err(name))?;
        let mut c = ctl.get(&0, 0).map_err(err(name))?;
        // +2 keeps the live slot (see `Control`).
        c.epoch += 2;
        ctl.set(0, c, 0).map_err(err(name))
    }
}

impl MapSource for PinnedMaps {
    fn map_data(&self, name: &'static str) -> Result<&Map, DatapathError> {
        self.maps.get(name).ok_or(DatapathError::NoMap(name))
    }
}

fn err(name: &'static str) -> impl Fn(aya::maps::MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

/// The live-policy word and the settings of the slot the program judges with now (the last
/// confirmed policy's once a provisional one's deadline has passed).
pub fn live_config(src: &impl MapSource) -> Result<(Control, PolicyConfig), DatapathError> {
    let ctl: Array<&MapData, Control> =
        Array::try_from(src.map_data(CONTROL_MAP)?).map_err(err(CONTROL_MAP))?;
    let control = ctl.get(&0, 0).map_err(err(CONTROL_MAP))?;
    let cfg: Array<&MapData, PolicyConfig> =
        Array::try_from(src.map_data(CONFIG_MAP)?).map_err(err(CONFIG_MAP))?;
    let slot = enforcer_common::control::slot_of(control.epoch_at(monotonic_ns()));
    let config = cfg.get(&u32::from(slot), 0).map_err(err(CONFIG_MAP))?;
    Ok((control, config))
}

/// Per-device counters for `ids`, summed over CPUs, in the order asked (an id past the table's
/// reads as nothing counted). `DEVICE_STATS` keeps a row per CPU and device: the rows of nearby
/// ids are read together, one batch a CPU ([`batch::lookup_rows`]), not one call a row.
pub fn device_counters(
    src: &impl MapSource,
    ids: impl IntoIterator<Item = u32>,
) -> Result<Vec<(u32, DeviceCounters)>, DatapathError> {
    let name = DEVICE_STATS_MAP;
    let fd = batch::array_fd(src.map_data(name)?).ok_or(DatapathError::NoMap(name))?;
    let cpus = super::possible_cpus()?;
    let ids: Vec<u32> = ids.into_iter().collect();
    let mut wanted: Vec<u32> = ids.iter().copied().filter(|i| *i < MAX_DEVICES).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut sums: std::collections::HashMap<u32, DeviceCounters> =
        std::collections::HashMap::with_capacity(wanted.len());
    for run in wanted.chunk_by(|a, b| b - a <= ROWS_READ_THROUGH) {
        let (first, last) = (run[0], run[run.len() - 1]);
        for cpu in 0..cpus {
            let rows: Vec<DeviceStats> =
                batch::lookup_rows(fd, device_stats_row(cpu, first), last - first + 1)
                    .map_err(|source| DatapathError::Batch { name, source })?;
            for id in run {
                let Some(s) = rows.get((id - first) as usize) else {
                    continue;
                };
                let c = sums.entry(*id).or_default();
                for i in 0..3 {
                    c.packets[i] += s.packets[i];
                    c.bytes[i] += s.bytes[i];
                }
                c.spoofed += s.spoofed;
                c.last_seen_ns = c.last_seen_ns.max(s.last_seen_ns);
            }
        }
    }
    Ok(ids
        .into_iter()
        .map(|id| (id, sums.get(&id).copied().unwrap_or_default()))
        .collect())
}

/// Ids this close are read in one batch with the rows between them: 64 rows of 64 bytes cost
/// less than another call.
const ROWS_READ_THROUGH: u32 = 64;

/// Per-rule counters for `ids` (0 = the default verdict), summed over CPUs.
pub fn rule_counters(
    src: &impl MapSource,
    ids: impl IntoIterator<Item = u32>,
) -> Result<Vec<(u32, RuleCounters)>, DatapathError> {
    let name = RULE_STATS_MAP;
    let map: PerCpuArray<&MapData, RuleStats> =
        PerCpuArray::try_from(src.map_data(name)?).map_err(err(name))?;
    let mut out = Vec::new();
    for id in ids {
        let per_cpu = map.get(&id, 0).map_err(err(name))?;
        let mut c = RuleCounters::default();
        for s in per_cpu.iter() {
            c.packets += s.packets;
            c.bytes += s.bytes;
        }
        out.push((id, c));
    }
    Ok(out)
}

/// Every global counter, summed over CPUs.
pub fn counters(src: &impl MapSource) -> Result<Counters, DatapathError> {
    let name = COUNTERS_MAP;
    let map: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(src.map_data(name)?).map_err(err(name))?;
    let mut out = Counters::default();
    for c in Counter::ALL {
        let per_cpu = map.get(&(*c as u32), 0).map_err(err(name))?;
        out.0.insert(c.as_str(), per_cpu.iter().sum());
    }
    Ok(out)
}

/// Number of live (unexpired, by `now_ns`) entries in the flow table.
pub fn flow_count(src: &impl MapSource, now_ns: u64) -> Result<usize, DatapathError> {
    let name = FLOWS_MAP;
    let map: HashMap<&MapData, FlowKey, FlowValue> =
        HashMap::try_from(src.map_data(name)?).map_err(err(name))?;
    Ok(map
        .iter()
        .filter_map(Result::ok)
        .filter(|(k, v)| {
            now_ns.saturating_sub(v.last_seen_ns) <= flow_timeout_ns(k.proto, v.tcp_state)
        })
        .count())
}

/// Every entry of the flow table, expired or not.
pub fn flows(src: &impl MapSource) -> Result<Vec<(FlowKey, FlowValue)>, DatapathError> {
    let name = FLOWS_MAP;
    let map: HashMap<&MapData, FlowKey, FlowValue> =
        HashMap::try_from(src.map_data(name)?).map_err(err(name))?;
    Ok(map.iter().filter_map(Result::ok).collect())
}

/// The flow table's capacity: the `max_entries` of the `FLOWS` map itself (a pinned map keeps the
/// size it was made with).
pub fn flow_capacity(src: &impl MapSource) -> Result<u32, DatapathError> {
    let name = FLOWS_MAP;
    let info = match src.map_data(name)? {
        Map::HashMap(m) => m.info(),
        _ => return Err(DatapathError::NoMap(name)),
    };
    Ok(info.map_err(err(name))?.max_entries())
}

/// Quarantine state of `ids`.
pub fn device_states(
    src: &impl MapSource,
    ids: impl IntoIterator<Item = u32>,
) -> Result<Vec<(u32, DeviceState)>, DatapathError> {
    let name = DEVICE_STATE_MAP;
    let map: Array<&MapData, DeviceState> =
        Array::try_from(src.map_data(name)?).map_err(err(name))?;
    ids.into_iter()
        .map(|id| Ok((id, map.get(&id, 0).map_err(err(name))?)))
        .collect()
}

/// Every discovered (unlisted) source.
pub fn discovered(src: &impl MapSource) -> Result<Vec<([u8; 6], DiscoveredDevice)>, DatapathError> {
    let name = DISCOVERED_MAP;
    let map: HashMap<&MapData, MacKey, DiscoveredDevice> =
        HashMap::try_from(src.map_data(name)?).map_err(err(name))?;
    Ok(map
        .iter()
        .filter_map(Result::ok)
        .map(|(k, v)| (k.mac, v))
        .collect())
}

/// `CLOCK_MONOTONIC_COARSE` now, in nanoseconds: the clock the datapath reads
/// (`bpf_ktime_get_coarse_ns`), so deadlines written here and compared there agree to the tick.
#[must_use]
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE).map_or(0, |ts| {
        u64::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000_000
            + u64::try_from(ts.tv_nsec()).unwrap_or(0)
    })
}
