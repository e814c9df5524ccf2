//! One system test's world: a site in network namespaces, a policy directory, and the pin and
//! state directories and control socket of the daemon the test runs on it. Test files add what
//! only they need (metrics readers, frame senders) as their own functions or extension traits.

#![allow(
    clippy::expect_used,
    reason = "test support: a world that cannot be built or a command that cannot be run fails the test, loudly"
)]

use std::{
    fs,
    net::SocketAddr,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use crate::netns::{self, Daemon, DeviceSpec, Site, enforcer_bin, spawn_daemon};

/// Where test daemons serve `/metrics`, inside the router's namespace (one per namespace, so
/// every test uses the same).
pub const METRICS: &str = "127.0.0.1:9469";

/// [`METRICS`] as an address.
///
/// # Panics
/// Never: the constant parses.
#[must_use]
pub fn metrics_addr() -> SocketAddr {
    METRICS.parse().expect("metrics address")
}

/// A site and the directories of the daemon that enforces on it; dropping it detaches that
/// daemon's program and removes the directories.
pub struct World {
    pub site: Site,
    pub name: String,
    pub policy_dir: PathBuf,
    pub pin_dir: PathBuf,
    pub state_dir: PathBuf,
    pub control_socket: PathBuf,
}

impl World {
    /// Builds the site `name` with `devices`, and empty directories for its daemon (whatever an
    /// earlier run of the same test left pinned is detached).
    ///
    /// # Panics
    /// When bpffs or the site cannot be set up.
    #[must_use]
    pub fn new(name: &str, devices: &[DeviceSpec]) -> Self {
        netns::ensure_bpffs().expect("bpffs");
        let site =
            Site::build(name, devices).unwrap_or_else(|e| panic!("build site {name}: {e:#}"));
        let base =
            std::env::temp_dir().join(format!("enforcer-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let policy_dir = base.join("policy");
        fs::create_dir_all(&policy_dir).expect("policy dir");
        let w = Self {
            site,
            name: name.to_owned(),
            policy_dir,
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/enforcer-test-{name}")),
            state_dir: base.join("state"),
            control_socket: base.join("run").join("control.sock"),
        };
        w.detach();
        w
    }

    /// Writes `file` in the policy directory: beside it, then renamed, as an editor or a git
    /// checkout does (a watching daemon never reads half a file).
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write(&self, file: &str, text: &str) {
        let tmp = self.policy_dir.join(format!(".{file}.tmp"));
        fs::write(&tmp, text).expect("write policy");
        fs::rename(&tmp, self.policy_dir.join(file)).expect("rename policy");
    }

    /// `enforcer run` on every router interface, with this world's directories.
    #[must_use]
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "run".to_owned(),
            "--policy".into(),
            self.policy_dir.display().to_string(),
        ];
        for i in self.site.router_ifaces() {
            a.extend(["--iface".to_owned(), i]);
        }
        a.extend([
            "--metrics-addr".into(),
            METRICS.into(),
            "--pin-dir".into(),
            self.pin_dir.display().to_string(),
            "--state-dir".into(),
            self.state_dir.display().to_string(),
            "--control-socket".into(),
            self.control_socket.display().to_string(),
        ]);
        a
    }

    /// Starts the daemon and waits until it serves its metrics.
    ///
    /// # Panics
    /// When it does not start or is not ready within 15 s.
    #[must_use]
    pub fn start(&self) -> Daemon {
        self.start_with(&[])
    }

    /// [`Self::start`] with more arguments.
    ///
    /// # Panics
    /// As [`Self::start`].
    #[must_use]
    pub fn start_with(&self, extra: &[&str]) -> Daemon {
        let mut args = self.args();
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let mut d = spawn_daemon(self.site.router_ns(), &args).expect("spawn daemon");
        d.wait_ready(
            self.site.router_ns(),
            metrics_addr(),
            Duration::from_secs(15),
        )
        .unwrap_or_else(|e| panic!("{}: daemon not ready: {e:#}", self.name));
        d
    }

    /// `enforcer ARGS --pin-dir ... --state-dir ...`: (status, stdout, stderr).
    #[must_use]
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let pin_dir = self.pin_dir.display().to_string();
        let state_dir = self.state_dir.display().to_string();
        let mut all = args.to_vec();
        all.extend(["--pin-dir", &pin_dir, "--state-dir", &state_dir]);
        run(&all)
    }

    /// `enforcer ARGS --state-dir ...`, for commands that take no `--pin-dir`.
    #[must_use]
    pub fn cli_state(&self, args: &[&str]) -> (i32, String, String) {
        let state_dir = self.state_dir.display().to_string();
        let mut all = args.to_vec();
        all.extend(["--state-dir", &state_dir]);
        run(&all)
    }

    /// Detaches this world's daemon's program and removes its pins (quietly: there may be none).
    pub fn detach(&self) {
        let _ = Command::new(enforcer_bin())
            .args(["detach", "--pin-dir"])
            .arg(&self.pin_dir)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// The namespace of device `device`.
    #[must_use]
    pub fn ns(&self, device: &str) -> &str {
        self.site.ns(device)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.detach();
        if let Some(base) = self.policy_dir.parent() {
            let _ = fs::remove_dir_all(base);
        }
    }
}

/// `enforcer ARGS`: (status, stdout, stderr).
///
/// # Panics
/// When the binary cannot be run.
#[must_use]
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(enforcer_bin())
        .args(args)
        .output()
        .expect("run enforcer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
