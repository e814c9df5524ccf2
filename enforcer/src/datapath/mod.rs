//! The facade over the XDP program and its maps: load (adopting pinned maps), attach (pinned links,
//! atomic replacement of a running program), apply a compiled policy, read counters, and run
//! crafted frames through the loaded program (`BPF_PROG_TEST_RUN`).
//!
//! This is the only module that talks to the kernel; map names, types and layouts come only from
//! `enforcer-common`.

mod apply;
mod batch;
pub mod bench;
mod egress;
mod explain;
mod flow_table;
pub mod names;
pub mod probe_frame;
mod read;

use std::{
    fs,
    path::{Path, PathBuf},
};

pub use apply::{ApplyReport, Confirmation, mode_name, slot_differences, slot_occupancy};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, Map},
    programs::{
        TestRun as _, TestRunOptions, Xdp, XdpMode,
        links::{FdLink, LinkError, PinnedLink},
        xdp::XdpLink,
    },
};
pub use egress::{EgressAttach, EgressError, pinned_egress_interfaces, unpin_egress};
use enforcer_common::{
    LAYOUT_VERSION, PROGRAM,
    control::Control,
    flow::{DEFAULT_FLOWS, FLOW_CAPACITY_GLOBAL, FLOW_RING_MAP, FLOW_TABLE_MAPS, FLOWS_MAP},
};
pub use explain::{Explainer, pinned_router_addresses};
pub use flow_table::FlowTableResize;
pub use read::{
    Counters, DeviceCounters, MapSource, PinnedMaps, RuleCounters, counters, device_counters,
    device_states, discovered, flow_capacity, flow_count, flows, live_config, monotonic_ns,
    rule_counters,
};
use thiserror::Error;

/// The eBPF object, built by `build.rs` and embedded so the binary is all a router needs.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/enforcer-xdp"));

/// Sub-directory of the pin directory holding one pinned XDP link per interface.
const LINKS_DIR: &str = "links";

#[derive(Debug, Error)]
pub enum DatapathError {
    #[error(
        "this enforcer binary was built without its XDP program (ENFORCER_SKIP_EBPF); rebuild with `cargo xtask build`"
    )]
    NoObject,
    #[error("load the XDP program")]
    Load(#[source] aya::EbpfError),
    #[error("the XDP program has no `{PROGRAM}` entry point")]
    NoProgram,
    #[error("verify and load the XDP program into the kernel")]
    Verify(#[source] aya::programs::ProgramError),
    #[error("map `{0}` is missing from the XDP program")]
    NoMap(&'static str),
    #[error("map `{name}`")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error(
        "the pinned maps in {dir} have layout version {found}, this binary uses {LAYOUT_VERSION}; \
         run `enforcer detach --pin-dir {dir}` with the binary that made them, then start again"
    )]
    LayoutMismatch { dir: String, found: u32 },
    #[error("read the possible CPUs from {path}")]
    Cpus {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{dir} is not on a bpffs mount; mount one with `mount -t bpf bpf /sys/fs/bpf`")]
    NotBpffs { dir: String },
    #[error("prepare pin directory {dir}")]
    PinDir {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("attach to interface {iface}")]
    Attach {
        iface: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("pin the XDP link of {iface} at {path}")]
    Pin {
        iface: String,
        path: String,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("adopt the pinned XDP link of {iface} at {path}")]
    Adopt {
        iface: String,
        path: String,
        #[source]
        source: LinkError,
    },
    #[error(
        "a provisional policy is pending (`enforcer apply --confirm`): confirm it or let it revert first"
    )]
    Pending,
    #[error("policy needs {needed} entries in {map}, capacity {capacity}")]
    Capacity {
        map: &'static str,
        needed: usize,
        capacity: u32,
    },
    #[error("batch write to map `{name}`")]
    Batch {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("nothing is pinned in {dir}: no enforcer runs with this pin directory")]
    NothingPinned { dir: String },
    #[error("run a test frame through the program")]
    TestRun(#[source] aya::programs::ProgramError),
    #[error(transparent)]
    Egress(#[from] egress::EgressError),
}

/// How an interface is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Native (driver) XDP.
    Native,
    /// Generic (skb) XDP: works everywhere, slower.
    Generic,
}

