//! `BPF_PROG_TEST_RUN` tests of the egress program (issue 11): the router's own packets judged on
//! the way out with `router` as the source, remembered so their replies pass the XDP program at
//! ingress; forwarded packets untouched; the router's link traffic always passed.
//!
//! A frame with `ingress_ifindex` 0 is one the router sends; any other value, one it forwards.
//! Each case loads its own unpinned `Datapath` (both programs, shared maps). Needs root; run with
//! `--test-threads=1` under the kernel-test lock, like the datapath tests.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly, with what it expected as the message"
)]

use std::net::IpAddr;

use anyhow as _;
use aya as _;
use enforcer::{
    datapath::{self, Datapath},
    policy::CompiledPolicy,
};
use enforcer_common::{EGRESS_PROGRAM, ROUTER_DEVICE, stats::Counter};
use enforcer_tests::{
    frame::{Frame, mac},
    kernel::{compile_site, require_root},
};
use libc as _;
use serde_json as _;

/// TC verdicts as the program returns them.
const PASS: i32 = -1;
const DROP: i32 = 2;
/// XDP verdicts at ingress.
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
/// Any non-zero ingress interface: a forwarded packet.
const FORWARDED: u32 = 3;
const OWN: u32 = 0;

const OFFICE_MAC: &str = "02:00:00:00:03:10";
const UPSTREAM_MAC: &str = "02:00:00:00:0f:01";
/// The MAC of the router's own interface (its frames carry it as source).
const ROUTER_MAC: &str = "02:00:00:00:00:01";
const OFFICE: &str = "10.1.3.10";
const OFFICE_6: &str = "fd00:1:3::10";
const ROUTER_OFFICE: &str = "10.1.3.1";
const ROUTER_WAN: &str = "192.0.2.1";
const ROUTER_WAN_6: &str = "2001:db8::1";
const WEB: &str = "93.184.216.34";
const WEB_6: &str = "2606:2800:220:1::1";
const ROUTER_ADDRS: &[&str] = &[ROUTER_OFFICE, ROUTER_WAN, "fd00:1:3::1", ROUTER_WAN_6];

const POLICY: &str = r#"
zones:
  office: {}
  quarantine: {}
networks:
  internet: ["0.0.0.0/0", "::/0"]
devices:
  office-pc: {zone: office, mac: "02:00:00:00:03:10", addresses: ["10.1.3.10", "fd00:1:3::10"]}
rules:
  - {name: office-web, from: zone:office, to: network:internet, allow: [tcp/443, icmp]}
  - {name: office-admin, from: zone:office, to: router, allow: [tcp/22, udp/53]}
  - {name: router-upstream, from: router, to: network:internet, allow: [tcp/443, udp/53, icmp]}
defaults: {action: deny, unknown: quarantine}
"#;

/// The policy without any rule for the router's own traffic.
fn without_router_rules() -> String {
    POLICY.replace(
        "  - {name: router-upstream, from: router, to: network:internet, allow: [tcp/443, udp/53, icmp]}\n",
        "",
    )
}

fn compile_yaml(yaml: &str) -> CompiledPolicy {
    compile_site("egress.yaml", yaml, ROUTER_ADDRS)
}

struct Harness {
    name: &'static str,
    dp: Datapath,
    compiled: CompiledPolicy,
    generation: u64,
}

impl Harness {
    fn new(name: &'static str, yaml: &str) -> Option<Self> {
        if !require_root(name) {
            return None;
        }
        let dp = Datapath::load(None).unwrap_or_else(|e| panic!("{name}: load: {e:?}"));
        let mut h = Self {
            name,
            dp,
            compiled: compile_yaml(yaml),
            generation: 0,
        };
        h.apply(yaml);
        Some(h)
    }

    fn apply(&mut self, yaml: &str) {
        self.compiled = compile_yaml(yaml);
        self.generation += 1;
        self.dp
            .apply(&self.compiled, self.generation)
            .unwrap_or_else(|e| panic!("{}: apply: {e:?}", self.name));
    }

    /// Sends `frame` out through the egress program; asserts the verdict and that the frame is
    /// unchanged.
    fn out(&self, what: &str, frame: &Frame, ingress_ifindex: u32, want: i32) {
        let bytes = frame.build();
        let (action, after) = self
            .dp
            .test_run_tc(EGRESS_PROGRAM, &bytes, ingress_ifindex)
            .unwrap_or_else(|e| panic!("{}: {what}: {e:?}", self.name));
        assert_eq!(action, want, "{}: egress verdict of {what}", self.name);
        assert_eq!(
            after, bytes,
            "{}: {what}: the frame was rewritten",
            self.name
        );
    }

