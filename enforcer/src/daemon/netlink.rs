//! The netlink watch: what the kernel announces (as `ip monitor` prints it) about the enforced
//! interfaces: a link added, changed or deleted, an address added or removed, and, when the
//! uplinks are guessed from the default routes, a default route added or removed. Each event is
//! logged with the interface's name and wakes the daemon, which then looks at the host afresh
//! (`attach::reconcile`, then a recompile when the addresses changed): the events are the
//! trigger, never the state, so one lost to a socket overrun is caught by the next look.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use futures_util::StreamExt as _;
use rtnetlink::{
    MulticastGroup,
    packet_core::NetlinkPayload,
    packet_route::{
        AddressFamily, RouteNetlinkMessage,
        link::{LinkAttribute, LinkMessage},
    },
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::host::{self, HostError};

/// One change of the host the daemon acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
enum HostEvent {
    /// A link of a listed name appeared, or one already seen changed (flags, state).
    Link {
        iface: String,
        ifindex: u32,
        new: bool,
    },
    LinkDeleted {
        iface: String,
        ifindex: u32,
    },
    Address {
        iface: String,
        address: ipnet::IpNet,
        added: bool,
    },
    DefaultRoute {
        iface: String,
        added: bool,
    },
}

impl HostEvent {
    /// Logs the event, with the interface's name, as one record.
    fn log(&self) {
        match self {
            Self::Link {
                iface,
                ifindex,
                new: true,
            } => info!(%iface, ifindex, "netlink: link added"),
            Self::Link { iface, ifindex, .. } => debug!(%iface, ifindex, "netlink: link changed"),
            Self::LinkDeleted { iface, ifindex } => {
                info!(%iface, ifindex, "netlink: link deleted");
            }
            Self::Address {
                iface,
                address,
                added,
            } => {
                let what = if *added { "added" } else { "removed" };
                info!(%iface, %address, "netlink: address {what}");
            }
            Self::DefaultRoute { iface, added } => {
                let what = if *added { "added" } else { "removed" };
                info!(%iface, "netlink: default route {what}");
            }
        }
    }
}

/// What the watch looks for: the listed names (shared with the daemon, which changes them when a
/// reload changes `interfaces:`), the index each had when last seen (address and route messages
/// carry only the index), and whether default routes matter.
#[derive(Debug)]
struct Watched {
    names: Arc<RwLock<Vec<String>>>,
    index: BTreeMap<u32, String>,
    default_routes: bool,
}

impl Watched {
    fn is_listed(&self, name: &str) -> bool {
        self.names.read().is_ok_and(|n| n.iter().any(|i| i == name))
    }

    /// The listed name of interface `index`: as last seen, else as the listed names resolve now
    /// (a name listed by a reload since).
    fn name_of(&mut self, index: u32) -> Option<String> {
        if let Some(n) = self.index.get(&index) {
            return Some(n.clone());
        }
        let names = self.names.read().map(|n| n.clone()).unwrap_or_default();
        let name = names
            .into_iter()
            .find(|n| host::interface_index(n) == Some(index))?;
        self.index.insert(index, name.clone());
        Some(name)
    }

    /// The event `msg` is for the daemon, if it is one.
    fn event_of(&mut self, msg: &RouteNetlinkMessage) -> Option<HostEvent> {
        match msg {
            RouteNetlinkMessage::NewLink(m) => {
                let iface = self.listed_link(m)?;
                let new = self.index.insert(m.header.index, iface.clone()).is_none();
                Some(HostEvent::Link {
                    iface,
                    ifindex: m.header.index,
                    new,
                })
            }
            RouteNetlinkMessage::DelLink(m) => {
                let iface = self.listed_link(m)?;
                self.index.remove(&m.header.index);
                Some(HostEvent::LinkDeleted {
                    iface,
                    ifindex: m.header.index,
                })
            }
            RouteNetlinkMessage::NewAddress(m) | RouteNetlinkMessage::DelAddress(m) => {
                let iface = self.name_of(m.header.index)?;
                Some(HostEvent::Address {
                    iface,
                    address: host::address_net(m)?,
                    added: matches!(msg, RouteNetlinkMessage::NewAddress(_)),
                })
            }
            RouteNetlinkMessage::NewRoute(m) | RouteNetlinkMessage::DelRoute(m)
                if self.default_routes =>
            {
                let iface = host::default_route_oifs(m)
                    .into_iter()
                    .find_map(|i| self.name_of(i))?;
                Some(HostEvent::DefaultRoute {
                    iface,
                    added: matches!(msg, RouteNetlinkMessage::NewRoute(_)),
                })
            }
            _ => None,
        }
    }

    /// The name of a link message's interface when it is listed. Bridge-port messages
    /// (`AF_BRIDGE`) say nothing about the link itself and are skipped.
    fn listed_link(&self, m: &LinkMessage) -> Option<String> {
        if m.header.interface_family != AddressFamily::Unspec {
            return None;
        }
        m.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) if self.is_listed(n) => Some(n.clone()),
            _ => None,
        })
    }
}

