//! `enforcer learn`: least-privilege rules from what the daemon observed (`crate::observe`),
//! generalised by `crate::learn`, for the applied policy's devices and zones.

use anyhow::{Context as _, Result, bail};

use crate::{
    cli::{LearnArgs, LearnOutput},
    daemon::state,
    exit,
    learn::{self, Membership, Request, Scope},
    observe::{Filter, STORE_FILE, Store},
    policy::PlanView,
};

/// `--since`: a duration in the policy's syntax, as seconds.
///
/// # Errors
/// Not a duration.
pub fn parse_since(s: &str) -> Result<u64, String> {
    crate::policy::model::parse_duration(s)
        .map(u64::from)
        .map_err(|p| format!("{}; {}", p.message, p.hint))
}

#[expect(clippy::print_stdout, reason = "the command's output")]
#[expect(clippy::print_stderr, reason = "warnings beside the YAML")]
pub fn run(args: LearnArgs) -> Result<u8> {
    let LearnArgs {
        zone,
        device,
        since: since_s,
        output,
        paths,
    } = args;
    let view: PlanView = state::read(&paths.state_dir, state::APPLIED_FILE)?
        .with_context(|| {
            format!(
                "no applied policy recorded in {}: is `enforcer run` running with this --state-dir?",
                paths.state_dir.display()
            )
        })?;
    let scope = scope(zone, device, &view)?;
    let path = paths.state_dir.join(STORE_FILE);
    if !path.exists() {
        bail!(
            "no observations at {}: the daemon records them while it runs",
            path.display()
        );
    }
    let store = Store::open(&path)?;
    let now = crate::time::unix_now();
    let observations = store.observations(&Filter {
        since: Some(now.saturating_sub(since_s)),
        ..Filter::default()
    })?;
    let req = Request {
        scope: scope.clone(),
        since_s,
        now,
        observing_since: store.observing_since()?,
        wide_networks: view
            .networks
            .iter()
            .filter(|n| n.cidrs.iter().any(|c| c.ends_with("/0")))
            .map(|n| n.name.clone())
            .collect(),
        taken_names: view.rules.iter().map(|r| r.name.clone()).collect(),
    };
    let members = Membership::new(
        view.devices
            .iter()
            .map(|d| (d.name.as_str(), d.zone.as_str())),
    );
    let proposal = learn::propose(&observations, &members, &req);
    let what = format!(
        "{}, last {}",
        match &scope {
            Scope::All => "every zone".to_owned(),
            Scope::Zone(z) => format!("zone {z}"),
            Scope::Device(d) => format!("device {d}"),
        },
        learn::human_span(since_s)
    );
    match output {
        LearnOutput::Yaml => {
            print!("{}", learn::render_yaml(&proposal, &what));
            for w in &proposal.warnings {
                eprintln!("enforcer: warning: {w}");
            }
        }
        LearnOutput::Json => println!("{}", learn::render_json(&proposal)?),
        LearnOutput::Table => print!("{}", learn::render_table(&proposal)),
    }
    Ok(exit::OK)
}

fn scope(zone: Option<String>, device: Option<String>, view: &PlanView) -> Result<Scope> {
    match (zone, device) {
        (Some(z), _) => {
            if !view.zones.iter().any(|x| x.name == z) {
                bail!("the applied policy has no zone `{z}`");
            }
            Ok(Scope::Zone(z))
        }
        (None, Some(d)) => {
            if !view.devices.iter().any(|x| x.name == d) {
                bail!("the applied policy has no device `{d}`");
            }
            Ok(Scope::Device(d))
        }
        (None, None) => Ok(Scope::All),
    }
}
