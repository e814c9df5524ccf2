//! The command line (clap derive). Doc comments are the help text.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Zero-trust microsegmentation for IoT networks, enforced in XDP.
#[derive(Debug, Parser)]
#[command(name = "enforcer", version, about, long_about = None)]
pub struct Cli {
    /// Log format for the daemon and diagnostics on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// One JSON document on stdout, also when the command fails (`{"error": ..., "exit": ...}`).
    Json,
}

/// Where the running enforcer keeps its pins and its state (the same as `enforcer run` was given).
#[derive(Debug, Clone, Args)]
pub struct Paths {
    /// bpffs directory of the pinned maps and links.
    #[arg(long, default_value = "/sys/fs/bpf/enforcer")]
    pub pin_dir: PathBuf,
    /// The daemon's state directory (stable ids, status, the applied policy).
    #[arg(long, default_value = "/var/lib/enforcer")]
    pub state_dir: PathBuf,
    /// The daemon's control socket: operator actions (quarantine, release, detach) are reported
    /// there, so the daemon's log keeps an audit trail of them.
    #[arg(long, default_value = crate::daemon::control::DEFAULT_SOCKET)]
    pub control_socket: PathBuf,
}

/// A confirm window (`30s`, `5m`, `1h`), in the policy's duration syntax; at least a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window(pub std::time::Duration);

impl std::str::FromStr for Window {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match crate::policy::model::parse_duration(s) {
            Ok(0) => Err("a window of 0 would revert at once; give at least 1s".to_owned()),
            Ok(secs) => Ok(Self(std::time::Duration::from_secs(u64::from(secs)))),
            Err(p) => Err(format!("{}; {}", p.message, p.hint)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WatchVerdict {
    /// Denied packets.
    Deny,
    /// Packets audit mode let through that enforcing would deny.
    Audit,
}

impl WatchVerdict {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Deny => "deny",
            Self::Audit => "audit",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DevicesOutput {
    /// A table for people.
    Table,
    /// JSON for scripts.
    Json,
    /// Unknown devices as policy YAML, ready to adopt into a `devices:` file.
    Yaml,
}

/// What `enforcer graph` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphOutput {
    /// SVG, laid out by enforcer itself (no Graphviz needed).
    Svg,
    /// Graphviz dot, for tools (`dot -Tsvg`, diffs).
    Dot,
}

/// What `enforcer plan` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanOutput {
    /// For people.
    Text,
    /// One JSON document on stdout, also when the command fails (`{"error": ..., "exit": ...}`).
    Json,
    /// The candidate's graph as SVG, with what it adds to and removes from the running policy
    /// marked.
    Svg,
}

/// `enforcer graph`'s arguments.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Policy file (.yaml/.yml) or directory of them; several are merged into one policy.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphOutput::Svg)]
    pub output: GraphOutput,
    /// Only this zone, its devices and what they reach or are reached from.
    #[arg(long)]
    pub zone: Option<String>,
    /// Draw the traffic the daemon observed (its `observations.db` in `--state-dir`) over the
    /// policy: allow edges used and never used, and what audit let through that enforcing
    /// would deny.
    #[arg(long)]
    pub observed: bool,
    /// With `--observed`: how far back to look (`7d`, `24h`, `1d12h`).
    #[arg(long, default_value = "7d", value_parser = crate::commands::learn::parse_since, requires = "observed")]
    pub since: u64,
    /// With `--observed`: the daemon's state directory.
    #[arg(long, default_value = "/var/lib/enforcer", requires = "observed")]
    pub state_dir: PathBuf,
}

/// What `enforcer import` converts.
#[derive(Debug, Subcommand)]
pub enum Import {
    /// A MUD file (RFC 8520, read from a local file): its from-device and to-device ACLs become
    /// rules of the device NAME, printed for review. An entry that cannot be expressed is an
    /// error naming it; nothing is dropped silently.
    Mud {
        /// The MUD file (JSON). Fetching it and checking its signature is up to you: see
        /// docs/inventory.md.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The policy device the profile describes.
        #[arg(long, value_name = "NAME")]
        device: String,
        /// A destination for a MUD abstraction: `local-networks=zone:Z`,
        /// `controller:URI=device:D`, `my-controller=device:D`, `same-manufacturer=zone:Z`,
        /// `manufacturer:NAME=zone:Z`, `model:URI=zone:Z`. Repeat for each.
        #[arg(long = "map", value_name = "ABSTRACTION=DESTINATION")]
        maps: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ImportOutput::Yaml)]
        output: ImportOutput,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportOutput {
    /// Policy YAML (`rules:`), to review and add to the policy.
    Yaml,
    /// The same rules as JSON.
    Json,
}

/// `enforcer learn`'s arguments.
#[derive(Debug, Args)]
pub struct LearnArgs {
    /// Only this zone's devices.
    #[arg(long, conflicts_with = "device")]
    pub zone: Option<String>,
    /// Only this device.
    #[arg(long)]
    pub device: Option<String>,
    /// How far back to look (`7d`, `24h`, `1d12h`).
    #[arg(long, default_value = "7d", value_parser = crate::commands::learn::parse_since)]
    pub since: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = LearnOutput::Yaml)]
    pub output: LearnOutput,
    #[command(flatten)]
    pub paths: Paths,
}