impl AttachMode {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Generic => "generic",
        }
    }
}

/// Which programs a load verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Programs {
    /// The XDP and egress programs that enforce.
    Enforcing,
    /// None yet: the explain program is loaded at the first probe (`explain`).
    ExplainOnly,
}

/// The loaded program and its maps.
pub struct Datapath {
    /// Owns the program and maps; dropping it unloads what is not pinned.
    ebpf: Ebpf,
    pin_dir: Option<PathBuf>,
    /// What each slot holds, so the next apply can clear exactly those entries.
    slots: apply::SlotContents,
    /// The flow maps pinned before this load had another capacity and were re-created.
    flow_resize: Option<FlowTableResize>,
}

impl std::fmt::Debug for Datapath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datapath")
            .field("pin_dir", &self.pin_dir)
            .finish_non_exhaustive()
    }
}

/// CPUs the kernel may run the program on (`/sys/devices/system/cpu/possible`), as aya counts
/// them for per-CPU maps: the CPUs `DEVICE_STATS` keeps rows for.
pub(crate) fn possible_cpus() -> Result<u32, DatapathError> {
    aya::util::nr_cpus()
        .map_err(|(path, source)| DatapathError::Cpus { path, source })
        .map(|n| u32::try_from(n.max(1)).unwrap_or(u32::MAX))
}

/// `DEVICE_STATS`' capacity, set at every load: [`enforcer_common::MAX_DEVICES`] rows per CPU.
pub(crate) fn device_stats_capacity() -> Result<u32, DatapathError> {
    Ok(possible_cpus()?.saturating_mul(enforcer_common::MAX_DEVICES))
}

/// Whether `dir` (or the nearest existing parent) is on a bpffs mount.
#[must_use]
pub fn is_bpffs(dir: &Path) -> bool {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let mut probe = dir;
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p,
            None => return false,
        }
    }
    let Ok(c) = std::ffi::CString::new(probe.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: `statfs` only writes into the zeroed struct we pass; `c` is a valid C string.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &raw mut st) == 0 && st.f_type == BPF_FS_MAGIC
    }
}

impl Datapath {
    /// Loads and verifies the program with the default flow-table capacity ([`DEFAULT_FLOWS`]);
    /// see [`Datapath::load_with_flows`].
    pub fn load(pin_dir: Option<&Path>) -> Result<Self, DatapathError> {
        Self::load_with_flows(pin_dir, DEFAULT_FLOWS)
    }

    /// Loads and verifies the program with a flow table of `flows` entries (`limits.flows`).
    /// With `pin_dir`, maps are pinned there by name, and maps already pinned there are adopted
    /// (with their counters and flows) instead of created.
    ///
    /// A pinned map keeps its size when adopted, so pinned flow maps of another capacity are
    /// re-created empty, all four together ([`FlowTableResize`]; `flow_table`): the program still
    /// attached keeps the old ones until [`Datapath::attach`] swaps it on its link.
    pub fn load_with_flows(pin_dir: Option<&Path>, flows: u32) -> Result<Self, DatapathError> {
        let resize = match pin_dir {
            Some(dir) => flow_table::resize_needed(dir, flows)?,
            None => None,
        };
        let loaded = Self::load_sized(pin_dir, flows, resize.is_some(), Programs::Enforcing);
        if let (Some(dir), Some(_)) = (pin_dir, resize) {
            match &loaded {
                Ok(_) => flow_table::pin_new_maps(dir)?,
                Err(_) => flow_table::remove_new_pins(dir),
            }
        }
        let mut dp = loaded?;
        dp.flow_resize = resize;
        Ok(dp)
    }

    /// The flow maps pinned before this load had another capacity and were re-created.
    #[must_use]
    pub const fn flow_table_resized(&self) -> Option<FlowTableResize> {
        self.flow_resize
    }

