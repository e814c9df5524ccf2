//! Network-namespace harness: a small IoT site (a router namespace and one namespace per device,
//! each joined to the router by its own veth pair), traffic probes, listeners, and a guard for the
//! `enforcer run` daemon started inside the router namespace.
//!
//! Shared by the system tests in this crate and by `cargo xtask demo`. xtask compiles this very
//! file with `#[path]` (it cannot depend on this crate: that would build the `enforcer` crate, and
//! with it the eBPF object, before `cargo xtask setup` had a chance to install bpf-linker), so this
//! module uses only `std`, `anyhow` and `libc`, and shells out to `ip`, `socat`, `ping`, `curl`, `nsenter`
//! and `kill` (all installed by `cargo xtask setup`).
//!
//! Layout made by [`Site::build`] with prefix `P` and a device named `D`:
//! - namespace `P-router` (IPv4 and IPv6 forwarding on), holding interface `r-D`: the interface the
//!   enforcer runs on. No bridge: XDP on a bridge misses port-to-port traffic.
//! - namespace `P-D`, holding interface `eth0` (the veth peer) with the device's MAC and addresses
//!   and default routes (v4 and v6) via the router-side addresses.
//!
//! Interface names live inside the namespaces, so two sites with different prefixes never collide;
//! only namespace names (and, for daemon tests, the bpffs pin directory) are global. Everything is
//! deleted when the [`Site`] is dropped, also during a panic, and a build first removes leftovers
//! with the same names from a run that was killed.
//!
//! Tests that need root call [`require_root`]: when not root it prints why and returns `false`,
//! except under `CI=true`, where it panics (a kernel test is never skipped in CI).

use std::{
    fmt::Write as _,
    fs,
    io::Read as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};

/// Interface name of the device side of each veth pair, inside the device's namespace.
pub const DEVICE_IFACE: &str = "eth0";

/// One device of a site: its short name and how it is wired to the router.
///
/// IPv4 prefixes are /24 and IPv6 prefixes /64 on every link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Short name: namespace `<prefix>-<name>`, router interface `r-<name>` (at most 13 bytes).
    pub name: &'static str,
    /// MAC address of the device-side interface.
    pub mac: &'static str,
    /// Router-side address (the device's IPv4 default gateway).
    pub router_v4: Ipv4Addr,
    /// Router-side address (the device's IPv6 default gateway).
    pub router_v6: Ipv6Addr,
    /// The device's IPv4 address.
    pub v4: Ipv4Addr,
    /// The device's IPv6 address.
    pub v6: Ipv6Addr,
}

impl DeviceSpec {
    /// The device's IPv6 address when `v6`, else its IPv4 one.
    #[must_use]
    pub fn addr(&self, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(self.v6)
        } else {
            IpAddr::V4(self.v4)
        }
    }
}

const fn v6(a: u16, b: u16, c: u16, d: u16) -> Ipv6Addr {
    Ipv6Addr::new(a, b, c, 0, 0, 0, 0, d)
}

