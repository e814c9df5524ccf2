//! The command line (clap derive). Doc comments are the help text.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

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
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DevicesOutput {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a policy file or directory; exit 0 when valid (warnings printed), 1 otherwise.
    Check {
        /// Policy file (.yaml/.yml) or directory of them.
        path: PathBuf,
        /// Output format of the diagnostics.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show the compiled policy as the datapath will see it, and what would change against the
    /// running enforcer.
    Plan {
        /// Policy file (.yaml/.yml) or directory of them.
        path: PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Where the running daemon records the applied policy (for the diff).
        #[arg(long, default_value = "/var/lib/enforcer")]
        state_dir: PathBuf,
    },
    /// Attach to interfaces, enforce the policy, serve metrics, reload on SIGHUP or file change.
    Run {
        /// Policy file or directory.
        #[arg(long)]
        policy: PathBuf,
        /// Interface to enforce on (repeat for several).
        #[arg(long = "iface", required = true)]
        ifaces: Vec<String>,
        /// Address for the Prometheus `/metrics` endpoint.
        #[arg(long, default_value = "127.0.0.1:9469")]
        metrics_addr: SocketAddr,
        /// Listed devices that get `/metrics` series of their own (by id, so a device keeps its
        /// series across reloads); the rest are summed per zone as `device="zone:NAME"`.
        #[arg(long, default_value_t = crate::daemon::metrics::DEFAULT_MAX_DEVICES)]
        metrics_max_devices: usize,
        /// bpffs directory for pinned maps and links.
        #[arg(long, default_value = "/sys/fs/bpf/enforcer")]
        pin_dir: PathBuf,
        /// Directory for the daemon's state (stable ids, status).
        #[arg(long, default_value = "/var/lib/enforcer")]
        state_dir: PathBuf,
        /// Attach in generic (skb) mode even where the driver has native XDP.
        #[arg(long)]
        generic: bool,
    },
    /// Show what the running enforcer is doing.
    Status {
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        #[arg(long, default_value = "/sys/fs/bpf/enforcer")]
        pin_dir: PathBuf,
        #[arg(long, default_value = "/var/lib/enforcer")]
        state_dir: PathBuf,
    },
    /// Remove what the enforcer attached and pinned (all interfaces, or one).
    Detach {
        /// Only this interface.
        #[arg(long)]
        iface: Option<String>,
        #[arg(long, default_value = "/sys/fs/bpf/enforcer")]
        pin_dir: PathBuf,
        #[arg(long, default_value = "/var/lib/enforcer")]
        state_dir: PathBuf,
    },
    /// List devices as the datapath sees them: listed ones and discovered unknown ones.
    Devices {
        /// Only devices the policy does not list.
        #[arg(long)]
        unknown: bool,
        #[arg(long, value_enum, default_value_t = DevicesOutput::Table)]
        output: DevicesOutput,
        #[arg(long, default_value = "/sys/fs/bpf/enforcer")]
        pin_dir: PathBuf,
        #[arg(long, default_value = "/var/lib/enforcer")]
        state_dir: PathBuf,
    },
    /// Move a device to the quarantine zone now.
    Quarantine {
        /// Device name or MAC address.
        device: String,
        /// How long (e.g. 30m, 1h); until released when absent.
        #[arg(long = "for")]
        duration: Option<String>,
        #[arg(long, default_value = "/sys/fs/bpf/enforcer")]
        pin_dir: PathBuf,
        #[arg(long, default_value = "/var/lib/enforcer")]
        state_dir: PathBuf,
    },
    /// Release a device from quarantine.
    Release {
        /// Device name or MAC address.
        device: String,
        #[arg(long, default_value = "/sys/fs/bpf/enforcer")]
        pin_dir: PathBuf,
        #[arg(long, default_value = "/var/lib/enforcer")]
        state_dir: PathBuf,
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