/// The running watch; dropping it ends it.
#[derive(Debug)]
pub(super) struct Watch(tokio::task::JoinHandle<()>);

impl Drop for Watch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Subscribes to link and address changes (and default-route changes when `default_routes`),
/// then, in a task, logs each event of the interfaces in `names` and sends a tick on `tx` (a full channel already
/// holds a pending look at the host).
pub(super) fn spawn(
    names: Arc<RwLock<Vec<String>>>,
    default_routes: bool,
    tx: mpsc::Sender<()>,
) -> Result<Watch, HostError> {
    let mut groups = vec![
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
    ];
    if default_routes {
        groups.extend([MulticastGroup::Ipv4Route, MulticastGroup::Ipv6Route]);
    }
    let (connection, _handle, mut messages) =
        rtnetlink::new_multicast_connection(&groups).map_err(HostError::Socket)?;
    let mut watched = Watched {
        names,
        index: BTreeMap::new(),
        default_routes,
    };
    Ok(Watch(tokio::spawn(async move {
        let conn = tokio::spawn(connection);
        while let Some((msg, _)) = messages.next().await {
            let event = match msg.payload {
                NetlinkPayload::InnerMessage(m) => watched.event_of(&m),
                // Lost messages: look at the host anyway.
                NetlinkPayload::Overrun(_) => {
                    warn!("netlink: messages lost (overrun); looking at the interfaces afresh");
                    let _pending = tx.try_send(());
                    None
                }
                _ => None,
            };
            if let Some(e) = event {
                e.log();
                let _pending = tx.try_send(());
            }
        }
        conn.abort();
        warn!(
            "netlink watch ended; interface and address changes are picked up by the periodic check and at each reload"
        );
    })))
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_route::{
        address::{AddressAttribute, AddressMessage},
        link::LinkMessage,
    };

    use super::*;

    fn link(name: &str, index: u32, family: AddressFamily) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.interface_family = family;
        m.attributes = vec![LinkAttribute::IfName(name.to_owned())];
        m
    }

    /// `RTM_NEWLINK` (or, with `deleted`, `RTM_DELLINK`) of `lan0`, index 7.
    fn lan0(deleted: bool) -> RouteNetlinkMessage {
        let m = link("lan0", 7, AddressFamily::Unspec);
        if deleted {
            RouteNetlinkMessage::DelLink(m)
        } else {
            RouteNetlinkMessage::NewLink(m)
        }
    }

    fn watched() -> Watched {
        Watched {
            names: Arc::new(RwLock::new(vec!["lan0".to_owned()])),
            index: BTreeMap::new(),
            default_routes: false,
        }
    }

    #[test]
    fn a_listed_link_added_then_deleted_names_the_interface_and_its_index() {
        let mut w = watched();
        let added = w.event_of(&lan0(false));
        assert_eq!(
            added,
            Some(HostEvent::Link {
                iface: "lan0".into(),
                ifindex: 7,
                new: true
            })
        );
        let again = w.event_of(&lan0(false));
        assert!(
            matches!(again, Some(HostEvent::Link { new: false, .. })),
            "{again:?}"
        );
        let deleted = w.event_of(&lan0(true));
        assert_eq!(
            deleted,
            Some(HostEvent::LinkDeleted {
                iface: "lan0".into(),
                ifindex: 7
            })
        );
    }

    #[test]
    fn unlisted_links_and_bridge_port_messages_are_no_event() {
        let mut w = watched();
        for m in [
            RouteNetlinkMessage::NewLink(link("veth9", 9, AddressFamily::Unspec)),
            RouteNetlinkMessage::DelLink(link("lan0", 7, AddressFamily::Bridge)),
        ] {
            assert_eq!(w.event_of(&m), None, "{m:?}");
        }
    }

    #[test]
    fn an_address_on_a_listed_interface_is_an_event_by_its_index() {
        let mut w = watched();
        let _ = w.event_of(&lan0(false));
        let mut a = AddressMessage::default();
        a.header.index = 7;
        a.header.prefix_len = 24;
        let ip: std::net::IpAddr = "10.0.0.1".parse().expect("literal");
        a.attributes = vec![AddressAttribute::Address(ip)];
        assert_eq!(
            w.event_of(&RouteNetlinkMessage::NewAddress(a.clone())),
            Some(HostEvent::Address {
                iface: "lan0".into(),
                address: "10.0.0.1/24".parse().expect("literal"),
                added: true
            })
        );
        a.header.index = 8;
        assert_eq!(
            w.event_of(&RouteNetlinkMessage::DelAddress(a)),
            None,
            "another interface's address"
        );
    }
}
