//! One tenant's series: counters and histograms resolved once per tenant and kept with its
//! rate counters and sockets, so counting is an atomic add, never a label lookup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts};

use crate::metrics::global::GlobalMetrics;
use crate::metrics::payload::{MessageType, PayloadSizes};
use crate::metrics::{AUTHORIZATION_BUCKETS, DATABASE_BROADCAST_BUCKETS};

/// A tenant counter (its global form is the sum over tenants, taken at scrape time, so
/// counting costs one atomic add).
#[derive(Clone, Debug)]
pub struct Count {
    tenant: IntCounter,
}

impl Count {
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.tenant.inc_by(n);
    }

    /// The tenant's total.
    pub fn get(&self) -> u64 {
        self.tenant.get()
    }
}

/// The series of one tenant.
pub struct TenantMetrics {
    tenant: Arc<str>,
    global: Arc<GlobalMetrics>,
    /// `realtime_channel_events`: the tenant's events rate counter, summed.
    pub events: Count,
    /// `realtime_channel_presence_events`.
    pub presence_events: Count,
    /// `realtime_channel_db_events`: Postgres Changes events pushed to channels.
    pub db_events: Count,
    /// `realtime_channel_joins`: the tenant's joins rate counter, summed.
    pub joins: Count,
    input_bytes: Count,
    output_bytes: Count,
    slow_consumer_closes: Count,
    errors: IntCounterVec,
    payload_size: PayloadSizes,
    read_authorization: Histogram,
    write_authorization: Histogram,
    replay: Histogram,
    database_broadcast_committed: Histogram,
    database_broadcast_inserted: Histogram,
    /// Activity total and when it last changed or sockets were seen (idle pruning).
    seen: Mutex<(u64, Instant)>,
}

impl std::fmt::Debug for TenantMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantMetrics")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// Builds a series from a static definition; the names and label names are constants, so
/// failing here is a programming error caught by the tests.
fn made<T>(r: prometheus::Result<T>) -> T {
    match r {
        Ok(t) => t,
        Err(e) => panic!("metric definition: {e}"),
    }
}

