//! The observer: scans the flow table now and then and records what each source does in the
//! observation store (`crate::observe`), for `enforcer learn`.
//!
//! It reads only what the datapath already keeps (the flow entries' packets, bytes, first and last
//! seen): nothing is added per packet. What an audited source sends that the table does not hold
//! (protocols without flows, flows refused or gone) comes from its audit events, which the event
//! reader forwards ([`AuditEvents`]). A store that cannot be opened or written is logged and the
//! daemon goes on enforcing; observation is never a reason to stop.

use std::{
    collections::HashSet,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use enforcer_common::{
    event::DenyEvent,
    flow::{FlowKey, FlowValue},
};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::{
    datapath,
    observe::{Bounds, FlowSample, Resolver, STORE_FILE, Store},
};

/// How often the flow table is scanned: well under the shortest flow timeout (ICMP, 30 s), so
/// every flow is seen at least once before it expires.
pub const SCAN_EVERY: Duration = Duration::from_secs(5);

/// Audit events waiting for the next scan, at most: the program sends at most
/// `EVENTS_PER_CPU_PER_SEC` a CPU, so this holds a scan's worth on a small router; past it, events
/// are dropped, never queued without bound (the scan's debug line says how many arrived).
pub const AUDIT_BACKLOG: usize = 4096;

/// Where the event reader sends audit events for the observer.
pub type AuditEvents = mpsc::Sender<DenyEvent>;

/// The channel from the event reader to the observer.
#[must_use]
pub fn audit_channel() -> (AuditEvents, mpsc::Receiver<DenyEvent>) {
    mpsc::channel(AUDIT_BACKLOG)
}

/// Scans every [`SCAN_EVERY`] until aborted.
pub(crate) async fn run(
    shared: Arc<Mutex<super::Inner>>,
    state_dir: PathBuf,
    mut audits: mpsc::Receiver<DenyEvent>,
) {
    let path = state_dir.join(STORE_FILE);
    let store = match tokio::task::spawn_blocking(move || Store::open(&path)).await {
        Ok(Ok(store)) => Arc::new(Mutex::new(store)),
        Ok(Err(e)) => {
            warn!(error = %e, "cannot open the observation store; nothing will be observed");
            return;
        }
        Err(e) => {
            warn!(error = %e, "cannot open the observation store");
            return;
        }
    };
    let mut tick = tokio::time::interval(SCAN_EVERY);
    loop {
        tick.tick().await;
        let mut events = Vec::new();
        while let Ok(e) = audits.try_recv() {
            events.push(e);
        }
        let Some(samples) = scan(&shared, &events) else {
            return;
        };
        let store = Arc::clone(&store);
        let done = tokio::task::spawn_blocking(move || {
            let Ok(mut store) = store.lock() else {
                return Ok(Default::default());
            };
            store.record_scan(
                &samples,
                datapath::monotonic_ns(),
                crate::time::unix_now(),
                Bounds::default(),
            )
        })
        .await;
        match done {
            Ok(Ok(report)) => debug!(
                new_flows = report.new_flows,
                audit_events = events.len(),
                pruned = report.pruned,
                "observed"
            ),
            Ok(Err(e)) => warn!(error = %e, "cannot record observations"),
            Err(e) => warn!(error = %e, "the observation task failed"),
        }
    }
}

/// The flow table as observations, and each audit event whose packet it does not hold as one of
/// its own; read under the daemon's lock (`None` once it is poisoned).
fn scan(shared: &Mutex<super::Inner>, events: &[DenyEvent]) -> Option<Vec<FlowSample>> {
    let inner = shared.lock().ok()?;
    let flows = match datapath::flows(&inner.dp) {
        Ok(flows) => flows,
        Err(e) => {
            warn!(error = %e, "cannot read the flow table");
            return Some(Vec::new());
        }
    };
    let live = if inner.policy.dns.is_some() {
        match inner.dp.bindings() {
            Ok(b) => b.live(datapath::monotonic_ns()),
            Err(e) => {
                warn!(error = %e, "cannot read the name bindings");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let resolver = Resolver::new(&inner.policy).with_bindings(&live);
    drop(inner);
    Some(samples(&resolver, &flows, events))
}

/// Every flow as an observation, then each audit event whose packet no flow holds: a packet whose
/// flow the table holds is observed through that flow, with all its packets, and never twice.
fn samples(
    resolver: &Resolver,
    flows: &[(FlowKey, FlowValue)],
    events: &[DenyEvent],
) -> Vec<FlowSample> {
    let held: HashSet<FlowKey> = flows.iter().map(|(k, _)| *k).collect();
    let unheld = events.iter().filter(|e| {
        let (key, _) = FlowKey::canonical(e.family, e.proto, e.src, e.sport, e.dst, e.dport);
        !held.contains(&key)
    });
    flows
        .iter()
        .filter_map(|(k, v)| resolver.sample(k, v))
        .chain(unheld.filter_map(|e| resolver.audit_sample(e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use enforcer_common::{
        FAMILY_V4, PROTO_TCP, Verdict,
        event::{DenyReason, EVENT_DENY},
        flow::FLOW_F_AUDIT,
        identity::words,
    };

    use super::*;
    use crate::{
        observe::{Peer, Seen, Service},
        policy::{CompileOptions, CompiledPolicy, compile, parse_str},
    };

    const POLICY: &str = r"
zones: {cameras: {mode: audit}, servers: {}, quarantine: {}}
devices:
  cam-1: {zone: cameras, addresses: [10.1.1.10]}
  nvr: {zone: servers, addresses: [10.1.2.20]}
defaults: {unknown: quarantine}
";
    const GRE: u8 = 47;

    fn v4(a: [u8; 4]) -> [u32; 4] {
        let mut o = [0; 16];
        o[..4].copy_from_slice(&a);
        words(o)
    }

    fn id(p: &CompiledPolicy, name: &str) -> u32 {
        p.devices
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.id)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    /// cam-1's packet to the NVR, as the program reports it when the zone's audit passes it.
    fn audit(p: &CompiledPolicy, proto: u8, ports: (u16, u16), at: u64) -> DenyEvent {
        DenyEvent {
            timestamp_ns: at,
            device: id(p, "cam-1"),
            rule: enforcer_common::DEFAULT_RULE,
            src: v4([10, 1, 1, 10]),
            dst: v4([10, 1, 2, 20]),
            sport: ports.0,
            dport: ports.1,
            proto,
            family: FAMILY_V4,
            reason: DenyReason::Default as u8,
            verdict: Verdict::Audit as u8,
            kind: EVENT_DENY,
            ..DenyEvent::default()
        }
    }

    #[test]
    fn an_audit_event_is_observed_once_its_packet_makes_no_flow_and_never_beside_its_flow() {
        let p = compile(
            &parse_str("audit.yaml", POLICY).unwrap_or_else(|e| panic!("{e}")),
            &CompileOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let resolver = Resolver::new(&p);
        // The TCP SYN that made an audit flow, which the table holds with its 5 packets.
        let syn = audit(&p, PROTO_TCP, (40000, 554), 7);
        let (key, src_is_lo) =
            FlowKey::canonical(FAMILY_V4, PROTO_TCP, syn.src, 40000, syn.dst, 554);
        let flow = FlowValue {
            init_device: syn.device,
            resp_device: id(&p, "nvr"),
            init_is_lo: u8::from(src_is_lo),
            rule: syn.rule,
            packets: 5,
            first_seen_ns: 7,
            observed: FLOW_F_AUDIT,
            ..FlowValue::default()
        };
        let gre = audit(&p, GRE, (0, 0), 9);
        let denied = DenyEvent {
            verdict: Verdict::Deny as u8,
            ..audit(&p, GRE, (0, 0), 10)
        };
        let no_flow = DenyEvent {
            reason: DenyReason::NoFlow as u8,
            ..audit(&p, PROTO_TCP, (40001, 554), 11)
        };
        let out = samples(&resolver, &[(key, flow)], &[syn, gre, denied, no_flow]);
        let seen: Vec<_> = out
            .iter()
            .map(|s| (&s.source, &s.peer, s.service, s.seen, s.packets))
            .collect();
        let cam = Peer::Device("cam-1".into());
        let nvr = Peer::Device("nvr".into());
        assert_eq!(
            seen,
            [
                (
                    &cam,
                    &nvr,
                    Service {
                        proto: PROTO_TCP,
                        port: 554
                    },
                    Seen::Audit,
                    5
                ),
                (
                    &cam,
                    &nvr,
                    Service {
                        proto: GRE,
                        port: 0
                    },
                    Seen::Audit,
                    1
                ),
            ],
            "the flow with all its packets, GRE once; no denial, nothing that continues no flow"
        );
        assert_ne!(out[0].id, out[1].id, "each its own flow in the store");
    }
}