    /// Takes over what `previous` knows of the policy slots, so the next apply rewrites only what
    /// differs from what they hold (a reload that re-created the flow table loads a second
    /// datapath).
    pub fn take_slots_from(&mut self, previous: &mut Self) {
        self.slots = std::mem::take(&mut previous.slots);
    }

    /// A private, unpinned instance for probes (`enforcer test`, the guards before a switch): its
    /// maps, and only the read-only explain program (loaded at the first probe), so the enforcing
    /// programs' verification is not paid. [`Datapath::test_run`] does not work on it.
    pub fn load_for_probes() -> Result<Self, DatapathError> {
        Self::load_sized(None, DEFAULT_FLOWS, false, Programs::ExplainOnly)
    }

    /// Loads with a flow table of `flows`; with `new_flow_maps`, the flow maps are created pinned
    /// under their new names ([`flow_table::new_pin`]) instead of adopted.
    fn load_sized(
        pin_dir: Option<&Path>,
        flows: u32,
        new_flow_maps: bool,
        programs: Programs,
    ) -> Result<Self, DatapathError> {
        if OBJECT.is_empty() {
            return Err(DatapathError::NoObject);
        }
        // Every map is declared pinned-by-name. Without a pin directory the maps are pinned into a
        // private one and unpinned right after loading, so an unpinned datapath (the tests)
        // can never adopt or leave behind another's maps.
        let private = pin_dir.is_none().then(|| {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            PathBuf::from(format!(
                "/sys/fs/bpf/enforcer-unpinned-{}-{n}",
                std::process::id()
            ))
        });
        let dir = pin_dir
            .or(private.as_deref())
            .ok_or(DatapathError::NoProgram)?;
        if !is_bpffs(dir) {
            return Err(DatapathError::NotBpffs {
                dir: dir.display().to_string(),
            });
        }
        let pin_err = |source| DatapathError::PinDir {
            dir: dir.display().to_string(),
            source,
        };
        if private.is_some() {
            // A leftover of a crashed process with the same pid and counter holds nobody's maps.
            let _absent_is_fine = fs::remove_dir_all(dir);
            fs::create_dir_all(dir).map_err(pin_err)?;
        } else {
            fs::create_dir_all(dir.join(LINKS_DIR)).map_err(pin_err)?;
        }
        // Known before the load adopts or creates them: maps it creates hold no policy yet.
        let created = apply::none_pinned(dir);
        let mut loader = EbpfLoader::new();
        loader
            .default_map_pin_directory(dir)
            .map_max_entries(FLOWS_MAP, flows)
            .map_max_entries(FLOW_RING_MAP, flows)
            .map_max_entries(
                enforcer_common::stats::DEVICE_STATS_MAP,
                device_stats_capacity()?,
            )
            .override_global(FLOW_CAPACITY_GLOBAL, &flows, true);
        if new_flow_maps {
            for name in FLOW_TABLE_MAPS {
                loader.map_pin_path(name, flow_table::new_pin(dir, name));
            }
        }
        let loaded = loader.load(OBJECT).map_err(DatapathError::Load);
        if private.is_some() {
            fs::remove_dir_all(dir).map_err(pin_err)?;
        }
        let mut ebpf = loaded?;
        if programs == Programs::Enforcing {
            let program: &mut Xdp = ebpf
                .program_mut(PROGRAM)
                .ok_or(DatapathError::NoProgram)?
                .try_into()
                .map_err(DatapathError::Verify)?;
            program.load().map_err(DatapathError::Verify)?;
            egress::load_programs(&mut ebpf, &[enforcer_common::EGRESS_PROGRAM])?;
        }
        let dp = Self {
            ebpf,
            pin_dir: pin_dir.map(Path::to_path_buf),
            slots: apply::SlotContents::for_maps(created),
            flow_resize: None,
        };
        let control = dp.control()?;
        if control.layout != 0 && control.layout != LAYOUT_VERSION {
            return Err(DatapathError::LayoutMismatch {
                dir: pin_dir.map_or_else(String::new, |d| d.display().to_string()),
                found: control.layout,
            });
        }
        Ok(dp)
    }

