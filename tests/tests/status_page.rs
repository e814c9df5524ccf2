//! The status page in a real browser: the demo site (`policies/` on the demo's devices in network
//! namespaces), the daemon with `--status-addr`, some denied traffic, an unknown device and an
//! operator's quarantine; then headless Chromium (Debian's `chromium`, installed by `cargo xtask
//! setup`) loads the page, takes a screenshot (kept as `target/test-artefacts/status-page.png`,
//! not committed) and dumps the DOM, whose text must hold the devices and the quarantine. A
//! device note holding `<script>` must show as text, never run.
//!
//! The page on the control socket is fetched too (curl `--unix-socket`), as `ssh -L` reaches it,
//! and a write is refused.
//!
//! Run with `flock /tmp/enforcer-kernel.lock cargo test -p enforcer-tests --test status_page --
//! --test-threads=1`, as root, after `cargo xtask build`.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly, with what it expected as the message"
)]

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow as _;
use aya as _;
use enforcer as _;
use enforcer_common as _;
use enforcer_tests::netns::{
    self, CAMERA, DEMO_SITE, OFFICE_PC, Site, UNKNOWN, enforcer_bin, output_within, require_root,
    spawn_daemon, tcp_connects,
};
use ipnet as _;
use libc as _;
use serde_json as _;

const METRICS: &str = "127.0.0.1:9469";
const STATUS: &str = "127.0.0.1:9470";
const CHROMIUM: &str = "/usr/bin/chromium";
/// A note no page may run.
const NOTE: &str = "<script>document.title='owned'</script>keep it in";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `policies/`, copied, with the fish tank's note replaced by markup.
fn demo_policy(dir: &Path) {
    fs::create_dir_all(dir).expect("policy dir");
    for entry in fs::read_dir(repo().join("policies")).expect("policies/") {
        let path = entry.expect("entry").path();
        let text = fs::read_to_string(&path).expect("read policy file");
        let text = text.replace(
            "notes: the thermometer that once exfiltrated a casino's database; never let it out",
            &format!("notes: \"{NOTE}\""),
        );
        fs::write(dir.join(path.file_name().expect("file name")), text).expect("write policy");
    }
}

/// The page as headless Chromium sees it, from inside the router's namespace: the screenshot is
/// written to `shot`, the DOM after load returned.
fn chromium(router_ns: &str, url: &str, shot: &Path, profile: &Path) -> String {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: run `cargo xtask setup` (it installs Debian's chromium for this test)"
    );
    let browse = |extra: &[String]| {
        let _ = fs::remove_dir_all(profile);
        fs::create_dir_all(profile).expect("profile dir");
        let mut cmd = netns::in_ns(router_ns, CHROMIUM);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,2600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url);
        let out = output_within(&mut cmd, Duration::from_secs(90))
            .expect("start chromium")
            .expect("chromium finished within 90 s");
        assert!(
            out.status.success(),
            "chromium: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    browse(&[format!("--screenshot={}", shot.display())]);
    browse(&["--dump-dom".to_owned()])
}

/// `curl --unix-socket SOCKET` for `path` with `method`: (status line and headers, body).
fn over_socket(router_ns: &str, socket: &Path, method: &str) -> (String, String) {
    let mut cmd = netns::in_ns(router_ns, "curl");
    cmd.args([
        "-sS",
        "--max-time",
        "10",
        "-D",
        "-",
        "-X",
        method,
        "--unix-socket",
    ])
    .arg(socket)
    .arg("http://localhost/");
    let out = output_within(&mut cmd, Duration::from_secs(15))
        .expect("start curl")
        .expect("curl within 15 s");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_owned(), body.to_owned())
}

/// Detaches what the daemon pinned and removes the test's directories, also when the test fails.
struct Cleanup {
    pin_dir: PathBuf,
    state_dir: PathBuf,
    base: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new(enforcer_bin())
            .arg("detach")
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .output();
        let _ = fs::remove_dir_all(&self.base);
    }
}

