//! Which interfaces the daemon enforces on, and which of them are uplinks: the policy's
//! `interfaces:` (reviewable in git), or `--iface` for quick use (uplinks then guessed from the
//! default route). Resolved at start; a reload follows a changed `interfaces:` (see [`follow`]).

use tracing::{info, warn};

use super::{Config, DaemonError, attach::Enforced, host::HostContext};
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
    if let Some((ifaces, uplinks)) = declared(policy) {
        if let (false, Some(first)) = (cfg.ifaces.is_empty(), policy.interfaces.values().next()) {
            return Err(DaemonError::IfaceWithInterfaces {
                at: first.loc.to_string(),
            });
        }
        return Ok(Config {
            ifaces,
            uplinks,
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

/// A set of interfaces to enforce on, and how their uplinks are known.
pub(super) type Listed = (Vec<String>, Uplinks);

/// The interfaces `policy` lists and its uplinks among them; `None` when it lists none.
fn declared(policy: &policy::Policy) -> Option<Listed> {
    let listed = &policy.interfaces;
    if listed.is_empty() {
        return None;
    }
    let uplinks = listed
        .values()
        .filter(|i| i.role == policy::model::Role::Uplink)
        .map(|i| i.name.clone())
        .collect();
    Some((listed.keys().cloned().collect(), Uplinks::Declared(uplinks)))
}

/// The interfaces a reloaded policy enforces on and the host to compile it with: a declared set
/// follows the policy's `interfaces:` (new ones attached, those removed detached, roles as now
/// declared), and then the host is read again for the new set; otherwise `host` (read for the
/// set enforced) and no change. With `--iface`, or a policy that no longer lists any, the set
/// stays and a warning says why.
pub(super) fn follow(
    enforced: &Enforced,
    policy: &policy::Policy,
    host: HostContext,
) -> Result<(HostContext, Option<Listed>), DaemonError> {
    let (running, how) = enforced.listed();
    let wanted = declared(policy);
    match (&how, wanted) {
        (Uplinks::Guessed, Some(_)) => {
            warn!(enforced = ?running, "the policy lists `interfaces:` now, but the daemon runs with --iface; it keeps the interfaces of --iface (restart without --iface to enforce the policy's)");
            Ok((host, None))
        }
        (Uplinks::Declared(_), None) => {
            warn!(enforced = ?running, "the policy no longer lists `interfaces:`; the daemon keeps enforcing on the interfaces it had until it restarts");
            Ok((host, None))
        }
        (Uplinks::Guessed, None) => Ok((host, None)),
        (Uplinks::Declared(_), Some((ifaces, uplinks)))
            if enforced.is_listed(&ifaces, &uplinks) =>
        {
            Ok((host, None))
        }
        (Uplinks::Declared(_), Some((ifaces, uplinks))) => relist(&running, ifaces, uplinks),
    }
}

/// Reads the host for a new set of interfaces.
fn relist(
    running: &[String],
    ifaces: Vec<String>,
    uplinks: Uplinks,
) -> Result<(HostContext, Option<Listed>), DaemonError> {
    info!(before = ?running, now = ?ifaces, uplinks = ?uplinks, "the policy's `interfaces:` changed: reading their addresses");
    // Reloads run on a blocking thread of the daemon's runtime, where waiting on it is allowed.
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| super::host::HostError::Socket(std::io::Error::other(e)))?;
    let host = runtime.block_on(HostContext::read(&ifaces, &uplinks))?;
    Ok((host, Some((ifaces, uplinks))))
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
            status_addr: None,
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
    fn a_reload_keeps_the_set_unless_a_declared_set_changes() {
        let declared = |ifaces: &[&str]| Config {
            uplinks: Uplinks::Declared(Vec::new()),
            ..config(ifaces)
        };
        let host = HostContext::default();
        let same = policy("interfaces:\n  lan0: {role: segment}\n");
        let none = policy("");
        for (cfg, p, what) in [
            (declared(&["lan0"]), &same, "the same set"),
            (declared(&["lan0"]), &none, "interfaces: removed"),
            (config(&["lan0"]), &same, "--iface with interfaces: now"),
            (config(&["lan0"]), &none, "--iface"),
        ] {
            let (_, relisted) = follow(&Enforced::new(&cfg), p, host.clone())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(relisted, None, "{what}");
        }
        // A role that changed is a new set, read outside a runtime here: an error, not a panic.
        let role = policy("interfaces:\n  lan0: {role: uplink}\n");
        assert!(follow(&Enforced::new(&declared(&["lan0"])), &role, host).is_err());
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