    fn program(&mut self) -> Result<&mut Xdp, DatapathError> {
        self.ebpf
            .program_mut(PROGRAM)
            .ok_or(DatapathError::NoProgram)?
            .try_into()
            .map_err(DatapathError::Verify)
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut Map, DatapathError> {
        self.ebpf.map_mut(name).ok_or(DatapathError::NoMap(name))
    }

    fn map(&self, name: &'static str) -> Result<&Map, DatapathError> {
        self.ebpf.map(name).ok_or(DatapathError::NoMap(name))
    }

    /// Takes a map out of the loaded object (for the event reader, which owns its map).
    pub fn take_map(&mut self, name: &'static str) -> Result<aya::maps::Map, DatapathError> {
        self.ebpf.take_map(name).ok_or(DatapathError::NoMap(name))
    }

    /// The live-policy word.
    pub fn control(&self) -> Result<Control, DatapathError> {
        let name = enforcer_common::control::CONTROL_MAP;
        let map: Array<&aya::maps::MapData, Control> = Array::try_from(self.map(name)?)
            .map_err(|source| DatapathError::Map { name, source })?;
        map.get(&0, 0)
            .map_err(|source| DatapathError::Map { name, source })
    }

    /// Attaches to `iface`, or atomically replaces the program behind the link pinned for it
    /// (so a restart never leaves the interface unenforced), and pins the link so enforcement
    /// outlives this process. Returns the mode in use.
    ///
    /// A pinned link whose interface is gone (deleted, or deleted and re-created under the same
    /// name: a new device) is defunct: the kernel refuses to switch it (`ENOLINK`), so its pin is
    /// dropped and a new link is made on the interface of that name now.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<AttachMode, DatapathError> {
        let pin = self.pin_dir.as_ref().map(|d| d.join(LINKS_DIR).join(iface));
        if let Some(path) = pin.as_ref().filter(|p| p.exists()) {
            match self.switch_pinned(iface, path) {
                Err(DatapathError::Attach { source, .. }) if is_defunct_link(&source) => {
                    drop_stale_pin(iface, path).map_err(|source| DatapathError::PinDir {
                        dir: path.display().to_string(),
                        source,
                    })?;
                }
                // The mode is whatever the link was made with.
                other => return other.map(|()| mode),
            }
        }
        let flags = match mode {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        };
        let program = self.program()?;
        let id = program
            .attach(iface, flags)
            .map_err(|source| DatapathError::Attach {
                iface: iface.to_owned(),
                source,
            })?;
        if let Some(path) = pin {
            let link = program
                .take_link(id)
                .map_err(|source| DatapathError::Attach {
                    iface: iface.to_owned(),
                    source,
                })?;
            let fd_link = FdLink::try_from(link).map_err(|e| DatapathError::Adopt {
                iface: iface.to_owned(),
                path: path.display().to_string(),
                source: e,
            })?;
            fd_link.pin(&path).map_err(|source| DatapathError::Pin {
                iface: iface.to_owned(),
                path: path.display().to_string(),
                source,
            })?;
        }
        Ok(mode)
    }

    /// Switches the link pinned at `path` to this program (atomically: the interface is never
    /// unenforced).
    fn switch_pinned(&mut self, iface: &str, path: &Path) -> Result<(), DatapathError> {
        let adopt = |source| DatapathError::Adopt {
            iface: iface.to_owned(),
            path: path.display().to_string(),
            source,
        };
        let attach = |source| DatapathError::Attach {
            iface: iface.to_owned(),
            source,
        };
        let pinned = PinnedLink::from_pin(path).map_err(adopt)?;
        let link = XdpLink::try_from(FdLink::from(pinned)).map_err(adopt)?;
        let program = self.program()?;
        let id = program.attach_to_link(link).map_err(attach)?;
        // Hold no link fd of our own: the pin alone keeps the link, so `detach` (unpinning)
        // takes effect even while a daemon runs.
        drop(program.take_link(id).map_err(attach)?);
        Ok(())
    }

