//! The egress program (`enforcer_egress`, TC): loaded with the XDP program from the same object,
//! so the two share every map; attached through a tcx link per interface, pinned beside the XDP
//! links (`egress-links/IFACE`) and, when a pin exists, switched to the new program atomically
//! (`bpf_link_update`), so a restart never leaves the router's own traffic unjudged. tcx needs
//! Linux 6.6.

use std::{fs, path::Path};

use aya::{
    Ebpf,
    programs::{
        LinkOrder, SchedClassifier, TcAttachType, TestRun as _, TestRunOptions,
        links::{FdLink, LinkError, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
    },
};
use enforcer_common::EGRESS_PROGRAM;
use thiserror::Error;

use super::{Datapath, DatapathError};

/// Sub-directory of the pin directory holding one pinned egress (tcx) link per interface.
const EGRESS_LINKS_DIR: &str = "egress-links";

/// Offset of `ingress_ifindex` in `struct __sk_buff` (after `len`, `pkt_type`, `mark`,
/// `queue_mapping`, `protocol`, `vlan_present`, `vlan_tci`, `vlan_proto` and `priority`): the one
/// field of the context a test run sets, to stand for a forwarded packet.
const SKB_INGRESS_IFINDEX: usize = 36;
/// The prefix of `struct __sk_buff` a test run passes (the kernel zero-fills the rest).
const SKB_CTX_LEN: usize = 48;

#[derive(Debug, Error)]
pub enum EgressError {
    #[error("the object has no `{0}` program")]
    NoProgram(&'static str),
    #[error("load the egress program `{name}`")]
    Load {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("attach the egress program to {iface} (tcx, Linux 6.6 or later)")]
    Attach {
        iface: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("adopt the pinned egress link of {iface} at {path}")]
    Adopt {
        iface: String,
        path: String,
        #[source]
        source: LinkError,
    },
    #[error("pin the egress link of {iface} at {path}")]
    Pin {
        iface: String,
        path: String,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("unpin the egress link at {path}")]
    Unpin {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("run a test frame through `{name}`")]
    TestRun {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
}

/// How an egress link came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EgressAttach {
    /// A new tcx link, pinned.
    Created,
    /// The pinned link of an earlier daemon, switched to this program.
    Adopted,
}

impl EgressAttach {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Adopted => "adopted",
        }
    }
}

fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, EgressError> {
    ebpf.program_mut(name)
        .ok_or(EgressError::NoProgram(name))?
        .try_into()
        .map_err(|source| EgressError::Load { name, source })
}

fn classifier_ref<'a>(
    ebpf: &'a Ebpf,
    name: &'static str,
) -> Result<&'a SchedClassifier, EgressError> {
    ebpf.program(name)
        .ok_or(EgressError::NoProgram(name))?
        .try_into()
        .map_err(|source| EgressError::Load { name, source })
}

/// Verifies and loads TC programs of the object (the egress program, and benchmark baselines).
pub(super) fn load_programs(ebpf: &mut Ebpf, names: &[&'static str]) -> Result<(), EgressError> {
    for name in names {
        classifier(ebpf, name)?
            .load()
            .map_err(|source| EgressError::Load { name, source })?;
    }
    Ok(())
}

/// Where `iface`'s egress link is pinned.
fn link_pin(pin_dir: &Path, iface: &str) -> std::path::PathBuf {
    pin_dir.join(EGRESS_LINKS_DIR).join(iface)
}

/// Interfaces with a pinned egress link under `pin_dir`.
#[must_use]
pub fn pinned_egress_interfaces(pin_dir: &Path) -> Vec<String> {
    super::pinned_names(&pin_dir.join(EGRESS_LINKS_DIR))
}

/// Detaches `iface`'s egress program by removing the pin, the link's last reference (no process
/// holds one). Returns whether there was one.
pub fn unpin_egress(pin_dir: &Path, iface: &str) -> Result<bool, EgressError> {
    let path = link_pin(pin_dir, iface);
    match fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(EgressError::Unpin {
            path: path.display().to_string(),
            source,
        }),
    }
}