/// Camera (the `cameras` group of `policies/`).
pub const CAMERA: DeviceSpec = DeviceSpec {
    name: "cam1",
    mac: "02:00:00:00:01:10",
    router_v4: Ipv4Addr::new(10, 1, 1, 1),
    router_v6: v6(0xfd00, 1, 1, 1),
    v4: Ipv4Addr::new(10, 1, 1, 10),
    v6: v6(0xfd00, 1, 1, 0x10),
};
/// Video recorder (`recorders`).
pub const RECORDER: DeviceSpec = DeviceSpec {
    name: "nvr1",
    mac: "02:00:00:00:02:10",
    router_v4: Ipv4Addr::new(10, 1, 2, 1),
    router_v6: v6(0xfd00, 1, 2, 1),
    v4: Ipv4Addr::new(10, 1, 2, 10),
    v6: v6(0xfd00, 1, 2, 0x10),
};
/// Office PC (`office`).
pub const OFFICE_PC: DeviceSpec = DeviceSpec {
    name: "pc1",
    mac: "02:00:00:00:03:10",
    router_v4: Ipv4Addr::new(10, 1, 3, 1),
    router_v6: v6(0xfd00, 1, 3, 1),
    v4: Ipv4Addr::new(10, 1, 3, 10),
    v6: v6(0xfd00, 1, 3, 0x10),
};
/// Printer (`printers`).
pub const PRINTER: DeviceSpec = DeviceSpec {
    name: "prn1",
    mac: "02:00:00:00:04:10",
    router_v4: Ipv4Addr::new(10, 1, 4, 1),
    router_v6: v6(0xfd00, 1, 4, 1),
    v4: Ipv4Addr::new(10, 1, 4, 10),
    v6: v6(0xfd00, 1, 4, 0x10),
};
/// Fish-tank sensor (`fishtank`).
pub const FISHTANK: DeviceSpec = DeviceSpec {
    name: "fish",
    mac: "02:00:00:00:05:10",
    router_v4: Ipv4Addr::new(10, 1, 5, 1),
    router_v6: v6(0xfd00, 1, 5, 1),
    v4: Ipv4Addr::new(10, 1, 5, 10),
    v6: v6(0xfd00, 1, 5, 0x10),
};
/// A device the policy does not list (lands in the quarantine zone).
pub const UNKNOWN: DeviceSpec = DeviceSpec {
    name: "unk",
    mac: "02:00:00:00:09:66",
    router_v4: Ipv4Addr::new(10, 1, 9, 1),
    router_v6: v6(0xfd00, 1, 9, 1),
    v4: Ipv4Addr::new(10, 1, 9, 66),
    v6: v6(0xfd00, 1, 9, 0x66),
};
/// "The internet": a host behind the router's uplink.
pub const WAN: DeviceSpec = DeviceSpec {
    name: "wan",
    mac: "02:00:00:00:0f:10",
    router_v4: Ipv4Addr::new(192, 0, 2, 1),
    router_v6: v6(0x2001, 0xdb8, 0, 1),
    v4: Ipv4Addr::new(192, 0, 2, 10),
    v6: v6(0x2001, 0xdb8, 0, 0x10),
};

/// The demo site; `policies/` is written against exactly these devices.
pub const DEMO_SITE: &[DeviceSpec] =
    &[CAMERA, RECORDER, OFFICE_PC, PRINTER, FISHTANK, UNKNOWN, WAN];

/// A device of a built site.
#[derive(Debug, Clone)]
pub struct Node {
    /// How it was specified.
    pub spec: DeviceSpec,
    /// Its namespace.
    pub ns: String,
    /// The router-side interface (in the router namespace) it hangs off.
    pub router_iface: String,
}

/// A built site. Dropping it deletes every namespace it made (and with them the veths).
#[derive(Debug)]
pub struct Site {
    router: String,
    nodes: Vec<Node>,
    /// Every namespace created so far, deleted on drop (also after a half-finished build).
    created: Vec<String>,
}

impl Site {
    /// Create `<prefix>-router` and one namespace per device, wired as described in the module doc.
    ///
    /// # Errors
    /// When an `ip`/`sysctl` command fails; whatever was made so far is deleted again.
    pub fn build(prefix: &str, devices: &[DeviceSpec]) -> Result<Self> {
        let router = format!("{prefix}-router");
        let mut site = Self {
            router: router.clone(),
            nodes: Vec::new(),
            created: Vec::new(),
        };
        site.add_ns(&router)?;
        sysctl(
            &router,
            &[
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
                "net.ipv6.conf.default.accept_dad=0",
                "net.ipv6.conf.all.accept_dad=0",
            ],
        )?;
        for spec in devices {
            let node = site
                .add_device(prefix, *spec)
                .with_context(|| format!("wire device {}", spec.name))?;
            site.nodes.push(node);
        }
        Ok(site)
    }

