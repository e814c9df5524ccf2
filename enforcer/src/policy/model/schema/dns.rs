//! `dns:`: the router as the resolver of record (`policy::names`).

use super::{Cx, DNS_KEYS, TTL_KEYS, get};
use crate::policy::{
    model::scalars::{Problem, parse_duration},
    names::{
        DEFAULT_GRACE_S, DEFAULT_TTL_MAX_S, DEFAULT_TTL_MIN_S, DnsSettings, Listen, parse_server,
    },
    yaml::Node,
};

fn server(s: &str) -> Result<std::net::SocketAddr, Problem> {
    parse_server(s).map_err(|message| Problem {
        message,
        hint: "write an IP address, optionally with a port: `192.0.2.53`, `192.0.2.53:5353`, `[2001:db8::53]:53`".to_owned(),
    })
}

/// `0s` is a valid TTL floor, which `parse_duration` (positive durations) refuses.
fn ttl(s: &str) -> Result<u32, Problem> {
    if s == "0" || s == "0s" {
        return Ok(0);
    }
    parse_duration(s)
}

impl Cx<'_> {
    /// The `dns:` section.
    pub(super) fn dns(&mut self, key: Node<'_>, node: Node<'_>) -> Option<DnsSettings> {
        let f = self.fields(node, "dns", DNS_KEYS)?;
        let upstream_node = self.require(&f, "upstream", &key.loc(), "dns")?;
        let upstream: Vec<_> = self
            .list(upstream_node, "a list of addresses")
            .into_iter()
            .filter_map(|n| self.parsed(n, server).map(|a| a.value))
            .collect();
        if upstream.is_empty() {
            self.err(
                &upstream_node.loc(),
                "dns.upstream lists no server",
                "name at least one resolver the router forwards to",
            );
            return None;
        }
        let listen = match get(&f, "listen") {
            None => Listen::Router,
            Some(n) if n.scalar() == Some("router") => Listen::Router,
            Some(n) => Listen::Addrs(
                self.list(n, "`router` or a list of addresses")
                    .into_iter()
                    .filter_map(|n| self.parsed(n, server).map(|a| a.value))
                    .collect(),
            ),
        };
        let (mut ttl_min_s, mut ttl_max_s) = (DEFAULT_TTL_MIN_S, DEFAULT_TTL_MAX_S);
        if let Some(t) = get(&f, "ttl")
            && let Some(tf) = self.fields(t, "dns.ttl", TTL_KEYS)
        {
            if let Some(n) = get(&tf, "min") {
                ttl_min_s = self.parsed(n, ttl)?.value;
            }
            if let Some(n) = get(&tf, "max") {
                ttl_max_s = self.parsed(n, parse_duration)?.value;
            }
            if ttl_min_s > ttl_max_s {
                self.err(
                    &t.loc(),
                    format!("dns.ttl.min ({ttl_min_s}s) is more than dns.ttl.max ({ttl_max_s}s)"),
                    "the floor must not exceed the ceiling",
                );
                return None;
            }
        }
        let grace_s = match get(&f, "grace") {
            Some(n) => self.parsed(n, ttl)?.value,
            None => DEFAULT_GRACE_S,
        };
        Some(DnsSettings {
            upstream,
            listen,
            ttl_min_s,
            ttl_max_s,
            grace_s,
            loc: key.loc(),
        })
    }
}