#[test]
fn a_browser_shows_the_devices_a_quarantine_and_denies_and_runs_nothing() {
    if !require_root("a_browser_shows_the_devices_a_quarantine_and_denies_and_runs_nothing") {
        return;
    }
    netns::ensure_bpffs().expect("bpffs");
    let site = Site::build("pic", DEMO_SITE).expect("build the demo site");
    let base = std::env::temp_dir().join(format!("enforcer-test-pic-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let policy = base.join("policy");
    demo_policy(&policy);
    let pin_dir = PathBuf::from("/sys/fs/bpf/enforcer-test-pic");
    let state_dir = base.join("state");
    let socket = base.join("run/control.sock");
    let _cleanup = Cleanup {
        pin_dir: pin_dir.clone(),
        state_dir: state_dir.clone(),
        base: base.clone(),
    };
    let dirs = |args: &mut Command| {
        args.arg("--pin-dir")
            .arg(&pin_dir)
            .arg("--state-dir")
            .arg(&state_dir);
    };
    let mut args: Vec<String> = vec![
        "run".into(),
        "--policy".into(),
        policy.display().to_string(),
    ];
    for i in site.router_ifaces() {
        args.extend(["--iface".into(), i]);
    }
    args.extend([
        "--metrics-addr".into(),
        METRICS.into(),
        "--status-addr".into(),
        STATUS.into(),
        "--pin-dir".into(),
        pin_dir.display().to_string(),
        "--state-dir".into(),
        state_dir.display().to_string(),
        "--control-socket".into(),
        socket.display().to_string(),
    ]);
    let mut daemon = spawn_daemon(site.router_ns(), &args).expect("spawn daemon");
    let metrics: SocketAddr = METRICS.parse().expect("address");
    daemon
        .wait_ready(site.router_ns(), metrics, Duration::from_secs(15))
        .expect("daemon ready");

    // Denied: the camera may never reach the office; the unknown device is quarantined on sight.
    assert!(!tcp_connects(
        site.ns(CAMERA.name),
        OFFICE_PC.v4.into(),
        22,
        Duration::from_secs(1)
    ));
    let _ = netns::ping_within(
        site.ns(UNKNOWN.name),
        UNKNOWN.router_v4.into(),
        Duration::from_secs(1),
    );
    let mut quarantine = Command::new(enforcer_bin());
    quarantine
        .args(["quarantine", "cam-1", "--for", "1h", "--control-socket"])
        .arg(&socket);
    dirs(&mut quarantine);
    let q = quarantine.output().expect("enforcer quarantine");
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));

    let artefacts = repo().join("target/test-artefacts");
    fs::create_dir_all(&artefacts).expect("artefact dir");
    let shot = artefacts.join("status-page.png");
    let _ = fs::remove_file(&shot);
    // The deny events reach the page through the daemon's event task: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let dom = loop {
        let dom = chromium(
            site.router_ns(),
            &format!("http://{STATUS}/"),
            &shot,
            &base.join("chromium"),
        );
        if dom.contains("no-lateral-cameras") || Instant::now() >= deadline {
            break dom;
        }
        thread::sleep(Duration::from_millis(500));
    };
    let shot_len = fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        shot_len > 10_000,
        "a screenshot was taken ({shot_len} bytes)"
    );
    for device in [
        "cam-1",
        "cam-2",
        "nvr-1",
        "office-pc",
        "printer-1",
        "fishtank",
        "hvac-1",
    ] {
        assert!(
            dom.contains(&format!("<td>{device}</td>")),
            "device {device} listed:\n{dom}"
        );
    }
    assert!(dom.contains("Quarantines"), "{dom}");
    assert!(
        dom.contains("<tr><td>cam-1</td><td>cameras</td><td>operator</td></tr>"),
        "cam-1 quarantined by the operator:\n{dom}"
    );
    assert!(
        dom.contains(UNKNOWN.mac),
        "the unknown device listed:\n{dom}"
    );
    assert!(
        dom.contains("no-lateral-cameras"),
        "the deny listed:\n{dom}"
    );
    assert!(dom.contains("<svg"), "the zone graph inlined");
    assert!(
        dom.contains("<title>enforcer status</title>"),
        "the note's script ran:\n{dom}"
    );
    assert!(!dom.to_lowercase().contains("<script"), "{dom}");
    assert!(
        dom.contains("&lt;script&gt;"),
        "the note shown as text:\n{dom}"
    );

    // The same page on the control socket (what `ssh -L 9470:SOCKET` forwards), read-only.
    let (head, body) = over_socket(site.router_ns(), &socket, "GET");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("Content-Security-Policy: default-src 'none'"),
        "{head}"
    );
    assert!(body.contains("<td>office-pc</td>"), "{body}");
    let (head, _) = over_socket(site.router_ns(), &socket, "POST");
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");

    daemon.stop(Duration::from_secs(5));
}
