//! The namespace harness itself, without the enforcer: a two-device site forwards ping, TCP and
//! UDP (v4 and v6) through the router namespace, and everything is gone after the site is dropped.

use std::{path::Path, time::Duration};

use enforcer_tests::netns::{
    OFFICE_PC, PRINTER, Site, listen_tcp, listen_udp_echo, ping, require_root, tcp_connects,
    udp_echo,
};
// The crate's other dependencies, unused here (unused_crate_dependencies is per target).
use {anyhow as _, aya as _, enforcer as _, enforcer_common as _};

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
        for v6 in [false, true] {
            let dst = PRINTER.addr(v6);
            assert!(
                ping(pc, dst),
                "office pc -> printer ping {dst} through {router_ns}"
            );
            assert!(
                tcp_connects(pc, dst, 9100, T),
                "office pc -> printer tcp {dst}:9100"
            );
            assert!(
                udp_echo(pc, dst, 5353, T),
                "office pc -> printer udp echo {dst}:5353"
            );
            assert!(
                !tcp_connects(pc, dst, 9101, T),
                "nothing listens on {dst}:9101, yet it connected"
            );
            assert!(ping(prn, OFFICE_PC.addr(v6)), "printer -> office pc ping");
        }
    }
    for ns in [router_ns, format!("{prefix}-pc1"), format!("{prefix}-prn1")] {
        assert!(
            !Path::new("/var/run/netns").join(&ns).exists(),
            "namespace {ns} survived the site"
        );
    }
}
