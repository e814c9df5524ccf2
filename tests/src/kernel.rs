//! Gatekeeping for tests that need the kernel (root: CAP_BPF, CAP_NET_ADMIN). One implementation,
//! in `netns`; re-exported here for the datapath tests. Also the policy compiled as the daemon
//! compiles it on a router, for the tests that load it.

use std::net::IpAddr;

use enforcer::policy::{CompileOptions, CompiledPolicy, compile, parse_str};

pub use crate::netns::require_root;

/// `yaml` (as the one file `name`) compiled with `router_addrs` as the router's own addresses and
/// a /24 or /64 segment around each, as the daemon finds them on its interfaces.
///
/// # Panics
/// When the policy does not parse or compile: a test fixture must.
#[must_use]
pub fn compile_site(name: &str, yaml: &str, router_addrs: &[&str]) -> CompiledPolicy {
    compile_site_with_ids(name, yaml, router_addrs, None)
}

/// As [`compile_site`], keeping the ids of a policy in force (as the daemon compiles a reload).
///
/// # Panics
/// When the policy does not parse or compile: a test fixture must.
#[must_use]
pub fn compile_site_with_ids(
    name: &str,
    yaml: &str,
    router_addrs: &[&str],
    previous_ids: Option<enforcer::policy::IdTable>,
) -> CompiledPolicy {
    let policy = parse_str(name, yaml).unwrap_or_else(|e| panic!("{name} does not parse: {e:?}"));
    let router_addrs: Vec<IpAddr> = router_addrs
        .iter()
        .map(|a| a.parse().unwrap_or_else(|e| panic!("{a}: {e}")))
        .collect();
    let local_prefixes = router_addrs
        .iter()
        .map(|a| {
            ipnet::IpNet::new(*a, if a.is_ipv4() { 24 } else { 64 })
                .unwrap_or_else(|e| panic!("{e}"))
                .trunc()
        })
        .collect();
    compile(
        &policy,
        &CompileOptions {
            router_addrs,
            local_prefixes,
            previous_ids,
        },
    )
    .unwrap_or_else(|e| panic!("{name} does not compile: {e:?}"))
}
