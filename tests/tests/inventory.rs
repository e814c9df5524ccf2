//! The inventory from the wire (issue 18), in network namespaces: devices send DHCPv4, DHCPv6,
//! mDNS and SSDP frames (built here with `dhcproto` and `hickory-proto`, sent raw from the device
//! namespaces), and `enforcer devices` shows what they said; drift against the inventory is
//! reported; a spoofed vendor class changes the report and no verdict. And `enforcer import mud`:
//! a converted profile passes `check` and, applied, allows exactly its flows.
//!
//! Needs root; run under the kernel lock with `--test-threads=1`.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly, with what it expected as the message"
)]

use std::{
    process::Command,
    str::FromStr as _,
    thread,
    time::{Duration, Instant},
};

use dhcproto::{
    Encodable, Encoder,
    v4::{self, OptionCode},
    v6,
};
use enforcer_tests::{
    frame::{Frame, mac},
    netns::{
        self, CAMERA, DEVICE_IFACE, OFFICE_PC, PRINTER, RECORDER, UNKNOWN, enforcer_bin,
        fetch_metrics, listen_tcp, listen_udp_echo, require_root, tcp_connects, udp_echo,
    },
    world::{World, metrics_addr as addr},
};
use hickory_proto::{
    op::{Message, MessageType, OpCode},
    rr::{
        Name, RData, Record,
        rdata::{A, PTR, SRV, TXT},
    },
};

const PROBE: Duration = Duration::from_secs(2);

/// The camera as the inventory knows it: an Axis MAC (00:40:8c), model and firmware written down.
const CAM_MAC: &str = "00:40:8c:00:01:10";
/// An unlisted Philips hub, announcing itself over SSDP.
const HUB_MAC: &str = "00:17:88:00:09:01";
/// A phone with a randomised MAC (locally administered), asking for DHCPv6.
const PHONE_MAC: &str = "da:a1:19:00:09:02";

