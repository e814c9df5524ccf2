//! What the daemon needs from the host: root, a bpffs mount, and the enforced interfaces'
//! addresses and uplinks, read over rtnetlink (the kernel's own view, as `ip addr` and `ip route`
//! print it).

use std::{net::IpAddr, path::Path};

use futures_util::TryStreamExt as _;
use rtnetlink::packet_route::{
    address::{AddressAttribute, AddressMessage},
    route::{RouteAttribute, RouteHeader, RouteMessage, RouteType},
};

/// Why the host could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("open a netlink socket")]
    Socket(#[source] std::io::Error),
    #[error("netlink: {what}")]
    Netlink {
        what: &'static str,
        #[source]
        source: rtnetlink::Error,
    },
}

/// The host's network state that shapes the compiled policy. The daemon records the one its
/// running policy was compiled with (`host.json` in the state directory), so `enforcer plan`
/// compiles a candidate exactly as the daemon would.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostContext {
    /// Every address of the enforced interfaces, with its prefix and interface, sorted: the
    /// addresses are the policy's `router`, the prefixes the segments the enforcer guards.
    pub addresses: Vec<(String, ipnet::IpNet)>,
    /// The uplinks among the enforced interfaces: those the policy's `interfaces:` says are, or
    /// (for `--iface`) those that carry a default route (IPv4 or IPv6). What arrives there from
    /// their segment is routed traffic (the ISP's router, the internet), not devices of a guarded
    /// segment.
    pub uplinks: Vec<String>,
}

impl HostContext {
    /// Reads the addresses of `ifaces` in this network namespace, and their uplinks as `uplinks`
    /// says (declared, or guessed from the default routes).
    pub async fn read(ifaces: &[String], uplinks: &super::Uplinks) -> Result<Self, HostError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(HostError::Socket)?;
        let conn = tokio::spawn(connection);
        let result = Self::query(&handle, ifaces).await;
        conn.abort();
        let mut host = result?;
        if let super::Uplinks::Declared(declared) = uplinks {
            host.uplinks.clone_from(declared);
            host.uplinks.sort();
        }
        Ok(host)
    }

    async fn query(handle: &rtnetlink::Handle, ifaces: &[String]) -> Result<Self, HostError> {
        let mut names = std::collections::BTreeMap::new();
        for iface in ifaces {
            if let Some(index) = interface_index(iface) {
                names.insert(index, iface.clone());
            }
        }
        let mut addresses = Vec::new();
        let mut stream = handle.address().get().execute();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(|source| HostError::Netlink {
                what: "list addresses",
                source,
            })?
        {
            if let (Some(name), Some(net)) = (names.get(&msg.header.index), address_net(&msg)) {
                addresses.push((name.clone(), net));
            }
        }
        addresses.sort();
        addresses.dedup();

        let mut uplinks = Vec::new();
        for request in [
            rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            rtnetlink::RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ] {
            let mut stream = handle.route().get(request).execute();
            while let Some(msg) = stream
                .try_next()
                .await
                .map_err(|source| HostError::Netlink {
                    what: "list routes",
                    source,
                })?
            {
                uplinks.extend(
                    default_route_oifs(&msg)
                        .into_iter()
                        .filter_map(|i| names.get(&i).cloned()),
                );
            }
        }
        uplinks.sort();
        uplinks.dedup();
        Ok(Self { addresses, uplinks })
    }

    /// The options to compile a policy with for this host, keeping `previous_ids` stable.
    #[must_use]
    pub fn compile_options(
        &self,
        previous_ids: Option<crate::policy::IdTable>,
    ) -> crate::policy::CompileOptions {
        crate::policy::CompileOptions {
            router_addrs: self.router_addrs(),
            local_prefixes: self.local_prefixes(),
            previous_ids,
        }
    }

    /// The addresses (`IFACE ADDRESS/PREFIX`) in `self` and not in `old`, and those in `old` and
    /// not in `self`.
    #[must_use]
    pub fn address_changes(&self, old: &Self) -> (Vec<String>, Vec<String>) {
        let only = |a: &Self, b: &Self| -> Vec<String> {
            a.addresses
                .iter()
                .filter(|x| !b.addresses.contains(x))
                .map(|(i, n)| format!("{i} {n}"))
                .collect()
        };
        (only(self, old), only(old, self))
    }

    /// The router's own addresses.
    #[must_use]
    pub fn router_addrs(&self) -> Vec<IpAddr> {
        self.addresses.iter().map(|(_, n)| n.addr()).collect()
    }

    /// The subnets of the enforced interfaces that are not uplinks: behind an uplink is routed
    /// traffic, not devices.
    #[must_use]
    pub fn local_prefixes(&self) -> Vec<ipnet::IpNet> {
        self.addresses
            .iter()
            .filter(|(i, _)| !self.uplinks.contains(i))
            .map(|(_, n)| n.trunc())
            .collect()
    }
}