    fn add_ns(&mut self, ns: &str) -> Result<()> {
        // A run that was SIGKILLed leaves its namespaces behind; start from scratch.
        if Path::new("/var/run/netns").join(ns).exists() {
            let _ = quiet(Command::new("ip").args(["netns", "del", ns]));
        }
        run(Command::new("ip").args(["netns", "add", ns]))?;
        self.created.push(ns.to_owned());
        run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]))?;
        Ok(())
    }

    fn add_device(&mut self, prefix: &str, spec: DeviceSpec) -> Result<Node> {
        let ns = format!("{prefix}-{}", spec.name);
        let riface = format!("r-{}", spec.name);
        if riface.len() > 15 {
            bail!(
                "device name {:?} too long: interface {riface} exceeds 15 bytes",
                spec.name
            );
        }
        self.add_ns(&ns)?;
        sysctl(
            &ns,
            &[
                "net.ipv6.conf.default.accept_dad=0",
                "net.ipv6.conf.all.accept_dad=0",
            ],
        )?;
        self.wire(&ns, &riface, spec)?;
        Ok(Node {
            spec,
            ns,
            router_iface: riface,
        })
    }

    /// Joins the device's namespace `ns` to the router by a veth pair (`riface` on the router's
    /// side), with the device's MAC, both ends' addresses and the device's default routes.
    fn wire(&self, ns: &str, riface: &str, spec: DeviceSpec) -> Result<()> {
        let r = self.router.clone();
        let ns = ns.to_owned();
        let riface = riface.to_owned();
        // Both ends are created directly in their namespaces: no name ever exists in the host one.
        run(Command::new("ip").args([
            "link",
            "add",
            &riface,
            "netns",
            &r,
            "type",
            "veth",
            "peer",
            "name",
            DEVICE_IFACE,
            "netns",
            &ns,
        ]))?;
        run(Command::new("ip").args([
            "-n",
            &ns,
            "link",
            "set",
            "dev",
            DEVICE_IFACE,
            "address",
            spec.mac,
        ]))?;
        let addrs = [
            (&r, format!("{}/24", spec.router_v4), &riface, false),
            (&r, format!("{}/64", spec.router_v6), &riface, true),
            (
                &ns,
                format!("{}/24", spec.v4),
                &DEVICE_IFACE.to_owned(),
                false,
            ),
            (
                &ns,
                format!("{}/64", spec.v6),
                &DEVICE_IFACE.to_owned(),
                true,
            ),
        ];
        for (n, addr, dev, is_v6) in &addrs {
            let mut cmd = Command::new("ip");
            cmd.args(["-n", n, "addr", "add", addr, "dev", dev]);
            if *is_v6 {
                cmd.arg("nodad");
            }
            run(&mut cmd)?;
        }
        run(Command::new("ip").args(["-n", &r, "link", "set", "dev", &riface, "up"]))?;
        run(Command::new("ip").args(["-n", &ns, "link", "set", "dev", DEVICE_IFACE, "up"]))?;
        run(Command::new("ip").args([
            "-n",
            &ns,
            "-4",
            "route",
            "add",
            "default",
            "via",
            &spec.router_v4.to_string(),
        ]))?;
        run(Command::new("ip").args([
            "-n",
            &ns,
            "-6",
            "route",
            "add",
            "default",
            "via",
            &spec.router_v6.to_string(),
        ]))?;
        Ok(())
    }

    /// Deletes the veth pair of the device `name` (both ends: its router-side interface is gone,
    /// as when a VLAN or an adapter is removed).
    ///
    /// # Errors
    /// When `ip` fails.
    pub fn unwire(&self, name: &str) -> Result<()> {
        let node = self.node(name);
        run(Command::new("ip").args(["-n", &self.router, "link", "del", &node.router_iface]))?;
        Ok(())
    }

    /// Wires the device `name` to the router again after [`Site::unwire`]: a new veth pair (a new
    /// device under the old name), addressed and routed as at [`Site::build`].
    ///
    /// # Errors
    /// When an `ip` command fails.
    pub fn rewire(&self, name: &str) -> Result<()> {
        let node = self.node(name).clone();
        self.wire(&node.ns, &node.router_iface, node.spec)
    }

    /// Name of the router namespace.
    #[must_use]
    pub fn router_ns(&self) -> &str {
        &self.router
    }

    /// The devices, in the order given to [`Site::build`].
    #[must_use]
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The device with this short name.
    ///
    /// # Panics
    /// When the site has no such device (a bug in the test).
    #[must_use]
    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.spec.name == name)
            .unwrap_or_else(|| panic!("site {} has no device {name:?}", self.router))
    }

    /// Namespace of the device with this short name (see [`Site::node`]).
    #[must_use]
    pub fn ns(&self, name: &str) -> &str {
        &self.node(name).ns
    }

    /// The router-side interfaces: what `enforcer run --iface` takes.
    #[must_use]
    pub fn router_ifaces(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.router_iface.clone()).collect()
    }

    /// Every namespace this site made (router first).
    #[must_use]
    pub fn namespaces(&self) -> &[String] {
        &self.created
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            let _ = quiet(Command::new("ip").args(["netns", "del", ns]));
        }
    }
}