/// What these tests do with a world beside the shared [`World`].
trait Evidence {
    fn json(&self, args: &[&str]) -> serde_json::Value;
    /// `devices --output json` once `ready` holds for it (the daemon writes evidence each second).
    fn devices_when(&self, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value;
    fn send(&self, device: &str, frames: &[Vec<u8>]);
    fn metric(&self, line_start: &str) -> Option<f64>;
}

impl Evidence for World {
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let (code, out, err) = self.cli(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    fn devices_when(&self, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let inv = self.json(&["devices", "--output", "json"]);
            if ready(&inv) {
                return inv;
            }
            assert!(Instant::now() < deadline, "evidence never shown: {inv:#}");
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn send(&self, device: &str, frames: &[Vec<u8>]) {
        let sent = netns::send_raw_frames(self.site.ns(device), DEVICE_IFACE, frames)
            .expect("send frames");
        assert_eq!(sent, frames.len(), "every frame left {device}");
    }

    fn metric(&self, line_start: &str) -> Option<f64> {
        let text = fetch_metrics(self.site.router_ns(), addr()).expect("GET /metrics");
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }
}

// ----- Frames, as devices send them --------------------------------------------------------------

fn encode(msg: &impl Encodable) -> Vec<u8> {
    let mut buf = Vec::new();
    msg.encode(&mut Encoder::new(&mut buf)).expect("encode");
    buf
}

/// A DHCPDISCOVER from `m` with a host name, parameter list, vendor class and MUD URL.
fn dhcp_discover(m: &str, host: &str, vendor_class: &str, prl: &[u8]) -> Vec<u8> {
    let mut msg = v4::Message::default();
    msg.set_opcode(v4::Opcode::BootRequest).set_chaddr(&mac(m));
    let opts = msg.opts_mut();
    opts.insert(v4::DhcpOption::MessageType(v4::MessageType::Discover));
    opts.insert(v4::DhcpOption::Hostname(host.into()));
    opts.insert(v4::DhcpOption::ParameterRequestList(
        prl.iter().map(|c| OptionCode::from(*c)).collect(),
    ));
    opts.insert(v4::DhcpOption::ClassIdentifier(
        vendor_class.as_bytes().to_vec(),
    ));
    opts.insert(v4::DhcpOption::Unknown(v4::UnknownOption::new(
        OptionCode::from(161),
        b"https://mud.axis.example/p3245.json".to_vec(),
    )));
    Frame::eth(mac(m))
        .dst_mac([0xff; 6])
        .ipv4("0.0.0.0", "255.255.255.255")
        .udp(68, 67)
        .payload(&encode(&msg))
        .build()
}

/// A DHCPv6 SOLICIT with a client FQDN, a vendor class and a MUD URL.
fn dhcpv6_solicit(m: &str) -> Vec<u8> {
    let mut msg = v6::Message::new(v6::MessageType::Solicit);
    let opts = msg.opts_mut();
    opts.insert(v6::DhcpOption::ClientId(vec![
        0, 3, 0, 1, 0xda, 0xa1, 0x19, 0, 9, 2,
    ]));
    // Option 16 raw: dhcproto 0.15 encodes its length wrong (its decoder is right).
    let mut class = 311u32.to_be_bytes().to_vec();
    class.extend_from_slice(&8u16.to_be_bytes());
    class.extend_from_slice(b"MSFT 5.0");
    opts.insert(v6::DhcpOption::Unknown(v6::UnknownOption::new(
        v6::OptionCode::VendorClass,
        class,
    )));
    let mut fqdn = vec![0u8];
    fqdn.extend_from_slice(b"\x0bannas-phone\x04home\x04arpa\x00");
    opts.insert(v6::DhcpOption::Unknown(v6::UnknownOption::new(
        v6::OptionCode::from(39),
        fqdn,
    )));
    opts.insert(v6::DhcpOption::Unknown(v6::UnknownOption::new(
        v6::OptionCode::from(112),
        b"https://mud.phone.example/x1.json".to_vec(),
    )));
    Frame::eth(mac(m))
        .dst_mac([0x33, 0x33, 0, 1, 0, 2])
        .ipv6("fe80::d8a1:19ff:fe00:902", "ff02::1:2")
        .udp(546, 547)
        .payload(&encode(&msg))
        .build()
}

/// An mDNS announcement of `host`.local with a TXT model and firmware.
fn mdns_announcement(m: &str, src: &str, host: &str, model: &str, firmware: &str) -> Vec<u8> {
    let name = |s: &str| Name::from_str(s).expect("a name");
    let mut msg = Message::new(0, MessageType::Response, OpCode::Query);
    let instance = Name::from_labels([
        b"Lobby camera".as_slice(),
        b"_axis-video",
        b"_tcp",
        b"local",
    ])
    .expect("instance");
    msg.answers.push(Record::from_rdata(
        name("_axis-video._tcp.local."),
        120,
        RData::PTR(PTR(instance.clone())),
    ));
    let target = name(&format!("{host}.local."));
    msg.additionals.push(Record::from_rdata(
        instance.clone(),
        120,
        RData::SRV(SRV::new(0, 0, 80, target.clone())),
    ));
    msg.additionals.push(Record::from_rdata(
        instance,
        120,
        RData::TXT(TXT::new(vec![
            format!("md={model}"),
            format!("fv={firmware}"),
        ])),
    ));
    msg.additionals.push(Record::from_rdata(
        target,
        120,
        RData::A(A(src.parse().expect("v4"))),
    ));
    Frame::eth(mac(m))
        .dst_mac([0x01, 0, 0x5e, 0, 0, 0xfb])
        .ipv4(src, "224.0.0.251")
        .udp(5353, 5353)
        .payload(&msg.to_vec().expect("encode"))
        .build()
}

/// An SSDP NOTIFY from a Philips hub.
fn ssdp_notify(m: &str, src: &str) -> Vec<u8> {
    let body = format!(
        "NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=100\r\n\
         LOCATION: http://{src}:80/description.xml\r\nSERVER: Linux/3.14.0 UPnP/1.0 IpBridge/1.26.0\r\n\
         NTS: ssdp:alive\r\nNT: upnp:rootdevice\r\nUSN: uuid:2f402f80-da50-11e1-9b23-001788090001::upnp:rootdevice\r\n\r\n"
    );
    Frame::eth(mac(m))
        .dst_mac([0x01, 0, 0x5e, 0x7f, 0xff, 0xfa])
        .ipv4(src, "239.255.255.250")
        .udp(40000, 1900)
        .payload(body.as_bytes())
        .build()
}

// ----- Devices and drift -------------------------------------------------------------------------

const CAM_POLICY: &str = r#"
zones:
  cameras: {}
  quarantine: {description: unknown devices}
devices:
  cam-1:
    zone: cameras
    mac: "00:40:8c:00:01:10"
    addresses: ["10.1.1.10"]
    vendor: Axis
    model: P3245-LV
    firmware: "10.12"
rules:
  - name: cams-dhcp
    from: zone:cameras
    to: router
    allow: [udp/67]
defaults:
  action: deny
  unknown: quarantine
"#;

fn listed<'a>(inv: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    inv["listed"].as_array()?.iter().find(|d| d["name"] == name)
}

fn unknown<'a>(inv: &'a serde_json::Value, m: &str) -> Option<&'a serde_json::Value> {
    inv["unknown"].as_array()?.iter().find(|d| d["mac"] == m)
}

