//! `cargo xtask demo`: the enforcer on a small IoT site in network namespaces.
//!
//! 1. Build (`cargo xtask build`; or take `$ENFORCER_BIN` when set), mount bpffs if needed.
//! 2. Build the site [`netns::DEMO_SITE`] with prefix `enf` (router namespace `enf-router`) and
//!    start listeners; check that every flow of [`CASES`] passes *without* the enforcer, so a
//!    "denied" later is the enforcer's doing and not a broken site.
//! 3. `enforcer run --policy policies --iface r-... --metrics-addr 127.0.0.1:9469 --pin-dir
//!    /sys/fs/bpf/enforcer-demo --state-dir <temp>` inside `enf-router` (via `nsenter --net`, see
//!    `netns::spawn_daemon`), wait until `/metrics` answers (10 s at most).
//! 4. Drive [`CASES`], the router's own connections ([`ROUTER_CASES`], judged at egress) and the
//!    camera's connections by name ([`NAME_CASES`]: looked up through the router's resolver, the
//!    demo internet's dnsmasq answering), print from/to/service/expected/observed, then a few
//!    lines of `/metrics`.
//! 5. Clean up: stop the daemon, `enforcer detach`, delete the namespaces. Ctrl-C does the same
//!    from the signal handler, then exits 130.

use std::{
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::Command,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    build, exec,
    netns::{self, DeviceSpec, Site},
};

const PREFIX: &str = "enf";
const PIN_DIR: &str = "/sys/fs/bpf/enforcer-demo";
const METRICS_ADDR: &str = "127.0.0.1:9469";
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a denied flow is given before it counts as denied.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allowed,
    Denied,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Service {
    Tcp(u16),
    Ping,
}

struct Case {
    from: DeviceSpec,
    to: DeviceSpec,
    v6: bool,
    service: Service,
    expected: Verdict,
    why: &'static str,
}

use Service::{Ping, Tcp};
use Verdict::{Allowed, Denied};
use netns::{CAMERA, FISHTANK, OFFICE_PC, PRINTER, RECORDER, UNKNOWN, WAN};

/// The flows the demo drives; `policies/` is written to give exactly these verdicts.
const CASES: &[Case] = &[
    Case {
        from: OFFICE_PC,
        to: PRINTER,
        v6: false,
        service: Tcp(9100),
        expected: Allowed,
        why: "office -> printers tcp/9100",
    },
    Case {
        from: OFFICE_PC,
        to: PRINTER,
        v6: false,
        service: Ping,
        expected: Allowed,
        why: "office -> printers icmp",
    },
    Case {
        from: CAMERA,
        to: RECORDER,
        v6: false,
        service: Tcp(554),
        expected: Allowed,
        why: "cameras -> recorders tcp/554",
    },
    Case {
        from: OFFICE_PC,
        to: WAN,
        v6: false,
        service: Tcp(443),
        expected: Allowed,
        why: "office -> internet tcp/443",
    },
    Case {
        from: OFFICE_PC,
        to: CAMERA,
        v6: false,
        service: Tcp(554),
        expected: Denied,
        why: "no rule (default deny)",
    },
    Case {
        from: CAMERA,
        to: OFFICE_PC,
        v6: false,
        service: Tcp(22),
        expected: Denied,
        why: "explicit deny cameras -> office",
    },
    Case {
        from: FISHTANK,
        to: WAN,
        v6: false,
        service: Tcp(443),
        expected: Denied,
        why: "explicit deny fishtank -> internet",
    },
    Case {
        from: UNKNOWN,
        to: PRINTER,
        v6: false,
        service: Tcp(9100),
        expected: Denied,
        why: "unknown device: quarantine",
    },
    Case {
        from: PRINTER,
        to: OFFICE_PC,
        v6: false,
        service: Tcp(22),
        expected: Denied,
        why: "no rule (default deny)",
    },
    Case {
        from: OFFICE_PC,
        to: PRINTER,
        v6: true,
        service: Tcp(9100),
        expected: Allowed,
        why: "office -> printers tcp/9100",
    },
    Case {
        from: FISHTANK,
        to: WAN,
        v6: true,
        service: Tcp(443),
        expected: Denied,
        why: "explicit deny fishtank -> internet",
    },
];

/// The router's own traffic, judged on its way out (the `router-upstream` rule of `policies/`).
struct RouterCase {
    to: DeviceSpec,
    v6: bool,
    service: Service,
    expected: Verdict,
    why: &'static str,
}

