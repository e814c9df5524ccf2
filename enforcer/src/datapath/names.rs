//! The DNS-name bindings map (`BINDINGS`, `enforcer_common::names`): the resolver's writes, and
//! the live bindings `devices` and `explain` show. The resolver holds its own handle on the map
//! (a second file descriptor), so a binding never waits for the daemon's lock on the datapath.

use std::{net::IpAddr, os::fd::AsFd};

use aya::maps::{HashMap, MapData, MapError};
use enforcer_common::{
    FAMILY_V4, FAMILY_V6,
    identity::{octets, words},
    names::{BINDINGS_MAP, BindingKey, BindingValue},
};
use serde::Serialize;

use super::{Datapath, DatapathError};

/// One live (device, address, name) binding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Binding {
    pub device: u32,
    pub addr: IpAddr,
    /// Name id (`IdTable::names`).
    pub name: u32,
    /// `CLOCK_MONOTONIC` ns.
    pub expires_ns: u64,
}

fn map_err(source: MapError) -> DatapathError {
    DatapathError::Map {
        name: BINDINGS_MAP,
        source,
    }
}

/// The key of `addr` for `device`.
#[must_use]
pub fn binding_key(device: u32, addr: IpAddr) -> BindingKey {
    match addr {
        IpAddr::V4(a) => {
            let mut o = [0; 16];
            o[..4].copy_from_slice(&a.octets());
            BindingKey::new(device, FAMILY_V4, words(o))
        }
        IpAddr::V6(a) => BindingKey::new(device, FAMILY_V6, words(a.octets())),
    }
}

fn key_addr(k: &BindingKey) -> IpAddr {
    let o = octets(k.addr);
    if k.family == FAMILY_V4 {
        IpAddr::from([o[0], o[1], o[2], o[3]])
    } else {
        IpAddr::from(o)
    }
}

/// A handle on `BINDINGS`.
pub struct Bindings {
    map: HashMap<MapData, BindingKey, BindingValue>,
}

impl std::fmt::Debug for Bindings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bindings").finish_non_exhaustive()
    }
}

impl Bindings {
    /// Opens the map pinned under `pin_dir` (a running daemon's).
    ///
    /// # Errors
    /// When the map is not pinned there or is no bindings map.
    pub fn open_pinned(pin_dir: &std::path::Path) -> Result<Self, DatapathError> {
        let data = MapData::from_pin(pin_dir.join(BINDINGS_MAP)).map_err(map_err)?;
        let map = HashMap::try_from(aya::maps::Map::LruHashMap(data)).map_err(map_err)?;
        Ok(Self { map })
    }

    /// Binds `addr` to name `name` for `device` until `expires_ns` (extending, never shortening,
    /// an existing binding of that name).
    ///
    /// # Errors
    /// When the kernel refuses the write.
    pub fn bind(
        &mut self,
        device: u32,
        addr: IpAddr,
        name: u32,
        expires_ns: u64,
    ) -> Result<(), DatapathError> {
        let key = binding_key(device, addr);
        let current = match self.map.get(&key, 0) {
            Ok(v) => v,
            Err(MapError::KeyNotFound) => BindingValue::default(),
            Err(e) => return Err(map_err(e)),
        };
        self.map
            .insert(key, current.with(name, expires_ns), 0)
            .map_err(map_err)
    }

    /// Every binding still live at `now` (for display; the map is read without a lock, so a
    /// concurrent write may or may not show).
    #[must_use]
    pub fn live(&self, now: u64) -> Vec<Binding> {
        let mut out = Vec::new();
        for (k, v) in self.map.iter().filter_map(Result::ok) {
            push_live(&k, &v, now, &mut out);
        }
        out.sort_by_key(|b| (b.device, b.addr, b.name));
        out
    }

    /// The names bound to `addr` for `device`, still live at `now`: one lookup, not a walk of
    /// the map.
    ///
    /// # Errors
    /// When the kernel refuses the lookup (no binding is no error).
    pub fn live_of(
        &self,
        device: u32,
        addr: IpAddr,
        now: u64,
    ) -> Result<Vec<Binding>, DatapathError> {
        let key = binding_key(device, addr);
        let mut out = Vec::new();
        match self.map.get(&key, 0) {
            Ok(v) => push_live(&key, &v, now, &mut out),
            Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(map_err(e)),
        }
        out.sort_by_key(|b| b.name);
        Ok(out)
    }
}

/// The names of entry `(k, v)` still live at `now`, appended to `out`.
fn push_live(k: &BindingKey, v: &BindingValue, now: u64, out: &mut Vec<Binding>) {
    for b in v.names {
        if b.name != 0 && b.expires_ns > now {
            out.push(Binding {
                device: k.device,
                addr: key_addr(k),
                name: b.name,
                expires_ns: b.expires_ns,
            });
        }
    }
}

impl Datapath {
    /// A handle of its own on `BINDINGS` (a second descriptor of the same map).
    ///
    /// # Errors
    /// When the object has no such map or the descriptor cannot be duplicated.
    pub fn bindings(&self) -> Result<Bindings, DatapathError> {
        let map = self.map(BINDINGS_MAP)?;
        let aya::maps::Map::LruHashMap(data) = map else {
            return Err(DatapathError::NoMap(BINDINGS_MAP));
        };
        let fd = data.fd().as_fd().try_clone_to_owned().map_err(|e| {
            map_err(MapError::SyscallError(aya::sys::SyscallError {
                call: "dup",
                io_error: e,
            }))
        })?;
        let data = MapData::from_fd(fd).map_err(map_err)?;
        let map = HashMap::try_from(aya::maps::Map::LruHashMap(data)).map_err(map_err)?;
        Ok(Bindings { map })
    }
}
