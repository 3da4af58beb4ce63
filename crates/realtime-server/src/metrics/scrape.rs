//! What is read at scrape time rather than counted: connections per tenant, sockets, outbound
//! queue bytes, tenants with a database connection, and the change pipelines' slot progress
//! (replication lag) and RLS gate batches from [`realtime_cdc::stats`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus::proto::MetricFamily;
use realtime_cdc::stats::{PipelineStats, SlotStats};

use crate::gateway::Gateway;
use crate::metrics::encode::{gauge, gauges, histograms, label};

/// One replication slot being streamed.
pub struct SlotView {
    /// Tenant external id.
    pub tenant: String,
    /// Slot name.
    pub slot: String,
    /// Its figures.
    pub stats: Arc<SlotStats>,
}

/// The figures of one scrape.
#[derive(Default)]
pub struct ScrapeView {
    /// Connected users per tenant (sockets that joined a channel).
    pub connected: HashMap<String, usize>,
    /// Tenants with any open socket.
    pub with_sockets: HashSet<String>,
    /// Open WebSocket connections.
    pub sockets: usize,
    /// `MAX_CONNECTIONS`.
    pub max_connections: usize,
    /// Bytes queued on every socket, not yet written.
    pub outbound_queue_bytes: u64,
    /// Most bytes queued on one socket.
    pub outbound_queue_bytes_max: u64,
    /// Tenants with a replication session up (change pipeline or database broadcast stream).
    pub tenants_connected: usize,
    /// Slots being streamed.
    pub slots: Vec<SlotView>,
    /// RLS gates of the running change pipelines, by tenant.
    pub gates: Vec<(String, Arc<PipelineStats>)>,
}

impl ScrapeView {
    /// Reads the gateway and its change pipelines.
    pub fn of(gw: &Gateway, max_connections: usize) -> ScrapeView {
        let mut view = ScrapeView {
            max_connections,
            ..ScrapeView::default()
        };
        for n in gw.users.iter() {
            if *n.value() > 0 {
                view.connected.insert(n.key().clone(), *n.value());
            }
        }
        for s in gw.sessions.iter() {
            view.sockets += 1;
            let queued = s.flow.queued_bytes.load(Ordering::Relaxed) as u64;
            view.outbound_queue_bytes += queued;
            view.outbound_queue_bytes_max = view.outbound_queue_bytes_max.max(queued);
            if !view.with_sockets.contains(&*s.tenant) {
                view.with_sockets.insert(s.tenant.to_string());
            }
        }
        let mut with_db: HashSet<String> = HashSet::new();
        if let Some(cdc) = &gw.cdc {
            for (tenant, slot, stats) in cdc.stats() {
                if stats.slot.snapshot_now().streaming {
                    with_db.insert(tenant.clone());
                }
                view.slots.push(SlotView {
                    tenant: tenant.clone(),
                    slot,
                    stats: stats.slot.clone(),
                });
                view.gates.push((tenant, stats));
            }
        }
        for h in gw.db_streams.iter() {
            if h.value().is_connected() {
                with_db.insert(h.key().clone());
            }
            if let Some((slot, stats)) = h.value().slot_stats() {
                view.slots.push(SlotView {
                    tenant: h.key().clone(),
                    slot,
                    stats,
                });
            }
        }
        view.tenants_connected = with_db.len();
        view
    }

    /// Whether `tenant` has an open socket.
    pub fn has_sockets(&self, tenant: &str) -> bool {
        self.with_sockets.contains(tenant)
    }

    /// Gauges of the global exposition.
    pub fn global_families(&self) -> Vec<MetricFamily> {
        let connected: usize = self.connected.values().sum();
        vec![
            gauge(
                "realtime_tenants_connected",
                "The total count of connected tenants.",
                self.tenants_connected as f64,
            ),
            gauge(
                "realtime_connections_global_connected",
                "The node total count of connected clients across all tenants.",
                connected as f64,
            ),
            gauge(
                "realtime_connections_global_connected_cluster",
                "The cluster total count of connected clients across all tenants.",
                connected as f64,
            ),
            gauge(
                "phoenix_connections_total",
                "The total open connections to ranch.",
                self.sockets as f64,
            ),
            gauge(
                "phoenix_connections_active",
                "Connections actively processing a request or WebSocket frame.",
                self.sockets as f64,
            ),
            gauge(
                "phoenix_connections_max",
                "The configured maximum connections limit for the ranch listener.",
                self.max_connections as f64,
            ),
            gauge(
                "realtime_gateway_outbound_queue_bytes",
                "Bytes queued on every socket's bounded outbound queue and not yet written.",
                self.outbound_queue_bytes as f64,
            ),
            gauge(
                "realtime_gateway_outbound_queue_bytes_max",
                "Most bytes queued on one socket's outbound queue.",
                self.outbound_queue_bytes_max as f64,
            ),
        ]
    }

    /// Gauges and histograms of the per-tenant exposition.
    pub fn tenant_families(&self) -> Vec<MetricFamily> {
        let per_tenant = |f: &dyn Fn(usize) -> f64| {
            self.connected
                .iter()
                .map(|(t, n)| (vec![label("tenant", t)], f(*n)))
                .collect::<Vec<_>>()
        };
        let slot_labels = |s: &SlotView| vec![label("slot", &s.slot), label("tenant", &s.tenant)];
        let snapshots: Vec<_> = self
            .slots
            .iter()
            .map(|s| (slot_labels(s), s.stats.snapshot_now()))
            .collect();
        vec![
            gauges(
                "realtime_connections_connected",
                "The node total count of connected clients for a tenant.",
                per_tenant(&|n| n as f64),
            ),
            gauges(
                "realtime_connections_connected_cluster",
                "The cluster total count of connected clients for a tenant.",
                per_tenant(&|n| n as f64),
            ),
            gauges(
                "realtime_replication_lag_bytes",
                "WAL bytes between the furthest position the server reported and the position confirmed for the slot.",
                snapshots
                    .iter()
                    .map(|(l, s)| (l.clone(), s.lag_bytes as f64))
                    .collect(),
            ),
            gauges(
                "realtime_replication_lag_seconds",
                "Seconds since the oldest received transaction not yet handed to the channels committed (0 when none waits).",
                snapshots
                    .iter()
                    .map(|(l, s)| (l.clone(), s.lag.as_secs_f64()))
                    .collect(),
            ),
            gauges(
                "realtime_replication_confirmed_lsn",
                "Position confirmed for the slot (everything before it reached the channels).",
                snapshots
                    .iter()
                    .map(|(l, s)| (l.clone(), s.confirmed.0 as f64))
                    .collect(),
            ),
            gauges(
                "realtime_replication_streaming",
                "1 while a replication session streams from the slot.",
                snapshots
                    .iter()
                    .map(|(l, s)| (l.clone(), if s.streaming { 1.0 } else { 0.0 }))
                    .collect(),
            ),
            histograms(
                "realtime_postgres_changes_gate_batch_rows",
                "Changes judged by the RLS gate and fanned out per batch.",
                self.gates
                    .iter()
                    .map(|(t, g)| (vec![label("tenant", t)], g.gate.rows()))
                    .collect(),
            ),
            histograms(
                "realtime_postgres_changes_gate_batch_duration_seconds",
                "Time to judge a batch with the RLS gate and fan it out.",
                self.gates
                    .iter()
                    .map(|(t, g)| (vec![label("tenant", t)], g.gate.seconds()))
                    .collect(),
            ),
        ]
    }
}