impl Datapath {
    /// Attaches the egress program to `iface` through a tcx link, or switches the link pinned for
    /// it to this program, and pins it (with a pin directory) so it outlives this process.
    pub fn attach_egress(&mut self, iface: &str) -> Result<EgressAttach, DatapathError> {
        let pin = self.pin_dir.as_ref().map(|d| link_pin(d, iface));
        let attach_err = |source| EgressError::Attach {
            iface: iface.to_owned(),
            source,
        };
        if let Some(path) = pin.as_ref().filter(|p| p.exists()) {
            let adopt = |source| EgressError::Adopt {
                iface: iface.to_owned(),
                path: path.display().to_string(),
                source,
            };
            let pinned = PinnedLink::from_pin(path).map_err(adopt)?;
            let link = SchedClassifierLink::try_from(FdLink::from(pinned)).map_err(adopt)?;
            let program = classifier(&mut self.ebpf, EGRESS_PROGRAM)?;
            match program.attach_to_link(link) {
                Ok(id) => {
                    // As for XDP: the pin alone keeps the link, so `detach` works while a
                    // daemon runs.
                    drop(program.take_link(id).map_err(attach_err)?);
                    return Ok(EgressAttach::Adopted);
                }
                // The interface of that name is another device now (or none): as for XDP, the
                // stale pin goes and a new link is made below.
                Err(e) if super::is_defunct_link(&e) => {
                    super::drop_stale_pin(iface, path).map_err(|source| EgressError::Unpin {
                        path: path.display().to_string(),
                        source,
                    })?;
                }
                Err(e) => return Err(attach_err(e).into()),
            }
        }
        let program = classifier(&mut self.ebpf, EGRESS_PROGRAM)?;
        let id = program
            .attach_with_options(
                iface,
                TcAttachType::Egress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .map_err(attach_err)?;
        if let Some(path) = pin {
            let link = program.take_link(id).map_err(attach_err)?;
            let pin_err = |path: &Path| {
                let path = path.display().to_string();
                move |source| EgressError::Pin {
                    iface: iface.to_owned(),
                    path,
                    source,
                }
            };
            let fd_link = FdLink::try_from(link).map_err(|source| EgressError::Adopt {
                iface: iface.to_owned(),
                path: path.display().to_string(),
                source,
            })?;
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(|source| EgressError::Unpin {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            fd_link.pin(&path).map_err(pin_err(&path))?;
        }
        Ok(EgressAttach::Created)
    }

    /// Runs one frame through a loaded TC program (the egress program unless `program` names a
    /// benchmark baseline). `ingress_ifindex` 0 is a packet the router sends; anything else one
    /// it forwards. Returns the TC action and the frame after it.
    pub fn test_run_tc(
        &self,
        program: &'static str,
        frame: &[u8],
        ingress_ifindex: u32,
    ) -> Result<(i32, Vec<u8>), DatapathError> {
        let prog = classifier_ref(&self.ebpf, program)?;
        let ctx = skb_ctx(ingress_ifindex);
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..TestRunOptions::new()
        };
        let res = prog.test_run(opts).map_err(|source| EgressError::TestRun {
            name: program,
            source,
        })?;
        let len = usize::try_from(res.data_size_out)
            .unwrap_or(0)
            .min(out.len());
        out.truncate(len);
        // The kernel hands back the program's `int` as the 32-bit return value.
        Ok((res.return_value.cast_signed(), out))
    }

    /// Runs one frame `repeat` times through a TC program; the kernel-measured mean per run.
    pub fn time_run_tc(
        &self,
        program: &'static str,
        frame: &[u8],
        ingress_ifindex: u32,
        repeat: u32,
    ) -> Result<std::time::Duration, DatapathError> {
        let prog = classifier_ref(&self.ebpf, program)?;
        let ctx = skb_ctx(ingress_ifindex);
        let opts = TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            repeat,
            ..TestRunOptions::new()
        };
        Ok(prog
            .test_run(opts)
            .map_err(|source| EgressError::TestRun {
                name: program,
                source,
            })?
            .duration)
    }
}

/// A `struct __sk_buff` prefix with only `ingress_ifindex` set.
fn skb_ctx(ingress_ifindex: u32) -> [u8; SKB_CTX_LEN] {
    let mut ctx = [0u8; SKB_CTX_LEN];
    ctx[SKB_INGRESS_IFINDEX..SKB_INGRESS_IFINDEX + 4]
        .copy_from_slice(&ingress_ifindex.to_ne_bytes());
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_context_sets_only_the_ingress_interface() {
        let ctx = skb_ctx(7);
        assert_eq!(&ctx[36..40], &7u32.to_ne_bytes());
        assert!(ctx[..36].iter().chain(&ctx[40..]).all(|b| *b == 0));
    }

    #[test]
    fn unpinning_an_interface_without_an_egress_link_is_no_error() {
        let dir =
            std::env::temp_dir().join(format!("enforcer-egress-unpin-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert!(!unpin_egress(&dir, "eth9").unwrap_or(true));
        fs::create_dir_all(dir.join(EGRESS_LINKS_DIR)).unwrap_or_else(|e| panic!("{e}"));
        fs::write(link_pin(&dir, "eth9"), b"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pinned_egress_interfaces(&dir), vec!["eth9".to_owned()]);
        assert!(unpin_egress(&dir, "eth9").unwrap_or(false));
        assert!(pinned_egress_interfaces(&dir).is_empty());
        let _ = fs::remove_dir_all(&dir);
    }
}
