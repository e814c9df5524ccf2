//! The namespace harness itself, without the enforcer: a two-device site forwards ping, TCP and
//! UDP (v4 and v6) through the router namespace, `in_netns` really enters a namespace, and
//! everything is gone after the site is dropped.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly, with what it expected as the message"
)]

use std::{
    net::{Ipv6Addr, TcpListener},
    path::Path,
    time::Duration,
};

use enforcer_tests::netns::{
    OFFICE_PC, PRINTER, Site, in_netns, listen_tcp, listen_udp_echo, ping, require_root,
    tcp_connects, udp_echo,
};
// The crate's other dependencies, unused here (unused_crate_dependencies is per target).
use {anyhow as _, aya as _, enforcer as _, enforcer_common as _, libc as _};

const T: Duration = Duration::from_secs(2);

#[test]
fn two_device_site_forwards_ping_tcp_and_udp_and_cleans_up() {
    if !require_root("netns_smoke") {
        return;
    }
    let prefix = format!("smk{}", std::process::id());
    let router_ns;
    {
        let site = Site::build(&prefix, &[OFFICE_PC, PRINTER])
            .unwrap_or_else(|e| panic!("build the two-device site: {e:#}"));
        router_ns = site.router_ns().to_owned();
        let (pc, prn) = (site.ns("pc1"), site.ns("prn1"));
        assert_eq!(site.router_ifaces(), ["r-pc1", "r-prn1"]);

        let _tcp = listen_tcp(prn, 9100).unwrap_or_else(|e| panic!("printer listener: {e:#}"));
        let _udp = listen_udp_echo(prn, 5353).unwrap_or_else(|e| panic!("printer udp echo: {e:#}"));
        // A socket opened in-process inside the printer's namespace (kept open until the end).
        let _own = in_netns(prn, || TcpListener::bind((Ipv6Addr::UNSPECIFIED, 7000)))
            .unwrap_or_else(|e| panic!("enter {prn}: {e:#}"))
            .unwrap_or_else(|e| panic!("bind [::]:7000 in {prn}: {e}"));
        for v6 in [false, true] {
            let dst = PRINTER.addr(v6);
            let through = format!("office pc -> printer {dst} through {router_ns}");
            assert!(ping(pc, dst), "{through}: ping");
            assert!(
                tcp_connects(pc, dst, 9100, T),
                "{through}: tcp/9100 (socat)"
            );
            assert!(udp_echo(pc, dst, 5353, T), "{through}: udp echo on 5353");
            assert!(
                tcp_connects(pc, dst, 7000, T),
                "{through}: tcp/7000 (in_netns listener)"
            );
            assert!(
                !tcp_connects(pc, dst, 9101, T),
                "{through}: tcp/9101 connected, yet nothing listens"
            );
            assert!(ping(prn, OFFICE_PC.addr(v6)), "printer -> office pc: ping");
        }
    }
    for ns in [router_ns, format!("{prefix}-pc1"), format!("{prefix}-prn1")] {
        assert!(
            !Path::new("/var/run/netns").join(&ns).exists(),
            "namespace {ns} survived the site"
        );
    }
}