const ROUTER_CASES: &[RouterCase] = &[
    RouterCase {
        to: WAN,
        v6: false,
        service: Tcp(443),
        expected: Allowed,
        why: "router -> internet tcp/443 (updates)",
    },
    RouterCase {
        to: WAN,
        v6: true,
        service: Ping,
        expected: Allowed,
        why: "router -> internet icmp",
    },
    RouterCase {
        to: WAN,
        v6: false,
        service: Tcp(22),
        expected: Denied,
        why: "router -> internet: no rule (default deny)",
    },
];

/// A name the camera looks up through the router's resolver (`policies/30-names.yaml`), where the
/// demo internet's DNS server points it, and what a connection there on tcp/443 must get.
struct NameCase {
    name: &'static str,
    addr: Ipv4Addr,
    expected: Verdict,
    why: &'static str,
}

const NAME_CASES: &[NameCase] = &[
    NameCase {
        name: "updates.axis.example",
        addr: Ipv4Addr::new(192, 0, 2, 20),
        expected: Allowed,
        why: "its vendor's update server by name (cams-updates)",
    },
    NameCase {
        name: "updates-axis.example",
        addr: Ipv4Addr::new(192, 0, 2, 21),
        expected: Denied,
        why: "a look-alike name: no rule names it",
    },
];

/// TCP servers the cases connect to (a denied flow must not be "denied" for want of a server).
const LISTENERS: &[(DeviceSpec, u16)] = &[
    (PRINTER, 9100),
    (RECORDER, 554),
    (WAN, 443),
    (CAMERA, 554),
    (OFFICE_PC, 22),
    (WAN, 22),
];

/// What the Ctrl-C handler must undo; taken (once) by whoever cleans up first.
struct Cleanup {
    bin: PathBuf,
    state_dir: PathBuf,
    namespaces: Vec<String>,
    daemon_pid: Option<u32>,
    /// Process groups of the listeners.
    listeners: Vec<u32>,
    /// A daemon was started and `enforcer detach` has not run since.
    attached: bool,
}

static CLEANUP: Mutex<Option<Cleanup>> = Mutex::new(None);
/// Set by the Ctrl-C handler: the main thread stops driving traffic and waits to be exited.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Called between steps: once Ctrl-C was pressed, the handler owns the process (it cleans up and
/// exits), so the main thread must neither go on nor return (its own cleanup would race).
fn halt_if_interrupted() {
    while INTERRUPTED.load(Ordering::SeqCst) {
        thread::park();
    }
}

/// Has `pid` exited? (A zombie counts as exited: it is our child and nobody reaps it here.)
fn gone(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|st| st == "Z" || st == "X")
    })
}

fn with_cleanup(f: impl FnOnce(&mut Cleanup)) {
    if let Ok(mut g) = CLEANUP.lock()
        && let Some(c) = g.as_mut()
    {
        f(c);
    }
}