    /// Sends `frame` in through the XDP program; asserts the verdict.
    fn inbound(&self, what: &str, frame: &Frame, want: u32) {
        let (action, _) = self
            .dp
            .test_run(&frame.build())
            .unwrap_or_else(|e| panic!("{}: {what}: {e:?}", self.name));
        assert_eq!(action, want, "{}: ingress verdict of {what}", self.name);
    }

    fn counter(&self, c: Counter) -> u64 {
        datapath::counters(&self.dp)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .get(c)
    }

    /// The router's row: packets `[allow, deny, audit]`.
    fn router_row(&self) -> [u64; 3] {
        datapath::device_counters(&self.dp, [ROUTER_DEVICE]).unwrap_or_else(|e| panic!("{e:?}"))[0]
            .1
            .packets
    }

    fn rule_hits(&self, rule: &str) -> u64 {
        let id = if rule == "default" {
            enforcer_common::DEFAULT_RULE
        } else {
            self.compiled.ids.rules[rule]
        };
        datapath::rule_counters(&self.dp, [id]).unwrap_or_else(|e| panic!("{e:?}"))[0]
            .1
            .packets
    }
}

/// A frame the router sends.
fn router() -> Frame {
    Frame::eth(mac(ROUTER_MAC)).dst_mac(mac(UPSTREAM_MAC))
}

/// A frame arriving from the upstream router (the internet).
fn upstream() -> Frame {
    Frame::eth(mac(UPSTREAM_MAC))
}

fn office() -> Frame {
    Frame::eth(mac(OFFICE_MAC))
}

/// An ICMP error body quoting `quoted`'s IP header and the 8 bytes after it.
fn quote(quoted: &Frame, ip_header_len: usize) -> Vec<u8> {
    let ip = quoted.ip_bytes();
    ip[..(ip_header_len + 8).min(ip.len())].to_vec()
}

#[test]
fn router_ping_tcp_and_udp_allowed_by_a_router_rule_are_remembered_and_their_replies_pass() {
    let Some(h) = Harness::new(
        "router_ping_tcp_and_udp_allowed_by_a_router_rule_are_remembered_and_their_replies_pass",
        POLICY,
    ) else {
        return;
    };
    for (me, web) in [(ROUTER_WAN, WEB), (ROUTER_WAN_6, WEB_6)] {
        h.out(
            "ping",
            &router().ip(ip(me), ip(web)).echo_request(7),
            OWN,
            PASS,
        );
        h.inbound(
            "its reply",
            &upstream().ip(ip(web), ip(me)).echo_reply(7),
            XDP_PASS,
        );
        h.out(
            "SYN",
            &router().ip(ip(me), ip(web)).tcp(40000, 443).syn(),
            OWN,
            PASS,
        );
        h.inbound(
            "SYN-ACK",
            &upstream().ip(ip(web), ip(me)).tcp(443, 40000).syn_ack(),
            XDP_PASS,
        );
        h.out(
            "ACK",
            &router().ip(ip(me), ip(web)).tcp(40000, 443),
            OWN,
            PASS,
        );
        h.out(
            "DNS query",
            &router().ip(ip(me), ip(web)).udp(40001, 53),
            OWN,
            PASS,
        );
        h.inbound(
            "DNS answer",
            &upstream().ip(ip(web), ip(me)).udp(53, 40001),
            XDP_PASS,
        );
        // What the router never asked for is still a new flow from the internet, and denied.
        h.inbound(
            "unsolicited",
            &upstream().ip(ip(web), ip(me)).udp(53, 40002),
            XDP_DROP,
        );
    }
    assert_eq!(
        h.router_row(),
        [8, 0, 0],
        "the router's row counts what it sent"
    );
    assert_eq!(
        h.rule_hits("router-upstream"),
        7 + 7,
        "judged out, and the replies in"
    );
    assert!(
        h.counter(Counter::FlowHit) >= 8,
        "ACKs and replies are flow hits"
    );
}

