//! Prometheus metrics, served on `/metrics` with upstream's series names, labels and layout:
//! the global exposition, then the per-tenant one, each closed by `# EOF`.
//!
//! Layout:
//! - [`global`]: node-wide counters (tenant counters summed, errors by code, Phoenix joins,
//!   payload sizes, slow-consumer closes).
//! - [`tenant`]: one tenant's counters and histograms ([`TenantMetrics`]), resolved once and
//!   kept with the tenant's rate counters and sockets, so hot paths only add to atomics.
//! - [`scrape`]: gauges read at scrape time from the gateway and the change pipelines
//!   (connections, queues, replication lag, RLS gate batches).
//! - [`system`]: `osmon_*` and the process's resident memory, from `/proc`.
//! - [`payload`]: payload size histograms by message type.
//! - [`node`]: the `region`, `host` and `id` labels every series carries.
//! - [`cleaner`]: notes tenants' activity every `METRICS_CLEANER_SCHEDULE_TIMER_IN_MS`.
//! - [`encode`]: families → text (the `prometheus` crate's text encoder, no `_total` added).

pub mod cleaner;
pub mod encode;
pub mod global;
pub mod node;
pub mod payload;
pub mod scrape;
pub mod system;
pub mod tenant;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use global::GlobalMetrics;
pub use node::NodeLabels;
pub use payload::MessageType;
pub use tenant::{Count, TenantMetrics};

/// Upstream's payload size buckets (bytes).
pub const PAYLOAD_BUCKETS: [f64; 11] = [
    250.0,
    500.0,
    1000.0,
    3000.0,
    5000.0,
    10_000.0,
    25_000.0,
    100_000.0,
    500_000.0,
    1_000_000.0,
    3_000_000.0,
];
/// Upstream's authorization check and replay buckets (milliseconds).
pub const AUTHORIZATION_BUCKETS: [f64; 4] = [10.0, 250.0, 5000.0, 15_000.0];
/// Upstream's broadcast-from-database latency buckets (milliseconds).
pub const DATABASE_BROADCAST_BUCKETS: [f64; 3] = [10.0, 250.0, 5000.0];

/// Upstream drops the series of a tenant idle for this long (`MetricsCleaner`).
pub const IDLE_AFTER: Duration = Duration::from_secs(600);

/// Bytes of an inbound frame.
pub fn frame_len(frame: &realtime_protocol::InFrame<'_>) -> usize {
    match frame {
        realtime_protocol::InFrame::Text(t) => t.len(),
        realtime_protocol::InFrame::Binary(b) => b.len(),
    }
}

/// The node's metrics.
pub struct Metrics {
    node: NodeLabels,
    global: Arc<GlobalMetrics>,
    tenants: tenant::TenantTable,
    system: system::System,
    idle_after: Duration,
}

impl Metrics {
    /// Metrics labelled with `node`.
    pub fn new(node: NodeLabels) -> Metrics {
        Metrics {
            node,
            global: Arc::new(GlobalMetrics::new()),
            tenants: tenant::TenantTable::default(),
            system: system::System::default(),
            idle_after: IDLE_AFTER,
        }
    }

    /// The node's labels.
    pub fn node(&self) -> &NodeLabels {
        &self.node
    }

    /// The series of `tenant` (created on first use; hold on to it).
    pub fn tenant(&self, tenant: &str) -> Arc<TenantMetrics> {
        self.tenants.get(tenant, &self.global)
    }

    /// Notes every tenant's activity now (see [`cleaner`]).
    pub fn sweep(&self, has_sockets: impl Fn(&str) -> bool) {
        let now = Instant::now();
        for t in self.tenants.all() {
            t.visible(has_sockets(t.tenant()), now, self.idle_after);
        }
    }

    /// The whole body of `/metrics`: the global exposition, then the per-tenant one, each
    /// followed by `# EOF`. Tenants idle for [`IDLE_AFTER`] are left out.
    pub fn render(&self, view: &scrape::ScrapeView) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let all = self.tenants.all();
        let mut global = self.global.collect(&all);
        global.extend(view.global_families());
        global.extend(self.system.collect());
        encode::exposition(global, &self.node, &mut out);

        let now = Instant::now();
        let mut tenants = Vec::new();
        for t in all {
            let has_sockets = view.has_sockets(t.tenant());
            if t.visible(has_sockets, now, self.idle_after) {
                tenants.extend(t.collect());
            }
        }
        tenants.extend(view.tenant_families());
        encode::exposition(tenants, &self.node, &mut out);
        out
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new(NodeLabels::default())
    }
}
