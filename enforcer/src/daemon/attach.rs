//! Attaching the enforced interfaces: at start, and again as they come and go while the daemon
//! runs. An interface the policy lists may be absent (a VLAN or a USB adapter not there yet): it is
//! attached when it appears. One deleted and re-created is a new device under the same name: the
//! kernel detached its links with the old device, so their pins are dropped and it is attached
//! anew.
//!
//! [`reconcile`] is level-triggered: it compares the index each listed name has now with the one it
//! was attached to, so a lost, late or repeated netlink event cannot leave an interface wrong.

use std::{collections::BTreeMap, sync::Arc};

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::{
    Config, DaemonError, Inner, Reloader, Uplinks, error_chain, host, metrics, netlink, state,
};
use crate::datapath::{self, AttachMode, Datapath};

/// An interface as attached: the index it had then (a re-created one has another) and its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Attached {
    ifindex: u32,
    mode: AttachMode,
}

/// The enforced interfaces: those attached, by name, and those listed but absent.
#[derive(Clone, Debug, Default)]
pub(crate) struct Enforced {
    attached: BTreeMap<String, Attached>,
    absent: Vec<String>,
}

impl Enforced {
    /// The attached interfaces, as the status record lists them.
    pub(crate) fn interfaces(&self) -> Vec<state::Interface> {
        self.attached
            .iter()
            .map(|(name, a)| state::Interface {
                name: name.clone(),
                mode: a.mode.as_str().to_owned(),
            })
            .collect()
    }

    /// The listed interfaces that do not exist now: attached when they appear.
    pub(crate) fn absent(&self) -> Vec<String> {
        self.absent.clone()
    }
}

/// The XDP mode the daemon asks for first.
const fn wanted_mode(cfg: &Config) -> AttachMode {
    if cfg.generic {
        AttachMode::Generic
    } else {
        AttachMode::Native
    }
}

/// Attaches (or switches the pinned link of) `iface`, which has index `ifindex`: XDP, native where
/// the driver has it and generic otherwise, and the egress program.
fn attach_one(
    cfg: &Config,
    dp: &mut Datapath,
    iface: &str,
    ifindex: u32,
    metrics: &metrics::Metrics,
) -> Result<Attached, DaemonError> {
    let wanted = wanted_mode(cfg);
    let mode = match dp.attach(iface, wanted) {
        Ok(m) => m,
        Err(e) if wanted == AttachMode::Native => {
            warn!(%iface, error = %error_chain(&e), "native XDP unavailable; attaching in generic mode");
            dp.attach(iface, AttachMode::Generic)?
        }
        Err(e) => return Err(e.into()),
    };
    let egress = dp.attach_egress(iface)?;
    info!(%iface, ifindex, mode = mode.as_str(), egress = egress.as_str(), "enforcing");
    metrics
        .interfaces
        .with_label_values(&[iface, mode.as_str()])
        .set(1);
    Ok(Attached { ifindex, mode })
}

/// Attaches every listed interface that exists (at start, and when the flow table is re-created
/// and every link moves to the new program); an attach that fails is an error. A listed interface
/// that does not exist is absent: its stale pins, if an earlier daemon left any, are dropped.
pub(super) fn attach_present(
    cfg: &Config,
    dp: &mut Datapath,
    metrics: &metrics::Metrics,
) -> Result<Enforced, DaemonError> {
    let mut out = Enforced::default();
    for iface in &cfg.ifaces {
        match host::interface_index(iface) {
            Some(ifindex) => {
                let a = attach_one(cfg, dp, iface, ifindex, metrics)?;
                out.attached.insert(iface.clone(), a);
            }
            None => {
                warn!(%iface, "listed interface absent; it is attached when it appears");
                drop_pins(cfg, iface);
                out.absent.push(iface.clone());
            }
        }
    }
    Ok(out)
}

/// Unpins the links of an interface that is gone (they died with it), logging a failure.
fn drop_pins(cfg: &Config, iface: &str) {
    match datapath::unpin_interface(&cfg.pin_dir, iface) {
        Ok(true) => info!(%iface, "dropped the pinned links of the interface that is gone"),
        Ok(false) => {}
        Err(e) => {
            error!(%iface, error = %error_chain(&e), "cannot drop the pinned links of an interface that is gone");
        }
    }
}

/// What became of a listed interface since it was last looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// Absent before, present now.
    Appeared(u32),
    /// Attached to one device, and the name is another device now.
    Recreated { old: u32, new: u32 },
    /// Attached before, absent now.
    Gone(u32),
}

/// The change from the index an interface was attached to (`None`: absent) to the one its name
/// has now.
fn change(attached: Option<u32>, now: Option<u32>) -> Option<Change> {
    match (attached, now) {
        (None, Some(new)) => Some(Change::Appeared(new)),
        (Some(old), Some(new)) if old != new => Some(Change::Recreated { old, new }),
        (Some(old), None) => Some(Change::Gone(old)),
        _ => None,
    }
}