fn sysctl(ns: &str, settings: &[&str]) -> Result<()> {
    run(in_ns(ns, "sysctl").arg("-qw").args(settings))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Running commands

/// `ip netns exec NS PROGRAM`: add arguments to the returned command. Fine for traffic tools; not
/// for anything that pins to bpffs (use [`nsenter_net`]: `ip netns exec` mounts a private /sys).
#[must_use]
pub fn in_ns(ns: &str, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, program]);
    cmd
}

/// `nsenter --net=/var/run/netns/NS -- PROGRAM`: joins only the network namespace, so bpffs pins
/// land in the real /sys/fs/bpf.
#[must_use]
pub fn nsenter_net(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/var/run/netns/{ns}"))
        .arg("--")
        .arg(program);
    cmd
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run to completion; error (with the command line and its stderr) unless it exits 0. Returns stdout.
///
/// # Errors
/// When the command cannot start or exits non-zero.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("start `{}`", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn quiet(cmd: &mut Command) -> std::io::Result<ExitStatus> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}

/// Run with a hard deadline: the child is killed when it overruns. `None` when it timed out.
/// Its output is read while it runs: a child that writes more than a pipe holds (a large
/// `/metrics` page) would otherwise block until the deadline.
///
/// # Errors
/// When the command cannot start.
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Result<Option<Output>> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start `{}`", describe(cmd)))?;
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    // After a timeout the readers are left to finish alone: a grandchild may still hold the
    // pipes.
    let Some(status) = status else {
        return Ok(None);
    };
    Ok(Some(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }))
}

// ---------------------------------------------------------------------------------------------
// Probes

fn socat_addr(kind: &str, addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{kind}4:{a}:{port}"),
        IpAddr::V6(a) => format!("{kind}6:[{a}]:{port}"),
    }
}

fn secs(timeout: Duration) -> String {
    format!("{:.1}", timeout.as_secs_f64().max(0.1))
}

/// Does a TCP connection from namespace `ns` to `addr:port` complete within `timeout`?
/// (A refused connection is `false` too: make sure something listens, see [`listen_tcp`].)
#[must_use]
pub fn tcp_connects(ns: &str, addr: IpAddr, port: u16, timeout: Duration) -> bool {
    let target = format!(
        "{},connect-timeout={}",
        socat_addr("TCP", addr, port),
        secs(timeout)
    );
    let mut cmd = in_ns(ns, "socat");
    cmd.args(["-u", "OPEN:/dev/null", &target]);
    matches!(output_within(&mut cmd, timeout + Duration::from_secs(1)), Ok(Some(o)) if o.status.success())
}