/// Undo everything (idempotent; safe to call from the signal handler and from the main path).
fn cleanup_now() {
    let taken = CLEANUP.lock().ok().and_then(|mut g| g.take());
    let Some(c) = taken else { return };
    for &pgid in &c.listeners {
        netns::signal_group(pgid, "KILL");
    }
    if let Some(pid) = c.daemon_pid {
        netns::signal_group(pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !gone(pid) {
            thread::sleep(Duration::from_millis(50));
        }
        netns::signal_group(pid, "KILL");
    }
    if c.attached {
        detach(
            &c.bin,
            &c.state_dir,
            c.namespaces.first().map(String::as_str),
            true,
        );
    }
    for ns in c.namespaces.iter().rev() {
        let _ = Command::new("ip").args(["netns", "del", ns]).output();
    }
    let _ = fs::remove_dir_all(&c.state_dir);
}

/// `enforcer detach` for the demo's pin dir, inside the router namespace when it still exists.
fn detach(
    bin: &std::path::Path,
    state_dir: &std::path::Path,
    router_ns: Option<&str>,
    report: bool,
) {
    let mut cmd =
        match router_ns.filter(|ns| std::path::Path::new("/var/run/netns").join(ns).exists()) {
            Some(ns) => netns::nsenter_net(ns, bin),
            None => Command::new(bin),
        };
    cmd.args(["detach", "--pin-dir", PIN_DIR, "--state-dir"])
        .arg(state_dir);
    match cmd.output() {
        Ok(o) if o.status.success() => {}
        Ok(o) if report => eprintln!(
            "demo: `enforcer detach` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) if report => eprintln!("demo: could not run enforcer detach: {e}"),
        Ok(_) | Err(_) => {}
    }
    // Whatever the daemon left pinned under the demo's own directory goes too.
    let _ = fs::remove_dir_all(PIN_DIR);
}

pub fn run() -> Result<()> {
    if !netns::is_root() {
        bail!("cargo xtask demo needs root (network namespaces and XDP): run it as root");
    }
    // ENFORCER_BIN: demo a binary built elsewhere (as the tests do); otherwise build it.
    let bin = match std::env::var_os("ENFORCER_BIN") {
        Some(p) => {
            println!("demo: using ENFORCER_BIN={}", p.to_string_lossy());
            PathBuf::from(p)
        }
        None => build::run()?,
    };
    netns::ensure_bpffs()?;
    let state_dir = std::env::temp_dir().join(format!("enforcer-demo-{}", std::process::id()));
    fs::create_dir_all(&state_dir).with_context(|| format!("create {}", state_dir.display()))?;
    *CLEANUP
        .lock()
        .map_err(|_| anyhow::anyhow!("cleanup lock poisoned"))? = Some(Cleanup {
        bin: bin.clone(),
        state_dir: state_dir.clone(),
        namespaces: Vec::new(),
        daemon_pid: None,
        listeners: Vec::new(),
        attached: false,
    });
    ctrlc::set_handler(|| {
        INTERRUPTED.store(true, Ordering::SeqCst);
        eprintln!("\ndemo: interrupted; cleaning up");
        cleanup_now();
        std::process::exit(130);
    })
    .context("install the Ctrl-C handler")?;

    let result = demo(&bin, &state_dir);
    halt_if_interrupted();
    cleanup_now();
    match &result {
        Ok(()) => println!("demo: cleaned up (daemon stopped, detached, namespaces deleted)"),
        Err(_) => eprintln!("demo: cleaned up after the failure below"),
    }
    result
}

fn demo(bin: &std::path::Path, state_dir: &std::path::Path) -> Result<()> {
    let metrics_addr: SocketAddr = METRICS_ADDR.parse().context("metrics address")?;
    let policy = exec::workspace_root().join("policies");
    if !policy.is_dir() {
        bail!(
            "{} is missing: the demo enforces the policy there",
            policy.display()
        );
    }
    // A previous run that was SIGKILLed may have left pins behind.
    detach(bin, state_dir, None, false);

    let site = build_site()?;
    let listeners = start_listeners(&site)?;
    let dns_server = start_names(&site)?;
    check_baseline(&site)?;

    let args = daemon_args(&site, &policy, state_dir);
    println!(
        "demo: starting in {}: {} {}",
        site.router_ns(),
        bin.display(),
        args.join(" ")
    );
    // Dropped after the daemon (declared before it): detach while the router namespace exists.
    let detach_guard = DetachGuard {
        bin,
        state_dir,
        router_ns: site.router_ns(),
    };
    with_cleanup(|c| c.attached = true);
    let mut daemon =
        netns::spawn_daemon(site.router_ns(), &args).context("start the enforcer daemon")?;
    let pid = daemon.id();
    with_cleanup(|c| c.daemon_pid = Some(pid));
    daemon
        .wait_ready(site.router_ns(), metrics_addr, READY_TIMEOUT)
        .context("the enforcer daemon did not come up")?;
    println!(
        "demo: enforcing; metrics at http://{METRICS_ADDR}/metrics inside {}",
        site.router_ns()
    );

    let wrong = flow_step(&site) + router_step(&site) + names_step(&site);
    println!();

    if let Some(st) = daemon.try_wait()? {
        bail!(
            "the enforcer daemon exited ({st}) during the demo; its output:\n{}",
            daemon.output()
        );
    }
    quarantine_step(bin, state_dir, &site, metrics_addr, &daemon)?;
    halt_if_interrupted();
    show_metrics(&site, metrics_addr);

    let status = daemon.stop(Duration::from_secs(5));
    with_cleanup(|c| c.daemon_pid = None);
    println!(
        "demo: daemon stopped ({})",
        status.map_or_else(|| "unknown".to_owned(), |s| s.to_string())
    );
    drop(daemon);
    drop(detach_guard);
    drop(listeners);
    drop(dns_server);
    drop(site);
    let flows = CASES.len() + ROUTER_CASES.len() + NAME_CASES.len();
    if wrong > 0 {
        bail!("{wrong} of {flows} flows did not get the expected verdict");
    }
    println!("demo: all {flows} flows got the expected verdict");
    Ok(())
}

/// The demo site in namespaces, with the router's default route out through the WAN.
fn build_site() -> Result<Site> {
    println!(
        "demo: building the site: router namespace {PREFIX}-router and {} devices",
        netns::DEMO_SITE.len()
    );
    let mut names = vec![format!("{PREFIX}-router")];
    names.extend(
        netns::DEMO_SITE
            .iter()
            .map(|d| format!("{PREFIX}-{}", d.name)),
    );
    with_cleanup(|c| c.namespaces = names);
    let site = Site::build(PREFIX, netns::DEMO_SITE).context("build the demo site")?;
    for n in site.nodes() {
        println!(
            "  {:<10} {:<8} {:<12} {:<18} {}",
            n.ns, n.router_iface, n.spec.v4, n.spec.v6, n.spec.mac
        );
    }
    // As on a real router, the default route leads out through the WAN: that makes r-wan the
    // uplink, whose segment is the internet's, not a segment of devices.
    for (family, via) in [("-4", WAN.v4.to_string()), ("-6", WAN.v6.to_string())] {
        netns::run(std::process::Command::new("ip").args([
            family,
            "-n",
            site.router_ns(),
            "route",
            "add",
            "default",
            "via",
            &via,
        ]))
        .context("default route via the WAN")?;
    }
    println!(
        "  default route of {} via {} (r-wan is the uplink)",
        site.router_ns(),
        WAN.v4
    );
    Ok(site)
}

/// The servers the demo's flows reach; each is killed when its handle drops (or by the cleanup).
fn start_listeners(site: &Site) -> Result<Vec<netns::Proc>> {
    let mut listeners = Vec::new();
    for &(dev, port) in LISTENERS {
        let l = netns::listen_tcp(site.ns(dev.name), port)?;
        let pgid = l.id();
        with_cleanup(|c| c.listeners.push(pgid));
        listeners.push(l);
    }
    Ok(listeners)
}

/// The demo internet's DNS server (dnsmasq, answering [`NAME_CASES`] and nothing else) and the
/// addresses the names point to; the camera reaches both before the enforcer runs.
fn start_names(site: &Site) -> Result<netns::Proc> {
    let wan = site.ns(WAN.name);
    for case in NAME_CASES {
        netns::run(Command::new("ip").args([
            "-n",
            wan,
            "addr",
            "add",
            &format!("{}/24", case.addr),
            "dev",
            netns::DEVICE_IFACE,
        ]))?;
    }
    let mut args: Vec<String> = [
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--port=53",
        "--pid-file",
    ]
    .map(str::to_owned)
    .into();
    args.push(format!("--listen-address={}", WAN.v4));
    args.extend(
        NAME_CASES
            .iter()
            .map(|c| format!("--address=/{}/{}", c.name, c.addr)),
    );
    let server = netns::serve_udp(wan, "dnsmasq", &args, 53).context("start dnsmasq")?;
    let pgid = server.id();
    with_cleanup(|c| c.listeners.push(pgid));
    let cam = site.ns(CAMERA.name);
    for case in NAME_CASES {
        if !netns::tcp_connects(cam, IpAddr::V4(case.addr), 443, PROBE_TIMEOUT) {
            bail!(
                "the site itself does not carry {} -> {}:443 (before any enforcement)",
                CAMERA.name,
                case.addr
            );
        }
    }
    Ok(server)
}

/// The camera looks each name of [`NAME_CASES`] up through the router's resolver, then connects
/// to the answer; prints the rows as [`flow_step`] does and returns how many were wrong.
fn names_step(site: &Site) -> usize {
    let cam = site.ns(CAMERA.name);
    let mut wrong = 0;
    for case in NAME_CASES {
        halt_if_interrupted();
        let answer = lookup(cam, CAMERA.router_v4, case.name);
        let observed = match answer {
            Some(a) if a == IpAddr::V4(case.addr) => {
                if netns::tcp_connects(cam, a, 443, PROBE_TIMEOUT) {
                    Allowed
                } else {
                    Denied
                }
            }
            _ => {
                println!(
                    "  {:<6} {:<6} the router's resolver answered {} with {answer:?}, not {}",
                    CAMERA.name, "dns", case.name, case.addr
                );
                wrong += 1;
                continue;
            }
        };
        wrong += row(
            CAMERA.name,
            WAN.name,
            "tcp/443 v4",
            case.expected,
            observed,
            &format!("{} {} ({})", case.name, case.why, case.addr),
        );
    }
    wrong
}

/// `dig @server name A` in `ns`: the first address of the answer.
fn lookup(ns: &str, server: Ipv4Addr, name: &str) -> Option<IpAddr> {
    let out = netns::in_ns(ns, "dig")
        .args([
            "+short",
            "+time=2",
            "+tries=2",
            &format!("@{server}"),
            name,
            "A",
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().parse().ok())
}

/// Every flow must get through before the enforcer runs, or a verdict later proves nothing.
fn check_baseline(site: &Site) -> Result<()> {
    print!("demo: baseline without the enforcer: ");
    let broken: Vec<String> = CASES
        .iter()
        .filter(|c| observe(site, c) != Allowed)
        .map(|c| format!("{} -> {} {}", c.from.name, c.to.name, service_name(c)))
        .collect();
    if !broken.is_empty() {
        bail!(
            "the site itself does not carry these flows (before any enforcement): {}",
            broken.join(", ")
        );
    }
    println!("all {} flows get through", CASES.len());
    Ok(())
}

/// `enforcer run` on every router interface of the site.
fn daemon_args(site: &Site, policy: &std::path::Path, state_dir: &std::path::Path) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "run".into(),
        "--policy".into(),
        policy.display().to_string(),
    ];
    for iface in site.router_ifaces() {
        args.extend(["--iface".into(), iface]);
    }
    args.extend([
        "--metrics-addr".into(),
        METRICS_ADDR.into(),
        "--pin-dir".into(),
        PIN_DIR.into(),
        "--state-dir".into(),
        state_dir.display().to_string(),
    ]);
    args
}

/// Drives every case and prints expected against observed; returns how many were wrong.
fn flow_step(site: &Site) -> usize {
    println!();
    println!(
        "  {:<6} {:<6} {:<13} {:<9} {:<9}      why",
        "from", "to", "service", "expected", "observed"
    );
    let mut wrong = 0;
    for case in CASES {
        let observed = observe(site, case);
        halt_if_interrupted();
        wrong += row(
            case.from.name,
            case.to.name,
            &service_name(case),
            case.expected,
            observed,
            case.why,
        );
    }
    wrong
}

/// Prints one row of the verdict table; 1 when `observed` is not `expected`, else 0.
fn row(
    from: &str,
    to: &str,
    service: &str,
    expected: Verdict,
    observed: Verdict,
    why: &str,
) -> usize {
    let ok = observed == expected;
    println!(
        "  {from:<6} {to:<6} {service:<13} {:<9} {:<9} {:<4} {why}",
        expected.as_str(),
        observed.as_str(),
        if ok { "ok" } else { "FAIL" }
    );
    usize::from(!ok)
}

/// A few lines of the daemon's `/metrics`.
fn show_metrics(site: &Site, metrics_addr: SocketAddr) {
    match netns::fetch_metrics(site.router_ns(), metrics_addr) {
        Ok(text) => {
            println!("demo: a few lines of /metrics:");
            for line in metrics_excerpt(&text, 15) {
                println!("  {line}");
            }
        }
        Err(e) => eprintln!("demo: could not fetch /metrics: {e:#}"),
    }
}

/// Runs `enforcer detach` (inside the router namespace) when dropped.
struct DetachGuard<'a> {
    bin: &'a std::path::Path,
    state_dir: &'a std::path::Path,
    router_ns: &'a str,
}

