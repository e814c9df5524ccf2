//! `enforcer explain --from X --to Y --service S`: one probe packet through the real program's
//! read-only explain entry point, against the running policy (the maps the daemon pinned, its
//! live quarantine included) or a candidate (`--policy`, loaded privately). It prints the verdict,
//! the deciding rule and reason, and what each end resolved to. It changes nothing: the explain
//! program writes no map the enforcing program keeps.

use std::{net::IpAddr, path::PathBuf};

use anyhow::Result;
use serde::Serialize;

use super::{Refusal, devices::NameBound, running_status, test::may_load_bpf};
use crate::{
    cli::{Output, Paths},
    daemon::error_chain,
    datapath::{Explainer, pinned_router_addresses},
    exit,
    policy::{
        self, CompileOptions, PlanView,
        model::{ProbeEnd, ProbeService, parse_mac, parse_probe_end, parse_probe_service},
    },
    probe::{Answer, Labels, Site, guard, render},
};

/// The flow asked about, as written on the command line.
#[derive(Debug)]
pub struct Question {
    pub from: String,
    pub to: String,
    pub service: String,
}

#[derive(Debug, Serialize)]
struct ExplainReport<'a> {
    from: &'a str,
    to: &'a str,
    service: &'a str,
    src_addr: IpAddr,
    dst_addr: IpAddr,
    /// `running` or the candidate's paths.
    policy: String,
    /// Against the running policy: the source device's live `dns:` bindings of the destination
    /// address, which the verdict took into account (docs/names.md).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bindings: Vec<NameBound>,
    #[serde(flatten)]
    answer: &'a Answer,
}

/// Run `explain`; returns the exit code: 0 when the flow was judged (whatever the verdict).
///
/// # Errors
/// Only when the JSON report cannot be serialised, or the status cannot be read.
pub fn run(q: &Question, policies: &[PathBuf], output: Output, paths: &Paths) -> Result<u8> {
    let parsed = parse_probe_end(&q.from)
        .and_then(|f| Ok((f, parse_probe_end(&q.to)?)))
        .and_then(|(f, t)| Ok((f, t, parse_probe_service(&q.service)?)));
    let (from, to, service) = match parsed {
        Ok(p) => p,
        Err(p) => {
            return Ok(
                Refusal::new(exit::USAGE, format!("{} ({})", p.message, p.hint)).report(output),
            );
        }
    };
    let answered = if policies.is_empty() {
        running(&from, &to, service, paths)?
    } else {
        candidate(&from, &to, service, policies)
    };
    let (src, dst, answer) = match answered {
        Ok(a) => a,
        Err(refusal) => return Ok(refusal.report(output)),
    };
    let bindings = if policies.is_empty() {
        bound_names(&q.from, dst, paths)
    } else {
        Vec::new()
    };
    let flow = format!("{} ({src}) -> {} ({dst}) {service}", q.from, q.to);
    #[expect(clippy::print_stdout, reason = "CLI output")]
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&ExplainReport {
                from: &q.from,
                to: &q.to,
                service: &q.service,
                src_addr: src,
                dst_addr: dst,
                policy: if policies.is_empty() {
                    "running".to_owned()
                } else {
                    policy::shown_paths(policies)
                },
                bindings,
                answer: &answer,
            })?
        ),
        Output::Text => {
            print!("{}", render::answer(&flow, &answer));
            for b in &bindings {
                println!(
                    "  {} is bound to {} for {} (expires in {} s)",
                    b.address, b.name, q.from, b.expires_in_s
                );
            }
        }
    }
    Ok(exit::OK)
}

/// The live name bindings of `dst` for the device `from` names (`device:NAME`), read from the
/// running daemon's pinned map; none for other sources or when they cannot be read.
fn bound_names(from: &str, dst: IpAddr, paths: &Paths) -> Vec<NameBound> {
    let Some(name) = from.strip_prefix("device:") else {
        return Vec::new();
    };
    let Ok(Ok(st)) = running_status(&paths.state_dir) else {
        return Vec::new();
    };
    let Some(id) = st.devices.iter().find(|d| d.name == name).map(|d| d.id) else {
        return Vec::new();
    };
    let now = (crate::datapath::monotonic_ns(), crate::time::unix_now());
    let patterns = NameBound::patterns(&st);
    crate::datapath::names::Bindings::open_pinned(&paths.pin_dir)
        .and_then(|map| map.live_of(id, dst, now.0))
        .unwrap_or_default()
        .iter()
        .filter_map(|b| NameBound::of(b, &patterns, now))
        .collect()
}