/// Send one UDP datagram from `ns` to `addr:port` and wait for it to come back (see
/// [`listen_udp_echo`]). `true` when the echo arrived within `timeout`.
#[must_use]
pub fn udp_echo(ns: &str, addr: IpAddr, port: u16, timeout: Duration) -> bool {
    let token = format!("enforcer-echo-{}", std::process::id());
    let script = format!(
        "echo {token} | socat -T {} - '{}'",
        secs(timeout),
        socat_addr("UDP", addr, port)
    );
    let mut cmd = in_ns(ns, "sh");
    cmd.args(["-c", &script]);
    matches!(output_within(&mut cmd, timeout + Duration::from_secs(1)),
        Ok(Some(o)) if String::from_utf8_lossy(&o.stdout).contains(&token))
}

/// One ICMP echo (v4 or v6 after `addr`) from `ns`; `true` when the reply came within 2 s.
#[must_use]
pub fn ping(ns: &str, addr: IpAddr) -> bool {
    ping_within(ns, addr, Duration::from_secs(2))
}

/// One ICMP echo with an explicit timeout (whole seconds, at least 1).
#[must_use]
pub fn ping_within(ns: &str, addr: IpAddr, timeout: Duration) -> bool {
    let family = if addr.is_ipv6() { "-6" } else { "-4" };
    let wait = timeout.as_secs().max(1).to_string();
    let mut cmd = in_ns(ns, "ping");
    cmd.args([
        family,
        "-n",
        "-q",
        "-c",
        "1",
        "-W",
        &wait,
        &addr.to_string(),
    ]);
    matches!(output_within(&mut cmd, timeout + Duration::from_secs(1)), Ok(Some(o)) if o.status.success())
}

// ---------------------------------------------------------------------------------------------
// Listeners

/// A background process (a listener, or the daemon's `nsenter`) in its own process group;
/// the group is killed on drop.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    what: String,
}

impl Proc {
    fn spawn(mut cmd: Command, what: String) -> Result<Self> {
        use std::os::unix::process::CommandExt as _;
        cmd.stdin(Stdio::null()).process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("start {what}: `{}`", describe(&cmd)))?;
        Ok(Self { child, what })
    }

    /// Process id (also the process group id).
    #[must_use]
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once it has exited.
    ///
    /// # Errors
    /// When waiting fails.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Send SIGTERM to the group and wait up to `grace`, then SIGKILL. Returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Ok(Some(st)) = self.child.try_wait() {
            return Some(st);
        }
        signal_group(self.child.id(), "TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            thread::sleep(Duration::from_millis(50));
        }
        signal_group(self.child.id(), "KILL");
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.stop(Duration::from_secs(2)).is_none() {
            eprintln!("netns: could not reap {}", self.what);
        }
    }
}

/// `kill -SIG -- -PGID` (std has no kill(2); `kill` is from procps/util-linux).
pub fn signal_group(pgid: u32, sig: &str) {
    let _ = quiet(
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg("--")
            .arg(format!("-{pgid}")),
    );
}

/// How long a listener may take to come up. Generous: on a loaded 2-core machine starting
/// `socat` inside a namespace has taken seconds, and the wait ends as soon as it listens.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(15);

fn wait_listening(ns: &str, proto: &str, port: u16, proc: &mut Proc) -> Result<()> {
    let flag = if proto == "tcp" { "-Hltn" } else { "-Hlun" };
    let deadline = Instant::now() + LISTEN_TIMEOUT;
    loop {
        let out = run(in_ns(ns, "ss").args([flag, &format!("sport = :{port}")]))?;
        if !out.trim().is_empty() {
            return Ok(());
        }
        if let Some(st) = proc.try_wait()? {
            bail!("{} exited ({st}) before listening", proc.what);
        }
        if Instant::now() >= deadline {
            bail!("{} not listening after {LISTEN_TIMEOUT:?}", proc.what);
        }
        thread::sleep(Duration::from_millis(30));
    }
}

