//! Migrating the pinned flow table to another capacity (`limits.flows`).
//!
//! A pinned map keeps the size it was made with when a later load adopts it, so a changed
//! capacity needs new maps. The four flow maps ([`FLOW_TABLE_MAPS`]) move together: a fresh
//! `FLOWS` with the old `FLOW_COUNT` would keep counts of flows it no longer holds, and the ring
//! must be as long as the table. The load creates them pinned under a second name
//! ([`new_pin`]) while the old ones stay pinned (so `status` always finds a table); once the load
//! succeeded they are renamed over the old pins. The program still attached keeps using the old
//! maps (its references keep them alive) until `Datapath::attach` swaps it on its link, so
//! enforcement never stops. A failed load removes the new pins and changes nothing.
//!
//! Also a test's clock for the table ([`super::Datapath::age_flows`]).

use std::{
    fs,
    path::{Path, PathBuf},
};

use aya::maps::MapData;
use enforcer_common::flow::{FLOW_TABLE_MAPS, FLOWS_MAP, FlowKey, FlowValue};

use super::DatapathError;

/// Suffix of a new flow map's pin until it replaces the old one (bpffs refuses names with a dot).
const NEW_PIN_SUFFIX: &str = "_RESIZING";

/// The flow table changed capacity at load: it was re-created empty, and its flows will be
/// learned again (TCP through loose pickup, UDP and ICMP judged again at their next packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FlowTableResize {
    /// Capacity of the flow table that was pinned.
    pub old: u32,
    /// Capacity of the new one (`limits.flows`).
    pub new: u32,
}

/// The capacity of the `FLOWS` pinned in `dir`, if one is.
fn pinned_capacity(dir: &Path) -> Result<Option<u32>, DatapathError> {
    let path = dir.join(FLOWS_MAP);
    if !path.exists() {
        return Ok(None);
    }
    let map_err = |source| DatapathError::Map {
        name: FLOWS_MAP,
        source,
    };
    let map = MapData::from_pin(&path).map_err(map_err)?;
    Ok(Some(map.info().map_err(map_err)?.max_entries()))
}

/// Whether the flow maps pinned in `dir` have another capacity than `flows`. Clears the new pins a
/// crashed resize may have left, so the load creates them afresh.
pub(super) fn resize_needed(
    dir: &Path,
    flows: u32,
) -> Result<Option<FlowTableResize>, DatapathError> {
    let Some(old) = pinned_capacity(dir)? else {
        return Ok(None);
    };
    if old == flows {
        return Ok(None);
    }
    remove_new_pins(dir);
    Ok(Some(FlowTableResize { old, new: flows }))
}

/// Where the load pins the new flow map `name` while the old one is still pinned.
pub(super) fn new_pin(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{NEW_PIN_SUFFIX}"))
}

/// After a successful load: the new flow maps take the old ones' pins (a rename replaces the old
/// pin in one step). The old maps live on only as long as a program uses them.
pub(super) fn pin_new_maps(dir: &Path) -> Result<(), DatapathError> {
    for name in FLOW_TABLE_MAPS {
        fs::rename(new_pin(dir, name), dir.join(name)).map_err(|source| DatapathError::PinDir {
            dir: dir.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// After a failed load (or one a crash interrupted): nothing new stays pinned.
pub(super) fn remove_new_pins(dir: &Path) {
    for name in FLOW_TABLE_MAPS {
        let _absent_is_fine = fs::remove_file(new_pin(dir, name));
    }
}

impl super::Datapath {
    /// Moves every flow's clock back by `by_ns`, as if that much time had passed since its last
    /// packet. For tests of expiry, which run the program against the real monotonic clock and
    /// cannot wait half an hour; the daemon never writes the flow table.
    pub fn age_flows(&mut self, by_ns: u64) -> Result<(), DatapathError> {
        let name = FLOWS_MAP;
        let map_err = |source| DatapathError::Map { name, source };
        let mut map: aya::maps::HashMap<&mut aya::maps::MapData, FlowKey, FlowValue> =
            aya::maps::HashMap::try_from(self.map_mut(name)?).map_err(map_err)?;
        let entries: Vec<(FlowKey, FlowValue)> = map.iter().filter_map(Result::ok).collect();
        for (key, mut value) in entries {
            value.last_seen_ns = value.last_seen_ns.saturating_sub(by_ns);
            // BPF_EXIST: an entry the program removed meanwhile stays removed.
            map.insert(key, value, 2).map_err(map_err)?;
        }
        Ok(())
    }
}