impl TenantMetrics {
    /// The series of `tenant`, adding to `global`'s forms too.
    pub fn new(tenant: &str, global: Arc<GlobalMetrics>) -> TenantMetrics {
        let opts = |name: &str, help: &str| Opts::new(name, help).const_label("tenant", tenant);
        let counter = |name: &str, help: &str| made(IntCounter::with_opts(opts(name, help)));
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            made(Histogram::with_opts(
                HistogramOpts::new(name, help)
                    .const_label("tenant", tenant)
                    .buckets(buckets.to_vec()),
            ))
        };
        TenantMetrics {
            events: Count {
                tenant: counter(
                    "realtime_channel_events",
                    "Sum of messages sent on a Realtime Channel.",
                ),
            },
            presence_events: Count {
                tenant: counter(
                    "realtime_channel_presence_events",
                    "Sum of presence messages sent on a Realtime Channel.",
                ),
            },
            db_events: Count {
                tenant: counter(
                    "realtime_channel_db_events",
                    "Sum of db messages sent on a Realtime Channel.",
                ),
            },
            joins: Count {
                tenant: counter("realtime_channel_joins", "Sum of Realtime Channel joins."),
            },
            input_bytes: Count {
                tenant: counter(
                    "realtime_channel_input_bytes",
                    "Sum of input bytes sent on sockets.",
                ),
            },
            output_bytes: Count {
                tenant: counter(
                    "realtime_channel_output_bytes",
                    "Sum of output bytes sent on sockets.",
                ),
            },
            slow_consumer_closes: Count {
                tenant: counter(
                    "realtime_tenants_slow_consumer_closes",
                    "Sockets of the tenant disconnected because their outbound queue was full.",
                ),
            },
            errors: made(IntCounterVec::new(
                opts(
                    "realtime_channel_error",
                    "Count of errors in the Realtime channels initialization",
                ),
                &["code"],
            )),
            payload_size: PayloadSizes::new(
                "realtime_tenants_payload_size",
                "Tenant payload size",
                Some(tenant),
            ),
            read_authorization: histogram(
                "realtime_tenants_read_authorization_check",
                "Latency of read authorization checks.",
                &AUTHORIZATION_BUCKETS,
            ),
            write_authorization: histogram(
                "realtime_tenants_write_authorization_check",
                "Latency of write authorization checks.",
                &AUTHORIZATION_BUCKETS,
            ),
            replay: histogram(
                "realtime_tenants_replay",
                "Latency of broadcast replay",
                &AUTHORIZATION_BUCKETS,
            ),
            database_broadcast_committed: histogram(
                "realtime_tenants_broadcast_from_database_latency_committed_at",
                "Latency of database transaction start until reaches server to be broadcasted",
                &DATABASE_BROADCAST_BUCKETS,
            ),
            database_broadcast_inserted: histogram(
                "realtime_tenants_broadcast_from_database_latency_inserted_at",
                "Latency of database inserted_at until reaches server to be broadcasted",
                &DATABASE_BROADCAST_BUCKETS,
            ),
            tenant: Arc::from(tenant),
            global,
            seen: Mutex::new((0, Instant::now())),
        }
    }

    /// The tenant's external id.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// A frame received on one of the tenant's sockets.
    #[inline]
    pub fn received(&self, frame: &realtime_protocol::InFrame<'_>) {
        self.input_bytes(crate::metrics::frame_len(frame));
    }

    /// A client broadcast of `size` payload bytes.
    pub fn broadcast_payload(&self, size: usize) {
        self.payload(MessageType::Broadcast, size);
    }

    /// Bytes of a frame received on one of the tenant's sockets.
    #[inline]
    pub fn input_bytes(&self, n: usize) {
        self.input_bytes.add(n as u64);
    }

    /// Bytes of a frame queued on one of the tenant's sockets.
    #[inline]
    pub fn output_bytes(&self, n: usize) {
        self.output_bytes.add(n as u64);
    }

    /// A frame of `n` bytes was queued on one of the tenant's sockets: counted as output;
    /// always true (the push succeeded).
    #[inline]
    pub fn queued(&self, n: usize) -> bool {
        self.output_bytes(n);
        true
    }

    /// A socket of the tenant was disconnected as a slow consumer.
    pub fn slow_consumer_closed(&self) {
        self.slow_consumer_closes.add(1);
    }

    /// A payload of `size` bytes was sent to a topic as `kind`.
    pub fn payload(&self, kind: MessageType, size: usize) {
        self.payload_size.observe(kind, size);
        self.global.payload(kind, size);
    }

    /// A join was refused with `reason` (`Code: text`): counted under the code, and as a
    /// failed Phoenix join.
    pub fn join_refused(&self, reason: &str) {
        let code = error_code(reason);
        self.errors.with_label_values(&[code]).inc();
        self.global.channel_error(code);
        self.global.joined("error");
    }

    /// A join succeeded.
    pub fn joined(&self) {
        self.global.joined("ok");
    }

    /// A read (`write == false`) or write policy check took `took`.
    pub fn authorization_check(&self, write: bool, took: Duration) {
        let h = if write {
            &self.write_authorization
        } else {
            &self.read_authorization
        };
        h.observe(took.as_secs_f64() * 1000.0);
    }

    /// A replay query took `took`.
    pub fn replay(&self, took: Duration) {
        self.replay.observe(took.as_secs_f64() * 1000.0);
    }

    /// A database broadcast reached the server `committed` after its transaction committed
    /// and `inserted` after the row's `inserted_at`.
    pub fn database_broadcast(&self, committed: Duration, inserted: Duration) {
        self.database_broadcast_committed
            .observe(committed.as_secs_f64() * 1000.0);
        self.database_broadcast_inserted
            .observe(inserted.as_secs_f64() * 1000.0);
    }

    /// The tenant's counters, in [`GLOBAL_SUMS`] order (slow-consumer closes last).
    fn counts(&self) -> [&Count; 7] {
        [
            &self.events,
            &self.presence_events,
            &self.db_events,
            &self.joins,
            &self.input_bytes,
            &self.output_bytes,
            &self.slow_consumer_closes,
        ]
    }

    /// The totals summed into the global series, in [`GLOBAL_SUMS`] order.
    pub fn totals(&self) -> [u64; 7] {
        self.counts().map(Count::get)
    }

    /// Sum of every counter but the slow-consumer closes: it changes whenever the tenant
    /// does anything.
    fn activity(&self) -> u64 {
        self.counts()[..6]
            .iter()
            .map(|c| c.get())
            .fold(0u64, u64::wrapping_add)
    }

    /// Whether the tenant's series are exported: it has sockets, or something was counted
    /// within `idle_after` of `now` (upstream drops the series of tenants idle for 10 min).
    pub fn visible(&self, has_sockets: bool, now: Instant, idle_after: Duration) -> bool {
        let activity = self.activity();
        let mut seen = match self.seen.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if has_sockets || seen.0 != activity {
            *seen = (activity, now);
        }
        now.saturating_duration_since(seen.1) <= idle_after
    }

    /// The tenant's families.
    pub fn collect(&self) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        for c in self.counts() {
            out.extend(c.tenant.collect());
        }
        out.extend(self.errors.collect());
        out.extend(self.payload_size.collect());
        for h in [
            &self.read_authorization,
            &self.write_authorization,
            &self.replay,
            &self.database_broadcast_committed,
            &self.database_broadcast_inserted,
        ] {
            if h.get_sample_count() > 0 {
                out.extend(h.collect());
            }
        }
        out
    }
}