/// `program ARGS` in `ns` as a server on UDP `port`; returns once it listens. Killed on drop.
///
/// # Errors
/// When it cannot start or does not listen within 15 s.
pub fn serve_udp(ns: &str, program: &str, args: &[String], port: u16) -> Result<Proc> {
    let mut cmd = in_ns(ns, program);
    cmd.args(args).stdout(Stdio::null());
    let mut p = Proc::spawn(cmd, format!("{program} {ns}:{port}"))?;
    wait_listening(ns, "udp", port, &mut p)?;
    Ok(p)
}

/// A TCP server on `port` (IPv4 and IPv6) in `ns` that echoes what it gets; returns once it
/// listens. Killed on drop.
///
/// # Errors
/// When socat cannot start or does not listen within 15 s.
pub fn listen_tcp(ns: &str, port: u16) -> Result<Proc> {
    let mut cmd = in_ns(ns, "socat");
    cmd.args([
        &format!("TCP6-LISTEN:{port},fork,reuseaddr,ipv6only=0"),
        "PIPE",
    ])
    .stdout(Stdio::null());
    let mut p = Proc::spawn(cmd, format!("tcp listener {ns}:{port}"))?;
    wait_listening(ns, "tcp", port, &mut p)?;
    Ok(p)
}

/// A UDP echo server on `port` (IPv4 and IPv6) in `ns`; returns once it listens. Killed on drop.
///
/// # Errors
/// When socat cannot start or does not listen within 15 s.
pub fn listen_udp_echo(ns: &str, port: u16) -> Result<Proc> {
    let mut cmd = in_ns(ns, "socat");
    cmd.args([
        &format!("UDP6-RECVFROM:{port},fork,reuseaddr,ipv6only=0"),
        "PIPE",
    ])
    .stdout(Stdio::null());
    let mut p = Proc::spawn(cmd, format!("udp echo {ns}:{port}"))?;
    wait_listening(ns, "udp", port, &mut p)?;
    Ok(p)
}

// ---------------------------------------------------------------------------------------------
// The daemon

/// The binary under test: `$ENFORCER_BIN`, else `target/release/enforcer` of this workspace.
#[must_use]
pub fn enforcer_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ENFORCER_BIN") {
        return PathBuf::from(p);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .unwrap_or(manifest)
        .join("target/release/enforcer")
}

/// `enforcer run ...` (or any enforcer subcommand) running inside the router namespace via
/// `nsenter --net` (not `ip netns exec`: its private /sys would swallow the bpffs pins).
/// stdout and stderr go to a temporary log file. SIGTERM, then SIGKILL, on drop.
#[derive(Debug)]
pub struct Daemon {
    proc: Proc,
    log: PathBuf,
}

/// Start `$ENFORCER_BIN args...` in the network namespace `router_ns`.
///
/// # Errors
/// When the binary does not exist or cannot be started.
pub fn spawn_daemon<S: AsRef<std::ffi::OsStr>>(router_ns: &str, args: &[S]) -> Result<Daemon> {
    let bin = enforcer_bin();
    if !bin.is_file() {
        bail!(
            "{} does not exist: run `cargo xtask build` or set ENFORCER_BIN",
            bin.display()
        );
    }
    let log = std::env::temp_dir().join(format!(
        "enforcer-daemon-{router_ns}-{}.log",
        std::process::id()
    ));
    let file = fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
    let mut cmd = nsenter_net(router_ns, &bin);
    cmd.args(args).stdout(file.try_clone()?).stderr(file);
    let proc = Proc::spawn(cmd, format!("enforcer daemon in {router_ns}"))?;
    Ok(Daemon { proc, log })
}