/// An address message's address and prefix; `None` for IPv6 link-local (judged as `router` by
/// scope already). For IPv4 the local address is the interface's own (`IFA_ADDRESS` is the peer on
/// a point-to-point link), as `getifaddrs` reports it.
pub(super) fn address_net(msg: &AddressMessage) -> Option<ipnet::IpNet> {
    let local = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let addr = local.or_else(|| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })?;
    if let IpAddr::V6(v6) = addr
        && v6.is_unicast_link_local()
    {
        return None;
    }
    ipnet::IpNet::new(addr, msg.header.prefix_len).ok()
}

/// The output interfaces of a usable default route in the main table (none for other routes, and
/// for unreachable, prohibit and blackhole defaults).
pub(super) fn default_route_oifs(msg: &RouteMessage) -> Vec<u32> {
    if msg.header.destination_prefix_length != 0 || msg.header.kind != RouteType::Unicast {
        return Vec::new();
    }
    let table = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table));
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return Vec::new();
    }
    msg.attributes
        .iter()
        .flat_map(|a| match a {
            RouteAttribute::Oif(i) => vec![*i],
            RouteAttribute::MultiPath(hops) => hops.iter().map(|h| h.interface_index).collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// Whether this process runs as root (CAP_BPF and CAP_NET_ADMIN are needed; root has both).
#[must_use]
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Mounts bpffs at `/sys/fs/bpf` when `pin_dir` lies under it and nothing is mounted there yet.
pub fn ensure_bpffs(pin_dir: &Path) -> std::io::Result<()> {
    let root = Path::new("/sys/fs/bpf");
    if !pin_dir.starts_with(root) || crate::datapath::is_bpffs(root) {
        return Ok(());
    }
    std::fs::create_dir_all(root)?;
    nix::mount::mount(
        Some("bpf"),
        root,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(std::io::Error::from)
}

/// The index of an interface; `None` when there is none of that name.
#[must_use]
pub fn interface_index(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

/// Whether an interface exists.
#[must_use]
pub fn interface_exists(name: &str) -> bool {
    interface_index(name).is_some()
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_route::{AddressFamily, route::RouteNextHop};

    use super::*;

    fn route(prefix: u8, kind: RouteType, attrs: Vec<RouteAttribute>) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.destination_prefix_length = prefix;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.kind = kind;
        m.attributes = attrs;
        m
    }

    #[test]
    fn a_unicast_default_route_names_its_output_interface() {
        let m = route(0, RouteType::Unicast, vec![RouteAttribute::Oif(7)]);
        assert_eq!(default_route_oifs(&m), vec![7]);
    }

    #[test]
    fn a_multipath_default_route_names_every_next_hop() {
        let hop = |i| {
            let mut h = RouteNextHop::default();
            h.interface_index = i;
            h
        };
        let m = route(
            0,
            RouteType::Unicast,
            vec![RouteAttribute::MultiPath(vec![hop(3), hop(4)])],
        );
        assert_eq!(default_route_oifs(&m), vec![3, 4]);
    }

    #[test]
    fn unreachable_other_table_and_prefix_routes_are_no_uplink() {
        let unreachable = route(0, RouteType::Unreachable, vec![RouteAttribute::Oif(1)]);
        let subnet = route(24, RouteType::Unicast, vec![RouteAttribute::Oif(1)]);
        let other_table = route(
            0,
            RouteType::Unicast,
            vec![RouteAttribute::Oif(1), RouteAttribute::Table(100)],
        );
        for m in [unreachable, subnet, other_table] {
            assert!(default_route_oifs(&m).is_empty(), "{m:?}");
        }
    }

    #[test]
    fn ipv4_addresses_use_the_local_address_and_link_local_v6_is_skipped() {
        let mut v4 = AddressMessage::default();
        v4.header.prefix_len = 24;
        v4.attributes = vec![
            AddressAttribute::Address("10.0.0.9".parse().expect("literal")),
            AddressAttribute::Local("10.0.0.1".parse().expect("literal")),
        ];
        assert_eq!(
            address_net(&v4),
            Some("10.0.0.1/24".parse().expect("literal"))
        );
        let mut ll = AddressMessage::default();
        ll.header.prefix_len = 64;
        ll.attributes = vec![AddressAttribute::Address(
            "fe80::1".parse().expect("literal"),
        )];
        assert_eq!(address_net(&ll), None);
    }
}