#[test]
fn router_traffic_no_rule_allows_is_dropped_at_egress_counted_and_reported() {
    let Some(h) = Harness::new(
        "router_traffic_no_rule_allows_is_dropped_at_egress_counted_and_reported",
        POLICY,
    ) else {
        return;
    };
    h.out(
        "SSH out",
        &router().ipv4(ROUTER_WAN, WEB).tcp(40000, 22).syn(),
        OWN,
        DROP,
    );
    h.out(
        "NTP out",
        &router().ipv6(ROUTER_WAN_6, WEB_6).udp(123, 123),
        OWN,
        DROP,
    );
    assert_eq!(h.router_row(), [0, 2, 0]);
    assert_eq!(h.rule_hits("default"), 2);
    assert_eq!(h.counter(Counter::EventsSent), 2, "a deny event each");
    // The reply to a dropped SYN never is one.
    h.inbound(
        "SYN-ACK",
        &upstream().ipv4(WEB, ROUTER_WAN).tcp(22, 40000).syn_ack(),
        XDP_DROP,
    );
}

#[test]
fn forwarded_packets_pass_egress_untouched_whatever_the_policy() {
    let Some(h) = Harness::new(
        "forwarded_packets_pass_egress_untouched_whatever_the_policy",
        &without_router_rules(),
    ) else {
        return;
    };
    // With the router's source address (a masquerading uplink), and without.
    h.out(
        "masqueraded",
        &router().ipv4(ROUTER_WAN, WEB).tcp(40000, 22).syn(),
        FORWARDED,
        PASS,
    );
    h.out(
        "routed",
        &router().ipv4(OFFICE, WEB).tcp(40000, 22).syn(),
        FORWARDED,
        PASS,
    );
    h.out(
        "v6",
        &router().ipv6(OFFICE_6, WEB_6).udp(40000, 9),
        FORWARDED,
        PASS,
    );
    assert_eq!(h.router_row(), [0, 0, 0], "not the router's own");
    assert_eq!(h.counter(Counter::FlowHit), 0, "not even looked up");
    assert_eq!(h.counter(Counter::EventsSent), 0);
}