impl Daemon {
    /// Everything the daemon printed so far (stdout and stderr interleaved).
    #[must_use]
    pub fn output(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Process id of the `nsenter` wrapper, which execs the daemon (so it is the daemon's pid).
    #[must_use]
    pub fn id(&self) -> u32 {
        self.proc.id()
    }

    /// `Some(status)` when the daemon has exited.
    ///
    /// # Errors
    /// When waiting fails.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.proc.try_wait()
    }

    /// Poll `http://metrics_addr/metrics` inside `router_ns` until it answers (bounded by
    /// `timeout`). Fails at once, with the daemon's output, if the daemon exits.
    ///
    /// # Errors
    /// When the daemon exits or the endpoint does not answer in time.
    pub fn wait_ready(
        &mut self,
        router_ns: &str,
        metrics_addr: SocketAddr,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait()? {
                bail!(
                    "the enforcer daemon exited ({st}) before it was ready; its output:\n{}",
                    indent(&self.output())
                );
            }
            if fetch_metrics(router_ns, metrics_addr).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the enforcer daemon did not serve http://{metrics_addr}/metrics within {:?}; its output:\n{}",
                    timeout,
                    indent(&self.output())
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; returns how it exited.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.proc.stop(grace)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.proc.stop(Duration::from_secs(5));
        let _ = fs::remove_file(&self.log);
    }
}

fn indent(s: &str) -> String {
    let mut out = String::new();
    let s = if s.trim().is_empty() {
        "(no output)"
    } else {
        s.trim_end()
    };
    for line in s.lines() {
        let _ = writeln!(out, "    | {line}");
    }
    out
}

/// GET `http://addr/metrics` from inside `router_ns` (with curl, 2 s limit).
///
/// # Errors
/// When the endpoint does not answer with 2xx.
pub fn fetch_metrics(router_ns: &str, addr: SocketAddr) -> Result<String> {
    let url = format!("http://{addr}/metrics");
    let mut cmd = in_ns(router_ns, "curl");
    cmd.args(["-sS", "--fail", "--max-time", "2", &url]);
    let out = output_within(&mut cmd, Duration::from_secs(3))?
        .ok_or_else(|| anyhow!("GET {url} timed out"))?;
    if !out.status.success() {
        bail!(
            "GET {url} in {router_ns} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---------------------------------------------------------------------------------------------
// In-process work inside a namespace

/// Run `f` on a fresh thread that has joined the network namespace `ns` (`setns(2)`; a thread's
/// network namespace is its own, so the caller's is untouched). For tests that load and attach the
/// XDP program in-process, or open sockets inside the site; build a current-thread tokio runtime
/// inside `f` for async code. bpffs is unaffected (only the network namespace changes).
///
/// # Errors
/// When the namespace cannot be opened or joined; a panic in `f` is propagated.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    use std::os::fd::AsRawFd as _;
    let path = Path::new("/var/run/netns").join(ns);
    let file = fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
    thread::scope(|scope| {
        let worker = scope.spawn(move || -> Result<T> {
            // SAFETY: setns only reads the fd, which `file` keeps open for the call; it changes
            // the namespace of this thread alone, which is dropped when `f` returns.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("setns into {ns}"));
            }
            Ok(f())
        });
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

// ---------------------------------------------------------------------------------------------
// Environment

/// Mount bpffs on /sys/fs/bpf unless it already is (the daemon pins there).
///
/// # Errors
/// When the mount fails.
pub fn ensure_bpffs() -> Result<()> {
    let mounts = fs::read_to_string("/proc/mounts").context("read /proc/mounts")?;
    if mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, kind) = (f.next(), f.next(), f.next());
        dir == Some("/sys/fs/bpf") && kind == Some("bpf")
    }) {
        return Ok(());
    }
    run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))
        .context("mount bpffs on /sys/fs/bpf")?;
    Ok(())
}

/// Is the effective user root?
#[must_use]
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .is_some_and(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|euid| euid == "0"))
                .unwrap_or(false)
        })
}

/// Is `CI=true` (or `CI=1`) set? Then kernel tests must run, never skip.
#[must_use]
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// For tests that need root: `true` when root. Otherwise prints why the test is skipped and
/// returns `false`, or panics under `CI=true`.
///
/// # Panics
/// When not root under `CI=true`.
#[must_use]
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        !in_ci(),
        "{test}: needs root (network namespaces, XDP), and CI=true forbids skipping"
    );
    eprintln!("{test}: skipped: needs root (network namespaces, XDP); run `sudo cargo xtask test`");
    false
}