/// `enforcer learn --output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LearnOutput {
    /// Policy YAML (a `rules:` file), counts as comments.
    Yaml,
    /// JSON for scripts.
    Json,
    /// A table for people.
    Table,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a policy file or directory; exit 0 when valid (warnings printed), 1 otherwise.
    Check {
        /// Policy file (.yaml/.yml) or directory of them; several are merged into one policy.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Output format of the diagnostics.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Run the policy's `tests:` and `guards:` through a private instance of the real XDP program
    /// with the compiled policy; exit 0 when all pass, 1 when one fails, 2 when the policy is
    /// invalid, 3 without CAP_BPF.
    Test {
        /// Policy file (.yaml/.yml) or directory of them; several are merged into one policy.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Why one flow is allowed or denied: a probe packet through the real program against the
    /// running policy (or a candidate with --policy), changing nothing.
    Explain {
        /// The sender: device:NAME, router, or an IPv4/IPv6 address.
        #[arg(long)]
        from: String,
        /// The destination: device:NAME, router, or an IPv4/IPv6 address.
        #[arg(long)]
        to: String,
        /// The service: tcp/PORT, udp/PORT or icmp.
        #[arg(long)]
        service: String,
        /// Judge against this candidate policy (file or directory; repeat to merge several),
        /// loaded privately, instead of the running one.
        #[arg(long = "policy", value_name = "PATH")]
        policies: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        #[command(flatten)]
        paths: Paths,
    },
    /// Show the compiled policy as the datapath will see it, and what would change against the
    /// running enforcer.
    Plan {
        /// Policy file (.yaml/.yml) or directory of them; several are merged into one policy.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = PlanOutput::Text)]
        output: PlanOutput,
        /// Where the running daemon records the applied policy (for the diff).
        #[arg(long, default_value = "/var/lib/enforcer")]
        state_dir: PathBuf,
    },
    /// Draw the policy as a graph: zones, networks, the router and devices named on their own as
    /// nodes, what rules allow and deny as edges; the same policy gives the same bytes.
    Graph(GraphArgs),
    /// Attach to interfaces, enforce the policy, serve metrics, reload on SIGHUP or file change.
    Run {
        /// Policy file or directory; repeat to merge several (`--policy fleet/common --policy
        /// fleet/branch-7`), with the uniqueness rules of one directory.
        #[arg(long = "policy", required = true, value_name = "PATH")]
        policies: Vec<PathBuf>,
        /// Interface to enforce on (repeat for several), for quick use: uplinks are then guessed
        /// from the default route. Refused when the policy lists `interfaces:`.
        #[arg(long = "iface")]
        ifaces: Vec<String>,
        /// Address for the Prometheus `/metrics` endpoint.
        #[arg(long, default_value = "127.0.0.1:9469")]
        metrics_addr: SocketAddr,
        /// Listed devices that get `/metrics` series of their own (by id, so a device keeps its
        /// series across reloads); the rest are summed per zone as `device="zone:NAME"`.
        #[arg(long, default_value_t = crate::daemon::metrics::DEFAULT_MAX_DEVICES)]
        metrics_max_devices: usize,
        /// The daemon's root-only control socket (`enforcer watch` and later commands use it).
        #[arg(long, default_value = crate::daemon::control::DEFAULT_SOCKET)]
        control_socket: PathBuf,
        /// bpffs directory for pinned maps and links.
        #[arg(long, default_value = "/sys/fs/bpf/enforcer")]
        pin_dir: PathBuf,
        /// Directory for the daemon's state (stable ids, status).
        #[arg(long, default_value = "/var/lib/enforcer")]
        state_dir: PathBuf,
        /// Attach in generic (skb) mode even where the driver has native XDP.
        #[arg(long)]
        generic: bool,
        /// Make every reload from a policy file change provisional for this long (`30s`, `5m`):
        /// it reverts by itself unless `enforcer confirm` (pull-based deployments).
        #[arg(long, value_name = "DURATION")]
        confirm_window: Option<Window>,
        /// Serve the read-only status page over TCP here too (it is always on the control
        /// socket); e.g. `127.0.0.1:9470`. Anyone who reaches it sees the devices: keep it local.
        #[arg(long, value_name = "ADDR")]
        status_addr: Option<SocketAddr>,
    },
    /// Hand the running daemon a candidate policy and enforce it now; with --confirm it reverts
    /// to the last confirmed policy by itself unless `enforcer confirm` comes in time.
    Apply {
        /// Policy file (.yaml/.yml) or directory of them; several are merged into one policy.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// How long the candidate is enforced unless confirmed (`30s`, `5m`, `1h`); without it
        /// the candidate is the policy for good at once.
        #[arg(long, value_name = "DURATION")]
        confirm: Option<Window>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// The daemon's control socket (as `enforcer run --control-socket`).
        #[arg(long, default_value = crate::daemon::control::DEFAULT_SOCKET)]
        control_socket: PathBuf,
    },
    /// Keep the provisional policy of `enforcer apply --confirm` for good.
    Confirm {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// The daemon's control socket (as `enforcer run --control-socket`).
        #[arg(long, default_value = crate::daemon::control::DEFAULT_SOCKET)]
        control_socket: PathBuf,
    },
    /// Show what the running enforcer is doing.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        #[command(flatten)]
        paths: Paths,
    },
    /// Remove what the enforcer attached and pinned (all interfaces, or one).
    Detach {
        /// Only this interface.
        #[arg(long)]
        iface: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        #[command(flatten)]
        paths: Paths,
    },
    /// List devices as the datapath sees them: listed ones and discovered unknown ones.
    Devices {
        /// Only devices the policy does not list.
        #[arg(long)]
        unknown: bool,
        /// Only drift: announcements that contradict a listed device's inventory (vendor, model,
        /// firmware), and MACs that changed their vendor class or DHCP parameter list.
        #[arg(long, conflicts_with = "unknown")]
        drift: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = DevicesOutput::Table)]
        output: DevicesOutput,
        #[command(flatten)]
        paths: Paths,
    },
    /// Convert a device profile into policy YAML for review; nothing is applied.
    #[command(subcommand)]
    Import(Import),
    /// Propose least-privilege allow rules from what the daemon observed (docs/learn.md).
    Learn(LearnArgs),
    /// Move a device to the quarantine zone now.
    Quarantine {
        /// Device name or MAC address.
        device: String,
        /// How long (e.g. 30m, 1h); until released when absent.
        #[arg(long = "for")]
        duration: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        #[command(flatten)]
        paths: Paths,
    },
    /// Release a device from quarantine.
    Release {
        /// Device name or MAC address.
        device: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        #[command(flatten)]
        paths: Paths,
    },
    /// Print the running daemon's deny, audit, quarantine and discovery events as they happen.
    Watch {
        /// Only this device's events (its name; `unknown` for unlisted sources).
        #[arg(long)]
        device: Option<String>,
        /// Only events of devices in this zone.
        #[arg(long)]
        zone: Option<String>,
        /// Only packet events with this verdict (no quarantine or discovery events).
        #[arg(long, value_enum)]
        verdict: Option<WatchVerdict>,
        /// Stop after this many events (exit 0).
        #[arg(long)]
        count: Option<u64>,
        /// Output format: a line per event for people, or one JSON object per line.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// The daemon's control socket (as `enforcer run --control-socket`).
        #[arg(long, default_value = crate::daemon::control::DEFAULT_SOCKET)]
        control_socket: PathBuf,
    },
    /// Print the JSON Schema of the policy file format (for editors and other tools).
    Schema,
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell) to stdout.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Write a man page for enforcer and each command into a directory (used by packaging).
    #[command(hide = true)]
    Manpages {
        /// Directory to write enforcer.1 and enforcer-COMMAND.1 into.
        dir: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    /// Every option and argument of every command says what it is for in `--help` (and so in the
    /// man pages and completions).
    #[test]
    fn every_option_of_every_command_has_help() {
        let mut missing = Vec::new();
        let mut stack = vec![(String::from("enforcer"), Cli::command())];
        while let Some((path, cmd)) = stack.pop() {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
                if !arg.is_hide_possible_values_set() {
                    for v in arg.get_possible_values() {
                        if v.get_help().is_none() && !v.is_hide_set() && id.contains("output") {
                            missing.push(format!("{path} --{id} {}", v.get_name()));
                        }
                    }
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {}", sub.get_name()));
                }
                stack.push((format!("{path} {}", sub.get_name()), sub.clone()));
            }
        }
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