type Answered = std::result::Result<(IpAddr, IpAddr, Answer), Refusal>;

fn no_bpf() -> Refusal {
    Refusal::new(
        exit::ENVIRONMENT,
        "enforcer explain runs a probe through the XDP program (BPF_PROG_TEST_RUN), which needs CAP_BPF; run it as root",
    )
}

/// Against the running policy: the pinned maps, named by the daemon's status.
fn running(
    from: &ProbeEnd,
    to: &ProbeEnd,
    service: ProbeService,
    paths: &Paths,
) -> Result<Answered> {
    // Root, and a daemon that recorded its state (said as every command says it).
    if let Err(refusal) = running_status(&paths.state_dir)? {
        return Ok(Err(refusal));
    }
    let view = match applied_view(&paths.state_dir)? {
        Ok(v) => v,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if !may_load_bpf() {
        return Ok(Err(no_bpf()));
    }
    let env = |what: &str, e: &dyn std::error::Error| {
        Refusal::new(exit::ENVIRONMENT, format!("{what}: {}", error_chain(e)))
    };
    let mut site = site_of(&view);
    site.router = match pinned_router_addresses(&paths.pin_dir) {
        Ok(r) => r,
        Err(e) => return Ok(Err(env("read the running policy's maps", &e))),
    };
    let flow = match site.flow(from, to, service) {
        Ok(f) => f,
        Err(e) => return Ok(Err(Refusal::new(exit::INVALID, e.to_string()))),
    };
    let explained = Explainer::over_pinned(&paths.pin_dir)
        .and_then(|mut x| x.explain(&flow.frame, flow.request));
    Ok(match explained {
        Ok(e) => Ok((flow.src, flow.dst, Answer::of(&e, &labels_of(&view)))),
        Err(e) => Err(env("run the probe through the running program", &e)),
    })
}

/// Against a candidate policy, loaded privately.
fn candidate(
    from: &ProbeEnd,
    to: &ProbeEnd,
    service: ProbeService,
    policies: &[PathBuf],
) -> Answered {
    let compiled = policy::load_all(policies)
        .and_then(|p| policy::compile(&p, &CompileOptions::default()))
        .map_err(|e| {
            Refusal::new(
                exit::INVALID,
                format!(
                    "the policy is invalid (see `enforcer check`): {}",
                    e.summary(3)
                ),
            )
        })?;
    if !may_load_bpf() {
        return Err(no_bpf());
    }
    let flow = Site::of(&compiled)
        .flow(from, to, service)
        .map_err(|e| Refusal::new(exit::INVALID, e.to_string()))?;
    let explained = guard::private_instance(&compiled)
        .and_then(|mut dp| dp.explain(&flow.frame, flow.request))
        .map_err(|e| {
            Refusal::new(
                exit::ENVIRONMENT,
                format!("run the probe through the XDP program: {}", error_chain(&e)),
            )
        })?;
    Ok((
        flow.src,
        flow.dst,
        Answer::of(&explained, &Labels::of(&compiled)),
    ))
}

/// The running policy as the daemon recorded it when it applied it (`applied.json`, the view
/// `plan` diffs against): devices with their MAC and addresses, and the names behind the ids.
fn applied_view(state_dir: &std::path::Path) -> Result<std::result::Result<PlanView, Refusal>> {
    Ok(
        crate::daemon::state::read(state_dir, crate::daemon::state::APPLIED_FILE)?.ok_or_else(
            || {
                Refusal::new(
                    exit::ENVIRONMENT,
                    format!("no applied policy recorded in {}", state_dir.display()),
                )
            },
        ),
    )
}

/// What the ends of a probe of the running policy stand for.
fn site_of(view: &PlanView) -> Site {
    Site {
        devices: view
            .devices
            .iter()
            .map(|d| {
                let mac = d.mac.as_deref().and_then(|m| parse_mac(m).ok());
                let addrs = d.addresses.iter().filter_map(|a| a.parse().ok()).collect();
                (d.name.clone(), (mac, addrs))
            })
            .collect(),
        router: Vec::new(),
    }
}

/// Names behind the running policy's ids.
fn labels_of(view: &PlanView) -> Labels {
    Labels {
        devices: view
            .devices
            .iter()
            .map(|d| (d.id, (d.name.clone(), d.zone.clone())))
            .collect(),
        rules: view.rules.iter().map(|r| (r.id, r.name.clone())).collect(),
        classes: view
            .classes
            .iter()
            .map(|c| (c.id, c.name.clone()))
            .collect(),
        networks: view
            .networks
            .iter()
            .map(|n| (n.id, n.name.clone()))
            .collect(),
    }
}
