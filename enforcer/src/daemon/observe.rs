//! The observer: scans the flow table now and then and records what each source does in the
//! observation store (`crate::observe`), for `enforcer learn`.
//!
//! It reads only what the datapath already keeps (the flow entries' packets, bytes, first and last
//! seen): nothing is added per packet. A store that cannot be opened or written is logged and the
//! daemon goes on enforcing; observation is never a reason to stop.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use tracing::{debug, warn};

use crate::{
    datapath,
    observe::{Bounds, Resolver, STORE_FILE, Store},
};

/// How often the flow table is scanned: well under the shortest flow timeout (ICMP, 30 s), so
/// every flow is seen at least once before it expires.
pub const SCAN_EVERY: Duration = Duration::from_secs(5);

/// Scans every [`SCAN_EVERY`] until aborted.
pub(crate) async fn run(shared: Arc<Mutex<super::Inner>>, state_dir: PathBuf) {
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
        let Some(samples) = scan(&shared) else {
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
                pruned = report.pruned,
                "observed"
            ),
            Ok(Err(e)) => warn!(error = %e, "cannot record observations"),
            Err(e) => warn!(error = %e, "the observation task failed"),
        }
    }
}

/// The flow table as observations, read under the daemon's lock (`None` once it is poisoned).
fn scan(shared: &Mutex<super::Inner>) -> Option<Vec<crate::observe::FlowSample>> {
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
    Some(
        flows
            .iter()
            .filter_map(|(k, v)| resolver.sample(k, v))
            .collect(),
    )
}