/// Brings the attachments in line with the interfaces there are now: attaches a listed interface
/// that appeared or was re-created, and drops the pins of one that is gone. Returns whether
/// anything changed (then the caller records the new state).
pub(super) fn reconcile(cfg: &Config, inner: &mut Inner, metrics: &metrics::Metrics) -> bool {
    let mut changed = false;
    for iface in &cfg.ifaces {
        let was = inner.enforced.attached.get(iface).copied();
        let Some(c) = change(was.map(|a| a.ifindex), host::interface_index(iface)) else {
            continue;
        };
        changed = true;
        if let Some(a) = was {
            let _absent = metrics
                .interfaces
                .remove_label_values(&[iface, a.mode.as_str()]);
        }
        inner.enforced.attached.remove(iface);
        inner.enforced.absent.retain(|i| i != iface);
        let new = match c {
            Change::Gone(old) => {
                warn!(%iface, ifindex = old, "enforced interface deleted; it is attached again when it appears");
                drop_pins(cfg, iface);
                None
            }
            Change::Recreated { old, new } => {
                info!(%iface, old_ifindex = old, ifindex = new, "enforced interface re-created; attaching it again");
                drop_pins(cfg, iface);
                Some(new)
            }
            Change::Appeared(new) => {
                info!(%iface, ifindex = new, "listed interface appeared; attaching it");
                Some(new)
            }
        };
        let attached = new.and_then(|ifindex| {
            attach_one(cfg, &mut inner.dp, iface, ifindex, metrics)
                .inspect_err(|e| error!(%iface, ifindex, error = %error_chain(e), "cannot attach to the interface; trying again at its next change or the next reload"))
                .ok()
        });
        match attached {
            Some(a) => {
                inner.enforced.attached.insert(iface.clone(), a);
            }
            None => inner.enforced.absent.push(iface.clone()),
        }
    }
    inner.enforced.absent.sort();
    changed
}

/// How often the daemon looks at the host without being told: a safety net for a netlink event
/// lost to a socket overrun, or a watch that could not start.
pub(super) const HOST_RESYNC: std::time::Duration = std::time::Duration::from_secs(60);

impl Reloader {
    /// Starts the netlink watch of the enforced interfaces, ticking `tx`; without one (logged),
    /// changes are picked up by the periodic look and at each reload.
    pub(super) fn watch_host(&self, tx: mpsc::Sender<()>) -> Option<netlink::Watch> {
        let guessed = self.cfg.uplinks == Uplinks::Guessed;
        netlink::spawn(&self.cfg.ifaces, guessed, tx)
            .inspect_err(|e| warn!(error = %error_chain(e), "cannot watch the interfaces over netlink; changes are picked up every {}s and at each reload", HOST_RESYNC.as_secs()))
            .ok()
    }

    /// Attaches interfaces that appeared or were re-created and lets go of those gone, recording
    /// the change.
    pub(super) async fn reconcile(&self) {
        let (cfg, shared, metrics) = (
            self.cfg.clone(),
            Arc::clone(&self.shared),
            Arc::clone(&self.metrics),
        );
        let done = tokio::task::spawn_blocking(move || {
            let Ok(mut inner) = shared.lock() else {
                error!("daemon state poisoned; interfaces not reconciled");
                return;
            };
            if reconcile(&cfg, &mut inner, &metrics) {
                super::record(&cfg, &inner);
            }
        })
        .await;
        if let Err(e) = done {
            error!(error = %e, "interface task failed");
        }
    }

    /// After a netlink event (or the periodic look): attaches what came, then, when the enforced
    /// interfaces' addresses or uplinks differ from those the running policy was compiled with,
    /// recompiles and applies it as a reload does.
    pub(super) async fn host_changed(&self) {
        self.reconcile().await;
        let now = match host::HostContext::read(&self.cfg.ifaces, &self.cfg.uplinks).await {
            Ok(h) => h,
            Err(e) => {
                warn!(error = %error_chain(&e), "cannot read the enforced interfaces' addresses; the running policy stays");
                return;
            }
        };
        let Some(running) = self.shared.lock().ok().map(|i| i.host.clone()) else {
            return;
        };
        if now == running {
            return;
        }
        let (added, removed) = now.address_changes(&running);
        info!(
            ?added,
            ?removed,
            uplinks = ?now.uplinks,
            "the enforced interfaces' addresses changed: recompiling the policy"
        );
        self.apply(Ok(now)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_change_is_a_recreated_interface_and_none_is_gone_or_absent() {
        assert_eq!(change(None, Some(7)), Some(Change::Appeared(7)));
        assert_eq!(
            change(Some(7), Some(9)),
            Some(Change::Recreated { old: 7, new: 9 })
        );
        assert_eq!(change(Some(7), None), Some(Change::Gone(7)));
        assert_eq!(change(Some(7), Some(7)), None, "same device: nothing to do");
        assert_eq!(change(None, None), None, "still absent");
    }
}