/// The global series that sum a tenant counter: name and help, in [`TenantMetrics::totals`]
/// order.
pub const GLOBAL_SUMS: [(&str, &str); 7] = [
    (
        "realtime_channel_global_events",
        "Global sum of messages sent on a Realtime Channel.",
    ),
    (
        "realtime_channel_global_presence_events",
        "Global sum of presence messages sent on a Realtime Channel.",
    ),
    (
        "realtime_channel_global_db_events",
        "Global sum of db messages sent on a Realtime Channel.",
    ),
    (
        "realtime_channel_global_joins",
        "Global sum of Realtime Channel joins.",
    ),
    (
        "realtime_channel_global_input_bytes",
        "Global sum of input bytes sent on sockets.",
    ),
    (
        "realtime_channel_global_output_bytes",
        "Global sum of output bytes sent on sockets.",
    ),
    (
        "realtime_gateway_slow_consumer_closes",
        "Sockets disconnected because their bounded outbound queue was full (frames or bytes).",
    ),
];

/// The error code of a refusal reason (`ChannelRateLimitReached: Too many channels`); reasons
/// without one count as `UnknownErrorOnChannel`.
pub fn error_code(reason: &str) -> &str {
    match reason.split_once(':') {
        Some((code, _)) if !code.is_empty() && code.chars().all(|c| c.is_ascii_alphanumeric()) => {
            code
        }
        _ => "UnknownErrorOnChannel",
    }
}

/// Tenants' series, created on first use.
#[derive(Default)]
pub struct TenantTable {
    tenants: Mutex<HashMap<Arc<str>, Arc<TenantMetrics>>>,
}

impl TenantTable {
    /// The series of `tenant`.
    pub fn get(&self, tenant: &str, global: &Arc<GlobalMetrics>) -> Arc<TenantMetrics> {
        let mut map = match self.tenants.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(t) = map.get(tenant) {
            return t.clone();
        }
        let t = Arc::new(TenantMetrics::new(tenant, global.clone()));
        map.insert(Arc::from(tenant), t.clone());
        t
    }

    /// Every tenant seen.
    pub fn all(&self) -> Vec<Arc<TenantMetrics>> {
        match self.tenants.lock() {
            Ok(m) => m.values().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().values().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_come_from_the_reason() {
        assert_eq!(
            error_code("ChannelRateLimitReached: Too many channels"),
            "ChannelRateLimitReached"
        );
        assert_eq!(
            error_code("Unknown Error on Channel"),
            "UnknownErrorOnChannel"
        );
    }

    #[test]
    fn an_idle_tenant_is_hidden_until_it_acts_again() {
        let t = TenantMetrics::new("t1", Arc::new(GlobalMetrics::new()));
        let start = Instant::now();
        let idle = Duration::from_secs(600);
        t.events.add(1);
        assert!(t.visible(false, start, idle));
        assert!(t.visible(false, start + Duration::from_secs(599), idle));
        assert!(!t.visible(false, start + Duration::from_secs(700), idle));
        // Sockets keep it visible even without traffic.
        assert!(t.visible(true, start + Duration::from_secs(800), idle));
        assert!(!t.visible(false, start + Duration::from_secs(1500), idle));
        t.joins.add(1);
        assert!(t.visible(false, start + Duration::from_secs(1600), idle));
    }
}
