//! Running a probe frame through the read-only explain program (`enforcer_common::explain`): on a
//! loaded [`Datapath`] (a private instance for `enforcer test` and the guards), or on the maps a
//! running daemon pinned ([`Explainer`], for `enforcer explain`), which it then only reads.

use std::{
    collections::BTreeSet,
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as AyaHashMap, Map, MapData},
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use enforcer_common::{
    control::{CONTROL_MAP, Control},
    explain::{EXPLAIN_MAP, EXPLAIN_PROGRAM, Explanation},
    flow::{FLOW_RING_MAP, FLOWS_MAP},
    identity::{
        ADDR_KIND_ROUTER, ADDRS_V4_MAP, ADDRS_V6_MAP, AddrEntry, AddrKeyV4, AddrKeyV6, octets,
    },
};

use super::{Datapath, DatapathError, OBJECT, pinned_names};

/// The explain program loaded over a running daemon's pinned maps.
pub struct Explainer {
    ebpf: Ebpf,
}

impl std::fmt::Debug for Explainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Explainer").finish_non_exhaustive()
    }
}

impl Explainer {
    /// Loads the explain program sharing the maps pinned in `pin_dir`: it judges against the
    /// running policy and live quarantine, and writes none of them.
    ///
    /// # Errors
    /// When nothing is pinned there (no daemon ran), or the load fails.
    pub fn over_pinned(pin_dir: &Path) -> Result<Self, DatapathError> {
        if OBJECT.is_empty() {
            return Err(DatapathError::NoObject);
        }
        if !pin_dir.join(CONTROL_MAP).exists() {
            return Err(DatapathError::NothingPinned {
                dir: pin_dir.display().to_string(),
            });
        }
        let before: BTreeSet<String> = pinned_names(pin_dir).into_iter().collect();
        // A pinned map keeps its own size; the loader is told it so nothing is re-created.
        let flows = MapData::from_pin(pin_dir.join(FLOWS_MAP))
            .and_then(|m| m.info())
            .map(|i| i.max_entries())
            .map_err(|source| DatapathError::Map {
                name: FLOWS_MAP,
                source,
            })?;
        let mut loader = EbpfLoader::new();
        loader
            .default_map_pin_directory(pin_dir)
            .map_max_entries(FLOWS_MAP, flows)
            .map_max_entries(FLOW_RING_MAP, flows)
            .map_max_entries(
                enforcer_common::stats::DEVICE_STATS_MAP,
                super::device_stats_capacity()?,
            );
        let loaded = loader.load(OBJECT).map_err(DatapathError::Load);
        // The loader pins any map it did not find (one a newer program declares): that would be
        // a change to the running daemon's pin directory, so what this load pinned goes again.
        // The program never reads such a map's contents as the running policy's.
        for name in pinned_names(pin_dir) {
            if !before.contains(&name) {
                let path: PathBuf = pin_dir.join(&name);
                let _gone_already = fs::remove_file(path);
            }
        }
        let mut ebpf = loaded?;
        load_program(&mut ebpf)?;
        Ok(Self { ebpf })
    }

    /// Runs `frame` through the explain program with `request` (`EXPLAIN_REQ_*`).
    ///
    /// # Errors
    /// When the test run fails.
    pub fn explain(&mut self, frame: &[u8], request: u32) -> Result<Explanation, DatapathError> {
        run(&mut self.ebpf, frame, request)
    }
}

impl Datapath {
    /// Runs `frame` through this instance's explain program (loaded at first use) with `request`
    /// (`EXPLAIN_REQ_*`): the verdict of its live policy, with nothing written.
    ///
    /// # Errors
    /// When the program does not load or the test run fails.
    pub fn explain(&mut self, frame: &[u8], request: u32) -> Result<Explanation, DatapathError> {
        load_program(&mut self.ebpf)?;
        run(&mut self.ebpf, frame, request)
    }
}

/// Loads (verifies) the explain program unless it is loaded already.
fn load_program(ebpf: &mut Ebpf) -> Result<(), DatapathError> {
    let program: &mut Xdp = ebpf
        .program_mut(EXPLAIN_PROGRAM)
        .ok_or(DatapathError::NoProgram)?
        .try_into()
        .map_err(DatapathError::Verify)?;
    if program.fd().is_err() {
        program.load().map_err(DatapathError::Verify)?;
    }
    Ok(())
}

fn run(ebpf: &mut Ebpf, frame: &[u8], request: u32) -> Result<Explanation, DatapathError> {
    let name = EXPLAIN_MAP;
    let map_err = |source| DatapathError::Map { name, source };
    {
        let map = ebpf.map_mut(name).ok_or(DatapathError::NoMap(name))?;
        let mut answer: Array<&mut MapData, Explanation> = Array::try_from(map).map_err(map_err)?;
        answer
            .set(0, Explanation::request(request), 0)
            .map_err(map_err)?;
    }
    let program: &Xdp = ebpf
        .program(EXPLAIN_PROGRAM)
        .ok_or(DatapathError::NoProgram)?
        .try_into()
        .map_err(DatapathError::Verify)?;
    let mut out = vec![0u8; frame.len() + 256];
    program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::new()
        })
        .map_err(DatapathError::TestRun)?;
    let map = ebpf.map(name).ok_or(DatapathError::NoMap(name))?;
    let answer: Array<&MapData, Explanation> = Array::try_from(map).map_err(map_err)?;
    answer.get(&0, 0).map_err(map_err)
}

/// The router's own addresses in the live slot of the maps pinned in `pin_dir`: what `router`
/// stands for in a probe of the running policy.
///
/// # Errors
/// When the maps cannot be opened or read.
pub fn pinned_router_addresses(pin_dir: &Path) -> Result<Vec<IpAddr>, DatapathError> {
    let open = |name: &'static str| {
        MapData::from_pin(pin_dir.join(name))
            .and_then(Map::from_map_data)
            .map_err(|source| DatapathError::Map { name, source })
    };
    let control: Array<MapData, Control> =
        Array::try_from(open(CONTROL_MAP)?).map_err(|source| DatapathError::Map {
            name: CONTROL_MAP,
            source,
        })?;
    let slot = control
        .get(&0, 0)
        .map_err(|source| DatapathError::Map {
            name: CONTROL_MAP,
            source,
        })?
        .slot();
    let mut out = Vec::new();
    let v4: AyaHashMap<MapData, AddrKeyV4, AddrEntry> = AyaHashMap::try_from(open(ADDRS_V4_MAP)?)
        .map_err(|source| DatapathError::Map {
        name: ADDRS_V4_MAP,
        source,
    })?;
    for (k, v) in v4.iter().filter_map(Result::ok) {
        if k.slot == slot && v.kind == ADDR_KIND_ROUTER {
            out.push(IpAddr::V4(Ipv4Addr::from(k.addr.to_ne_bytes())));
        }
    }
    let v6: AyaHashMap<MapData, AddrKeyV6, AddrEntry> = AyaHashMap::try_from(open(ADDRS_V6_MAP)?)
        .map_err(|source| DatapathError::Map {
        name: ADDRS_V6_MAP,
        source,
    })?;
    for (k, v) in v6.iter().filter_map(Result::ok) {
        if k.slot == slot && v.kind == ADDR_KIND_ROUTER {
            out.push(IpAddr::V6(Ipv6Addr::from(octets(k.addr))));
        }
    }
    out.sort();
    Ok(out)
}