#[test]
fn link_traffic_and_dhcp_replies_pass_without_router_rules() {
    let Some(h) = Harness::new(
        "link_traffic_and_dhcp_replies_pass_without_router_rules",
        &without_router_rules(),
    ) else {
        return;
    };
    let arp = {
        let mut body = vec![0, 1, 8, 0, 6, 4, 0, 2];
        body.extend_from_slice(&mac(ROUTER_MAC));
        body.extend_from_slice(&[10, 1, 3, 1]);
        body.extend_from_slice(&mac(OFFICE_MAC));
        body.extend_from_slice(&[10, 1, 3, 10]);
        body.extend_from_slice(&[0; 18]);
        router().ethertype(0x0806, &body)
    };
    h.out("ARP reply", &arp, OWN, PASS);
    h.out(
        "DHCP offer",
        &router().ipv4(ROUTER_OFFICE, "255.255.255.255").udp(67, 68),
        OWN,
        PASS,
    );
    h.out(
        "DHCP ack",
        &router().ipv4(ROUTER_OFFICE, OFFICE).udp(67, 68),
        OWN,
        PASS,
    );
    h.out(
        "DHCPv6 reply",
        &router().ipv6("fe80::1", "fe80::10").udp(547, 546),
        OWN,
        PASS,
    );
    let na = router()
        .ipv6("fe80::1", "fe80::10")
        .hop_limit(255)
        .icmp(136, 0, &[0; 20]);
    h.out("neighbour advertisement", &na, OWN, PASS);
    let ra = router().ipv6("fe80::1", "ff02::1").hop_limit(255).icmp(
        134,
        0,
        &[64, 0, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    h.out("router advertisement", &ra, OWN, PASS);
    h.out(
        "OSPF hello",
        &router()
            .ipv4(ROUTER_OFFICE, "224.0.0.5")
            .proto(89, &[0; 24]),
        OWN,
        PASS,
    );
    h.out(
        "mDNS v6",
        &router().ipv6("fe80::1", "ff02::fb").udp(5353, 5353),
        OWN,
        PASS,
    );
    assert_eq!(h.router_row(), [0, 0, 0], "passed without a verdict");
    // And the same policy does judge the router's own traffic.
    h.out(
        "ping out",
        &router().ipv4(ROUTER_WAN, WEB).echo_request(1),
        OWN,
        DROP,
    );
    h.out(
        "DHCP request out",
        &router().ipv4(ROUTER_WAN, WEB).udp(68, 67),
        OWN,
        DROP,
    );
    assert_eq!(h.router_row(), [0, 2, 0]);
}

#[test]
fn router_replies_on_flows_judged_at_ingress_pass_without_router_rules() {
    let Some(h) = Harness::new(
        "router_replies_on_flows_judged_at_ingress_pass_without_router_rules",
        &without_router_rules(),
    ) else {
        return;
    };
    h.inbound(
        "SSH to the router",
        &office().ipv4(OFFICE, ROUTER_OFFICE).tcp(40000, 22).syn(),
        XDP_PASS,
    );
    h.out(
        "its SYN-ACK",
        &router()
            .dst_mac(mac(OFFICE_MAC))
            .ipv4(ROUTER_OFFICE, OFFICE)
            .tcp(22, 40000)
            .syn_ack(),
        OWN,
        PASS,
    );
    h.inbound(
        "DNS to the router",
        &office().ipv6(OFFICE_6, "fd00:1:3::1").udp(40001, 53),
        XDP_PASS,
    );
    h.out(
        "its answer",
        &router().ipv6("fd00:1:3::1", OFFICE_6).udp(53, 40001),
        OWN,
        PASS,
    );
    assert_eq!(h.counter(Counter::FlowHit), 2);
    assert_eq!(h.router_row(), [2, 0, 0]);
    h.out(
        "a SYN-ACK for no flow",
        &router()
            .ipv4(ROUTER_OFFICE, OFFICE)
            .tcp(22, 40009)
            .syn_ack(),
        OWN,
        DROP,
    );
}

#[test]
fn icmp_errors_the_router_sends_about_forwarded_flows_are_related() {
    let Some(h) = Harness::new(
        "icmp_errors_the_router_sends_about_forwarded_flows_are_related",
        &without_router_rules(),
    ) else {
        return;
    };
    let syn = office().ipv4(OFFICE, WEB).tcp(40000, 443).syn();
    h.inbound("office to the web", &syn, XDP_PASS);
    let to_office = || {
        router()
            .dst_mac(mac(OFFICE_MAC))
            .ipv4(ROUTER_OFFICE, OFFICE)
    };
    h.out(
        "time exceeded",
        &to_office().icmp(11, 0, &quote(&syn, 20)),
        OWN,
        PASS,
    );
    h.out(
        "fragmentation needed",
        &to_office().icmp(3, 4, &quote(&syn, 20)),
        OWN,
        PASS,
    );
    let syn6 = office().ipv6(OFFICE_6, WEB_6).tcp(40000, 443).syn();
    h.inbound("office to the web, v6", &syn6, XDP_PASS);
    let too_big = router()
        .ipv6("fd00:1:3::1", OFFICE_6)
        .icmp(2, 0, &quote(&syn6, 40));
    h.out("packet too big", &too_big, OWN, PASS);
    assert_eq!(h.counter(Counter::IcmpRelated), 3);
    let other = office().ipv4(OFFICE, WEB).tcp(40001, 443).syn();
    h.out(
        "about no flow",
        &to_office().icmp(11, 0, &quote(&other, 20)),
        OWN,
        DROP,
    );
}

#[test]
fn the_routers_flow_survives_a_policy_switch_and_ends_with_its_rule() {
    let Some(mut h) = Harness::new(
        "the_routers_flow_survives_a_policy_switch_and_ends_with_its_rule",
        POLICY,
    ) else {
        return;
    };
    h.out(
        "SYN",
        &router().ipv4(ROUTER_WAN, WEB).tcp(40000, 443).syn(),
        OWN,
        PASS,
    );
    h.apply(POLICY);
    let syn_ack = upstream().ipv4(WEB, ROUTER_WAN).tcp(443, 40000).syn_ack();
    h.inbound("SYN-ACK after a switch", &syn_ack, XDP_PASS);
    h.apply(&without_router_rules());
    h.inbound("SYN-ACK once the rule is gone", &syn_ack, XDP_DROP);
    h.out(
        "ACK once the rule is gone",
        &router().ipv4(ROUTER_WAN, WEB).tcp(40000, 443),
        OWN,
        DROP,
    );
}

fn ip(a: &str) -> IpAddr {
    a.parse().unwrap_or_else(|e| panic!("{a}: {e}"))
}
