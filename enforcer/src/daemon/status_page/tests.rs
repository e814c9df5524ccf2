//! The page escapes what policies and the wire put in it, and answers only reads.

use super::*;
use crate::daemon::state::{DeviceLabel, ReloadOutcome, Status};

fn status() -> Status {
    Status {
        pid: 42,
        policy_path: "/etc/enforcer/policy".to_owned(),
        pin_dir: "/sys/fs/bpf/enforcer".to_owned(),
        metrics_addr: "127.0.0.1:9469".to_owned(),
        interfaces: Vec::new(),
        absent_interfaces: Vec::new(),
        generation: 7,
        digest: "0123456789abcdef".to_owned(),
        sources: Vec::new(),
        mode: "enforce".to_owned(),
        unknown_zone: "quarantine".to_owned(),
        quarantine_zone: Some("quarantine".to_owned()),
        devices: vec![DeviceLabel {
            id: 1,
            name: "cam-1".to_owned(),
            zone: "cameras".to_owned(),
            mac: None,
            addresses: Vec::new(),
            inventory: crate::policy::compiled::Inventory::default(),
            audit: false,
        }],
        rules: Vec::new(),
        names: Vec::new(),
        last_reload: Some(ReloadOutcome {
            at: 1_700_000_000,
            result: "failure".to_owned(),
            error: Some("20-rules.yaml:3:4: <b>bad</b>".to_owned()),
        }),
        pending: None,
    }
}

fn snapshot() -> Snapshot {
    let devices = serde_json::json!({
        "listed": [{
            "name": "cam-1", "zone": "cameras", "state": "quarantined",
            "quarantine_reason": "honeypot", "last_seen": "2026-11-30T20:00:00Z",
            "packets": {"allow": 12, "deny": 3, "audit": 1},
            "vendor": "<script>alert(1)</script>", "notes": "a \"quoted\" & <i>odd</i> note"
        }],
        "unknown": [{
            "mac": "02:00:00:00:09:99", "ipv4": "10.1.1.99", "interface": "lan0",
            "last_seen": "2026-11-30T20:00:01Z", "packets": 5,
            "last_destination": "10.1.99.1", "last_port": 22,
            "hostname": "<script>evil()</script>"
        }]
    });
    Snapshot {
        status: Ok(status()),
        applied: Ok(crate::graph::tests::demo_view()),
        devices: Ok(devices),
        recent: vec![WatchEvent {
            time: "2026-11-30T20:00:02Z".to_owned(),
            kind: "deny".to_owned(),
            device: "<img src=x>".to_owned(),
            zone: "cameras".to_owned(),
            ..WatchEvent::default()
        }],
    }
}

#[test]
fn names_from_the_policy_and_the_wire_are_escaped() {
    let page = render(&snapshot());
    assert!(!page.contains("<script"), "{page}");
    assert!(!page.contains("<img"), "{page}");
    assert!(!page.contains("<i>odd"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "vendor shown escaped"
    );
    assert!(
        page.contains("hostname: &lt;script&gt;evil()&lt;/script&gt;"),
        "wire names shown escaped"
    );
    assert!(
        page.contains("&lt;b&gt;bad&lt;/b&gt;"),
        "reload error shown escaped"
    );
}

#[test]
fn the_page_shows_devices_quarantines_unknowns_denies_generation_and_the_graph() {
    let page = render(&snapshot());
    for want in [
        "cam-1",
        "honeypot",
        "02:00:00:00:09:99",
        "<b id=\"generation\">7</b>",
        "last reload: failure",
        "<svg",
        "zone cameras",
    ] {
        assert!(page.contains(want), "{want} missing from the page");
    }
    // Allowed and denied counts (deny and audit together, as `enforcer devices` counts them).
    assert!(page.contains("<td>12</td><td>4</td>"), "{page}");
}

#[test]
fn only_get_and_head_of_the_root_are_answered() {
    let ok = respond("GET / HTTP/1.1", || {
        "<html><style>a{}</style></html>".to_owned()
    });
    assert_eq!(ok.status, "200 OK");
    let csp = ok
        .headers
        .iter()
        .find(|(h, _)| *h == "Content-Security-Policy")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'sha256-"),
        "{csp}"
    );
    assert!(csp.contains("script-src 'none'"), "{csp}");
    let post = respond("POST / HTTP/1.1", || unreachable!("no page for a write"));
    assert_eq!(post.status, "405 Method Not Allowed");
    assert!(post.headers.contains(&("Allow", "GET, HEAD".to_owned())));
    assert_eq!(
        respond("GET /admin HTTP/1.1", String::new).status,
        "404 Not Found"
    );
    assert_eq!(respond("HEAD /?x=1 HTTP/1.0", String::new).status, "200 OK");
}

#[test]
fn the_style_hash_is_of_the_style_text() {
    // sha256("a{}") in base64, as a browser computes it for `<style>a{}</style>`.
    let csp = html::content_security_policy("<style>a{}</style>");
    assert!(
        csp.contains("'sha256-X1RutGBrXCt9KkSaXMK7tHftWiRscFHOhxsS8tv8hBk='"),
        "{csp}"
    );
}

#[test]
fn an_http_request_line_is_told_from_a_control_request() {
    assert!(is_http("GET / HTTP/1.1\r\n"));
    assert!(is_http("HEAD / HTTP/1.0\n"));
    assert!(is_http("POST / HTTP/1.1\r\n"));
    assert!(!is_http("{\"op\":\"watch\"}\n"));
    assert!(!is_http("GET /\n"));
}
