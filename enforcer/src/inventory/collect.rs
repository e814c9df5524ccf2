//! The daemon's inventory task: reads evidence frames from the program's `EVIDENCE` ring buffer,
//! parses them, keeps them per MAC, reports drift (a log line once per new contradiction, and
//! `enforcer_inventory_drift{device,field}`), and writes the store to the state directory at most
//! once a second, where `enforcer devices` reads it.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use enforcer_common::evidence::{EVIDENCE_MAP, EvidenceFrame, EvidenceKind};
use tracing::{debug, warn};

use super::{
    drift::{self, Drift},
    observe,
    store::{INVENTORY_FILE, Sighting, Snapshot, Store},
};
use crate::{
    daemon::{
        error_chain,
        events::{self, ifname},
        metrics::Metrics,
        state::{self, DeviceLabel, Status},
    },
    datapath::{Datapath, DatapathError},
};

/// How often the store is written and drift computed, when something changed.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The state the task keeps between frames.
struct Inventory {
    store: Store,
    state_dir: PathBuf,
    metrics: Arc<Metrics>,
    /// Drifts already logged (device, mac, field, observed): each is logged once.
    logged: BTreeSet<(String, String, String, String)>,
    dirty: bool,
}

/// The store a previous daemon left, or an empty one.
fn load(state_dir: &Path) -> Store {
    match state::read::<Snapshot>(state_dir, INVENTORY_FILE) {
        Ok(s) => Store::from_snapshot(s.unwrap_or_default()),
        Err(e) => {
            warn!(error = %error_chain(&e), "ignoring an unreadable inventory; it is learned again");
            Store::default()
        }
    }
}

/// One record of the ring buffer as the program wrote it.
fn decode(bytes: &[u8]) -> Option<EvidenceFrame> {
    if bytes.len() < size_of::<EvidenceFrame>() {
        return None;
    }
    // SAFETY: the length is checked; `EvidenceFrame` is plain integers and bytes (any bit
    // pattern is valid) and `read_unaligned` needs no alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<EvidenceFrame>()) })
}

impl Inventory {
    fn take(&mut self, f: &EvidenceFrame) {
        let Some(kind) = EvidenceKind::from_u8(f.kind) else {
            return;
        };
        match observe(kind, f.payload()) {
            Ok(o) => {
                let seen = Sighting {
                    mac: f.src_mac,
                    interface: ifname(f.ifindex),
                    vlan: f.vlan,
                    source: kind.as_str(),
                    at: crate::time::unix_now(),
                };
                self.store.record(&seen, o);
                self.dirty = true;
            }
            // A device's malformed frame is its own business: it says nothing, and is no error.
            Err(e) => debug!(
                mac = %crate::policy::model::fmt_mac(f.src_mac),
                kind = kind.as_str(),
                error = %e,
                "evidence frame not understood"
            ),
        }
    }

    /// Writes the store and reports drift, when something changed.
    fn flush(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let snapshot = self.store.snapshot();
        let drifts = drift::all(&listed(&self.state_dir), &snapshot.devices);
        self.report(&drifts);
        if let Err(e) = state::write(&self.state_dir, INVENTORY_FILE, &snapshot) {
            warn!(error = %error_chain(&e), "could not record the inventory");
        }
    }

    fn report(&mut self, drifts: &[Drift]) {
        self.metrics.inventory_drift.reset();
        // Only drifts that still hold are remembered, so the set is bounded by the store; one
        // that ends and comes back is a new change, logged again.
        let key = |d: &Drift| {
            (
                d.device.clone(),
                d.mac.clone(),
                d.field.clone(),
                d.observed.clone(),
            )
        };
        let current: BTreeSet<_> = drifts.iter().map(key).collect();
        self.logged.retain(|k| current.contains(k));
        for d in drifts {
            self.metrics
                .inventory_drift
                .with_label_values(&[d.device.as_str(), d.field.as_str()])
                .inc();
            if self.logged.insert(key(d)) {
                warn!(
                    device = %d.device,
                    mac = %d.mac,
                    field = %d.field,
                    expected = %d.expected,
                    observed = %d.observed,
                    "inventory drift: the device announces other than expected (evidence, not identity)"
                );
            }
        }
    }
}

/// The devices the running policy lists, from the status the daemon records at each reload.
fn listed(state_dir: &Path) -> Vec<DeviceLabel> {
    state::read::<Status>(state_dir, state::STATUS_FILE)
        .ok()
        .flatten()
        .map(|s| s.devices)
        .unwrap_or_default()
}

/// The inventory task for the daemon to spawn: takes the evidence ring buffer out of `dp` (the
/// task owns it from then on, as the deny-event reader owns `EVENTS`).
pub fn task(
    dp: &mut Datapath,
    state_dir: &Path,
    metrics: &Arc<Metrics>,
) -> Result<impl Future<Output = std::io::Result<()>> + use<>, DatapathError> {
    let ring = events::take_ring(dp, EVIDENCE_MAP)?;
    Ok(run(ring, state_dir.to_owned(), Arc::clone(metrics)))
}

impl events::RingReader for Inventory {
    fn record(&mut self, bytes: &[u8]) {
        if let Some(f) = decode(bytes) {
            self.take(&f);
        }
    }

    fn tick(&mut self) {
        self.flush();
    }
}

/// Reads evidence until the task is dropped.
async fn run(
    ring: RingBuf<MapData>,
    state_dir: PathBuf,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let mut inv = Inventory {
        store: load(&state_dir),
        state_dir,
        metrics,
        logged: BTreeSet::new(),
        dirty: true,
    };
    events::read_ring(ring, FLUSH_EVERY, &mut inv).await
}
