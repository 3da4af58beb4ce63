//! Upstream's `MetricsCleaner`: every `METRICS_CLEANER_SCHEDULE_TIMER_IN_MS` each tenant's
//! activity is noted, so a tenant idle (no sockets, nothing counted) for [`super::IDLE_AFTER`]
//! drops out of the per-tenant exposition even when nothing scraped in between.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::gateway::Gateway;

/// Sweeps every `every` until `shutdown`.
pub fn spawn(gw: Arc<Gateway>, every: Duration, shutdown: CancellationToken) {
    let every = every.max(Duration::from_secs(1));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let with_sockets: HashSet<String> =
                gw.sessions.iter().map(|s| s.tenant.to_string()).collect();
            gw.metrics().sweep(|t| with_sockets.contains(t));
        }
    });
}