impl Drop for DetachGuard<'_> {
    fn drop(&mut self) {
        with_cleanup(|c| c.attached = false);
        detach(self.bin, self.state_dir, Some(self.router_ns), true);
    }
}

/// Up to `n` non-zero samples, the enforcer's verdict and rule counters first: they are the point.
fn metrics_excerpt(text: &str, n: usize) -> Vec<&str> {
    let rank = |l: &str| {
        [
            "enforcer_packets_total",
            "enforcer_rule_packets_total",
            "enforcer_quarantine",
            "enforcer_",
        ]
        .iter()
        .position(|p| l.starts_with(p))
        .unwrap_or(usize::MAX)
    };
    let mut samples: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty() && !l.ends_with(" 0"))
        .collect();
    samples.sort_by_key(|l| rank(l));
    samples.into_iter().take(n).collect()
}

/// Automatic quarantine, live: the fish-tank sensor keeps probing the internet it may not reach,
/// the datapath moves it to the quarantine zone on its own, then the operator releases it.
fn quarantine_step(
    bin: &std::path::Path,
    state_dir: &std::path::Path,
    site: &Site,
    metrics_addr: SocketAddr,
    daemon: &netns::Daemon,
) -> Result<()> {
    let gauge = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("enforcer_quarantined_devices "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    println!(
        "demo: the fish-tank sensor keeps probing the internet (60 denied packets in about a second)..."
    );
    let _ = netns::in_ns(site.ns(FISHTANK.name), "ping")
        .args([
            "-q",
            "-c",
            "60",
            "-i",
            "0.02",
            "-W",
            "1",
            &WAN.v4.to_string(),
        ])
        .output();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let text = netns::fetch_metrics(site.router_ns(), metrics_addr)?;
        if gauge(&text) >= 1.0 {
            break;
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "the fish-tank sensor was not quarantined; daemon output:\n{}",
                daemon.output()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(line) = daemon
        .output()
        .lines()
        .find(|l| l.contains("quarantined by the datapath"))
    {
        println!("  daemon log: {}", line.trim());
    }
    let enforcer = |args: &[&str]| -> Result<String> {
        let mut cmd = netns::nsenter_net(site.router_ns(), bin);
        cmd.args(args)
            .args(["--pin-dir", PIN_DIR, "--state-dir"])
            .arg(state_dir);
        netns::run(&mut cmd)
    };
    let table = enforcer(&["devices"])?;
    for line in table
        .lines()
        .filter(|l| l.starts_with("DEVICE") || l.starts_with("fishtank"))
    {
        println!("  {line}");
    }
    println!("demo: the operator releases it: enforcer release fishtank");
    print!("  {}", enforcer(&["release", "fishtank"])?);
    println!();
    Ok(())
}

/// The router's own connections, from its namespace; prints them as rows of the table. Returns
/// how many got another verdict than expected.
fn router_step(site: &Site) -> usize {
    let mut wrong = 0;
    for case in ROUTER_CASES {
        halt_if_interrupted();
        let to: IpAddr = case.to.addr(case.v6);
        let passed = match case.service {
            Tcp(port) => netns::tcp_connects(site.router_ns(), to, port, PROBE_TIMEOUT),
            Ping => netns::ping_within(site.router_ns(), to, PROBE_TIMEOUT),
        };
        let observed = if passed { Allowed } else { Denied };
        wrong += row(
            "router",
            case.to.name,
            &family_service(case.service, case.v6),
            case.expected,
            observed,
            case.why,
        );
    }
    wrong
}

fn service_name(case: &Case) -> String {
    family_service(case.service, case.v6)
}

fn family_service(service: Service, v6: bool) -> String {
    let fam = if v6 { "v6" } else { "v4" };
    match service {
        Tcp(port) => format!("tcp/{port} {fam}"),
        Ping => format!("icmp {fam}"),
    }
}

fn observe(site: &Site, case: &Case) -> Verdict {
    halt_if_interrupted();
    let from = site.ns(case.from.name);
    let to: IpAddr = case.to.addr(case.v6);
    let passed = match case.service {
        Tcp(port) => netns::tcp_connects(from, to, port, PROBE_TIMEOUT),
        Ping => netns::ping_within(from, to, PROBE_TIMEOUT),
    };
    if passed { Allowed } else { Denied }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_excerpt_puts_nonzero_verdict_counters_first() {
        let text = "# HELP process_cpu x\nprocess_cpu 1\nenforcer_devices 7\n# TYPE enforcer_packets_total counter\n\
                    enforcer_packets_total{verdict=\"deny\"} 2\nenforcer_packets_total{verdict=\"audit\"} 0\n\n";
        assert_eq!(
            metrics_excerpt(text, 2),
            [
                "enforcer_packets_total{verdict=\"deny\"} 2",
                "enforcer_devices 7"
            ]
        );
        assert_eq!(
            metrics_excerpt(text, 5).len(),
            3,
            "zero samples are left out"
        );
    }

    #[test]
    fn every_case_uses_a_device_of_the_demo_site_and_a_listened_port() {
        for c in CASES {
            assert!(netns::DEMO_SITE.contains(&c.from) && netns::DEMO_SITE.contains(&c.to));
            if let Tcp(port) = c.service {
                assert!(
                    LISTENERS.contains(&(c.to, port)),
                    "{} -> {} tcp/{port}: nothing listens",
                    c.from.name,
                    c.to.name
                );
            }
        }
    }
}
