//! Which interfaces the daemon enforces on, and which of them are uplinks: the policy's
//! `interfaces:` (reviewable in git), or `--iface` for quick use (uplinks then guessed from the
//! default route). Read at start; a reload that changes `interfaces:` says it waits for a restart.

use tracing::warn;

use super::{Config, DaemonError};
use crate::policy;

/// How the uplinks among the enforced interfaces are known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uplinks {
    /// `--iface`: those that carry a default route.
    Guessed,
    /// The policy's `interfaces:`: those with `role: uplink`.
    Declared(Vec<String>),
}

/// The interfaces to enforce on and how their uplinks are known: the policy's `interfaces:`, or
/// `--iface` (uplinks guessed, with a warning saying so); both, or neither, is refused.
pub(super) fn resolve_interfaces(
    cfg: &Config,
    policy: &policy::Policy,
) -> Result<Config, DaemonError> {
    let listed = &policy.interfaces;
    if let Some(first) = listed.values().next() {
        if !cfg.ifaces.is_empty() {
            return Err(DaemonError::IfaceWithInterfaces {
                at: first.loc.to_string(),
            });
        }
        let ifaces = listed.keys().cloned().collect();
        let uplinks = listed
            .values()
            .filter(|i| i.role == policy::model::Role::Uplink)
            .map(|i| i.name.clone())
            .collect();
        return Ok(Config {
            ifaces,
            uplinks: Uplinks::Declared(uplinks),
            ..cfg.clone()
        });
    }
    if cfg.ifaces.is_empty() {
        return Err(DaemonError::NoInterfaces);
    }
    warn!(
        ifaces = ?cfg.ifaces,
        "interfaces from --iface: uplinks are guessed (those with a default route); list them in the policy's `interfaces:` to say which are uplinks"
    );
    Ok(Config {
        uplinks: Uplinks::Guessed,
        ..cfg.clone()
    })
}

/// Warns when a reloaded policy's `interfaces:` differs from the set enforced: the interfaces and
/// their roles are read at start only.
pub(super) fn warn_interfaces_changed(cfg: &Config, policy: &policy::Policy) {
    let now: Vec<(&str, bool)> = policy
        .interfaces
        .values()
        .map(|i| (i.name.as_str(), i.role == policy::model::Role::Uplink))
        .collect();
    let running: Vec<(&str, bool)> = match &cfg.uplinks {
        Uplinks::Guessed => Vec::new(),
        Uplinks::Declared(uplinks) => cfg
            .ifaces
            .iter()
            .map(|i| (i.as_str(), uplinks.contains(i)))
            .collect(),
    };
    if now != running {
        warn!(
            enforced = ?cfg.ifaces,
            "the policy's `interfaces:` changed; the interfaces and their roles stay as at start until the daemon restarts (systemctl restart enforcer)"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn config(ifaces: &[&str]) -> Config {
        Config {
            policies: vec![PathBuf::from("p")],
            ifaces: ifaces.iter().map(|i| (*i).to_owned()).collect(),
            uplinks: Uplinks::Guessed,
            metrics_addr: "127.0.0.1:9469".parse().expect("literal"),
            metrics_max_devices: 1,
            control_socket: PathBuf::from("c"),
            pin_dir: PathBuf::from("pins"),
            state_dir: PathBuf::from("state"),
            generic: false,
            confirm_window: None,
        }
    }

    const SITE: &str = "zones: {office: {}, quarantine: {}}\ndevices:\n  pc: {zone: office, addresses: [10.0.0.9]}\n";

    fn policy(extra: &str) -> policy::Policy {
        policy::parse_str("p.yaml", &format!("{SITE}{extra}")).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_policys_interfaces_are_enforced_with_their_declared_uplinks() {
        let p = policy("interfaces:\n  wan0: {role: uplink}\n  lan0: {role: segment}\n");
        let cfg = resolve_interfaces(&config(&[]), &p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.ifaces, ["lan0", "wan0"]);
        assert_eq!(cfg.uplinks, Uplinks::Declared(vec!["wan0".to_owned()]));
    }

    #[test]
    fn iface_alone_guesses_the_uplinks() {
        let cfg =
            resolve_interfaces(&config(&["lan0"]), &policy("")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.ifaces, ["lan0"]);
        assert_eq!(cfg.uplinks, Uplinks::Guessed);
    }

    #[test]
    fn iface_with_interfaces_or_neither_is_refused() {
        let p = policy("interfaces:\n  lan0: {role: segment}\n");
        let err = resolve_interfaces(&config(&["lan0"]), &p)
            .map(|_| ())
            .expect_err("both");
        assert!(
            err.to_string().starts_with(
                "--iface cannot be used with a policy that lists `interfaces:` (at p.yaml:5:3)"
            ),
            "{err}"
        );
        let err = resolve_interfaces(&config(&[]), &policy(""))
            .map(|_| ())
            .expect_err("neither");
        assert!(matches!(err, DaemonError::NoInterfaces), "{err}");
    }
}