/// Sends `count` IPv4 packets of protocol `proto` (no payload of note) from namespace `ns` to
/// `dst` through a raw IP socket: traffic of a protocol no flow is made for (GRE, say). Returns how
/// many the kernel took.
///
/// # Errors
/// When the namespace or the socket cannot be had.
pub fn send_ip_packets(ns: &str, dst: Ipv4Addr, proto: u8, count: usize) -> Result<usize> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    in_netns(ns, || -> Result<usize> {
        // SAFETY: plain socket(2); the fd is owned below.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, i32::from(proto)) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error()).context("raw IP socket");
        }
        // SAFETY: `raw` is a fresh fd nobody else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_in is plain data, valid all zero.
        let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        to.sin_family = u16::try_from(libc::AF_INET).unwrap_or_default();
        to.sin_addr.s_addr = u32::from(dst).to_be();
        let payload = [0u8; 16];
        let mut sent = 0;
        for _ in 0..count {
            // SAFETY: the buffer and the address are valid for the lengths given, for the call.
            let n = unsafe {
                libc::sendto(
                    sock.as_raw_fd(),
                    payload.as_ptr().cast(),
                    payload.len(),
                    0,
                    (&raw const to).cast(),
                    u32::try_from(size_of::<libc::sockaddr_in>()).unwrap_or_default(),
                )
            };
            sent += usize::from(usize::try_from(n).is_ok_and(|n| n == payload.len()));
        }
        Ok(sent)
    })?
}

// ---------------------------------------------------------------------------------------------
// Raw frames

/// Send each of `frames` (whole Ethernet frames) out of `iface` in the namespace `ns` through an
/// `AF_PACKET` socket: frames from many source MACs out of one namespace, at a rate no device's
/// stack would send. Returns how many the kernel took.
///
/// # Errors
/// When the namespace, the interface or the socket cannot be had; a frame the kernel refuses is
/// only not counted.
pub fn send_raw_frames(ns: &str, iface: &str, frames: &[Vec<u8>]) -> Result<usize> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    in_netns(ns, || -> Result<usize> {
        let name = std::ffi::CString::new(iface).context("interface name")?;
        // SAFETY: `name` is a NUL-terminated string that outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("{iface} in {ns}"));
        }
        // Protocol 0: this socket only sends; it receives nothing.
        // SAFETY: plain socket(2); the fd is owned below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error()).context("AF_PACKET socket");
        }
        // SAFETY: `raw` is a fresh fd nobody else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain data, valid all zero.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = u16::try_from(libc::AF_PACKET).unwrap_or_default();
        to.sll_protocol = u16::try_from(libc::ETH_P_IP).unwrap_or_default().to_be();
        to.sll_ifindex = i32::try_from(ifindex).context("ifindex")?;
        let mut sent = 0;
        for frame in frames {
            // A full transmit queue (ENOBUFS, on a loaded machine) is waited out, briefly: the
            // caller counts frames that left, and a flood test wants all of them to.
            for _attempt in 0..200 {
                // SAFETY: the buffer and the address are valid for the lengths given, for the call.
                let n = unsafe {
                    libc::sendto(
                        sock.as_raw_fd(),
                        frame.as_ptr().cast(),
                        frame.len(),
                        0,
                        (&raw const to).cast(),
                        u32::try_from(size_of::<libc::sockaddr_ll>()).unwrap_or_default(),
                    )
                };
                if usize::try_from(n).is_ok_and(|n| n == frame.len()) {
                    sent += 1;
                    break;
                }
                let err = std::io::Error::last_os_error().raw_os_error();
                if err != Some(libc::ENOBUFS) && err != Some(libc::EAGAIN) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        Ok(sent)
    })?
}