#[test]
fn devices_show_what_devices_announce_and_firmware_drift_is_reported() {
    if !require_root("devices_show_what_devices_announce_and_firmware_drift_is_reported") {
        return;
    }
    let w = World::new("inv", &[CAMERA, UNKNOWN]);
    w.write("policy.yaml", CAM_POLICY);
    let d = w.start();
    w.send(
        "cam1",
        &[
            dhcp_discover(CAM_MAC, "cam-lobby", "udhcp 1.30.1", &[1, 3, 6, 15, 42]),
            mdns_announcement(CAM_MAC, "10.1.1.10", "cam-lobby", "P3245-LV", "9.80"),
        ],
    );
    w.send(
        "unk",
        &[ssdp_notify(HUB_MAC, "10.1.9.70"), dhcpv6_solicit(PHONE_MAC)],
    );
    let inv = w.devices_when(|inv| {
        listed(inv, "cam-1").is_some_and(|c| c["observed"]["firmware"].is_string())
            && unknown(inv, HUB_MAC).is_some_and(|h| h["observed"]["model"].is_string())
            && unknown(inv, PHONE_MAC).is_some_and(|p| p["observed"]["fqdn"].is_string())
    });
    let cam = &listed(&inv, "cam-1").expect("cam-1")["observed"];
    assert_eq!(cam["vendor"], "Axis Communications AB", "{cam:#}");
    assert_eq!(cam["randomised_mac"], false);
    assert_eq!(cam["host_name"], "cam-lobby");
    assert_eq!(cam["fingerprint"], "1,3,6,15,42");
    assert_eq!(cam["vendor_class"], "udhcp 1.30.1");
    assert_eq!(cam["mud_url"], "https://mud.axis.example/p3245.json");
    assert_eq!(cam["model"], "P3245-LV");
    assert_eq!(cam["firmware"], "9.80");
    assert_eq!(cam["services"][0], "_axis-video._tcp");
    assert_eq!(cam["interface"], "r-cam1");

    let hub = &unknown(&inv, HUB_MAC).expect("hub")["observed"];
    assert_eq!(hub["vendor"], "Philips Lighting BV", "{hub:#}");
    assert_eq!(
        (&hub["model"], &hub["firmware"]),
        (&"IpBridge".into(), &"1.26.0".into())
    );
    assert_eq!(hub["ssdp_location"], "http://10.1.9.70:80/description.xml");

    let phone = &unknown(&inv, PHONE_MAC).expect("phone")["observed"];
    assert_eq!(phone["randomised_mac"], true, "{phone:#}");
    assert!(
        phone["vendor"].is_null(),
        "a randomised MAC is not looked up"
    );
    assert_eq!(phone["fqdn"], "annas-phone.home.arpa");
    assert_eq!(phone["host_name"], "annas-phone");
    assert_eq!(phone["vendor_class"], "MSFT 5.0");
    assert_eq!(phone["mud_url"], "https://mud.phone.example/x1.json");

    // Drift: the camera announces 9.80 where the inventory says 10.12; its vendor and model agree.
    let drift = w.json(&["devices", "--drift", "--output", "json"]);
    let fields: Vec<(&str, &str, &str)> = drift
        .as_array()
        .expect("a list")
        .iter()
        .map(|d| {
            (
                d["device"].as_str().unwrap_or_default(),
                d["field"].as_str().unwrap_or_default(),
                d["observed"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(fields, [("cam-1", "firmware", "9.80")], "{drift:#}");
    assert_eq!(
        w.metric("enforcer_inventory_drift{device=\"cam-1\",field=\"firmware\"}"),
        Some(1.0)
    );
    // Logged once, however often the camera repeats itself.
    w.send(
        "cam1",
        &[mdns_announcement(
            CAM_MAC,
            "10.1.1.10",
            "cam-lobby",
            "P3245-LV",
            "9.80",
        )],
    );
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        d.output().matches("inventory drift").count(),
        1,
        "{}",
        d.output()
    );

    // `--output yaml` names the phone after its host name, with the evidence marked observed,
    // and no 0.0.0.0 for a device seen only in its DHCPDISCOVER.
    let (code, yaml, err) = w.cli(&["devices", "--output", "yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(yaml.contains("annas-phone:"), "{yaml}");
    assert!(
        yaml.contains("observed on the wire, not verified"),
        "{yaml}"
    );
    assert!(!yaml.contains("0.0.0.0"), "{yaml}");
    let (code, table, _) = w.cli(&["devices"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("cam-lobby") && table.contains("(randomised)"),
        "{table}"
    );
}

// ----- Evidence is never identity ----------------------------------------------------------------

const OFFICE_POLICY: &str = r#"
zones:
  office: {}
  printers: {}
  quarantine: {description: unknown devices}
devices:
  office-pc: {zone: office, mac: "02:00:00:00:03:10", addresses: ["10.1.3.10"]}
  printer-1: {zone: printers, mac: "02:00:00:00:04:10", addresses: ["10.1.4.10"]}
rules:
  - name: office-print
    from: zone:office
    to: zone:printers
    allow: [tcp/9100]
  - name: dhcp
    from: any
    to: router
    allow: [udp/67]
defaults:
  action: deny
  unknown: quarantine
"#;

#[test]
fn a_spoofed_vendor_class_changes_the_report_and_no_verdict() {
    if !require_root("a_spoofed_vendor_class_changes_the_report_and_no_verdict") {
        return;
    }
    let w = World::new("invspoof", &[OFFICE_PC, PRINTER]);
    w.write("policy.yaml", OFFICE_POLICY);
    let _print = listen_tcp(w.ns("prn1"), 9100).expect("listen 9100");
    let _ssh = listen_tcp(w.ns("prn1"), 22).expect("listen 22");
    let _d = w.start();
    let printer = std::net::IpAddr::V4(PRINTER.v4);
    let verdicts = || {
        (
            tcp_connects(w.ns("pc1"), printer, 9100, PROBE),
            tcp_connects(w.ns("pc1"), printer, 22, PROBE),
        )
    };
    assert_eq!(verdicts(), (true, false), "before");
    w.send(
        "pc1",
        &[dhcp_discover(
            OFFICE_PC.mac,
            "office-pc",
            "MSFT 5.0",
            &[1, 3, 6, 15, 31, 33, 43, 44, 46, 47, 119, 121, 249, 252],
        )],
    );
    w.devices_when(|inv| {
        listed(inv, "office-pc").is_some_and(|p| p["observed"]["vendor_class"] == "MSFT 5.0")
    });
    // Someone else speaks with the PC's MAC, claiming to be a printer's embedded stack.
    w.send(
        "pc1",
        &[dhcp_discover(
            OFFICE_PC.mac,
            "printer-1",
            "HP LaserJet",
            &[1, 3, 6],
        )],
    );
    let inv = w.devices_when(|inv| {
        listed(inv, "office-pc").is_some_and(|p| p["observed"]["vendor_class"] == "HP LaserJet")
    });
    let pc = listed(&inv, "office-pc").expect("listed");
    assert_eq!(pc["state"], "ok", "evidence quarantines nobody: {pc:#}");
    let drift = w.json(&["devices", "--drift", "--output", "json"]);
    let fields: Vec<&str> = drift
        .as_array()
        .expect("a list")
        .iter()
        .filter(|d| d["device"] == "office-pc")
        .filter_map(|d| d["field"].as_str())
        .collect();
    assert_eq!(fields, ["fingerprint", "vendor_class"], "{drift:#}");
    assert_eq!(verdicts(), (true, false), "the same verdicts after");
}

// ----- MUD ---------------------------------------------------------------------------------------

/// The site the bulb profile is applied to: the bulb, its hub, an office PC (the local network
/// the profile may hear from) and a printer (neither).
const BULB_SITE: &str = r#"
zones:
  iot: {}
  office: {}
  printers: {}
  quarantine: {description: unknown devices}
devices:
  bulb: {zone: iot, mac: "02:00:00:00:01:10", addresses: ["10.1.1.10"]}
  hub: {zone: iot, mac: "02:00:00:00:02:10", addresses: ["10.1.2.10"]}
  office-pc: {zone: office, mac: "02:00:00:00:03:10", addresses: ["10.1.3.10"]}
  printer-1: {zone: printers, mac: "02:00:00:00:04:10", addresses: ["10.1.4.10"]}
defaults:
  action: deny
  unknown: quarantine
"#;

fn fixture(name: &str) -> String {
    format!("{}/mud/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn import(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(enforcer_bin())
        .args(["import", "mud"])
        .args(args)
        .output()
        .expect("run enforcer import");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check(dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(enforcer_bin())
        .arg("check")
        .arg(dir)
        .output()
        .expect("check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn an_unsupported_mud_entry_is_refused_by_name() {
    let (code, out, err) = import(&[&fixture("unsupported.json"), "--device", "cam"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.is_empty(), "nothing printed to apply: {out}");
    assert!(
        err.contains("entry mud-cam-v4fr/ttl-limited: the match `ipv4.ttl` cannot be expressed"),
        "{err}"
    );
    let (code, _, err) = import(&[&fixture("bulb-with-controller.json"), "--device", "bulb"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("entry mud-bulb-v4fr/cntrl0-frdev") && err.contains("--map controller:"),
        "{err}"
    );
}

#[test]
fn a_mud_profile_with_local_networks_and_a_controller_allows_exactly_its_flows() {
    if !require_root("a_mud_profile_with_local_networks_and_a_controller_allows_exactly_its_flows")
    {
        return;
    }
    let (code, yaml, err) = import(&[
        &fixture("bulb-with-controller.json"),
        "--device",
        "bulb",
        "--map",
        "local-networks=zone:office",
        "--map",
        "controller:https://hub.example.com/mud=device:hub",
    ]);
    assert_eq!(code, 0, "{err}");
    let w = World::new("invmud", &[CAMERA, RECORDER, OFFICE_PC, PRINTER]);
    w.write("10-site.yaml", BULB_SITE);
    w.write("20-bulb-mud.yaml", &yaml);
    let (ok, why) = check(&w.policy_dir);
    assert!(ok, "the converted profile passes check:\n{yaml}\n{why}");

    let bulb = std::net::IpAddr::V4(CAMERA.v4);
    let hub = std::net::IpAddr::V4(RECORDER.v4);
    let office = std::net::IpAddr::V4(OFFICE_PC.v4);
    let _l = [
        listen_tcp(w.ns("cam1"), 80),
        listen_tcp(w.ns("cam1"), 22),
        listen_tcp(w.ns("nvr1"), 8443),
        listen_tcp(w.ns("nvr1"), 22),
        listen_tcp(w.ns("pc1"), 80),
    ];
    let _coap = listen_udp_echo(w.ns("cam1"), 5683).expect("listen 5683");
    let _other = listen_udp_echo(w.ns("cam1"), 5684).expect("listen 5684");
    let _d = w.start();
    // The profile's flows.
    assert!(
        tcp_connects(w.ns("cam1"), hub, 8443, PROBE),
        "bulb -> controller tcp/8443"
    );
    assert!(
        tcp_connects(w.ns("pc1"), bulb, 80, PROBE),
        "local network -> bulb tcp/80"
    );
    assert!(
        udp_echo(w.ns("nvr1"), bulb, 5683, PROBE),
        "controller -> bulb udp/5683"
    );
    // Nothing else.
    assert!(
        !tcp_connects(w.ns("cam1"), hub, 22, PROBE),
        "bulb -> controller tcp/22"
    );
    assert!(
        !tcp_connects(w.ns("cam1"), office, 80, PROBE),
        "bulb -> office tcp/80"
    );
    assert!(
        !tcp_connects(w.ns("prn1"), bulb, 80, PROBE),
        "printers are no local network here"
    );
    assert!(
        !tcp_connects(w.ns("nvr1"), bulb, 80, PROBE),
        "the controller is not the office"
    );
    assert!(
        !tcp_connects(w.ns("pc1"), bulb, 22, PROBE),
        "office -> bulb tcp/22"
    );
    assert!(
        !udp_echo(w.ns("nvr1"), bulb, 5684, PROBE),
        "controller -> bulb udp/5684"
    );
    assert!(
        !udp_echo(w.ns("pc1"), bulb, 5683, PROBE),
        "office -> bulb udp/5683"
    );
}

/// The plug's site: the device, the resolver set-up the names feature asks for (`dns:` with its
/// upstream, DNS to the router allowed, the router's own queries upstream allowed).
const PLUG_SITE: &str = r#"
zones:
  iot: {}
  quarantine: {description: unknown devices}
networks:
  upstream-dns: ["192.0.2.53/32"]
devices:
  plug: {zone: iot, mac: "02:00:00:00:01:10", addresses: ["10.1.1.10"]}
dns:
  upstream: ["192.0.2.53"]
rules:
  - name: iot-dns
    from: zone:iot
    to: router
    allow: [udp/53, tcp/53]
  - name: resolver-upstream
    from: router
    to: network:upstream-dns
    allow: [udp/53, tcp/53]
defaults:
  action: deny
  unknown: quarantine
"#;

/// RFC 8520's `ietf-acldns:dst-dnsname` becomes a `dns:` destination (docs/names.md).
#[test]
fn the_name_based_mud_fixture_converts_to_yaml_that_passes_check() {
    let (code, yaml, err) = import(&[&fixture("plug.json"), "--device", "plug"]);
    assert_eq!(code, 0, "{err}");
    assert!(yaml.contains("to: dns:cloud.plug.example.com"), "{yaml}");
    assert!(yaml.contains("to: dns:pool.ntp.org"), "{yaml}");
    let dir = std::env::temp_dir().join(format!("enforcer-test-mudplug-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("10-site.yaml"), PLUG_SITE).expect("site");
    std::fs::write(dir.join("20-plug-mud.yaml"), &yaml).expect("converted");
    let (ok, why) = check(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "the converted profile passes check:\n{yaml}\n{why}");
}
