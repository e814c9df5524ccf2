//! Migrating the pinned flow table to another capacity (`limits.flows`).
//!
//! A pinned map keeps the size it was created with when a later load adopts it, so a changed
//! capacity needs new maps. The four flow maps ([`FLOW_TABLE_MAPS`]) move together: a fresh
//! `FLOWS` with the old `FLOW_COUNT` would keep counts of flows it no longer holds, and the ring
//! must be as long as the table. Their pins are set aside before the load, so the loader creates
//! and pins new ones; the program still attached keeps using the old maps (its references keep
//! them alive) until `Datapath::attach` swaps it on its link, so enforcement never stops. The
//! set-aside pins are removed once the load succeeded, and put back when it failed.
//!
//! Also a test's clock for the table ([`super::Datapath::age_flows`]).

use std::{fs, path::Path};

use aya::maps::MapData;
use enforcer_common::flow::{FLOW_TABLE_MAPS, FLOWS_MAP, FlowKey, FlowValue};

use super::DatapathError;

/// Suffix of a flow map's pin while the load that replaces it runs (bpffs refuses names with a
/// dot).
const SET_ASIDE: &str = "_RESIZING";

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
pub(super) fn pinned_capacity(dir: &Path) -> Result<Option<u32>, DatapathError> {
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

/// When the flow maps pinned in `dir` have another capacity than `flows`, moves their pins aside
/// (so the next load creates new maps) and says so.
pub(super) fn set_aside_if_resized(
    dir: &Path,
    flows: u32,
) -> Result<Option<FlowTableResize>, DatapathError> {
    let Some(old) = pinned_capacity(dir)? else {
        return Ok(None);
    };
    if old == flows {
        return Ok(None);
    }
    for name in FLOW_TABLE_MAPS {
        let pin = dir.join(name);
        if pin.exists() {
            fs::rename(&pin, set_aside(dir, name)).map_err(|source| DatapathError::PinDir {
                dir: dir.display().to_string(),
                source,
            })?;
        }
    }
    Ok(Some(FlowTableResize { old, new: flows }))
}

/// After a successful load: the old flow maps live on only as long as a program uses them.
pub(super) fn drop_set_aside(dir: &Path) {
    for name in FLOW_TABLE_MAPS {
        let _absent_is_fine = fs::remove_file(set_aside(dir, name));
    }
}

/// After a failed load: the old flow maps are pinned again, in place of any new ones.
pub(super) fn restore_set_aside(dir: &Path) {
    for name in FLOW_TABLE_MAPS {
        let aside = set_aside(dir, name);
        if aside.exists() {
            let _absent_is_fine = fs::remove_file(dir.join(name));
            if let Err(error) = fs::rename(&aside, dir.join(name)) {
                tracing::warn!(map = name, %error, "could not pin the old flow map again");
            }
        }
    }
}

fn set_aside(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join(format!("{name}{SET_ASIDE}"))
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