    fn loaded_program(&self) -> Result<&Xdp, DatapathError> {
        self.ebpf
            .program(PROGRAM)
            .ok_or(DatapathError::NoProgram)?
            .try_into()
            .map_err(DatapathError::Verify)
    }

    /// Runs one frame through the loaded program; returns the XDP action and the frame after it.
    pub fn test_run(&self, frame: &[u8]) -> Result<(u32, Vec<u8>), DatapathError> {
        let program = self.loaded_program()?;
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::new()
        };
        let res = program.test_run(opts).map_err(DatapathError::TestRun)?;
        let len = usize::try_from(res.data_size_out)
            .unwrap_or(0)
            .min(out.len());
        out.truncate(len);
        Ok((res.return_value, out))
    }

    /// Runs one frame `repeat` times and returns the kernel-measured mean duration per run.
    pub fn time_run(
        &self,
        frame: &[u8],
        repeat: u32,
    ) -> Result<std::time::Duration, DatapathError> {
        let program = self.loaded_program()?;
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::new()
        };
        Ok(program
            .test_run(opts)
            .map_err(DatapathError::TestRun)?
            .duration)
    }
}

/// Interfaces with a pinned link under `pin_dir`.
#[must_use]
pub fn pinned_interfaces(pin_dir: &Path) -> Vec<String> {
    pinned_names(&pin_dir.join(LINKS_DIR))
}

/// The names pinned in `dir` (one per interface), sorted; none when it does not exist.
pub(crate) fn pinned_names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Whether a link update failed because the link's interface is gone: the kernel detached the
/// link when the device was unregistered, and a link never moves to another device.
pub(crate) fn is_defunct_link(e: &aya::programs::ProgramError) -> bool {
    matches!(e, aya::programs::ProgramError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::ENOLINK))
}

/// Removes the pin of a defunct link (its last reference, so the kernel frees it), saying so.
pub(crate) fn drop_stale_pin(iface: &str, path: &Path) -> std::io::Result<()> {
    tracing::info!(%iface, pin = %path.display(), "the pinned link's interface is gone (deleted, or deleted and re-created); dropping the stale pin");
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Unpins `iface`'s XDP and egress links and leaves everything else pinned (the maps, the other
/// interfaces), for an interface the daemon stops enforcing on while it runs: one that was
/// deleted (its links are defunct already) or one no longer listed. Returns whether a pin was
/// there.
pub fn unpin_interface(pin_dir: &Path, iface: &str) -> Result<bool, DatapathError> {
    let path = pin_dir.join(LINKS_DIR).join(iface);
    let xdp = match fs::remove_file(&path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(source) => {
            return Err(DatapathError::PinDir {
                dir: path.display().to_string(),
                source,
            });
        }
    };
    let egress = egress::unpin_egress(pin_dir, iface)?;
    Ok(xdp || egress)
}

/// Detaches `iface` (or every interface) by unpinning its link; with no interface left, removes
/// the pinned maps too. Returns the interfaces detached.
pub fn detach(pin_dir: &Path, iface: Option<&str>) -> Result<Vec<String>, DatapathError> {
    let err = |source| DatapathError::PinDir {
        dir: pin_dir.display().to_string(),
        source,
    };
    let targets: Vec<String> = match iface {
        Some(i) => vec![i.to_owned()],
        None => pinned_interfaces(pin_dir),
    };
    let mut done = Vec::new();
    for name in targets {
        let path = pin_dir.join(LINKS_DIR).join(&name);
        if !path.exists() {
            continue;
        }
        // Removing the last reference to the link (the pin; no process holds it) detaches it.
        fs::remove_file(&path).map_err(err)?;
        egress::unpin_egress(pin_dir, &name)?;
        done.push(name);
    }
    if pinned_interfaces(pin_dir).is_empty() && pin_dir.exists() {
        fs::remove_dir_all(pin_dir).map_err(err)?;
    }
    Ok(done)
}
