//! Benchmark access to the loaded object (`cargo xtask bench` only; the daemon never calls this):
//! the baseline and driver programs of `enforcer-ebpf/src/bench.rs`, kernel-timed test runs of
//! any program by name, live-frame runs, and the small map chores between measurements (restart
//! the driver's rotation, clear the flow table and quarantine state, read map memory).

use std::{collections::BTreeMap, fs, path::PathBuf, time::Duration};

use aya::{
    EbpfLoader,
    maps::{Array, MapData, ProgramArray},
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
pub use enforcer_common::bench::{
    BenchConfig, BenchEntry, DROP, F_ADDRS, F_CSUM, F_DPORT, F_MAC, F_ROTATE_SPORT, F_SPORT, FLOOR,
    FLOOR_DENIED, FLOOR_FRAGMENT, FLOOR_NEW, GEN, PASS, SPREAD, TC_PASS,
};
use enforcer_common::{
    MAX_DEVICES, PROGRAM,
    bench::{CONFIG_MAP, COUNTER_MAP, TABLE_MAP, TARGET_MAP},
    flow::{FLOW_COUNT_MAP, FLOWS_MAP, FRAGS_MAP, FlowKey, FlowValue, FragKey, FragValue},
    state::{DEVICE_STATE_MAP, DeviceState},
};

use super::{Datapath, DatapathError, OBJECT, apply::SlotContents, is_bpffs};

/// The enforcer itself.
pub const ENFORCER: &str = PROGRAM;
/// Capacity given to `BENCH_TABLE` at load time (one entry in the object).
pub const TABLE_CAPACITY: u32 = MAX_DEVICES;

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

impl Datapath {
    /// Loads the object unpinned with every benchmark program verified and `bench_spread`'s
    /// target set to the enforcer.
    pub fn load_for_bench() -> Result<Self, DatapathError> {
        if OBJECT.is_empty() {
            return Err(DatapathError::NoObject);
        }
        // Maps are declared pinned-by-name: pin into a private directory and unpin at once, as
        // `Datapath::load(None)` does.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = PathBuf::from(format!(
            "/sys/fs/bpf/enforcer-bench-{}-{n}",
            std::process::id()
        ));
        if !is_bpffs(&dir) {
            return Err(DatapathError::NotBpffs {
                dir: dir.display().to_string(),
            });
        }
        let pin_err = |source| DatapathError::PinDir {
            dir: dir.display().to_string(),
            source,
        };
        let _absent_is_fine = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(pin_err)?;
        let loaded = EbpfLoader::new()
            .default_map_pin_directory(&dir)
            .map_max_entries(TABLE_MAP, TABLE_CAPACITY)
            .map_max_entries(
                enforcer_common::stats::DEVICE_STATS_MAP,
                super::device_stats_capacity()?,
            )
            .load(OBJECT)
            .map_err(DatapathError::Load);
        fs::remove_dir_all(&dir).map_err(pin_err)?;
        let mut ebpf = loaded?;
        for name in [
            ENFORCER,
            PASS,
            DROP,
            SPREAD,
            GEN,
            FLOOR,
            FLOOR_NEW,
            FLOOR_DENIED,
            FLOOR_FRAGMENT,
        ] {
            let p: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or(DatapathError::NoProgram)?
                .try_into()
                .map_err(DatapathError::Verify)?;
            p.load().map_err(DatapathError::Verify)?;
        }
        super::egress::load_programs(&mut ebpf, &[enforcer_common::EGRESS_PROGRAM, TC_PASS])?;
        let mut dp = Self {
            ebpf,
            pin_dir: None,
            slots: SlotContents::empty(),
            flow_resize: None,
        };
        dp.bench_target(ENFORCER)?;
        Ok(dp)
    }

    fn bench_prog(&self, name: &str) -> Result<&Xdp, DatapathError> {
        self.ebpf
            .program(name)
            .ok_or(DatapathError::NoProgram)?
            .try_into()
            .map_err(DatapathError::Verify)
    }

    /// A duplicate of `program`'s fd (for a second thread that runs it).
    pub fn bench_program_fd(
        &self,
        program: &str,
    ) -> Result<aya::programs::ProgramFd, DatapathError> {
        self.bench_prog(program)?
            .fd()
            .map_err(DatapathError::Verify)?
            .try_clone()
            .map_err(|e| DatapathError::PinDir {
                dir: "program fd".into(),
                source: e,
            })
    }

    /// Points `bench_spread`'s tail call at `program`.
    pub fn bench_target(&mut self, program: &str) -> Result<(), DatapathError> {
        let fd = self.bench_program_fd(program)?;
        let mut arr: ProgramArray<&mut MapData> =
            ProgramArray::try_from(self.map_mut(TARGET_MAP)?).map_err(map_err(TARGET_MAP))?;
        arr.set(0, &fd, 0).map_err(map_err(TARGET_MAP))
    }

    /// Runs `frame` through `program` `repeat` times; the verdict of the last run and the
    /// kernel-measured mean time per run.
    pub fn bench_run(
        &self,
        program: &str,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, Duration), DatapathError> {
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::new()
        };
        let r = self
            .bench_prog(program)?
            .test_run(opts)
            .map_err(DatapathError::TestRun)?;
        Ok((r.return_value, r.duration))
    }

    /// Runs `frame` through `program` with live frames (`BPF_F_TEST_XDP_LIVE_FRAMES`): the kernel
    /// acts on the verdict (a redirect sends the frame), `repeat` frames in batches of `batch`.
    pub fn bench_live_run(
        &self,
        program: &str,
        frame: &[u8],
        repeat: u32,
        batch: u32,
    ) -> Result<(), DatapathError> {
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat,
            attrs: TestRunAttrs::new().xdp_live_frames(batch),
            ..TestRunOptions::new()
        };
        self.bench_prog(program)?
            .test_run(opts)
            .map_err(DatapathError::TestRun)?;
        Ok(())
    }

    pub fn bench_config(&mut self, cfg: BenchConfig) -> Result<(), DatapathError> {
        let mut a: Array<&mut MapData, BenchConfig> =
            Array::try_from(self.map_mut(CONFIG_MAP)?).map_err(map_err(CONFIG_MAP))?;
        a.set(0, cfg, 0).map_err(map_err(CONFIG_MAP))
    }

    /// Writes the rotation table (at most [`TABLE_CAPACITY`] entries).
    pub fn bench_table(&mut self, entries: &[BenchEntry]) -> Result<(), DatapathError> {
        let mut a: Array<&mut MapData, BenchEntry> =
            Array::try_from(self.map_mut(TABLE_MAP)?).map_err(map_err(TABLE_MAP))?;
        for (i, e) in entries.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            a.set(i, *e, 0).map_err(map_err(TABLE_MAP))?;
        }
        Ok(())
    }

    /// Restarts the driver's rotation at entry 0.
    pub fn bench_reset_counter(&mut self) -> Result<(), DatapathError> {
        let mut a: Array<&mut MapData, u64> =
            Array::try_from(self.map_mut(COUNTER_MAP)?).map_err(map_err(COUNTER_MAP))?;
        a.set(0, 0, 0).map_err(map_err(COUNTER_MAP))
    }

    /// Empties the flow and fragment tables; returns the entries removed. The owners' live-flow
    /// counts go back to zero with them, or the next round would run into the flow quota.
    pub fn bench_clear_flows(&mut self) -> Result<usize, DatapathError> {
        let owners: std::collections::BTreeSet<u32> = {
            let flows: aya::maps::HashMap<&MapData, FlowKey, FlowValue> =
                aya::maps::HashMap::try_from(self.map(FLOWS_MAP)?).map_err(map_err(FLOWS_MAP))?;
            flows
                .iter()
                .filter_map(Result::ok)
                .map(|(_, v)| v.owner)
                .collect()
        };
        let removed = self.scan_remove::<FlowKey, FlowValue>(FLOWS_MAP, |_| true)?
            + self.scan_remove::<FragKey, FragValue>(FRAGS_MAP, |_| true)?;
        let mut counts: Array<&mut MapData, u64> =
            Array::try_from(self.map_mut(FLOW_COUNT_MAP)?).map_err(map_err(FLOW_COUNT_MAP))?;
        for owner in owners {
            counts.set(owner, 0, 0).map_err(map_err(FLOW_COUNT_MAP))?;
        }
        Ok(removed)
    }

    /// Lifts quarantine (and resets denial windows) of the given device ids.
    pub fn bench_clear_device_state(
        &mut self,
        devices: impl IntoIterator<Item = u32>,
    ) -> Result<(), DatapathError> {
        let mut a: Array<&mut MapData, DeviceState> =
            Array::try_from(self.map_mut(DEVICE_STATE_MAP)?).map_err(map_err(DEVICE_STATE_MAP))?;
        for d in devices {
            if d < MAX_DEVICES {
                a.set(d, DeviceState::default(), 0)
                    .map_err(map_err(DEVICE_STATE_MAP))?;
            }
        }
        Ok(())
    }

    /// Attaches any program of the object to `iface`; the link lives until [`Self::bench_detach`]
    /// or until the datapath is dropped.
    pub fn bench_attach(
        &mut self,
        program: &str,
        iface: &str,
        mode: XdpMode,
    ) -> Result<XdpLinkId, DatapathError> {
        let p: &mut Xdp = self
            .ebpf
            .program_mut(program)
            .ok_or(DatapathError::NoProgram)?
            .try_into()
            .map_err(DatapathError::Verify)?;
        p.attach(iface, mode)
            .map_err(|source| DatapathError::Attach {
                iface: iface.to_owned(),
                source,
            })
    }

    /// How many times the kernel ran `program`, and their total run time. Both stay zero unless
    /// run statistics are on (`aya::sys::enable_stats`), which costs every BPF program two clock
    /// reads a run while on.
    pub fn bench_run_stats(&self, program: &str) -> Result<(u64, Duration), DatapathError> {
        let info = self
            .bench_prog(program)?
            .info()
            .map_err(DatapathError::Verify)?;
        Ok((info.run_count(), info.run_time()))
    }

    pub fn bench_detach(&mut self, program: &str, link: XdpLinkId) -> Result<(), DatapathError> {
        let p: &mut Xdp = self
            .ebpf
            .program_mut(program)
            .ok_or(DatapathError::NoProgram)?
            .try_into()
            .map_err(DatapathError::Verify)?;
        p.detach(link).map_err(DatapathError::Verify)
    }
}

/// Kernel memory (`memlock` in fdinfo) of every BPF map this process holds open, by map name.
/// Maps of the same name (several loaded datapaths) are added up.
#[must_use]
pub fn map_memory() -> BTreeMap<String, u64> {
    let mut by_id: BTreeMap<u32, u64> = BTreeMap::new();
    if let Ok(rd) = fs::read_dir("/proc/self/fdinfo") {
        for e in rd.filter_map(Result::ok) {
            let Ok(text) = fs::read_to_string(e.path()) else {
                continue;
            };
            let field = |k: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            if let (Some(id), Some(mem)) = (field("map_id:"), field("memlock:")) {
                by_id.insert(u32::try_from(id).unwrap_or(u32::MAX), mem);
            }
        }
    }
    let mut out = BTreeMap::new();
    for info in aya::maps::loaded_maps().filter_map(Result::ok) {
        if let Some(mem) = by_id.get(&info.id()) {
            let name = info.name_as_str().unwrap_or("?").to_owned();
            *out.entry(name).or_insert(0) += mem;
        }
    }
    out
}
