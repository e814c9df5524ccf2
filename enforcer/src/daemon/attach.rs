//! Attaching the enforced interfaces: at start, and again as they come and go while the daemon
//! runs. An interface the policy lists may be absent (a VLAN or a USB adapter not there yet): it is
//! attached when it appears. One deleted and re-created is a new device under the same name: the
//! kernel detached its links with the old device, so their pins are dropped and it is attached
//! anew.
//!
//! A reload whose `interfaces:` lists other interfaces changes the set: new ones are attached,
//! those no longer listed detached (see `interfaces::follow`).
//!
//! [`reconcile`] is level-triggered: it compares the index each listed name has now with the one it
//! was attached to, so a lost, late or repeated netlink event cannot leave an interface wrong.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::{
    Config, DaemonError, Inner, Uplinks, error_chain, host, metrics, netlink, reloader::Reloader,
    state,
};
use crate::datapath::{self, AttachMode, Datapath};

/// An interface as attached: the index it had then (a re-created one has another) and its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Attached {
    ifindex: u32,
    mode: AttachMode,
}

/// The enforced interfaces: those to enforce on, those attached, by name, and those listed but
/// absent.
#[derive(Debug)]
pub(crate) struct Enforced {
    /// The interfaces to enforce on: from the start's configuration, then from the policy's
    /// `interfaces:` as reloads change it.
    listed: Vec<String>,
    uplinks: Uplinks,
    /// `listed`, shared with the netlink watch, which picks its events by name.
    watched: Arc<RwLock<Vec<String>>>,
    attached: BTreeMap<String, Attached>,
    absent: Vec<String>,
}

impl Enforced {
    /// The interfaces `cfg` resolved at start, none attached yet.
    pub(super) fn new(cfg: &Config) -> Self {
        Self {
            listed: cfg.ifaces.clone(),
            uplinks: cfg.uplinks.clone(),
            watched: Arc::new(RwLock::new(cfg.ifaces.clone())),
            attached: BTreeMap::new(),
            absent: Vec::new(),
        }
    }

    /// The interfaces to enforce on, and how their uplinks are known.
    pub(super) fn listed(&self) -> (Vec<String>, Uplinks) {
        (self.listed.clone(), self.uplinks.clone())
    }

    /// Whether `policy`'s interfaces and roles are the ones enforced.
    pub(super) fn is_listed(&self, ifaces: &[String], uplinks: &Uplinks) -> bool {
        self.listed == ifaces && self.uplinks == *uplinks
    }

    /// Enforces on `ifaces` from now on (then [`reconcile`] attaches and detaches).
    pub(super) fn relist(&mut self, ifaces: Vec<String>, uplinks: Uplinks) {
        if let Ok(mut w) = self.watched.write() {
            w.clone_from(&ifaces);
        }
        self.listed = ifaces;
        self.uplinks = uplinks;
    }

    /// Attaches every listed interface that exists (at start, and when the flow table is
    /// re-created and every link moves to the new program); an attach that fails is an error,
    /// and then nothing here changes. A listed interface that does not exist is absent: its stale
    /// pins, if an earlier daemon left any, are dropped.
    pub(super) fn attach_present(
        &mut self,
        cfg: &Config,
        dp: &mut Datapath,
        metrics: &metrics::Metrics,
    ) -> Result<(), DaemonError> {
        let mut attached = BTreeMap::new();
        let mut absent = Vec::new();
        for iface in &self.listed {
            match host::interface_index(iface) {
                Some(ifindex) => {
                    let a = attach_one(cfg, dp, iface, ifindex, metrics)?;
                    attached.insert(iface.clone(), a);
                }
                None => {
                    warn!(%iface, "listed interface absent; it is attached when it appears");
                    drop_pins(cfg, iface);
                    absent.push(iface.clone());
                }
            }
        }
        self.attached = attached;
        self.absent = absent;
        Ok(())
    }

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

/// Unpins the links of an interface that is gone (they died with it) or no longer listed.
fn drop_pins(cfg: &Config, iface: &str) {
    match datapath::unpin_interface(&cfg.pin_dir, iface) {
        Ok(true) => info!(%iface, "unpinned the interface's links"),
        Ok(false) => {}
        Err(e) => {
            error!(%iface, error = %error_chain(&e), "cannot unpin the interface's links");
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
    /// Attached, and no longer listed.
    Unlisted,
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
    let unlisted: Vec<String> = inner
        .enforced
        .attached
        .keys()
        .chain(&inner.enforced.absent)
        .filter(|i| !inner.enforced.listed.contains(i))
        .cloned()
        .collect();
    for iface in inner.enforced.listed.clone().iter().chain(&unlisted) {
        let was = inner.enforced.attached.get(iface).copied();
        let c = if unlisted.contains(iface) {
            Change::Unlisted
        } else {
            let Some(c) = change(was.map(|a| a.ifindex), host::interface_index(iface)) else {
                continue;
            };
            c
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
            Change::Unlisted => {
                if was.is_some() {
                    info!(%iface, "interface no longer listed in `interfaces:`; detaching it");
                    drop_pins(cfg, iface);
                }
                continue;
            }
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
        let names = self.shared.lock().ok()?.enforced.watched.clone();
        netlink::spawn(names, guessed, tx)
            .inspect_err(|e| warn!(error = %error_chain(e), "cannot watch the interfaces over netlink; changes are picked up every {}s and at each reload", HOST_RESYNC.as_secs()))
            .ok()
    }

    /// Attaches interfaces that appeared or were re-created and lets go of those gone, recording
    /// the change.
    pub(super) async fn reconcile(&self) {
        let _done = self
            .off_thread("interface", |cfg, shared, metrics, _| {
                let Ok(mut inner) = shared.lock() else {
                    error!("daemon state poisoned; interfaces not reconciled");
                    return;
                };
                if reconcile(cfg, &mut inner, metrics) {
                    super::record(cfg, &inner);
                }
            })
            .await;
    }

    /// The host as it is now, for the interfaces enforced now.
    pub(super) async fn read_host(&self) -> Result<host::HostContext, host::HostError> {
        let listed = self.shared.lock().ok().map(|i| i.enforced.listed());
        let (ifaces, uplinks) =
            listed.unwrap_or_else(|| (self.cfg.ifaces.clone(), self.cfg.uplinks.clone()));
        host::HostContext::read(&ifaces, &uplinks).await
    }

    /// After a netlink event (or the periodic look): attaches what came, then, when the enforced
    /// interfaces' addresses or uplinks differ from those the running policy was compiled with,
    /// recompiles and applies it as a reload does.
    pub(super) async fn host_changed(&self) {
        self.reconcile().await;
        let now = match self.read_host().await {
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
        self.recompile(Ok(now)).await;
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
