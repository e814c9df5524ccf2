//! `enforcer run`: the daemon, on a tokio runtime, stopped by SIGINT or SIGTERM.

use anyhow::{Context as _, Result};

use crate::{
    daemon::{self, DaemonError, error_chain},
    exit,
};

pub fn run(cfg: daemon::Config) -> Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let outcome = runtime.block_on(async {
        let ctrl_c = async {
            // If SIGINT cannot be watched, SIGTERM (handled inside) still stops the daemon.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        daemon::run(cfg, ctrl_c).await
    });
    Ok(match outcome {
        Ok(()) => exit::OK,
        Err(DaemonError::Policy(e)) => {
            tracing::error!("the policy is invalid; nothing was changed");
            #[expect(
                clippy::print_stderr,
                reason = "diagnostics for the operator, one per line"
            )]
            {
                eprintln!("{e}");
            }
            exit::INVALID
        }
        Err(e @ (DaemonError::IfaceWithInterfaces { .. } | DaemonError::NoInterfaces)) => {
            // The command line does not fit the policy: a usage error (docs/cli.md), as clap's
            // own conflicts are.
            tracing::error!(error = %error_chain(&e), "cannot start");
            exit::USAGE
        }
        Err(
            e @ (DaemonError::NotRoot
            | DaemonError::NoInterface(_)
            | DaemonError::Bpffs(_)
            | DaemonError::Host(_)
            | DaemonError::State(_)
            | DaemonError::MetricsServer { .. }
            | DaemonError::Control(_)
            | DaemonError::Locked(_)
            | DaemonError::StatusPage(_)),
        ) => {
            tracing::error!(error = %error_chain(&e), "cannot start");
            exit::ENVIRONMENT
        }
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "cannot enforce");
            exit::APPLY_FAILED
        }
    })
}
